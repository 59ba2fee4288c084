/* mpg-barrier.c
 *
 * Copyright 2026 The libmpg authors
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include "mpg-barrier.h"
#include "mpg-error.h"
#include "mpg-sync-private.h"

/**
 * MpgBarrier:
 *
 * A barrier for a fixed number of parties in any processes, as Python's
 * `multiprocessing.Barrier`.
 *
 * Each party calls [method@Mpg.Barrier.wait]; the calls return together
 * once all the parties have arrived, each with a different index from 0 to
 * the number of parties minus one, and the barrier can be used again. The
 * last party to arrive first runs the barrier's action, if its process set
 * one with [method@Mpg.Barrier.set_action].
 *
 * A barrier breaks when a wait times out, when the action fails, or when
 * [method@Mpg.Barrier.abort] is called: every wait in progress, and every
 * later one until [method@Mpg.Barrier.reset], fails with
 * %MPG_ERROR_BROKEN_BARRIER. A party that dies while the others wait does
 * not break the barrier by itself: give waits a timeout when that can
 * happen.
 *
 * ```c
 * g_autoptr(MpgBarrier) barrier = mpg_barrier_new (4, 5000, &error);
 *
 * // in each of 4 processes:
 * gint index = mpg_barrier_wait (barrier, -1, NULL, &error);
 * ```
 *
 * ## How it maps to Python
 *
 * | Python `multiprocessing` | libmpg |
 * |---|---|
 * | `Barrier(parties, action=None, timeout=None)` | [ctor@Mpg.Barrier.new] and [method@Mpg.Barrier.set_action] (the action is per process: a function cannot travel) |
 * | `wait(timeout=None)` | [method@Mpg.Barrier.wait] |
 * | `reset()`, `abort()` | [method@Mpg.Barrier.reset], [method@Mpg.Barrier.abort] |
 * | `parties`, `n_waiting`, `broken` | [method@Mpg.Barrier.get_parties], [method@Mpg.Barrier.get_n_waiting], [method@Mpg.Barrier.get_broken] |
 * | `threading.BrokenBarrierError` | %MPG_ERROR_BROKEN_BARRIER |
 *
 * Since: 0.1
 */

enum {
  PHASE_BROKEN = -2,
  PHASE_RESETTING = -1,
  PHASE_FILLING = 0,
  PHASE_DRAINING = 1,
  PHASE_ACTION = 2,     /* the last party runs the action */
};

typedef struct
{
  guint32 parties;
  gint32  timeout_msec;   /* the default; -1 for none */
  guint32 count;
  gint32  phase;
} BarrierState;

struct _MpgBarrier
{
  GObject parent_instance;

  MpgSync          *sync;
  MpgBarrierAction  action;
  gpointer          action_data;
  GDestroyNotify    action_data_free;
};

G_DEFINE_FINAL_TYPE (MpgBarrier, mpg_barrier, G_TYPE_OBJECT)

enum {
  PROP_0,
  PROP_PARTIES,
  PROP_TIMEOUT,
  PROP_N_WAITING,
  PROP_BROKEN,
  N_PROPS
};

static GParamSpec *properties[N_PROPS];

static void
mpg_barrier_finalize (GObject *object)
{
  MpgBarrier *self = MPG_BARRIER (object);

  if (self->action_data_free != NULL)
    self->action_data_free (self->action_data);
  g_clear_pointer (&self->sync, _mpg_sync_free);

  G_OBJECT_CLASS (mpg_barrier_parent_class)->finalize (object);
}

