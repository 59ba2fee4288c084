/* mpg-wait.c
 *
 * Copyright 2026 The libmpg authors
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include <errno.h>

#include "mpg-connection.h"
#include "mpg-error.h"
#include "mpg-process.h"
#include "mpg-queue-private.h"
#include "mpg-wait.h"

/* The fd to poll for @object, or -1 with *@ready set if it is ready
 * already, or -1 with @error set. */
static int
object_fd (GObject   *object,
           gboolean  *ready,
           GError   **error)
{
  *ready = FALSE;

  if (MPG_IS_CONNECTION (object))
    {
      MpgConnection *conn = MPG_CONNECTION (object);
      int fd = mpg_connection_get_fd (conn);

      if (fd < 0)
        g_set_error_literal (error, MPG_ERROR, MPG_ERROR_CLOSED, "A connection is closed");
      else if (!mpg_connection_get_readable (conn))
        {
          g_set_error_literal (error, MPG_ERROR, MPG_ERROR_INVALID_STATE,
                               "A connection is write-only");
          fd = -1;
        }
      return fd;
    }

  if (MPG_IS_PROCESS (object))
    {
      MpgProcess *process = MPG_PROCESS (object);
      int fd;

      /* is_alive() reaps a child that ended, after which its sentinel
       * may be gone: check first. */
      if (!mpg_process_is_alive (process))
        {
          if (mpg_process_get_pid (process) == 0)
            g_set_error (error, MPG_ERROR, MPG_ERROR_INVALID_STATE,
                         "%s has not been started", mpg_process_get_name (process));
          else
            *ready = TRUE;
          return -1;
        }

      fd = mpg_process_get_sentinel (process);
      if (fd < 0)
        g_set_error (error, MPG_ERROR, MPG_ERROR_INVALID_STATE,
                     "%s has no sentinel to wait on", mpg_process_get_name (process));
      return fd;
    }

  if (MPG_IS_QUEUE (object))
    {
      int fd = _mpg_queue_get_receive_fd (MPG_QUEUE (object));
      if (fd < 0)
        g_set_error_literal (error, MPG_ERROR, MPG_ERROR_CLOSED, "A queue is closed");
      return fd;
    }

  g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
               "Cannot wait on a %s: only on an MpgConnection, MpgProcess or MpgQueue",
               G_OBJECT_TYPE_NAME (object));
  return -1;
}

/**
 * mpg_wait:
 * @objects: (element-type GObject): the objects to wait on: any mix of
 *   [class@Mpg.Connection], [class@Mpg.Process] and [class@Mpg.Queue]
 * @timeout_msec: how long to wait at most, in milliseconds: 0 to check
 *   without waiting, -1 to wait for ever
 * @cancellable: (nullable): a #GCancellable
 * @error: return location for a #GError
 *
 * Waits until at least one of @objects is ready, as Python's
 * `multiprocessing.connection.wait(object_list, timeout)`, and returns
 * those that are ready, in the order of @objects:
 *
 * - a connection when there is something to receive: a message, or the
 *   end of the stream ([method@Mpg.Connection.poll] would return %TRUE);
 * - a process when it has ended (it is then reaped, as by
 *   [method@Mpg.Process.is_alive]);
 * - a queue when a message may be available (another consumer may take
 *   it first, so get it with a timeout).
 *
 * As in Python, a timeout is not an error: the returned array is then
 * empty. This fails with %G_IO_ERROR_CANCELLED when @cancellable is
 * cancelled; with %MPG_ERROR_CLOSED if one of @objects is closed; with
 * %MPG_ERROR_INVALID_STATE for a write-only connection, a process that was
 * not started, or the current process; and with
 * %G_IO_ERROR_INVALID_ARGUMENT for an object of another type.
 *
 * The objects' own file descriptors ([method@Mpg.Connection.get_fd],
 * [method@Mpg.Process.get_sentinel]) can also be watched from a main loop;
 * for a single connection, [method@Mpg.Connection.recv_async] does so.
 *
 * Returns: (transfer container) (element-type GObject): the objects of
 *   @objects that are ready (empty if the timeout expired), or %NULL on
 *   error
 *
 * Since: 0.1
 */
