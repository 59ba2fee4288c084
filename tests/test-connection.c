/* test-connection.c: MpgConnection, mpg_pipe_new() and mpg_wait()
 *
 * Copyright 2026 The libmpg authors
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/socket.h>

#include <glib-unix.h>
#include <libmpg.h>

#include "mpg-wire-private.h"

/* Bounds every wait of these tests: a hang is a failure, not a time-out of
 * the whole run. */
#define TIMEOUT_MS 10000

static void
make_pipe (gboolean        duplex,
           MpgConnection **a,
           MpgConnection **b)
{
  g_autoptr(GError) error = NULL;

  g_assert_true (mpg_pipe_new (duplex, a, b, &error));
  g_assert_no_error (error);
  g_assert_true (MPG_IS_CONNECTION (*a));
  g_assert_true (MPG_IS_CONNECTION (*b));
}

static void
send_ok (MpgConnection *conn,
         GVariant      *value)
{
  g_autoptr(GError) error = NULL;

  g_assert_true (mpg_connection_send (conn, value, NULL, &error));
  g_assert_no_error (error);
}

/* A receive that cannot hang: poll with a bound first. */
static GVariant *
recv_ok (MpgConnection *conn)
{
  g_autoptr(GError) error = NULL;
  GVariant *value;

  g_assert_true (mpg_connection_poll (conn, TIMEOUT_MS, NULL, &error));
  g_assert_no_error (error);
  value = mpg_connection_recv (conn, NULL, &error);
  g_assert_no_error (error);
  g_assert_nonnull (value);
  return value;
}

static void
recv_fails (MpgConnection *conn,
            GQuark         domain,
            gint           code)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GVariant) value = NULL;

  g_assert_true (mpg_connection_poll (conn, TIMEOUT_MS, NULL, &error));
  g_assert_no_error (error);
  value = mpg_connection_recv (conn, NULL, &error);
  g_assert_error (error, domain, code);
  g_assert_null (value);
}

static void
assert_finalized_on_unref (MpgConnection **conn)
{
  g_object_add_weak_pointer (G_OBJECT (*conn), (gpointer *) conn);
  g_object_unref (*conn);
  g_assert_null (*conn);
}

static void
test_connection_duplex (void)
{
  MpgConnection *a = NULL, *b = NULL;
  GVariant *values[6];

  g_test_summary ("A duplex pipe carries values of any type both ways, unchanged");

  make_pipe (TRUE, &a, &b);
  g_assert_true (mpg_connection_get_readable (a));
  g_assert_true (mpg_connection_get_writable (a));
  g_assert_true (mpg_connection_get_readable (b));
  g_assert_true (mpg_connection_get_writable (b));
  g_assert_false (mpg_connection_get_closed (a));
  g_assert_cmpint (mpg_connection_get_fd (a), >=, 0);
  g_assert_cmpint (mpg_connection_get_fd (b), >=, 0);
  g_assert_cmpint (mpg_connection_get_fd (a), !=, mpg_connection_get_fd (b));

  /* Python's conn.send([42, None, 'hello']) */
  values[0] = g_variant_ref_sink (g_variant_new ("(imvs)", 42, NULL, "hello"));
  values[1] = g_variant_ref_sink (g_variant_new_string (""));
  values[2] = g_variant_ref_sink (g_variant_new ("a{sv}", NULL));
  values[3] = g_variant_ref_sink (g_variant_new_parsed ("{'x': <[1.5, 2.5]>, 'y': <(uint64 7, [byte 0x01], @ms nothing)>}"));
  values[4] = g_variant_ref_sink (g_variant_new ("()"));
  values[5] = g_variant_ref_sink (g_variant_new_parsed ("[<<'nested'>>, <@ai []>]"));

  for (guint i = 0; i < G_N_ELEMENTS (values); i++)
    {
      g_autoptr(GVariant) got_b = NULL;
      g_autoptr(GVariant) got_a = NULL;

      send_ok (a, values[i]);
      got_b = recv_ok (b);
      g_assert_true (g_variant_equal (got_b, values[i]));
      g_assert_false (g_variant_is_floating (got_b));

      send_ok (b, values[i]);
      got_a = recv_ok (a);
      g_assert_true (g_variant_equal (got_a, values[i]));
    }

  for (guint i = 0; i < G_N_ELEMENTS (values); i++)
    g_variant_unref (values[i]);

  /* A floating value passed to send() is sunk and freed. */
  send_ok (a, g_variant_new_int32 (1));
  g_variant_unref (recv_ok (b));

  assert_finalized_on_unref (&a);
  assert_finalized_on_unref (&b);
}

static void
test_connection_order (void)
{
  g_autoptr(MpgConnection) a = NULL;
  g_autoptr(MpgConnection) b = NULL;
  /* The socket holds about 270 small messages: this sender has no
   * receiver running, so it must not fill it. */
  const guint n = 200;

  g_test_summary ("Messages arrive in the order they were sent, each whole");

  make_pipe (TRUE, &a, &b);

  for (guint i = 0; i < n; i++)
    send_ok (a, g_variant_new ("(us)", i, i % 50 == 0 ? "x" : ""));
  for (guint i = 0; i < n; i++)
    {
      g_autoptr(GVariant) got = recv_ok (b);
      guint32 k;

      g_variant_get (got, "(u&s)", &k, NULL);
      g_assert_cmpuint (k, ==, i);
    }
  g_assert_false (mpg_connection_poll (b, 0, NULL, NULL));
}

static void
test_connection_one_way (void)
{
  g_autoptr(MpgConnection) r = NULL;
  g_autoptr(MpgConnection) w = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(GVariant) got = NULL;
  g_autoptr(GBytes) bytes = NULL;
  g_autoptr(GUnixFDList) fd_list = g_unix_fd_list_new ();
  gboolean readable, writable;

  g_test_summary ("A one-way pipe: the first end only receives, the second only sends; "
                  "misuse fails as Python's OSError");

  make_pipe (FALSE, &r, &w);
  g_object_get (r, "readable", &readable, "writable", &writable, NULL);
  g_assert_true (readable);
  g_assert_false (writable);
  g_object_get (w, "readable", &readable, "writable", &writable, NULL);
  g_assert_false (readable);
  g_assert_true (writable);

  send_ok (w, g_variant_new_string ("one way"));
  got = recv_ok (r);
  g_assert_cmpstr (g_variant_get_string (got, NULL), ==, "one way");

  g_assert_false (mpg_connection_send (r, g_variant_new_int32 (1), NULL, &error));
  g_assert_error (error, MPG_ERROR, MPG_ERROR_INVALID_STATE);
  g_assert_nonnull (strstr (error->message, "read-only"));
  g_clear_error (&error);

  bytes = g_bytes_new_static ("x", 1);
  g_assert_false (mpg_connection_send_bytes (r, bytes, NULL, &error));
  g_assert_error (error, MPG_ERROR, MPG_ERROR_INVALID_STATE);
  g_clear_error (&error);

  g_assert_false (mpg_connection_send_with_fds (r, g_variant_new_int32 (1), fd_list, NULL, &error));
  g_assert_error (error, MPG_ERROR, MPG_ERROR_INVALID_STATE);
  g_clear_error (&error);

  g_assert_null (mpg_connection_recv (w, NULL, &error));
  g_assert_error (error, MPG_ERROR, MPG_ERROR_INVALID_STATE);
  g_assert_nonnull (strstr (error->message, "write-only"));
  g_clear_error (&error);

  g_assert_null (mpg_connection_recv_bytes (w, NULL, &error));
  g_assert_error (error, MPG_ERROR, MPG_ERROR_INVALID_STATE);
  g_clear_error (&error);

  g_assert_false (mpg_connection_poll (w, 0, NULL, &error));
  g_assert_error (error, MPG_ERROR, MPG_ERROR_INVALID_STATE);
  g_clear_error (&error);

  /* Even at the socket level, the reverse direction is shut. */
  g_assert_cmpint (send (mpg_connection_get_fd (r), "x", 1, MSG_DONTWAIT | MSG_NOSIGNAL), <, 0);
  g_assert_cmpint (errno, ==, EPIPE);

  /* The writer's close is the reader's end of file. */
  mpg_connection_close (w);
  recv_fails (r, MPG_ERROR, MPG_ERROR_END_OF_STREAM);
}