static void
mpg_barrier_get_property (GObject    *object,
                          guint       prop_id,
                          GValue     *value,
                          GParamSpec *pspec)
{
  MpgBarrier *self = MPG_BARRIER (object);

  switch (prop_id)
    {
    case PROP_PARTIES:
      g_value_set_uint (value, mpg_barrier_get_parties (self));
      break;

    case PROP_TIMEOUT:
      g_value_set_int (value, mpg_barrier_get_timeout (self));
      break;

    case PROP_N_WAITING:
      g_value_set_uint (value, mpg_barrier_get_n_waiting (self));
      break;

    case PROP_BROKEN:
      g_value_set_boolean (value, mpg_barrier_get_broken (self));
      break;

    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
mpg_barrier_class_init (MpgBarrierClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->finalize = mpg_barrier_finalize;
  object_class->get_property = mpg_barrier_get_property;

  /**
   * MpgBarrier:parties:
   *
   * The number of parties that must arrive for the barrier to release them.
   *
   * Since: 0.1
   */
  properties[PROP_PARTIES] =
    g_param_spec_uint ("parties", NULL, NULL,
                       0, G_MAXUINT32, 0,
                       (G_PARAM_READABLE | G_PARAM_STATIC_STRINGS));

  /**
   * MpgBarrier:timeout:
   *
   * The timeout of a wait that does not give one, in milliseconds; -1 for
   * none.
   *
   * Since: 0.1
   */
  properties[PROP_TIMEOUT] =
    g_param_spec_int ("timeout", NULL, NULL,
                      -1, G_MAXINT32, -1,
                      (G_PARAM_READABLE | G_PARAM_STATIC_STRINGS));

  /**
   * MpgBarrier:n-waiting:
   *
   * The number of parties waiting now. It is not notified.
   *
   * Since: 0.1
   */
  properties[PROP_N_WAITING] =
    g_param_spec_uint ("n-waiting", NULL, NULL,
                       0, G_MAXUINT32, 0,
                       (G_PARAM_READABLE | G_PARAM_STATIC_STRINGS));

  /**
   * MpgBarrier:broken:
   *
   * Whether the barrier is broken. It is not notified.
   *
   * Since: 0.1
   */
  properties[PROP_BROKEN] =
    g_param_spec_boolean ("broken", NULL, NULL,
                          FALSE,
                          (G_PARAM_READABLE | G_PARAM_STATIC_STRINGS));

  g_object_class_install_properties (object_class, N_PROPS, properties);
}

static void
mpg_barrier_init (MpgBarrier *self)
{
}

/**
 * mpg_barrier_new:
 * @parties: the number of parties, at least 1
 * @timeout_msec: the timeout of waits that do not give one, in
 *   milliseconds; -1 for none
 * @error: return location for a #GError
 *
 * Creates a barrier, as Python's `multiprocessing.Barrier(parties,
 * timeout=timeout)`.
 *
 * Returns: (transfer full): the barrier, or %NULL with @error set if its
 *   shared memory could not be created (too many open files)
 *
 * Since: 0.1
 */
MpgBarrier *
mpg_barrier_new (guint    parties,
                 gint     timeout_msec,
                 GError **error)
{
  g_autoptr(MpgBarrier) self = NULL;
  BarrierState *state;

  g_return_val_if_fail (parties >= 1 && parties <= G_MAXINT32, NULL);
  g_return_val_if_fail (timeout_msec >= -1, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  self = g_object_new (MPG_TYPE_BARRIER, NULL);
  self->sync = _mpg_sync_new (MPG_SYNC_BARRIER, error);
  if (self->sync == NULL)
    return NULL;

  state = self->sync->state;
  state->parties = parties;
  state->timeout_msec = timeout_msec;
  return g_steal_pointer (&self);
}

/**
 * mpg_barrier_set_action:
 * @self: a barrier
 * @action: (nullable) (scope notified) (closure user_data) (destroy user_data_free):
 *   the action, or %NULL for none
 * @user_data: data for @action
 * @user_data_free: (nullable): frees @user_data
 *
 * Sets the function that this process runs when one of its threads is the
 * last party to arrive, before the parties are released. A function cannot
 * cross into other processes: each process sets its own (a forked child
 * has its parent's). If it fails, the barrier breaks and that party's wait
 * fails with its error.
 *
 * Since: 0.1
 */
void
mpg_barrier_set_action (MpgBarrier       *self,
                        MpgBarrierAction  action,
                        gpointer          user_data,
                        GDestroyNotify    user_data_free)
{
  g_return_if_fail (MPG_IS_BARRIER (self));

  if (self->action_data_free != NULL)
    self->action_data_free (self->action_data);
  self->action = action;
  self->action_data = user_data;
  self->action_data_free = user_data_free;
}

static gboolean
check_ready (MpgBarrier  *self,
             GError     **error)
{
  if (self->sync == NULL)
    {
      g_set_error_literal (error, MPG_ERROR, MPG_ERROR_INVALID_STATE,
                           "The barrier was not made with mpg_barrier_new()");
      return FALSE;
    }
  return TRUE;
}

static void
break_locked (MpgBarrier *self)
{
  ((BarrierState *) self->sync->state)->phase = PHASE_BROKEN;
  _mpg_sync_changed (self->sync);
}

static gboolean
broken_error (GError **error)
{
  g_set_error_literal (error, MPG_ERROR, MPG_ERROR_BROKEN_BARRIER, "The barrier is broken");
  return FALSE;
}

static gint
wait_internal (MpgBarrier    *self,
               gint           timeout_msec,
               GCancellable  *cancellable,
               GError       **error)
{
  BarrierState *state = self->sync->state;
  g_autoptr(GError) local_error = NULL;
  gboolean ok = TRUE;
  MpgSyncWait w;
  gint index;

  _mpg_sync_lock (self->sync);
  if (timeout_msec < 0)
    timeout_msec = state->timeout_msec;
  _mpg_sync_wait_init (&w, self->sync, -1, cancellable);

  /* Wait for the parties of the last round to leave, or a reset to end. */
  while (state->phase == PHASE_DRAINING || state->phase == PHASE_ACTION ||
         state->phase == PHASE_RESETTING)
    if (!_mpg_sync_wait (&w, &local_error))
      {
        _mpg_sync_unlock (self->sync);
        _mpg_sync_wait_clear (&w);
        g_propagate_error (error, g_steal_pointer (&local_error));
        return -1;
      }
  _mpg_sync_wait_clear (&w);

  if (state->phase == PHASE_BROKEN)
    {
      _mpg_sync_unlock (self->sync);
      broken_error (error);
      return -1;
    }

  index = state->count++;
  if ((guint) index + 1 >= state->parties)
    {
      /* The last to arrive: the action runs without the guard, while the
       * others keep waiting. */
      state->phase = PHASE_ACTION;
      _mpg_sync_unlock (self->sync);
      if (self->action != NULL)
        ok = self->action (self->action_data, &local_error);
      _mpg_sync_lock (self->sync);

      if (!ok)
        {
          if (local_error == NULL)
            g_set_error_literal (&local_error, MPG_ERROR, MPG_ERROR_FAILED,
                                 "The barrier's action failed");
          break_locked (self);
        }
      else if (state->phase == PHASE_ACTION)
        {
          state->phase = PHASE_DRAINING;
          _mpg_sync_changed (self->sync);
        }
      else
        ok = broken_error (&local_error);
    }
  else
    {
      _mpg_sync_wait_init (&w, self->sync, timeout_msec, cancellable);
      while (state->phase == PHASE_FILLING || state->phase == PHASE_ACTION)
        if (!_mpg_sync_wait (&w, &local_error))
          {
            /* A timeout or a cancellation breaks the barrier, as Python's
             * timeout does: the other parties would wait for nothing. */
            g_clear_error (&local_error);
            break_locked (self);
            break;
          }
      _mpg_sync_wait_clear (&w);
      if (state->phase < 0)
        ok = broken_error (&local_error);
    }

  /* Leave; the last to leave opens the barrier for the next round. */
  state->count--;
  if (state->count == 0 &&
      (state->phase == PHASE_RESETTING || state->phase == PHASE_DRAINING))
    {
      state->phase = PHASE_FILLING;
      _mpg_sync_changed (self->sync);
    }
  _mpg_sync_unlock (self->sync);

  if (!ok)
    {
      g_propagate_error (error, g_steal_pointer (&local_error));
      return -1;
    }
  return index;
}

/**
 * mpg_barrier_wait:
 * @self: a barrier
 * @timeout_msec: how long to wait, in milliseconds; -1 for the barrier's
 *   timeout ([property@Mpg.Barrier:timeout])
 * @cancellable: (nullable): a #GCancellable
 * @error: return location for a #GError
 *
 * Arrives at the barrier and waits for the other parties, as Python's
 * `wait(timeout)`. A timeout or a cancellation breaks the barrier, as
 * Python's timeout does.
 *
 * Returns: the index of this party, from 0 to the number of parties minus
 *   one; -1 with %MPG_ERROR_BROKEN_BARRIER if the barrier is or became
 *   broken (on a timeout or a cancellation too), or the error of the
 *   action if it ran here and failed
 *
 * Since: 0.1
 */
gint
mpg_barrier_wait (MpgBarrier    *self,
                  gint           timeout_msec,
                  GCancellable  *cancellable,
                  GError       **error)
{
  g_return_val_if_fail (MPG_IS_BARRIER (self), -1);
  g_return_val_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable), -1);
  g_return_val_if_fail (error == NULL || *error == NULL, -1);

  if (!check_ready (self, error))
    return -1;

  return wait_internal (self, timeout_msec, cancellable, error);
}

static gssize
wait_thread (gpointer      source,
             gpointer      data,
             GCancellable *cancellable,
             GError      **error)
{
  return wait_internal (source, -1, cancellable, error);
}

/**
 * mpg_barrier_wait_async:
 * @self: a barrier
 * @cancellable: (nullable): a #GCancellable
 * @callback: (scope async): called when the parties are released, or the
 *   call failed
 * @user_data: data for @callback
 *
 * Arrives at the barrier without blocking the caller: @callback is called
 * in the thread-default main context of the caller. Call
 * [method@Mpg.Barrier.wait_finish] there. The barrier's timeout applies.
 *
 * The wait happens in a thread of its own, where the action runs if this
 * party is the last. Cancelling @cancellable breaks the barrier.
 *
 * Since: 0.1
 */
void
mpg_barrier_wait_async (MpgBarrier          *self,
                        GCancellable        *cancellable,
                        GAsyncReadyCallback  callback,
                        gpointer             user_data)
{
  g_autoptr(GError) error = NULL;

  g_return_if_fail (MPG_IS_BARRIER (self));
  g_return_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable));

  if (!check_ready (self, &error))
    {
      g_task_report_error (self, callback, user_data, mpg_barrier_wait_async,
                           g_steal_pointer (&error));
      return;
    }

  _mpg_sync_run_async (self, mpg_barrier_wait_async, "[mpg] wait at a barrier",
                       wait_thread, NULL, NULL, cancellable, callback, user_data);
}

