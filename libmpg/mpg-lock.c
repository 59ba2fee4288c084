/* mpg-lock.c
 *
 * Copyright 2026 The libmpg authors
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include "mpg-error.h"
#include "mpg-lock.h"
#include "mpg-sync-private.h"

/**
 * MpgLock:
 *
 * A lock shared by processes, as Python's `multiprocessing.Lock`; its
 * subclass [class@Mpg.RLock] is `multiprocessing.RLock`.
 *
 * A lock is held by one thread of one process at a time. Any thread of any
 * process may release it, as Python allows (it is not owned, except for
 * the purpose of [method@Mpg.Lock.is_mine]). A lock created before a
 * process is started is simply there in the child with the fork start
 * method; with spawn and forkserver, pass it with
 * [method@Mpg.Lock.to_handle] and rebuild it with
 * [ctor@Mpg.Lock.new_from_handle].
 *
 * ```c
 * static GVariant *
 * worker (GVariant *arg, gpointer user_data, GError **error)
 * {
 *   MpgArray *counter = user_data;
 *   MpgLock *lock = mpg_array_get_lock (counter);
 *   gint32 *value = mpg_array_get_data (counter);
 *
 *   for (guint i = 0; i < 10000; i++)
 *     {
 *       if (!mpg_lock_acquire (lock, -1, NULL, NULL, error))
 *         return NULL;
 *       *value += 1;
 *       if (!mpg_lock_release (lock, error))
 *         return NULL;
 *     }
 *   return NULL;
 * }
 * ```
 *
 * ## When a holder dies
 *
 * Python's lock is left locked forever when the process that holds it is
 * killed, and every process that waits for it hangs. Here, a waiter
 * notices that the holding process is gone (within about a second: it
 * looks every 20 ms at first, then less and less often) and takes the
 * lock over; [method@Mpg.Lock.acquire] then succeeds and sets its
 * @out_owner_died argument, so that the new holder knows that what the
 * lock protects may be half changed. A call that does not wait (a
 * @timeout_msec of 0) looks at once. The holder is a process, named by its
 * pid and its start time, so a new process given the same pid is not
 * mistaken for it. A thread that ends while its process lives is not a
 * death: the lock stays held, as in Python.
 *
 * ## How it maps to Python
 *
 * | Python `multiprocessing` | libmpg |
 * |---|---|
 * | `Lock()`, `RLock()` | [ctor@Mpg.Lock.new], [ctor@Mpg.RLock.new] |
 * | `acquire(block=True, timeout=None)` | [method@Mpg.Lock.acquire] with a @timeout_msec of -1 (`block=False`: 0); %MPG_ERROR_TIMEOUT where Python returns `False` |
 * | `release()` | [method@Mpg.Lock.release]; %MPG_ERROR_INVALID_STATE where Python raises `ValueError` (or `AssertionError` for an `RLock` not owned) |
 * | `with lock:` | acquire, then release |
 * | — | [method@Mpg.Lock.acquire_async], for a main loop |
 *
 * ## Under the hood
 *
 * A lock is a page of a sealed memfd that every process maps. The lock
 * itself is one word of it, the holder's pid, taken and given back with one
 * atomic operation (about 40 ns for an uncontended acquire and release);
 * waiters spin briefly, then sleep on a futex. Nothing is created in the
 * file system or in `/dev/shm`: the kernel frees the page when the last
 * process that has it is gone. Each lock costs one file descriptor in each
 * process that holds it.
 *
 * Since: 0.1
 */

/**
 * MpgRLock:
 *
 * A recursive lock shared by processes, as Python's
 * `multiprocessing.RLock`: the thread that holds it may acquire it again,
 * and must release it as many times. Only that thread may release it.
 * Everything else is as [class@Mpg.Lock], its parent class, including
 * what happens when the holding process dies.
 *
 * Since: 0.1
 */

/* The lock is its word: 0 when free, else the holder's pid, with
 * WAITERS set once a waiter sleeps (a release then wakes the sleepers).
 * Taking and giving it is one atomic operation, without the guard; the
 * other fields are the holder's, written after it took the word and
 * cleared before it gives it back, and only read by others to tell
 * whether the holder is alive (start) or is the calling thread (thread). */
#define WAITERS  0x80000000u
#define PID_MASK 0x7fffffffu

