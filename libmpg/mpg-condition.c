/* mpg-condition.c
 *
 * Copyright 2026 The libmpg authors
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include "mpg-condition.h"
#include "mpg-error.h"
#include "mpg-sync-private.h"

/**
 * MpgCondition:
 *
 * A condition variable shared by processes, as Python's
 * `multiprocessing.Condition`.
 *
 * A condition is used with its lock (an [class@Mpg.RLock] unless another
 * lock was given): a process that holds the lock waits with
 * [method@Mpg.Condition.wait], which releases the lock while it sleeps and
 * takes it back before returning; a process that changed the shared state
 * under the lock wakes waiters with [method@Mpg.Condition.notify] or
 * [method@Mpg.Condition.notify_all].
 *
 * ```c
 * // consumer
 * mpg_lock_acquire (lock, -1, NULL, NULL, &error);
 * while (!*ready)
 *   mpg_condition_wait (cond, -1, NULL, &error);
 * mpg_lock_release (lock, &error);
 *
 * // producer
 * mpg_lock_acquire (lock, -1, NULL, NULL, &error);
 * *ready = TRUE;
 * mpg_condition_notify_all (cond, &error);
 * mpg_lock_release (lock, &error);
 * ```
 *
 * Waiters are woken in the order they started waiting. A notification
 * meant for a process that died while waiting goes to the next waiter.
 * At most 100 threads (of all processes) wait on one condition at once;
 * more fail with %MPG_ERROR_FAILED.
 *
 * ## How it maps to Python
 *
 * | Python `multiprocessing` | libmpg |
 * |---|---|
 * | `Condition(lock=None)` | [ctor@Mpg.Condition.new] |
 * | `acquire()`, `release()`, `with cond:` | on [method@Mpg.Condition.get_lock] |
 * | `wait(timeout=None)` | [method@Mpg.Condition.wait]; %MPG_ERROR_TIMEOUT where Python returns `False` |
 * | `wait_for(predicate, timeout=None)` | [method@Mpg.Condition.wait_for] |
 * | `notify(n=1)`, `notify_all()` | [method@Mpg.Condition.notify], [method@Mpg.Condition.notify_all] |
 *
 * Calling these without holding the lock fails with
 * %MPG_ERROR_INVALID_STATE, where Python raises `AssertionError`.
 *
 * Since: 0.1
 */

#define MAX_WAITERS 100

typedef struct
{
  MpgSyncOwner owner;    /* pid 0: a free slot */
  guint32      ticket;
  guint32      notified;
} Slot;

typedef struct
{
  guint32 next_ticket;
  guint32 padding;
  Slot    slots[MAX_WAITERS];
} CondState;

G_STATIC_ASSERT (sizeof (CondState) <= MPG_SYNC_STATE_MAX);

struct _MpgCondition
{
  GObject parent_instance;

  MpgSync *sync;
  MpgLock *lock;
};

G_DEFINE_FINAL_TYPE (MpgCondition, mpg_condition, G_TYPE_OBJECT)

enum {
  PROP_0,
  PROP_LOCK,
  N_PROPS
};

static GParamSpec *properties[N_PROPS];

static void
mpg_condition_dispose (GObject *object)
{
  MpgCondition *self = MPG_CONDITION (object);

  g_clear_object (&self->lock);

  G_OBJECT_CLASS (mpg_condition_parent_class)->dispose (object);
}

static void
mpg_condition_finalize (GObject *object)
{
  MpgCondition *self = MPG_CONDITION (object);

  g_clear_pointer (&self->sync, _mpg_sync_free);

  G_OBJECT_CLASS (mpg_condition_parent_class)->finalize (object);
}

