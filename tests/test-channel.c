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
#include <sys/stat.h>
#include <sys/wait.h>

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

/* A memfd holding @offset bytes of padding, then the first @size bytes of
 * a valid frame (padded with zeros past its end), with @seals. */
static int
make_memfd (gsize offset,
            gsize size,
            int   seals)
{
  int fd = memfd_create ("test", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  g_autoptr(GBytes) frame = _mpg_wire_encode (g_variant_new_string ("hello from a memfd"), NULL);
  gsize len;
  const guint8 *data = g_bytes_get_data (frame, &len);

  g_assert_cmpint (fd, >=, 0);
  g_assert_cmpint (ftruncate (fd, offset + size), ==, 0);
  g_assert_cmpint (pwrite (fd, "padding", MIN (offset, 7), 0), ==, (gssize) MIN (offset, 7));
  g_assert_cmpint (pwrite (fd, data, MIN (len, size), offset), ==, (gssize) MIN (len, size));
  if (seals != 0)
    g_assert_cmpint (fcntl (fd, F_ADD_SEALS, seals), ==, 0);
  return fd;
}

#define SEALED (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE)

static void
memfd_ref (guint8  ref[MPG_CHANNEL_REF_SIZE],
           guint32 flags,
           guint64 size,
           guint64 offset)
{
  flags = GUINT32_TO_LE (flags);
  size = GUINT64_TO_LE (size);
  offset = GUINT64_TO_LE (offset);
  memcpy (ref, "MPGM", 4);
  memcpy (ref + 4, &flags, 4);
  memcpy (ref + 8, &size, 8);
  memcpy (ref + 16, &offset, 8);
}

static void
expect_hello (const guint8 *ref,
              int           fd)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GVariant) out = NULL;

  out = _mpg_channel_decode (ref, MPG_CHANNEL_REF_SIZE, &fd, 1, 1024 * 1024, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (g_variant_get_string (out, NULL), ==, "hello from a memfd");
}

