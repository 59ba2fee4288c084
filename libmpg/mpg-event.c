/* mpg-event.c
 *
 * Copyright 2026 The libmpg authors
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include "mpg-error.h"
#include "mpg-event.h"
#include "mpg-sync-private.h"

/**
 * MpgEvent:
 *
 * A flag shared by processes that they can wait for, as Python's
 * `multiprocessing.Event`.
 *
 * [method@Mpg.Event.set] raises the flag and wakes every waiter;
 * [method@Mpg.Event.clear] lowers it; [method@Mpg.Event.wait] returns at
 * once while the flag is up, and otherwise waits for it.
 *
 * ```c
 * // parent                              // child
 * mpg_event_wait (ready, -1, NULL, &e);  prepare ();
 *                                        mpg_event_set (ready);
 * ```
 *
 * In a main loop, [method@Mpg.Event.wait_async] waits without blocking.
 *
 * ## How it maps to Python
 *
 * | Python `multiprocessing` | libmpg |
 * |---|---|
 * | `Event()` | [ctor@Mpg.Event.new] |
 * | `is_set()`, `set()`, `clear()` | [method@Mpg.Event.is_set], [method@Mpg.Event.set], [method@Mpg.Event.clear] |
 * | `wait(timeout=None)` | [method@Mpg.Event.wait]; %MPG_ERROR_TIMEOUT where Python returns `False` |
 *
 * As Python documents, a wait returns %TRUE once the flag was set after
 * the wait started, even if it was cleared again before the waiter ran.
 *
 * Like [class@Mpg.Lock], an event is a page of shared memory and a file
 * descriptor in each process, with nothing left in the file system.
 *
 * Since: 0.1
 */

typedef struct
{
  guint32 flag;
  guint32 generation;   /* bumped by each set() */
} EventState;

struct _MpgEvent
{
  GObject parent_instance;

  MpgSync *sync;
  GError  *init_error;
};

static void mpg_event_initable_iface_init (GInitableIface *iface);

G_DEFINE_FINAL_TYPE_WITH_CODE (MpgEvent, mpg_event, G_TYPE_OBJECT,
                               G_IMPLEMENT_INTERFACE (G_TYPE_INITABLE,
                                                      mpg_event_initable_iface_init))

static GPrivate adopt_sync;

static void
mpg_event_constructed (GObject *object)
{
  MpgEvent *self = MPG_EVENT (object);

  G_OBJECT_CLASS (mpg_event_parent_class)->constructed (object);

  self->sync = g_private_get (&adopt_sync);
  if (self->sync != NULL)
    g_private_set (&adopt_sync, NULL);
  else
    self->sync = _mpg_sync_new (MPG_SYNC_EVENT, &self->init_error);
}

static gboolean
mpg_event_initable_init (GInitable     *initable,
                         GCancellable  *cancellable,
                         GError       **error)
{
  MpgEvent *self = MPG_EVENT (initable);

  if (self->init_error != NULL)
    {
      g_propagate_error (error, g_error_copy (self->init_error));
      return FALSE;
    }
  return TRUE;
}

static void
mpg_event_initable_iface_init (GInitableIface *iface)
{
  iface->init = mpg_event_initable_init;
}

static void
mpg_event_finalize (GObject *object)
{
  MpgEvent *self = MPG_EVENT (object);

  g_clear_pointer (&self->sync, _mpg_sync_free);
  g_clear_error (&self->init_error);

  G_OBJECT_CLASS (mpg_event_parent_class)->finalize (object);
}

static void
mpg_event_class_init (MpgEventClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->constructed = mpg_event_constructed;
  object_class->finalize = mpg_event_finalize;
}

static void
mpg_event_init (MpgEvent *self)
{
}

static gboolean
check_ready (MpgEvent  *self,
             GError   **error)
{
  if (self->sync == NULL)
    {
      g_propagate_error (error, g_error_copy (self->init_error));
      return FALSE;
    }
  return TRUE;
}

