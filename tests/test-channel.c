/* test-channel.c: messages over SOCK_SEQPACKET, memfd references, hostile datagrams
 *
 * Copyright 2026 The libmpg authors
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include <fcntl.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/socket.h>

#include <libmpg.h>

#include "mpg-channel-private.h"
#include "mpg-wire-private.h"

static GVariant *
receive_ok (int fd)
{
  g_autoptr(GError) error = NULL;
  GVariant *v = _mpg_channel_receive (fd, MPG_WIRE_DEFAULT_MAX, g_get_monotonic_time () + 5 * G_USEC_PER_SEC,
                                      NULL, NULL, &error);

  g_assert_no_error (error);
  g_assert_nonnull (v);
  return v;
}

static void
test_channel_small_and_large (void)
{
  int fds[2];
  g_autoptr(GError) error = NULL;
  gsize sizes[] = { 0, 1, MPG_CHANNEL_INLINE_MAX - 64, MPG_CHANNEL_INLINE_MAX + 1, 3 * 1024 * 1024 };

  g_test_summary ("Messages below and above the inline limit arrive whole");

  g_assert_true (_mpg_channel_socketpair (fds, &error));
  for (guint i = 0; i < G_N_ELEMENTS (sizes); i++)
    {
      g_autofree guint8 *data = g_malloc (sizes[i] + 1);
      g_autoptr(GVariant) out = NULL;
      const guint8 *got;
      gsize len;

      for (gsize j = 0; j < sizes[i]; j++)
        data[j] = (guint8) (j * 31 + i);
      g_assert_true (_mpg_channel_send (fds[0],
                                        g_variant_new_fixed_array (G_VARIANT_TYPE_BYTE, data, sizes[i], 1),
                                        NULL, MPG_WIRE_DEFAULT_MAX, -1, NULL, &error));
      g_assert_no_error (error);
      out = receive_ok (fds[1]);
      got = g_variant_get_fixed_array (out, &len, 1);
      g_assert_cmpmem (got, len, data, sizes[i]);
    }
  close (fds[0]);
  close (fds[1]);
}

static void
test_channel_limits (void)
{
  int fds[2];
  g_autoptr(GError) error = NULL;
  g_autoptr(GVariant) out = NULL;

  g_test_summary ("Too large to send, nothing to receive, and end of stream are GErrors");

  g_assert_true (_mpg_channel_socketpair (fds, &error));

  g_assert_false (_mpg_channel_send (fds[0], g_variant_new_string ("too long for 20 bytes"),
                                     NULL, 20, -1, NULL, &error));
  g_assert_error (error, MPG_ERROR, MPG_ERROR_TOO_LARGE);
  g_clear_error (&error);

  out = _mpg_channel_receive (fds[1], MPG_WIRE_DEFAULT_MAX, 0, NULL, NULL, &error);
  g_assert_error (error, MPG_ERROR, MPG_ERROR_TIMEOUT);
  g_assert_null (out);
  g_clear_error (&error);

  /* The receiver's own limit applies to what arrives. */
  g_assert_true (_mpg_channel_send (fds[0], g_variant_new_string ("twenty-one characters"),
                                    NULL, MPG_WIRE_DEFAULT_MAX, -1, NULL, &error));
  out = _mpg_channel_receive (fds[1], 24, -1, NULL, NULL, &error);
  g_assert_error (error, MPG_ERROR, MPG_ERROR_TOO_LARGE);
  g_assert_null (out);
  g_clear_error (&error);

  close (fds[0]);
  out = _mpg_channel_receive (fds[1], MPG_WIRE_DEFAULT_MAX, -1, NULL, NULL, &error);
  g_assert_error (error, MPG_ERROR, MPG_ERROR_END_OF_STREAM);
  g_clear_error (&error);
  close (fds[1]);
}