static void
test_channel_hostile_memfd (void)
{
  g_autoptr(GBytes) frame = _mpg_wire_encode (g_variant_new_string ("hello from a memfd"), NULL);
  gsize len = g_bytes_get_size (frame);
  guint8 ref[MPG_CHANNEL_REF_SIZE];
  guint fds_before = count_open_fds ();
  int fd;

  g_test_summary ("Hostile references to large messages are refused and their fds closed");

  /* Valid ones, for contrast: sealed, at offset 0 or further in. */
  memfd_ref (ref, 0, len, 0);
  expect_hello (ref, make_memfd (0, len, SEALED));
  memfd_ref (ref, 0, len, 100);
  expect_hello (ref, make_memfd (100, len, SEALED));

  /* Unsealed or partly sealed: the sender could still change it under us. */
  memfd_ref (ref, 0, len, 0);
  fd = make_memfd (0, len, 0);
  expect_decode_error (ref, sizeof ref, &fd, 1, MPG_ERROR_PROTOCOL);
  fd = make_memfd (0, len, F_SEAL_WRITE);
  expect_decode_error (ref, sizeof ref, &fd, 1, MPG_ERROR_PROTOCOL);
  fd = make_memfd (0, len, F_SEAL_SHRINK | F_SEAL_GROW);
  expect_decode_error (ref, sizeof ref, &fd, 1, MPG_ERROR_PROTOCOL);

  /* Size differs from the announced one, either way, also by the offset. */
  fd = make_memfd (0, len, SEALED);
  memfd_ref (ref, 0, len + 1, 0);
  expect_decode_error (ref, sizeof ref, &fd, 1, MPG_ERROR_PROTOCOL);
  fd = make_memfd (0, len + 1, SEALED);
  memfd_ref (ref, 0, len, 0);
  expect_decode_error (ref, sizeof ref, &fd, 1, MPG_ERROR_PROTOCOL);
  fd = make_memfd (8, len, SEALED);
  memfd_ref (ref, 0, len, 16);
  expect_decode_error (ref, sizeof ref, &fd, 1, MPG_ERROR_PROTOCOL);

  /* Announced larger than allowed: refused before mapping. */
  fd = make_memfd (0, len, SEALED);
  memfd_ref (ref, 0, G_GUINT64_CONSTANT (1) << 40, 0);
  expect_decode_error (ref, sizeof ref, &fd, 1, MPG_ERROR_TOO_LARGE);

  /* A frame whose own header is bigger than the memfd. */
  fd = make_memfd (0, len - 1, SEALED);
  memfd_ref (ref, 0, len - 1, 0);
  expect_decode_error (ref, sizeof ref, &fd, 1, MPG_ERROR_PROTOCOL);

  /* No fd at all, a short or long reference, unknown flags, an offset
   * too far. */
  memfd_ref (ref, 0, len, 0);
  expect_decode_error (ref, sizeof ref, NULL, 0, MPG_ERROR_PROTOCOL);
  fd = make_memfd (0, len, SEALED);
  expect_decode_error (ref, 16, &fd, 1, MPG_ERROR_PROTOCOL);
  {
    guint8 longer[MPG_CHANNEL_REF_SIZE + 8] = { 0 };

    memcpy (longer, ref, sizeof ref);
    fd = make_memfd (0, len, SEALED);
    expect_decode_error (longer, sizeof longer, &fd, 1, MPG_ERROR_PROTOCOL);
  }
  fd = make_memfd (0, len, SEALED);
  memfd_ref (ref, 2, len, 0);
  expect_decode_error (ref, sizeof ref, &fd, 1, MPG_ERROR_PROTOCOL);
  fd = make_memfd (MPG_CHANNEL_REF_MAX_OFFSET + 8, len, SEALED);
  memfd_ref (ref, 0, len, MPG_CHANNEL_REF_MAX_OFFSET + 8);
  expect_decode_error (ref, sizeof ref, &fd, 1, MPG_ERROR_PROTOCOL);

  /* Not a memfd at all (a pipe), which cannot be sealed, nor read
   * without perhaps blocking. */
  for (guint32 flags = 0; flags <= MPG_CHANNEL_REF_REUSE; flags++)
    {
      int p[2];

      g_assert_cmpint (pipe (p), ==, 0);
      close (p[1]);
      memfd_ref (ref, flags, len, 0);
      expect_decode_error (ref, sizeof ref, &p[0], 1, MPG_ERROR_PROTOCOL);
    }

  /* None left open; the channel's idle buffers of earlier tests may have
   * been closed meanwhile (slowly, under valgrind). */
  g_assert_cmpuint (count_open_fds (), <=, fds_before);
}

