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
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>

#include "mpg-channel-private.h"
#include "mpg-error.h"
#include "mpg-wire-private.h"

#define MEMFD_MAGIC "MPGM"
/* Where the sender starts a frame in its memfd: past a reused buffer's
 * state word, and then where the data gets the alignment it has in the
 * sender's memory (memfd_offset()). */
#define MEMFD_MIN_OFFSET 8
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

/* A frame of mpg-wire-private.h as two pieces, the header (with the type
 * string) and the value's own serialised data, so that a large one goes
 * into its memfd without first being copied into a buffer of its own, as
 * _mpg_wire_encode() would. test-channel checks that the bytes are those
 * of _mpg_wire_encode(). */
typedef struct
{
  GVariant *normal;
  struct iovec iov[2];
  gsize len;
  guint8 header[MPG_WIRE_HEADER_SIZE + MPG_WIRE_MAX_TYPE];
} Frame;

static gboolean
frame_init (Frame     *frame,
            GVariant  *value,
            GError   **error)
{
  const char *type;
  gsize type_len;
  gsize data_len;

  frame->normal = _mpg_wire_is_normal_form (value) ? g_variant_ref (value) : g_variant_get_normal_form (value);
  type = g_variant_get_type_string (frame->normal);
  type_len = strlen (type);
  data_len = g_variant_get_size (frame->normal);

  if (type_len > MPG_WIRE_MAX_TYPE || data_len > G_MAXUINT32 - MPG_WIRE_HEADER_SIZE - type_len)
    {
      g_set_error (error, MPG_ERROR, MPG_ERROR_TOO_LARGE,
                   "A value of %" G_GSIZE_FORMAT " bytes with a type string of %" G_GSIZE_FORMAT
                   " characters cannot be sent (at most 4 GiB and %d characters)",
                   data_len, type_len, MPG_WIRE_MAX_TYPE);
      return FALSE;
    }

  memcpy (frame->header, MPG_WIRE_MAGIC, 4);
  _mpg_wire_put_u32 (frame->header + 4, 0);
  _mpg_wire_put_u32 (frame->header + 8, type_len);
  _mpg_wire_put_u32 (frame->header + 12, data_len);
  memcpy (frame->header + MPG_WIRE_HEADER_SIZE, type, type_len);

  frame->iov[0].iov_base = frame->header;
  frame->iov[0].iov_len = MPG_WIRE_HEADER_SIZE + type_len;
  frame->iov[1].iov_base = (void *) g_variant_get_data (frame->normal);
  frame->iov[1].iov_len = data_len;
  frame->len = MPG_WIRE_HEADER_SIZE + type_len + data_len;

  return TRUE;
}

static void
frame_clear (Frame *frame)
{
  g_clear_pointer (&frame->normal, g_variant_unref);
}

/* The bytes before a frame in its memfd: a reused buffer's state word
 * (not zero: in use) and padding. */
static const guint8 memfd_padding[MEMFD_MIN_OFFSET + 64] = "MPGB";

/* Where @frame goes in a memfd: the data at the same offset within a cache
 * line (64 bytes) as in the sender's memory, and so, with the receiver's
 * buffer placed the same way, in the receiver's. Copies between addresses
 * that differ by a few bytes within a cache line run at 1 to 2 GB/s
 * instead of 8 here (AMD EPYC, `rep movsb`). */
static gsize
memfd_offset (const Frame *frame)
{
  guintptr data = (guintptr) frame->iov[1].iov_base;

  return MEMFD_MIN_OFFSET + ((data - MEMFD_MIN_OFFSET - frame->iov[0].iov_len) & 63);
}

/* Writes padding, then @frame at @offset, into the file @fd. Fails with
 * errno set. */