typedef struct
{
  guint32 word;
  guint32 count;    /* RLock: the recursion depth */
  guint64 start;    /* the holder's start time; 0 while unknown */
  guint64 thread;   /* the holder's thread */
} LockState;

G_STATIC_ASSERT (sizeof (LockState) <= MPG_SYNC_STATE_MAX);

typedef struct
{
  MpgSync *sync;
  GError  *init_error;
} MpgLockPrivate;

struct _MpgRLock
{
  MpgLock parent_instance;
};

static void mpg_lock_initable_iface_init (GInitableIface *iface);

G_DEFINE_TYPE_WITH_CODE (MpgLock, mpg_lock, G_TYPE_OBJECT,
                         G_ADD_PRIVATE (MpgLock)
                         G_IMPLEMENT_INTERFACE (G_TYPE_INITABLE, mpg_lock_initable_iface_init))

G_DEFINE_FINAL_TYPE (MpgRLock, mpg_rlock, MPG_TYPE_LOCK)

enum {
  PROP_0,
  PROP_RECURSIVE,
  N_PROPS
};

static GParamSpec *properties[N_PROPS];

/* new_from_handle() hands its state to constructed() through this. */
static GPrivate adopt_sync;

static void
mpg_lock_constructed (GObject *object)
{
  MpgLock *self = MPG_LOCK (object);
  MpgLockPrivate *priv = mpg_lock_get_instance_private (self);

  G_OBJECT_CLASS (mpg_lock_parent_class)->constructed (object);

  priv->sync = g_private_get (&adopt_sync);
  if (priv->sync != NULL)
    g_private_set (&adopt_sync, NULL);
  else
    priv->sync = _mpg_sync_new (MPG_IS_RLOCK (self) ? MPG_SYNC_RLOCK : MPG_SYNC_LOCK,
                                &priv->init_error);
}

static gboolean
mpg_lock_initable_init (GInitable     *initable,
                        GCancellable  *cancellable,
                        GError       **error)
{
  MpgLockPrivate *priv = mpg_lock_get_instance_private (MPG_LOCK (initable));

  if (priv->init_error != NULL)
    {
      g_propagate_error (error, g_error_copy (priv->init_error));
      return FALSE;
    }
  return TRUE;
}

static void
mpg_lock_initable_iface_init (GInitableIface *iface)
{
  iface->init = mpg_lock_initable_init;
}

static void
mpg_lock_finalize (GObject *object)
{
  MpgLockPrivate *priv = mpg_lock_get_instance_private (MPG_LOCK (object));

  g_clear_pointer (&priv->sync, _mpg_sync_free);
  g_clear_error (&priv->init_error);

  G_OBJECT_CLASS (mpg_lock_parent_class)->finalize (object);
}

