/* mpg-queue.c
 *
 * Copyright 2026 The libmpg authors
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <linux/futex.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include "mpg-channel-private.h"
#include "mpg-error.h"
#include "mpg-queue.h"
#include "mpg-queue-private.h"
#include "mpg-wire-private.h"

/**
 * MpgQueue:
 *
 * A first-in, first-out queue of messages shared by processes, as Python's
 * `multiprocessing.Queue`, `SimpleQueue` and `JoinableQueue`.
 *
 * Any process that holds the queue can put [struct@GLib.Variant] messages
 * in it and get them out: many producers and many consumers in many
 * processes. A queue created before a process is started is simply there
 * in the child with the fork start method; it can also be passed to another
 * process as a handle and file descriptors ([method@Mpg.Queue.to_handle],
 * [ctor@Mpg.Queue.new_from_handle]).
 *
 * ```c
 * static GVariant *
 * producer (GVariant *arg, gpointer user_data, GError **error)
 * {
 *   MpgQueue *queue = user_data;
 *
 *   // q.put([42, None, 'hello'])
 *   mpg_queue_put (queue, g_variant_new ("(imvs)", 42, NULL, "hello"),
 *                  TRUE, -1, NULL, error);
 *   return NULL;
 * }
 *
 * g_autoptr(MpgQueue) queue = mpg_queue_new (0, &error);
 * g_autoptr(MpgProcess) p = mpg_process_new (NULL, producer,
 *                                            g_object_ref (queue), g_object_unref);
 * mpg_process_start (p, &error);
 * g_autoptr(GVariant) value = mpg_queue_get (queue, TRUE, -1, NULL, &error);
 * mpg_process_join (p, -1, NULL, &error);
 * ```
 *
 * A queue is also a [iface@Gio.Initable]: `g_initable_new (MPG_TYPE_QUEUE,
 * NULL, &error, "maxsize", 10, NULL)` is [ctor@Mpg.Queue.new].
 *
 * In a main loop, [method@Mpg.Queue.get_async] takes one message without
 * blocking, and [method@Mpg.Queue.add_watch] calls a function for every
 * message that arrives.
 *
 * ## How it maps to Python
 *
 * | Python `multiprocessing` | libmpg |
 * |---|---|
 * | `Queue(maxsize)`, `SimpleQueue()` | [ctor@Mpg.Queue.new] (0 for no bound) |
 * | `JoinableQueue(maxsize)` | [ctor@Mpg.Queue.new_joinable] |
 * | `q.put(obj, block, timeout)`, `q.put_nowait(obj)` | [method@Mpg.Queue.put] (`block` %FALSE for `put_nowait`) |
 * | `q.get(block, timeout)`, `q.get_nowait()` | [method@Mpg.Queue.get] |
 * | `queue.Empty`, `queue.Full` | %MPG_ERROR_EMPTY, %MPG_ERROR_FULL |
 * | `q.qsize()`, `q.empty()`, `q.full()` | [method@Mpg.Queue.qsize], [method@Mpg.Queue.empty], [method@Mpg.Queue.full] |
 * | `q.close()` | [method@Mpg.Queue.close] |
 * | `q.join_thread()`, `q.cancel_join_thread()` | [method@Mpg.Queue.join_thread], [method@Mpg.Queue.cancel_join_thread] |
 * | `q.task_done()`, `q.join()` | [method@Mpg.Queue.task_done], [method@Mpg.Queue.join] |
 * | pickling a queue for another process | [method@Mpg.Queue.to_handle], [ctor@Mpg.Queue.new_from_handle] |
 *
 * Timeouts are in milliseconds, -1 for none. File descriptors (GVariant
 * `h` values) travel with a message: [method@Mpg.Queue.put_with_fds],
 * [method@Mpg.Queue.get_with_fds].
 *
 * ## Guarantees
 *
 * A queue is an `AF_UNIX` `SOCK_SEQPACKET` socket pair that every process
 * holding the queue shares, and a small shared-memory block of counters.
 * Each message is one datagram (a message larger than 64 KiB travels in a
 * memfd that the datagram carries), so:
 *
 * - messages are never torn or interleaved, whatever the number of
 *   producers and consumers and the sizes of the messages;
 * - a producer killed at any point has either put a message whole or not
 *   at all;
 * - a consumer killed after it has taken a message from the socket loses
 *   that one message only; the others get every other message;
 * - there are no locks between processes (only atomic counters and futex
 *   wake-ups), so none can be left held by a process that died;
 * - a message put is not lost when its producer exits right after: a
 *   process waits at its exit until its buffer (below) was sent, unless
 *   [method@Mpg.Queue.cancel_join_thread] says not to.
 *
 * Messages from one producer (one thread) are taken in the order it put
 * them.
 *
 * ## Unbounded queues and their buffer
 *
 * As in Python, `put()` on an unbounded queue (maxsize 0) never blocks
 * and never fails with %MPG_ERROR_FULL. A message goes straight to the
 * socket when there is room and nothing of this process waits before it;
 * otherwise it waits in a buffer in the memory of the process that put
 * it, and a feeder thread (one per queue with a backlog, for as long as
 * the backlog lasts) sends it once consumers make room. So:
 *
 * - a producer whose messages nobody takes grows its buffer without
 *   bound, as Python's does: give a queue a maxsize to bound the memory
 *   its producers hold;
 * - [method@Mpg.Queue.qsize] counts a message from the moment it was put,
 *   buffered or sent;
 * - a process that exits waits until its buffers were sent: a child
 *   started by [class@Mpg.Process] before it exits, any process at its
 *   normal exit (`atexit()`). If nobody will ever take them, that wait
 *   never ends, as in Python: call [method@Mpg.Queue.cancel_join_thread]
 *   to exit anyway (the buffered messages are then lost);
 * - after [method@Mpg.Queue.close] the feeder goes on sending, and
 *   [method@Mpg.Queue.join_thread] waits until it has;
 * - a child forked while its parent's buffer holds messages starts with an
 *   empty buffer of its own: the parent's messages are the parent's to
 *   send, never sent twice;
 * - a process killed (or that called `_exit()` itself) loses its buffered
 *   messages, which stay counted by [method@Mpg.Queue.qsize] and the
 *   unfinished tasks of a joinable queue.
 *
 * What is approximate, as in Python: [method@Mpg.Queue.qsize],
 * [method@Mpg.Queue.empty] and [method@Mpg.Queue.full] can be out of date
 * as soon as they return. The counters live outside the socket: a producer
 * killed inside `put()` after it took a slot but before its message was
 * sent, or a consumer killed between taking a message and releasing its
 * slot, makes a bounded queue one smaller for good (and leaves a joinable
 * queue's count of unfinished tasks one too high).
 *
 * Nobody should wait for a producer to end before taking its messages: its
 * exit waits for them to be taken (when they do not all fit in the
 * kernel's socket buffer, raised to `net.core.wmem_max` when the queue is
 * created). A message larger than 64 KiB takes only a few bytes of that
 * buffer (its data waits in a memfd), so give a queue of large messages a
 * maxsize to bound the memory they hold.
 *
 * Every call may be made from any thread. [method@Mpg.Queue.close] does
 * not interrupt a blocking call in another thread (cancel its
 * #GCancellable for that); pending [method@Mpg.Queue.get_async] calls fail
 * with %MPG_ERROR_CLOSED and watches stop.
 *
 * Since: 0.1
 */

#define SHM_MAGIC      0x5147504du     /* "MPGQ" little endian */
#define SHM_VERSION    1u
#define SHM_SIZE       4096
#define SHM_SEALS      (F_SEAL_SHRINK | F_SEAL_GROW)
#define FLAG_JOINABLE  1u

/* Blocking waits on a futex sleep at most this long at a time, so that a
 * cancellable or a deadline is noticed. */
#define WAIT_SLICE_USEC (50 * G_TIME_SPAN_MILLISECOND)

#define STATE_CLOSED 1
#define STATE_USE    2

/* The shared block, mapped by every process holding the queue. The header
 * is written once, before anybody else can see it. */
typedef struct
{
  guint32 magic;
  guint32 version;
  guint32 maxsize;
  guint32 flags;
  gint    count;         /* messages put and not yet taken (approximate) */
  gint    free_slots;    /* a futex word: bounded puts wait while it is 0 */
  gint    put_waiters;   /* producers that may sleep on free_slots */
  gint    unfinished;    /* a futex word: join() waits while it is > 0 */
} SharedBlock;

G_STATIC_ASSERT (sizeof (SharedBlock) <= SHM_SIZE);

typedef struct _Feeder Feeder;

static void feeder_unref (Feeder *f);

struct _MpgQueue
{
  GObject parent_instance;

  int send_fd;
  int recv_fd;
  int shm_fd;
  SharedBlock *shm;

  guint maxsize;
  gboolean joinable;
  gsize max_message_size;
  gsize max_buffer_size;      /* 0: no limit */

  /* Bit 0: closed. The rest counts the calls and sources using the fds,
   * in steps of STATE_USE. Atomic, without a lock that a fork could copy held. */
  gint state;

  GMutex mutex;
  GPtrArray *contexts;   /* one ref per live source, to wake on close() */

  /* An unbounded queue's buffer in this process, made at the first
   * message its socket had no room for. Set once, under feed_lock. */
  Feeder *feeder;
  pid_t join_cancelled_by;   /* cancel_join_thread() in this pid; feed_lock */
};

static void mpg_queue_initable_iface_init (GInitableIface *iface);

G_DEFINE_FINAL_TYPE_WITH_CODE (MpgQueue, mpg_queue, G_TYPE_OBJECT,
                               G_IMPLEMENT_INTERFACE (G_TYPE_INITABLE,
                                                      mpg_queue_initable_iface_init))

enum {
  PROP_0,
  PROP_MAXSIZE,
  PROP_JOINABLE,
  PROP_MAX_MESSAGE_SIZE,
  PROP_MAX_BUFFER_SIZE,
  N_PROPS
};

static GParamSpec *properties[N_PROPS];

/* Futexes */

static void
futex_wait (gint   *word,
            gint    expected,
            gint64  deadline)
{
  gint64 usec = WAIT_SLICE_USEC;
  struct timespec ts;

  if (deadline >= 0)
    usec = CLAMP (deadline - g_get_monotonic_time (), 0, WAIT_SLICE_USEC);

  ts.tv_sec = usec / G_USEC_PER_SEC;
  ts.tv_nsec = (usec % G_USEC_PER_SEC) * 1000;

  /* Not FUTEX_PRIVATE_FLAG: the word is shared between processes. EAGAIN
   * (the word changed), EINTR and ETIMEDOUT all mean "look again". */
  syscall (SYS_futex, word, FUTEX_WAIT, expected, &ts, NULL, 0);
}

