/* test-queue.c: MpgQueue
 *
 * Copyright 2026 The libmpg authors
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/socket.h>

#include <glib-unix.h>
#include <libmpg.h>

/* Bounds every wait of these tests: a hang is a failure, not a time-out of
 * the whole run. */
#define WAIT_MS 10000

/* The start method of this run's children: MPG_TEST_START_METHOD (fork,
 * spawn or forkserver; fork when unset), read in main(). Each method is a
 * meson test of its own: test-queue, test-queue-spawn,
 * test-queue-forkserver. */
static MpgStartMethod method = MPG_START_METHOD_FORK;

/* Helpers */

/* Starts @func in a child with @queue and @args. Its argument is
 * (queue handle, args): with fork the child has the queue object itself,
 * as the target's user data, and the handle is unused; with spawn and
 * forkserver the child is this program run again, which finds @func by
 * name and rebuilds the queue from the handle and the fds it gets as user
 * data. @fds may hold other fds for handles in @args (spawn and
 * forkserver; a fork child has the fds themselves). */
static MpgProcess *
start_child_with_fds (MpgTaskFunc  func,
                      MpgQueue    *queue,
                      GVariant    *args,
                      GUnixFDList *fds)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GUnixFDList) own_fds = fds != NULL ? g_object_ref (fds) : g_unix_fd_list_new ();
  MpgProcess *p;

  if (method == MPG_START_METHOD_FORK)
    {
      p = mpg_process_new (g_variant_new ("(@(hhh)mv)", g_variant_new ("(hhh)", -1, -1, -1), args),
                           func, g_object_ref (queue), g_object_unref);
    }
  else
    {
      g_autoptr(GVariant) handle = mpg_queue_to_handle (queue, own_fds, &error);

      g_assert_no_error (error);
      p = mpg_process_new (g_variant_new ("(@(hhh)mv)", handle, args), func, NULL, NULL);
      mpg_process_set_start_method (p, method);
      mpg_process_set_fd_list (p, own_fds);
    }

  mpg_process_start (p, &error);
  g_assert_no_error (error);

  return p;
}

static MpgProcess *
start_child (MpgTaskFunc  func,
             MpgQueue    *queue,
             GVariant    *args)
{
  return start_child_with_fds (func, queue, args, NULL);
}

/* In the child: its queue and its args (NULL for none) from what
 * start_child() gave it. */
static MpgQueue *
child_queue (GVariant  *packed,
             gpointer   user_data,
             GVariant **args,
             GError   **error)
{
  g_autoptr(GVariant) handle = NULL;

  g_variant_get (packed, "(@(hhh)mv)", &handle, args);
  if (MPG_IS_QUEUE (user_data))
    return g_object_ref (user_data);   /* fork */

  return mpg_queue_new_from_handle (handle, user_data, error);
}

/* In the child: the fd that @index of the args stands for, a copy to close. */
static int
child_fd (gpointer   user_data,
          gint32     index,
          GError   **error)
{
  if (MPG_IS_QUEUE (user_data))
    return dup (index);   /* fork: the fd number itself, inherited */

  return g_unix_fd_list_get (user_data, index, error);
}

static void
join_child (MpgProcess *p)
{
  g_autoptr(GError) error = NULL;
  gint code;

  mpg_process_join (p, WAIT_MS, NULL, &error);
  g_assert_no_error (error);
  code = mpg_process_get_exitcode (p);
  /* memcheck ends a forked child of a threaded parent with its own exit
   * code (--error-exitcode) for a false leak: a block only another thread
   * of the parent pointed to. Only a clean exit can be checked there. */
  if (g_getenv ("MPG_TEST_VALGRIND") != NULL && code == 1)
    code = 0;
  g_assert_cmpint (code, ==, 0);
}

static MpgQueue *
new_queue (guint    maxsize,
           gboolean joinable)
{
  g_autoptr(GError) error = NULL;
  MpgQueue *q;

  if (joinable)
    q = mpg_queue_new_joinable (maxsize, &error);
  else
    q = mpg_queue_new (maxsize, &error);
  g_assert_no_error (error);
  g_assert_nonnull (q);

  return q;
}

static void
put_ok (MpgQueue *q,
        GVariant *value)
{
  g_autoptr(GError) error = NULL;

  g_assert_true (mpg_queue_put (q, value, TRUE, WAIT_MS, NULL, &error));
  g_assert_no_error (error);
}

static GVariant *
get_ok (MpgQueue *q)
{
  g_autoptr(GError) error = NULL;
  GVariant *value = mpg_queue_get (q, TRUE, WAIT_MS, NULL, &error);

  g_assert_no_error (error);
  g_assert_nonnull (value);

  return value;
}

static void
assert_empty_now (MpgQueue *q)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GVariant) value = mpg_queue_get (q, FALSE, 0, NULL, &error);

  g_assert_error (error, MPG_ERROR, MPG_ERROR_EMPTY);
  g_assert_null (value);
}

typedef struct
{
  GMainLoop *loop;
  gboolean timed_out;
} Guard;

static gboolean
guard_expired (gpointer user_data)
{
  Guard *guard = user_data;

  guard->timed_out = TRUE;
  g_main_loop_quit (guard->loop);
  return G_SOURCE_REMOVE;
}

/* Child targets: the queue comes from child_queue(). Exported (the
 * program is linked with export_dynamic), so that a spawned or forkserver
 * child, which is this program run again, finds them by name. */

G_MODULE_EXPORT GVariant *child_put_ints (GVariant *packed, gpointer user_data, GError **error);
G_MODULE_EXPORT GVariant *child_get_one (GVariant *packed, gpointer user_data, GError **error);
G_MODULE_EXPORT GVariant *child_get_and_task_done (GVariant *packed, gpointer user_data, GError **error);
G_MODULE_EXPORT GVariant *child_write_to_passed_fd (GVariant *packed, gpointer user_data, GError **error);
G_MODULE_EXPORT GVariant *child_put_large (GVariant *packed, gpointer user_data, GError **error);
G_MODULE_EXPORT GVariant *child_get_ints_in_order (GVariant *packed, gpointer user_data, GError **error);
G_MODULE_EXPORT GVariant *child_put_then_signal (GVariant *packed, gpointer user_data, GError **error);
G_MODULE_EXPORT GVariant *child_put_padded (GVariant *packed, gpointer user_data, GError **error);
G_MODULE_EXPORT GVariant *child_put_padded_cancel_join (GVariant *packed, gpointer user_data, GError **error);


GVariant *
child_put_ints (GVariant  *packed,
                gpointer   user_data,
                GError   **error)
{
  g_autoptr(GVariant) arg = NULL;
  g_autoptr(MpgQueue) q = child_queue (packed, user_data, &arg, error);
  gint32 producer, n, delay_ms;

  if (q == NULL)
    return NULL;

  g_variant_get (arg, "(iii)", &producer, &n, &delay_ms);
  if (delay_ms > 0)
    g_usleep (delay_ms * 1000);
  for (gint32 i = 0; i < n; i++)
    if (!mpg_queue_put (q, g_variant_new ("(ii)", producer, i), TRUE, WAIT_MS, NULL, error))
      return NULL;

  return NULL;
}

GVariant *
child_get_one (GVariant  *packed,
               gpointer   user_data,
               GError   **error)
{
  g_autoptr(GVariant) arg = NULL;
  g_autoptr(MpgQueue) q = child_queue (packed, user_data, &arg, error);

  if (q == NULL)
    return NULL;

  if (arg != NULL)
    g_usleep (g_variant_get_int32 (arg) * 1000);

  return mpg_queue_get (q, TRUE, WAIT_MS, NULL, error);
}

GVariant *
child_get_and_task_done (GVariant  *packed,
                         gpointer   user_data,
                         GError   **error)
{
  g_autoptr(GVariant) arg = NULL;
  g_autoptr(MpgQueue) q = child_queue (packed, user_data, &arg, error);
  gint32 n = g_variant_get_int32 (arg);

  if (q == NULL)
    return NULL;

  for (gint32 i = 0; i < n; i++)
    {
      g_autoptr(GVariant) value = mpg_queue_get (q, TRUE, WAIT_MS, NULL, error);

      if (value == NULL)
        return NULL;
      g_usleep (20 * 1000);
      if (!mpg_queue_task_done (q, error))
        return NULL;
    }

  return NULL;
}

GVariant *
child_write_to_passed_fd (GVariant  *packed,
                          gpointer   user_data,
                          GError   **error)
{
  g_autoptr(GVariant) arg = NULL;
  g_autoptr(MpgQueue) q = child_queue (packed, user_data, &arg, error);
  g_autoptr(GUnixFDList) fds = NULL;
  g_autoptr(GVariant) value = NULL;
  gint32 handle;
  int fd;
  const char *text;

  if (q == NULL)
    return NULL;

  value = mpg_queue_get_with_fds (q, TRUE, WAIT_MS, &fds, NULL, error);
  if (value == NULL)
    return NULL;
  g_variant_get (value, "(h&s)", &handle, &text);
  fd = g_unix_fd_list_get (fds, handle, error);
  if (fd < 0)
    return NULL;
  if (write (fd, text, strlen (text)) != (gssize) strlen (text))
    {
      g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_FAILED, "write failed");
      close (fd);
      return NULL;
    }
  close (fd);

  return NULL;
}

#define LARGE_SIZE (4 * 1024 * 1024)