static void
test_channel_reused_memfd (void)
{
  g_autoptr(GBytes) frame = _mpg_wire_encode (g_variant_new_string ("hello from a memfd"), NULL);
  gsize len = g_bytes_get_size (frame);
  guint8 ref[MPG_CHANNEL_REF_SIZE];
  guint fds_before = count_open_fds ();
  guint8 head[4];
  int fd, keep;

  g_test_summary ("A buffer the sender reuses is copied before it is checked, released after, and refused when short or not a memfd");

  /* Unsealed, longer than the frame, at an offset: copied out, then its
   * state word zeroed. */
  memfd_ref (ref, MPG_CHANNEL_REF_REUSE, len, 40);
  fd = make_memfd (40, len + 5000, 0);
  g_assert_cmpint (pwrite (fd, "MPGB", 4, 0), ==, 4);
  keep = dup (fd);
  {
    g_autoptr(GError) error = NULL;
    g_autoptr(GVariant) out = NULL;
    g_autoptr(GBytes) other = _mpg_wire_encode (g_variant_new_string ("changed after the copy"), NULL);

    out = _mpg_channel_decode (ref, sizeof ref, &fd, 1, 1024 * 1024, NULL, &error);
    g_assert_no_error (error);
    g_assert_cmpint (pread (keep, head, 4, 0), ==, 4);
    g_assert_cmpmem (head, 4, "\0\0\0\0", 4);

    /* What the sender writes next does not change the value. */
    g_assert_cmpint (pwrite (keep, g_bytes_get_data (other, NULL), g_bytes_get_size (other), 40), ==,
                     (gssize) g_bytes_get_size (other));
    g_assert_cmpstr (g_variant_get_string (out, NULL), ==, "hello from a memfd");
  }
  close (keep);

  /* Sealed (the release fails, harmlessly) or sealed against writes only. */
  memfd_ref (ref, MPG_CHANNEL_REF_REUSE, len, 0);
  expect_hello (ref, make_memfd (0, len, SEALED));
  expect_hello (ref, make_memfd (0, len, F_SEAL_WRITE));

  /* Shorter than announced, by the offset or outright. */
  fd = make_memfd (0, len, 0);
  memfd_ref (ref, MPG_CHANNEL_REF_REUSE, len, 1);
  expect_decode_error (ref, sizeof ref, &fd, 1, MPG_ERROR_PROTOCOL);
  fd = make_memfd (0, len, 0);
  memfd_ref (ref, MPG_CHANNEL_REF_REUSE, len + 1, 0);
  expect_decode_error (ref, sizeof ref, &fd, 1, MPG_ERROR_PROTOCOL);

  /* Invalid frames are refused as inline ones are, and the buffer is
   * released all the same. */
  fd = make_memfd (0, len + 3, 0);
  keep = dup (fd);
  memfd_ref (ref, MPG_CHANNEL_REF_REUSE, len + 3, 0);
  expect_decode_error (ref, sizeof ref, &fd, 1, MPG_ERROR_PROTOCOL);
  g_assert_cmpint (pread (keep, head, 4, 0), ==, 4);
  g_assert_cmpmem (head, 4, "\0\0\0\0", 4);
  close (keep);
  fd = make_memfd (0, 12, 0);
  memfd_ref (ref, MPG_CHANNEL_REF_REUSE, MPG_WIRE_HEADER_SIZE, 0);
  expect_decode_error (ref, sizeof ref, &fd, 1, MPG_ERROR_PROTOCOL);

  /* Larger than allowed: refused before anything is allocated. */
  fd = make_memfd (0, len, 0);
  memfd_ref (ref, MPG_CHANNEL_REF_REUSE, G_GUINT64_CONSTANT (1) << 40, 0);
  expect_decode_error (ref, sizeof ref, &fd, 1, MPG_ERROR_TOO_LARGE);

  /* As above: none left open. */
  g_assert_cmpuint (count_open_fds (), <=, fds_before);
}

/* Takes one datagram off @fd as it is: its bytes and its fds. */
static gsize
receive_raw (int     fd,
             guint8 *buf,
             gsize   size,
             int    *fds,
             guint  *n_fds)
{
  union {
    char buf[CMSG_SPACE (sizeof (int) * 8)];
    struct cmsghdr align;
  } control;
  struct iovec iov = { buf, size };
  struct msghdr msg = { 0 };
  gssize n;

  g_assert_true (_mpg_channel_wait (fd, G_IO_IN, g_get_monotonic_time () + 5 * G_USEC_PER_SEC,
                                    NULL, NULL));
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control.buf;
  msg.msg_controllen = sizeof control.buf;
  n = recvmsg (fd, &msg, MSG_CMSG_CLOEXEC);
  g_assert_cmpint (n, >, 0);
  g_assert_cmpint (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC), ==, 0);

  *n_fds = 0;
  for (struct cmsghdr *cmsg = CMSG_FIRSTHDR (&msg); cmsg != NULL; cmsg = CMSG_NXTHDR (&msg, cmsg))
    if (cmsg->cmsg_level == SOL_SOCKET && cmsg->cmsg_type == SCM_RIGHTS)
      {
        *n_fds = (cmsg->cmsg_len - CMSG_LEN (0)) / sizeof (int);
        memcpy (fds, CMSG_DATA (cmsg), *n_fds * sizeof (int));
      }

  return n;
}

typedef enum
{
  WAY_INLINE,
  WAY_REUSED,
  WAY_SEALED,
} Way;