static void
mpg_condition_get_property (GObject    *object,
                            guint       prop_id,
                            GValue     *value,
                            GParamSpec *pspec)
{
  MpgCondition *self = MPG_CONDITION (object);

  switch (prop_id)
    {
    case PROP_LOCK:
      g_value_set_object (value, self->lock);
      break;

    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
mpg_condition_class_init (MpgConditionClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->dispose = mpg_condition_dispose;
  object_class->finalize = mpg_condition_finalize;
  object_class->get_property = mpg_condition_get_property;

  /**
   * MpgCondition:lock:
   *
   * The lock that waiters hold.
   *
   * Since: 0.1
   */
  properties[PROP_LOCK] =
    g_param_spec_object ("lock", NULL, NULL,
                         MPG_TYPE_LOCK,
                         (G_PARAM_READABLE | G_PARAM_STATIC_STRINGS));

  g_object_class_install_properties (object_class, N_PROPS, properties);
}

static void
mpg_condition_init (MpgCondition *self)
{
}

/**
 * mpg_condition_new:
 * @lock: (nullable): the lock, a [class@Mpg.Lock] or an [class@Mpg.RLock];
 *   %NULL for a new [class@Mpg.RLock]
 * @error: return location for a #GError
 *
 * Creates a condition, as Python's `multiprocessing.Condition(lock)`.
 *
 * Returns: (transfer full): the condition, or %NULL with @error set if its
 *   shared memory could not be created (too many open files)
 *
 * Since: 0.1
 */
MpgCondition *
mpg_condition_new (MpgLock  *lock,
                   GError  **error)
{
  g_autoptr(MpgCondition) self = NULL;

  g_return_val_if_fail (lock == NULL || MPG_IS_LOCK (lock), NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  self = g_object_new (MPG_TYPE_CONDITION, NULL);
  if (lock != NULL)
    self->lock = g_object_ref (lock);
  else
    {
      self->lock = (MpgLock *) mpg_rlock_new (error);
      if (self->lock == NULL)
        return NULL;
    }

  self->sync = _mpg_sync_new (MPG_SYNC_CONDITION, error);
  if (self->sync == NULL)
    return NULL;

  return g_steal_pointer (&self);
}

/**
 * mpg_condition_get_lock:
 * @self: a condition
 *
 * Gets the lock of the condition.
 *
 * Returns: (transfer none): the lock
 *
 * Since: 0.1
 */
MpgLock *
mpg_condition_get_lock (MpgCondition *self)
{
  g_return_val_if_fail (MPG_IS_CONDITION (self), NULL);

  return self->lock;
}

static gboolean
check_ready (MpgCondition  *self,
             GError       **error)
{
  if (self->sync == NULL || self->lock == NULL || _mpg_lock_get_sync (self->lock) == NULL)
    {
      g_set_error_literal (error, MPG_ERROR, MPG_ERROR_INVALID_STATE,
                           "The condition was not made with mpg_condition_new()");
      return FALSE;
    }
  return TRUE;
}

static gboolean
check_held (MpgCondition  *self,
            const char    *what,
            GError       **error)
{
  if (!check_ready (self, error))
    return FALSE;
  if (!mpg_lock_is_mine (self->lock))
    {
      g_set_error (error, MPG_ERROR, MPG_ERROR_INVALID_STATE,
                   "The condition's lock must be acquired before %s", what);
      return FALSE;
    }
  return TRUE;
}

/* A waiter: a slot in the shared page, then the lock, released whole. */
typedef struct
{
  MpgCondition *self;
  MpgSyncOwner  me;
  guint         slot;
  guint         count;
} Waiter;

static gboolean
register_waiter (MpgCondition  *self,
                 Waiter        *waiter,
                 GError       **error)
{
  CondState *state = self->sync->state;
  gboolean found = FALSE;

  _mpg_sync_self (&waiter->me);
  waiter->self = self;

  _mpg_sync_lock (self->sync);
  for (guint pass = 0; pass < 2 && !found; pass++)
    {
      for (guint i = 0; i < MAX_WAITERS; i++)
        {
          Slot *s = &state->slots[i];

          /* Second pass: slots of waiters whose process died. */
          if (s->owner.pid == 0 || (pass == 1 && !_mpg_sync_owner_alive (&s->owner)))
            {
              s->owner = waiter->me;
              s->ticket = state->next_ticket++;
              s->notified = FALSE;
              waiter->slot = i;
              found = TRUE;
              break;
            }
        }
    }
  _mpg_sync_unlock (self->sync);

  if (!found)
    {
      g_set_error (error, MPG_ERROR, MPG_ERROR_FAILED,
                   "More than %d threads wait on a condition", MAX_WAITERS);
      return FALSE;
    }

  /* Registered before the lock is released, so that a notify made as soon
   * as it is free finds this waiter. */
  if (!_mpg_lock_release_all (self->lock, &waiter->count, error))
    {
      _mpg_sync_lock (self->sync);
      memset (&state->slots[waiter->slot], 0, sizeof (Slot));
      _mpg_sync_unlock (self->sync);
      return FALSE;
    }

  return TRUE;
}

/* Sleeps until notified, then takes the lock back (whatever happened) as
 * the waiting thread. */
static gboolean
finish_waiter (Waiter        *waiter,
               gint           timeout_msec,
               GCancellable  *cancellable,
               GError       **error)
{
  MpgCondition *self = waiter->self;
  CondState *state = self->sync->state;
  Slot *slot = &state->slots[waiter->slot];
  g_autoptr(GError) local_error = NULL;
  gboolean notified = FALSE;
  MpgSyncWait w;

  _mpg_sync_wait_init (&w, self->sync, timeout_msec, cancellable);
  _mpg_sync_lock (self->sync);

  for (;;)
    {
      /* The slot is ours until we free it, unless a peer that saw us dead
       * took it: then there is nothing to wait for. */
      if (!_mpg_sync_same_process (&slot->owner, &waiter->me) || slot->owner.thread != waiter->me.thread)
        break;
      if (slot->notified)
        {
          notified = TRUE;
          break;
        }
      if (timeout_msec == 0)
        {
          g_set_error_literal (&local_error, MPG_ERROR, MPG_ERROR_TIMEOUT, "Timed out");
          break;
        }
      if (!_mpg_sync_wait (&w, &local_error))
        break;
    }

  if (_mpg_sync_same_process (&slot->owner, &waiter->me) && slot->owner.thread == waiter->me.thread)
    memset (slot, 0, sizeof *slot);

  _mpg_sync_unlock (self->sync);
  _mpg_sync_wait_clear (&w);

  /* As Python, the lock is taken back even after a timeout or a
   * cancellation: the caller holds it again in every case. */
  if (!_mpg_lock_acquire_as (self->lock, &waiter->me, waiter->count, -1, NULL, NULL,
                             notified ? error : NULL))
    return FALSE;

  if (!notified)
    {
      if (local_error == NULL)
        g_set_error_literal (&local_error, MPG_ERROR, MPG_ERROR_TIMEOUT, "Timed out");
      g_propagate_error (error, g_steal_pointer (&local_error));
    }
  return notified;
}

/**
 * mpg_condition_wait:
 * @self: a condition
 * @timeout_msec: how long to wait, in milliseconds: -1 for as long as it
 *   takes
 * @cancellable: (nullable): a #GCancellable
 * @error: return location for a #GError
 *
 * Releases the lock, which the calling thread must hold (all the way, for
 * an [class@Mpg.RLock] held several times), waits until notified, and
 * takes the lock back, as Python's `wait(timeout)`. The lock is held again
 * when this returns, whatever the result.
 *
 * Returns: %TRUE if notified; %FALSE with %MPG_ERROR_TIMEOUT if
 *   @timeout_msec passed first (Python returns `False`),
 *   %G_IO_ERROR_CANCELLED, or %MPG_ERROR_INVALID_STATE if the calling
 *   thread does not hold the lock
 *
 * Since: 0.1
 */
gboolean
mpg_condition_wait (MpgCondition  *self,
                    gint           timeout_msec,
                    GCancellable  *cancellable,
                    GError       **error)
{
  Waiter waiter;

  g_return_val_if_fail (MPG_IS_CONDITION (self), FALSE);
  g_return_val_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  if (!check_held (self, "wait()", error))
    return FALSE;
  if (!register_waiter (self, &waiter, error))
    return FALSE;

  return finish_waiter (&waiter, timeout_msec, cancellable, error);
}

/**
 * mpg_condition_wait_for:
 * @self: a condition
 * @predicate: (scope call): the awaited state, evaluated with the lock held
 * @user_data: data for @predicate
 * @timeout_msec: how long to wait in all, in milliseconds: -1 for as long
 *   as it takes
 * @cancellable: (nullable): a #GCancellable
 * @error: return location for a #GError
 *
 * Waits until @predicate returns %TRUE, as Python's
 * `wait_for(predicate, timeout)`: @predicate is evaluated first, then
 * after each notification.
 *
 * Returns: %TRUE once @predicate returned %TRUE; %FALSE with
 *   %MPG_ERROR_TIMEOUT if @timeout_msec passed first (Python returns the
 *   predicate's last result), or another error as
 *   [method@Mpg.Condition.wait]
 *
 * Since: 0.1
 */
gboolean
mpg_condition_wait_for (MpgCondition           *self,
                        MpgConditionPredicate   predicate,
                        gpointer                user_data,
                        gint                    timeout_msec,
                        GCancellable           *cancellable,
                        GError                **error)
{
  gint64 deadline = -1;

  g_return_val_if_fail (MPG_IS_CONDITION (self), FALSE);
  g_return_val_if_fail (predicate != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  if (!check_held (self, "wait_for()", error))
    return FALSE;

  if (timeout_msec >= 0)
    deadline = g_get_monotonic_time () + (gint64) timeout_msec * G_TIME_SPAN_MILLISECOND;

  while (!predicate (user_data))
    {
      gint left = -1;

      if (deadline >= 0)
        {
          gint64 remaining = deadline - g_get_monotonic_time ();

          if (remaining <= 0)
            {
              g_set_error_literal (error, MPG_ERROR, MPG_ERROR_TIMEOUT, "Timed out");
              return FALSE;
            }
          left = (gint) MIN ((remaining + 999) / 1000, G_MAXINT);
        }

      if (!mpg_condition_wait (self, left, cancellable, error))
        return FALSE;
    }

  return TRUE;
}

static gssize
wait_thread (gpointer      source,
             gpointer      data,
             GCancellable *cancellable,
             GError      **error)
{
  return finish_waiter (data, -1, cancellable, error) ? 1 : -1;
}

/**
 * mpg_condition_wait_async:
 * @self: a condition
 * @cancellable: (nullable): a #GCancellable
 * @callback: (scope async): called when notified and the lock is held
 *   again, or the call failed
 * @user_data: data for @callback
 *
 * Waits until notified without blocking the caller. The lock, which the
 * calling thread must hold, is released at once; it is taken back on
 * behalf of the calling thread before @callback is called in the
 * thread-default main context of the caller. Call
 * [method@Mpg.Condition.wait_finish] there.
 *
 * The wait happens in a thread of its own. Cancelling @cancellable fails
 * the call with %G_IO_ERROR_CANCELLED, once the lock is held again.
 *
 * Since: 0.1
 */
void
mpg_condition_wait_async (MpgCondition        *self,
                          GCancellable        *cancellable,
                          GAsyncReadyCallback  callback,
                          gpointer             user_data)
{
  g_autoptr(GError) error = NULL;
  Waiter *waiter;

  g_return_if_fail (MPG_IS_CONDITION (self));
  g_return_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable));

  waiter = g_new0 (Waiter, 1);
  if (!check_held (self, "wait_async()", &error) ||
      !register_waiter (self, waiter, &error))
    {
      g_free (waiter);
      g_task_report_error (self, callback, user_data, mpg_condition_wait_async,
                           g_steal_pointer (&error));
      return;
    }

  _mpg_sync_run_async (self, mpg_condition_wait_async, "[mpg] wait on a condition",
                       wait_thread, waiter, g_free, cancellable, callback, user_data);
}

/**
 * mpg_condition_wait_finish:
 * @self: a condition
 * @result: the result passed to the callback
 * @error: return location for a #GError
 *
 * Completes [method@Mpg.Condition.wait_async].
 *
 * Returns: %TRUE if notified; %FALSE with @error set
 *
 * Since: 0.1
 */
gboolean
mpg_condition_wait_finish (MpgCondition  *self,
                           GAsyncResult  *result,
                           GError       **error)
{
  g_return_val_if_fail (MPG_IS_CONDITION (self), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  return _mpg_sync_run_finish (self, result, mpg_condition_wait_async, error) >= 0;
}

static gboolean
notify_internal (MpgCondition  *self,
                 guint          n,
                 const char    *what,
                 GError       **error)
{
  CondState *state;
  guint woken = 0;

  if (!check_held (self, what, error))
    return FALSE;

  state = self->sync->state;
  _mpg_sync_lock (self->sync);

  while (woken < n)
    {
      Slot *oldest = NULL;

      for (guint i = 0; i < MAX_WAITERS; i++)
        {
          Slot *s = &state->slots[i];

          if (s->owner.pid != 0 && !s->notified &&
              (oldest == NULL || s->ticket - oldest->ticket > G_MAXUINT32 / 2))
            oldest = s;
        }
      if (oldest == NULL)
        break;

      /* A waiter whose process died would swallow the notification. */
      if (!_mpg_sync_owner_alive (&oldest->owner))
        {
          memset (oldest, 0, sizeof *oldest);
          continue;
        }

      oldest->notified = TRUE;
      woken++;
    }

  if (woken > 0)
    _mpg_sync_changed (self->sync);
  _mpg_sync_unlock (self->sync);
  return TRUE;
}

/**
 * mpg_condition_notify:
 * @self: a condition
 * @n: how many waiters to wake at most
 * @error: return location for a #GError
 *
 * Wakes the @n threads that have waited longest, as Python's `notify(n)`.
 * The calling thread must hold the lock; the woken threads return from
 * their wait once it is released.
 *
 * Returns: %TRUE on success; %FALSE with %MPG_ERROR_INVALID_STATE if the
 *   calling thread does not hold the lock
 *
 * Since: 0.1
 */
gboolean
mpg_condition_notify (MpgCondition  *self,
                      guint          n,
                      GError       **error)
{
  g_return_val_if_fail (MPG_IS_CONDITION (self), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  return notify_internal (self, n, "notify()", error);
}

/**
 * mpg_condition_notify_all:
 * @self: a condition
 * @error: return location for a #GError
 *
 * Wakes every waiting thread, as Python's `notify_all()`.
 *
 * Returns: %TRUE on success; %FALSE with %MPG_ERROR_INVALID_STATE if the
 *   calling thread does not hold the lock
 *
 * Since: 0.1
 */
gboolean
mpg_condition_notify_all (MpgCondition  *self,
                          GError       **error)
{
  g_return_val_if_fail (MPG_IS_CONDITION (self), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  return notify_internal (self, G_MAXUINT, "notify_all()", error);
}

/**
 * mpg_condition_to_handle:
 * @self: a condition
 * @fd_list: the list to which the file descriptors of the condition and its
 *   lock are added (copies of them)
 * @error: return location for a #GError
 *
 * Describes the condition and its lock so that another process can use
 * them: see [method@Mpg.Lock.to_handle].
 *
 * Returns: (transfer full): the handle (not floating), or %NULL with @error set if
 *   the file descriptors could not be added
 *
 * Since: 0.1
 */
GVariant *
mpg_condition_to_handle (MpgCondition  *self,
                         GUnixFDList   *fd_list,
                         GError       **error)
{
  g_autoptr(GVariant) own = NULL;
  g_autoptr(GVariant) lock = NULL;

  g_return_val_if_fail (MPG_IS_CONDITION (self), NULL);
  g_return_val_if_fail (G_IS_UNIX_FD_LIST (fd_list), NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if (!check_ready (self, error))
    return NULL;

  own = _mpg_sync_to_handle (self->sync, fd_list, error);
  if (own == NULL)
    return NULL;
  lock = mpg_lock_to_handle (self->lock, fd_list, error);
  if (lock == NULL)
    return NULL;

  return g_variant_ref_sink (g_variant_new ("(@(sh)v)", own, lock));
}

/**
 * mpg_condition_new_from_handle:
 * @handle: a value from [method@Mpg.Condition.to_handle]; a floating
 *   reference is sunk
 * @fd_list: (nullable): the file descriptors that @handle indexes
 * @error: return location for a #GError
 *
 * Rebuilds a condition that another process (or this one) described with
 * [method@Mpg.Condition.to_handle]: the same condition, with the same lock.
 *
 * Returns: (transfer full): the condition, or %NULL with
 *   %G_IO_ERROR_INVALID_ARGUMENT if @handle does not describe one
 *
 * Since: 0.1
 */
MpgCondition *
mpg_condition_new_from_handle (GVariant     *handle,
                               GUnixFDList  *fd_list,
                               GError      **error)
{
  g_autoptr(GVariant) sunk = NULL;
  g_autoptr(GVariant) own = NULL;
  g_autoptr(GVariant) lock_handle = NULL;
  g_autoptr(MpgCondition) self = NULL;
  MpgSync *sync;

  g_return_val_if_fail (handle != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  sunk = g_variant_ref_sink (handle);
  if (!g_variant_is_of_type (handle, G_VARIANT_TYPE ("((sh)v)")))
    {
      g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                           "Not a condition's handle: its type is not ((sh)v)");
      return NULL;
    }

  g_variant_get (handle, "(@(sh)v)", &own, &lock_handle);
  sync = _mpg_sync_new_from_handle (own, fd_list, error);
  if (sync == NULL)
    return NULL;

  self = g_object_new (MPG_TYPE_CONDITION, NULL);
  self->sync = sync;
  if (sync->kind != MPG_SYNC_CONDITION)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                   "Not a condition's handle but a %s's", _mpg_sync_kind_name (sync->kind));
      return NULL;
    }

  self->lock = mpg_lock_new_from_handle (lock_handle, fd_list, error);
  if (self->lock == NULL)
    return NULL;

  return g_steal_pointer (&self);
}
