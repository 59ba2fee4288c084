/* mpg-channel.c
 *
 * Copyright 2026 The libmpg authors
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "mpg-channel-private.h"
#include "mpg-error.h"
#include "mpg-wire-private.h"

#define MEMFD_MAGIC "MPGM"
#define MEMFD_REF_SIZE 16
#define REQUIRED_SEALS (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE)

static MpgChannelFault fault;
static guint fault_countdown;

void
_mpg_channel_set_fault (MpgChannelFault where,
                        guint           countdown)
{
  fault = where;
  fault_countdown = countdown;
}

static inline void
maybe_fault (MpgChannelFault where)
{
  if (G_UNLIKELY (fault == where) && --fault_countdown == 0)
    raise (SIGKILL);
}

gboolean
_mpg_channel_socketpair (int      fds[2],
                         GError **error)
{
  if (socketpair (AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds) < 0)
    {
      int saved_errno = errno;

      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved_errno),
                   "Could not create a socket pair: %s", g_strerror (saved_errno));
      return FALSE;
    }

  return TRUE;
}

/*
 * _mpg_channel_wait:
 * @deadline: a g_get_monotonic_time() deadline, -1 for none, 0 to poll
 *
 * Waits until @fd is ready for @condition. Fails with %MPG_ERROR_TIMEOUT
 * at @deadline and %G_IO_ERROR_CANCELLED when @cancellable is cancelled.
 */
gboolean
_mpg_channel_wait (int            fd,
                   GIOCondition   condition,
                   gint64         deadline,
                   GCancellable  *cancellable,
                   GError       **error)
{
  GPollFD pfds[2];
  guint n = 1;
  gboolean ret = FALSE;

  pfds[0].fd = fd;
  pfds[0].events = condition;
  if (cancellable != NULL && g_cancellable_make_pollfd (cancellable, &pfds[1]))
    n = 2;

  for (;;)
    {
      gint timeout;
      int r;

      if (g_cancellable_set_error_if_cancelled (cancellable, error))
        break;

      if (deadline < 0)
        timeout = -1;
      else
        {
          gint64 now = g_get_monotonic_time ();

          timeout = deadline > now ? (gint) MIN ((deadline - now + 999) / 1000, G_MAXINT) : 0;
        }

      pfds[0].revents = 0;
      if (n == 2)
        pfds[1].revents = 0;
      r = g_poll (pfds, n, timeout);
      if (r < 0 && errno == EINTR)
        continue;
      if (r < 0)
        {
          int saved_errno = errno;

          g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved_errno),
                       "poll() failed: %s", g_strerror (saved_errno));
          break;
        }
      if (pfds[0].revents != 0)
        {
          ret = TRUE;
          break;
        }
      if (n == 2 && pfds[1].revents != 0)
        continue;   /* reported as cancelled at the top */
      if (r == 0 && timeout >= 0)
        {
          g_set_error_literal (error, MPG_ERROR, MPG_ERROR_TIMEOUT, "Timed out");
          break;
        }
    }

  if (n == 2)
    g_cancellable_release_fd (cancellable);

  return ret;
}

static int
write_memfd (const guint8  *data,
             gsize          len,
             GError       **error)
{
  int fd = memfd_create ("mpg-message", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  gsize done = 0;

  if (fd < 0)
    goto failed;

  while (done < len)
    {
      gssize n = write (fd, data + done, len - done);

      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0)
        goto failed;
      done += n;
    }

  /* Sealed, the receiver can map it knowing that nobody can change it. */
  if (fcntl (fd, F_ADD_SEALS, REQUIRED_SEALS | F_SEAL_SEAL) < 0)
    goto failed;

  return fd;

failed:
  {
    int saved_errno = errno;

    if (fd >= 0)
      close (fd);
    g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved_errno),
                 "Could not write a large message to a memfd: %s", g_strerror (saved_errno));
    return -1;
  }
}

/* Every handle must index a file descriptor that comes with the message:
 * checked by the receiver, whose peer may be hostile, and by the sender,
 * so that its own mistake is reported to it rather than to the receiver. */
static gboolean
handles_are_valid (GVariant *value,
                   guint     n_fds)
{
  if (g_variant_is_of_type (value, G_VARIANT_TYPE_HANDLE))
    {
      gint32 h = g_variant_get_handle (value);

      return h >= 0 && (guint) h < n_fds;
    }

  /* A variant can hide a handle in any container. */
  if (g_variant_is_container (value) &&
      strpbrk (g_variant_get_type_string (value), "hv") != NULL)
    {
      gsize n = g_variant_n_children (value);

      for (gsize i = 0; i < n; i++)
        {
          g_autoptr(GVariant) child = g_variant_get_child_value (value, i);

          if (!handles_are_valid (child, n_fds))
            return FALSE;
        }
    }

  return TRUE;
}