/**
 * mpg_barrier_wait_finish:
 * @self: a barrier
 * @result: the result passed to the callback
 * @error: return location for a #GError
 *
 * Completes [method@Mpg.Barrier.wait_async].
 *
 * Returns: the index of this party; -1 with @error set
 *
 * Since: 0.1
 */
gint
mpg_barrier_wait_finish (MpgBarrier    *self,
                         GAsyncResult  *result,
                         GError       **error)
{
  g_return_val_if_fail (MPG_IS_BARRIER (self), -1);
  g_return_val_if_fail (error == NULL || *error == NULL, -1);

  return (gint) _mpg_sync_run_finish (self, result, mpg_barrier_wait_async, error);
}

/**
 * mpg_barrier_abort:
 * @self: a barrier
 *
 * Breaks the barrier, as Python's `abort()`: waits in progress and later
 * ones fail with %MPG_ERROR_BROKEN_BARRIER until [method@Mpg.Barrier.reset].
 *
 * Since: 0.1
 */
void
mpg_barrier_abort (MpgBarrier *self)
{
  g_return_if_fail (MPG_IS_BARRIER (self));

  if (self->sync == NULL)
    return;

  _mpg_sync_lock (self->sync);
  break_locked (self);
  _mpg_sync_unlock (self->sync);
}