/* Receives one message the way _mpg_channel_receive() does, telling how it
 * came, and which file its memfd was (its inode), 0 for none. */
static GVariant *
receive_how (int      fd,
             Way     *way,
             guint64 *inode)
{
  g_autoptr(GError) error = NULL;
  g_autofree guint8 *buf = g_malloc (MPG_CHANNEL_INLINE_MAX + 1);
  int fds[8];
  guint n_fds;
  gsize n = receive_raw (fd, buf, MPG_CHANNEL_INLINE_MAX + 1, fds, &n_fds);
  GVariant *out;

  *inode = 0;
  if (n == MPG_CHANNEL_REF_SIZE && memcmp (buf, "MPGM", 4) == 0)
    {
      struct stat st;
      guint32 flags;
      int seals;

      g_assert_cmpuint (n_fds, ==, 1);
      g_assert_cmpint (fstat (fds[0], &st), ==, 0);
      *inode = st.st_ino;
      memcpy (&flags, buf + 4, 4);
      flags = GUINT32_FROM_LE (flags);
      seals = fcntl (fds[0], F_GET_SEALS);
      if (flags == MPG_CHANNEL_REF_REUSE)
        {
          /* Nobody can seal it, and so make its sender's writes fail. */
          g_assert_cmpint (seals, ==, F_SEAL_SEAL);
          *way = WAY_REUSED;
        }
      else
        {
          g_assert_cmpint (flags, ==, 0);
          g_assert_cmpint (seals & SEALED, ==, SEALED);
          *way = WAY_SEALED;
        }
    }
  else
    {
      g_assert_cmpuint (n_fds, ==, 0);
      *way = WAY_INLINE;
    }

  out = _mpg_channel_decode (buf, n, fds, n_fds, MPG_WIRE_DEFAULT_MAX, NULL, &error);
  g_assert_no_error (error);
  return out;
}

static GVariant *
byte_message (gsize  frame_size,
              guint8 seed)
{
  /* An `ay` frame: header, type string "ay", data. */
  gsize size = frame_size - MPG_WIRE_HEADER_SIZE - 2;
  guint8 *data = g_malloc (size);

  for (gsize i = 0; i < size; i++)
    data[i] = (guint8) (i * 131 + seed + (i >> 12));
  return g_variant_ref_sink (g_variant_new_from_data (G_VARIANT_TYPE_BYTESTRING, data, size,
                                                      TRUE, g_free, data));
}

static guint
count_threads (void)
{
  g_autoptr(GDir) dir = g_dir_open ("/proc/self/task", 0, NULL);
  guint n = 0;

  while (g_dir_read_name (dir) != NULL)
    n++;
  return n;
}

/* Until the buffers that earlier tests left are closed, and the thread
 * that closes them has ended (this program has no other). */
static void
wait_buffers_closed (void)
{
  gint64 deadline = g_get_monotonic_time () + 10 * G_USEC_PER_SEC;

  _mpg_channel_set_buffer_idle_time (10 * 1000);
  while (count_threads () > 1 && g_get_monotonic_time () < deadline)
    g_usleep (10 * 1000);
  g_assert_cmpuint (count_threads (), ==, 1);
}

/* g_variant_equal() compares arrays element by element: seconds for MiBs. */
static void
assert_same_bytes (GVariant *a,
                   GVariant *b)
{
  g_assert_cmpstr (g_variant_get_type_string (a), ==, g_variant_get_type_string (b));
  g_assert_cmpmem (g_variant_get_data (a), g_variant_get_size (a),
                   g_variant_get_data (b), g_variant_get_size (b));
}

