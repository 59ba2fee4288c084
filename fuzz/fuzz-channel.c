/* fuzz-channel.c: libFuzzer target for the fd-carrying message path
 *
 * _mpg_channel_decode() is what every receiver runs on a datagram and the
 * fds that came with it (SCM_RIGHTS). A large message travels in a memfd,
 * the first fd, that a 24-byte reference ("MPGM", flags, size, offset)
 * announces: sealed (flags 0), or a buffer its sender reuses (flags
 * MPG_CHANNEL_REF_REUSE), see mpg-channel-private.h. The input chooses the
 * fds, creates them for real and passes them with a datagram:
 *
 *   byte 0     number of fds: 0 to 7, or 251 (the most a datagram brings)
 *   byte 1     bits 0-2: what fd 0 is: a memfd holding the payload, sealed
 *              as a sender seals it (0), not sealed (1), sealed against
 *              resizing only (2), sealed against writes only (3), a
 *              pipe's read end (4) or write end (5), /dev/null (6), a
 *              memfd that cannot be sealed, as a sender's reused buffer
 *              (7);
 *              bit 3: the datagram is a valid reference to the whole
 *              payload, at offset 0, with flags 0 (or, for 7, the reuse
 *              flag) (else it is taken from the input);
 *              bit 4: the caller does not take the fds (out_fd_list NULL);
 *              bits 5-7: the size cap: 1 MiB (0-3), the payload's size (4),
 *              one byte less (5), 64 KiB (6), 16 bytes (7)
 *   byte 2     what fds 1 to 4 are, two bits each: /dev/null, a pipe's
 *              read end, an AF_UNIX SOCK_SEQPACKET socket, a queue's
 *              shared block (a 4 KiB memfd sealed against resizing, that
 *              starts with the first 16 bytes of the payload); the others
 *              are /dev/null
 *   bytes 3-4  the datagram's length L (little endian), when not made up
 *   L bytes    the datagram
 *   the rest   the payload: the memfd's content
 *
 * Checked: a value or a GError; a value exactly when the frame (inline, in
 * a properly sealed memfd of exactly the announced offset and size, or in
 * any memfd at least that long with the reuse flag) decodes, within the
 * cap, and its handles index the fds that follow the memfd; the fds are
 * handed over in order or closed, never leaked, never closed twice. A
 * received `(hbb)` or `(hhh)` then goes through what rebuilds a connection
 * or a queue from a handle (mpg_connection_new_from_handle,
 * mpg_queue_new_from_handle), with their checks of the fds.
 *
 * Build and run: fuzz/run SECONDS channel
 *
 * Copyright 2026 The libmpg authors
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <libmpg.h>

#include "mpg-channel-private.h"
#include "mpg-wire-private.h"

#include "fuzz-common.h"

#define MAX_FDS (MPG_CHANNEL_MAX_FDS + 1)
#define REQUIRED_SEALS (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE)

static int devnull = -1;

/* seals -1: a memfd that cannot be sealed. */
static int
make_memfd (const guint8 *data,
            gsize         len,
            int           seals)
{
  int fd = memfd_create ("fuzz", MFD_CLOEXEC | (seals >= 0 ? MFD_ALLOW_SEALING : 0));
  gsize done = 0;

  g_assert (fd >= 0);
  while (done < len)
    {
      gssize n = write (fd, data + done, len - done);

      g_assert (n > 0);
      done += n;
    }
  if (seals > 0)
    g_assert (fcntl (fd, F_ADD_SEALS, seals) == 0);

  return fd;
}

static int
make_pipe_end (gboolean read_end,
               int     *other)
{
  int p[2];

  g_assert (pipe2 (p, O_CLOEXEC) == 0);
  *other = p[read_end ? 1 : 0];
  return p[read_end ? 0 : 1];
}

static gsize
choose_cap (guint choice,
            gsize payload_len)
{
  switch (choice)
    {
    case 4: return MAX (payload_len, 1);
    case 5: return MAX (payload_len, 2) - 1;
    case 6: return MPG_CHANNEL_INLINE_MAX;
    case 7: return MPG_WIRE_HEADER_SIZE;
    default: return FUZZ_MAX_MESSAGE;
    }
}