/**
 * mpg_barrier_reset:
 * @self: a barrier
 *
 * Returns the barrier to its first state, as Python's `reset()`: waits in
 * progress fail with %MPG_ERROR_BROKEN_BARRIER, and a broken barrier can
 * be used again.
 *
 * Since: 0.1
 */
void
mpg_barrier_reset (MpgBarrier *self)
{
  BarrierState *state;

  g_return_if_fail (MPG_IS_BARRIER (self));

  if (self->sync == NULL)
    return;

  state = self->sync->state;
  _mpg_sync_lock (self->sync);
  if (state->count > 0)
    {
      /* The waiters leave with an error; the last one opens it again. */
      if (state->phase == PHASE_FILLING || state->phase == PHASE_BROKEN)
        state->phase = PHASE_RESETTING;
    }
  else
    state->phase = PHASE_FILLING;
  _mpg_sync_changed (self->sync);
  _mpg_sync_unlock (self->sync);
}

/**
 * mpg_barrier_get_parties:
 * @self: a barrier
 *
 * Gets the number of parties.
 *
 * Returns: the number of parties
 *
 * Since: 0.1
 */
guint
mpg_barrier_get_parties (MpgBarrier *self)
{
  g_return_val_if_fail (MPG_IS_BARRIER (self), 0);

  if (self->sync == NULL)
    return 0;
  return ((BarrierState *) self->sync->state)->parties;
}