static void
test_channel_thresholds (void)
{
  struct {
    gsize frame_size;
    Way way;
  } cases[] = {
    { MPG_CHANNEL_INLINE_MAX, WAY_INLINE },
    { MPG_CHANNEL_INLINE_MAX + 1, WAY_REUSED },
    { MPG_CHANNEL_REUSE_MAX, WAY_REUSED },
    { MPG_CHANNEL_REUSE_MAX + 1, WAY_SEALED },
    { 3 * MPG_CHANNEL_REUSE_MAX + 7, WAY_SEALED },
  };
  g_autoptr(GError) error = NULL;
  guint fds_before;
  int fds[2];

  g_test_summary ("A frame up to each size limit goes inline, in a reused buffer, in a sealed memfd; one byte more takes the next way");

  wait_buffers_closed ();
  _mpg_channel_set_buffer_idle_time (60 * G_USEC_PER_SEC);
  g_assert_true (_mpg_channel_socketpair (fds, &error));
  fds_before = count_open_fds ();
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr(GVariant) in = byte_message (cases[i].frame_size, i);
      g_autoptr(GVariant) out = NULL;
      Way way;
      guint64 inode;

      g_assert_true (_mpg_channel_send (fds[0], in, NULL, MPG_WIRE_DEFAULT_MAX, -1,
                                        NULL, &error));
      g_assert_no_error (error);
      out = receive_how (fds[1], &way, &inode);
      g_assert_cmpint (way, ==, cases[i].way);
      assert_same_bytes (out, in);
    }
  /* The sender keeps its buffer open for the next message; nothing else. */
  g_assert_cmpuint (count_open_fds (), ==, fds_before + 1);
  close (fds[0]);
  close (fds[1]);
  _mpg_channel_set_buffer_idle_time (200 * 1000);
}

static void
test_channel_frame_bytes (void)
{
  const char *texts[] = {
    "int32 7", "('tuple', [1, 2], {'k': <'v'>})", "@mv nothing", "@as []", "[true, false]",
  };
  g_autoptr(GError) error = NULL;
  int fds[2];

  g_test_summary ("The channel sends the bytes _mpg_wire_encode() makes, inline and in a memfd, also for values not in normal form");

  g_assert_true (_mpg_channel_socketpair (fds, &error));
  for (guint i = 0; i < G_N_ELEMENTS (texts) + 3; i++)
    {
      g_autoptr(GVariant) value = NULL;
      g_autoptr(GBytes) expected = NULL;
      g_autofree guint8 *buf = g_malloc (MPG_CHANNEL_INLINE_MAX + 1);
      int got_fds[8];
      guint n_fds;
      gsize n;

      if (i < G_N_ELEMENTS (texts))
        value = g_variant_ref_sink (g_variant_new_parsed (texts[i]));
      else if (i == G_N_ELEMENTS (texts))
        {
          /* `ab` with a 2: not in normal form; sent as GLib normalises it. */
          static const guint8 odd[] = { 1, 2, 0 };

          value = g_variant_ref_sink (g_variant_new_from_data (G_VARIANT_TYPE ("ab"), odd, sizeof odd,
                                                               FALSE, NULL, NULL));
        }
      else
        {
          /* Large, with every alignment of the data in the sender's memory. */
          g_autoptr(GVariant) whole = byte_message (MPG_CHANNEL_INLINE_MAX + 4096, i);
          gsize skip = i - G_N_ELEMENTS (texts) - 1 + 5;
          gsize len;
          const guint8 *data = g_variant_get_fixed_array (whole, &len, 1);

          value = g_variant_ref_sink (g_variant_new_from_data (G_VARIANT_TYPE_BYTESTRING, data + skip,
                                                               len - skip, TRUE,
                                                               (GDestroyNotify) g_variant_unref,
                                                               g_variant_ref (whole)));
        }

      expected = _mpg_wire_encode (value, &error);
      g_assert_no_error (error);
      g_assert_true (_mpg_channel_send (fds[0], value, NULL, MPG_WIRE_DEFAULT_MAX, -1,
                                        NULL, &error));
      g_assert_no_error (error);

      n = receive_raw (fds[1], buf, MPG_CHANNEL_INLINE_MAX + 1, got_fds, &n_fds);
      if (g_bytes_get_size (expected) <= MPG_CHANNEL_INLINE_MAX)
        {
          g_assert_cmpuint (n_fds, ==, 0);
          g_assert_cmpmem (buf, n, g_bytes_get_data (expected, NULL), g_bytes_get_size (expected));
        }
      else
        {
          guint64 size, offset;
          g_autofree guint8 *content = NULL;
          const guint8 *data;

          g_assert_cmpuint (n, ==, MPG_CHANNEL_REF_SIZE);
          g_assert_cmpuint (n_fds, ==, 1);
          memcpy (&size, buf + 8, 8);
          memcpy (&offset, buf + 16, 8);
          size = GUINT64_FROM_LE (size);
          offset = GUINT64_FROM_LE (offset);
          g_assert_cmpuint (size, ==, g_bytes_get_size (expected));
          content = g_malloc (size);
          g_assert_cmpint (pread (got_fds[0], content, size, offset), ==, (gssize) size);
          g_assert_cmpmem (content, size, g_bytes_get_data (expected, NULL), size);

          /* The data at the offset within a cache line it had in memory. */
          data = g_variant_get_data (value);
          g_assert_cmpuint ((offset + size - g_variant_get_size (value)) % 64, ==, (guintptr) data % 64);
          close (got_fds[0]);
        }
    }
  close (fds[0]);
  close (fds[1]);
}

