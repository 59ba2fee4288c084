/* mpg-semaphore.c
 *
 * Copyright 2026 The libmpg authors
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include "mpg-error.h"
#include "mpg-semaphore.h"
#include "mpg-sync-private.h"

/**
 * MpgSemaphore:
 *
 * A semaphore shared by processes, as Python's
 * `multiprocessing.Semaphore` and, made with
 * [ctor@Mpg.Semaphore.new_bounded], `multiprocessing.BoundedSemaphore`.
 *
 * It counts units: [method@Mpg.Semaphore.acquire] takes one, waiting
 * while there is none, and [method@Mpg.Semaphore.release] gives one back.
 * Any thread of any process may release a unit. A bounded semaphore fails
 * a release that would raise its value above the value it was made with.
 *
 * ```c
 * // At most 2 children in the critical section at once.
 * g_autoptr(MpgSemaphore) sem = mpg_semaphore_new (2, &error);
 *
 * // in each child:
 * mpg_semaphore_acquire (sem, -1, NULL, error);
 * use_the_scarce_resource ();
 * mpg_semaphore_release (sem, error);
 * ```
 *
 * ## When a process dies holding units
 *
 * The semaphore records, for each process, how many units it took and has
 * not given back: a release by a process that holds units gives back one
 * of its own; a release by a process that holds none (a producer
 * signalling a consumer) counts against the process that took units
 * longest ago. The units a dead process still holds are given back when a
 * waiter looks (within about a second of waiting, at once for a call that
 * does not wait), and waiters proceed. Up to 64 processes are recorded at
 * once; the units of further processes are not recorded, and are not
 * given back if those processes die. Python's semaphore loses such units
 * forever.
 *
 * ## How it maps to Python
 *
 * | Python `multiprocessing` | libmpg |
 * |---|---|
 * | `Semaphore(value=1)` | [ctor@Mpg.Semaphore.new] |
 * | `BoundedSemaphore(value=1)` | [ctor@Mpg.Semaphore.new_bounded] |
 * | `acquire(block=True, timeout=None)` | [method@Mpg.Semaphore.acquire]; %MPG_ERROR_TIMEOUT where Python returns `False` |
 * | `release()` | [method@Mpg.Semaphore.release]; %MPG_ERROR_INVALID_STATE where Python raises `ValueError` |
 * | `get_value()` | [method@Mpg.Semaphore.get_value] |
 *
 * Like [class@Mpg.Lock], a semaphore is a page of shared memory and a file
 * descriptor in each process, with nothing left in the file system.
 *
 * Since: 0.1
 */

#define MAX_HOLDERS 64

typedef struct
{
  MpgSyncOwner owner;
  guint32      units;
  guint32      order;   /* when the process first took a unit it holds */
} Holder;

typedef struct
{
  guint32 value;
  guint32 max_value;    /* bounded: the initial value; else 0 */
  guint32 untracked;    /* units of processes that found no free record */
  guint32 next_order;
  guint32 bounded;      /* a bound of 0 is a bound too */
  guint32 padding;
  Holder  holders[MAX_HOLDERS];
} SemState;

G_STATIC_ASSERT (sizeof (SemState) <= MPG_SYNC_STATE_MAX);

struct _MpgSemaphore
{
  GObject parent_instance;

  MpgSync *sync;
  GError  *init_error;
  guint    value;
  gboolean bounded;
};

static void mpg_semaphore_initable_iface_init (GInitableIface *iface);

G_DEFINE_FINAL_TYPE_WITH_CODE (MpgSemaphore, mpg_semaphore, G_TYPE_OBJECT,
                               G_IMPLEMENT_INTERFACE (G_TYPE_INITABLE,
                                                      mpg_semaphore_initable_iface_init))

enum {
  PROP_0,
  PROP_VALUE,
  PROP_BOUNDED,
  N_PROPS
};

static GParamSpec *properties[N_PROPS];

static GPrivate adopt_sync;

static void
mpg_semaphore_constructed (GObject *object)
{
  MpgSemaphore *self = MPG_SEMAPHORE (object);

  G_OBJECT_CLASS (mpg_semaphore_parent_class)->constructed (object);

  self->sync = g_private_get (&adopt_sync);
  if (self->sync != NULL)
    {
      g_private_set (&adopt_sync, NULL);
      return;
    }

  self->sync = _mpg_sync_new (MPG_SYNC_SEMAPHORE, &self->init_error);
  if (self->sync != NULL)
    {
      SemState *state = self->sync->state;

      state->value = self->value;
      state->max_value = self->bounded ? self->value : 0;
      state->bounded = self->bounded;
    }
}

