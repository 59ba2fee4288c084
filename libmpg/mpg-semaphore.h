/* mpg-semaphore.h
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

#define MPG_TYPE_SEMAPHORE (mpg_semaphore_get_type ())

MPG_AVAILABLE_IN_ALL
G_DECLARE_FINAL_TYPE (MpgSemaphore, mpg_semaphore, MPG, SEMAPHORE, GObject)

MPG_AVAILABLE_IN_ALL
MpgSemaphore *mpg_semaphore_new             (guint                 value,
                                             GError              **error) G_GNUC_WARN_UNUSED_RESULT;
MPG_AVAILABLE_IN_ALL
MpgSemaphore *mpg_semaphore_new_bounded     (guint                 value,
                                             GError              **error) G_GNUC_WARN_UNUSED_RESULT;
MPG_AVAILABLE_IN_ALL
gboolean      mpg_semaphore_acquire         (MpgSemaphore         *self,
                                             gint                  timeout_msec,
                                             GCancellable         *cancellable,
                                             GError              **error);
MPG_AVAILABLE_IN_ALL
void          mpg_semaphore_acquire_async   (MpgSemaphore         *self,
                                             GCancellable         *cancellable,
                                             GAsyncReadyCallback   callback,
                                             gpointer              user_data);
MPG_AVAILABLE_IN_ALL
gboolean      mpg_semaphore_acquire_finish  (MpgSemaphore         *self,
                                             GAsyncResult         *result,
                                             GError              **error);
MPG_AVAILABLE_IN_ALL
gboolean      mpg_semaphore_release         (MpgSemaphore         *self,
                                             GError              **error);
MPG_AVAILABLE_IN_ALL
guint         mpg_semaphore_get_value       (MpgSemaphore         *self);
MPG_AVAILABLE_IN_ALL
gboolean      mpg_semaphore_get_bounded     (MpgSemaphore         *self);
MPG_AVAILABLE_IN_ALL
guint         mpg_semaphore_get_max_value   (MpgSemaphore         *self);
MPG_AVAILABLE_IN_ALL
GVariant     *mpg_semaphore_to_handle       (MpgSemaphore         *self,
                                             GUnixFDList          *fd_list,
                                             GError              **error) G_GNUC_WARN_UNUSED_RESULT;
MPG_AVAILABLE_IN_ALL
MpgSemaphore *mpg_semaphore_new_from_handle (GVariant             *handle,
                                             GUnixFDList          *fd_list,
                                             GError              **error) G_GNUC_WARN_UNUSED_RESULT;

G_END_DECLS