int
LLVMFuzzerTestOneInput (const guint8 *data,
                        size_t        size)
{
  FuzzInput in = { data, size };
  g_autoptr(GError) error = NULL;
  g_autoptr(GVariant) value = NULL;
  g_autoptr(GVariant) expected = NULL;
  g_autoptr(GUnixFDList) fd_list = NULL;
  int fds[MAX_FDS], passed[MAX_FDS], others[MAX_FDS];
  guint n_fds, n_others = 0;
  guint8 b0, b1, b2;
  guint fd0_kind, cap_choice;
  gboolean made_up_ref, want_fds;
  guint8 ref[MPG_CHANNEL_REF_SIZE];
  const guint8 *datagram;
  gsize datagram_len, payload_len, cap;
  const guint8 *payload;
  gboolean is_ref, memfd_ok = FALSE;
  guint64 ref_offset = 0, ref_size = 0;
  guint first_user_fd = 0;

  if (devnull < 0)
    devnull = open ("/dev/null", O_RDONLY | O_CLOEXEC);
  g_assert (devnull >= 0);

  b0 = fuzz_u8 (&in);
  b1 = fuzz_u8 (&in);
  b2 = fuzz_u8 (&in);
  n_fds = b0 >= 0xfc ? MAX_FDS : b0 % 8;
  fd0_kind = b1 & 7;
  made_up_ref = (b1 & 8) != 0;
  want_fds = (b1 & 16) == 0;
  cap_choice = b1 >> 5;

  if (made_up_ref)
    {
      payload = in.data;
      payload_len = in.size;
    }
  else
    {
      guint len = fuzz_u8 (&in);

      len |= (guint) fuzz_u8 (&in) << 8;
      datagram = in.data;
      datagram_len = MIN (len, in.size);
      payload = in.data + datagram_len;
      payload_len = in.size - datagram_len;
    }

  if (made_up_ref)
    {
      guint32 flags = GUINT32_TO_LE (fd0_kind == 7 ? MPG_CHANNEL_REF_REUSE : 0);
      guint64 ref_size = GUINT64_TO_LE ((guint64) payload_len);
      guint64 offset = 0;

      memcpy (ref, "MPGM", 4);
      memcpy (ref + 4, &flags, 4);
      memcpy (ref + 8, &ref_size, 8);
      memcpy (ref + 16, &offset, 8);
      datagram = ref;
      datagram_len = sizeof ref;
    }
  cap = choose_cap (cap_choice, payload_len);

  for (guint i = 0; i < n_fds; i++)
    {
      guint kind = i == 0 ? fd0_kind : (i <= 4 ? (b2 >> (2 * (i - 1))) & 3 : 0);

      if (i == 0)
        {
          switch (kind)
            {
            case 0: fds[i] = make_memfd (payload, payload_len, REQUIRED_SEALS | F_SEAL_SEAL); break;
            case 1: fds[i] = make_memfd (payload, payload_len, 0); break;
            case 2: fds[i] = make_memfd (payload, payload_len, F_SEAL_SHRINK | F_SEAL_GROW); break;
            case 3: fds[i] = make_memfd (payload, payload_len, F_SEAL_WRITE); break;
            case 4: fds[i] = make_pipe_end (TRUE, &others[n_others++]); break;
            case 5: fds[i] = make_pipe_end (FALSE, &others[n_others++]); break;
            case 6: fds[i] = fcntl (devnull, F_DUPFD_CLOEXEC, 0); break;
            default: fds[i] = make_memfd (payload, payload_len, -1); break;
            }
        }
      else
        {
          switch (kind)
            {
            case 1: fds[i] = make_pipe_end (TRUE, &others[n_others++]); break;
            case 2:
              {
                int sv[2];

                g_assert (socketpair (AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == 0);
                fds[i] = sv[0];
                others[n_others++] = sv[1];
                break;
              }
            case 3:
              {
                guint8 block[4096] = { 0 };

                memcpy (block, payload, MIN (payload_len, 16));
                fds[i] = make_memfd (block, sizeof block, F_SEAL_SHRINK | F_SEAL_GROW);
                break;
              }
            default: fds[i] = fcntl (devnull, F_DUPFD_CLOEXEC, 0); break;
            }
        }
      g_assert (fds[i] >= 0);
      passed[i] = fds[i];
    }

  /* What the message should decode to: the datagram's frame, or the
   * payload's if the datagram is a valid reference to a good memfd. */
  is_ref = datagram_len >= 4 && memcmp (datagram, "MPGM", 4) == 0;
  if (is_ref)
    {
      guint32 flags;

      if (datagram_len == MPG_CHANNEL_REF_SIZE && n_fds >= 1)
        {
          gboolean is_memfd = fd0_kind <= 3 || fd0_kind == 7;

          memcpy (&flags, datagram + 4, 4);
          memcpy (&ref_size, datagram + 8, 8);
          memcpy (&ref_offset, datagram + 16, 8);
          flags = GUINT32_FROM_LE (flags);
          ref_size = GUINT64_FROM_LE (ref_size);
          ref_offset = GUINT64_FROM_LE (ref_offset);
          memfd_ok = ref_size >= MPG_WIRE_HEADER_SIZE && ref_size <= cap &&
                     ref_offset <= MPG_CHANNEL_REF_MAX_OFFSET &&
                     ((flags == 0 && fd0_kind == 0 && ref_offset + ref_size == payload_len) ||
                      (flags == MPG_CHANNEL_REF_REUSE && is_memfd && ref_offset + ref_size <= payload_len));
        }
      first_user_fd = 1;
    }
  {
    const guint8 *frame = is_ref ? payload + (memfd_ok ? ref_offset : 0) : datagram;
    gsize frame_len = is_ref ? (memfd_ok ? (gsize) ref_size : payload_len) : datagram_len;
    GVariant *v = NULL;
    gsize consumed = 0;

    if ((!is_ref || memfd_ok) &&
        _mpg_wire_decode (frame, frame_len, cap, &v, &consumed, NULL) &&
        v != NULL && consumed != frame_len)
      g_clear_pointer (&v, g_variant_unref);
    expected = v;
  }
  if (expected != NULL && fuzz_walk (expected, 0, NULL, NULL) >= (gint64) (n_fds - first_user_fd))
    g_clear_pointer (&expected, g_variant_unref);

  value = _mpg_channel_decode (datagram, datagram_len, fds, n_fds, cap,
                               want_fds ? &fd_list : NULL, &error);
  g_assert ((value == NULL) != (error == NULL));
  g_assert ((value == NULL) == (expected == NULL));
  if (value != NULL)
    g_assert (g_variant_equal (value, expected));
  else
    g_assert (error->domain == MPG_ERROR &&
              (error->code == MPG_ERROR_PROTOCOL || error->code == MPG_ERROR_TOO_LARGE));

  /* The fds that follow the memfd, in order, or none. */
  if (fd_list != NULL)
    {
      gint n;
      const gint *listed = g_unix_fd_list_peek_fds (fd_list, &n);

      g_assert (value != NULL && want_fds);
      g_assert_cmpint (n, ==, n_fds - first_user_fd);
      for (gint i = 0; i < n; i++)
        g_assert_cmpint (listed[i], ==, passed[first_user_fd + i]);
    }
  else
    g_assert (value == NULL || !want_fds || n_fds == first_user_fd);

  /* What a receiver of a connection or a queue does next. */
  if (fd_list != NULL && g_variant_is_of_type (value, G_VARIANT_TYPE ("(hbb)")))
    {
      g_autoptr(GError) handle_error = NULL;
      g_autoptr(MpgConnection) connection = mpg_connection_new_from_handle (value, fd_list,
                                                                           &handle_error);

      g_assert ((connection == NULL) != (handle_error == NULL));
    }
  if (fd_list != NULL && g_variant_is_of_type (value, G_VARIANT_TYPE ("(hhh)")))
    {
      g_autoptr(GError) handle_error = NULL;
      g_autoptr(MpgQueue) queue = mpg_queue_new_from_handle (value, fd_list, &handle_error);

      g_assert ((queue == NULL) != (handle_error == NULL));
      if (queue != NULL)
        (void) mpg_queue_qsize (queue);
    }
  g_clear_object (&fd_list);

  /* Nothing left open; the fds that were not passed are still open. */
  for (guint i = 0; i < n_fds; i++)
    g_assert (!fuzz_fd_is_open (passed[i]));
  for (guint i = 0; i < n_others; i++)
    {
      g_assert (fuzz_fd_is_open (others[i]));
      close (others[i]);
    }
  g_assert (fuzz_fd_is_open (devnull));

  return 0;
}