/*
 * _mpg_channel_send:
 * @value: the message (a floating reference is sunk)
 * @fd_list: (nullable): the fds that @value's handles index
 *
 * Sends one message. Blocks (until @deadline) while the socket is full.
 */
gboolean
_mpg_channel_send (int            fd,
                   GVariant      *value,
                   GUnixFDList   *fd_list,
                   gsize          max_message,
                   gint64         deadline,
                   GCancellable  *cancellable,
                   GError       **error)
{
  g_autoptr(GVariant) owned = g_variant_ref_sink (value);
  g_autoptr(GBytes) frame = NULL;
  const int *user_fds = NULL;
  int n_user_fds = 0;
  int all_fds[MPG_CHANNEL_MAX_FDS + 1];
  int n_fds = 0;
  int memfd = -1;
  guint8 ref[MEMFD_REF_SIZE];
  struct iovec iov;
  struct msghdr msg;
  union {
    char buf[CMSG_SPACE (sizeof (int) * (MPG_CHANNEL_MAX_FDS + 1))];
    struct cmsghdr align;
  } control;
  gsize len;
  const guint8 *data;
  gboolean ret = FALSE;

  if (fd_list != NULL)
    user_fds = g_unix_fd_list_peek_fds (fd_list, &n_user_fds);
  if (!handles_are_valid (owned, n_user_fds))
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                   "A handle of the message does not index one of its %d file descriptors",
                   n_user_fds);
      return FALSE;
    }

  frame = _mpg_wire_encode (owned, error);
  if (frame == NULL)
    return FALSE;
  data = g_bytes_get_data (frame, &len);

  if (len > max_message)
    {
      g_set_error (error, MPG_ERROR, MPG_ERROR_TOO_LARGE,
                   "Message of %" G_GSIZE_FORMAT " bytes exceeds the maximum of %" G_GSIZE_FORMAT,
                   len, max_message);
      return FALSE;
    }

  if (n_user_fds > MPG_CHANNEL_MAX_FDS)
    {
      g_set_error (error, MPG_ERROR, MPG_ERROR_TOO_LARGE,
                   "A message can carry at most %d file descriptors", MPG_CHANNEL_MAX_FDS);
      return FALSE;
    }

  memset (&msg, 0, sizeof msg);
  if (len > MPG_CHANNEL_INLINE_MAX)
    {
      guint64 size = GUINT64_TO_LE ((guint64) len);
      guint32 flags = 0;

      memfd = write_memfd (data, len, error);
      if (memfd < 0)
        return FALSE;
      all_fds[n_fds++] = memfd;
      memcpy (ref, MEMFD_MAGIC, 4);
      memcpy (ref + 4, &flags, 4);
      memcpy (ref + 8, &size, 8);
      iov.iov_base = ref;
      iov.iov_len = sizeof ref;
    }
  else
    {
      iov.iov_base = (void *) data;
      iov.iov_len = len;
    }

  for (int i = 0; i < n_user_fds; i++)
    all_fds[n_fds++] = user_fds[i];

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
      memcpy (CMSG_DATA (cmsg), all_fds, sizeof (int) * n_fds);
    }

  maybe_fault (MPG_CHANNEL_FAULT_KILL_IN_SEND);

  for (;;)
    {
      gssize n = sendmsg (fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);

      if (n >= 0)
        {
          ret = TRUE;
          break;
        }
      if (errno == EINTR)
        continue;
      if (errno == EAGAIN)
        {
          if (!_mpg_channel_wait (fd, G_IO_OUT, deadline, cancellable, error))
            break;
          continue;
        }
      if (errno == ETOOMANYREFS)
        {
          /* More fds in flight than the sender may have open: like a full
           * socket, except that poll() cannot tell when it changes. */
          if (deadline >= 0 && g_get_monotonic_time () >= deadline)
            {
              g_set_error_literal (error, MPG_ERROR, MPG_ERROR_TIMEOUT,
                                   "Timed out: too many file descriptors in flight");
              break;
            }
          if (g_cancellable_set_error_if_cancelled (cancellable, error))
            break;
          g_usleep (10 * 1000);
          continue;
        }
      if (errno == EPIPE || errno == ECONNRESET || errno == ENOTCONN)
        g_set_error_literal (error, MPG_ERROR, MPG_ERROR_END_OF_STREAM,
                             "The other end of the channel is closed");
      else
        {
          int saved_errno = errno;

          g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved_errno),
                       "Could not send a message: %s", g_strerror (saved_errno));
        }
      break;
    }

  if (memfd >= 0)
    close (memfd);

  return ret;
}

