/* mpg-connection.h
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

#define MPG_TYPE_CONNECTION (mpg_connection_get_type ())

MPG_AVAILABLE_IN_ALL
G_DECLARE_FINAL_TYPE (MpgConnection, mpg_connection, MPG, CONNECTION, GObject)

MPG_AVAILABLE_IN_ALL
gboolean        mpg_pipe_new                        (gboolean              duplex,
                                                     MpgConnection       **out_first,
                                                     MpgConnection       **out_second,
                                                     GError              **error);
MPG_AVAILABLE_IN_ALL
gboolean        mpg_connection_get_readable         (MpgConnection        *self);
MPG_AVAILABLE_IN_ALL
gboolean        mpg_connection_get_writable         (MpgConnection        *self);
MPG_AVAILABLE_IN_ALL
gboolean        mpg_connection_get_closed           (MpgConnection        *self);
MPG_AVAILABLE_IN_ALL
gsize           mpg_connection_get_max_message_size (MpgConnection        *self);
MPG_AVAILABLE_IN_ALL
void            mpg_connection_set_max_message_size (MpgConnection        *self,
                                                     gsize                 max_message_size);
MPG_AVAILABLE_IN_ALL
gint            mpg_connection_get_fd               (MpgConnection        *self);
MPG_AVAILABLE_IN_ALL
gboolean        mpg_connection_send                 (MpgConnection        *self,
                                                     GVariant             *value,
                                                     GCancellable         *cancellable,
                                                     GError              **error);
MPG_AVAILABLE_IN_ALL
gboolean        mpg_connection_send_with_fds        (MpgConnection        *self,
                                                     GVariant             *value,
                                                     GUnixFDList          *fd_list,
                                                     GCancellable         *cancellable,
                                                     GError              **error);
MPG_AVAILABLE_IN_ALL
gboolean        mpg_connection_send_bytes           (MpgConnection        *self,
                                                     GBytes               *bytes,
                                                     GCancellable         *cancellable,
                                                     GError              **error);
MPG_AVAILABLE_IN_ALL
GVariant       *mpg_connection_recv                 (MpgConnection        *self,
                                                     GCancellable         *cancellable,
                                                     GError              **error) G_GNUC_WARN_UNUSED_RESULT;
MPG_AVAILABLE_IN_ALL
GVariant       *mpg_connection_recv_with_fds        (MpgConnection        *self,
                                                     GUnixFDList         **out_fd_list,
                                                     GCancellable         *cancellable,
                                                     GError              **error) G_GNUC_WARN_UNUSED_RESULT;
MPG_AVAILABLE_IN_ALL
GBytes         *mpg_connection_recv_bytes           (MpgConnection        *self,
                                                     GCancellable         *cancellable,
                                                     GError              **error) G_GNUC_WARN_UNUSED_RESULT;
MPG_AVAILABLE_IN_ALL
void            mpg_connection_recv_async           (MpgConnection        *self,
                                                     GCancellable         *cancellable,
                                                     GAsyncReadyCallback   callback,
                                                     gpointer              user_data);
MPG_AVAILABLE_IN_ALL
GVariant       *mpg_connection_recv_finish          (MpgConnection        *self,
                                                     GAsyncResult         *result,
                                                     GError              **error) G_GNUC_WARN_UNUSED_RESULT;
MPG_AVAILABLE_IN_ALL
gboolean        mpg_connection_poll                 (MpgConnection        *self,
                                                     gint                  timeout_msec,
                                                     GCancellable         *cancellable,
                                                     GError              **error);
MPG_AVAILABLE_IN_ALL
void            mpg_connection_close                (MpgConnection        *self);
MPG_AVAILABLE_IN_ALL
GVariant       *mpg_connection_to_handle            (MpgConnection        *self,
                                                     GUnixFDList          *fd_list,
                                                     GError              **error) G_GNUC_WARN_UNUSED_RESULT;
MPG_AVAILABLE_IN_ALL
MpgConnection  *mpg_connection_new_from_handle      (GVariant             *handle,
                                                     GUnixFDList          *fd_list,
                                                     GError              **error) G_GNUC_WARN_UNUSED_RESULT;

G_END_DECLS