/**
 * mpg_event_new:
 * @error: return location for a #GError
 *
 * Creates an event, its flag down, as Python's `multiprocessing.Event()`.
 *
 * Returns: (transfer full): the event, or %NULL with @error set if its
 *   shared memory could not be created (too many open files)
 *
 * Since: 0.1
 */
MpgEvent *
mpg_event_new (GError **error)
{
  return g_initable_new (MPG_TYPE_EVENT, NULL, error, NULL);
}

/**
 * mpg_event_is_set:
 * @self: an event
 *
 * Gets whether the flag is up.
 *
 * Returns: %TRUE if the event is set
 *
 * Since: 0.1
 */
gboolean
mpg_event_is_set (MpgEvent *self)
{
  g_return_val_if_fail (MPG_IS_EVENT (self), FALSE);

  if (self->sync == NULL)
    return FALSE;

  return g_atomic_int_get (&((EventState *) self->sync->state)->flag) != 0;
}

/**
 * mpg_event_set:
 * @self: an event
 *
 * Raises the flag and wakes every process and thread waiting for it.
 *
 * Since: 0.1
 */
void
mpg_event_set (MpgEvent *self)
{
  EventState *state;

  g_return_if_fail (MPG_IS_EVENT (self));

  if (self->sync == NULL)
    return;

  state = self->sync->state;
  _mpg_sync_lock (self->sync);
  if (!state->flag)
    {
      g_atomic_int_set (&state->flag, 1);
      state->generation++;
      _mpg_sync_changed (self->sync);
    }
  _mpg_sync_unlock (self->sync);
}

/**
 * mpg_event_clear:
 * @self: an event
 *
 * Lowers the flag: later waits wait until it is set again.
 *
 * Since: 0.1
 */
void
mpg_event_clear (MpgEvent *self)
{
  g_return_if_fail (MPG_IS_EVENT (self));

  if (self->sync == NULL)
    return;

  _mpg_sync_lock (self->sync);
  g_atomic_int_set (&((EventState *) self->sync->state)->flag, 0);
  _mpg_sync_unlock (self->sync);
}

static gboolean
wait_internal (MpgEvent      *self,
               gint           timeout_msec,
               GCancellable  *cancellable,
               GError       **error)
{
  EventState *state = self->sync->state;
  gboolean ok = FALSE;
  guint32 generation;
  MpgSyncWait w;

  _mpg_sync_wait_init (&w, self->sync, timeout_msec, cancellable);
  _mpg_sync_lock (self->sync);

  generation = state->generation;
  for (;;)
    {
      if (state->flag || state->generation != generation)
        {
          ok = TRUE;
          break;
        }
      if (timeout_msec == 0)
        {
          g_set_error_literal (error, MPG_ERROR, MPG_ERROR_TIMEOUT, "The event is not set");
          break;
        }
      if (!_mpg_sync_wait (&w, error))
        break;
    }

  _mpg_sync_unlock (self->sync);
  _mpg_sync_wait_clear (&w);
  return ok;
}

/**
 * mpg_event_wait:
 * @self: an event
 * @timeout_msec: how long to wait, in milliseconds: -1 for as long as it
 *   takes, 0 not to wait
 * @cancellable: (nullable): a #GCancellable
 * @error: return location for a #GError
 *
 * Waits until the flag is up, as Python's `wait(timeout)`.
 *
 * Returns: %TRUE if the flag was up, or was raised during the wait;
 *   %FALSE with %MPG_ERROR_TIMEOUT if @timeout_msec passed first (Python
 *   returns `False`), or %G_IO_ERROR_CANCELLED
 *
 * Since: 0.1
 */
gboolean
mpg_event_wait (MpgEvent      *self,
                gint           timeout_msec,
                GCancellable  *cancellable,
                GError       **error)
{
  g_return_val_if_fail (MPG_IS_EVENT (self), FALSE);
  g_return_val_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  if (!check_ready (self, error))
    return FALSE;

  return wait_internal (self, timeout_msec, cancellable, error);
}