static gboolean
pwrite_frame (int          fd,
              const Frame *frame,
              gsize        offset)
{
  struct iovec iov[3] = {
    { (void *) memfd_padding, offset },
    frame->iov[0],
    frame->iov[1],
  };
  struct iovec *v = iov;
  int n_v = 3;
  off_t pos = 0;

  g_assert (offset <= sizeof memfd_padding);

  while (n_v > 0)
    {
      gssize n;

      if (v->iov_len == 0)
        {
          v++;
          n_v--;
          continue;
        }

      n = pwritev (fd, v, n_v, pos);
      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0)
        return FALSE;
      if (n == 0)
        {
          errno = EIO;
          return FALSE;
        }

      pos += n;
      while (n > 0)
        {
          gsize step = MIN ((gsize) n, v->iov_len);

          v->iov_base = (guint8 *) v->iov_base + step;
          v->iov_len -= step;
          n -= step;
          if (v->iov_len == 0)
            {
              v++;
              n_v--;
            }
        }
    }

  return TRUE;
}

static int
write_sealed_memfd (const Frame  *frame,
                    gsize         offset,
                    GError      **error)
{
  int fd = memfd_create ("mpg-message", MFD_CLOEXEC | MFD_ALLOW_SEALING);

  if (fd < 0 || !pwrite_frame (fd, frame, offset) ||
      /* Sealed, the receiver can map it knowing that nobody can change it. */
      fcntl (fd, F_ADD_SEALS, REQUIRED_SEALS | F_SEAL_SEAL) < 0)
    {
      int saved_errno = errno;

      if (fd >= 0)
        close (fd);
      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved_errno),
                   "Could not write a large message to a memfd: %s", g_strerror (saved_errno));
      return -1;
    }

  return fd;
}

/* Reusable memfds (MPG_CHANNEL_REF_REUSE in mpg-channel-private.h), one
 * pool per process, whose forked children empty their copy: those fds are
 * the parent's buffers. A buffer is only reused for the socket it went to,
 * so that a process that received it before can read or change (by
 * keeping its fd) only messages that it could take from that socket
 * anyway. The buffers are created without MFD_ALLOW_SEALING, so nobody
 * can seal them and make the sender's writes fail. A thread of the pool's
 * own closes the buffers that have not been used for a while (and ends
 * when none is left): an idle process keeps neither their fds nor their
 * memory. */
#define POOL_SIZE 8
/* A buffer sent this many large messages ago and still not released (its
 * receiver died or left it unread) may be dropped for a new one. */
#define POOL_STALE_AGE (8 * POOL_SIZE)
/* When every buffer of a socket is in flight but its receivers released
 * one lately (they are at work), the sender waits a little for the next
 * release (µs): allocating, filling and freeing a new memfd's pages costs
 * about as long, and a sender that runs ahead of its receivers with a new
 * memfd for each message slows them down too. */
#define POOL_ACTIVE_SINCE (10 * 1000)
#define POOL_WAIT_MAX     (2 * 1000)
#define POOL_WAIT_STEP    50

typedef enum
{
  BUFFER_NONE,        /* an empty slot */
  BUFFER_FREE,
  BUFFER_WRITING,
  BUFFER_SENT,
} BufferState;

typedef struct
{
  int fd;
  BufferState state;
  guint64 socket;     /* the SO_COOKIE of the socket it goes to */
  guint64 last_use;   /* pool_clock when last taken */
  gint64 taken_at;    /* g_get_monotonic_time() then */
  gint64 released_at; /* when we last saw it released, or 0 */
} Buffer;

static GMutex pool_lock;
static GCond pool_cond;
static Buffer pool[POOL_SIZE];
static guint64 pool_clock;
static gboolean pool_cleaner_running;
static gint64 pool_idle_time = 200 * 1000;

/* Test-only (mpg-channel-private.h). */
void
_mpg_channel_set_buffer_idle_time (gint64 usec)
{
  g_mutex_lock (&pool_lock);
  pool_idle_time = usec;
  g_cond_broadcast (&pool_cond);
  g_mutex_unlock (&pool_lock);
}