static void
close_fds (int   *fds,
           guint  n_fds)
{
  for (guint i = 0; i < n_fds; i++)
    if (fds[i] >= 0)
      close (fds[i]);
}

static GVariant *
decode_frame (const guint8  *data,
              gsize          len,
              gsize          max_message,
              GError       **error)
{
  GVariant *value = NULL;
  gsize consumed = 0;

  if (!_mpg_wire_decode (data, len, max_message, &value, &consumed, error))
    return NULL;

  if (value == NULL || consumed != len)
    {
      g_clear_pointer (&value, g_variant_unref);
      g_set_error_literal (error, MPG_ERROR, MPG_ERROR_PROTOCOL,
                           value == NULL ? "Truncated message" : "Trailing bytes after a message");
      return NULL;
    }

  return value;
}

static GVariant *
decode_memfd (int      memfd,
              guint64  size,
              gsize    max_message,
              GError **error)
{
  struct stat st;
  int seals;
  void *map;
  GVariant *value;

  seals = fcntl (memfd, F_GET_SEALS);
  if (seals < 0 || (seals & REQUIRED_SEALS) != REQUIRED_SEALS)
    {
      g_set_error_literal (error, MPG_ERROR, MPG_ERROR_PROTOCOL,
                           "A large message came in a memfd that is not sealed");
      return NULL;
    }

  if (fstat (memfd, &st) < 0 || (guint64) st.st_size != size)
    {
      g_set_error_literal (error, MPG_ERROR, MPG_ERROR_PROTOCOL,
                           "A large message's memfd does not have the announced size");
      return NULL;
    }

  map = mmap (NULL, size, PROT_READ, MAP_PRIVATE, memfd, 0);
  if (map == MAP_FAILED)
    {
      int saved_errno = errno;

      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved_errno),
                   "Could not map a large message: %s", g_strerror (saved_errno));
      return NULL;
    }

  value = decode_frame (map, size, max_message, error);
  munmap (map, size);

  return value;
}

/*
 * _mpg_channel_decode:
 * @data: (array length=len): one received datagram
 * @fds: (array length=n_fds) (transfer full): the fds that came with it
 * @out_fd_list: (out) (optional): the message's fds, or %NULL if it has none
 *
 * Decodes one datagram. Pure but for the fds: it takes them, and closes
 * all of them on error.
 */
GVariant *
_mpg_channel_decode (const guint8  *data,
                     gsize          len,
                     int           *fds,
                     guint          n_fds,
                     gsize          max_message,
                     GUnixFDList  **out_fd_list,
                     GError       **error)
{
  g_autoptr(GVariant) value = NULL;
  guint first_user_fd = 0;

  if (out_fd_list != NULL)
    *out_fd_list = NULL;

  if (len >= 4 && memcmp (data, MEMFD_MAGIC, 4) == 0)
    {
      guint32 flags;
      guint64 size;

      if (len != MEMFD_REF_SIZE || n_fds < 1)
        {
          g_set_error_literal (error, MPG_ERROR, MPG_ERROR_PROTOCOL,
                               "Invalid reference to a large message");
          goto failed;
        }
      memcpy (&flags, data + 4, 4);
      memcpy (&size, data + 8, 8);
      size = GUINT64_FROM_LE (size);
      if (flags != 0 || size < MPG_WIRE_HEADER_SIZE)
        {
          g_set_error_literal (error, MPG_ERROR, MPG_ERROR_PROTOCOL,
                               "Invalid reference to a large message");
          goto failed;
        }
      if (size > max_message)
        {
          g_set_error (error, MPG_ERROR, MPG_ERROR_TOO_LARGE,
                       "Message of %" G_GUINT64_FORMAT " bytes exceeds the maximum of %" G_GSIZE_FORMAT,
                       size, max_message);
          goto failed;
        }
      value = decode_memfd (fds[0], size, max_message, error);
      if (value == NULL)
        goto failed;
      close (fds[0]);
      fds[0] = -1;
      first_user_fd = 1;
    }
  else
    {
      value = decode_frame (data, len, max_message, error);
      if (value == NULL)
        goto failed;
    }

  if (!handles_are_valid (value, n_fds - first_user_fd))
    {
      g_set_error_literal (error, MPG_ERROR, MPG_ERROR_PROTOCOL,
                           "A message's handle does not index one of its file descriptors");
      goto failed;
    }

  if (n_fds > first_user_fd && out_fd_list != NULL)
    *out_fd_list = g_unix_fd_list_new_from_array (fds + first_user_fd, n_fds - first_user_fd);
  else if (n_fds > first_user_fd)
    close_fds (fds + first_user_fd, n_fds - first_user_fd);

  return g_steal_pointer (&value);

failed:
  close_fds (fds, n_fds);
  return NULL;
}