static gssize
wait_thread (gpointer      source,
             gpointer      data,
             GCancellable *cancellable,
             GError      **error)
{
  return wait_internal (source, -1, cancellable, error) ? 1 : -1;
}

/**
 * mpg_event_wait_async:
 * @self: an event
 * @cancellable: (nullable): a #GCancellable
 * @callback: (scope async): called when the flag is up, or the call failed
 * @user_data: data for @callback
 *
 * Waits until the flag is up without blocking the caller: @callback is
 * called in the thread-default main context of the caller. Call
 * [method@Mpg.Event.wait_finish] there.
 *
 * The wait happens in a thread of its own. Cancelling @cancellable fails
 * the call with %G_IO_ERROR_CANCELLED.
 *
 * Since: 0.1
 */
void
mpg_event_wait_async (MpgEvent            *self,
                      GCancellable        *cancellable,
                      GAsyncReadyCallback  callback,
                      gpointer             user_data)
{
  g_return_if_fail (MPG_IS_EVENT (self));
  g_return_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable));

  if (!check_ready (self, NULL))
    {
      g_task_report_error (self, callback, user_data, mpg_event_wait_async,
                           g_error_copy (self->init_error));
      return;
    }

  _mpg_sync_run_async (self, mpg_event_wait_async, "[mpg] wait for an event",
                       wait_thread, NULL, NULL, cancellable, callback, user_data);
}

/**
 * mpg_event_wait_finish:
 * @self: an event
 * @result: the result passed to the callback
 * @error: return location for a #GError
 *
 * Completes [method@Mpg.Event.wait_async].
 *
 * Returns: %TRUE if the flag was up; %FALSE with @error set
 *
 * Since: 0.1
 */
gboolean
mpg_event_wait_finish (MpgEvent      *self,
                       GAsyncResult  *result,
                       GError       **error)
{
  g_return_val_if_fail (MPG_IS_EVENT (self), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  return _mpg_sync_run_finish (self, result, mpg_event_wait_async, error) >= 0;
}

/**
 * mpg_event_to_handle:
 * @self: an event
 * @fd_list: the list to which the event's file descriptor is added (a copy
 *   of it)
 * @error: return location for a #GError
 *
 * Describes the event so that another process can use it: see
 * [method@Mpg.Lock.to_handle].
 *
 * Returns: (transfer full): the handle (not floating), or %NULL with @error set if
 *   the file descriptor could not be added
 *
 * Since: 0.1
 */
GVariant *
mpg_event_to_handle (MpgEvent     *self,
                     GUnixFDList  *fd_list,
                     GError      **error)
{
  g_return_val_if_fail (MPG_IS_EVENT (self), NULL);
  g_return_val_if_fail (G_IS_UNIX_FD_LIST (fd_list), NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if (!check_ready (self, error))
    return NULL;

  return _mpg_sync_to_handle (self->sync, fd_list, error);
}

/**
 * mpg_event_new_from_handle:
 * @handle: a value from [method@Mpg.Event.to_handle]; a floating reference
 *   is sunk
 * @fd_list: (nullable): the file descriptors that @handle indexes
 * @error: return location for a #GError
 *
 * Rebuilds an event that another process (or this one) described with
 * [method@Mpg.Event.to_handle]: the same event.
 *
 * Returns: (transfer full): the event, or %NULL with
 *   %G_IO_ERROR_INVALID_ARGUMENT if @handle does not describe one
 *
 * Since: 0.1
 */
MpgEvent *
mpg_event_new_from_handle (GVariant     *handle,
                           GUnixFDList  *fd_list,
                           GError      **error)
{
  MpgSync *sync;

  g_return_val_if_fail (handle != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  sync = _mpg_sync_new_from_handle (handle, fd_list, error);
  if (sync == NULL)
    return NULL;

  if (sync->kind != MPG_SYNC_EVENT)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                   "Not an event's handle but a %s's", _mpg_sync_kind_name (sync->kind));
      _mpg_sync_free (sync);
      return NULL;
    }

  g_private_set (&adopt_sync, sync);
  return g_object_new (MPG_TYPE_EVENT, NULL);
}
