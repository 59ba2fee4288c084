/* mpg-lock.h
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

#define MPG_TYPE_LOCK (mpg_lock_get_type ())

MPG_AVAILABLE_IN_ALL
G_DECLARE_DERIVABLE_TYPE (MpgLock, mpg_lock, MPG, LOCK, GObject)

/**
 * MpgLockClass:
 * @parent_class: the parent class
 *
 * The class of [class@Mpg.Lock] and [class@Mpg.RLock]. It cannot be
 * derived from outside libmpg.
 *
 * Since: 0.1
 */
struct _MpgLockClass
{
  GObjectClass parent_class;

  /*< private >*/
  gpointer padding[8];
};

#define MPG_TYPE_RLOCK (mpg_rlock_get_type ())

MPG_AVAILABLE_IN_ALL
G_DECLARE_FINAL_TYPE (MpgRLock, mpg_rlock, MPG, RLOCK, MpgLock)

MPG_AVAILABLE_IN_ALL
MpgLock  *mpg_lock_new                (GError              **error) G_GNUC_WARN_UNUSED_RESULT;
MPG_AVAILABLE_IN_ALL
MpgRLock *mpg_rlock_new               (GError              **error) G_GNUC_WARN_UNUSED_RESULT;
MPG_AVAILABLE_IN_ALL
gboolean  mpg_lock_acquire            (MpgLock              *self,
                                       gint                  timeout_msec,
                                       gboolean             *out_owner_died,
                                       GCancellable         *cancellable,
                                       GError              **error);
MPG_AVAILABLE_IN_ALL
void      mpg_lock_acquire_async      (MpgLock              *self,
                                       GCancellable         *cancellable,
                                       GAsyncReadyCallback   callback,
                                       gpointer              user_data);
MPG_AVAILABLE_IN_ALL
gboolean  mpg_lock_acquire_finish     (MpgLock              *self,
                                       GAsyncResult         *result,
                                       gboolean             *out_owner_died,
                                       GError              **error);
MPG_AVAILABLE_IN_ALL
gboolean  mpg_lock_release            (MpgLock              *self,
                                       GError              **error);
MPG_AVAILABLE_IN_ALL
gboolean  mpg_lock_is_mine            (MpgLock              *self);
MPG_AVAILABLE_IN_ALL
guint     mpg_lock_get_count          (MpgLock              *self);
MPG_AVAILABLE_IN_ALL
gboolean  mpg_lock_get_recursive      (MpgLock              *self);
MPG_AVAILABLE_IN_ALL
GVariant *mpg_lock_to_handle          (MpgLock              *self,
                                       GUnixFDList          *fd_list,
                                       GError              **error) G_GNUC_WARN_UNUSED_RESULT;
MPG_AVAILABLE_IN_ALL
MpgLock  *mpg_lock_new_from_handle    (GVariant             *handle,
                                       GUnixFDList          *fd_list,
                                       GError              **error) G_GNUC_WARN_UNUSED_RESULT;

G_END_DECLS