static void
futex_wake (gint *word,
            gint  n)
{
  syscall (SYS_futex, word, FUTEX_WAKE, n, NULL, NULL, 0);
}

/* Lifetime of the fds */

static void
clear_fd (int *fd)
{
  if (*fd >= 0)
    close (g_steal_fd (fd));
}

static void
release (MpgQueue *self)
{
  if (self->shm != NULL)
    {
      munmap (self->shm, SHM_SIZE);
      self->shm = NULL;
    }
  clear_fd (&self->send_fd);
  clear_fd (&self->recv_fd);
  clear_fd (&self->shm_fd);
}

/* Every user of the fds holds a use, so that close() in another thread
 * never closes an fd number under a call that is still using it: the
 * last of close() and the uses releases them. */
static void
queue_unuse (MpgQueue *self)
{
  gint old = g_atomic_int_add (&self->state, -STATE_USE);

  g_assert (old >= STATE_USE);
  if (old - STATE_USE == STATE_CLOSED)
    release (self);
}

static gboolean
queue_use (MpgQueue  *self,
           GError   **error)
{
  for (;;)
    {
      gint state = g_atomic_int_get (&self->state);

      if (state & STATE_CLOSED)
        {
          g_set_error_literal (error, MPG_ERROR, MPG_ERROR_CLOSED, "The queue is closed");
          return FALSE;
        }
      if (g_atomic_int_compare_and_exchange (&self->state, state, state + STATE_USE))
        break;
    }

  if (G_UNLIKELY (self->shm == NULL))
    {
      queue_unuse (self);
      g_set_error_literal (error, MPG_ERROR, MPG_ERROR_INVALID_STATE,
                           "The queue was not initialised (g_initable_init())");
      return FALSE;
    }

  return TRUE;
}

static gboolean
queue_is_closed (MpgQueue *self)
{
  return (g_atomic_int_get (&self->state) & STATE_CLOSED) != 0;
}

static gint64
deadline_for (gboolean block,
              gint     timeout_msec)
{
  if (!block)
    return 0;
  if (timeout_msec < 0)
    return -1;
  return g_get_monotonic_time () + (gint64) timeout_msec * G_TIME_SPAN_MILLISECOND;
}

/* The shared counters */

static gboolean
take_slot (MpgQueue      *self,
           gint64         deadline,
           GCancellable  *cancellable,
           GError       **error)
{
  SharedBlock *shm = self->shm;

  for (;;)
    {
      gint v = g_atomic_int_get (&shm->free_slots);

      if (v > 0)
        {
          if (g_atomic_int_compare_and_exchange (&shm->free_slots, v, v - 1))
            return TRUE;
          continue;
        }

      if (g_cancellable_set_error_if_cancelled (cancellable, error))
        return FALSE;
      if (deadline >= 0 && g_get_monotonic_time () >= deadline)
        {
          g_set_error_literal (error, MPG_ERROR, MPG_ERROR_FULL, "The queue is full");
          return FALSE;
        }

      /* A getter frees a slot and then looks at put_waiters; we count
       * ourselves and then sleep only if no slot was freed meanwhile (the
       * futex compares the word), so no wake-up is lost. */
      g_atomic_int_inc (&shm->put_waiters);
      futex_wait (&shm->free_slots, v, deadline);
      g_atomic_int_add (&shm->put_waiters, -1);
    }
}

static void
give_slot (MpgQueue *self)
{
  SharedBlock *shm = self->shm;

  g_atomic_int_inc (&shm->free_slots);
  if (g_atomic_int_get (&shm->put_waiters) > 0)
    futex_wake (&shm->free_slots, 1);
}

static void
unfinished_dec (MpgQueue *self)
{
  if (g_atomic_int_dec_and_test (&self->shm->unfinished))
    futex_wake (&self->shm->unfinished, INT_MAX);
}

/* Bookkeeping for one message taken from the socket. */
static void
message_taken (MpgQueue *self)
{
  g_atomic_int_add (&self->shm->count, -1);
  if (self->maxsize > 0)
    give_slot (self);
}

/* Set-up */

static gboolean
set_error_from_errno (GError     **error,
                      const char  *what)
{
  int saved_errno = errno;

  g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved_errno),
               "%s: %s", what, g_strerror (saved_errno));
  return FALSE;
}

static void
raise_buffer (int         fd,
              int         option,
              const char *limit_file)
{
  g_autofree char *contents = NULL;
  gint64 limit;

  if (!g_file_get_contents (limit_file, &contents, NULL, NULL))
    return;
  limit = g_ascii_strtoll (contents, NULL, 10);
  if (limit <= 0 || limit > G_MAXINT)
    return;

  /* Best effort: a smaller buffer only makes put() block sooner. */
  (void) setsockopt (fd, SOL_SOCKET, option, &(int) { (int) limit }, sizeof (int));
}

static gboolean
map_shared_block (MpgQueue  *self,
                  GError   **error)
{
  void *map = mmap (NULL, SHM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, self->shm_fd, 0);

  if (map == MAP_FAILED)
    return set_error_from_errno (error, "Could not map the queue's shared memory");

  self->shm = map;
  return TRUE;
}

static gboolean
mpg_queue_initable_init (GInitable     *initable,
                         GCancellable  *cancellable,
                         GError       **error)
{
  MpgQueue *self = MPG_QUEUE (initable);
  int fds[2];

  if (self->shm != NULL)
    return TRUE;

  if (self->maxsize > G_MAXINT)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                   "A queue's maxsize can be at most %d", G_MAXINT);
      return FALSE;
    }

  if (!_mpg_channel_socketpair (fds, error))
    return FALSE;
  self->send_fd = fds[0];
  self->recv_fd = fds[1];
  raise_buffer (self->send_fd, SO_SNDBUF, "/proc/sys/net/core/wmem_max");
  raise_buffer (self->recv_fd, SO_RCVBUF, "/proc/sys/net/core/rmem_max");

  self->shm_fd = memfd_create ("mpg-queue", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (self->shm_fd < 0)
    goto failed;
  /* Sealed at its size, so that no holder can make the others' mappings
   * fault (SIGBUS) by shrinking it. */
  if (ftruncate (self->shm_fd, SHM_SIZE) < 0 ||
      fcntl (self->shm_fd, F_ADD_SEALS, SHM_SEALS | F_SEAL_SEAL) < 0)
    goto failed;
  if (!map_shared_block (self, error))
    {
      release (self);
      return FALSE;
    }

  self->shm->magic = SHM_MAGIC;
  self->shm->version = SHM_VERSION;
  self->shm->maxsize = self->maxsize;
  self->shm->flags = self->joinable ? FLAG_JOINABLE : 0;
  self->shm->free_slots = self->maxsize;

  return TRUE;

failed:
  set_error_from_errno (error, "Could not create the queue's shared memory");
  release (self);
  return FALSE;
}

static void
mpg_queue_initable_iface_init (GInitableIface *iface)
{
  iface->init = mpg_queue_initable_init;
}

/* GObject */

static void
mpg_queue_finalize (GObject *object)
{
  MpgQueue *self = (MpgQueue *)object;

  release (self);
  /* A running feeder holds its own reference and flushes on. */
  g_clear_pointer (&self->feeder, feeder_unref);
  g_clear_pointer (&self->contexts, g_ptr_array_unref);
  g_mutex_clear (&self->mutex);

  G_OBJECT_CLASS (mpg_queue_parent_class)->finalize (object);
}