static void
pool_before_fork (void)
{
  g_mutex_lock (&pool_lock);
}

static void
pool_after_fork_in_parent (void)
{
  g_mutex_unlock (&pool_lock);
}

static void
pool_after_fork_in_child (void)
{
  for (guint i = 0; i < POOL_SIZE; i++)
    {
      if (pool[i].state != BUFFER_NONE)
        close (pool[i].fd);
      pool[i].state = BUFFER_NONE;
    }
  /* The cleaning thread is the parent's. */
  pool_cleaner_running = FALSE;
  g_mutex_unlock (&pool_lock);
}

static gpointer
pool_cleaner (gpointer data)
{
  g_mutex_lock (&pool_lock);
  for (;;)
    {
      gint64 now = g_get_monotonic_time ();
      gint64 wake = G_MAXINT64;
      gboolean any = FALSE;

      for (guint i = 0; i < POOL_SIZE; i++)
        {
          Buffer *b = &pool[i];

          if (b->state == BUFFER_NONE)
            continue;
          /* A message in flight keeps its own reference to the file. */
          if (b->state != BUFFER_WRITING && now - b->taken_at >= pool_idle_time)
            {
              close (b->fd);
              b->state = BUFFER_NONE;
              continue;
            }
          any = TRUE;
          wake = MIN (wake, b->state == BUFFER_WRITING ? now + pool_idle_time
                                                       : b->taken_at + pool_idle_time);
        }

      if (!any)
        break;
      g_cond_wait_until (&pool_cond, &pool_lock, wake);
    }
  pool_cleaner_running = FALSE;
  g_mutex_unlock (&pool_lock);

  return NULL;
}

static gboolean
buffer_released (int fd)
{
  static const guint8 released[4] = { 0, 0, 0, 0 };
  guint8 head[4];

  return pread (fd, head, sizeof head, 0) == sizeof head && memcmp (head, released, sizeof head) == 0;
}

/* Takes a buffer for a message to the socket @socket: a free one, or a new
 * one if there is room. If there is none, *@out_active tells whether the
 * socket's receivers released one lately. */
static int
pool_take_locked (guint64   socket,
                  int      *out_fd,
                  gboolean *out_active)
{
  gint64 now = g_get_monotonic_time ();
  int found = -1;

  *out_active = FALSE;

  /* The most recently used free buffer: the one most likely still in the
   * CPU caches (copies are several times slower from and to memory that
   * is not, so the fewer buffers in turn, the better). */
  for (guint i = 0; i < POOL_SIZE; i++)
    {
      Buffer *b = &pool[i];

      if (b->state == BUFFER_NONE || b->socket != socket)
        continue;
      if (b->state == BUFFER_SENT && buffer_released (b->fd))
        {
          b->state = BUFFER_FREE;
          b->released_at = now;
        }
      if (b->state == BUFFER_FREE && (found < 0 || b->last_use > pool[found].last_use))
        found = i;
      if (b->released_at != 0 && now - b->released_at < POOL_ACTIVE_SINCE)
        *out_active = TRUE;
    }

  if (found < 0)
    {
      int slot = -1;

      /* An empty slot, or the least recently used buffer of another
       * socket, or a stale one of this socket. */
      for (guint i = 0; i < POOL_SIZE && (slot < 0 || pool[slot].state != BUFFER_NONE); i++)
        {
          Buffer *b = &pool[i];

          if (b->state == BUFFER_WRITING ||
              (b->state != BUFFER_NONE && b->socket == socket &&
               pool_clock - b->last_use < POOL_STALE_AGE))
            continue;
          if (slot < 0 || b->state == BUFFER_NONE || b->last_use < pool[slot].last_use)
            slot = i;
        }

      if (slot >= 0 && !pool_cleaner_running)
        {
          GThread *thread = g_thread_try_new ("mpg-buffers", pool_cleaner, NULL, NULL);

          /* Without it, no buffer: it would never be closed. */
          if (thread == NULL)
            slot = -1;
          else
            {
              pool_cleaner_running = TRUE;
              g_thread_unref (thread);
            }
        }

      if (slot >= 0)
        {
          int fd = memfd_create ("mpg-message-buffer", MFD_CLOEXEC);

          if (fd >= 0)
            {
              if (pool[slot].state != BUFFER_NONE)
                close (pool[slot].fd);
              pool[slot].fd = fd;
              pool[slot].socket = socket;
              pool[slot].released_at = 0;
              found = slot;
            }
        }
    }

  if (found >= 0)
    {
      pool[found].state = BUFFER_WRITING;
      pool[found].last_use = pool_clock;
      pool[found].taken_at = now;
      *out_fd = pool[found].fd;
    }

  return found;
}