static void
test_channel_fds (void)
{
  int fds[2], p[2];
  g_autoptr(GError) error = NULL;
  g_autoptr(GUnixFDList) list = g_unix_fd_list_new ();
  g_autoptr(GUnixFDList) got = NULL;
  g_autoptr(GVariant) out = NULL;
  int h, r;
  char c = 0;

  g_test_summary ("File descriptors travel with the message their handles index");

  g_assert_true (_mpg_channel_socketpair (fds, &error));
  g_assert_cmpint (pipe (p), ==, 0);
  h = g_unix_fd_list_append (list, p[1], &error);
  g_assert_no_error (error);
  close (p[1]);

  g_assert_true (_mpg_channel_send (fds[0], g_variant_new ("(sh)", "pipe", h), list,
                                    MPG_WIRE_DEFAULT_MAX, -1, NULL, &error));
  g_assert_no_error (error);
  out = _mpg_channel_receive (fds[1], MPG_WIRE_DEFAULT_MAX, -1, NULL, &got, &error);
  g_assert_no_error (error);
  g_assert_nonnull (got);
  g_variant_get (out, "(&sh)", NULL, &h);
  r = g_unix_fd_list_get (got, h, &error);
  g_assert_no_error (error);
  g_assert_cmpint (write (r, "x", 1), ==, 1);
  close (r);
  g_clear_object (&got);
  g_assert_cmpint (read (p[0], &c, 1), ==, 1);
  g_assert_cmpint (c, ==, 'x');
  close (p[0]);

  /* A handle beyond the fds that came is refused, also inside variants. */
  {
    const char *texts[] = { "handle 3", "(<handle 7>,)", "[<handle 9>]", "{'a': <<handle 1>>}" };

    for (guint i = 0; i < G_N_ELEMENTS (texts); i++)
      {
        g_autoptr(GBytes) frame = NULL;

        /* The sender refuses its own mistake... */
        g_clear_pointer (&out, g_variant_unref);
        g_assert_false (_mpg_channel_send (fds[0], g_variant_new_parsed (texts[i]), NULL,
                                           MPG_WIRE_DEFAULT_MAX, -1, NULL, &error));
        g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
        g_clear_error (&error);

        /* ... and the receiver refuses a hostile peer's. */
        frame = _mpg_wire_encode (g_variant_new_parsed (texts[i]), NULL);
        g_assert_cmpint (send (fds[0], g_bytes_get_data (frame, NULL), g_bytes_get_size (frame), 0),
                         ==, (gssize) g_bytes_get_size (frame));
        out = _mpg_channel_receive (fds[1], MPG_WIRE_DEFAULT_MAX, -1, NULL, NULL, &error);
        g_assert_error (error, MPG_ERROR, MPG_ERROR_PROTOCOL);
        g_assert_null (out);
        g_clear_error (&error);
      }
  }

  close (fds[0]);
  close (fds[1]);
}

static guint
count_open_fds (void)
{
  g_autoptr(GDir) dir = g_dir_open ("/proc/self/fd", 0, NULL);
  guint n = 0;

  while (g_dir_read_name (dir) != NULL)
    n++;
  return n;
}

/* Decodes a datagram with the given fds, expecting an error; the fds must
 * all be closed afterwards. */
static void
expect_decode_error (const guint8 *data,
                     gsize         len,
                     int          *fds,
                     guint         n_fds,
                     gint          code)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GVariant) out = NULL;
  g_autoptr(GUnixFDList) list = NULL;

  out = _mpg_channel_decode (data, len, fds, n_fds, 1024 * 1024, &list, &error);
  g_assert_error (error, MPG_ERROR, code);
  g_assert_null (out);
  g_assert_null (list);
}