static void
mpg_queue_get_property (GObject    *object,
                        guint       prop_id,
                        GValue     *value,
                        GParamSpec *pspec)
{
  MpgQueue *self = MPG_QUEUE (object);

  switch (prop_id)
    {
    case PROP_MAXSIZE:
      g_value_set_uint (value, mpg_queue_get_maxsize (self));
      break;

    case PROP_JOINABLE:
      g_value_set_boolean (value, mpg_queue_get_joinable (self));
      break;

    case PROP_MAX_MESSAGE_SIZE:
      g_value_set_uint64 (value, mpg_queue_get_max_message_size (self));
      break;

    case PROP_MAX_BUFFER_SIZE:
      g_value_set_uint64 (value, mpg_queue_get_max_buffer_size (self));
      break;

    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
mpg_queue_set_property (GObject      *object,
                        guint         prop_id,
                        const GValue *value,
                        GParamSpec   *pspec)
{
  MpgQueue *self = MPG_QUEUE (object);

  switch (prop_id)
    {
    case PROP_MAXSIZE:
      self->maxsize = g_value_get_uint (value);
      break;

    case PROP_JOINABLE:
      self->joinable = g_value_get_boolean (value);
      break;

    case PROP_MAX_MESSAGE_SIZE:
      mpg_queue_set_max_message_size (self, (gsize) MIN (g_value_get_uint64 (value), G_MAXSIZE));
      break;

    case PROP_MAX_BUFFER_SIZE:
      mpg_queue_set_max_buffer_size (self, (gsize) MIN (g_value_get_uint64 (value), G_MAXSIZE));
      break;

    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
mpg_queue_class_init (MpgQueueClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->finalize = mpg_queue_finalize;
  object_class->get_property = mpg_queue_get_property;
  object_class->set_property = mpg_queue_set_property;

  /**
   * MpgQueue:maxsize:
   *
   * The most messages the queue holds at once; 0 for no bound. A put into
   * a full bounded queue blocks, or fails with %MPG_ERROR_FULL; a put into
   * an unbounded queue never does (what the socket has no room for waits
   * in the memory of the process that put it).
   *
   * Since: 0.1
   */
  properties[PROP_MAXSIZE] =
    g_param_spec_uint ("maxsize", NULL, NULL,
                       0, G_MAXINT, 0,
                       (G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY | G_PARAM_STATIC_STRINGS));

  /**
   * MpgQueue:joinable:
   *
   * Whether the queue counts unfinished tasks, as Python's `JoinableQueue`:
   * see [method@Mpg.Queue.task_done] and [method@Mpg.Queue.join].
   *
   * Since: 0.1
   */
  properties[PROP_JOINABLE] =
    g_param_spec_boolean ("joinable", NULL, NULL,
                          FALSE,
                          (G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY | G_PARAM_STATIC_STRINGS));

  /**
   * MpgQueue:max-message-size:
   *
   * The largest message, in bytes of its serialised form, that this
   * process puts or accepts. A larger one fails with %MPG_ERROR_TOO_LARGE
   * (on the getting side the message is dropped). It is a setting of this
   * process's queue object, not of the shared queue.
   *
   * Since: 0.1
   */
  properties[PROP_MAX_MESSAGE_SIZE] =
    g_param_spec_uint64 ("max-message-size", NULL, NULL,
                         MPG_WIRE_HEADER_SIZE + 1, G_MAXSIZE, MPG_WIRE_DEFAULT_MAX,
                         (G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS));

  /**
   * MpgQueue:max-buffer-size:
   *
   * The most bytes of messages (serialised) that an unbounded queue
   * keeps in this process's buffer, waiting for room in the socket (see
   * the class's documentation); 0, the default, for no limit, as
   * Python's queue.
   *
   * With a limit, a put() that would go beyond it waits until the feeder
   * thread has sent enough, as a put() of a bounded queue waits for a
   * slot: without @block, or past its timeout, it fails with
   * %MPG_ERROR_FULL. A message is buffered whatever its size if the
   * buffer is empty. Bounded queues (maxsize > 0) have no buffer.
   *
   * Since: 0.1
   */
  properties[PROP_MAX_BUFFER_SIZE] =
    g_param_spec_uint64 ("max-buffer-size", NULL, NULL,
                         0, G_MAXSIZE, 0,
                         (G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS));

  g_object_class_install_properties (object_class, N_PROPS, properties);
}

static void
mpg_queue_init (MpgQueue *self)
{
  g_mutex_init (&self->mutex);
  self->send_fd = -1;
  self->recv_fd = -1;
  self->shm_fd = -1;
  self->max_message_size = MPG_WIRE_DEFAULT_MAX;
  self->contexts = g_ptr_array_new_with_free_func ((GDestroyNotify) g_main_context_unref);
}

/**
 * mpg_queue_new:
 * @maxsize: the most messages the queue holds at once, 0 for no bound
 * @error: return location for a #GError
 *
 * Creates a queue, as Python's `multiprocessing.Queue(maxsize)` (or
 * `SimpleQueue()` for @maxsize 0).
 *
 * Returns: (transfer full): a new queue, or %NULL with @error set if the
 *   system is out of file descriptors or memory
 *
 * Since: 0.1
 */
MpgQueue *
mpg_queue_new (guint    maxsize,
               GError **error)
{
  g_return_val_if_fail (maxsize <= G_MAXINT, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  return g_initable_new (MPG_TYPE_QUEUE, NULL, error, "maxsize", maxsize, NULL);
}

/**
 * mpg_queue_new_joinable:
 * @maxsize: the most messages the queue holds at once, 0 for no bound
 * @error: return location for a #GError
 *
 * Creates a joinable queue, as Python's
 * `multiprocessing.JoinableQueue(maxsize)`: every message put counts as an
 * unfinished task until a consumer calls [method@Mpg.Queue.task_done],
 * and [method@Mpg.Queue.join] waits until none is left.
 *
 * Returns: (transfer full): a new queue, or %NULL with @error set
 *
 * Since: 0.1
 */
MpgQueue *
mpg_queue_new_joinable (guint    maxsize,
                        GError **error)
{
  g_return_val_if_fail (maxsize <= G_MAXINT, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  return g_initable_new (MPG_TYPE_QUEUE, NULL, error, "maxsize", maxsize, "joinable", TRUE, NULL);
}

/**
 * mpg_queue_get_maxsize:
 * @self: a queue
 *
 * Gets [property@Mpg.Queue:maxsize].
 *
 * Returns: the most messages the queue holds, or 0 for no bound
 *
 * Since: 0.1
 */
guint
mpg_queue_get_maxsize (MpgQueue *self)
{
  g_return_val_if_fail (MPG_IS_QUEUE (self), 0);

  return self->maxsize;
}

/**
 * mpg_queue_get_joinable:
 * @self: a queue
 *
 * Gets [property@Mpg.Queue:joinable].
 *
 * Returns: whether the queue is joinable
 *
 * Since: 0.1
 */
gboolean
mpg_queue_get_joinable (MpgQueue *self)
{
  g_return_val_if_fail (MPG_IS_QUEUE (self), FALSE);

  return self->joinable;
}

/**
 * mpg_queue_get_max_message_size:
 * @self: a queue
 *
 * Gets [property@Mpg.Queue:max-message-size].
 *
 * Returns: the largest message this process puts or accepts, in bytes
 *
 * Since: 0.1
 */
gsize
mpg_queue_get_max_message_size (MpgQueue *self)
{
  g_return_val_if_fail (MPG_IS_QUEUE (self), 0);

  return self->max_message_size;
}

/**
 * mpg_queue_set_max_message_size:
 * @self: a queue
 * @max_message_size: the largest message, in bytes
 *
 * Sets [property@Mpg.Queue:max-message-size].
 *
 * Since: 0.1
 */
void
mpg_queue_set_max_message_size (MpgQueue *self,
                                gsize     max_message_size)
{
  g_return_if_fail (MPG_IS_QUEUE (self));
  g_return_if_fail (max_message_size > MPG_WIRE_HEADER_SIZE);

  if (self->max_message_size == max_message_size)
    return;

  self->max_message_size = max_message_size;
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_MAX_MESSAGE_SIZE]);
}

/**
 * mpg_queue_get_max_buffer_size:
 * @self: a queue
 *
 * Gets [property@Mpg.Queue:max-buffer-size].
 *
 * Returns: the most bytes this process buffers, or 0 for no limit
 *
 * Since: 0.1
 */
gsize
mpg_queue_get_max_buffer_size (MpgQueue *self)
{
  g_return_val_if_fail (MPG_IS_QUEUE (self), 0);

  return self->max_buffer_size;
}

/**
 * mpg_queue_set_max_buffer_size:
 * @self: a queue
 * @max_buffer_size: the most bytes to buffer, or 0 for no limit
 *
 * Sets [property@Mpg.Queue:max-buffer-size].
 *
 * Since: 0.1
 */
void
mpg_queue_set_max_buffer_size (MpgQueue *self,
                               gsize     max_buffer_size)
{
  g_return_if_fail (MPG_IS_QUEUE (self));

  if (self->max_buffer_size == max_buffer_size)
    return;

  self->max_buffer_size = max_buffer_size;
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_MAX_BUFFER_SIZE]);
}

/* The feeder
 *
 * An unbounded queue's put() never blocks, as Python's: a message the
 * socket has no room for waits in memory, in this process, until a
 * feeder thread can send it. While the buffer is empty put() sends
 * directly, without blocking; once anything is buffered, later messages
 * are buffered behind it, so that a thread's messages keep their order.
 *
 * One thread per queue with a backlog, living only as long as the backlog,
 * rather than one thread for the library: each simply waits for room in
 * its own socket (no poll set to maintain across queues), and a consumer
 * that is slow to take one queue's messages never holds up another
 * queue's. Idle queues cost no thread, and a queue whose socket never
 * fills never starts one; a burst that fills it costs one thread start.
 *
 * The buffer is a Feeder, a plain refcounted struct (not the GObject) with
 * its own copies of the send fd and of the shared block's mapping: close()
 * and finalisation of the queue let it flush on, as Python's queue does,
 * and its thread never drops a GObject reference, which could run a
 * binding's toggle-notify after its runtime was finalised (at exit).
 *
 * Every Feeder's list and flags are under one lock, feed_lock. At fork()
 * the atfork handlers hold it, so the child sees the lists whole: the
 * child drops the messages its parent buffered (the parent sends them)
 * and the reference of the parent's threads, which do not exist in the
 * child. The dropping itself (freeing, closing fds) is left to later
 * calls, out of the atfork handler.
 */

typedef struct
{
  GVariant *value;          /* in normal form */
  GUnixFDList *fd_list;     /* copies of the caller's fds, or NULL */
  gsize size;               /* of the value */
} Pending;

struct _Feeder
{
  gint ref_count;           /* atomic */
  int send_fd;
  SharedBlock *shm;
  gboolean joinable;
  gint n_pending;           /* atomic mirror of pending.length, for put()'s look */

  /* Under feed_lock: */
  GQueue pending;           /* of Pending; the head is being sent */
  gsize buffered;           /* bytes of the pending values */
  guint room_waiters;       /* put()s waiting for max-buffer-size */
  gboolean running;         /* a thread feeds it, holding a reference */
  pid_t join_cancelled_by;
  Feeder *next_running;
  GQueue orphans;           /* Pending a fork left over from the parent */
  guint orphan_refs;        /* references of the parent's threads */
  Feeder *next_orphaned;
};

static GMutex feed_lock;
static GCond feed_cond;             /* broadcast when a feeder stops */
static Feeder *running_feeders;
static Feeder *orphaned_feeders;
static gboolean feed_handlers_set;

static void
pending_free (Pending *p)
{
  g_variant_unref (p->value);
  g_clear_object (&p->fd_list);
  g_free (p);
}

static Feeder *
feeder_ref (Feeder *f)
{
  g_atomic_int_inc (&f->ref_count);
  return f;
}

static void
feeder_unref (Feeder *f)
{
  if (!g_atomic_int_dec_and_test (&f->ref_count))
    return;

  /* Unreferenced, it runs no thread and has nothing left to send. */
  g_assert (g_queue_is_empty (&f->pending) && g_queue_is_empty (&f->orphans));
  munmap (f->shm, SHM_SIZE);
  close (f->send_fd);
  g_free (f);
}

/* A message counted by put() that will never be sent. */
static void
feeder_uncount (Feeder *f)
{
  g_atomic_int_add (&f->shm->count, -1);
  if (f->joinable && g_atomic_int_dec_and_test (&f->shm->unfinished))
    futex_wake (&f->shm->unfinished, INT_MAX);
}

static void
feed_atfork_prepare (void)
{
  g_mutex_lock (&feed_lock);
}

static void
feed_atfork_parent (void)
{
  g_mutex_unlock (&feed_lock);
}

/* In the child, the one thread left: no allocation, no freeing, only
 * moving list links. */
static void
feed_atfork_child (void)
{
  Feeder *next;

  for (Feeder *f = running_feeders; f != NULL; f = next)
    {
      GList *link;

      next = f->next_running;
      while ((link = g_queue_pop_head_link (&f->pending)) != NULL)
        g_queue_push_tail_link (&f->orphans, link);
      f->n_pending = 0;
      f->buffered = 0;
      f->running = FALSE;
      f->next_running = NULL;
      if (f->orphan_refs++ == 0)
        {
          f->next_orphaned = orphaned_feeders;
          orphaned_feeders = f;
        }
    }
  running_feeders = NULL;

  /* Taken by feed_atfork_prepare() in the thread that forked, which is
   * this one. */
  g_mutex_unlock (&feed_lock);
}

static void
feed_atexit (void)
{
  _mpg_queue_flush_all ();
}

/* Takes what fork() left of the parent's feeders, to be freed with
 * free_orphans() once feed_lock is released. */
static GSList *
take_orphans_locked (GQueue *entries)
{
  GSList *refs = NULL;

  while (orphaned_feeders != NULL)
    {
      Feeder *f = orphaned_feeders;
      GList *link;

      orphaned_feeders = f->next_orphaned;
      f->next_orphaned = NULL;
      while ((link = g_queue_pop_head_link (&f->orphans)) != NULL)
        g_queue_push_tail_link (entries, link);
      for (; f->orphan_refs > 0; f->orphan_refs--)
        refs = g_slist_prepend (refs, f);
    }

  return refs;
}

static void
free_orphans (GQueue *entries,
              GSList *refs)
{
  Pending *p;

  while ((p = g_queue_pop_head (entries)) != NULL)
    pending_free (p);
  g_slist_free_full (refs, (GDestroyNotify) feeder_unref);
}

static Feeder *
feeder_new_locked (MpgQueue  *self,
                   GError   **error)
{
  Feeder *f;
  void *map;
  int fd;

  fd = fcntl (self->send_fd, F_DUPFD_CLOEXEC, 3);
  if (fd < 0)
    {
      set_error_from_errno (error, "Could not start a queue's buffer");
      return NULL;
    }
  map = mmap (NULL, SHM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, self->shm_fd, 0);
  if (map == MAP_FAILED)
    {
      set_error_from_errno (error, "Could not start a queue's buffer");
      close (fd);
      return NULL;
    }

  if (!feed_handlers_set)
    {
      /* Inherited by children with the rest of the address space. */
      pthread_atfork (feed_atfork_prepare, feed_atfork_parent, feed_atfork_child);
      atexit (feed_atexit);
      feed_handlers_set = TRUE;
    }

  f = g_new0 (Feeder, 1);
  f->ref_count = 1;
  f->send_fd = fd;
  f->shm = map;
  f->joinable = self->joinable;
  f->join_cancelled_by = self->join_cancelled_by;
  g_queue_init (&f->pending);
  g_queue_init (&f->orphans);

  return f;
}

static void
unlink_running_locked (Feeder *f)
{
  for (Feeder **link = &running_feeders; *link != NULL; link = &(*link)->next_running)
    if (*link == f)
      {
        *link = f->next_running;
        break;
      }
  f->next_running = NULL;
  f->running = FALSE;
}

/* Sends @p, waiting for room as long as it takes. */
static gboolean
feeder_send (Feeder   *f,
             Pending  *p,
             GError  **error)
{
  for (;;)
    {
      GError *local_error = NULL;

      /* Checked against max-message-size when it was put. Without
       * blocking, so that while this thread waits it holds no memory of
       * its own (encoded frames): a child forked meanwhile, which does
       * not have this thread, would never free it. */
      if (_mpg_channel_send (f->send_fd, p->value, p->fd_list, G_MAXSIZE, 0, NULL, &local_error))
        return TRUE;
      if (!g_error_matches (local_error, MPG_ERROR, MPG_ERROR_TIMEOUT))
        {
          g_propagate_error (error, local_error);
          return FALSE;
        }
      g_clear_error (&local_error);

      /* Refused although there is room: too many fds in flight, which
       * poll() does not tell. Retry in a while, as the channel does. */
      if (_mpg_channel_wait (f->send_fd, G_IO_OUT, 0, NULL, NULL))
        g_usleep (10 * 1000);
      else
        _mpg_channel_wait (f->send_fd, G_IO_OUT, -1, NULL, NULL);
    }
}

static void *
feeder_thread (void *data)
{
  Feeder *f = data;   /* the running reference */

  g_mutex_lock (&feed_lock);
  for (;;)
    {
      g_autoptr(GError) error = NULL;
      Pending *p = g_queue_peek_head (&f->pending);

      if (p == NULL)
        break;
      g_mutex_unlock (&feed_lock);

      if (!feeder_send (f, p, &error))
        {
          /* The other end closed in every process: nobody will take it. */
          if (g_error_matches (error, MPG_ERROR, MPG_ERROR_END_OF_STREAM))
            g_debug ("A queue's feeder dropped a message: %s", error->message);
          else
            g_warning ("A queue's feeder dropped a message: %s", error->message);
          feeder_uncount (f);
        }

      /* Taken off only now: while it is being sent, a put() in this
       * process must still see the buffer non-empty and queue behind it. */
      g_mutex_lock (&feed_lock);
      g_queue_pop_head (&f->pending);
      g_atomic_int_add (&f->n_pending, -1);
      f->buffered -= p->size;
      if (f->room_waiters > 0)
        g_cond_broadcast (&feed_cond);
      g_mutex_unlock (&feed_lock);
      pending_free (p);
      g_mutex_lock (&feed_lock);
    }

  unlink_running_locked (f);
  g_cond_broadcast (&feed_cond);
  /* Dropped under the lock, so that no fork sees a reference held by a
   * thread that the child does not have. Freeing a Feeder only closes an
   * fd and unmaps. */
  feeder_unref (f);
  g_mutex_unlock (&feed_lock);

  return NULL;
}

/* A detached POSIX thread rather than a GThread: a GThread's struct is
 * reachable only from its own thread, so that in a child forked while it
 * runs it is a leak (one valgrind reports). Signals are blocked in it, to
 * be delivered to the application's threads. */
static gboolean
start_feeder_thread (Feeder  *f,
                     GError **error)
{
  pthread_attr_t attr;
  pthread_t thread;
  sigset_t all, saved;
  int ret;

  sigfillset (&all);
  pthread_attr_init (&attr);
  pthread_attr_setdetachstate (&attr, PTHREAD_CREATE_DETACHED);
  pthread_sigmask (SIG_SETMASK, &all, &saved);
  ret = pthread_create (&thread, &attr, feeder_thread, f);
  pthread_sigmask (SIG_SETMASK, &saved, NULL);
  pthread_attr_destroy (&attr);

  if (ret != 0)
    {
      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (ret),
                   "Could not start a queue's feeder thread: %s", g_strerror (ret));
      return FALSE;
    }
  pthread_setname_np (thread, "mpg-queue-feed");

  return TRUE;
}

/* Takes @p (freed on failure). */
static gboolean
feeder_push (MpgQueue  *self,
             Pending   *p,
             GError   **error)
{
  GQueue orphans = G_QUEUE_INIT;
  GSList *orphan_refs;
  Feeder *f;
  gboolean ok = FALSE;

  g_mutex_lock (&feed_lock);
  orphan_refs = take_orphans_locked (&orphans);

  f = self->feeder;
  if (f == NULL)
    {
      f = feeder_new_locked (self, error);
      if (f == NULL)
        goto out;
      g_atomic_pointer_set (&self->feeder, f);
    }

  g_queue_push_tail (&f->pending, p);
  g_atomic_int_inc (&f->n_pending);
  f->buffered += p->size;
  ok = TRUE;

  if (!f->running)
    {
      f->running = TRUE;
      f->next_running = running_feeders;
      running_feeders = f;
      if (!start_feeder_thread (feeder_ref (f), error))
        {
          unlink_running_locked (f);
          feeder_unref (f);   /* not the last: the queue holds one */
          g_queue_pop_tail (&f->pending);
          g_atomic_int_add (&f->n_pending, -1);
          f->buffered -= p->size;
          ok = FALSE;
        }
    }

out:
  g_mutex_unlock (&feed_lock);
  if (!ok)
    pending_free (p);
  free_orphans (&orphans, orphan_refs);

  return ok;
}

/* As mpg-channel.c's: every handle must index one of the message's fds. */
static gboolean
handles_are_valid (GVariant *value,
                   guint     n_fds)
{
  if (g_variant_is_of_type (value, G_VARIANT_TYPE_HANDLE))
    {
      gint32 h = g_variant_get_handle (value);

      return h >= 0 && (guint) h < n_fds;
    }

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

/* What _mpg_channel_send() refuses, with the same errors, for a message
 * that is buffered rather than sent: the put fails, not the feeder.
 * Encoding it is the one way to know its size by the wire's own rules;
 * the feeder encodes it again when it sends it. */
static gboolean
check_message (MpgQueue     *self,
               GVariant     *normal,
               GUnixFDList  *fd_list,
               GError      **error)
{
  g_autoptr(GBytes) frame = NULL;
  int n_fds = fd_list != NULL ? g_unix_fd_list_get_length (fd_list) : 0;

  if (!handles_are_valid (normal, n_fds))
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                   "A handle of the message does not index one of its %d file descriptors",
                   n_fds);
      return FALSE;
    }

  frame = _mpg_wire_encode (normal, error);
  if (frame == NULL)
    return FALSE;
  if (g_bytes_get_size (frame) > self->max_message_size)
    {
      g_set_error (error, MPG_ERROR, MPG_ERROR_TOO_LARGE,
                   "Message of %" G_GSIZE_FORMAT " bytes exceeds the maximum of %" G_GSIZE_FORMAT,
                   g_bytes_get_size (frame), self->max_message_size);
      return FALSE;
    }

  if (n_fds > MPG_CHANNEL_MAX_FDS)
    {
      g_set_error (error, MPG_ERROR, MPG_ERROR_TOO_LARGE,
                   "A message can carry at most %d file descriptors", MPG_CHANNEL_MAX_FDS);
      return FALSE;
    }

  return TRUE;
}