/* One buffer per thread for incoming datagrams: the message is copied out
 * of it, and allocating (and freeing) 64 KiB for each message costs more
 * than small messages do. */
static GPrivate receive_buffers = G_PRIVATE_INIT (g_free);

static guint8 *
receive_buffer (void)
{
  guint8 *buf = g_private_get (&receive_buffers);

  if (buf == NULL)
    {
      buf = g_malloc (MPG_CHANNEL_INLINE_MAX + 1);
      g_private_set (&receive_buffers, buf);
    }
  return buf;
}

/*
 * _mpg_channel_receive:
 *
 * Receives one message: waits (until @deadline) for one, fails with
 * %MPG_ERROR_END_OF_STREAM once every writer has closed its end.
 */
GVariant *
_mpg_channel_receive (int            fd,
                      gsize          max_message,
                      gint64         deadline,
                      GCancellable  *cancellable,
                      GUnixFDList  **out_fd_list,
                      GError       **error)
{
  guint8 *buf = receive_buffer ();
  union {
    char buf[CMSG_SPACE (sizeof (int) * (MPG_CHANNEL_MAX_FDS + 1))];
    struct cmsghdr align;
  } control;
  int fds[MPG_CHANNEL_MAX_FDS + 1];
  guint n_fds = 0;
  struct iovec iov;
  struct msghdr msg;
  struct cmsghdr *cmsg;
  gboolean reset_seen = FALSE;
  gssize n;

  for (;;)
    {
      memset (&msg, 0, sizeof msg);
      iov.iov_base = buf;
      iov.iov_len = MPG_CHANNEL_INLINE_MAX + 1;
      msg.msg_iov = &iov;
      msg.msg_iovlen = 1;
      msg.msg_control = control.buf;
      msg.msg_controllen = sizeof control.buf;

      n = recvmsg (fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
      if (n >= 0)
        {
          maybe_fault (MPG_CHANNEL_FAULT_KILL_IN_RECEIVE);
          break;
        }
      if (errno == EINTR)
        continue;
      if (errno == EAGAIN)
        {
          if (!_mpg_channel_wait (fd, G_IO_IN, deadline, cancellable, error))
            return NULL;
          continue;
        }
      if (errno == ECONNRESET && !reset_seen)
        {
          /* A peer that exited with messages of ours unread leaves this
           * error pending, and it comes before the messages it sent:
           * take those first. */
          reset_seen = TRUE;
          continue;
        }
      if (errno == ECONNRESET)
        {
          g_set_error_literal (error, MPG_ERROR, MPG_ERROR_END_OF_STREAM,
                               "The other end of the channel is closed");
          return NULL;
        }

      {
        int saved_errno = errno;

        g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved_errno),
                     "Could not receive a message: %s", g_strerror (saved_errno));
        return NULL;
      }
    }

  for (cmsg = CMSG_FIRSTHDR (&msg); cmsg != NULL; cmsg = CMSG_NXTHDR (&msg, cmsg))
    {
      if (cmsg->cmsg_level == SOL_SOCKET && cmsg->cmsg_type == SCM_RIGHTS)
        {
          guint count = (cmsg->cmsg_len - CMSG_LEN (0)) / sizeof (int);

          for (guint i = 0; i < count && n_fds < G_N_ELEMENTS (fds); i++)
            memcpy (&fds[n_fds++], CMSG_DATA (cmsg) + i * sizeof (int), sizeof (int));
        }
    }

  if (n == 0 && n_fds == 0)
    {
      struct pollfd pfd = { fd, POLLRDHUP, 0 };

      /* recvmsg() returns 0 both at the end of the stream and for an empty
       * datagram, which no libmpg peer sends. */
      if (poll (&pfd, 1, 0) == 1 && (pfd.revents & (POLLRDHUP | POLLHUP)))
        g_set_error_literal (error, MPG_ERROR, MPG_ERROR_END_OF_STREAM,
                             "The other end of the channel is closed");
      else
        g_set_error_literal (error, MPG_ERROR, MPG_ERROR_PROTOCOL,
                             "Received an empty datagram");
      return NULL;
    }

  if (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC))
    {
      close_fds (fds, n_fds);
      g_set_error_literal (error, MPG_ERROR, MPG_ERROR_PROTOCOL,
                           "Received a datagram larger than any valid message");
      return NULL;
    }

  return _mpg_channel_decode (buf, n, fds, n_fds, max_message, out_fd_list, error);
}
