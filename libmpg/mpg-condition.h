/* mpg-condition.h
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

#include "mpg-lock.h"

G_BEGIN_DECLS

#define MPG_TYPE_CONDITION (mpg_condition_get_type ())

MPG_AVAILABLE_IN_ALL
G_DECLARE_FINAL_TYPE (MpgCondition, mpg_condition, MPG, CONDITION, GObject)

/**
 * MpgConditionPredicate:
 * @user_data: (closure): the data given with the predicate
 *
 * A predicate for [method@Mpg.Condition.wait_for], called with the
 * condition's lock held.
 *
 * Returns: %TRUE when the awaited state is reached
 *
 * Since: 0.1
 */
typedef gboolean (*MpgConditionPredicate) (gpointer user_data);

MPG_AVAILABLE_IN_ALL
MpgCondition *mpg_condition_new             (MpgLock              *lock,
                                             GError              **error) G_GNUC_WARN_UNUSED_RESULT;
MPG_AVAILABLE_IN_ALL
MpgLock      *mpg_condition_get_lock        (MpgCondition         *self);
MPG_AVAILABLE_IN_ALL
gboolean      mpg_condition_wait            (MpgCondition         *self,
                                             gint                  timeout_msec,
                                             GCancellable         *cancellable,
                                             GError              **error);
MPG_AVAILABLE_IN_ALL
gboolean      mpg_condition_wait_for        (MpgCondition         *self,
                                             MpgConditionPredicate predicate,
                                             gpointer              user_data,
                                             gint                  timeout_msec,
                                             GCancellable         *cancellable,
                                             GError              **error);
MPG_AVAILABLE_IN_ALL
void          mpg_condition_wait_async      (MpgCondition         *self,
                                             GCancellable         *cancellable,
                                             GAsyncReadyCallback   callback,
                                             gpointer              user_data);
MPG_AVAILABLE_IN_ALL
gboolean      mpg_condition_wait_finish     (MpgCondition         *self,
                                             GAsyncResult         *result,
                                             GError              **error);
MPG_AVAILABLE_IN_ALL
gboolean      mpg_condition_notify          (MpgCondition         *self,
                                             guint                 n,
                                             GError              **error);
MPG_AVAILABLE_IN_ALL
gboolean      mpg_condition_notify_all      (MpgCondition         *self,
                                             GError              **error);
MPG_AVAILABLE_IN_ALL
GVariant     *mpg_condition_to_handle       (MpgCondition         *self,
                                             GUnixFDList          *fd_list,
                                             GError              **error) G_GNUC_WARN_UNUSED_RESULT;
MPG_AVAILABLE_IN_ALL
MpgCondition *mpg_condition_new_from_handle (GVariant             *handle,
                                             GUnixFDList          *fd_list,
                                             GError              **error) G_GNUC_WARN_UNUSED_RESULT;

G_END_DECLS