static int
make_memfd (gsize    size,
            gboolean seal)
{
  int fd = memfd_create ("test", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  g_autoptr(GBytes) frame = _mpg_wire_encode (g_variant_new_string ("hello from a memfd"), NULL);
  gsize len;
  const guint8 *data = g_bytes_get_data (frame, &len);

  g_assert_cmpint (fd, >=, 0);
  g_assert_cmpint (write (fd, data, MIN (len, size)), ==, (gssize) MIN (len, size));
  if (size > len)
    g_assert_cmpint (ftruncate (fd, size), ==, 0);
  if (seal)
    g_assert_cmpint (fcntl (fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE), ==, 0);
  return fd;
}

static void
memfd_ref (guint8  ref[16],
           guint64 size)
{
  guint32 flags = 0;

  size = GUINT64_TO_LE (size);
  memcpy (ref, "MPGM", 4);
  memcpy (ref + 4, &flags, 4);
  memcpy (ref + 8, &size, 8);
}

static void
test_channel_hostile_memfd (void)
{
  g_autoptr(GBytes) frame = _mpg_wire_encode (g_variant_new_string ("hello from a memfd"), NULL);
  gsize len = g_bytes_get_size (frame);
  guint8 ref[16];
  guint fds_before = count_open_fds ();
  int fd;

  g_test_summary ("Hostile references to large messages are refused and their fds closed");

  /* A valid one, for contrast. */
  {
    g_autoptr(GError) error = NULL;
    g_autoptr(GVariant) out = NULL;

    fd = make_memfd (len, TRUE);
    memfd_ref (ref, len);
    out = _mpg_channel_decode (ref, sizeof ref, &fd, 1, 1024 * 1024, NULL, &error);
    g_assert_no_error (error);
    g_assert_cmpstr (g_variant_get_string (out, NULL), ==, "hello from a memfd");
  }

  /* Unsealed: the sender could still change it under us. */
  fd = make_memfd (len, FALSE);
  memfd_ref (ref, len);
  expect_decode_error (ref, sizeof ref, &fd, 1, MPG_ERROR_PROTOCOL);

  /* Size differs from the announced one. */
  fd = make_memfd (len, TRUE);
  memfd_ref (ref, len + 1);
  expect_decode_error (ref, sizeof ref, &fd, 1, MPG_ERROR_PROTOCOL);

  /* Announced larger than allowed: refused before mapping. */
  fd = make_memfd (len, TRUE);
  memfd_ref (ref, G_GUINT64_CONSTANT (1) << 40);
  expect_decode_error (ref, sizeof ref, &fd, 1, MPG_ERROR_TOO_LARGE);

  /* A frame whose own header is bigger than the memfd. */
  fd = make_memfd (len - 1, TRUE);
  memfd_ref (ref, len - 1);
  expect_decode_error (ref, sizeof ref, &fd, 1, MPG_ERROR_PROTOCOL);

  /* No fd at all, a short reference, flags set. */
  memfd_ref (ref, len);
  expect_decode_error (ref, sizeof ref, NULL, 0, MPG_ERROR_PROTOCOL);
  fd = make_memfd (len, TRUE);
  expect_decode_error (ref, 12, &fd, 1, MPG_ERROR_PROTOCOL);
  fd = make_memfd (len, TRUE);
  ref[4] = 1;
  expect_decode_error (ref, sizeof ref, &fd, 1, MPG_ERROR_PROTOCOL);

  /* Not a memfd at all (a pipe), which cannot be sealed. */
  {
    int p[2];

    g_assert_cmpint (pipe (p), ==, 0);
    close (p[1]);
    memfd_ref (ref, len);
    expect_decode_error (ref, sizeof ref, &p[0], 1, MPG_ERROR_PROTOCOL);
  }

  g_assert_cmpuint (count_open_fds (), ==, fds_before);
}

static void
test_channel_hostile_datagrams (void)
{
  int fds[2];
  g_autoptr(GError) error = NULL;
  g_autoptr(GVariant) out = NULL;
  g_autoptr(GBytes) frame = _mpg_wire_encode (g_variant_new_int32 (7), NULL);
  gsize len;
  const guint8 *data = g_bytes_get_data (frame, &len);
  g_autofree guint8 *trailing = g_malloc0 (len + 3);
  g_autofree guint8 *huge = g_malloc0 (MPG_CHANNEL_INLINE_MAX + 100);
  const char garbage[] = "garbage";

  g_test_summary ("Garbage, truncated, padded and oversized datagrams are refused; the next message arrives");

  g_assert_true (_mpg_channel_socketpair (fds, &error));
  memcpy (trailing, data, len);

  g_assert_cmpint (send (fds[0], "", 0, 0), ==, 0);
  g_assert_cmpint (send (fds[0], garbage, sizeof garbage, 0), ==, sizeof garbage);
  g_assert_cmpint (send (fds[0], data, len - 1, 0), ==, (gssize) len - 1);
  g_assert_cmpint (send (fds[0], trailing, len + 3, 0), ==, (gssize) len + 3);
  memcpy (huge, data, len);
  g_assert_cmpint (send (fds[0], huge, MPG_CHANNEL_INLINE_MAX + 100, 0), ==, MPG_CHANNEL_INLINE_MAX + 100);
  g_assert_true (_mpg_channel_send (fds[0], g_variant_new_int32 (42), NULL,
                                    MPG_WIRE_DEFAULT_MAX, -1, NULL, &error));

  /* An empty datagram is not the end of the stream. */
  for (guint i = 0; i < 5; i++)
    {
      out = _mpg_channel_receive (fds[1], MPG_WIRE_DEFAULT_MAX, -1, NULL, NULL, &error);
      g_assert_error (error, MPG_ERROR, MPG_ERROR_PROTOCOL);
      g_assert_null (out);
      g_clear_error (&error);
    }

  out = receive_ok (fds[1]);
  g_assert_cmpint (g_variant_get_int32 (out), ==, 42);

  close (fds[0]);
  close (fds[1]);
}

static gpointer
cancel_soon (gpointer data)
{
  g_usleep (50 * 1000);
  g_cancellable_cancel (data);
  return NULL;
}

static void
test_channel_cancel (void)
{
  int fds[2];
  g_autoptr(GError) error = NULL;
  g_autoptr(GCancellable) cancellable = g_cancellable_new ();
  g_autoptr(GVariant) out = NULL;
  GThread *thread;

  g_test_summary ("A blocked receive ends when its cancellable is cancelled");

  g_assert_true (_mpg_channel_socketpair (fds, &error));
  thread = g_thread_new ("cancel", cancel_soon, cancellable);
  out = _mpg_channel_receive (fds[1], MPG_WIRE_DEFAULT_MAX, g_get_monotonic_time () + 10 * G_USEC_PER_SEC,
                              cancellable, NULL, &error);
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_thread_join (thread);
  close (fds[0]);
  close (fds[1]);
}

int
main (int   argc,
      char *argv[])
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/Mpg/Channel/small-and-large", test_channel_small_and_large);
  g_test_add_func ("/Mpg/Channel/limits", test_channel_limits);
  g_test_add_func ("/Mpg/Channel/fds", test_channel_fds);
  g_test_add_func ("/Mpg/Channel/hostile-memfd", test_channel_hostile_memfd);
  g_test_add_func ("/Mpg/Channel/hostile-datagrams", test_channel_hostile_datagrams);
  g_test_add_func ("/Mpg/Channel/cancel", test_channel_cancel);

  return g_test_run ();
}
