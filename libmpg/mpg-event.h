/* mpg-event.h
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

#define MPG_TYPE_EVENT (mpg_event_get_type ())

MPG_AVAILABLE_IN_ALL
G_DECLARE_FINAL_TYPE (MpgEvent, mpg_event, MPG, EVENT, GObject)

MPG_AVAILABLE_IN_ALL
MpgEvent *mpg_event_new             (GError              **error) G_GNUC_WARN_UNUSED_RESULT;
MPG_AVAILABLE_IN_ALL
gboolean  mpg_event_is_set          (MpgEvent             *self);
MPG_AVAILABLE_IN_ALL
void      mpg_event_set             (MpgEvent             *self);
MPG_AVAILABLE_IN_ALL
void      mpg_event_clear           (MpgEvent             *self);
MPG_AVAILABLE_IN_ALL
gboolean  mpg_event_wait            (MpgEvent             *self,
                                     gint                  timeout_msec,
                                     GCancellable         *cancellable,
                                     GError              **error);
MPG_AVAILABLE_IN_ALL
void      mpg_event_wait_async      (MpgEvent             *self,
                                     GCancellable         *cancellable,
                                     GAsyncReadyCallback   callback,
                                     gpointer              user_data);
MPG_AVAILABLE_IN_ALL
gboolean  mpg_event_wait_finish     (MpgEvent             *self,
                                     GAsyncResult         *result,
                                     GError              **error);
MPG_AVAILABLE_IN_ALL
GVariant *mpg_event_to_handle       (MpgEvent             *self,
                                     GUnixFDList          *fd_list,
                                     GError              **error) G_GNUC_WARN_UNUSED_RESULT;
MPG_AVAILABLE_IN_ALL
MpgEvent *mpg_event_new_from_handle (GVariant             *handle,
                                     GUnixFDList          *fd_list,
                                     GError              **error) G_GNUC_WARN_UNUSED_RESULT;

G_END_DECLS