static void
mpg_lock_get_property (GObject    *object,
                       guint       prop_id,
                       GValue     *value,
                       GParamSpec *pspec)
{
  MpgLock *self = MPG_LOCK (object);

  switch (prop_id)
    {
    case PROP_RECURSIVE:
      g_value_set_boolean (value, mpg_lock_get_recursive (self));
      break;

    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
mpg_lock_class_init (MpgLockClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->constructed = mpg_lock_constructed;
  object_class->finalize = mpg_lock_finalize;
  object_class->get_property = mpg_lock_get_property;

  /**
   * MpgLock:recursive:
   *
   * Whether the lock is an [class@Mpg.RLock].
   *
   * Since: 0.1
   */
  properties[PROP_RECURSIVE] =
    g_param_spec_boolean ("recursive", NULL, NULL,
                          FALSE,
                          (G_PARAM_READABLE | G_PARAM_STATIC_STRINGS));

  g_object_class_install_properties (object_class, N_PROPS, properties);
}

static void
mpg_lock_init (MpgLock *self)
{
}

static void
mpg_rlock_class_init (MpgRLockClass *klass)
{
}

static void
mpg_rlock_init (MpgRLock *self)
{
}

static gboolean
check_ready (MpgLock  *self,
             GError  **error)
{
  MpgLockPrivate *priv = mpg_lock_get_instance_private (self);

  if (priv->sync == NULL)
    {
      g_propagate_error (error, g_error_copy (priv->init_error));
      return FALSE;
    }
  return TRUE;
}

/**
 * mpg_lock_new:
 * @error: return location for a #GError
 *
 * Creates a lock, unlocked, as Python's `multiprocessing.Lock()`.
 *
 * Returns: (transfer full): the lock, or %NULL with @error set if its
 *   shared memory could not be created (too many open files)
 *
 * Since: 0.1
 */
MpgLock *
mpg_lock_new (GError **error)
{
  return g_initable_new (MPG_TYPE_LOCK, NULL, error, NULL);
}

/**
 * mpg_rlock_new:
 * @error: return location for a #GError
 *
 * Creates a recursive lock, unlocked, as Python's
 * `multiprocessing.RLock()`.
 *
 * Returns: (transfer full): the lock, or %NULL with @error set if its
 *   shared memory could not be created (too many open files)
 *
 * Since: 0.1
 */
MpgRLock *
mpg_rlock_new (GError **error)
{
  return g_initable_new (MPG_TYPE_RLOCK, NULL, error, NULL);
}

/**
 * mpg_lock_get_recursive:
 * @self: a lock
 *
 * Gets whether @self is an [class@Mpg.RLock].
 *
 * Returns: %TRUE for a recursive lock
 *
 * Since: 0.1
 */
gboolean
mpg_lock_get_recursive (MpgLock *self)
{
  g_return_val_if_fail (MPG_IS_LOCK (self), FALSE);

  return MPG_IS_RLOCK (self);
}

MpgSync *
_mpg_lock_get_sync (MpgLock *lock)
{
  MpgLockPrivate *priv = mpg_lock_get_instance_private (lock);

  return priv->sync;
}

static gboolean
held_by (LockState          *state,
         const MpgSyncOwner *owner)
{
  guint32 word = __atomic_load_n (&state->word, __ATOMIC_SEQ_CST);

  /* Only the holder writes thread, and clears it before it releases. */
  return word != 0 && (word & PID_MASK) == (guint32) owner->pid &&
         __atomic_load_n (&state->thread, __ATOMIC_RELAXED) == owner->thread &&
         __atomic_load_n (&state->start, __ATOMIC_RELAXED) == owner->start;
}

static gboolean
holder_alive (LockState *state,
              guint32    word)
{
  MpgSyncOwner holder = { 0 };

  holder.pid = word & PID_MASK;
  /* 0 when the holder has not written it yet: only its pid is checked. */
  holder.start = __atomic_load_n (&state->start, __ATOMIC_RELAXED);
  return _mpg_sync_owner_alive (&holder);
}

gboolean
_mpg_lock_acquire_as (MpgLock            *self,
                      const MpgSyncOwner *owner,
                      guint               count,
                      gint                timeout_msec,
                      gboolean           *out_owner_died,
                      GCancellable       *cancellable,
                      GError            **error)
{
  MpgLockPrivate *priv = mpg_lock_get_instance_private (self);
  MpgSync *sync = priv->sync;
  LockState *state = sync->state;
  gboolean recursive = MPG_IS_RLOCK (self);
  guint32 me = (guint32) owner->pid & PID_MASK;
  guint32 flag = 0;
  gboolean died = FALSE, waiting = FALSE;
  MpgSyncWait w;

  if (out_owner_died != NULL)
    *out_owner_died = FALSE;

  for (;;)
    {
      guint32 c = __atomic_load_n (&state->word, __ATOMIC_SEQ_CST);
      guint32 seq;

      if (c == 0)
        {
          /* After a sleep, WAITERS stays set: others may sleep too. */
          if (__atomic_compare_exchange_n (&state->word, &c, me | flag, FALSE,
                                           __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
            break;
          continue;
        }

      if (recursive && held_by (state, owner))
        {
          state->count += count;
          goto out;
        }

      /* Without waiting, or at a check time: is the holder gone? */
      if ((timeout_msec == 0 || (waiting && w.check_due)) && !holder_alive (state, c))
        {
          if (__atomic_compare_exchange_n (&state->word, &c, me | WAITERS, FALSE,
                                           __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
            {
              g_debug ("A %s's holder, process %u, died holding it",
                       _mpg_sync_kind_name (sync->kind), c & PID_MASK);
              died = TRUE;
              break;
            }
          continue;
        }

      if (timeout_msec == 0)
        {
          g_set_error_literal (error, MPG_ERROR, MPG_ERROR_TIMEOUT, "The lock is held");
          return FALSE;
        }

      if (!waiting)
        {
          _mpg_sync_wait_init (&w, sync, timeout_msec, cancellable);
          waiting = TRUE;
        }

      /* Say that someone sleeps, then sleep unless the word moved since:
       * a release that clears the word after we read seq bumps it. */
      if (!(c & WAITERS) &&
          !__atomic_compare_exchange_n (&state->word, &c, c | WAITERS, FALSE,
                                        __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
        continue;
      seq = _mpg_sync_seq (sync);
      if (__atomic_load_n (&state->word, __ATOMIC_SEQ_CST) != (c | WAITERS))
        continue;
      flag = WAITERS;

      if (!_mpg_sync_sleep (&w, seq, error))
        {
          _mpg_sync_wait_clear (&w);
          return FALSE;
        }
    }

  __atomic_store_n (&state->start, owner->start, __ATOMIC_RELAXED);
  __atomic_store_n (&state->thread, owner->thread, __ATOMIC_RELAXED);
  state->count = count;

out:
  if (waiting)
    _mpg_sync_wait_clear (&w);
  if (out_owner_died != NULL)
    *out_owner_died = died;
  return TRUE;
}

/**
 * mpg_lock_acquire:
 * @self: a lock
 * @timeout_msec: how long to wait, in milliseconds: -1 for as long as it
 *   takes, 0 not to wait
 * @out_owner_died: (out) (optional): set to %TRUE when the process that
 *   held the lock died holding it and this call took it over
 * @cancellable: (nullable): a #GCancellable
 * @error: return location for a #GError
 *
 * Acquires the lock, waiting for it if another thread or process holds
 * it, as Python's `acquire(block, timeout)`. An [class@Mpg.RLock] held by
 * the calling thread is acquired again at once.
 *
 * When the holding process has died, the lock is taken over and
 * @out_owner_died is set: the data it protects may be half changed, and
 * the caller decides what to do about it (see the class description).
 *
 * Returns: %TRUE if the lock was acquired; %FALSE with %MPG_ERROR_TIMEOUT
 *   if @timeout_msec passed first (Python returns `False`), or
 *   %G_IO_ERROR_CANCELLED
 *
 * Since: 0.1
 */
gboolean
mpg_lock_acquire (MpgLock       *self,
                  gint           timeout_msec,
                  gboolean      *out_owner_died,
                  GCancellable  *cancellable,
                  GError       **error)
{
  MpgSyncOwner me;

  g_return_val_if_fail (MPG_IS_LOCK (self), FALSE);
  g_return_val_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  if (out_owner_died != NULL)
    *out_owner_died = FALSE;
  if (!check_ready (self, error))
    return FALSE;

  _mpg_sync_self (&me);
  return _mpg_lock_acquire_as (self, &me, 1, timeout_msec, out_owner_died, cancellable, error);
}

static gssize
acquire_thread (gpointer      source,
                gpointer      data,
                GCancellable *cancellable,
                GError      **error)
{
  gboolean died = FALSE;

  /* On behalf of the thread that called acquire_async(): it holds the
   * lock afterwards, and it is the one that releases an RLock. */
  if (!_mpg_lock_acquire_as (source, data, 1, -1, &died, cancellable, error))
    return -1;
  return died ? 1 : 0;
}

/**
 * mpg_lock_acquire_async:
 * @self: a lock
 * @cancellable: (nullable): a #GCancellable
 * @callback: (scope async): called when the lock is acquired, or the call
 *   failed
 * @user_data: data for @callback
 *
 * Acquires the lock without blocking the caller: @callback is called in
 * the thread-default main context of the caller once the lock is held, on
 * behalf of the calling thread (for an [class@Mpg.RLock], that thread is
 * the owner). Call [method@Mpg.Lock.acquire_finish] there.
 *
 * The wait happens in a thread of its own. Cancelling @cancellable fails
 * the call with %G_IO_ERROR_CANCELLED, without the lock.
 *
 * Since: 0.1
 */
void
mpg_lock_acquire_async (MpgLock             *self,
                        GCancellable        *cancellable,
                        GAsyncReadyCallback  callback,
                        gpointer             user_data)
{
  MpgSyncOwner *me;

  g_return_if_fail (MPG_IS_LOCK (self));
  g_return_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable));

  if (!check_ready (self, NULL))
    {
      MpgLockPrivate *priv = mpg_lock_get_instance_private (self);

      g_task_report_error (self, callback, user_data, mpg_lock_acquire_async,
                           g_error_copy (priv->init_error));
      return;
    }

  me = g_new (MpgSyncOwner, 1);
  _mpg_sync_self (me);
  _mpg_sync_run_async (self, mpg_lock_acquire_async, "[mpg] acquire a lock",
                       acquire_thread, me, g_free, cancellable, callback, user_data);
}

/**
 * mpg_lock_acquire_finish:
 * @self: a lock
 * @result: the result passed to the callback
 * @out_owner_died: (out) (optional): set to %TRUE when the process that
 *   held the lock died holding it and this call took it over
 * @error: return location for a #GError
 *
 * Completes [method@Mpg.Lock.acquire_async].
 *
 * Returns: %TRUE if the lock is now held by the thread that called
 *   [method@Mpg.Lock.acquire_async]; %FALSE with @error set
 *
 * Since: 0.1
 */
gboolean
mpg_lock_acquire_finish (MpgLock       *self,
                         GAsyncResult  *result,
                         gboolean      *out_owner_died,
                         GError       **error)
{
  gssize value;

  g_return_val_if_fail (MPG_IS_LOCK (self), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  if (out_owner_died != NULL)
    *out_owner_died = FALSE;

  value = _mpg_sync_run_finish (self, result, mpg_lock_acquire_async, error);
  if (value < 0)
    return FALSE;
  if (out_owner_died != NULL)
    *out_owner_died = (value == 1);
  return TRUE;
}

/**
 * mpg_lock_release:
 * @self: a lock
 * @error: return location for a #GError
 *
 * Releases the lock, as Python's `release()`. Any thread of any process
 * may release a [class@Mpg.Lock]; an [class@Mpg.RLock] only by the thread
 * that holds it, once for each time it acquired it.
 *
 * Returns: %TRUE on success; %FALSE with %MPG_ERROR_INVALID_STATE if the
 *   lock is not held (Python's `ValueError`), or if an [class@Mpg.RLock]
 *   is not held by the calling thread (Python's `AssertionError`)
 *
 * Since: 0.1
 */
/* Gives the word back, waking the sleepers if any. */
static void
release_word (MpgSync   *sync,
              LockState *state)
{
  guint32 old;

  __atomic_store_n (&state->thread, 0, __ATOMIC_RELAXED);
  __atomic_store_n (&state->start, 0, __ATOMIC_RELAXED);
  state->count = 0;
  old = __atomic_exchange_n (&state->word, 0, __ATOMIC_SEQ_CST);
  if (old & WAITERS)
    _mpg_sync_bump (sync);
}

gboolean
mpg_lock_release (MpgLock  *self,
                  GError  **error)
{
  MpgLockPrivate *priv = mpg_lock_get_instance_private (self);
  MpgSyncOwner me;
  LockState *state;

  g_return_val_if_fail (MPG_IS_LOCK (self), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  if (!check_ready (self, error))
    return FALSE;

  state = priv->sync->state;

  if (MPG_IS_RLOCK (self))
    {
      _mpg_sync_self (&me);
      if (!held_by (state, &me))
        {
          g_set_error_literal (error, MPG_ERROR, MPG_ERROR_INVALID_STATE,
                               "Attempt to release a recursive lock not owned by the thread");
          return FALSE;
        }
      if (--state->count > 0)
        return TRUE;
    }
  else if (__atomic_load_n (&state->word, __ATOMIC_SEQ_CST) == 0)
    {
      g_set_error_literal (error, MPG_ERROR, MPG_ERROR_INVALID_STATE,
                           "The lock is released too many times");
      return FALSE;
    }

  release_word (priv->sync, state);
  return TRUE;
}

gboolean
_mpg_lock_release_all (MpgLock  *self,
                       guint    *out_count,
                       GError  **error)
{
  MpgLockPrivate *priv = mpg_lock_get_instance_private (self);
  LockState *state = priv->sync->state;
  MpgSyncOwner me;

  _mpg_sync_self (&me);
  if (!held_by (state, &me))
    {
      g_set_error_literal (error, MPG_ERROR, MPG_ERROR_INVALID_STATE,
                           "The lock is not held by the calling thread");
      return FALSE;
    }

  *out_count = MPG_IS_RLOCK (self) ? state->count : 1;
  release_word (priv->sync, state);
  return TRUE;
}

/**
 * mpg_lock_is_mine:
 * @self: a lock
 *
 * Gets whether the calling thread holds the lock: the thread that
 * acquired it last, if it has not been released since.
 *
 * Returns: %TRUE if the calling thread holds @self
 *
 * Since: 0.1
 */
gboolean
mpg_lock_is_mine (MpgLock *self)
{
  MpgLockPrivate *priv = mpg_lock_get_instance_private (self);
  MpgSyncOwner me;
  gboolean mine;

  g_return_val_if_fail (MPG_IS_LOCK (self), FALSE);

  if (priv->sync == NULL)
    return FALSE;

  _mpg_sync_self (&me);
  mine = held_by (priv->sync->state, &me);
  return mine;
}

/**
 * mpg_lock_get_count:
 * @self: a lock
 *
 * Gets how many times the lock is held: 0 or 1 for a [class@Mpg.Lock],
 * the recursion depth for an [class@Mpg.RLock], whoever holds it.
 *
 * Returns: the count
 *
 * Since: 0.1
 */
guint
mpg_lock_get_count (MpgLock *self)
{
  MpgLockPrivate *priv = mpg_lock_get_instance_private (self);
  LockState *state;
  guint count;

  g_return_val_if_fail (MPG_IS_LOCK (self), 0);

  if (priv->sync == NULL)
    return 0;

  state = priv->sync->state;
  if (__atomic_load_n (&state->word, __ATOMIC_SEQ_CST) == 0)
    return 0;
  count = MPG_IS_RLOCK (self) ? state->count : 1;
  return count;
}

/**
 * mpg_lock_to_handle:
 * @self: a lock
 * @fd_list: the list to which the lock's file descriptor is added (a copy
 *   of it)
 * @error: return location for a #GError
 *
 * Describes the lock so that another process can use it, as pickling a
 * lock for a child does in Python: pass the handle and @fd_list to the
 * other process (as the arguments of an [class@Mpg.Process], or over a
 * [class@Mpg.Connection] or [class@Mpg.Queue] with their `_with_fds`
 * calls), where [ctor@Mpg.Lock.new_from_handle] rebuilds it.
 *
 * Returns: (transfer full): the handle (not floating), or %NULL with @error set if
 *   the file descriptor could not be added
 *
 * Since: 0.1
 */
GVariant *
mpg_lock_to_handle (MpgLock      *self,
                    GUnixFDList  *fd_list,
                    GError      **error)
{
  MpgLockPrivate *priv = mpg_lock_get_instance_private (self);

  g_return_val_if_fail (MPG_IS_LOCK (self), NULL);
  g_return_val_if_fail (G_IS_UNIX_FD_LIST (fd_list), NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if (!check_ready (self, error))
    return NULL;

  return _mpg_sync_to_handle (priv->sync, fd_list, error);
}

/**
 * mpg_lock_new_from_handle:
 * @handle: a value from [method@Mpg.Lock.to_handle]; a floating reference
 *   is sunk
 * @fd_list: (nullable): the file descriptors that @handle indexes
 * @error: return location for a #GError
 *
 * Rebuilds a lock that another process (or this one) described with
 * [method@Mpg.Lock.to_handle]: the same lock, an [class@Mpg.RLock] if it
 * was one. The new object duplicates the file descriptor it needs;
 * @fd_list keeps its own.
 *
 * Returns: (transfer full): the lock, or %NULL with
 *   %G_IO_ERROR_INVALID_ARGUMENT if @handle does not describe a lock
 *
 * Since: 0.1
 */
MpgLock *
mpg_lock_new_from_handle (GVariant     *handle,
                          GUnixFDList  *fd_list,
                          GError      **error)
{
  MpgSync *sync;

  g_return_val_if_fail (handle != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  sync = _mpg_sync_new_from_handle (handle, fd_list, error);
  if (sync == NULL)
    return NULL;

  if (sync->kind != MPG_SYNC_LOCK && sync->kind != MPG_SYNC_RLOCK)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                   "Not a lock's handle but a %s's", _mpg_sync_kind_name (sync->kind));
      _mpg_sync_free (sync);
      return NULL;
    }

  g_private_set (&adopt_sync, sync);
  return g_object_new (sync->kind == MPG_SYNC_RLOCK ? MPG_TYPE_RLOCK : MPG_TYPE_LOCK, NULL);
}