static void
test_channel_buffer_reuse (void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GVariant) first = NULL;
  g_autoptr(GVariant) kept = NULL;
  GVariant *queued[3];
  guint64 inode, inode2, inodes[3];
  Way way;
  int a[2], b[2];
  int status;
  pid_t pid;

  g_test_summary ("A large message's buffer is reused once its receiver copied it, never before, only for the same socket, and not by a forked child");

  /* Kept however slow this runs (valgrind). */
  _mpg_channel_set_buffer_idle_time (60 * G_USEC_PER_SEC);
  g_assert_true (_mpg_channel_socketpair (a, &error));
  g_assert_true (_mpg_channel_socketpair (b, &error));

  /* Taken, then the next message reuses its buffer; the value taken first
   * is the receiver's own copy. */
  first = byte_message (200 * 1024, 1);
  g_assert_true (_mpg_channel_send (a[0], first, NULL, MPG_WIRE_DEFAULT_MAX, -1, NULL, &error));
  kept = receive_how (a[1], &way, &inode);
  g_assert_cmpint (way, ==, WAY_REUSED);
  {
    g_autoptr(GVariant) second = byte_message (300 * 1024, 2);
    g_autoptr(GVariant) out = NULL;

    g_assert_true (_mpg_channel_send (a[0], second, NULL, MPG_WIRE_DEFAULT_MAX, -1, NULL, &error));
    out = receive_how (a[1], &way, &inode2);
    g_assert_cmpint (way, ==, WAY_REUSED);
    g_assert_cmpuint (inode2, ==, inode);
    assert_same_bytes (out, second);
    assert_same_bytes (kept, first);
  }

  /* Messages not taken yet keep their buffers: each goes in its own. */
  for (guint i = 0; i < G_N_ELEMENTS (queued); i++)
    {
      queued[i] = byte_message (100 * 1024 + i, 10 + i);
      g_assert_true (_mpg_channel_send (a[0], queued[i], NULL, MPG_WIRE_DEFAULT_MAX, -1,
                                        NULL, &error));
    }
  for (guint i = 0; i < G_N_ELEMENTS (queued); i++)
    {
      g_autoptr(GVariant) out = receive_how (a[1], &way, &inodes[i]);

      assert_same_bytes (out, queued[i]);
      for (guint j = 0; j < i; j++)
        g_assert_cmpuint (inodes[i], !=, inodes[j]);
      g_variant_unref (queued[i]);
    }

  /* Another socket gets a buffer of its own. */
  {
    g_autoptr(GVariant) out = NULL;

    g_assert_true (_mpg_channel_send (b[0], first, NULL, MPG_WIRE_DEFAULT_MAX, -1, NULL, &error));
    out = receive_how (b[1], &way, &inode2);
    g_assert_cmpint (way, ==, WAY_REUSED);
    for (guint i = 0; i < G_N_ELEMENTS (inodes); i++)
      g_assert_cmpuint (inode2, !=, inodes[i]);
    g_assert_cmpuint (inode2, !=, inode);
  }

  /* A forked child does not write into its parent's buffers. */
  pid = fork ();
  g_assert_cmpint (pid, >=, 0);
  if (pid == 0)
    {
      g_autoptr(GError) child_error = NULL;
      gboolean ok = _mpg_channel_send (a[0], first, NULL, MPG_WIRE_DEFAULT_MAX, -1,
                                       NULL, &child_error);

      if (!ok)
        g_printerr ("child: %s\n", child_error->message);
      _exit (ok ? 0 : 1);
    }
  /* Its send worked if its message arrives. (Not its exit code: under
   * valgrind, that is 1 for what the child holds of its parent's.) */
  g_assert_cmpint (waitpid (pid, &status, 0), ==, pid);
  g_assert_true (WIFEXITED (status));
  {
    g_autoptr(GVariant) out = receive_how (a[1], &way, &inode2);

    g_assert_cmpint (way, ==, WAY_REUSED);
    assert_same_bytes (out, first);
    g_assert_cmpuint (inode2, !=, inode);
    for (guint i = 0; i < G_N_ELEMENTS (inodes); i++)
      g_assert_cmpuint (inode2, !=, inodes[i]);
  }

  close (a[0]);
  close (a[1]);
  close (b[0]);
  close (b[1]);
  _mpg_channel_set_buffer_idle_time (200 * 1000);
}