/* Returns a buffer, now ours alone (BUFFER_WRITING), for a message to the
 * socket @socket, or -1: then the message goes in a sealed memfd of its
 * own. */
static int
pool_take (guint64  socket,
           int     *out_fd)
{
  static gsize atfork_registered;
  gint64 give_up = 0;
  gboolean active;
  int found;

  if (g_once_init_enter (&atfork_registered))
    {
      pthread_atfork (pool_before_fork, pool_after_fork_in_parent, pool_after_fork_in_child);
      g_once_init_leave (&atfork_registered, 1);
    }

  g_mutex_lock (&pool_lock);
  pool_clock++;
  for (;;)
    {
      found = pool_take_locked (socket, out_fd, &active);
      if (found >= 0 || !active)
        break;

      if (give_up == 0)
        give_up = g_get_monotonic_time () + POOL_WAIT_MAX;
      else if (g_get_monotonic_time () >= give_up)
        {
          /* Nobody is at work after all (or the receiver is this very
           * thread): no more waiting until a buffer is released again. */
          for (guint i = 0; i < POOL_SIZE; i++)
            if (pool[i].state != BUFFER_NONE && pool[i].socket == socket)
              pool[i].released_at = 0;
          break;
        }

      g_mutex_unlock (&pool_lock);
      g_usleep (POOL_WAIT_STEP);
      g_mutex_lock (&pool_lock);
    }
  g_mutex_unlock (&pool_lock);

  return found;
}