static gboolean
mpg_semaphore_initable_init (GInitable     *initable,
                             GCancellable  *cancellable,
                             GError       **error)
{
  MpgSemaphore *self = MPG_SEMAPHORE (initable);

  if (self->init_error != NULL)
    {
      g_propagate_error (error, g_error_copy (self->init_error));
      return FALSE;
    }
  return TRUE;
}

static void
mpg_semaphore_initable_iface_init (GInitableIface *iface)
{
  iface->init = mpg_semaphore_initable_init;
}

static void
mpg_semaphore_finalize (GObject *object)
{
  MpgSemaphore *self = MPG_SEMAPHORE (object);

  g_clear_pointer (&self->sync, _mpg_sync_free);
  g_clear_error (&self->init_error);

  G_OBJECT_CLASS (mpg_semaphore_parent_class)->finalize (object);
}

static void
mpg_semaphore_get_property (GObject    *object,
                            guint       prop_id,
                            GValue     *value,
                            GParamSpec *pspec)
{
  MpgSemaphore *self = MPG_SEMAPHORE (object);

  switch (prop_id)
    {
    case PROP_VALUE:
      g_value_set_uint (value, mpg_semaphore_get_value (self));
      break;

    case PROP_BOUNDED:
      g_value_set_boolean (value, mpg_semaphore_get_bounded (self));
      break;

    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
mpg_semaphore_set_property (GObject      *object,
                            guint         prop_id,
                            const GValue *value,
                            GParamSpec   *pspec)
{
  MpgSemaphore *self = MPG_SEMAPHORE (object);

  switch (prop_id)
    {
    case PROP_VALUE:
      self->value = g_value_get_uint (value);
      break;

    case PROP_BOUNDED:
      self->bounded = g_value_get_boolean (value);
      break;

    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
mpg_semaphore_class_init (MpgSemaphoreClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->constructed = mpg_semaphore_constructed;
  object_class->finalize = mpg_semaphore_finalize;
  object_class->get_property = mpg_semaphore_get_property;
  object_class->set_property = mpg_semaphore_set_property;

  /**
   * MpgSemaphore:value:
   *
   * The number of units available: the initial value when constructing,
   * then what [method@Mpg.Semaphore.get_value] returns.
   *
   * Since: 0.1
   */
  properties[PROP_VALUE] =
    g_param_spec_uint ("value", NULL, NULL,
                       0, G_MAXINT32, 1,
                       (G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY | G_PARAM_STATIC_STRINGS));

  /**
   * MpgSemaphore:bounded:
   *
   * Whether a release that would raise the value above the initial value
   * fails, as with Python's `BoundedSemaphore`.
   *
   * Since: 0.1
   */
  properties[PROP_BOUNDED] =
    g_param_spec_boolean ("bounded", NULL, NULL,
                          FALSE,
                          (G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY | G_PARAM_STATIC_STRINGS));

  g_object_class_install_properties (object_class, N_PROPS, properties);
}

static void
mpg_semaphore_init (MpgSemaphore *self)
{
  self->value = 1;
}

static gboolean
check_ready (MpgSemaphore  *self,
             GError       **error)
{
  if (self->sync == NULL)
    {
      g_propagate_error (error, g_error_copy (self->init_error));
      return FALSE;
    }
  return TRUE;
}

/**
 * mpg_semaphore_new:
 * @value: the number of units available at first
 * @error: return location for a #GError
 *
 * Creates a semaphore, as Python's `multiprocessing.Semaphore(value)`.
 *
 * Returns: (transfer full): the semaphore, or %NULL with @error set if its
 *   shared memory could not be created (too many open files)
 *
 * Since: 0.1
 */
MpgSemaphore *
mpg_semaphore_new (guint    value,
                   GError **error)
{
  g_return_val_if_fail (value <= G_MAXINT32, NULL);

  return g_initable_new (MPG_TYPE_SEMAPHORE, NULL, error, "value", value, NULL);
}

/**
 * mpg_semaphore_new_bounded:
 * @value: the number of units available at first, and at most
 * @error: return location for a #GError
 *
 * Creates a bounded semaphore, as Python's
 * `multiprocessing.BoundedSemaphore(value)`: a release that would raise
 * its value above @value fails.
 *
 * Returns: (transfer full): the semaphore, or %NULL with @error set if its
 *   shared memory could not be created (too many open files)
 *
 * Since: 0.1
 */
MpgSemaphore *
mpg_semaphore_new_bounded (guint    value,
                           GError **error)
{
  g_return_val_if_fail (value <= G_MAXINT32, NULL);

  return g_initable_new (MPG_TYPE_SEMAPHORE, NULL, error,
                         "value", value, "bounded", TRUE, NULL);
}

static Holder *
find_holder (SemState           *state,
             const MpgSyncOwner *owner)
{
  for (guint i = 0; i < MAX_HOLDERS; i++)
    if (state->holders[i].units > 0 && _mpg_sync_same_process (&state->holders[i].owner, owner))
      return &state->holders[i];
  return NULL;
}

/* Gives back the units of dead processes. Returns whether any came back. */
static gboolean
reclaim_dead (MpgSync *sync)
{
  SemState *state = sync->state;
  gboolean any = FALSE;

  for (guint i = 0; i < MAX_HOLDERS; i++)
    {
      Holder *h = &state->holders[i];

      if (h->units == 0 || _mpg_sync_owner_alive (&h->owner))
        continue;

      g_debug ("Process %d died holding %u units of a semaphore", h->owner.pid, h->units);
      state->value += h->units;
      memset (h, 0, sizeof *h);
      any = TRUE;
    }

  if (any)
    _mpg_sync_changed (sync);
  return any;
}

static void
record_take (MpgSync            *sync,
             const MpgSyncOwner *owner)
{
  SemState *state = sync->state;
  Holder *h = find_holder (state, owner);

  if (h == NULL)
    {
      for (guint pass = 0; pass < 2 && h == NULL; pass++)
        {
          for (guint i = 0; i < MAX_HOLDERS; i++)
            if (state->holders[i].units == 0)
              {
                h = &state->holders[i];
                h->owner = *owner;
                h->order = state->next_order++;
                break;
              }
          if (h == NULL && pass == 0)
            reclaim_dead (sync);
        }
    }

  if (h != NULL)
    h->units++;
  else
    state->untracked++;
}

static void
record_give (SemState           *state,
             const MpgSyncOwner *owner)
{
  Holder *h = find_holder (state, owner);

  if (h == NULL)
    {
      /* Not a holder: the unit is one the oldest holder took. */
      for (guint i = 0; i < MAX_HOLDERS; i++)
        if (state->holders[i].units > 0 &&
            (h == NULL || state->holders[i].order - h->order > G_MAXUINT32 / 2))
          h = &state->holders[i];
    }

  if (h != NULL)
    {
      if (--h->units == 0)
        memset (h, 0, sizeof *h);
    }
  else if (state->untracked > 0)
    state->untracked--;
}

static gboolean
acquire_as (MpgSemaphore        *self,
            const MpgSyncOwner  *owner,
            gint                 timeout_msec,
            GCancellable        *cancellable,
            GError             **error)
{
  SemState *state = self->sync->state;
  gboolean ok = FALSE;
  MpgSyncWait w;

  _mpg_sync_wait_init (&w, self->sync, timeout_msec, cancellable);
  _mpg_sync_lock (self->sync);

  for (;;)
    {
      if (state->value > 0)
        {
          state->value--;
          record_take (self->sync, owner);
          ok = TRUE;
          break;
        }

      if ((timeout_msec == 0 || w.check_due) && reclaim_dead (self->sync))
        continue;

      if (timeout_msec == 0)
        {
          g_set_error_literal (error, MPG_ERROR, MPG_ERROR_TIMEOUT,
                               "The semaphore has no unit left");
          break;
        }

      if (!_mpg_sync_wait (&w, error))
        break;
    }

  _mpg_sync_unlock (self->sync);
  _mpg_sync_wait_clear (&w);
  return ok;
}

/**
 * mpg_semaphore_acquire:
 * @self: a semaphore
 * @timeout_msec: how long to wait, in milliseconds: -1 for as long as it
 *   takes, 0 not to wait
 * @cancellable: (nullable): a #GCancellable
 * @error: return location for a #GError
 *
 * Takes a unit, waiting while there is none, as Python's
 * `acquire(block, timeout)`.
 *
 * Returns: %TRUE if a unit was taken; %FALSE with %MPG_ERROR_TIMEOUT if
 *   @timeout_msec passed first (Python returns `False`), or
 *   %G_IO_ERROR_CANCELLED
 *
 * Since: 0.1
 */
gboolean
mpg_semaphore_acquire (MpgSemaphore  *self,
                       gint           timeout_msec,
                       GCancellable  *cancellable,
                       GError       **error)
{
  MpgSyncOwner me;

  g_return_val_if_fail (MPG_IS_SEMAPHORE (self), FALSE);
  g_return_val_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  if (!check_ready (self, error))
    return FALSE;

  _mpg_sync_self (&me);
  return acquire_as (self, &me, timeout_msec, cancellable, error);
}

static gssize
acquire_thread (gpointer      source,
                gpointer      data,
                GCancellable *cancellable,
                GError      **error)
{
  return acquire_as (source, data, -1, cancellable, error) ? 1 : -1;
}

/**
 * mpg_semaphore_acquire_async:
 * @self: a semaphore
 * @cancellable: (nullable): a #GCancellable
 * @callback: (scope async): called when a unit was taken, or the call
 *   failed
 * @user_data: data for @callback
 *
 * Takes a unit without blocking the caller: @callback is called in the
 * thread-default main context of the caller once it is taken. Call
 * [method@Mpg.Semaphore.acquire_finish] there.
 *
 * The wait happens in a thread of its own. Cancelling @cancellable fails
 * the call with %G_IO_ERROR_CANCELLED, and no unit is taken.
 *
 * Since: 0.1
 */
void
mpg_semaphore_acquire_async (MpgSemaphore        *self,
                             GCancellable        *cancellable,
                             GAsyncReadyCallback  callback,
                             gpointer             user_data)
{
  MpgSyncOwner *me;

  g_return_if_fail (MPG_IS_SEMAPHORE (self));
  g_return_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable));

  if (!check_ready (self, NULL))
    {
      g_task_report_error (self, callback, user_data, mpg_semaphore_acquire_async,
                           g_error_copy (self->init_error));
      return;
    }

  me = g_new (MpgSyncOwner, 1);
  _mpg_sync_self (me);
  _mpg_sync_run_async (self, mpg_semaphore_acquire_async, "[mpg] acquire a semaphore",
                       acquire_thread, me, g_free, cancellable, callback, user_data);
}

/**
 * mpg_semaphore_acquire_finish:
 * @self: a semaphore
 * @result: the result passed to the callback
 * @error: return location for a #GError
 *
 * Completes [method@Mpg.Semaphore.acquire_async].
 *
 * Returns: %TRUE if a unit was taken; %FALSE with @error set
 *
 * Since: 0.1
 */
gboolean
mpg_semaphore_acquire_finish (MpgSemaphore  *self,
                              GAsyncResult  *result,
                              GError       **error)
{
  g_return_val_if_fail (MPG_IS_SEMAPHORE (self), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  return _mpg_sync_run_finish (self, result, mpg_semaphore_acquire_async, error) >= 0;
}

/**
 * mpg_semaphore_release:
 * @self: a semaphore
 * @error: return location for a #GError
 *
 * Gives a unit back, waking a waiter, as Python's `release()`. Any thread
 * of any process may release.
 *
 * Returns: %TRUE on success; %FALSE with %MPG_ERROR_INVALID_STATE if the
 *   semaphore is bounded and already at its initial value (Python's
 *   `ValueError`)
 *
 * Since: 0.1
 */
gboolean
mpg_semaphore_release (MpgSemaphore  *self,
                       GError       **error)
{
  MpgSyncOwner me;
  SemState *state;
  gboolean ok = TRUE;

  g_return_val_if_fail (MPG_IS_SEMAPHORE (self), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  if (!check_ready (self, error))
    return FALSE;

  state = self->sync->state;
  _mpg_sync_self (&me);
  _mpg_sync_lock (self->sync);

  if (state->bounded && state->value >= state->max_value)
    {
      g_set_error_literal (error, MPG_ERROR, MPG_ERROR_INVALID_STATE,
                           "The semaphore is released too many times");
      ok = FALSE;
    }
  else if (state->value >= G_MAXINT32)
    {
      g_set_error_literal (error, MPG_ERROR, MPG_ERROR_INVALID_STATE,
                           "The semaphore's value would overflow");
      ok = FALSE;
    }
  else
    {
      state->value++;
      record_give (state, &me);
      _mpg_sync_changed (self->sync);
    }

  _mpg_sync_unlock (self->sync);
  return ok;
}

/**
 * mpg_semaphore_get_value:
 * @self: a semaphore
 *
 * Gets the number of units available now, as Python's `get_value()`.
 * Units held by dead processes count once a waiter has given them back.
 *
 * Returns: the value
 *
 * Since: 0.1
 */
guint
mpg_semaphore_get_value (MpgSemaphore *self)
{
  guint value;

  g_return_val_if_fail (MPG_IS_SEMAPHORE (self), 0);

  if (self->sync == NULL)
    return 0;

  _mpg_sync_lock (self->sync);
  value = ((SemState *) self->sync->state)->value;
  _mpg_sync_unlock (self->sync);
  return value;
}

/**
 * mpg_semaphore_get_bounded:
 * @self: a semaphore
 *
 * Gets whether @self is bounded ([ctor@Mpg.Semaphore.new_bounded]).
 *
 * Returns: %TRUE for a bounded semaphore
 *
 * Since: 0.1
 */
gboolean
mpg_semaphore_get_bounded (MpgSemaphore *self)
{
  g_return_val_if_fail (MPG_IS_SEMAPHORE (self), FALSE);

  if (self->sync == NULL)
    return self->bounded;
  return g_atomic_int_get (&((SemState *) self->sync->state)->bounded) != 0;
}

/**
 * mpg_semaphore_get_max_value:
 * @self: a semaphore
 *
 * Gets the value that a bounded semaphore cannot exceed.
 *
 * Returns: the bound (0 for a semaphore that is not bounded, or bounded
 *   at 0: see [method@Mpg.Semaphore.get_bounded])
 *
 * Since: 0.1
 */
guint
mpg_semaphore_get_max_value (MpgSemaphore *self)
{
  g_return_val_if_fail (MPG_IS_SEMAPHORE (self), 0);

  if (self->sync == NULL)
    return self->bounded ? self->value : 0;

  return g_atomic_int_get (&((SemState *) self->sync->state)->max_value);
}

/**
 * mpg_semaphore_to_handle:
 * @self: a semaphore
 * @fd_list: the list to which the semaphore's file descriptor is added (a
 *   copy of it)
 * @error: return location for a #GError
 *
 * Describes the semaphore so that another process can use it: see
 * [method@Mpg.Lock.to_handle].
 *
 * Returns: (transfer full): the handle (not floating), or %NULL with @error set if
 *   the file descriptor could not be added
 *
 * Since: 0.1
 */
GVariant *
mpg_semaphore_to_handle (MpgSemaphore  *self,
                         GUnixFDList   *fd_list,
                         GError       **error)
{
  g_return_val_if_fail (MPG_IS_SEMAPHORE (self), NULL);
  g_return_val_if_fail (G_IS_UNIX_FD_LIST (fd_list), NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if (!check_ready (self, error))
    return NULL;

  return _mpg_sync_to_handle (self->sync, fd_list, error);
}

/**
 * mpg_semaphore_new_from_handle:
 * @handle: a value from [method@Mpg.Semaphore.to_handle]; a floating
 *   reference is sunk
 * @fd_list: (nullable): the file descriptors that @handle indexes
 * @error: return location for a #GError
 *
 * Rebuilds a semaphore that another process (or this one) described with
 * [method@Mpg.Semaphore.to_handle]: the same semaphore.
 *
 * Returns: (transfer full): the semaphore, or %NULL with
 *   %G_IO_ERROR_INVALID_ARGUMENT if @handle does not describe one
 *
 * Since: 0.1
 */
MpgSemaphore *
mpg_semaphore_new_from_handle (GVariant     *handle,
                               GUnixFDList  *fd_list,
                               GError      **error)
{
  MpgSync *sync;

  g_return_val_if_fail (handle != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  sync = _mpg_sync_new_from_handle (handle, fd_list, error);
  if (sync == NULL)
    return NULL;

  if (sync->kind != MPG_SYNC_SEMAPHORE)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                   "Not a semaphore's handle but a %s's", _mpg_sync_kind_name (sync->kind));
      _mpg_sync_free (sync);
      return NULL;
    }

  g_private_set (&adopt_sync, sync);
  return g_object_new (MPG_TYPE_SEMAPHORE, NULL);
}