static guint8
large_byte (gsize i)
{
  return (guint8) ((i * 2654435761u) >> 13);
}

GVariant *
child_put_large (GVariant  *packed,
                 gpointer   user_data,
                 GError   **error)
{
  g_autoptr(GVariant) arg = NULL;
  g_autoptr(MpgQueue) q = child_queue (packed, user_data, &arg, error);
  guint8 *data = g_malloc (LARGE_SIZE);

  if (q == NULL)
    return NULL;

  for (gsize i = 0; i < LARGE_SIZE; i++)
    data[i] = large_byte (i);

  if (!mpg_queue_put (q, g_variant_new_from_data (G_VARIANT_TYPE_BYTESTRING, data, LARGE_SIZE,
                                                  TRUE, g_free, data),
                      TRUE, WAIT_MS, NULL, error))
    return NULL;

  return NULL;
}

/* Tests */

static void
test_queue_round_trip (void)
{
  g_autoptr(MpgQueue) q = new_queue (0, FALSE);
  g_autoptr(GVariant) seed = g_variant_ref_sink (g_variant_new ("(imvs)", 42, NULL, "hello"));
  g_autoptr(GVariant) list = NULL;
  g_autoptr(GVariant) got = NULL;
  g_autoptr(GVariant) got_list = NULL;
  GVariantBuilder builder;

  g_test_summary ("The seed's [42, None, 'hello'] comes out as it went in, as a tuple or a list of variants");

  put_ok (q, seed);
  got = get_ok (q);
  g_assert_true (g_variant_equal (got, seed));

  g_variant_builder_init (&builder, G_VARIANT_TYPE ("av"));
  g_variant_builder_add (&builder, "v", g_variant_new_int32 (42));
  g_variant_builder_add (&builder, "v", g_variant_new_maybe (G_VARIANT_TYPE_VARIANT, NULL));
  g_variant_builder_add (&builder, "v", g_variant_new_string ("hello"));
  list = g_variant_ref_sink (g_variant_builder_end (&builder));
  put_ok (q, list);
  got_list = get_ok (q);
  g_assert_true (g_variant_equal (got_list, list));

  assert_empty_now (q);
}

static void
test_queue_fifo (void)
{
  g_autoptr(MpgQueue) q = new_queue (0, FALSE);

  g_test_summary ("Messages come out in the order they were put");

  for (gint32 i = 0; i < 200; i++)
    put_ok (q, g_variant_new_int32 (i));
  g_assert_cmpuint (mpg_queue_qsize (q), ==, 200);
  for (gint32 i = 0; i < 200; i++)
    {
      g_autoptr(GVariant) v = get_ok (q);

      g_assert_cmpint (g_variant_get_int32 (v), ==, i);
    }
  g_assert_cmpuint (mpg_queue_qsize (q), ==, 0);
}

static void
test_queue_get_empty (void)
{
  g_autoptr(MpgQueue) q = new_queue (0, FALSE);
  g_autoptr(GError) error = NULL;
  g_autoptr(GVariant) v = NULL;
  gint64 start;

  g_test_summary ("A non-blocking get, or one whose timeout expires, of an empty queue fails with EMPTY");

  assert_empty_now (q);

  start = g_get_monotonic_time ();
  v = mpg_queue_get (q, TRUE, 100, NULL, &error);
  g_assert_error (error, MPG_ERROR, MPG_ERROR_EMPTY);
  g_assert_null (v);
  g_assert_cmpint (g_get_monotonic_time () - start, >=, 95 * 1000);
  g_assert_cmpint (g_get_monotonic_time () - start, <, WAIT_MS * 1000);
  g_clear_error (&error);

  /* Blocking with a zero timeout polls once. */
  v = mpg_queue_get (q, TRUE, 0, NULL, &error);
  g_assert_error (error, MPG_ERROR, MPG_ERROR_EMPTY);
}

static void
test_queue_full (void)
{
  g_autoptr(MpgQueue) q = new_queue (2, FALSE);
  g_autoptr(GError) error = NULL;
  g_autoptr(GVariant) v = NULL;
  gint64 start;

  g_test_summary ("A bounded queue refuses a non-blocking put when full, and a blocking one at its timeout");

  g_assert_cmpuint (mpg_queue_get_maxsize (q), ==, 2);
  put_ok (q, g_variant_new_int32 (1));
  put_ok (q, g_variant_new_int32 (2));
  g_assert_true (mpg_queue_full (q));

  g_assert_false (mpg_queue_put (q, g_variant_new_int32 (3), FALSE, 0, NULL, &error));
  g_assert_error (error, MPG_ERROR, MPG_ERROR_FULL);
  g_clear_error (&error);

  start = g_get_monotonic_time ();
  g_assert_false (mpg_queue_put (q, g_variant_new_int32 (3), TRUE, 100, NULL, &error));
  g_assert_error (error, MPG_ERROR, MPG_ERROR_FULL);
  g_assert_cmpint (g_get_monotonic_time () - start, >=, 95 * 1000);
  g_clear_error (&error);
  g_assert_cmpuint (mpg_queue_qsize (q), ==, 2);

  /* A get makes room for exactly one more. */
  v = get_ok (q);
  g_assert_cmpint (g_variant_get_int32 (v), ==, 1);
  g_assert_false (mpg_queue_full (q));
  g_assert_true (mpg_queue_put (q, g_variant_new_int32 (3), FALSE, 0, NULL, &error));
  g_assert_no_error (error);
  g_assert_false (mpg_queue_put (q, g_variant_new_int32 (4), FALSE, 0, NULL, &error));
  g_assert_error (error, MPG_ERROR, MPG_ERROR_FULL);
}