static void
test_connection_bytes (void)
{
  g_autoptr(MpgConnection) a = NULL;
  g_autoptr(MpgConnection) b = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(GBytes) sent = g_bytes_new_static ("hello\0world", 11);
  g_autoptr(GBytes) empty = g_bytes_new_static ("", 0);
  g_autoptr(GBytes) got = NULL;
  g_autoptr(GBytes) got_empty = NULL;
  g_autoptr(GVariant) as_value = NULL;
  g_autoptr(GVariant) after = NULL;

  g_test_summary ("send_bytes/recv_bytes carry bytes as an ay message; recv_bytes refuses other types");

  make_pipe (TRUE, &a, &b);

  g_assert_true (mpg_connection_send_bytes (a, sent, NULL, &error));
  g_assert_no_error (error);
  g_assert_true (mpg_connection_poll (b, TIMEOUT_MS, NULL, &error));
  got = mpg_connection_recv_bytes (b, NULL, &error);
  g_assert_no_error (error);
  g_assert_true (g_bytes_equal (got, sent));

  g_assert_true (mpg_connection_send_bytes (a, empty, NULL, &error));
  g_assert_true (mpg_connection_poll (b, TIMEOUT_MS, NULL, &error));
  got_empty = mpg_connection_recv_bytes (b, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (g_bytes_get_size (got_empty), ==, 0);

  /* recv() of what send_bytes() sent is the ay value. */
  g_assert_true (mpg_connection_send_bytes (a, sent, NULL, &error));
  as_value = recv_ok (b);
  g_assert_cmpstr (g_variant_get_type_string (as_value), ==, "ay");
  g_assert_cmpmem (g_variant_get_data (as_value), g_variant_get_size (as_value), "hello\0world", 11);

  /* recv_bytes() of a message of another type fails, and consumes it;
   * the next message is received. */
  send_ok (a, g_variant_new_string ("not bytes"));
  send_ok (a, g_variant_new_int32 (5));
  g_assert_true (mpg_connection_poll (b, TIMEOUT_MS, NULL, &error));
  g_assert_null (mpg_connection_recv_bytes (b, NULL, &error));
  g_assert_error (error, MPG_ERROR, MPG_ERROR_PROTOCOL);
  g_clear_error (&error);
  after = recv_ok (b);
  g_assert_cmpint (g_variant_get_int32 (after), ==, 5);
}

static void
test_connection_large (void)
{
  g_autoptr(MpgConnection) a = NULL;
  g_autoptr(MpgConnection) b = NULL;
  g_autoptr(GError) error = NULL;
  gsize size = 16 * 1024 * 1024;
  guint8 *data = g_malloc (size);
  g_autoptr(GBytes) sent = NULL;
  g_autoptr(GBytes) got = NULL;
  g_autoptr(GVariant) value = NULL;
  g_autoptr(GVariant) got_value = NULL;

  g_test_summary ("A 16 MiB message (the memfd path) arrives whole, as bytes and as a value");

  for (gsize i = 0; i < size; i++)
    data[i] = (guint8) (i * 7 + (i >> 12));
  sent = g_bytes_new_take (data, size);

  make_pipe (TRUE, &a, &b);

  g_assert_true (mpg_connection_send_bytes (a, sent, NULL, &error));
  g_assert_no_error (error);
  g_assert_true (mpg_connection_poll (b, TIMEOUT_MS, NULL, &error));
  got = mpg_connection_recv_bytes (b, NULL, &error);
  g_assert_no_error (error);
  g_assert_true (g_bytes_equal (got, sent));

  value = g_variant_ref_sink (g_variant_new ("(s@ay)", "big",
                                             g_variant_new_from_bytes (G_VARIANT_TYPE_BYTESTRING, sent, TRUE)));
  send_ok (b, value);
  got_value = recv_ok (a);
  g_assert_true (g_variant_equal (got_value, value));
}

static void
notify_count (GObject    *object,
              GParamSpec *pspec,
              gpointer    user_data)
{
  guint *count = user_data;

  (*count)++;
}

static void
test_connection_too_large (void)
{
  g_autoptr(MpgConnection) a = NULL;
  g_autoptr(MpgConnection) b = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *long_string = g_strnfill (200, 'x');
  g_autofree guint8 *big = g_malloc0 (2 * 1024 * 1024);
  g_autoptr(GVariant) got = NULL;
  g_autoptr(GVariant) got2 = NULL;
  guint64 max = 0;
  guint notified = 0;

  g_test_summary ("max-message-size is enforced on sending and on receiving, inline and memfd");

  make_pipe (TRUE, &a, &b);
  g_assert_cmpuint (mpg_connection_get_max_message_size (a), ==, MPG_WIRE_DEFAULT_MAX);
  g_signal_connect (a, "notify::max-message-size", G_CALLBACK (notify_count), &notified);

  /* The sender refuses. */
  g_object_set (a, "max-message-size", (guint64) 100, NULL);
  g_assert_cmpuint (notified, ==, 1);
  mpg_connection_set_max_message_size (a, 100);
  g_assert_cmpuint (notified, ==, 1);
  g_object_get (a, "max-message-size", &max, NULL);
  g_assert_cmpuint (max, ==, 100);

  g_assert_false (mpg_connection_send (a, g_variant_new_string (long_string), NULL, &error));
  g_assert_error (error, MPG_ERROR, MPG_ERROR_TOO_LARGE);
  g_clear_error (&error);
  send_ok (a, g_variant_new_string ("short"));
  got = recv_ok (b);
  g_assert_cmpstr (g_variant_get_string (got, NULL), ==, "short");

  /* The receiver refuses, drops the message, and goes on. */
  mpg_connection_set_max_message_size (b, 100);
  send_ok (a, g_variant_new_string ("ok"));
  mpg_connection_set_max_message_size (a, MPG_WIRE_DEFAULT_MAX);
  g_assert_cmpuint (notified, ==, 2);
  send_ok (a, g_variant_new_string (long_string));
  send_ok (a, g_variant_new_fixed_array (G_VARIANT_TYPE_BYTE, big, 2 * 1024 * 1024, 1));
  send_ok (a, g_variant_new_int32 (3));

  g_clear_pointer (&got, g_variant_unref);
  got = recv_ok (b);
  g_assert_cmpstr (g_variant_get_string (got, NULL), ==, "ok");
  recv_fails (b, MPG_ERROR, MPG_ERROR_TOO_LARGE);
  recv_fails (b, MPG_ERROR, MPG_ERROR_TOO_LARGE);
  got2 = recv_ok (b);
  g_assert_cmpint (g_variant_get_int32 (got2), ==, 3);
}

static void
test_connection_fds (void)
{
  g_autoptr(MpgConnection) a = NULL;
  g_autoptr(MpgConnection) b = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(GUnixFDList) fd_list = g_unix_fd_list_new ();
  g_autoptr(GUnixFDList) got_list = NULL;
  g_autoptr(GVariant) got = NULL;
  g_autoptr(GVariant) plain = NULL;
  int pipe_fds[2];
  const char *label;
  gint32 handle;
  int fd;
  char buf[16] = { 0 };

  g_test_summary ("A pipe's write end sent with send_with_fds can be used by the receiver");

  make_pipe (TRUE, &a, &b);
  g_assert_true (g_unix_open_pipe (pipe_fds, FD_CLOEXEC, &error));
  g_assert_no_error (error);
  g_assert_cmpint (g_unix_fd_list_append (fd_list, pipe_fds[1], &error), ==, 0);
  close (pipe_fds[1]);

  g_assert_true (mpg_connection_send_with_fds (a, g_variant_new ("(sh)", "write end", 0),
                                               fd_list, NULL, &error));
  g_assert_no_error (error);

  g_assert_true (mpg_connection_poll (b, TIMEOUT_MS, NULL, &error));
  got = mpg_connection_recv_with_fds (b, &got_list, NULL, &error);
  g_assert_no_error (error);
  g_assert_nonnull (got_list);
  g_assert_cmpint (g_unix_fd_list_get_length (got_list), ==, 1);
  g_variant_get (got, "(&sh)", &label, &handle);
  g_assert_cmpstr (label, ==, "write end");
  g_assert_cmpint (handle, ==, 0);

  fd = g_unix_fd_list_get (got_list, handle, &error);
  g_assert_no_error (error);
  g_assert_cmpint (write (fd, "ping", 4), ==, 4);
  close (fd);
  g_clear_object (&got_list);
  /* Our copy went back to the sender's list: drop it, then the only
   * writer left is gone and the reader sees the end of file. */
  g_clear_object (&fd_list);
  g_assert_cmpint (read (pipe_fds[0], buf, sizeof buf), ==, 4);
  g_assert_cmpstr (buf, ==, "ping");
  g_assert_cmpint (read (pipe_fds[0], buf, sizeof buf), ==, 0);
  close (pipe_fds[0]);

  /* A handle outside the list is the sender's mistake. */
  fd_list = g_unix_fd_list_new ();
  g_assert_false (mpg_connection_send_with_fds (a, g_variant_new ("(v)", g_variant_new_handle (0)),
                                                fd_list, NULL, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);

  /* Without fds, or with a NULL list, a message arrives with no list. */
  g_assert_true (mpg_connection_send_with_fds (a, g_variant_new_int32 (9), NULL, NULL, &error));
  g_assert_no_error (error);
  g_assert_true (mpg_connection_poll (b, TIMEOUT_MS, NULL, &error));
  plain = mpg_connection_recv_with_fds (b, &got_list, NULL, &error);
  g_assert_no_error (error);
  g_assert_null (got_list);
  g_assert_cmpint (g_variant_get_int32 (plain), ==, 9);
}

static void
test_connection_fds_dropped (void)
{
  g_autoptr(MpgConnection) a = NULL;
  g_autoptr(MpgConnection) b = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(GUnixFDList) fd_list = g_unix_fd_list_new ();
  g_autoptr(GVariant) got = NULL;
  int pipe_fds[2];
  char c;

  g_test_summary ("recv() closes the fds that came with a message");

  make_pipe (TRUE, &a, &b);
  g_assert_true (g_unix_open_pipe (pipe_fds, FD_CLOEXEC, &error));
  g_unix_fd_list_append (fd_list, pipe_fds[1], &error);
  g_assert_no_error (error);
  close (pipe_fds[1]);
  g_assert_true (mpg_connection_send_with_fds (a, g_variant_new_handle (0), fd_list, NULL, &error));
  g_assert_no_error (error);
  g_clear_object (&fd_list);

  got = recv_ok (b);
  g_assert_cmpint (g_variant_get_handle (got), ==, 0);
  g_assert_cmpint (read (pipe_fds[0], &c, 1), ==, 0);
  close (pipe_fds[0]);
}

static gboolean
cancel_cb (gpointer user_data)
{
  gint64 *cancelled_at = g_object_get_data (user_data, "cancelled-at");

  if (cancelled_at != NULL)
    *cancelled_at = g_get_monotonic_time ();
  g_cancellable_cancel (user_data);
  return G_SOURCE_REMOVE;
}

static gpointer
cancel_later_thread (gpointer user_data)
{
  g_usleep (50 * 1000);
  g_cancellable_cancel (user_data);
  return NULL;
}

static void
test_connection_poll (void)
{
  g_autoptr(MpgConnection) a = NULL;
  g_autoptr(MpgConnection) b = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(GCancellable) cancellable = g_cancellable_new ();
  g_autoptr(GVariant) got = NULL;
  GThread *thread;
  gint64 start;

  g_test_summary ("poll() times out with FALSE and no error, is TRUE with a message or at "
                  "the end of file, and can be cancelled");

  make_pipe (TRUE, &a, &b);

  g_assert_false (mpg_connection_poll (b, 0, NULL, &error));
  g_assert_no_error (error);
  start = g_get_monotonic_time ();
  g_assert_false (mpg_connection_poll (b, 50, NULL, &error));
  g_assert_no_error (error);
  g_assert_cmpint (g_get_monotonic_time () - start, >=, 50 * 1000);

  send_ok (a, g_variant_new_int32 (1));
  g_assert_true (mpg_connection_poll (b, 0, NULL, &error));
  g_assert_no_error (error);
  /* poll() does not consume. */
  g_assert_true (mpg_connection_poll (b, TIMEOUT_MS, NULL, &error));
  got = recv_ok (b);
  g_assert_false (mpg_connection_poll (b, 0, NULL, &error));
  g_assert_no_error (error);

  /* Cancelled while waiting (for ever), from another thread. */
  thread = g_thread_new ("cancel", cancel_later_thread, cancellable);
  g_assert_false (mpg_connection_poll (b, -1, cancellable, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_clear_error (&error);
  g_thread_join (thread);

  /* A blocking recv() is cancelled the same way. */
  g_cancellable_reset (cancellable);
  thread = g_thread_new ("cancel", cancel_later_thread, cancellable);
  g_assert_null (mpg_connection_recv (b, cancellable, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_clear_error (&error);
  g_thread_join (thread);

  /* The end of file counts as something to receive. */
  mpg_connection_close (a);
  g_assert_true (mpg_connection_poll (b, TIMEOUT_MS, NULL, &error));
  g_assert_no_error (error);

  mpg_connection_close (b);
  g_assert_false (mpg_connection_poll (b, 0, NULL, &error));
  g_assert_error (error, MPG_ERROR, MPG_ERROR_CLOSED);
}

static void
test_connection_eof (void)
{
  g_autoptr(MpgConnection) a = NULL;
  g_autoptr(MpgConnection) b = NULL;
  g_autoptr(GError) error = NULL;

  g_test_summary ("Messages sent before the peer closed still arrive, then END_OF_STREAM, every time");

  make_pipe (TRUE, &a, &b);
  for (gint i = 0; i < 3; i++)
    send_ok (a, g_variant_new_int32 (i));
  /* A large one too: its memfd travels in flight. */
  send_ok (a, g_variant_new_take_string (g_strnfill (MPG_WIRE_HEADER_SIZE * 10000, 'z')));
  g_clear_object (&a);   /* finalising closes */

  for (gint i = 0; i < 3; i++)
    {
      g_autoptr(GVariant) got = recv_ok (b);

      g_assert_cmpint (g_variant_get_int32 (got), ==, i);
    }
  g_variant_unref (recv_ok (b));

  recv_fails (b, MPG_ERROR, MPG_ERROR_END_OF_STREAM);
  recv_fails (b, MPG_ERROR, MPG_ERROR_END_OF_STREAM);
  g_assert_null (mpg_connection_recv_bytes (b, NULL, &error));
  g_assert_error (error, MPG_ERROR, MPG_ERROR_END_OF_STREAM);
  g_clear_error (&error);

  /* Sending the other way fails too: nobody is there. */
  g_assert_false (mpg_connection_send (b, g_variant_new_int32 (0), NULL, &error));
  g_assert_error (error, MPG_ERROR, MPG_ERROR_END_OF_STREAM);
}

static void
test_connection_broken_pipe (void)
{
  g_autoptr(MpgConnection) a = NULL;
  g_autoptr(MpgConnection) b = NULL;
  g_autoptr(MpgConnection) r = NULL;
  g_autoptr(MpgConnection) w = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *big = g_strnfill (1024 * 1024, 'b');
  void (*old_handler) (int);

  g_test_summary ("Sending to a closed peer is END_OF_STREAM (Python's BrokenPipeError), never SIGPIPE");

  /* With the default disposition, a SIGPIPE would kill this test. */
  old_handler = signal (SIGPIPE, SIG_DFL);

  make_pipe (TRUE, &a, &b);
  mpg_connection_close (b);
  g_assert_false (mpg_connection_send (a, g_variant_new_int32 (1), NULL, &error));
  g_assert_error (error, MPG_ERROR, MPG_ERROR_END_OF_STREAM);
  g_clear_error (&error);
  g_assert_false (mpg_connection_send (a, g_variant_new_string (big), NULL, &error));
  g_assert_error (error, MPG_ERROR, MPG_ERROR_END_OF_STREAM);
  g_clear_error (&error);

  make_pipe (FALSE, &r, &w);
  mpg_connection_close (r);
  g_assert_false (mpg_connection_send (w, g_variant_new_int32 (1), NULL, &error));
  g_assert_error (error, MPG_ERROR, MPG_ERROR_END_OF_STREAM);
  g_clear_error (&error);

  signal (SIGPIPE, old_handler);
}

static void
test_connection_send_cancel (void)
{
  g_autoptr(MpgConnection) a = NULL;
  g_autoptr(MpgConnection) b = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(GCancellable) cancellable = g_cancellable_new ();
  g_autofree char *chunk = g_strnfill (16 * 1024, 'c');
  GThread *thread;
  guint sent = 0;

  g_test_summary ("A send blocked on a full buffer can be cancelled; the messages sent arrive");

  make_pipe (TRUE, &a, &b);

  thread = g_thread_new ("cancel", cancel_later_thread, cancellable);
  for (;;)
    {
      if (!mpg_connection_send (a, g_variant_new_string (chunk), cancellable, &error))
        break;
      sent++;
      g_assert_cmpuint (sent, <, 100000);
    }
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_thread_join (thread);
  g_assert_cmpuint (sent, >, 0);

  for (guint i = 0; i < sent; i++)
    g_variant_unref (recv_ok (b));
  g_assert_false (mpg_connection_poll (b, 0, NULL, NULL));
}

static void
test_connection_close (void)
{
  g_autoptr(MpgConnection) a = NULL;
  g_autoptr(MpgConnection) b = NULL;
  g_autoptr(MpgConnection) empty = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(GBytes) bytes = g_bytes_new_static ("x", 1);
  g_autoptr(GUnixFDList) fd_list = g_unix_fd_list_new ();
  gboolean closed = FALSE;
  guint notified = 0;

  g_test_summary ("close() is idempotent, notifies closed once, and later calls fail with CLOSED");

  make_pipe (TRUE, &a, &b);
  g_signal_connect (a, "notify::closed", G_CALLBACK (notify_count), &notified);

  mpg_connection_close (a);
  mpg_connection_close (a);
  g_assert_cmpuint (notified, ==, 1);
  g_object_get (a, "closed", &closed, NULL);
  g_assert_true (closed);
  g_assert_true (mpg_connection_get_closed (a));
  g_assert_cmpint (mpg_connection_get_fd (a), ==, -1);

  g_assert_false (mpg_connection_send (a, g_variant_new_int32 (1), NULL, &error));
  g_assert_error (error, MPG_ERROR, MPG_ERROR_CLOSED);
  g_clear_error (&error);
  g_assert_false (mpg_connection_send_bytes (a, bytes, NULL, &error));
  g_assert_error (error, MPG_ERROR, MPG_ERROR_CLOSED);
  g_clear_error (&error);
  g_assert_null (mpg_connection_recv (a, NULL, &error));
  g_assert_error (error, MPG_ERROR, MPG_ERROR_CLOSED);
  g_clear_error (&error);
  g_assert_null (mpg_connection_to_handle (a, fd_list, &error));
  g_assert_error (error, MPG_ERROR, MPG_ERROR_CLOSED);
  g_clear_error (&error);

  /* An object made by g_object_new() has no socket: it is closed. */
  empty = g_object_new (MPG_TYPE_CONNECTION, NULL);
  g_assert_true (mpg_connection_get_closed (empty));
  g_assert_null (mpg_connection_recv (empty, NULL, &error));
  g_assert_error (error, MPG_ERROR, MPG_ERROR_CLOSED);
  g_clear_error (&error);

  /* The peer of the closed end sees the end of file. */
  recv_fails (b, MPG_ERROR, MPG_ERROR_END_OF_STREAM);
}

/* recv_async */

typedef struct
{
  GMainLoop *loop;
  GVariant *value;
  GError *error;
  gboolean done;
  gint64 completed_at;
} AsyncState;

static gboolean
async_guard (gpointer user_data)
{
  g_assert_not_reached ();
  return G_SOURCE_REMOVE;
}

static void
recv_done (GObject      *source,
           GAsyncResult *result,
           gpointer      user_data)
{
  AsyncState *state = user_data;

  g_assert_false (state->done);
  state->value = mpg_connection_recv_finish (MPG_CONNECTION (source), result, &state->error);
  state->done = TRUE;
  state->completed_at = g_get_monotonic_time ();
  if (state->loop != NULL)
    g_main_loop_quit (state->loop);
}

static void
async_state_clear (AsyncState *state)
{
  g_clear_pointer (&state->loop, g_main_loop_unref);
  g_clear_pointer (&state->value, g_variant_unref);
  g_clear_error (&state->error);
  state->done = FALSE;
}

static gboolean
send_later (gpointer user_data)
{
  send_ok (user_data, g_variant_new_string ("later"));
  return G_SOURCE_REMOVE;
}

static void
run_until_done (AsyncState *state)
{
  guint guard = g_timeout_add (TIMEOUT_MS, async_guard, NULL);

  state->loop = g_main_loop_new (NULL, FALSE);
  if (!state->done)
    g_main_loop_run (state->loop);
  g_source_remove (guard);
  g_assert_true (state->done);
}

static void
test_connection_recv_async (void)
{
  g_autoptr(MpgConnection) a = NULL;
  g_autoptr(MpgConnection) b = NULL;
  AsyncState state = { 0 };

  g_test_summary ("recv_async completes in a running main loop when a message arrives, "
                  "and never from within the call");

  make_pipe (TRUE, &a, &b);

  /* The message comes while the loop runs. */
  mpg_connection_recv_async (b, NULL, recv_done, &state);
  g_assert_false (state.done);
  g_timeout_add (20, send_later, a);
  run_until_done (&state);
  g_assert_no_error (state.error);
  g_assert_cmpstr (g_variant_get_string (state.value, NULL), ==, "later");
  async_state_clear (&state);

  /* The message is there already: still completed from the loop. */
  send_ok (a, g_variant_new_int32 (77));
  mpg_connection_recv_async (b, NULL, recv_done, &state);
  g_assert_false (state.done);
  run_until_done (&state);
  g_assert_no_error (state.error);
  g_assert_cmpint (g_variant_get_int32 (state.value), ==, 77);
  async_state_clear (&state);

  /* The end of file. */
  mpg_connection_recv_async (b, NULL, recv_done, &state);
  mpg_connection_close (a);
  run_until_done (&state);
  g_assert_error (state.error, MPG_ERROR, MPG_ERROR_END_OF_STREAM);
  g_assert_null (state.value);
  async_state_clear (&state);
}

typedef struct
{
  GMainLoop *loop;
  guint n_done;
  gint32 order[3];
} OrderState;

static void
recv_in_order (GObject      *source,
               GAsyncResult *result,
               gpointer      user_data)
{
  OrderState *state = user_data;
  g_autoptr(GError) error = NULL;
  g_autoptr(GVariant) value = mpg_connection_recv_finish (MPG_CONNECTION (source), result, &error);

  g_assert_no_error (error);
  g_assert_cmpuint (state->n_done, <, G_N_ELEMENTS (state->order));
  state->order[state->n_done++] = g_variant_get_int32 (value);
  if (state->n_done == G_N_ELEMENTS (state->order))
    g_main_loop_quit (state->loop);
}

static gboolean
send_three (gpointer user_data)
{
  for (gint i = 1; i <= 3; i++)
    send_ok (user_data, g_variant_new_int32 (i));
  return G_SOURCE_REMOVE;
}

static void
test_connection_recv_async_order (void)
{
  g_autoptr(MpgConnection) a = NULL;
  g_autoptr(MpgConnection) b = NULL;
  OrderState state = { 0 };
  guint guard;

  g_test_summary ("Several pending recv_async calls complete in the order they were made");

  make_pipe (TRUE, &a, &b);
  state.loop = g_main_loop_new (NULL, FALSE);

  for (guint i = 0; i < G_N_ELEMENTS (state.order); i++)
    mpg_connection_recv_async (b, NULL, recv_in_order, &state);
  g_timeout_add (10, send_three, a);

  guard = g_timeout_add (TIMEOUT_MS, async_guard, NULL);
  g_main_loop_run (state.loop);
  g_source_remove (guard);

  g_assert_cmpint (state.order[0], ==, 1);
  g_assert_cmpint (state.order[1], ==, 2);
  g_assert_cmpint (state.order[2], ==, 3);
  g_main_loop_unref (state.loop);
}

static void
test_connection_recv_async_cancel (void)
{
  g_autoptr(MpgConnection) a = NULL;
  g_autoptr(MpgConnection) b = NULL;
  g_autoptr(GCancellable) cancellable = g_cancellable_new ();
  g_autoptr(GVariant) after = NULL;
  AsyncState state = { 0 };
  gint64 cancelled_at = -1;

  g_test_summary ("Cancelling recv_async completes it promptly with CANCELLED and loses no message");

  make_pipe (TRUE, &a, &b);

  mpg_connection_recv_async (b, cancellable, recv_done, &state);
  g_object_set_data (G_OBJECT (cancellable), "cancelled-at", &cancelled_at);
  g_timeout_add (30, cancel_cb, cancellable);
  run_until_done (&state);
  g_assert_error (state.error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_assert_null (state.value);
  /* Promptly: in the next iterations of the loop, not at a time-out. */
  g_assert_cmpint (state.completed_at - cancelled_at, >=, 0);
  g_assert_cmpint (state.completed_at - cancelled_at, <, G_USEC_PER_SEC / 2);
  g_object_set_data (G_OBJECT (cancellable), "cancelled-at", NULL);
  async_state_clear (&state);

  /* Already cancelled. */
  mpg_connection_recv_async (b, cancellable, recv_done, &state);
  run_until_done (&state);
  g_assert_error (state.error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  async_state_clear (&state);

  /* The cancelled calls took nothing. */
  send_ok (a, g_variant_new_int32 (5));
  after = recv_ok (b);
  g_assert_cmpint (g_variant_get_int32 (after), ==, 5);

  /* Closing completes a pending call with CLOSED. */
  g_cancellable_reset (cancellable);
  mpg_connection_recv_async (b, cancellable, recv_done, &state);
  mpg_connection_close (b);
  run_until_done (&state);
  g_assert_error (state.error, MPG_ERROR, MPG_ERROR_CLOSED);
  async_state_clear (&state);

  /* And one made after closing fails so. */
  mpg_connection_recv_async (b, NULL, recv_done, &state);
  run_until_done (&state);
  g_assert_error (state.error, MPG_ERROR, MPG_ERROR_CLOSED);
  async_state_clear (&state);
}

typedef struct
{
  MpgConnection *conn;
  GThread *receiver_thread;
  gboolean called_in_receiver_thread;
  AsyncState state;
} ThreadContextData;

static void
recv_done_in_thread (GObject      *source,
                     GAsyncResult *result,
                     gpointer      user_data)
{
  ThreadContextData *data = user_data;

  data->called_in_receiver_thread = g_thread_self () == data->receiver_thread;
  recv_done (source, result, &data->state);
}

static gpointer
recv_async_thread (gpointer user_data)
{
  ThreadContextData *data = user_data;
  g_autoptr(GMainContext) context = g_main_context_new ();
  gint64 deadline = g_get_monotonic_time () + TIMEOUT_MS * 1000;

  data->receiver_thread = g_thread_self ();
  g_main_context_push_thread_default (context);
  mpg_connection_recv_async (data->conn, NULL, recv_done_in_thread, data);
  while (!data->state.done && g_get_monotonic_time () < deadline)
    g_main_context_iteration (context, TRUE);
  g_main_context_pop_thread_default (context);

  return NULL;
}

static void
test_connection_recv_async_thread (void)
{
  g_autoptr(MpgConnection) a = NULL;
  g_autoptr(MpgConnection) b = NULL;
  ThreadContextData data = { 0 };
  GThread *thread;

  g_test_summary ("recv_async completes in the thread-default main context of the caller");

  make_pipe (TRUE, &a, &b);
  data.conn = b;
  thread = g_thread_new ("receiver", recv_async_thread, &data);
  g_usleep (20 * 1000);
  send_ok (a, g_variant_new_string ("to the thread"));
  g_thread_join (thread);

  g_assert_true (data.state.done);
  g_assert_true (data.called_in_receiver_thread);
  g_assert_no_error (data.state.error);
  g_assert_cmpstr (g_variant_get_string (data.state.value, NULL), ==, "to the thread");
  async_state_clear (&data.state);
}

typedef struct
{
  MpgConnection *conn;
  guint n;
} SenderData;

static gpointer
sender_thread (gpointer user_data)
{
  SenderData *data = user_data;

  for (guint i = 0; i < data->n; i++)
    send_ok (data->conn, g_variant_new ("(us)", i, "from a thread"));
  return NULL;
}

static void
test_connection_threads (void)
{
  g_autoptr(MpgConnection) a = NULL;
  g_autoptr(MpgConnection) b = NULL;
  SenderData data;
  GThread *thread;

  g_test_summary ("One thread sends while another receives, more than the buffer holds");

  make_pipe (TRUE, &a, &b);
  data.conn = a;
  data.n = 5000;
  thread = g_thread_new ("sender", sender_thread, &data);
  for (guint i = 0; i < data.n; i++)
    {
      g_autoptr(GVariant) got = recv_ok (b);
      guint32 k;

      g_variant_get (got, "(u&s)", &k, NULL);
      g_assert_cmpuint (k, ==, i);
    }
  g_thread_join (thread);
}

/* Across processes */

static GVariant *
child_echo (GVariant  *arg,
            gpointer   user_data,
            GError   **error)
{
  MpgConnection *conn = user_data;
  g_autoptr(GVariant) request = NULL;
  gint32 n;
  const char *word;

  if (!mpg_connection_poll (conn, TIMEOUT_MS, NULL, error))
    {
      if (error != NULL && *error == NULL)
        g_set_error_literal (error, MPG_ERROR, MPG_ERROR_TIMEOUT, "no request");
      return NULL;
    }
  request = mpg_connection_recv (conn, NULL, error);
  if (request == NULL)
    return NULL;

  g_variant_get (request, "(i&s)", &n, &word);
  if (!mpg_connection_send (conn, g_variant_new ("(imvs)", n + 1, NULL, word), NULL, error))
    return NULL;

  return g_variant_new_string ("replied");
}

static void
test_connection_process (void)
{
  g_autoptr(MpgConnection) parent_conn = NULL;
  g_autoptr(MpgConnection) child_conn = NULL;
  g_autoptr(MpgProcess) p = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(GVariant) reply = NULL;
  g_autoptr(GVariant) result = NULL;
  g_autoptr(GVariant) expected = NULL;

  g_test_summary ("A forked child receives on its end and replies; the parent sees the end "
                  "of file once the child exits");

  make_pipe (TRUE, &parent_conn, &child_conn);
  p = mpg_process_new (NULL, child_echo, child_conn, NULL);
  g_assert_true (mpg_process_start (p, &error));
  g_assert_no_error (error);
  /* As in Python: the child has its own copy of its end. */
  mpg_connection_close (child_conn);

  send_ok (parent_conn, g_variant_new ("(is)", 41, "hello"));
  reply = recv_ok (parent_conn);
  expected = g_variant_ref_sink (g_variant_new ("(imvs)", 42, NULL, "hello"));
  g_assert_true (g_variant_equal (reply, expected));

  g_assert_true (mpg_process_join (p, TIMEOUT_MS, NULL, &error));
  g_assert_no_error (error);
  g_assert_cmpint (mpg_process_get_exitcode (p), ==, 0);
  result = mpg_process_dup_result (p, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (g_variant_get_string (result, NULL), ==, "replied");

  recv_fails (parent_conn, MPG_ERROR, MPG_ERROR_END_OF_STREAM);
}

static GVariant *
child_send_many (GVariant  *arg,
                 gpointer   user_data,
                 GError   **error)
{
  MpgConnection *w = user_data;

  for (guint i = 0; i < 100; i++)
    {
      g_autofree char *s = g_strnfill (i * 1500, 'a' + i % 26);

      if (!mpg_connection_send (w, g_variant_new ("(us)", i, s), NULL, error))
        return NULL;
    }
  return NULL;
}

static void
test_connection_process_one_way (void)
{
  g_autoptr(MpgConnection) r = NULL;
  g_autoptr(MpgConnection) w = NULL;
  g_autoptr(MpgProcess) p = NULL;
  g_autoptr(GError) error = NULL;

  g_test_summary ("A child writes a one-way pipe, more than its buffer holds: every message "
                  "arrives, then the end of file");

  make_pipe (FALSE, &r, &w);
  p = mpg_process_new (NULL, child_send_many, w, NULL);
  g_assert_true (mpg_process_start (p, &error));
  g_assert_no_error (error);
  mpg_connection_close (w);

  for (guint i = 0; i < 100; i++)
    {
      g_autoptr(GVariant) got = recv_ok (r);
      const char *s;
      guint32 k;

      g_variant_get (got, "(u&s)", &k, &s);
      g_assert_cmpuint (k, ==, i);
      g_assert_cmpuint (strlen (s), ==, i * 1500);
    }
  recv_fails (r, MPG_ERROR, MPG_ERROR_END_OF_STREAM);

  g_assert_true (mpg_process_join (p, TIMEOUT_MS, NULL, &error));
  g_assert_no_error (error);
  g_assert_cmpint (mpg_process_get_exitcode (p), ==, 0);
}

/* Handles */

static void
test_connection_handle (void)
{
  g_autoptr(MpgConnection) a = NULL;
  g_autoptr(MpgConnection) b = NULL;
  g_autoptr(MpgConnection) carrier_a = NULL;
  g_autoptr(MpgConnection) carrier_b = NULL;
  g_autoptr(MpgConnection) rebuilt = NULL;
  g_autoptr(MpgConnection) r = NULL;
  g_autoptr(MpgConnection) w = NULL;
  g_autoptr(MpgConnection) rebuilt_r = NULL;
  g_autoptr(GUnixFDList) fd_list = g_unix_fd_list_new ();
  g_autoptr(GUnixFDList) got_list = NULL;
  g_autoptr(GVariant) handle = NULL;
  g_autoptr(GVariant) got_handle = NULL;
  g_autoptr(GVariant) got = NULL;
  g_autoptr(GError) error = NULL;
  gint32 index;
  gboolean readable, writable;

  g_test_summary ("An end turned into an (hbb) handle, sent with its fd and rebuilt, works");

  make_pipe (TRUE, &a, &b);
  make_pipe (TRUE, &carrier_a, &carrier_b);

  handle = mpg_connection_to_handle (a, fd_list, &error);
  g_assert_no_error (error);
  g_assert_false (g_variant_is_floating (handle));
  g_assert_cmpstr (g_variant_get_type_string (handle), ==, "(hbb)");
  g_variant_get (handle, "(hbb)", &index, &readable, &writable);
  g_assert_cmpint (index, ==, 0);
  g_assert_true (readable);
  g_assert_true (writable);

  /* Passed over another connection, as to another process. */
  g_assert_true (mpg_connection_send_with_fds (carrier_a, handle, fd_list, NULL, &error));
  g_assert_no_error (error);
  g_clear_object (&fd_list);
  mpg_connection_close (a);

  g_assert_true (mpg_connection_poll (carrier_b, TIMEOUT_MS, NULL, &error));
  got_handle = mpg_connection_recv_with_fds (carrier_b, &got_list, NULL, &error);
  g_assert_no_error (error);
  rebuilt = mpg_connection_new_from_handle (got_handle, got_list, &error);
  g_assert_no_error (error);
  g_assert_nonnull (rebuilt);
  g_clear_object (&got_list);

  send_ok (rebuilt, g_variant_new_string ("via handle"));
  got = recv_ok (b);
  g_assert_cmpstr (g_variant_get_string (got, NULL), ==, "via handle");
  g_clear_pointer (&got, g_variant_unref);
  send_ok (b, g_variant_new_string ("back"));
  got = recv_ok (rebuilt);
  g_assert_cmpstr (g_variant_get_string (got, NULL), ==, "back");
  g_clear_pointer (&got, g_variant_unref);

  /* The last copy closed: the peer sees the end of file. */
  mpg_connection_close (rebuilt);
  recv_fails (b, MPG_ERROR, MPG_ERROR_END_OF_STREAM);

  /* A one-way end keeps its direction; a floating handle is sunk. */
  make_pipe (FALSE, &r, &w);
  fd_list = g_unix_fd_list_new ();
  g_clear_pointer (&handle, g_variant_unref);
  handle = mpg_connection_to_handle (r, fd_list, &error);
  g_assert_no_error (error);
  rebuilt_r = mpg_connection_new_from_handle (g_variant_new ("(hbb)", 0, TRUE, FALSE), fd_list, &error);
  g_assert_no_error (error);
  g_assert_true (mpg_connection_get_readable (rebuilt_r));
  g_assert_false (mpg_connection_get_writable (rebuilt_r));
  send_ok (w, g_variant_new_int32 (8));
  got = recv_ok (rebuilt_r);
  g_assert_cmpint (g_variant_get_int32 (got), ==, 8);
}

static void
assert_bad_handle (GVariant    *handle,
                   GUnixFDList *fd_list)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(MpgConnection) conn = mpg_connection_new_from_handle (handle, fd_list, &error);

  g_assert_null (conn);
  g_assert_error (error, MPG_ERROR, MPG_ERROR_PROTOCOL);
  g_test_message ("refused: %s", error->message);
}

static void
test_connection_handle_invalid (void)
{
  g_autoptr(MpgConnection) a = NULL;
  g_autoptr(MpgConnection) b = NULL;
  g_autoptr(GUnixFDList) fd_list = g_unix_fd_list_new ();
  g_autoptr(GError) error = NULL;
  g_autoptr(GVariant) handle = NULL;
  int pipe_fds[2];
  int stream_fds[2];
  int dgram_fds[2];

  g_test_summary ("Corrupted handles are refused with PROTOCOL: type, index, flags, kind of fd");

  make_pipe (TRUE, &a, &b);
  handle = mpg_connection_to_handle (a, fd_list, &error);    /* index 0: a valid socket */
  g_assert_no_error (error);

  g_assert_true (g_unix_open_pipe (pipe_fds, FD_CLOEXEC, &error));
  g_assert_cmpint (g_unix_fd_list_append (fd_list, pipe_fds[0], &error), ==, 1);
  g_assert_cmpint (socketpair (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, stream_fds), ==, 0);
  g_assert_cmpint (g_unix_fd_list_append (fd_list, stream_fds[0], &error), ==, 2);
  g_assert_cmpint (socketpair (AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, dgram_fds), ==, 0);
  g_assert_cmpint (g_unix_fd_list_append (fd_list, dgram_fds[0], &error), ==, 3);
  g_assert_no_error (error);
  close (pipe_fds[0]);
  close (pipe_fds[1]);
  close (stream_fds[0]);
  close (stream_fds[1]);
  close (dgram_fds[0]);
  close (dgram_fds[1]);

  assert_bad_handle (g_variant_new ("(hb)", 0, TRUE), fd_list);
  assert_bad_handle (g_variant_new ("(ibb)", 0, TRUE, TRUE), fd_list);
  assert_bad_handle (g_variant_new_string ("(hbb)"), fd_list);
  assert_bad_handle (g_variant_new ("(hbb)", 4, TRUE, TRUE), fd_list);
  assert_bad_handle (g_variant_new ("(hbb)", -1, TRUE, TRUE), fd_list);
  assert_bad_handle (g_variant_new ("(hbb)", G_MAXINT32, TRUE, TRUE), fd_list);
  assert_bad_handle (g_variant_new ("(hbb)", 0, FALSE, FALSE), fd_list);
  assert_bad_handle (g_variant_new ("(hbb)", 1, TRUE, TRUE), fd_list);   /* a pipe */
  assert_bad_handle (g_variant_new ("(hbb)", 2, TRUE, TRUE), fd_list);   /* SOCK_STREAM */
  assert_bad_handle (g_variant_new ("(hbb)", 3, TRUE, TRUE), fd_list);   /* SOCK_DGRAM */

  /* The valid one still is, and the list kept its fds. */
  g_assert_cmpint (g_unix_fd_list_get_length (fd_list), ==, 4);
  {
    g_autoptr(MpgConnection) ok = mpg_connection_new_from_handle (handle, fd_list, &error);

    g_assert_no_error (error);
    g_assert_nonnull (ok);
  }
}

/* A hostile peer */

static void
send_raw (int           fd,
          const void   *data,
          gsize         len,
          const int    *fds,
          guint         n_fds)
{
  struct iovec iov = { (void *) data, len };
  struct msghdr msg = { 0 };
  union {
    char buf[CMSG_SPACE (sizeof (int) * 4)];
    struct cmsghdr align;
  } control;

  g_assert_cmpuint (n_fds, <=, 4);
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  if (n_fds > 0)
    {
      struct cmsghdr *cmsg;

      memset (&control, 0, sizeof control);
      msg.msg_control = control.buf;
      msg.msg_controllen = CMSG_SPACE (sizeof (int) * n_fds);
      cmsg = CMSG_FIRSTHDR (&msg);
      cmsg->cmsg_level = SOL_SOCKET;
      cmsg->cmsg_type = SCM_RIGHTS;
      cmsg->cmsg_len = CMSG_LEN (sizeof (int) * n_fds);
      memcpy (CMSG_DATA (cmsg), fds, sizeof (int) * n_fds);
    }
  g_assert_cmpint (sendmsg (fd, &msg, MSG_NOSIGNAL), ==, (gssize) len);
}

static void
send_memfd_ref (int           fd,
                GBytes       *frame,
                guint64       announced,
                int           seals)
{
  int memfd = memfd_create ("hostile", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  guint8 ref[24];
  guint64 size_le = GUINT64_TO_LE (announced);
  gsize len;
  const guint8 *data = g_bytes_get_data (frame, &len);

  g_assert_cmpint (memfd, >=, 0);
  g_assert_cmpint (write (memfd, data, len), ==, (gssize) len);
  if (seals != 0)
    g_assert_cmpint (fcntl (memfd, F_ADD_SEALS, seals), ==, 0);
  /* "MPGM", flags 0 (a sealed memfd), size, the frame at offset 0. */
  memcpy (ref, "MPGM", 4);
  memset (ref + 4, 0, 4);
  memcpy (ref + 8, &size_le, 8);
  memset (ref + 16, 0, 8);
  send_raw (fd, ref, sizeof ref, &memfd, 1);
  close (memfd);
}

static void
test_connection_hostile (void)
{
  g_autoptr(MpgConnection) conn = NULL;
  g_autoptr(GUnixFDList) fd_list = g_unix_fd_list_new ();
  g_autoptr(GError) error = NULL;
  g_autoptr(GBytes) frame = NULL;
  g_autoptr(GBytes) handle_frame = NULL;
  g_autoptr(GBytes) big_frame = NULL;
  g_autoptr(GVariant) got = NULL;
  g_autofree guint8 *junk = g_malloc0 (100 * 1024);
  guint8 bad_flags[32];
  int fds[2];
  int pipe_fds[2];
  char c;

  g_test_summary ("Garbage datagrams from a raw peer are PROTOCOL errors; the next valid message "
                  "still arrives; fds of bad messages are closed");

  g_assert_cmpint (socketpair (AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds), ==, 0);
  g_assert_cmpint (g_unix_fd_list_append (fd_list, fds[0], &error), ==, 0);
  g_assert_no_error (error);
  close (fds[0]);
  conn = mpg_connection_new_from_handle (g_variant_new ("(hbb)", 0, TRUE, TRUE), fd_list, &error);
  g_assert_no_error (error);
  g_clear_object (&fd_list);

  /* Plain garbage, with a pipe's write end attached. */
  g_assert_true (g_unix_open_pipe (pipe_fds, FD_CLOEXEC, &error));
  send_raw (fds[1], "garbage!", 8, &pipe_fds[1], 1);
  close (pipe_fds[1]);
  recv_fails (conn, MPG_ERROR, MPG_ERROR_PROTOCOL);
  /* The receiver closed the fd that came with it: no writer is left. */
  g_assert_cmpint (read (pipe_fds[0], &c, 1), ==, 0);
  close (pipe_fds[0]);

  /* The right magic, then nonsense. */
  memset (bad_flags, 0xff, sizeof bad_flags);
  memcpy (bad_flags, MPG_WIRE_MAGIC, 4);
  send_raw (fds[1], bad_flags, sizeof bad_flags, NULL, 0);
  recv_fails (conn, MPG_ERROR, MPG_ERROR_PROTOCOL);

  /* A truncated header. */
  send_raw (fds[1], MPG_WIRE_MAGIC "\0\0", 6, NULL, 0);
  recv_fails (conn, MPG_ERROR, MPG_ERROR_PROTOCOL);

  /* A valid frame with trailing bytes. */
  frame = _mpg_wire_encode (g_variant_new_int32 (7), &error);
  g_assert_no_error (error);
  {
    gsize len;
    const guint8 *data = g_bytes_get_data (frame, &len);
    g_autofree guint8 *longer = g_malloc0 (len + 3);

    memcpy (longer, data, len);
    send_raw (fds[1], longer, len + 3, NULL, 0);
    recv_fails (conn, MPG_ERROR, MPG_ERROR_PROTOCOL);
  }

  /* A datagram larger than any inline message. */
  send_raw (fds[1], junk, 100 * 1024, NULL, 0);
  recv_fails (conn, MPG_ERROR, MPG_ERROR_PROTOCOL);

  /* A handle that indexes no fd. */
  handle_frame = _mpg_wire_encode (g_variant_new ("(sh)", "x", 3), &error);
  g_assert_no_error (error);
  send_raw (fds[1], g_bytes_get_data (handle_frame, NULL), g_bytes_get_size (handle_frame), NULL, 0);
  recv_fails (conn, MPG_ERROR, MPG_ERROR_PROTOCOL);

  /* Memfd references: unsealed, partly sealed, with a wrong size, or
   * without the memfd. */
  big_frame = _mpg_wire_encode (g_variant_new_take_string (g_strnfill (100 * 1024, 'm')), &error);
  g_assert_no_error (error);
  send_memfd_ref (fds[1], big_frame, g_bytes_get_size (big_frame), 0);
  recv_fails (conn, MPG_ERROR, MPG_ERROR_PROTOCOL);
  send_memfd_ref (fds[1], big_frame, g_bytes_get_size (big_frame), F_SEAL_WRITE);
  recv_fails (conn, MPG_ERROR, MPG_ERROR_PROTOCOL);
  send_memfd_ref (fds[1], big_frame, g_bytes_get_size (big_frame) + 4096,
                  F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE);
  recv_fails (conn, MPG_ERROR, MPG_ERROR_PROTOCOL);
  send_raw (fds[1], "MPGM\0\0\0\0\0\0\1\0\0\0\0\0\0\0\0\0\0\0\0\0", 24, NULL, 0);
  recv_fails (conn, MPG_ERROR, MPG_ERROR_PROTOCOL);

  /* A sealed memfd with a valid frame is fine. */
  send_memfd_ref (fds[1], big_frame, g_bytes_get_size (big_frame),
                  F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE);
  got = recv_ok (conn);
  g_assert_cmpuint (strlen (g_variant_get_string (got, NULL)), ==, 100 * 1024);
  g_clear_pointer (&got, g_variant_unref);

  /* And after all that, a valid message. */
  send_raw (fds[1], g_bytes_get_data (frame, NULL), g_bytes_get_size (frame), NULL, 0);
  got = recv_ok (conn);
  g_assert_cmpint (g_variant_get_int32 (got), ==, 7);

  close (fds[1]);
  recv_fails (conn, MPG_ERROR, MPG_ERROR_END_OF_STREAM);
}

/* mpg_wait() */

static GVariant *
child_wait_for_go (GVariant  *arg,
                   gpointer   user_data,
                   GError   **error)
{
  MpgConnection *conn = user_data;
  g_autoptr(GVariant) go = NULL;

  if (!mpg_connection_poll (conn, TIMEOUT_MS, NULL, error))
    return NULL;
  go = mpg_connection_recv (conn, NULL, error);
  return go != NULL ? g_variant_new_boolean (TRUE) : NULL;
}

static GPtrArray *
wait_ok (GPtrArray *objects,
         gint       timeout_msec)
{
  g_autoptr(GError) error = NULL;
  GPtrArray *ready = mpg_wait (objects, timeout_msec, NULL, &error);

  g_assert_no_error (error);
  g_assert_nonnull (ready);
  return ready;
}

static void
test_connection_wait (void)
{
  g_autoptr(MpgConnection) a1 = NULL;
  g_autoptr(MpgConnection) a2 = NULL;
  g_autoptr(MpgConnection) b1 = NULL;
  g_autoptr(MpgConnection) b2 = NULL;
  g_autoptr(MpgConnection) go_parent = NULL;
  g_autoptr(MpgConnection) go_child = NULL;
  g_autoptr(MpgProcess) p = NULL;
  g_autoptr(GPtrArray) objects = g_ptr_array_new ();
  g_autoptr(GPtrArray) ready = NULL;
  g_autoptr(GError) error = NULL;
  gint64 start;

  g_test_summary ("mpg_wait() over two connections and a process returns the ready ones, "
                  "in order, or none on timeout");

  make_pipe (TRUE, &a1, &a2);
  make_pipe (TRUE, &b1, &b2);
  make_pipe (FALSE, &go_child, &go_parent);
  p = mpg_process_new (NULL, child_wait_for_go, go_child, NULL);
  g_assert_true (mpg_process_start (p, &error));
  g_assert_no_error (error);
  mpg_connection_close (go_child);

  g_ptr_array_add (objects, a1);
  g_ptr_array_add (objects, b1);
  g_ptr_array_add (objects, p);

  /* Nothing yet. */
  start = g_get_monotonic_time ();
  ready = wait_ok (objects, 50);
  g_assert_cmpuint (ready->len, ==, 0);
  g_assert_cmpint (g_get_monotonic_time () - start, >=, 50 * 1000);
  g_clear_pointer (&ready, g_ptr_array_unref);
  ready = wait_ok (objects, 0);
  g_assert_cmpuint (ready->len, ==, 0);
  g_clear_pointer (&ready, g_ptr_array_unref);

  /* A message on the second connection. */
  send_ok (b2, g_variant_new_int32 (2));
  ready = wait_ok (objects, TIMEOUT_MS);
  g_assert_cmpuint (ready->len, ==, 1);
  g_assert_true (g_ptr_array_index (ready, 0) == b1);
  g_clear_pointer (&ready, g_ptr_array_unref);

  /* The process ends: it is ready too, after b1 in the order given. */
  send_ok (go_parent, g_variant_new_string ("go"));
  start = g_get_monotonic_time ();
  while (g_get_monotonic_time () - start < TIMEOUT_MS * 1000)
    {
      g_clear_pointer (&ready, g_ptr_array_unref);
      ready = wait_ok (objects, TIMEOUT_MS);
      if (ready->len == 2)
        break;
      /* Only b1 until the child ends; give it time. */
      g_assert_cmpuint (ready->len, ==, 1);
      g_usleep (10 * 1000);
    }
  g_assert_cmpuint (ready->len, ==, 2);
  g_assert_true (g_ptr_array_index (ready, 0) == b1);
  g_assert_true (g_ptr_array_index (ready, 1) == p);
  g_assert_false (mpg_process_is_alive (p));
  g_assert_cmpint (mpg_process_get_exitcode (p), ==, 0);
  g_clear_pointer (&ready, g_ptr_array_unref);

  /* The end of file of the first connection. */
  g_variant_unref (recv_ok (b1));
  mpg_connection_close (a2);
  ready = wait_ok (objects, TIMEOUT_MS);
  g_assert_cmpuint (ready->len, ==, 2);
  g_assert_true (g_ptr_array_index (ready, 0) == a1);
  g_assert_true (g_ptr_array_index (ready, 1) == p);
  g_clear_pointer (&ready, g_ptr_array_unref);

  /* Only connections: b1 has nothing, and times out. */
  g_ptr_array_remove_index (objects, 2);
  g_ptr_array_remove_index (objects, 0);
  ready = wait_ok (objects, 20);
  g_assert_cmpuint (ready->len, ==, 0);
  g_clear_pointer (&ready, g_ptr_array_unref);

  /* An empty list just waits for the timeout. */
  g_ptr_array_set_size (objects, 0);
  ready = wait_ok (objects, 10);
  g_assert_cmpuint (ready->len, ==, 0);
}

static void
test_connection_wait_errors (void)
{
  g_autoptr(MpgConnection) r = NULL;
  g_autoptr(MpgConnection) w = NULL;
  g_autoptr(MpgProcess) unstarted = mpg_process_new (NULL, NULL, NULL, NULL);
  g_autoptr(GCancellable) cancellable = g_cancellable_new ();
  g_autoptr(GCancellable) not_waitable = g_cancellable_new ();
  g_autoptr(GPtrArray) objects = g_ptr_array_new ();
  g_autoptr(GPtrArray) ready = NULL;
  g_autoptr(GError) error = NULL;
  GThread *thread;

  g_test_summary ("mpg_wait() can be cancelled, and refuses write-only, closed, unstarted "
                  "and unknown objects");

  make_pipe (FALSE, &r, &w);
  g_ptr_array_add (objects, r);

  thread = g_thread_new ("cancel", cancel_later_thread, cancellable);
  ready = mpg_wait (objects, -1, cancellable, &error);
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_assert_null (ready);
  g_clear_error (&error);
  g_thread_join (thread);

  g_ptr_array_add (objects, w);
  g_assert_null (mpg_wait (objects, 0, NULL, &error));
  g_assert_error (error, MPG_ERROR, MPG_ERROR_INVALID_STATE);
  g_clear_error (&error);

  g_ptr_array_set_size (objects, 1);
  g_ptr_array_add (objects, unstarted);
  g_assert_null (mpg_wait (objects, 0, NULL, &error));
  g_assert_error (error, MPG_ERROR, MPG_ERROR_INVALID_STATE);
  g_clear_error (&error);

  g_ptr_array_set_size (objects, 1);
  g_ptr_array_add (objects, mpg_current_process ());
  g_assert_null (mpg_wait (objects, 0, NULL, &error));
  g_assert_error (error, MPG_ERROR, MPG_ERROR_INVALID_STATE);
  g_clear_error (&error);

  g_ptr_array_set_size (objects, 1);
  g_ptr_array_add (objects, not_waitable);
  g_assert_null (mpg_wait (objects, 0, NULL, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);

  g_ptr_array_set_size (objects, 1);
  mpg_connection_close (r);
  g_assert_null (mpg_wait (objects, 0, NULL, &error));
  g_assert_error (error, MPG_ERROR, MPG_ERROR_CLOSED);
  g_clear_error (&error);
}

static void
test_connection_wait_queue (void)
{
  g_autoptr(MpgConnection) a = NULL;
  g_autoptr(MpgConnection) b = NULL;
  g_autoptr(MpgQueue) queue = NULL;
  g_autoptr(GPtrArray) objects = g_ptr_array_new ();
  g_autoptr(GPtrArray) ready = NULL;
  g_autoptr(GVariant) got = NULL;
  g_autoptr(GError) error = NULL;

  g_test_summary ("mpg_wait() over a connection and a queue: the queue is ready once a "
                  "message was put");

  make_pipe (TRUE, &a, &b);
  queue = mpg_queue_new (0, &error);
  g_assert_no_error (error);
  g_ptr_array_add (objects, b);
  g_ptr_array_add (objects, queue);

  ready = mpg_wait (objects, 0, NULL, &error);
  if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED))
    {
      g_test_skip ("The queue does not provide _mpg_queue_get_receive_fd() yet");
      return;
    }
  g_assert_no_error (error);
  g_assert_cmpuint (ready->len, ==, 0);
  g_clear_pointer (&ready, g_ptr_array_unref);

  g_assert_true (mpg_queue_put (queue, g_variant_new_int32 (4), TRUE, TIMEOUT_MS, NULL, &error));
  g_assert_no_error (error);
  ready = wait_ok (objects, TIMEOUT_MS);
  g_assert_cmpuint (ready->len, ==, 1);
  g_assert_true (g_ptr_array_index (ready, 0) == queue);
  g_clear_pointer (&ready, g_ptr_array_unref);

  got = mpg_queue_get (queue, TRUE, TIMEOUT_MS, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpint (g_variant_get_int32 (got), ==, 4);
  ready = wait_ok (objects, 0);
  g_assert_cmpuint (ready->len, ==, 0);
  g_clear_pointer (&ready, g_ptr_array_unref);

  mpg_queue_close (queue);
  g_assert_null (mpg_wait (objects, 0, NULL, &error));
  g_assert_error (error, MPG_ERROR, MPG_ERROR_CLOSED);
}

int
main (int   argc,
      char *argv[])
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/Mpg/Connection/duplex", test_connection_duplex);
  g_test_add_func ("/Mpg/Connection/order", test_connection_order);
  g_test_add_func ("/Mpg/Connection/one-way", test_connection_one_way);
  g_test_add_func ("/Mpg/Connection/bytes", test_connection_bytes);
  g_test_add_func ("/Mpg/Connection/large", test_connection_large);
  g_test_add_func ("/Mpg/Connection/too-large", test_connection_too_large);
  g_test_add_func ("/Mpg/Connection/fds", test_connection_fds);
  g_test_add_func ("/Mpg/Connection/fds-dropped", test_connection_fds_dropped);
  g_test_add_func ("/Mpg/Connection/poll", test_connection_poll);
  g_test_add_func ("/Mpg/Connection/eof", test_connection_eof);
  g_test_add_func ("/Mpg/Connection/broken-pipe", test_connection_broken_pipe);
  g_test_add_func ("/Mpg/Connection/send-cancel", test_connection_send_cancel);
  g_test_add_func ("/Mpg/Connection/close", test_connection_close);
  g_test_add_func ("/Mpg/Connection/recv-async", test_connection_recv_async);
  g_test_add_func ("/Mpg/Connection/recv-async-order", test_connection_recv_async_order);
  g_test_add_func ("/Mpg/Connection/recv-async-cancel", test_connection_recv_async_cancel);
  g_test_add_func ("/Mpg/Connection/recv-async-thread", test_connection_recv_async_thread);
  g_test_add_func ("/Mpg/Connection/threads", test_connection_threads);
  g_test_add_func ("/Mpg/Connection/process", test_connection_process);
  g_test_add_func ("/Mpg/Connection/process-one-way", test_connection_process_one_way);
  g_test_add_func ("/Mpg/Connection/handle", test_connection_handle);
  g_test_add_func ("/Mpg/Connection/handle-invalid", test_connection_handle_invalid);
  g_test_add_func ("/Mpg/Connection/hostile", test_connection_hostile);
  g_test_add_func ("/Mpg/Connection/wait", test_connection_wait);
  g_test_add_func ("/Mpg/Connection/wait-errors", test_connection_wait_errors);
  g_test_add_func ("/Mpg/Connection/wait-queue", test_connection_wait_queue);

  return g_test_run ();
}
