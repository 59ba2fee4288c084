/* mpg-barrier.h
 *
 * Copyright 2026 The libmpg authors
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#if !defined(MPG_INSIDE) && !defined(MPG_COMPILATION)
# error "Only <libmpg.h> can be included directly."
#endif

#include <gio/gio.h>
#include <gio/gunixfdlist.h>

#include "mpg-version-macros.h"

G_BEGIN_DECLS

#define MPG_TYPE_BARRIER (mpg_barrier_get_type ())

MPG_AVAILABLE_IN_ALL
G_DECLARE_FINAL_TYPE (MpgBarrier, mpg_barrier, MPG, BARRIER, GObject)

/**
 * MpgBarrierAction:
 * @user_data: (closure): the data given to [method@Mpg.Barrier.set_action]
 * @error: return location for a #GError
 *
 * The action of a barrier: called by the last of its parties to arrive,
 * before any of them is released.
 *
 * Returns: %TRUE on success; %FALSE with @error set breaks the barrier
 *
 * Since: 0.1
 */
typedef gboolean (*MpgBarrierAction) (gpointer   user_data,
                                      GError   **error);

MPG_AVAILABLE_IN_ALL
MpgBarrier *mpg_barrier_new             (guint                 parties,
                                         gint                  timeout_msec,
                                         GError              **error) G_GNUC_WARN_UNUSED_RESULT;
MPG_AVAILABLE_IN_ALL
void        mpg_barrier_set_action      (MpgBarrier           *self,
                                         MpgBarrierAction      action,
                                         gpointer              user_data,
                                         GDestroyNotify        user_data_free);
MPG_AVAILABLE_IN_ALL
guint       mpg_barrier_get_parties     (MpgBarrier           *self);
MPG_AVAILABLE_IN_ALL
gint        mpg_barrier_get_timeout     (MpgBarrier           *self);
MPG_AVAILABLE_IN_ALL
guint       mpg_barrier_get_n_waiting   (MpgBarrier           *self);
MPG_AVAILABLE_IN_ALL
gboolean    mpg_barrier_get_broken      (MpgBarrier           *self);
MPG_AVAILABLE_IN_ALL
gint        mpg_barrier_wait            (MpgBarrier           *self,
                                         gint                  timeout_msec,
                                         GCancellable         *cancellable,
                                         GError              **error);
MPG_AVAILABLE_IN_ALL
void        mpg_barrier_wait_async      (MpgBarrier           *self,
                                         GCancellable         *cancellable,
                                         GAsyncReadyCallback   callback,
                                         gpointer              user_data);
MPG_AVAILABLE_IN_ALL
gint        mpg_barrier_wait_finish     (MpgBarrier           *self,
                                         GAsyncResult         *result,
                                         GError              **error);
MPG_AVAILABLE_IN_ALL
void        mpg_barrier_abort           (MpgBarrier           *self);
MPG_AVAILABLE_IN_ALL
void        mpg_barrier_reset           (MpgBarrier           *self);
MPG_AVAILABLE_IN_ALL
GVariant   *mpg_barrier_to_handle       (MpgBarrier           *self,
                                         GUnixFDList          *fd_list,
                                         GError              **error) G_GNUC_WARN_UNUSED_RESULT;
MPG_AVAILABLE_IN_ALL
MpgBarrier *mpg_barrier_new_from_handle (GVariant             *handle,
                                         GUnixFDList          *fd_list,
                                         GError              **error) G_GNUC_WARN_UNUSED_RESULT;

G_END_DECLS