/**
 * mpg_barrier_get_timeout:
 * @self: a barrier
 *
 * Gets the timeout of waits that do not give one.
 *
 * Returns: the timeout in milliseconds, or -1 for none
 *
 * Since: 0.1
 */
gint
mpg_barrier_get_timeout (MpgBarrier *self)
{
  g_return_val_if_fail (MPG_IS_BARRIER (self), -1);

  if (self->sync == NULL)
    return -1;
  return ((BarrierState *) self->sync->state)->timeout_msec;
}

/**
 * mpg_barrier_get_n_waiting:
 * @self: a barrier
 *
 * Gets the number of parties waiting now, as Python's `n_waiting`.
 *
 * Returns: the number of waiting parties
 *
 * Since: 0.1
 */
guint
mpg_barrier_get_n_waiting (MpgBarrier *self)
{
  BarrierState *state;
  guint n;

  g_return_val_if_fail (MPG_IS_BARRIER (self), 0);

  if (self->sync == NULL)
    return 0;

  state = self->sync->state;
  _mpg_sync_lock (self->sync);
  /* While the action runs, every party has arrived: Python counts them. */
  n = state->phase == PHASE_FILLING || state->phase == PHASE_ACTION ? state->count : 0;
  _mpg_sync_unlock (self->sync);
  return n;
}

/**
 * mpg_barrier_get_broken:
 * @self: a barrier
 *
 * Gets whether the barrier is broken, as Python's `broken`.
 *
 * Returns: %TRUE if broken
 *
 * Since: 0.1
 */
gboolean
mpg_barrier_get_broken (MpgBarrier *self)
{
  g_return_val_if_fail (MPG_IS_BARRIER (self), FALSE);

  if (self->sync == NULL)
    return FALSE;
  return g_atomic_int_get (&((BarrierState *) self->sync->state)->phase) == PHASE_BROKEN;
}

/**
 * mpg_barrier_to_handle:
 * @self: a barrier
 * @fd_list: the list to which the barrier's file descriptor is added (a
 *   copy of it)
 * @error: return location for a #GError
 *
 * Describes the barrier so that another process can use it: see
 * [method@Mpg.Lock.to_handle]. The action does not travel.
 *
 * Returns: (transfer full): the handle (not floating), or %NULL with @error set if
 *   the file descriptor could not be added
 *
 * Since: 0.1
 */
GVariant *
mpg_barrier_to_handle (MpgBarrier   *self,
                       GUnixFDList  *fd_list,
                       GError      **error)
{
  g_return_val_if_fail (MPG_IS_BARRIER (self), NULL);
  g_return_val_if_fail (G_IS_UNIX_FD_LIST (fd_list), NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if (!check_ready (self, error))
    return NULL;

  return _mpg_sync_to_handle (self->sync, fd_list, error);
}

/**
 * mpg_barrier_new_from_handle:
 * @handle: a value from [method@Mpg.Barrier.to_handle]; a floating
 *   reference is sunk
 * @fd_list: (nullable): the file descriptors that @handle indexes
 * @error: return location for a #GError
 *
 * Rebuilds a barrier that another process (or this one) described with
 * [method@Mpg.Barrier.to_handle]: the same barrier, without an action.
 *
 * Returns: (transfer full): the barrier, or %NULL with
 *   %G_IO_ERROR_INVALID_ARGUMENT if @handle does not describe one
 *
 * Since: 0.1
 */
MpgBarrier *
mpg_barrier_new_from_handle (GVariant     *handle,
                             GUnixFDList  *fd_list,
                             GError      **error)
{
  g_autoptr(MpgBarrier) self = NULL;
  BarrierState *state;
  MpgSync *sync;

  g_return_val_if_fail (handle != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  sync = _mpg_sync_new_from_handle (handle, fd_list, error);
  if (sync == NULL)
    return NULL;

  self = g_object_new (MPG_TYPE_BARRIER, NULL);
  self->sync = sync;
  state = sync->state;
  if (sync->kind != MPG_SYNC_BARRIER)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                   "Not a barrier's handle but a %s's", _mpg_sync_kind_name (sync->kind));
      return NULL;
    }
  if (state->parties < 1 || state->parties > G_MAXINT32 || state->timeout_msec < -1)
    {
      g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                           "Not a barrier's handle: its state is invalid");
      return NULL;
    }

  return g_steal_pointer (&self);
}