static Pending *
pending_new (GVariant     *normal,
             GUnixFDList  *fd_list,
             GError      **error)
{
  g_autoptr(GUnixFDList) copy = NULL;
  const int *fds = NULL;
  int n_fds = 0;
  Pending *p;

  if (fd_list != NULL)
    fds = g_unix_fd_list_peek_fds (fd_list, &n_fds);
  if (n_fds > 0)
    {
      /* Copies: the caller may close its own as soon as put() returns. */
      copy = g_unix_fd_list_new ();
      for (int i = 0; i < n_fds; i++)
        if (g_unix_fd_list_append (copy, fds[i], error) < 0)
          return NULL;
    }

  p = g_new (Pending, 1);
  p->value = g_variant_ref (normal);
  p->fd_list = g_steal_pointer (&copy);
  p->size = g_variant_get_size (normal);

  return p;
}

/* Waits until @size more bytes fit in this process's buffer of @self
 * (max-buffer-size), or the buffer is empty. */
static gboolean
wait_for_buffer_room (MpgQueue      *self,
                      gsize          size,
                      gint64         deadline,
                      GCancellable  *cancellable,
                      GError       **error)
{
  gsize limit = self->max_buffer_size;
  Feeder *f = g_atomic_pointer_get (&self->feeder);
  gboolean ok = TRUE;

  if (limit == 0 || f == NULL)
    return TRUE;

  g_mutex_lock (&feed_lock);
  while (f->buffered > 0 && f->buffered + size > limit)
    {
      gint64 until = g_get_monotonic_time () + 50 * G_TIME_SPAN_MILLISECOND;

      if (g_cancellable_set_error_if_cancelled (cancellable, error))
        {
          ok = FALSE;
          break;
        }
      if (deadline >= 0 && g_get_monotonic_time () >= deadline)
        {
          g_set_error (error, MPG_ERROR, MPG_ERROR_FULL,
                       "The queue's buffer in this process is full: %" G_GSIZE_FORMAT
                       " bytes wait to be sent (max-buffer-size %" G_GSIZE_FORMAT ")",
                       f->buffered, limit);
          ok = FALSE;
          break;
        }
      /* In slices, to notice a cancellation. */
      f->room_waiters++;
      g_cond_wait_until (&feed_cond, &feed_lock, deadline >= 0 ? MIN (deadline, until) : until);
      f->room_waiters--;
    }
  g_mutex_unlock (&feed_lock);

  return ok;
}