static void
pool_give_back (int      index,
                gboolean sent)
{
  g_mutex_lock (&pool_lock);
  pool[index].state = sent ? BUFFER_SENT : BUFFER_FREE;
  g_mutex_unlock (&pool_lock);
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

/* One buffer per thread for outgoing inline messages, as for incoming ones
 * (receive_buffer()). */
static GPrivate send_buffers = G_PRIVATE_INIT (g_free);

static guint8 *
send_buffer (void)
{
  guint8 *buf = g_private_get (&send_buffers);

  if (buf == NULL)
    {
      buf = g_malloc (MPG_CHANNEL_INLINE_MAX);
      g_private_set (&send_buffers, buf);
    }
  return buf;
}

/*
 * _mpg_channel_send:
 * @value: the message (a floating reference is sunk)
 * @fd_list: (nullable): the fds that @value's handles index
 *
 * Sends one message. Blocks (until @deadline) while the socket is full.
 * A large message may also wait a little (POOL_WAIT_MAX) for a buffer
 * that a receiver is about to release, whatever @deadline.
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
  Frame frame = { NULL, };
  const int *user_fds = NULL;
  int n_user_fds = 0;
  int all_fds[MPG_CHANNEL_MAX_FDS + 1];
  int n_fds = 0;
  int memfd = -1;
  int buffer = -1;
  guint8 ref[MPG_CHANNEL_REF_SIZE];
  struct iovec iov;
  struct msghdr msg;
  union {
    char buf[CMSG_SPACE (sizeof (int) * (MPG_CHANNEL_MAX_FDS + 1))];
    struct cmsghdr align;
  } control;
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

  if (!frame_init (&frame, owned, error))
    goto out;

  if (frame.len > max_message)
    {
      g_set_error (error, MPG_ERROR, MPG_ERROR_TOO_LARGE,
                   "Message of %" G_GSIZE_FORMAT " bytes exceeds the maximum of %" G_GSIZE_FORMAT,
                   frame.len, max_message);
      goto out;
    }

  if (n_user_fds > MPG_CHANNEL_MAX_FDS)
    {
      g_set_error (error, MPG_ERROR, MPG_ERROR_TOO_LARGE,
                   "A message can carry at most %d file descriptors", MPG_CHANNEL_MAX_FDS);
      goto out;
    }

  memset (&msg, 0, sizeof msg);
  if (frame.len > MPG_CHANNEL_INLINE_MAX)
    {
      gsize offset = memfd_offset (&frame);
      guint64 size = GUINT64_TO_LE ((guint64) frame.len);
      guint64 offset_le = GUINT64_TO_LE ((guint64) offset);
      guint32 flags = 0;
      guint64 cookie;
      socklen_t cookie_len = sizeof cookie;

      if (frame.len <= MPG_CHANNEL_REUSE_MAX &&
          getsockopt (fd, SOL_SOCKET, SO_COOKIE, &cookie, &cookie_len) == 0 &&
          cookie_len == sizeof cookie)
        buffer = pool_take (cookie, &memfd);

      if (buffer >= 0)
        {
          if (!pwrite_frame (memfd, &frame, offset))
            {
              int saved_errno = errno;

              g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved_errno),
                           "Could not write a large message to a memfd: %s",
                           g_strerror (saved_errno));
              goto out;
            }
          flags = GUINT32_TO_LE (MPG_CHANNEL_REF_REUSE);
        }
      else
        {
          memfd = write_sealed_memfd (&frame, offset, error);
          if (memfd < 0)
            goto out;
        }

      all_fds[n_fds++] = memfd;
      memcpy (ref, MEMFD_MAGIC, 4);
      memcpy (ref + 4, &flags, 4);
      memcpy (ref + 8, &size, 8);
      memcpy (ref + 16, &offset_le, 8);
      iov.iov_base = ref;
      iov.iov_len = sizeof ref;
      msg.msg_iov = &iov;
      msg.msg_iovlen = 1;
    }
  else
    {
      guint8 *buf = send_buffer ();

      /* Joined here rather than by the kernel from two pieces: its copy
       * of the data to a few bytes past a cache line's start is several
       * times slower than memcpy() (see memfd_offset()). */
      memcpy (buf, frame.iov[0].iov_base, frame.iov[0].iov_len);
      if (frame.iov[1].iov_len > 0)
        memcpy (buf + frame.iov[0].iov_len, frame.iov[1].iov_base, frame.iov[1].iov_len);
      iov.iov_base = buf;
      iov.iov_len = frame.len;
      msg.msg_iov = &iov;
      msg.msg_iovlen = 1;
    }

  for (int i = 0; i < n_user_fds; i++)
    all_fds[n_fds++] = user_fds[i];

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

out:
  /* A buffer that was not sent is nobody else's: free at once. */
  if (buffer >= 0)
    pool_give_back (buffer, ret);
  else if (memfd >= 0)
    close (memfd);
  frame_clear (&frame);

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
      g_set_error_literal (error, MPG_ERROR, MPG_ERROR_PROTOCOL,
                           value == NULL ? "Truncated message" : "Trailing bytes after a message");
      g_clear_pointer (&value, g_variant_unref);
      return NULL;
    }

  return value;
}

/* Decodes the whole frame @frame holds, and returns a value that uses
 * @frame's memory as it is: only for memory that nobody else can change.
 * The header and the type string go through the wire layer's decoder. */