GPtrArray *
mpg_wait (GPtrArray     *objects,
          gint           timeout_msec,
          GCancellable  *cancellable,
          GError       **error)
{
  g_autoptr(GPtrArray) ready = NULL;
  g_autofree GPollFD *pfds = NULL;
  g_autofree guint *owners = NULL;
  GPollFD cancel_pfd;
  gboolean have_cancel_fd = FALSE;
  gint64 deadline;

  g_return_val_if_fail (objects != NULL, NULL);
  g_return_val_if_fail (timeout_msec >= -1, NULL);
  g_return_val_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable), NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  for (guint i = 0; i < objects->len; i++)
    g_return_val_if_fail (G_IS_OBJECT (g_ptr_array_index (objects, i)), NULL);

  deadline = timeout_msec < 0 ? -1 : g_get_monotonic_time () + (gint64) timeout_msec * 1000;
  ready = g_ptr_array_new ();
  /* One slot per object, plus the cancellable's. */
  pfds = g_new0 (GPollFD, objects->len + 1);
  owners = g_new0 (guint, objects->len + 1);

  if (cancellable != NULL)
    have_cancel_fd = g_cancellable_make_pollfd (cancellable, &cancel_pfd);

  for (;;)
    {
      guint n = 0;
      gint timeout;
      int r;

      if (g_cancellable_set_error_if_cancelled (cancellable, error))
        goto failed;

      /* The objects are looked at afresh each time: a process that ends
       * or a connection that is closed meanwhile is seen. */
      for (guint i = 0; i < objects->len; i++)
        {
          GObject *object = g_ptr_array_index (objects, i);
          gboolean is_ready;
          int fd = object_fd (object, &is_ready, error);

          if (is_ready)
            g_ptr_array_add (ready, object);
          else if (fd < 0)
            goto failed;
          else
            {
              pfds[n].fd = fd;
              pfds[n].events = G_IO_IN;
              pfds[n].revents = 0;
              owners[n] = i;
              n++;
            }
        }

      if (ready->len > 0 || deadline == 0)
        timeout = 0;
      else if (deadline < 0)
        timeout = -1;
      else
        {
          gint64 now = g_get_monotonic_time ();

          timeout = deadline > now ? (gint) MIN ((deadline - now + 999) / 1000, G_MAXINT) : 0;
        }

      if (have_cancel_fd)
        {
          pfds[n] = cancel_pfd;
          pfds[n].revents = 0;
        }

      r = g_poll (pfds, n + (have_cancel_fd ? 1 : 0), timeout);
      if (r < 0 && errno == EINTR)
        {
          g_ptr_array_set_size (ready, 0);
          continue;
        }
      if (r < 0)
        {
          int saved_errno = errno;

          g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved_errno),
                       "poll() failed: %s", g_strerror (saved_errno));
          goto failed;
        }

      for (guint k = 0; k < n; k++)
        {
          GObject *object = g_ptr_array_index (objects, owners[k]);

          if (pfds[k].revents == 0)
            continue;

          /* A process's sentinel may be readable before the process has
           * ended (where there are no pidfds, it is the result pipe):
           * is_alive() tells, and drains that pipe so that it does not
           * stay readable. */
          if (MPG_IS_PROCESS (object) && mpg_process_is_alive (MPG_PROCESS (object)))
            continue;

          g_ptr_array_add (ready, object);
        }

      if (ready->len > 0)
        break;

      if (g_cancellable_set_error_if_cancelled (cancellable, error))
        goto failed;

      if (deadline >= 0 && g_get_monotonic_time () >= deadline)
        break;

      g_ptr_array_set_size (ready, 0);
    }

  if (have_cancel_fd)
    g_cancellable_release_fd (cancellable);

  /* In the order of @objects, each once: the ready-at-once ones were added
   * before those that poll() found. */
  if (ready->len > 1)
    {
      g_autoptr(GPtrArray) sorted = g_ptr_array_new ();

      for (guint i = 0; i < objects->len; i++)
        {
          gpointer object = g_ptr_array_index (objects, i);

          if (g_ptr_array_find (ready, object, NULL) &&
              !g_ptr_array_find (sorted, object, NULL))
            g_ptr_array_add (sorted, object);
        }
      return g_steal_pointer (&sorted);
    }

  return g_steal_pointer (&ready);

failed:
  if (have_cancel_fd)
    g_cancellable_release_fd (cancellable);
  return NULL;
}