/* An unbounded queue's put: to the socket if nothing of this process waits
 * before it and there is room, else to the buffer. Blocks only with a
 * max-buffer-size. */
static gboolean
put_unbounded (MpgQueue     *self,
               GVariant     *value,
               GUnixFDList  *fd_list,
               gint64        deadline,
               GCancellable *cancellable,
               GError      **error)
{
  Feeder *f = g_atomic_pointer_get (&self->feeder);
  g_autoptr(GVariant) normal = NULL;
  Pending *p;

  if (f == NULL || g_atomic_int_get (&f->n_pending) == 0)
    {
      GError *local_error = NULL;

      if (_mpg_channel_send (self->send_fd, value, fd_list, self->max_message_size,
                             0, NULL, &local_error))
        return TRUE;

      /* A time-out at deadline 0 is a full socket (or too many fds in
       * flight), after the message passed every check. */
      if (!g_error_matches (local_error, MPG_ERROR, MPG_ERROR_TIMEOUT))
        {
          g_propagate_error (error, local_error);
          return FALSE;
        }
      g_clear_error (&local_error);
      normal = g_variant_get_normal_form (value);
    }
  else
    {
      normal = g_variant_get_normal_form (value);
      if (!check_message (self, normal, fd_list, error))
        return FALSE;
    }

  if (!wait_for_buffer_room (self, g_variant_get_size (normal), deadline, cancellable, error))
    return FALSE;

  p = pending_new (normal, fd_list, error);
  if (p == NULL)
    return FALSE;

  return feeder_push (self, p, error);
}

/*
 * _mpg_queue_flush_all:
 *
 * Waits until every feeder of this process has sent its buffer, but those
 * of queues whose join was cancelled: their buffered messages are dropped
 * (and uncounted). Called at the exit of a process: from atexit() and from
 * a child's exit function.
 */
void
_mpg_queue_flush_all (void)
{
  GQueue dropped = G_QUEUE_INIT;
  GSList *orphan_refs;
  pid_t pid = getpid ();

  g_mutex_lock (&feed_lock);
  orphan_refs = take_orphans_locked (&dropped);

  for (;;)
    {
      Feeder *f = running_feeders;

      while (f != NULL && f->join_cancelled_by == pid)
        f = f->next_running;
      if (f == NULL)
        break;
      g_debug ("At exit: waiting for a queue's feeder to send %u messages",
               g_queue_get_length (&f->pending));
      g_cond_wait (&feed_cond, &feed_lock);
    }

  /* The head may be in a send that completes before the process is gone:
   * it stays counted. */
  for (Feeder *f = running_feeders; f != NULL; f = f->next_running)
    while (g_queue_get_length (&f->pending) > 1)
      {
        g_queue_push_tail (&dropped, g_queue_pop_tail (&f->pending));
        g_atomic_int_add (&f->n_pending, -1);
        feeder_uncount (f);
      }

  g_mutex_unlock (&feed_lock);

  free_orphans (&dropped, orphan_refs);
}

/* Putting */

static gboolean
put_internal (MpgQueue      *self,
              GVariant      *value,
              GUnixFDList   *fd_list,
              gboolean       block,
              gint           timeout_msec,
              GCancellable  *cancellable,
              GError       **error)
{
  g_autoptr(GVariant) owned = g_variant_ref_sink (value);
  GError *local_error = NULL;
  gint64 deadline = deadline_for (block, timeout_msec);
  gboolean ok;

  if (!queue_use (self, error))
    return FALSE;

  if (self->maxsize > 0 && !take_slot (self, deadline, cancellable, error))
    {
      queue_unuse (self);
      return FALSE;
    }

  /* Counted before the message can be taken, so that a fast consumer's
   * task_done() never finds the count at zero. A bounded queue's message
   * is in qsize() once sent; an unbounded queue's once put, whether it
   * goes to the socket or waits in this process's buffer. */
  if (self->joinable)
    g_atomic_int_inc (&self->shm->unfinished);

  if (self->maxsize > 0)
    ok = _mpg_channel_send (self->send_fd, owned, fd_list, self->max_message_size,
                            deadline, cancellable, &local_error);
  else
    {
      g_atomic_int_inc (&self->shm->count);
      ok = put_unbounded (self, owned, fd_list, deadline, cancellable, &local_error);
      if (!ok)
        g_atomic_int_add (&self->shm->count, -1);
    }

  if (!ok)
    {
      if (self->joinable)
        unfinished_dec (self);
      if (self->maxsize > 0)
        give_slot (self);
      queue_unuse (self);

      if (g_error_matches (local_error, MPG_ERROR, MPG_ERROR_TIMEOUT))
        {
          g_clear_error (&local_error);
          g_set_error_literal (error, MPG_ERROR, MPG_ERROR_FULL, "The queue is full");
        }
      else
        g_propagate_error (error, local_error);
      return FALSE;
    }

  if (self->maxsize > 0)
    g_atomic_int_inc (&self->shm->count);
  queue_unuse (self);

  return TRUE;
}

/**
 * mpg_queue_put:
 * @self: a queue
 * @value: the message; a floating reference is sunk
 * @block: whether to wait for room
 * @timeout_msec: when @block is %TRUE, how long to wait at most, in
 *   milliseconds, or -1 for ever
 * @cancellable: (nullable): a #GCancellable
 * @error: return location for a #GError
 *
 * Puts @value at the end of the queue, as Python's `put(obj, block,
 * timeout)`. When a bounded queue is full (its maxsize reached, or the
 * kernel's socket buffer full), a blocking put waits for room; a
 * non-blocking put, or one whose timeout expires, fails with
 * %MPG_ERROR_FULL.
 *
 * On an unbounded queue (maxsize 0) a put never waits and never fails
 * with %MPG_ERROR_FULL, whatever @block and @timeout_msec: a message the
 * socket has no room for waits in this process's buffer until a feeder
 * thread can send it (see the class's documentation); unless
 * [property@Mpg.Queue:max-buffer-size] limits that buffer, in which case
 * a put that finds it full waits as @block and @timeout_msec say. Either way, once
 * this returns %TRUE the message is not lost if this process exits
 * normally: the exit waits until it was sent (see
 * [method@Mpg.Queue.cancel_join_thread]).
 *
 * Fails with %MPG_ERROR_TOO_LARGE if @value is larger than
 * [property@Mpg.Queue:max-message-size], %G_IO_ERROR_CANCELLED if
 * @cancellable is cancelled (noticed within 50 ms while waiting for a
 * slot), %MPG_ERROR_CLOSED after [method@Mpg.Queue.close].
 *
 * Returns: %TRUE if the message was put
 *
 * Since: 0.1
 */
gboolean
mpg_queue_put (MpgQueue      *self,
               GVariant      *value,
               gboolean       block,
               gint           timeout_msec,
               GCancellable  *cancellable,
               GError       **error)
{
  g_return_val_if_fail (MPG_IS_QUEUE (self), FALSE);
  g_return_val_if_fail (value != NULL, FALSE);
  g_return_val_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  return put_internal (self, value, NULL, block, timeout_msec, cancellable, error);
}

/**
 * mpg_queue_put_with_fds:
 * @self: a queue
 * @value: the message; a floating reference is sunk
 * @fd_list: (nullable): the file descriptors that @value's handles (`h`)
 *   index
 * @block: whether to wait for room
 * @timeout_msec: when @block is %TRUE, how long to wait at most, in
 *   milliseconds, or -1 for ever
 * @cancellable: (nullable): a #GCancellable
 * @error: return location for a #GError
 *
 * As [method@Mpg.Queue.put], and passes the file descriptors of @fd_list
 * (at most 250) with the message: the consumer that takes it gets copies
 * of them from [method@Mpg.Queue.get_with_fds]. @fd_list keeps its own.
 *
 * Returns: %TRUE if the message was put
 *
 * Since: 0.1
 */
gboolean
mpg_queue_put_with_fds (MpgQueue      *self,
                        GVariant      *value,
                        GUnixFDList   *fd_list,
                        gboolean       block,
                        gint           timeout_msec,
                        GCancellable  *cancellable,
                        GError       **error)
{
  g_return_val_if_fail (MPG_IS_QUEUE (self), FALSE);
  g_return_val_if_fail (value != NULL, FALSE);
  g_return_val_if_fail (fd_list == NULL || G_IS_UNIX_FD_LIST (fd_list), FALSE);
  g_return_val_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  return put_internal (self, value, fd_list, block, timeout_msec, cancellable, error);
}