static void
test_channel_buffers_closed (void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GVariant) in = byte_message (MPG_CHANNEL_INLINE_MAX + 100, 3);
  guint fds_before;
  gint64 deadline;
  int fds[2];

  g_test_summary ("A sender closes the buffers it has not used for a while, and the thread that does so ends");

  wait_buffers_closed ();
  g_assert_true (_mpg_channel_socketpair (fds, &error));
  fds_before = count_open_fds ();

  /* Kept while in use, however slow this runs (valgrind). */
  _mpg_channel_set_buffer_idle_time (60 * G_USEC_PER_SEC);
  for (guint i = 0; i < 3; i++)
    {
      g_autoptr(GVariant) out = NULL;
      Way way;
      guint64 inode;

      g_assert_true (_mpg_channel_send (fds[0], in, NULL, MPG_WIRE_DEFAULT_MAX, -1, NULL, &error));
      g_assert_no_error (error);
      out = receive_how (fds[1], &way, &inode);
      g_assert_cmpint (way, ==, WAY_REUSED);
    }
  g_assert_cmpuint (count_open_fds (), ==, fds_before + 1);
  g_assert_cmpuint (count_threads (), ==, 2);

  /* Then closed once unused for the idle time. */
  _mpg_channel_set_buffer_idle_time (20 * 1000);
  deadline = g_get_monotonic_time () + 10 * G_USEC_PER_SEC;
  while ((count_open_fds () != fds_before || count_threads () != 1) &&
         g_get_monotonic_time () < deadline)
    g_usleep (10 * 1000);
  g_assert_cmpuint (count_open_fds (), ==, fds_before);
  g_assert_cmpuint (count_threads (), ==, 1);

  _mpg_channel_set_buffer_idle_time (200 * 1000);
  close (fds[0]);
  close (fds[1]);
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
  g_test_add_func ("/Mpg/Channel/reused-memfd", test_channel_reused_memfd);
  g_test_add_func ("/Mpg/Channel/thresholds", test_channel_thresholds);
  g_test_add_func ("/Mpg/Channel/frame-bytes", test_channel_frame_bytes);
  g_test_add_func ("/Mpg/Channel/buffer-reuse", test_channel_buffer_reuse);
  g_test_add_func ("/Mpg/Channel/buffers-closed", test_channel_buffers_closed);
  g_test_add_func ("/Mpg/Channel/hostile-datagrams", test_channel_hostile_datagrams);
  g_test_add_func ("/Mpg/Channel/cancel", test_channel_cancel);

  return g_test_run ();
}