static void
test_queue_blocked_put_released (void)
{
  g_autoptr(MpgQueue) q = new_queue (1, FALSE);
  g_autoptr(MpgProcess) p = NULL;
  g_autoptr(GVariant) got = NULL;
  g_autoptr(GVariant) last = NULL;
  g_autoptr(GError) error = NULL;
  gint64 start;

  g_test_summary ("A put blocked on a full queue goes through when another process gets a message");

  put_ok (q, g_variant_new_string ("first"));
  p = start_child (child_get_one, q, g_variant_new_int32 (200));

  start = g_get_monotonic_time ();
  g_assert_true (mpg_queue_put (q, g_variant_new_string ("second"), TRUE, WAIT_MS, NULL, &error));
  g_assert_no_error (error);
  /* It had to wait for the child. */
  g_assert_cmpint (g_get_monotonic_time () - start, >=, 100 * 1000);

  join_child (p);
  got = mpg_process_dup_result (p, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (g_variant_get_string (got, NULL), ==, "first");
  last = get_ok (q);
  g_assert_cmpstr (g_variant_get_string (last, NULL), ==, "second");
}

static void
test_queue_blocked_get_released (void)
{
  g_autoptr(MpgQueue) q = new_queue (0, FALSE);
  g_autoptr(MpgProcess) p = NULL;
  g_autoptr(GVariant) got = NULL;

  g_test_summary ("A blocking get returns when another process puts a message");

  p = start_child (child_put_ints, q, g_variant_new ("(iii)", 7, 1, 100));
  got = get_ok (q);
  g_assert_true (g_variant_is_of_type (got, G_VARIANT_TYPE ("(ii)")));
  join_child (p);
}

static void
test_queue_sizes (void)
{
  g_autoptr(MpgQueue) q = new_queue (0, FALSE);
  g_autoptr(MpgQueue) b = new_queue (3, FALSE);

  g_test_summary ("qsize, empty and full follow puts and gets");

  g_assert_cmpuint (mpg_queue_qsize (q), ==, 0);
  g_assert_true (mpg_queue_empty (q));
  g_assert_false (mpg_queue_full (q));
  for (gint32 i = 0; i < 50; i++)
    put_ok (q, g_variant_new_int32 (i));
  g_assert_cmpuint (mpg_queue_qsize (q), ==, 50);
  g_assert_false (mpg_queue_empty (q));
  /* Unbounded: never full. */
  g_assert_false (mpg_queue_full (q));
  for (gint32 i = 0; i < 50; i++)
    g_variant_unref (get_ok (q));
  g_assert_true (mpg_queue_empty (q));

  for (gint32 i = 0; i < 3; i++)
    {
      g_assert_false (mpg_queue_full (b));
      put_ok (b, g_variant_new_int32 (i));
      g_assert_cmpuint (mpg_queue_qsize (b), ==, i + 1);
    }
  g_assert_true (mpg_queue_full (b));
  g_variant_unref (get_ok (b));
  g_assert_false (mpg_queue_full (b));
  g_assert_cmpuint (mpg_queue_qsize (b), ==, 2);
}

static void
count_notify (guint *count)
{
  (*count)++;
}

static void
test_queue_properties (void)
{
  g_autoptr(MpgQueue) q = new_queue (5, TRUE);
  guint maxsize = 0;
  gboolean joinable = FALSE;
  guint64 max_message = 0;
  guint notified = 0;
  g_autoptr(GError) error = NULL;
  g_autoptr(GVariant) v = NULL;

  g_test_summary ("The properties, and max-message-size refusing larger messages on both sides");

  g_object_get (q, "maxsize", &maxsize, "joinable", &joinable, "max-message-size", &max_message, NULL);
  g_assert_cmpuint (maxsize, ==, 5);
  g_assert_true (joinable);
  g_assert_cmpuint (max_message, ==, 256 * 1024 * 1024);
  g_assert_true (mpg_queue_get_joinable (q));
  g_signal_connect_swapped (q, "notify::max-message-size", G_CALLBACK (count_notify), &notified);
  mpg_queue_set_max_message_size (q, 1024);
  mpg_queue_set_max_message_size (q, 1024);
  g_assert_cmpuint (notified, ==, 1);
  g_assert_cmpuint (mpg_queue_get_max_message_size (q), ==, 1024);

  g_assert_false (mpg_queue_put (q, g_variant_new_take_string (g_strnfill (2000, 'x')),
                                 FALSE, 0, NULL, &error));
  g_assert_error (error, MPG_ERROR, MPG_ERROR_TOO_LARGE);
  g_clear_error (&error);
  /* The failed put gave its slot and its task back. */
  g_assert_cmpuint (mpg_queue_qsize (q), ==, 0);
  g_assert_true (mpg_queue_join (q, 0, NULL, &error));
  g_assert_no_error (error);

  /* Put by a process that allows more, refused by this one, and dropped. */
  mpg_queue_set_max_message_size (q, 256 * 1024 * 1024);
  put_ok (q, g_variant_new_take_string (g_strnfill (2000, 'x')));
  mpg_queue_set_max_message_size (q, 1024);
  v = mpg_queue_get (q, FALSE, 0, NULL, &error);
  g_assert_error (error, MPG_ERROR, MPG_ERROR_TOO_LARGE);
  g_assert_null (v);
  g_assert_cmpuint (mpg_queue_qsize (q), ==, 0);
  g_assert_false (mpg_queue_full (q));
}

static void
test_queue_close (void)
{
  g_autoptr(MpgQueue) q = new_queue (2, TRUE);
  g_autoptr(MpgQueue) other = NULL;
  g_autoptr(GUnixFDList) fds = g_unix_fd_list_new ();
  g_autoptr(GVariant) handle = NULL;
  g_autoptr(GVariant) v = NULL;
  g_autoptr(GError) error = NULL;

  g_test_summary ("After close() every call fails with CLOSED; the queue lives on in its other holders");

  handle = mpg_queue_to_handle (q, fds, &error);
  g_assert_no_error (error);
  other = mpg_queue_new_from_handle (handle, fds, &error);
  g_assert_no_error (error);

  put_ok (q, g_variant_new_int32 (1));
  mpg_queue_close (q);
  mpg_queue_close (q);

  g_assert_false (mpg_queue_put (q, g_variant_new_int32 (2), TRUE, 10, NULL, &error));
  g_assert_error (error, MPG_ERROR, MPG_ERROR_CLOSED);
  g_clear_error (&error);
  v = mpg_queue_get (q, TRUE, 10, NULL, &error);
  g_assert_error (error, MPG_ERROR, MPG_ERROR_CLOSED);
  g_assert_null (v);
  g_clear_error (&error);
  g_assert_false (mpg_queue_task_done (q, &error));
  g_assert_error (error, MPG_ERROR, MPG_ERROR_CLOSED);
  g_clear_error (&error);
  g_assert_false (mpg_queue_join (q, 10, NULL, &error));
  g_assert_error (error, MPG_ERROR, MPG_ERROR_CLOSED);
  g_clear_error (&error);
  g_assert_null (mpg_queue_to_handle (q, fds, &error));
  g_assert_error (error, MPG_ERROR, MPG_ERROR_CLOSED);
  g_clear_error (&error);
  g_assert_cmpuint (mpg_queue_qsize (q), ==, 0);
  g_assert_true (mpg_queue_empty (q));
  g_assert_false (mpg_queue_full (q));

  /* The message put before close() is still there for the other holder. */
  g_assert_cmpuint (mpg_queue_qsize (other), ==, 1);
  v = get_ok (other);
  g_assert_cmpint (g_variant_get_int32 (v), ==, 1);
  g_assert_true (mpg_queue_task_done (other, &error));
  g_assert_no_error (error);
}

static void
test_queue_joinable (void)
{
  g_autoptr(MpgQueue) q = new_queue (0, TRUE);
  g_autoptr(MpgQueue) plain = new_queue (0, FALSE);
  g_autoptr(MpgProcess) p = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(GCancellable) cancellable = g_cancellable_new ();
  gint64 start;

  g_test_summary ("task_done() and join() as JoinableQueue's, across processes; misuse is refused");

  /* Nothing put: join returns at once. */
  g_assert_true (mpg_queue_join (q, 0, NULL, &error));
  g_assert_no_error (error);

  for (gint32 i = 0; i < 3; i++)
    put_ok (q, g_variant_new_int32 (i));
  g_assert_false (mpg_queue_join (q, 50, NULL, &error));
  g_assert_error (error, MPG_ERROR, MPG_ERROR_TIMEOUT);
  g_clear_error (&error);

  g_cancellable_cancel (cancellable);
  g_assert_false (mpg_queue_join (q, WAIT_MS, cancellable, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_clear_error (&error);

  /* The child takes each message and calls task_done() 20 ms later. */
  p = start_child (child_get_and_task_done, q, g_variant_new_int32 (3));
  start = g_get_monotonic_time ();
  g_assert_true (mpg_queue_join (q, WAIT_MS, NULL, &error));
  g_assert_no_error (error);
  g_assert_cmpint (g_get_monotonic_time () - start, >=, 50 * 1000);
  join_child (p);

  g_assert_false (mpg_queue_task_done (q, &error));
  g_assert_error (error, MPG_ERROR, MPG_ERROR_INVALID_STATE);
  g_assert_cmpstr (error->message, ==, "task_done() called too many times");
  g_clear_error (&error);

  g_assert_false (mpg_queue_task_done (plain, &error));
  g_assert_error (error, MPG_ERROR, MPG_ERROR_INVALID_STATE);
  g_clear_error (&error);
  g_assert_false (mpg_queue_join (plain, 0, NULL, &error));
  g_assert_error (error, MPG_ERROR, MPG_ERROR_INVALID_STATE);
}

typedef struct
{
  Guard guard;
  GVariant *value;
  GError *error;
  guint ticks;
} AsyncState;

static void
got_async (GObject      *object,
           GAsyncResult *result,
           gpointer      user_data)
{
  AsyncState *state = user_data;

  state->value = mpg_queue_get_finish (MPG_QUEUE (object), result, &state->error);
  g_main_loop_quit (state->guard.loop);
}

static gboolean
tick (gpointer user_data)
{
  AsyncState *state = user_data;

  state->ticks++;
  return G_SOURCE_CONTINUE;
}

static void
test_queue_get_async (void)
{
  g_autoptr(MpgQueue) q = new_queue (0, FALSE);
  g_autoptr(MpgProcess) p = NULL;
  AsyncState state = { { NULL, FALSE }, NULL, NULL, 0 };
  guint guard, ticker;
  gint32 producer, seq;

  g_test_summary ("get_async completes in a running main loop, which keeps running while it waits");

  state.guard.loop = g_main_loop_new (NULL, FALSE);
  mpg_queue_get_async (q, NULL, got_async, &state);
  p = start_child (child_put_ints, q, g_variant_new ("(iii)", 3, 1, 200));

  ticker = g_timeout_add (10, tick, &state);
  guard = g_timeout_add_seconds (10, guard_expired, &state.guard);
  g_main_loop_run (state.guard.loop);
  g_assert_false (state.guard.timed_out);
  g_source_remove (guard);
  g_source_remove (ticker);

  g_assert_no_error (state.error);
  g_assert_nonnull (state.value);
  g_variant_get (state.value, "(ii)", &producer, &seq);
  g_assert_cmpint (producer, ==, 3);
  g_assert_cmpint (seq, ==, 0);
  g_assert_cmpuint (state.ticks, >=, 5);
  g_clear_pointer (&state.value, g_variant_unref);
  join_child (p);

  /* A message already waiting is taken at the next iteration. */
  put_ok (q, g_variant_new_string ("waiting"));
  mpg_queue_get_async (q, NULL, got_async, &state);
  guard = g_timeout_add_seconds (10, guard_expired, &state.guard);
  g_main_loop_run (state.guard.loop);
  g_assert_false (state.guard.timed_out);
  g_source_remove (guard);
  g_assert_no_error (state.error);
  g_assert_cmpstr (g_variant_get_string (state.value, NULL), ==, "waiting");
  g_clear_pointer (&state.value, g_variant_unref);

  g_main_loop_unref (state.guard.loop);
}

static gboolean
cancel_later (gpointer user_data)
{
  g_cancellable_cancel (user_data);
  return G_SOURCE_REMOVE;
}

static gboolean
close_later (gpointer user_data)
{
  mpg_queue_close (user_data);
  return G_SOURCE_REMOVE;
}

static void
test_queue_get_async_cancel (void)
{
  g_autoptr(MpgQueue) q = new_queue (0, FALSE);
  g_autoptr(GCancellable) cancellable = g_cancellable_new ();
  g_autoptr(GVariant) v = NULL;
  AsyncState state = { { NULL, FALSE }, NULL, NULL, 0 };
  guint guard;
  gint64 start;

  g_test_summary ("Cancelling get_async fails it with CANCELLED at once and takes no message; close() fails it with CLOSED");

  state.guard.loop = g_main_loop_new (NULL, FALSE);
  mpg_queue_get_async (q, cancellable, got_async, &state);
  g_timeout_add (50, cancel_later, cancellable);
  guard = g_timeout_add_seconds (10, guard_expired, &state.guard);
  start = g_get_monotonic_time ();
  g_main_loop_run (state.guard.loop);
  g_assert_false (state.guard.timed_out);
  g_source_remove (guard);
  g_assert_cmpint (g_get_monotonic_time () - start, <, 1000 * 1000);
  g_assert_error (state.error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_assert_null (state.value);
  g_clear_error (&state.error);

  /* Already cancelled, with a message waiting: the message stays. */
  put_ok (q, g_variant_new_int32 (9));
  mpg_queue_get_async (q, cancellable, got_async, &state);
  guard = g_timeout_add_seconds (10, guard_expired, &state.guard);
  g_main_loop_run (state.guard.loop);
  g_assert_false (state.guard.timed_out);
  g_source_remove (guard);
  g_assert_error (state.error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_clear_error (&state.error);
  v = get_ok (q);
  g_assert_cmpint (g_variant_get_int32 (v), ==, 9);

  /* Closing the queue ends a pending get. */
  mpg_queue_get_async (q, NULL, got_async, &state);
  g_timeout_add (50, close_later, q);
  guard = g_timeout_add_seconds (10, guard_expired, &state.guard);
  g_main_loop_run (state.guard.loop);
  g_assert_false (state.guard.timed_out);
  g_source_remove (guard);
  g_assert_error (state.error, MPG_ERROR, MPG_ERROR_CLOSED);
  g_clear_error (&state.error);

  /* And a new one fails at once. */
  mpg_queue_get_async (q, NULL, got_async, &state);
  guard = g_timeout_add_seconds (10, guard_expired, &state.guard);
  g_main_loop_run (state.guard.loop);
  g_assert_false (state.guard.timed_out);
  g_source_remove (guard);
  g_assert_error (state.error, MPG_ERROR, MPG_ERROR_CLOSED);
  g_clear_error (&state.error);

  g_main_loop_unref (state.guard.loop);
}


typedef struct
{
  GMainLoop *loop;
  gint32 seen[5];
  guint n_seen;
  gboolean freed;
} WatchState;

static gboolean
watch_func (MpgQueue *queue,
            GVariant *value,
            gpointer  user_data)
{
  WatchState *state = user_data;
  gint32 producer, seq;

  g_variant_get (value, "(ii)", &producer, &seq);
  g_assert_cmpuint (state->n_seen, <, G_N_ELEMENTS (state->seen));
  state->seen[state->n_seen++] = seq;

  return state->n_seen < G_N_ELEMENTS (state->seen) ? G_SOURCE_CONTINUE : G_SOURCE_REMOVE;
}

static void
watch_freed (gpointer user_data)
{
  WatchState *state = user_data;

  state->freed = TRUE;
  g_main_loop_quit (state->loop);
}

static gboolean
watch_guard_expired (gpointer user_data)
{
  g_main_loop_quit (user_data);
  return G_SOURCE_REMOVE;
}

static gboolean
never_called (MpgQueue *queue,
              GVariant *value,
              gpointer  user_data)
{
  g_assert_not_reached ();
  return G_SOURCE_REMOVE;
}

static void
test_queue_watch (void)
{
  g_autoptr(MpgQueue) q = new_queue (0, FALSE);
  g_autoptr(MpgProcess) p = NULL;
  WatchState state = { NULL, { 0 }, 0, FALSE };
  guint id, guard;

  g_test_summary ("add_watch calls its function with each message as it arrives until told to stop, then frees its data");

  state.loop = g_main_loop_new (NULL, FALSE);
  /* Two more messages than the watch takes: they stay in the queue. */
  p = start_child (child_put_ints, q, g_variant_new ("(iii)", 1, 7, 50));
  id = mpg_queue_add_watch (q, watch_func, &state, watch_freed);
  g_assert_cmpuint (id, >, 0);
  guard = g_timeout_add_seconds (10, watch_guard_expired, state.loop);
  g_main_loop_run (state.loop);
  g_assert_true (state.freed);
  g_source_remove (guard);

  g_assert_cmpuint (state.n_seen, ==, 5);
  for (guint i = 0; i < 5; i++)
    g_assert_cmpint (state.seen[i], ==, i);
  join_child (p);
  g_assert_cmpuint (mpg_queue_qsize (q), ==, 2);

  /* Removed by its id, it frees its data and takes nothing. */
  state.freed = FALSE;
  id = mpg_queue_add_watch (q, never_called, &state, watch_freed);
  g_source_remove (id);
  g_assert_true (state.freed);
  g_assert_cmpuint (mpg_queue_qsize (q), ==, 2);

  /* Closing the queue stops a watch. */
  state.freed = FALSE;
  mpg_queue_close (q);
  g_test_expect_message ("Mpg", G_LOG_LEVEL_CRITICAL, "*closed*");
  g_assert_cmpuint (mpg_queue_add_watch (q, never_called, NULL, NULL), ==, 0);
  g_test_assert_expected_messages ();

  g_main_loop_unref (state.loop);
}

static void
test_queue_watch_closed (void)
{
  g_autoptr(MpgQueue) q = new_queue (0, FALSE);
  WatchState state = { NULL, { 0 }, 0, FALSE };
  guint guard;

  g_test_summary ("close() stops a watch, which frees its data");

  state.loop = g_main_loop_new (NULL, FALSE);
  mpg_queue_add_watch (q, never_called, &state, watch_freed);
  g_timeout_add (50, close_later, q);
  guard = g_timeout_add_seconds (10, watch_guard_expired, state.loop);
  g_main_loop_run (state.loop);
  g_assert_true (state.freed);
  g_source_remove (guard);

  g_main_loop_unref (state.loop);
}

static void
test_queue_fds (void)
{
  g_autoptr(MpgQueue) q = new_queue (0, FALSE);
  g_autoptr(GUnixFDList) fds = g_unix_fd_list_new ();
  g_autoptr(MpgProcess) p = NULL;
  g_autoptr(GError) error = NULL;
  int pipe_fds[2];
  char buf[32] = { 0 };
  gssize n;
  gint index;

  g_test_summary ("A pipe's write end put with a message is usable by the child that gets it");

  g_assert_true (g_unix_open_pipe (pipe_fds, FD_CLOEXEC, &error));
  g_assert_no_error (error);
  index = g_unix_fd_list_append (fds, pipe_fds[1], &error);
  g_assert_no_error (error);
  close (pipe_fds[1]);

  p = start_child (child_write_to_passed_fd, q, NULL);
  g_assert_true (mpg_queue_put_with_fds (q, g_variant_new ("(hs)", index, "through the queue"),
                                         fds, TRUE, WAIT_MS, NULL, &error));
  g_assert_no_error (error);
  /* The only write ends left are the child's copies. */
  g_clear_object (&fds);
  join_child (p);

  n = read (pipe_fds[0], buf, sizeof buf - 1);
  g_assert_cmpint (n, ==, strlen ("through the queue"));
  g_assert_cmpstr (buf, ==, "through the queue");
  /* End of file: nobody holds a write end any more. */
  g_assert_cmpint (read (pipe_fds[0], buf, sizeof buf), ==, 0);
  close (pipe_fds[0]);
}

static void
test_queue_fds_same_process (void)
{
  g_autoptr(MpgQueue) q = new_queue (0, FALSE);
  g_autoptr(GUnixFDList) fds = g_unix_fd_list_new ();
  g_autoptr(GUnixFDList) got_fds = NULL;
  g_autoptr(GVariant) v = NULL;
  g_autoptr(GError) error = NULL;
  int pipe_fds[2];
  int fd;
  gint32 handle;
  char c = 0;

  g_test_summary ("get_with_fds returns the fds of a message; get closes them");

  g_assert_true (g_unix_open_pipe (pipe_fds, FD_CLOEXEC, &error));
  g_unix_fd_list_append (fds, pipe_fds[1], &error);
  g_assert_no_error (error);
  close (pipe_fds[1]);

  g_assert_true (mpg_queue_put_with_fds (q, g_variant_new_handle (0), fds, FALSE, 0, NULL, &error));
  g_assert_no_error (error);
  g_assert_true (mpg_queue_put_with_fds (q, g_variant_new_handle (0), fds, FALSE, 0, NULL, &error));
  g_assert_no_error (error);
  g_clear_object (&fds);

  v = mpg_queue_get_with_fds (q, FALSE, 0, &got_fds, NULL, &error);
  g_assert_no_error (error);
  handle = g_variant_get_handle (v);
  fd = g_unix_fd_list_get (got_fds, handle, &error);
  g_assert_no_error (error);
  g_assert_cmpint (write (fd, "x", 1), ==, 1);
  close (fd);
  g_clear_object (&got_fds);
  g_clear_pointer (&v, g_variant_unref);

  /* The second copy is closed by a plain get. */
  v = get_ok (q);
  g_assert_cmpint (read (pipe_fds[0], &c, 1), ==, 1);
  g_assert_cmpint (c, ==, 'x');
  g_assert_cmpint (read (pipe_fds[0], &c, 1), ==, 0);
  close (pipe_fds[0]);
}

static void
test_queue_large (void)
{
  g_autoptr(MpgQueue) q = new_queue (0, FALSE);
  g_autoptr(MpgProcess) p = NULL;
  g_autoptr(GVariant) v = NULL;
  const guint8 *data;
  gsize len;

  g_test_summary ("A 4 MiB message from a child (the memfd path) arrives intact");

  p = start_child (child_put_large, q, NULL);
  v = get_ok (q);
  join_child (p);

  data = g_variant_get_fixed_array (v, &len, 1);
  g_assert_cmpuint (len, ==, LARGE_SIZE);
  for (gsize i = 0; i < len; i++)
    if (data[i] != large_byte (i))
      g_assert_cmpuint (i, ==, G_MAXSIZE);
  assert_empty_now (q);
}

#define N_PRODUCERS 4
#define N_PER_PRODUCER 100

static void
test_queue_processes (void)
{
  g_autoptr(MpgQueue) q = new_queue (8, FALSE);
  MpgProcess *producers[N_PRODUCERS];
  gint32 next[N_PRODUCERS] = { 0 };

  g_test_summary ("Several forked producers share a bounded queue; each one's messages arrive whole and in order");

  for (gint32 i = 0; i < N_PRODUCERS; i++)
    producers[i] = start_child (child_put_ints, q, g_variant_new ("(iii)", i, N_PER_PRODUCER, 0));

  for (guint i = 0; i < N_PRODUCERS * N_PER_PRODUCER; i++)
    {
      g_autoptr(GVariant) v = get_ok (q);
      gint32 producer, seq;

      g_variant_get (v, "(ii)", &producer, &seq);
      g_assert_cmpint (producer, >=, 0);
      g_assert_cmpint (producer, <, N_PRODUCERS);
      g_assert_cmpint (seq, ==, next[producer]);
      next[producer]++;
    }

  for (guint i = 0; i < N_PRODUCERS; i++)
    {
      join_child (producers[i]);
      g_object_unref (producers[i]);
    }
  assert_empty_now (q);
  g_assert_cmpuint (mpg_queue_qsize (q), ==, 0);
  g_assert_false (mpg_queue_full (q));
}

static void
test_queue_handle (void)
{
  g_autoptr(MpgQueue) q = new_queue (3, TRUE);
  g_autoptr(MpgQueue) copy = NULL;
  g_autoptr(MpgQueue) carrier = new_queue (0, FALSE);
  g_autoptr(MpgQueue) carried = NULL;
  g_autoptr(GUnixFDList) fds = g_unix_fd_list_new ();
  g_autoptr(GUnixFDList) got_fds = NULL;
  g_autoptr(GVariant) handle = NULL;
  g_autoptr(GVariant) got_handle = NULL;
  g_autoptr(GVariant) v = NULL;
  g_autoptr(GError) error = NULL;

  g_test_summary ("A queue rebuilt from its handle is the same queue, also after travelling through another queue");

  handle = mpg_queue_to_handle (q, fds, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (g_variant_get_type_string (handle), ==, "(hhh)");
  g_assert_cmpint (g_unix_fd_list_get_length (fds), ==, 3);

  copy = mpg_queue_new_from_handle (handle, fds, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (mpg_queue_get_maxsize (copy), ==, 3);
  g_assert_true (mpg_queue_get_joinable (copy));

  put_ok (q, g_variant_new_string ("from the original"));
  put_ok (copy, g_variant_new_string ("from the copy"));
  g_assert_cmpuint (mpg_queue_qsize (q), ==, 2);
  g_assert_cmpuint (mpg_queue_qsize (copy), ==, 2);
  v = get_ok (copy);
  g_assert_cmpstr (g_variant_get_string (v, NULL), ==, "from the original");
  g_clear_pointer (&v, g_variant_unref);
  v = get_ok (q);
  g_assert_cmpstr (g_variant_get_string (v, NULL), ==, "from the copy");
  g_clear_pointer (&v, g_variant_unref);

  /* The counters are shared: slots, and tasks. */
  put_ok (copy, g_variant_new_int32 (1));
  put_ok (copy, g_variant_new_int32 (2));
  put_ok (copy, g_variant_new_int32 (3));
  g_assert_true (mpg_queue_full (q));
  g_assert_false (mpg_queue_put (q, g_variant_new_int32 (4), FALSE, 0, NULL, &error));
  g_assert_error (error, MPG_ERROR, MPG_ERROR_FULL);
  g_clear_error (&error);
  for (guint i = 0; i < 3; i++)
    g_variant_unref (get_ok (q));
  for (guint i = 0; i < 5; i++)
    {
      g_assert_true (mpg_queue_task_done (i % 2 ? q : copy, &error));
      g_assert_no_error (error);
    }
  g_assert_true (mpg_queue_join (q, 0, NULL, &error));
  g_assert_no_error (error);
  g_assert_true (mpg_queue_join (copy, 0, NULL, &error));
  g_assert_no_error (error);

  /* Through another queue, as a handle and its fds. */
  g_assert_true (mpg_queue_put_with_fds (carrier, handle, fds, FALSE, 0, NULL, &error));
  g_assert_no_error (error);
  got_handle = mpg_queue_get_with_fds (carrier, FALSE, 0, &got_fds, NULL, &error);
  g_assert_no_error (error);
  carried = mpg_queue_new_from_handle (got_handle, got_fds, &error);
  g_assert_no_error (error);
  put_ok (carried, g_variant_new_string ("carried"));
  v = get_ok (q);
  g_assert_cmpstr (g_variant_get_string (v, NULL), ==, "carried");
  g_assert_true (mpg_queue_task_done (q, &error));
  g_assert_no_error (error);
}

static void
assert_bad_handle (GVariant    *handle,
                   GUnixFDList *fds,
                   const char  *message_part)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(MpgQueue) q = NULL;
  g_autoptr(GVariant) owned = g_variant_ref_sink (handle);

  q = mpg_queue_new_from_handle (owned, fds, &error);
  g_assert_null (q);
  g_assert_nonnull (error);
  if (g_test_verbose ())
    g_printerr ("%s\n", error->message);
  g_assert_nonnull (strstr (error->message, message_part));
}

static void
test_queue_handle_invalid (void)
{
  g_autoptr(MpgQueue) q = new_queue (0, FALSE);
  g_autoptr(GUnixFDList) fds = g_unix_fd_list_new ();
  g_autoptr(GVariant) handle = NULL;
  g_autoptr(GError) error = NULL;
  int pipe_fds[2];
  int memfd;
  gint pipe_index, socket_index, unsealed_index, small_index, bad_magic_index;
  guint32 *words;

  g_test_summary ("A corrupted queue handle is refused with a clear error");

  handle = mpg_queue_to_handle (q, fds, &error);
  g_assert_no_error (error);

  assert_bad_handle (g_variant_new ("(hh)", 0, 1), fds, "not of type (hhh)");
  assert_bad_handle (g_variant_new ("(hhh)", 0, 1, 7), fds, "out of the fd list's range");
  assert_bad_handle (g_variant_new ("(hhh)", 0, -1, 2), fds, "out of the fd list's range");

  g_assert_true (g_unix_open_pipe (pipe_fds, FD_CLOEXEC, &error));
  pipe_index = g_unix_fd_list_append (fds, pipe_fds[0], &error);
  close (pipe_fds[0]);
  close (pipe_fds[1]);
  assert_bad_handle (g_variant_new ("(hhh)", pipe_index, 1, 2), fds, "send fd is not a Unix sequenced-packet socket");
  /* A socket where the shared memory should be. */
  socket_index = 0;
  assert_bad_handle (g_variant_new ("(hhh)", 0, 1, socket_index), fds, "not a queue's");

  memfd = memfd_create ("test", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  g_assert_cmpint (ftruncate (memfd, 4096), ==, 0);
  unsealed_index = g_unix_fd_list_append (fds, memfd, &error);
  assert_bad_handle (g_variant_new ("(hhh)", 0, 1, unsealed_index), fds, "not sealed");
  g_assert_cmpint (fcntl (memfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW), ==, 0);
  bad_magic_index = g_unix_fd_list_append (fds, memfd, &error);
  assert_bad_handle (g_variant_new ("(hhh)", 0, 1, bad_magic_index), fds, "not a queue's");

  /* The right magic, a version from the future. */
  words = mmap (NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
  g_assert_true (words != MAP_FAILED);
  words[0] = 0x5147504d;
  words[1] = 99;
  assert_bad_handle (g_variant_new ("(hhh)", 0, 1, bad_magic_index), fds, "version 99");
  words[1] = 1;
  words[3] = 0x80;
  assert_bad_handle (g_variant_new ("(hhh)", 0, 1, bad_magic_index), fds, "invalid settings");
  munmap (words, 4096);
  close (memfd);

  memfd = memfd_create ("test", MFD_CLOEXEC);
  g_assert_cmpint (ftruncate (memfd, 100), ==, 0);
  small_index = g_unix_fd_list_append (fds, memfd, &error);
  close (memfd);
  assert_bad_handle (g_variant_new ("(hhh)", 0, 1, small_index), fds, "not a queue's");
  g_assert_no_error (error);
}

static gpointer
cancel_in_thread (gpointer data)
{
  g_usleep (50 * 1000);
  g_cancellable_cancel (data);
  return NULL;
}

static void
test_queue_cancel (void)
{
  g_autoptr(MpgQueue) q = new_queue (1, FALSE);
  g_autoptr(GCancellable) cancellable = g_cancellable_new ();
  g_autoptr(GVariant) v = NULL;
  g_autoptr(GError) error = NULL;
  GThread *thread;
  gint64 start;

  g_test_summary ("Blocking put and get are cancelled from another thread promptly");

  thread = g_thread_new ("cancel", cancel_in_thread, cancellable);
  start = g_get_monotonic_time ();
  v = mpg_queue_get (q, TRUE, WAIT_MS, cancellable, &error);
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_assert_cmpint (g_get_monotonic_time () - start, <, 2000 * 1000);
  g_clear_error (&error);
  g_thread_join (thread);

  /* A put waiting for a slot notices within one 50 ms slice. */
  put_ok (q, g_variant_new_int32 (1));
  g_cancellable_reset (cancellable);
  thread = g_thread_new ("cancel", cancel_in_thread, cancellable);
  start = g_get_monotonic_time ();
  g_assert_false (mpg_queue_put (q, g_variant_new_int32 (2), TRUE, WAIT_MS, cancellable, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_assert_cmpint (g_get_monotonic_time () - start, <, 2000 * 1000);
  g_thread_join (thread);
  g_assert_cmpuint (mpg_queue_qsize (q), ==, 1);
}

static gpointer
get_in_thread (gpointer data)
{
  MpgQueue *q = data;
  gint64 sum = 0;

  for (guint i = 0; i < 500; i++)
    {
      g_autoptr(GVariant) v = get_ok (q);

      sum += g_variant_get_int32 (v);
    }

  return GSIZE_TO_POINTER ((gsize) sum);
}

static void
test_queue_threads (void)
{
  g_autoptr(MpgQueue) q = new_queue (16, FALSE);
  GThread *threads[4];
  gint64 sum = 0;

  g_test_summary ("Threads of one process can get from a queue at once");

  for (guint i = 0; i < G_N_ELEMENTS (threads); i++)
    threads[i] = g_thread_new ("get", get_in_thread, q);
  for (gint32 i = 0; i < 2000; i++)
    put_ok (q, g_variant_new_int32 (i));
  for (guint i = 0; i < G_N_ELEMENTS (threads); i++)
    sum += (gint64) GPOINTER_TO_SIZE (g_thread_join (threads[i]));
  g_assert_cmpint (sum, ==, (gint64) 1999 * 2000 / 2);
}

/* Unbounded queues: put() never blocks, a buffer and its feeder */

/* Small messages, more than the socket buffer holds (about 11,000 of them
 * with the usual 4 MiB net.core.wmem_max); fewer at valgrind's pace. */
static guint
n_small (guint n)
{
  return g_getenv ("MPG_TEST_VALGRIND") != NULL ? 15000 : n;
}

#define PADDING_SIZE 8192

/* Enough messages of 8 KiB that their data alone outgrows the socket
 * buffer (the kernel doubles the wmem_max it is raised to), so that some
 * are sure to wait in the buffer. */
static guint
n_to_overflow (void)
{
  g_autofree char *contents = NULL;
  gint64 wmem_max = 0;

  if (g_file_get_contents ("/proc/sys/net/core/wmem_max", &contents, NULL, NULL))
    wmem_max = g_ascii_strtoll (contents, NULL, 10);

  return (guint) CLAMP (4 * wmem_max / PADDING_SIZE + 100, 1000, 100000);
}

static GVariant *
padded (gint32 producer,
        gint32 seq)
{
  static char padding[PADDING_SIZE + 1];

  if (padding[0] == 0)
    memset (padding, 'p', PADDING_SIZE);

  return g_variant_new ("(iis)", producer, seq, padding);
}

/* Every put returns at once, blocking or not. */
static void
put_at_once (MpgQueue *q,
             GVariant *value,
             gboolean  block)
{
  g_autoptr(GError) error = NULL;
  gint64 start = g_get_monotonic_time ();

  g_assert_true (mpg_queue_put (q, value, block, block ? WAIT_MS : 0, NULL, &error));
  g_assert_no_error (error);
  g_assert_cmpint (g_get_monotonic_time () - start, <, 2 * G_USEC_PER_SEC);
}

static void
get_in_order (MpgQueue *q,
              gint32    producer,
              guint     n)
{
  for (guint i = 0; i < n; i++)
    {
      g_autoptr(GVariant) v = get_ok (q);
      gint32 from, seq;

      g_variant_get (v, "(ii&s)", &from, &seq, NULL);
      g_assert_cmpint (from, ==, producer);
      g_assert_cmpint (seq, ==, (gint32) i);
    }
}

/* Takes (ii) messages and checks that they come from producer 0, in
 * order; returns how many. */
GVariant *
child_get_ints_in_order (GVariant  *packed,
                         gpointer   user_data,
                         GError   **error)
{
  g_autoptr(GVariant) arg = NULL;
  g_autoptr(MpgQueue) q = child_queue (packed, user_data, &arg, error);
  gint32 n = g_variant_get_int32 (arg);

  if (q == NULL)
    return NULL;

  for (gint32 i = 0; i < n; i++)
    {
      g_autoptr(GVariant) v = mpg_queue_get (q, TRUE, WAIT_MS, NULL, error);
      gint32 producer, seq;

      if (v == NULL)
        return NULL;
      g_variant_get (v, "(ii)", &producer, &seq);
      if (producer != 0 || seq != i)
        {
          g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED,
                       "Got message %d of producer %d, expected %d of 0", seq, producer, i);
          return NULL;
        }
    }

  return g_variant_new_int32 (n);
}

static void
test_queue_unbounded_never_blocks (void)
{
  g_autoptr(MpgQueue) q = new_queue (0, FALSE);
  g_autoptr(MpgProcess) p = NULL;
  g_autoptr(GVariant) result = NULL;
  g_autoptr(GError) error = NULL;
  guint n = n_small (50000);

  g_test_summary ("With nobody taking them, 50,000 puts on an unbounded queue, blocking or not, "
                  "all return at once; a child then takes them all, in order");

  for (guint i = 0; i < n; i++)
    put_at_once (q, g_variant_new ("(ii)", 0, i), i % 2 == 0);
  /* Counted when put, buffered ones too. */
  g_assert_cmpuint (mpg_queue_qsize (q), ==, n);
  g_assert_false (mpg_queue_full (q));

  p = start_child (child_get_ints_in_order, q, g_variant_new_int32 (n));
  mpg_process_join (p, WAIT_MS, NULL, &error);
  g_assert_no_error (error);
  result = mpg_process_dup_result (p, &error);
  g_assert_no_error (error);
  g_assert_cmpint (g_variant_get_int32 (result), ==, n);

  assert_empty_now (q);
  g_assert_cmpuint (mpg_queue_qsize (q), ==, 0);
}

/* Puts (ii) messages of producer arg[0] without blocking, then writes a
 * byte to the fd of handle arg[2] and returns at once. */
GVariant *
child_put_then_signal (GVariant  *packed,
                       gpointer   user_data,
                       GError   **error)
{
  g_autoptr(GVariant) arg = NULL;
  g_autoptr(MpgQueue) q = child_queue (packed, user_data, &arg, error);
  gint32 producer, n, index;
  int fd;

  if (q == NULL)
    return NULL;

  g_variant_get (arg, "(iih)", &producer, &n, &index);
  for (gint32 i = 0; i < n; i++)
    if (!mpg_queue_put (q, g_variant_new ("(ii)", producer, i), FALSE, 0, NULL, error))
      return NULL;
  fd = child_fd (user_data, index, error);
  if (fd < 0)
    return NULL;
  if (write (fd, "x", 1) != 1)
    g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_FAILED, "write failed");
  close (fd);

  return NULL;
}

static void
wait_for_byte (int fd)
{
  GPollFD pfd = { fd, G_IO_IN, 0 };
  char c;

  g_assert_cmpint (g_poll (&pfd, 1, WAIT_MS), ==, 1);
  g_assert_cmpint (read (fd, &c, 1), ==, 1);
}

static void
test_queue_unbounded_producer_exits (void)
{
  g_autoptr(MpgQueue) q = new_queue (0, FALSE);
  g_autoptr(MpgProcess) p = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(GUnixFDList) fds = g_unix_fd_list_new ();
  guint n = n_small (20000);
  int pipe_fds[2];
  gint32 index;

  g_test_summary ("A child puts 20,000 messages nobody takes yet and returns: "
                  "its exit sends all it buffered, the parent gets them all in order");

  g_assert_true (g_unix_open_pipe (pipe_fds, FD_CLOEXEC, &error));
  g_assert_no_error (error);

  /* The pipe's write end: its number for a fork child, sent with the
   * queue's fds to the others. */
  if (method == MPG_START_METHOD_FORK)
    index = pipe_fds[1];
  else
    index = g_unix_fd_list_append (fds, pipe_fds[1], &error);
  g_assert_no_error (error);
  p = start_child_with_fds (child_put_then_signal, q,
                            g_variant_new ("(iih)", 0, (gint32) n, index), fds);
  /* Every put returned while nobody was taking anything. */
  wait_for_byte (pipe_fds[0]);

  for (gint32 i = 0; i < (gint32) n; i++)
    {
      g_autoptr(GVariant) v = get_ok (q);
      gint32 producer, seq;

      g_variant_get (v, "(ii)", &producer, &seq);
      g_assert_cmpint (seq, ==, i);
    }
  join_child (p);
  assert_empty_now (q);
  g_assert_cmpuint (mpg_queue_qsize (q), ==, 0);

  close (pipe_fds[0]);
  close (pipe_fds[1]);
}

/* Puts (iis) messages of producer args[0] without blocking. */
static GVariant *
put_padded (MpgQueue  *q,
            GVariant  *args,
            GError   **error)
{
  gint32 producer, n;

  g_variant_get (args, "(ii)", &producer, &n);
  for (gint32 i = 0; i < n; i++)
    if (!mpg_queue_put (q, padded (producer, i), FALSE, 0, NULL, error))
      return NULL;

  return NULL;
}

GVariant *
child_put_padded (GVariant  *packed,
                  gpointer   user_data,
                  GError   **error)
{
  g_autoptr(GVariant) arg = NULL;
  g_autoptr(MpgQueue) q = child_queue (packed, user_data, &arg, error);

  if (q == NULL)
    return NULL;

  return put_padded (q, arg, error);
}

static void
test_queue_unbounded_fork (void)
{
  g_autoptr(MpgQueue) q = new_queue (0, FALSE);
  g_autoptr(MpgProcess) idle = NULL;
  g_autoptr(MpgProcess) producer = NULL;
  guint n = n_to_overflow ();
  guint n_child = 2000;
  guint next[2] = { 0, 0 };

  g_test_summary ("A child forked while the parent's buffer holds messages neither sends them "
                  "nor waits for them at its exit; its own buffer starts empty");

  for (guint i = 0; i < n; i++)
    put_at_once (q, padded (0, i), FALSE);

  /* Sending the parent's messages would duplicate them; waiting for them
   * would hang, as nobody takes any. */
  idle = start_child (NULL, q, NULL);
  join_child (idle);

  /* The socket is full: the child's messages wait in its own buffer,
   * which its exit sends once the parent makes room. */
  producer = start_child (child_put_padded, q, g_variant_new ("(ii)", 1, n_child));

  for (guint i = 0; i < n + n_child; i++)
    {
      g_autoptr(GVariant) v = get_ok (q);
      gint32 from, seq;

      g_variant_get (v, "(ii&s)", &from, &seq, NULL);
      g_assert_cmpint (from, >=, 0);
      g_assert_cmpint (from, <=, 1);
      g_assert_cmpint (seq, ==, next[from]);
      next[from]++;
    }
  join_child (producer);
  g_assert_cmpuint (next[0], ==, n);
  g_assert_cmpuint (next[1], ==, n_child);

  /* Both buffers are empty now: anything else would be a duplicate. */
  assert_empty_now (q);
  g_assert_cmpuint (mpg_queue_qsize (q), ==, 0);
}

typedef struct
{
  MpgQueue *queue;
  guint n;
} Drain;

static gpointer
drain_in_order (gpointer data)
{
  Drain *d = data;

  get_in_order (d->queue, 0, d->n);
  return NULL;
}

static MpgQueue *
same_queue (MpgQueue *q)
{
  g_autoptr(GUnixFDList) fds = g_unix_fd_list_new ();
  g_autoptr(GVariant) handle = NULL;
  g_autoptr(GError) error = NULL;
  MpgQueue *other;

  handle = mpg_queue_to_handle (q, fds, &error);
  g_assert_no_error (error);
  other = mpg_queue_new_from_handle (handle, fds, &error);
  g_assert_no_error (error);

  return other;
}

static void
test_queue_join_thread (void)
{
  g_autoptr(MpgQueue) q = new_queue (0, FALSE);
  g_autoptr(MpgQueue) other = same_queue (q);
  g_autoptr(MpgQueue) bounded = new_queue (2, FALSE);
  g_autoptr(GCancellable) cancellable = g_cancellable_new ();
  g_autoptr(GError) error = NULL;
  Drain drain = { other, n_to_overflow () };
  GThread *thread;
  gint64 start;

  g_test_summary ("join_thread() needs a closed queue, then waits until the buffer was sent, "
                  "with a timeout and a cancellable");

  g_assert_false (mpg_queue_join_thread (q, 0, NULL, &error));
  g_assert_error (error, MPG_ERROR, MPG_ERROR_INVALID_STATE);
  g_clear_error (&error);

  for (guint i = 0; i < drain.n; i++)
    put_at_once (q, padded (0, i), TRUE);
  mpg_queue_close (q);

  /* Nobody takes anything: the feeder cannot finish. */
  start = g_get_monotonic_time ();
  g_assert_false (mpg_queue_join_thread (q, 100, NULL, &error));
  g_assert_error (error, MPG_ERROR, MPG_ERROR_TIMEOUT);
  g_assert_cmpint (g_get_monotonic_time () - start, >=, 95 * 1000);
  g_clear_error (&error);
  g_cancellable_cancel (cancellable);
  g_assert_false (mpg_queue_join_thread (q, WAIT_MS, cancellable, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_clear_error (&error);

  /* Closed here, the queue is still open in its other holder, which takes
   * everything while the feeder goes on sending. */
  thread = g_thread_new ("drain", drain_in_order, &drain);
  g_assert_true (mpg_queue_join_thread (q, WAIT_MS, NULL, &error));
  g_assert_no_error (error);
  g_thread_join (thread);
  assert_empty_now (other);
  g_assert_cmpuint (mpg_queue_qsize (other), ==, 0);

  /* A bounded queue has no buffer. */
  put_ok (bounded, g_variant_new_int32 (1));
  mpg_queue_close (bounded);
  g_assert_true (mpg_queue_join_thread (bounded, 0, NULL, &error));
  g_assert_no_error (error);
}

GVariant *
child_put_padded_cancel_join (GVariant  *packed,
                              gpointer   user_data,
                              GError   **error)
{
  g_autoptr(GVariant) arg = NULL;
  g_autoptr(MpgQueue) q = child_queue (packed, user_data, &arg, error);

  if (q == NULL)
    return NULL;

  mpg_queue_cancel_join_thread (q);
  return put_padded (q, arg, error);
}

static void
test_queue_cancel_join_thread (void)
{
  g_autoptr(MpgQueue) q = new_queue (0, TRUE);
  g_autoptr(MpgQueue) q2 = new_queue (0, FALSE);
  g_autoptr(MpgQueue) other = same_queue (q2);
  g_autoptr(MpgProcess) p = NULL;
  g_autoptr(GError) error = NULL;
  guint n = n_to_overflow ();
  guint got = 0;

  g_test_summary ("After cancel_join_thread() a process exits without waiting for its buffer "
                  "(its messages are lost and uncounted), and join_thread() returns at once");

  p = start_child (child_put_padded_cancel_join, q, g_variant_new ("(ii)", 0, (gint32) n));
  /* Nobody takes anything, yet the child exits. */
  join_child (p);

  for (;;)
    {
      g_autoptr(GVariant) v = mpg_queue_get (q, FALSE, 0, NULL, &error);
      gint32 from, seq;

      if (v == NULL)
        break;
      g_variant_get (v, "(ii&s)", &from, &seq, NULL);
      g_assert_cmpint (seq, ==, (gint32) got);
      g_assert_true (mpg_queue_task_done (q, &error));
      g_assert_no_error (error);
      got++;
    }
  g_assert_error (error, MPG_ERROR, MPG_ERROR_EMPTY);
  g_clear_error (&error);
  g_assert_cmpuint (got, >, 0);
  g_assert_cmpuint (got, <, n);
  /* The lost messages were uncounted, but for the one the feeder may have
   * been sending. */
  g_assert_cmpuint (mpg_queue_qsize (q), <=, 1);
  if (mpg_queue_qsize (q) == 0)
    {
      g_assert_true (mpg_queue_join (q, 0, NULL, &error));
      g_assert_no_error (error);
    }

  /* In this process: join_thread() does not wait any more, and the feeder
   * goes on sending. */
  for (guint i = 0; i < n; i++)
    put_at_once (q2, padded (0, i), FALSE);
  mpg_queue_cancel_join_thread (q2);
  mpg_queue_close (q2);
  g_assert_true (mpg_queue_join_thread (q2, 0, NULL, &error));
  g_assert_no_error (error);
  get_in_order (other, 0, n);
  assert_empty_now (other);
}

static void
test_queue_unbounded_buffered_checks (void)
{
  g_autoptr(MpgQueue) q = new_queue (0, TRUE);
  g_autoptr(GUnixFDList) fds = g_unix_fd_list_new ();
  g_autoptr(GUnixFDList) got_fds = NULL;
  g_autoptr(GVariant) v = NULL;
  g_autoptr(GError) error = NULL;
  guint n = n_to_overflow ();
  int pipe_fds[2];
  int fd;
  char c = 0;

  g_test_summary ("Behind a non-empty buffer, a put fails as a direct send would (too large, "
                  "bad handle), and a message's fds are copied: the caller may close its own");

  g_assert_true (g_unix_open_pipe (pipe_fds, FD_CLOEXEC, &error));
  g_assert_no_error (error);
  g_unix_fd_list_append (fds, pipe_fds[1], &error);
  g_assert_no_error (error);
  close (pipe_fds[1]);

  for (guint i = 0; i < n; i++)
    put_at_once (q, padded (0, i), FALSE);

  mpg_queue_set_max_message_size (q, 2 * PADDING_SIZE);
  g_assert_false (mpg_queue_put (q, g_variant_new_take_string (g_strnfill (4 * PADDING_SIZE, 'x')),
                                 FALSE, 0, NULL, &error));
  g_assert_error (error, MPG_ERROR, MPG_ERROR_TOO_LARGE);
  g_clear_error (&error);
  g_assert_false (mpg_queue_put_with_fds (q, g_variant_new_handle (1), fds, FALSE, 0, NULL, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);
  g_assert_cmpuint (mpg_queue_qsize (q), ==, n);

  g_assert_true (mpg_queue_put_with_fds (q, g_variant_new_handle (0), fds, FALSE, 0, NULL, &error));
  g_assert_no_error (error);
  g_clear_object (&fds);

  get_in_order (q, 0, n);
  v = mpg_queue_get_with_fds (q, TRUE, WAIT_MS, &got_fds, NULL, &error);
  g_assert_no_error (error);
  fd = g_unix_fd_list_get (got_fds, g_variant_get_handle (v), &error);
  g_assert_no_error (error);
  g_assert_cmpint (write (fd, "x", 1), ==, 1);
  close (fd);
  g_clear_object (&got_fds);
  g_assert_cmpint (read (pipe_fds[0], &c, 1), ==, 1);
  g_assert_cmpint (c, ==, 'x');
  /* No other copy of the write end is left, in the buffer or elsewhere. */
  g_assert_cmpint (read (pipe_fds[0], &c, 1), ==, 0);
  close (pipe_fds[0]);

  /* The refused messages were not counted as tasks. */
  for (guint i = 0; i < n + 1; i++)
    {
      g_assert_true (mpg_queue_task_done (q, &error));
      g_assert_no_error (error);
    }
  g_assert_true (mpg_queue_join (q, 0, NULL, &error));
  g_assert_no_error (error);
}

static void
test_queue_initable (void)
{
  g_autoptr(MpgQueue) q = NULL;
  g_autoptr(MpgQueue) raw = NULL;
  g_autoptr(GError) error = NULL;

  g_test_summary ("g_initable_new() builds a queue from its properties; an uninitialised one refuses calls");

  q = g_initable_new (MPG_TYPE_QUEUE, NULL, &error, "maxsize", 2, "joinable", TRUE, NULL);
  g_assert_no_error (error);
  g_assert_cmpuint (mpg_queue_get_maxsize (q), ==, 2);
  g_assert_true (mpg_queue_get_joinable (q));
  put_ok (q, g_variant_new_int32 (1));
  g_variant_unref (get_ok (q));

  raw = g_object_new (MPG_TYPE_QUEUE, NULL);
  g_assert_false (mpg_queue_put (raw, g_variant_new_int32 (1), FALSE, 0, NULL, &error));
  g_assert_error (error, MPG_ERROR, MPG_ERROR_INVALID_STATE);
}

/* ALL: run under every start method; the others in the fork run only. */
static void
test_queue_unbounded_buffer_limit (void)
{
  g_autoptr(MpgQueue) q = new_queue (0, FALSE);
  g_autoptr(GCancellable) cancellable = g_cancellable_new ();
  g_autoptr(GError) error = NULL;
  g_autoptr(GBytes) payload = NULL;
  guint8 *data = g_malloc0 (16384);
  guint puts = 0;
  gint64 start;

  g_test_summary ("max-buffer-size limits an unbounded queue's buffer: a put that would pass it "
                  "fails with FULL (at once, or after its timeout), or waits for the feeder");

  payload = g_bytes_new_take (data, 16384);
  g_assert_cmpuint (mpg_queue_get_max_buffer_size (q), ==, 0);
  mpg_queue_set_max_buffer_size (q, 65536);
  g_assert_cmpuint (mpg_queue_get_max_buffer_size (q), ==, 65536);

  /* Nobody takes: the socket fills, then the buffer, then FULL. */
  for (;;)
    {
      GVariant *v = g_variant_new_from_bytes (G_VARIANT_TYPE_BYTESTRING, payload, TRUE);

      if (!mpg_queue_put (q, v, FALSE, 0, NULL, &error))
        break;
      puts++;
      g_assert_cmpuint (puts, <, 100000);
    }
  g_assert_error (error, MPG_ERROR, MPG_ERROR_FULL);
  g_assert_nonnull (strstr (error->message, "max-buffer-size"));
  g_test_message ("%u puts of 16 KiB before FULL: %s", puts, error->message);
  g_clear_error (&error);
  /* The refused ones are not counted. */
  g_assert_cmpuint (mpg_queue_qsize (q), ==, puts);

  /* With a timeout: FULL after it. */
  start = g_get_monotonic_time ();
  g_assert_false (mpg_queue_put (q, g_variant_new_from_bytes (G_VARIANT_TYPE_BYTESTRING, payload, TRUE),
                                 TRUE, 150, NULL, &error));
  g_assert_error (error, MPG_ERROR, MPG_ERROR_FULL);
  g_assert_cmpint (g_get_monotonic_time () - start, >=, 140 * 1000);
  g_clear_error (&error);

  /* Cancelled while waiting. */
  g_cancellable_cancel (cancellable);
  g_assert_false (mpg_queue_put (q, g_variant_new_from_bytes (G_VARIANT_TYPE_BYTESTRING, payload, TRUE),
                                 TRUE, -1, cancellable, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_clear_error (&error);

  /* A reader makes room: every message comes, and a blocking put passes. */
  for (guint i = 0; i < puts; i++)
    {
      g_autoptr(GVariant) got = mpg_queue_get (q, TRUE, WAIT_MS, NULL, &error);

      g_assert_no_error (error);
      g_assert_cmpuint (g_variant_get_size (got), ==, 16384);
    }
  g_assert_true (mpg_queue_put (q, g_variant_new_from_bytes (G_VARIANT_TYPE_BYTESTRING, payload, TRUE),
                                TRUE, WAIT_MS, NULL, &error));
  g_assert_no_error (error);
  {
    g_autoptr(GVariant) got = mpg_queue_get (q, TRUE, WAIT_MS, NULL, &error);

    g_assert_no_error (error);
  }
  assert_empty_now (q);
}

typedef enum
{
  ALL,
  /* Starts no process: the same under every method. */
  ONCE,
  /* Its point is fork's: the child's copy of the parent's queue object. */
  FORK_ONLY,
} Methods;

static const struct
{
  const char *name;
  GTestFunc func;
  Methods methods;
} tests[] = {
  { "round-trip", test_queue_round_trip, ONCE },
  { "fifo", test_queue_fifo, ONCE },
  { "get-empty", test_queue_get_empty, ONCE },
  { "full", test_queue_full, ONCE },
  { "blocked-put-released", test_queue_blocked_put_released, ALL },
  { "blocked-get-released", test_queue_blocked_get_released, ALL },
  { "sizes", test_queue_sizes, ONCE },
  { "properties", test_queue_properties, ONCE },
  { "close", test_queue_close, ONCE },
  { "joinable", test_queue_joinable, ALL },
  { "get-async", test_queue_get_async, ALL },
  { "get-async-cancel", test_queue_get_async_cancel, ONCE },
  { "watch", test_queue_watch, ALL },
  { "watch-closed", test_queue_watch_closed, ONCE },
  { "fds", test_queue_fds, ALL },
  { "fds-same-process", test_queue_fds_same_process, ONCE },
  { "large", test_queue_large, ALL },
  { "processes", test_queue_processes, ALL },
  { "handle", test_queue_handle, ONCE },
  { "handle-invalid", test_queue_handle_invalid, ONCE },
  { "cancel", test_queue_cancel, ONCE },
  { "threads", test_queue_threads, ONCE },
  { "initable", test_queue_initable, ONCE },
  { "unbounded/never-blocks", test_queue_unbounded_never_blocks, ALL },
  { "unbounded/producer-exits", test_queue_unbounded_producer_exits, ALL },
  /* What a forked child does with the parent's buffer, which it inherits
   * with the queue object: a spawned child has neither. */
  { "unbounded/fork", test_queue_unbounded_fork, FORK_ONLY },
  { "unbounded/buffered-checks", test_queue_unbounded_buffered_checks, ONCE },
  { "unbounded/buffer-limit", test_queue_unbounded_buffer_limit, ONCE },
  { "join-thread", test_queue_join_thread, ONCE },
  { "cancel-join-thread", test_queue_cancel_join_thread, ALL },
};

int
main (int   argc,
      char *argv[])
{
  const char *env;
  const char *method_name;

  /* First: in a spawned or forkserver child this runs the task and never
   * returns. */
  mpg_init (&argc, &argv);

  g_test_init (&argc, &argv, NULL);

  env = g_getenv ("MPG_TEST_START_METHOD");
  method_name = env != NULL ? env : "fork";
  if (g_str_equal (method_name, "fork"))
    method = MPG_START_METHOD_FORK;
  else if (g_str_equal (method_name, "spawn"))
    method = MPG_START_METHOD_SPAWN;
  else if (g_str_equal (method_name, "forkserver"))
    method = MPG_START_METHOD_FORKSERVER;
  else
    g_error ("MPG_TEST_START_METHOD: unknown start method '%s'", env);

  for (guint i = 0; i < G_N_ELEMENTS (tests); i++)
    {
      g_autofree char *path = NULL;

      if (method != MPG_START_METHOD_FORK && tests[i].methods != ALL)
        continue;
      if (method == MPG_START_METHOD_FORK)
        path = g_strdup_printf ("/Mpg/Queue/%s", tests[i].name);
      else
        path = g_strdup_printf ("/Mpg/Queue/%s/%s", method_name, tests[i].name);
      g_test_add_func (path, tests[i].func);
    }

  return g_test_run ();
}