/* Getting */

/* Whether a failed receive took a datagram off the socket (and so a
 * message off the counters): a message that could not be decoded was
 * taken and dropped; a timeout, a cancellation or a failing system call
 * took nothing. */
static gboolean
error_took_message (const GError *error)
{
  return g_error_matches (error, MPG_ERROR, MPG_ERROR_PROTOCOL) ||
         g_error_matches (error, MPG_ERROR, MPG_ERROR_TOO_LARGE);
}

static GVariant *
get_internal (MpgQueue      *self,
              gint64         deadline,
              GUnixFDList  **out_fd_list,
              GCancellable  *cancellable,
              GError       **error)
{
  GError *local_error = NULL;
  GVariant *value;

  if (!queue_use (self, error))
    return NULL;

  value = _mpg_channel_receive (self->recv_fd, self->max_message_size, deadline,
                                cancellable, out_fd_list, &local_error);
  if (value != NULL || error_took_message (local_error))
    message_taken (self);
  queue_unuse (self);

  if (g_error_matches (local_error, MPG_ERROR, MPG_ERROR_TIMEOUT))
    {
      g_clear_error (&local_error);
      g_set_error_literal (error, MPG_ERROR, MPG_ERROR_EMPTY, "The queue is empty");
    }
  else if (local_error != NULL)
    g_propagate_error (error, local_error);

  return value;
}

/**
 * mpg_queue_get:
 * @self: a queue
 * @block: whether to wait for a message
 * @timeout_msec: when @block is %TRUE, how long to wait at most, in
 *   milliseconds, or -1 for ever
 * @cancellable: (nullable): a #GCancellable
 * @error: return location for a #GError
 *
 * Takes the message at the head of the queue, as Python's `get(block,
 * timeout)`. When the queue is empty, a blocking get waits; a non-blocking
 * get, or one whose timeout expires, fails with %MPG_ERROR_EMPTY.
 *
 * File descriptors that came with the message are closed: use
 * [method@Mpg.Queue.get_with_fds] to receive them. A message that cannot
 * be decoded (larger than [property@Mpg.Queue:max-message-size], or not
 * valid) is taken and dropped, and fails the call with
 * %MPG_ERROR_TOO_LARGE or %MPG_ERROR_PROTOCOL.
 *
 * Returns: (transfer full): the message, or %NULL with @error set
 *
 * Since: 0.1
 */
GVariant *
mpg_queue_get (MpgQueue      *self,
               gboolean       block,
               gint           timeout_msec,
               GCancellable  *cancellable,
               GError       **error)
{
  g_return_val_if_fail (MPG_IS_QUEUE (self), NULL);
  g_return_val_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable), NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  return get_internal (self, deadline_for (block, timeout_msec), NULL, cancellable, error);
}

/**
 * mpg_queue_get_with_fds:
 * @self: a queue
 * @block: whether to wait for a message
 * @timeout_msec: when @block is %TRUE, how long to wait at most, in
 *   milliseconds, or -1 for ever
 * @out_fd_list: (out) (optional) (nullable) (transfer full): return
 *   location for the message's file descriptors, %NULL if it had none
 * @cancellable: (nullable): a #GCancellable
 * @error: return location for a #GError
 *
 * As [method@Mpg.Queue.get], and returns the file descriptors that came
 * with the message: its handles (`h`) index @out_fd_list.
 *
 * Returns: (transfer full): the message, or %NULL with @error set
 *
 * Since: 0.1
 */
GVariant *
mpg_queue_get_with_fds (MpgQueue      *self,
                        gboolean       block,
                        gint           timeout_msec,
                        GUnixFDList  **out_fd_list,
                        GCancellable  *cancellable,
                        GError       **error)
{
  g_return_val_if_fail (MPG_IS_QUEUE (self), NULL);
  g_return_val_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable), NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if (out_fd_list != NULL)
    *out_fd_list = NULL;

  return get_internal (self, deadline_for (block, timeout_msec), out_fd_list, cancellable, error);
}

/* A source that takes messages as they arrive */

typedef gboolean (*QueueSourceFunc) (MpgQueue     *queue,
                                     GVariant     *value,
                                     const GError *error,
                                     gpointer      user_data);

typedef struct
{
  GSource source;
  MpgQueue *queue;
  GMainContext *context;        /* the one registered in queue->contexts */
  GCancellable *cancellable;
  gpointer fd_tag;
} QueueSource;

static gboolean
queue_source_prepare (GSource *source,
                      gint    *timeout)
{
  QueueSource *qs = (QueueSource *) source;

  *timeout = -1;
  return queue_is_closed (qs->queue);
}

static gboolean
queue_source_check (GSource *source)
{
  QueueSource *qs = (QueueSource *) source;

  return queue_is_closed (qs->queue) ||
         g_source_query_unix_fd (source, qs->fd_tag) != 0;
}

static gboolean
queue_source_dispatch (GSource     *source,
                       GSourceFunc  callback,
                       gpointer     user_data)
{
  QueueSource *qs = (QueueSource *) source;
  MpgQueue *self = qs->queue;
  QueueSourceFunc func = (QueueSourceFunc) callback;
  g_autoptr(GVariant) value = NULL;
  g_autoptr(GError) error = NULL;

  if (func == NULL)
    return G_SOURCE_REMOVE;

  /* Checked before receiving: a message taken now would be lost. */
  if (g_cancellable_set_error_if_cancelled (qs->cancellable, &error))
    return func (self, NULL, error, user_data);

  if (queue_is_closed (self))
    {
      g_set_error_literal (&error, MPG_ERROR, MPG_ERROR_CLOSED, "The queue is closed");
      return func (self, NULL, error, user_data);
    }

  /* The source holds a use, so the fd is open. Another consumer may have
   * taken the message we were woken for: then keep watching. */
  value = _mpg_channel_receive (self->recv_fd, self->max_message_size, 0, NULL, NULL, &error);
  if (value != NULL || error_took_message (error))
    message_taken (self);
  else if (g_error_matches (error, MPG_ERROR, MPG_ERROR_TIMEOUT))
    return G_SOURCE_CONTINUE;

  return func (self, value, error, user_data);
}

static void
queue_source_finalize (GSource *source)
{
  QueueSource *qs = (QueueSource *) source;
  MpgQueue *self = qs->queue;

  g_mutex_lock (&self->mutex);
  g_ptr_array_remove (self->contexts, qs->context);
  g_mutex_unlock (&self->mutex);
  qs->context = NULL;

  queue_unuse (self);
  g_clear_object (&qs->cancellable);
  g_clear_object (&qs->queue);
}

static GSourceFuncs queue_source_funcs = {
  queue_source_prepare,
  queue_source_check,
  queue_source_dispatch,
  queue_source_finalize,
  NULL, NULL,
};

/* Returns a source for the thread-default main context, holding a use of
 * the queue's fds and a reference on the queue. */
static GSource *
queue_source_new (MpgQueue      *self,
                  GCancellable  *cancellable,
                  GError       **error)
{
  GSource *source;
  QueueSource *qs;

  if (!queue_use (self, error))
    return NULL;

  source = g_source_new (&queue_source_funcs, sizeof (QueueSource));
  qs = (QueueSource *) source;
  qs->queue = g_object_ref (self);
  qs->fd_tag = g_source_add_unix_fd (source, self->recv_fd, G_IO_IN);
  qs->context = g_main_context_ref_thread_default ();

  g_mutex_lock (&self->mutex);
  g_ptr_array_add (self->contexts, qs->context);
  g_mutex_unlock (&self->mutex);

  if (cancellable != NULL)
    {
      GSource *cancel_source = g_cancellable_source_new (cancellable);

      qs->cancellable = g_object_ref (cancellable);
      g_source_set_dummy_callback (cancel_source);
      g_source_add_child_source (source, cancel_source);
      g_source_unref (cancel_source);
    }

  return source;
}

static gboolean
get_async_ready (MpgQueue     *self,
                 GVariant     *value,
                 const GError *error,
                 gpointer      user_data)
{
  GTask *task = user_data;

  if (value != NULL)
    g_task_return_pointer (task, g_variant_ref (value), (GDestroyNotify) g_variant_unref);
  else
    g_task_return_error (task, g_error_copy (error));

  return G_SOURCE_REMOVE;
}

/**
 * mpg_queue_get_async:
 * @self: a queue
 * @cancellable: (nullable): a #GCancellable
 * @callback: (scope async): called when a message was taken
 * @user_data: data for @callback
 *
 * Takes the message at the head of the queue without blocking: watches
 * the queue in the thread-default main context of the caller, where
 * @callback is called once a message was taken (or the call failed). Call
 * [method@Mpg.Queue.get_finish] there to get it.
 *
 * Cancelling @cancellable fails the call with %G_IO_ERROR_CANCELLED at
 * once, and no message is taken. [method@Mpg.Queue.close] fails it with
 * %MPG_ERROR_CLOSED.
 *
 * Since: 0.1
 */
void
mpg_queue_get_async (MpgQueue            *self,
                     GCancellable        *cancellable,
                     GAsyncReadyCallback  callback,
                     gpointer             user_data)
{
  g_autoptr(GTask) task = NULL;
  GError *error = NULL;
  GSource *source;

  g_return_if_fail (MPG_IS_QUEUE (self));
  g_return_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable));

  task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (task, mpg_queue_get_async);
  g_task_set_name (task, "[mpg] get from queue");
  /* A message once taken must reach the caller even if the cancellable is
   * cancelled in between: the source checks cancellation before taking. */
  g_task_set_check_cancellable (task, FALSE);

  source = queue_source_new (self, cancellable, &error);
  if (source == NULL)
    {
      g_task_return_error (task, error);
      return;
    }

  g_source_set_static_name (source, "[mpg] queue get");
  g_task_attach_source (task, source, (GSourceFunc) get_async_ready);
  g_source_unref (source);
}

/**
 * mpg_queue_get_finish:
 * @self: a queue
 * @result: the result passed to the callback
 * @error: return location for a #GError
 *
 * Completes [method@Mpg.Queue.get_async].
 *
 * Returns: (transfer full): the message, or %NULL with @error set
 *
 * Since: 0.1
 */