static GVariant *
decode_frame_bytes (GBytes  *frame,
                    gsize    max_message,
                    GError **error)
{
  gsize len;
  const guint8 *data = g_bytes_get_data (frame, &len);
  gsize prefix = len;
  GVariant *value = NULL;
  gsize consumed = 0;
  guint32 type_len = 0;
  guint64 frame_len;
  g_autofree char *type_string = NULL;
  g_autoptr(GBytes) bytes = NULL;
  g_autoptr(GVariant) owned = NULL;

  if (len >= MPG_WIRE_HEADER_SIZE)
    {
      type_len = _mpg_wire_get_u32 (data + 8);
      if (type_len >= 1 && type_len <= MPG_WIRE_MAX_TYPE && MPG_WIRE_HEADER_SIZE + type_len <= len)
        prefix = MPG_WIRE_HEADER_SIZE + type_len;
    }

  /* All but the data: a value only for a frame without data. */
  if (!_mpg_wire_decode (data, prefix, max_message, &value, &consumed, error))
    return NULL;

  if (value == NULL && prefix < len)
    {
      frame_len = (guint64) prefix + _mpg_wire_get_u32 (data + 12);
      consumed = frame_len <= len ? frame_len : 0;
    }

  if (consumed != len)
    {
      g_clear_pointer (&value, g_variant_unref);
      g_set_error_literal (error, MPG_ERROR, MPG_ERROR_PROTOCOL,
                           consumed == 0 ? "Truncated message" : "Trailing bytes after a message");
      return NULL;
    }

  if (value != NULL)
    return value;

  type_string = g_strndup ((const char *) data + MPG_WIRE_HEADER_SIZE, type_len);
  bytes = g_bytes_new_from_bytes (frame, prefix, len - prefix);
  owned = g_variant_ref_sink (g_variant_new_from_bytes (G_VARIANT_TYPE (type_string), bytes, FALSE));
  if (!_mpg_wire_is_normal_form (owned))
    {
      g_set_error (error, MPG_ERROR, MPG_ERROR_PROTOCOL,
                   "Message of type %s is not in normal form", type_string);
      return NULL;
    }

  return g_steal_pointer (&owned);
}

typedef struct
{
  void *addr;
  gsize len;
} Mapping;

static void
mapping_free (gpointer data)
{
  Mapping *m = data;

  munmap (m->addr, m->len);
  g_free (m);
}

/* A sealed memfd: nobody can change it or make it shorter (which would
 * fault the mapping), so the value is the mapping itself. */
static GVariant *
map_memfd (int      memfd,
           gsize    offset,
           gsize    size,
           gsize    max_message,
           GError **error)
{
  g_autoptr(GBytes) file = NULL;
  g_autoptr(GBytes) frame = NULL;
  struct stat st;
  int seals;
  Mapping *m;
  void *map;

  seals = fcntl (memfd, F_GET_SEALS);
  if (seals < 0 || (seals & REQUIRED_SEALS) != REQUIRED_SEALS)
    {
      g_set_error_literal (error, MPG_ERROR, MPG_ERROR_PROTOCOL,
                           "A large message came in a memfd that is not sealed");
      return NULL;
    }

  if (fstat (memfd, &st) < 0 || (guint64) st.st_size != (guint64) offset + size)
    {
      g_set_error_literal (error, MPG_ERROR, MPG_ERROR_PROTOCOL,
                           "A large message's memfd does not have the announced size");
      return NULL;
    }

  /* Populated at once: one call instead of a page fault every few pages. */
  map = mmap (NULL, offset + size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, memfd, 0);
  if (map == MAP_FAILED)
    {
      int saved_errno = errno;

      g_set_error (error, MPG_ERROR, MPG_ERROR_TOO_LARGE,
                   "Could not map a large message of %" G_GSIZE_FORMAT " bytes: %s",
                   size, g_strerror (saved_errno));
      return NULL;
    }

  m = g_new (Mapping, 1);
  m->addr = map;
  m->len = offset + size;
  file = g_bytes_new_with_free_func (map, offset + size, mapping_free, m);
  frame = g_bytes_new_from_bytes (file, offset, size);

  return decode_frame_bytes (frame, max_message, error);
}