GVariant *
mpg_queue_get_finish (MpgQueue      *self,
                      GAsyncResult  *result,
                      GError       **error)
{
  g_return_val_if_fail (MPG_IS_QUEUE (self), NULL);
  g_return_val_if_fail (g_task_is_valid (result, self), NULL);
  g_return_val_if_fail (g_task_get_source_tag (G_TASK (result)) == mpg_queue_get_async, NULL);

  return g_task_propagate_pointer (G_TASK (result), error);
}

typedef struct
{
  MpgQueueWatchFunc func;
  gpointer user_data;
  GDestroyNotify notify;
} WatchData;

static void
watch_data_free (gpointer data)
{
  WatchData *wd = data;

  if (wd->notify != NULL)
    wd->notify (wd->user_data);
  g_free (wd);
}

static gboolean
watch_dispatch (MpgQueue     *self,
                GVariant     *value,
                const GError *error,
                gpointer      user_data)
{
  WatchData *wd = user_data;

  if (value != NULL)
    return wd->func (self, value, wd->user_data);

  if (g_error_matches (error, MPG_ERROR, MPG_ERROR_CLOSED))
    return G_SOURCE_REMOVE;

  /* A message that could not be decoded is dropped; nobody else will see
   * it, so say so. */
  g_warning ("A queue watch dropped a message: %s", error->message);
  return G_SOURCE_CONTINUE;
}

/**
 * mpg_queue_add_watch:
 * @self: a queue
 * @func: (scope notified) (closure user_data) (destroy notify): called
 *   with each message taken
 * @user_data: data for @func
 * @notify: (nullable): frees @user_data when the watch is removed
 *
 * Watches the queue in the thread-default main context of the caller:
 * takes each message as it arrives and calls @func with it, until @func
 * returns %G_SOURCE_REMOVE, the watch is removed with g_source_remove(),
 * or the queue is closed. Other consumers, in this process or others, may
 * take messages too: each message goes to one of them.
 *
 * The watch holds a reference on the queue. A message that cannot be
 * decoded is dropped with a warning.
 *
 * Returns: the ID of the watch's #GSource in its main context, or 0 if
 *   the queue is closed
 *
 * Since: 0.1
 */
guint
mpg_queue_add_watch (MpgQueue          *self,
                     MpgQueueWatchFunc  func,
                     gpointer           user_data,
                     GDestroyNotify     notify)
{
  g_autoptr(GMainContext) context = NULL;
  g_autoptr(GError) error = NULL;
  WatchData *wd;
  GSource *source;
  guint id;

  g_return_val_if_fail (MPG_IS_QUEUE (self), 0);
  g_return_val_if_fail (func != NULL, 0);

  source = queue_source_new (self, NULL, &error);
  if (source == NULL)
    {
      g_critical ("%s: %s", G_STRFUNC, error->message);
      return 0;
    }

  wd = g_new0 (WatchData, 1);
  wd->func = func;
  wd->user_data = user_data;
  wd->notify = notify;

  g_source_set_static_name (source, "[mpg] queue watch");
  g_source_set_callback (source, (GSourceFunc) watch_dispatch, wd, watch_data_free);
  context = g_main_context_ref_thread_default ();
  id = g_source_attach (source, context);
  g_source_unref (source);

  return id;
}

/* The rest of the API */

/**
 * mpg_queue_qsize:
 * @self: a queue
 *
 * Gets the approximate number of messages in the queue, as Python's
 * `qsize()`: other processes may put and get at any time, and a process
 * killed inside `put()` or `get()` can leave the count off by one. It
 * includes the messages of an unbounded queue that their producers still
 * buffer.
 *
 * Returns: the number of messages in the queue, 0 if it is closed
 *
 * Since: 0.1
 */
guint
mpg_queue_qsize (MpgQueue *self)
{
  gint count = 0;

  g_return_val_if_fail (MPG_IS_QUEUE (self), 0);

  if (queue_use (self, NULL))
    {
      count = g_atomic_int_get (&self->shm->count);
      queue_unuse (self);
    }

  return MAX (count, 0);
}

/**
 * mpg_queue_empty:
 * @self: a queue
 *
 * Gets whether the queue is empty, as Python's `empty()`: whether no
 * message is waiting in the socket right now. Another process may put or
 * take one at any moment, and messages that a producer still buffers (see
 * [method@Mpg.Queue.join_thread]) are not in the socket yet.
 *
 * Returns: %TRUE if no message is waiting, or the queue is closed
 *
 * Since: 0.1
 */
gboolean
mpg_queue_empty (MpgQueue *self)
{
  gboolean empty = TRUE;

  g_return_val_if_fail (MPG_IS_QUEUE (self), TRUE);

  if (queue_use (self, NULL))
    {
      GPollFD pfd = { self->recv_fd, G_IO_IN, 0 };

      while (g_poll (&pfd, 1, 0) < 0 && errno == EINTR)
        ;
      empty = (pfd.revents & G_IO_IN) == 0;
      queue_unuse (self);
    }

  return empty;
}

/**
 * mpg_queue_full:
 * @self: a queue
 *
 * Gets whether the queue holds its maxsize of messages, as Python's
 * `full()`. An unbounded queue is never full.
 *
 * Returns: %TRUE if the queue is full; %FALSE if it is closed
 *
 * Since: 0.1
 */
gboolean
mpg_queue_full (MpgQueue *self)
{
  gboolean full = FALSE;

  g_return_val_if_fail (MPG_IS_QUEUE (self), FALSE);

  if (self->maxsize > 0 && queue_use (self, NULL))
    {
      full = g_atomic_int_get (&self->shm->free_slots) <= 0;
      queue_unuse (self);
    }

  return full;
}

/**
 * mpg_queue_close:
 * @self: a queue
 *
 * Stops using the queue in this process, as Python's `close()`: closes
 * this process's file descriptors of it (once no call in another thread
 * uses them any more). Further calls fail with %MPG_ERROR_CLOSED; pending
 * [method@Mpg.Queue.get_async] calls fail with it too and watches stop.
 * The queue lives on in other processes, with the messages already put:
 * those this process still buffers are sent all the same
 * ([method@Mpg.Queue.join_thread] waits for that).
 *
 * Closing a closed queue does nothing. Finalising the object closes it.
 *
 * Since: 0.1
 */
void
mpg_queue_close (MpgQueue *self)
{
  g_autoptr(GPtrArray) contexts = NULL;
  gint old;

  g_return_if_fail (MPG_IS_QUEUE (self));

  old = g_atomic_int_or ((guint *) &self->state, STATE_CLOSED);
  if (old & STATE_CLOSED)
    return;
  if (old == 0)
    release (self);

  g_mutex_lock (&self->mutex);
  contexts = g_ptr_array_new_with_free_func ((GDestroyNotify) g_main_context_unref);
  for (guint i = 0; i < self->contexts->len; i++)
    g_ptr_array_add (contexts, g_main_context_ref (g_ptr_array_index (self->contexts, i)));
  g_mutex_unlock (&self->mutex);

  /* Sources see the flag in their prepare and check functions. */
  for (guint i = 0; i < contexts->len; i++)
    g_main_context_wakeup (g_ptr_array_index (contexts, i));
}

/**
 * mpg_queue_task_done:
 * @self: a joinable queue
 * @error: return location for a #GError
 *
 * Tells the queue that a message taken from it was processed, as
 * Python's `task_done()`. When every message put has been processed,
 * [method@Mpg.Queue.join] returns.
 *
 * Fails with %MPG_ERROR_INVALID_STATE if the queue is not joinable or if
 * it is called more times than messages were put.
 *
 * Returns: %TRUE on success
 *
 * Since: 0.1
 */
gboolean
mpg_queue_task_done (MpgQueue  *self,
                     GError   **error)
{
  gboolean ok = FALSE;

  g_return_val_if_fail (MPG_IS_QUEUE (self), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  if (!self->joinable)
    {
      g_set_error_literal (error, MPG_ERROR, MPG_ERROR_INVALID_STATE,
                           "task_done() needs a joinable queue");
      return FALSE;
    }

  if (!queue_use (self, error))
    return FALSE;

  for (;;)
    {
      gint v = g_atomic_int_get (&self->shm->unfinished);

      if (v <= 0)
        {
          g_set_error_literal (error, MPG_ERROR, MPG_ERROR_INVALID_STATE,
                               "task_done() called too many times");
          break;
        }
      if (g_atomic_int_compare_and_exchange (&self->shm->unfinished, v, v - 1))
        {
          if (v == 1)
            futex_wake (&self->shm->unfinished, INT_MAX);
          ok = TRUE;
          break;
        }
    }

  queue_unuse (self);

  return ok;
}

/**
 * mpg_queue_join:
 * @self: a joinable queue
 * @timeout_msec: how long to wait at most, in milliseconds, or -1 for ever
 * @cancellable: (nullable): a #GCancellable
 * @error: return location for a #GError
 *
 * Waits until every message put into the queue (by any process) has been
 * processed, that is until [method@Mpg.Queue.task_done] was called for
 * each, as Python's `JoinableQueue.join()`.
 *
 * Fails with %MPG_ERROR_TIMEOUT when @timeout_msec expires,
 * %G_IO_ERROR_CANCELLED when @cancellable is cancelled (noticed within
 * 50 ms), and %MPG_ERROR_INVALID_STATE if the queue is not joinable.
 *
 * Returns: %TRUE once no task is unfinished
 *
 * Since: 0.1
 */
gboolean
mpg_queue_join (MpgQueue      *self,
                gint           timeout_msec,
                GCancellable  *cancellable,
                GError       **error)
{
  gint64 deadline = deadline_for (TRUE, timeout_msec);
  gboolean ok = FALSE;

  g_return_val_if_fail (MPG_IS_QUEUE (self), FALSE);
  g_return_val_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  if (!self->joinable)
    {
      g_set_error_literal (error, MPG_ERROR, MPG_ERROR_INVALID_STATE,
                           "join() needs a joinable queue");
      return FALSE;
    }

  if (!queue_use (self, error))
    return FALSE;

  for (;;)
    {
      gint v = g_atomic_int_get (&self->shm->unfinished);

      if (v <= 0)
        {
          ok = TRUE;
          break;
        }
      if (g_cancellable_set_error_if_cancelled (cancellable, error))
        break;
      if (deadline >= 0 && g_get_monotonic_time () >= deadline)
        {
          g_set_error_literal (error, MPG_ERROR, MPG_ERROR_TIMEOUT,
                               "Timed out waiting for the queue's tasks to be done");
          break;
        }
      futex_wait (&self->shm->unfinished, v, deadline);
    }

  queue_unuse (self);

  return ok;
}

/**
 * mpg_queue_join_thread:
 * @self: a closed queue
 * @timeout_msec: how long to wait at most, in milliseconds, or -1 for ever
 * @cancellable: (nullable): a #GCancellable
 * @error: return location for a #GError
 *
 * Waits until this process has sent every message it buffered for the
 * queue, as Python's `join_thread()`: an unbounded queue's
 * [method@Mpg.Queue.put] keeps a message that the socket has no room for
 * in memory, and a feeder thread sends it once another process makes
 * room. Only messages put by this process are waited for, and only after
 * [method@Mpg.Queue.close] (which lets the feeder go on flushing): close
 * first, or this fails with %MPG_ERROR_INVALID_STATE.
 *
 * A process does this for all its queues when it exits, unless
 * [method@Mpg.Queue.cancel_join_thread] was called; after that, this
 * returns at once. A bounded queue has no buffer: this returns at once.
 *
 * Fails with %MPG_ERROR_TIMEOUT when @timeout_msec expires and
 * %G_IO_ERROR_CANCELLED when @cancellable is cancelled (noticed within
 * 50 ms); the feeder goes on.
 *
 * Returns: %TRUE once nothing is left to send
 *
 * Since: 0.1
 */
gboolean
mpg_queue_join_thread (MpgQueue      *self,
                       gint           timeout_msec,
                       GCancellable  *cancellable,
                       GError       **error)
{
  gint64 deadline = deadline_for (TRUE, timeout_msec);
  gboolean ok = TRUE;

  g_return_val_if_fail (MPG_IS_QUEUE (self), FALSE);
  g_return_val_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  if (!queue_is_closed (self))
    {
      g_set_error_literal (error, MPG_ERROR, MPG_ERROR_INVALID_STATE,
                           "join_thread() needs a closed queue: call close() first");
      return FALSE;
    }

  g_mutex_lock (&feed_lock);
  while (self->feeder != NULL && self->feeder->running &&
         self->join_cancelled_by != getpid ())
    {
      gint64 now = g_get_monotonic_time ();
      gint64 until = now + WAIT_SLICE_USEC;

      if (g_cancellable_set_error_if_cancelled (cancellable, error))
        {
          ok = FALSE;
          break;
        }
      if (deadline >= 0 && now >= deadline)
        {
          g_set_error_literal (error, MPG_ERROR, MPG_ERROR_TIMEOUT,
                               "Timed out waiting for the queue's buffer to be sent");
          ok = FALSE;
          break;
        }
      if (deadline >= 0)
        until = MIN (until, deadline);
      g_cond_wait_until (&feed_cond, &feed_lock, until);
    }
  g_mutex_unlock (&feed_lock);

  return ok;
}

/**
 * mpg_queue_cancel_join_thread:
 * @self: a queue
 *
 * Makes this process not wait, when it exits, until it has sent the
 * messages it buffered for the queue, as Python's `cancel_join_thread()`:
 * those still in its buffer then are lost (and uncounted from
 * [method@Mpg.Queue.qsize] and the unfinished tasks). Use it when a
 * process must be able to exit although nobody may take its messages.
 *
 * [method@Mpg.Queue.join_thread] returns at once afterwards. It holds for
 * this process only: a child started afterwards waits for its own
 * buffer again.
 *
 * Since: 0.1
 */
void
mpg_queue_cancel_join_thread (MpgQueue *self)
{
  g_return_if_fail (MPG_IS_QUEUE (self));

  g_mutex_lock (&feed_lock);
  self->join_cancelled_by = getpid ();
  if (self->feeder != NULL)
    self->feeder->join_cancelled_by = self->join_cancelled_by;
  /* Wakes join_thread() and an exit that waits. */
  g_cond_broadcast (&feed_cond);
  g_mutex_unlock (&feed_lock);
}

/* Handles */

/**
 * mpg_queue_to_handle:
 * @self: a queue
 * @fd_list: the list to append the queue's file descriptors to
 * @error: return location for a #GError
 *
 * Describes the queue for another process, as pickling a queue does in
 * Python: appends (copies of) its three file descriptors to @fd_list and
 * returns a `(hhh)` value of their indexes in it. Send both, for example
 * with [method@Mpg.Queue.put_with_fds] or a D-Bus call, and rebuild the
 * queue on the other side with [ctor@Mpg.Queue.new_from_handle].
 *
 * With the fork start method this is not needed: a queue created before
 * a child is started is there in the child.
 *
 * Returns: (transfer full): a new `(hhh)` value (not floating), or %NULL
 *   with @error set
 *
 * Since: 0.1
 */
GVariant *
mpg_queue_to_handle (MpgQueue     *self,
                     GUnixFDList  *fd_list,
                     GError      **error)
{
  gint send_index, recv_index, shm_index;
  GVariant *handle = NULL;

  g_return_val_if_fail (MPG_IS_QUEUE (self), NULL);
  g_return_val_if_fail (G_IS_UNIX_FD_LIST (fd_list), NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if (!queue_use (self, error))
    return NULL;

  if ((send_index = g_unix_fd_list_append (fd_list, self->send_fd, error)) >= 0 &&
      (recv_index = g_unix_fd_list_append (fd_list, self->recv_fd, error)) >= 0 &&
      (shm_index = g_unix_fd_list_append (fd_list, self->shm_fd, error)) >= 0)
    handle = g_variant_ref_sink (g_variant_new ("(hhh)", send_index, recv_index, shm_index));

  queue_unuse (self);

  return handle;
}

static gboolean
invalid_handle (GError     **error,
                const char  *why)
{
  g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, "Invalid queue handle: %s", why);
  return FALSE;
}

static gboolean
check_socket (int          fd,
              const char  *what,
              GError     **error)
{
  int domain = -1;
  int type = -1;
  socklen_t len = sizeof domain;

  if (getsockopt (fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) < 0 ||
      (len = sizeof type, getsockopt (fd, SOL_SOCKET, SO_TYPE, &type, &len)) < 0 ||
      domain != AF_UNIX || type != SOCK_SEQPACKET)
    {
      g_autofree char *why = g_strdup_printf ("its %s fd is not a Unix sequenced-packet socket", what);

      return invalid_handle (error, why);
    }

  return TRUE;
}

static gboolean
check_shared_block (int      fd,
                    GError **error)
{
  struct stat st;
  int seals;

  if (fstat (fd, &st) < 0 || !S_ISREG (st.st_mode) || st.st_size != SHM_SIZE)
    return invalid_handle (error, "its shared memory is not a queue's");

  /* Unsealed, a holder could shrink it under our mapping. */
  seals = fcntl (fd, F_GET_SEALS);
  if (seals < 0 || (seals & SHM_SEALS) != SHM_SEALS)
    return invalid_handle (error, "its shared memory is not sealed");

  return TRUE;
}

/**
 * mpg_queue_new_from_handle:
 * @handle: a `(hhh)` value from [method@Mpg.Queue.to_handle]; a floating
 *   reference is sunk
 * @fd_list: the file descriptors that @handle indexes
 * @error: return location for a #GError
 *
 * Rebuilds a queue that another process (or this one) described with
 * [method@Mpg.Queue.to_handle]. The new object duplicates the file
 * descriptors it needs; @fd_list keeps its own. It is the same queue:
 * messages put on one side can be taken on the other.
 *
 * Fails with %G_IO_ERROR_INVALID_ARGUMENT if @handle or the file
 * descriptors do not describe a queue.
 *
 * Returns: (transfer full): the queue, or %NULL with @error set
 *
 * Since: 0.1
 */
MpgQueue *
mpg_queue_new_from_handle (GVariant     *handle,
                           GUnixFDList  *fd_list,
                           GError      **error)
{
  g_autoptr(GVariant) owned = NULL;
  g_autoptr(MpgQueue) self = NULL;
  gint32 indexes[3];
  int fds[3] = { -1, -1, -1 };
  SharedBlock *shm;

  g_return_val_if_fail (handle != NULL, NULL);
  g_return_val_if_fail (G_IS_UNIX_FD_LIST (fd_list), NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  owned = g_variant_ref_sink (handle);
  if (!g_variant_is_of_type (owned, G_VARIANT_TYPE ("(hhh)")))
    {
      invalid_handle (error, "it is not of type (hhh)");
      return NULL;
    }
  g_variant_get (owned, "(hhh)", &indexes[0], &indexes[1], &indexes[2]);

  for (guint i = 0; i < 3; i++)
    {
      if (indexes[i] < 0 || indexes[i] >= g_unix_fd_list_get_length (fd_list))
        {
          invalid_handle (error, "an index is out of the fd list's range");
          goto failed;
        }
      fds[i] = g_unix_fd_list_get (fd_list, indexes[i], error);
      if (fds[i] < 0)
        goto failed;
    }

  if (!check_socket (fds[0], "send", error) ||
      !check_socket (fds[1], "receive", error) ||
      !check_shared_block (fds[2], error))
    goto failed;

  self = g_object_new (MPG_TYPE_QUEUE, NULL);
  self->send_fd = g_steal_fd (&fds[0]);
  self->recv_fd = g_steal_fd (&fds[1]);
  self->shm_fd = g_steal_fd (&fds[2]);
  if (!map_shared_block (self, error))
    return NULL;

  shm = self->shm;
  if (shm->magic != SHM_MAGIC)
    {
      invalid_handle (error, "its shared memory is not a queue's");
      return NULL;
    }
  if (shm->version != SHM_VERSION)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                   "Invalid queue handle: version %u of the queue's shared memory is not supported",
                   shm->version);
      return NULL;
    }
  if (shm->maxsize > G_MAXINT || (shm->flags & ~FLAG_JOINABLE) != 0)
    {
      invalid_handle (error, "its shared memory holds invalid settings");
      return NULL;
    }

  /* Read once: another holder can write the block, but these settings
   * must stay what they were for this object. */
  self->maxsize = shm->maxsize;
  self->joinable = (shm->flags & FLAG_JOINABLE) != 0;

  return g_steal_pointer (&self);

failed:
  for (guint i = 0; i < 3; i++)
    clear_fd (&fds[i]);
  return NULL;
}

/* For mpg_wait(): the fd that becomes readable when a message may be there. */
int
_mpg_queue_get_receive_fd (MpgQueue *self)
{
  g_return_val_if_fail (MPG_IS_QUEUE (self), -1);

  return queue_is_closed (self) ? -1 : self->recv_fd;
}