static gboolean
pread_all (int     fd,
           guint8 *buf,
           gsize   len,
           off_t   offset)
{
  while (len > 0)
    {
      gssize n = pread (fd, buf, len, offset);

      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0)
        return FALSE;
      buf += n;
      len -= n;
      offset += n;
    }

  return TRUE;
}

/* A buffer that the sender reuses: copied out first, so that what is
 * checked and returned is ours alone, then released to the sender. */
static GVariant *
copy_memfd (int      memfd,
            gsize    offset,
            gsize    size,
            gsize    max_message,
            GError **error)
{
  static const guint8 released[4] = { 0, 0, 0, 0 };
  g_autoptr(GBytes) frame = NULL;
  guint8 *buf;
  guint8 *start;

  /* Reading another kind of file could block for ever (a FIFO, a FUSE
   * file); memfds are the only files that have seals to get. */
  if (fcntl (memfd, F_GET_SEALS) < 0)
    {
      g_set_error_literal (error, MPG_ERROR, MPG_ERROR_PROTOCOL,
                           "A large message did not come in a memfd");
      return NULL;
    }

  buf = size <= G_MAXSIZE - 64 ? g_try_malloc (size + 64) : NULL;
  if (buf == NULL)
    {
      g_set_error (error, MPG_ERROR, MPG_ERROR_TOO_LARGE,
                   "Could not allocate %" G_GSIZE_FORMAT " bytes for a large message", size);
      return NULL;
    }

  /* At the same offset within a cache line as in the memfd (see
   * memfd_offset()): a fast copy, and the data aligned as the sender's
   * was, as GVariant wants it (else it would copy it again). */
  start = buf + ((offset - (guintptr) buf) & 63);
  frame = g_bytes_new_with_free_func (start, size, g_free, buf);

  if (!pread_all (memfd, start, size, offset))
    {
      g_set_error_literal (error, MPG_ERROR, MPG_ERROR_PROTOCOL,
                           "A large message's memfd is shorter than announced");
      return NULL;
    }

  /* The sender may now write its next message there (a failure, e.g. on a
   * sealed memfd, only keeps it from doing so). */
  if (pwrite (memfd, released, sizeof released, 0) < 0)
    g_debug ("Could not release a large message's buffer: %s", g_strerror (errno));

  return decode_frame_bytes (frame, max_message, error);
}

/*
 * _mpg_channel_decode:
 * @data: (array length=len): one received datagram
 * @fds: (array length=n_fds) (transfer full): the fds that came with it
 * @out_fd_list: (out) (optional): the message's fds, or %NULL if it has none
 *
 * Decodes one datagram. Pure but for the fds: it takes them, and closes
 * all of them on error; and a memfd that the sender reuses is released to
 * it (its first bytes zeroed) once the message is copied out.
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
      guint64 offset;

      if (len != MPG_CHANNEL_REF_SIZE || n_fds < 1)
        {
          g_set_error_literal (error, MPG_ERROR, MPG_ERROR_PROTOCOL,
                               "Invalid reference to a large message");
          goto failed;
        }
      memcpy (&flags, data + 4, 4);
      memcpy (&size, data + 8, 8);
      memcpy (&offset, data + 16, 8);
      flags = GUINT32_FROM_LE (flags);
      size = GUINT64_FROM_LE (size);
      offset = GUINT64_FROM_LE (offset);
      if ((flags != 0 && flags != MPG_CHANNEL_REF_REUSE) || size < MPG_WIRE_HEADER_SIZE ||
          offset > MPG_CHANNEL_REF_MAX_OFFSET)
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
      if (flags == MPG_CHANNEL_REF_REUSE)
        value = copy_memfd (fds[0], offset, size, max_message, error);
      else
        value = map_memfd (fds[0], offset, size, max_message, error);
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
