/* mpg-queue.h
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

#define MPG_TYPE_QUEUE (mpg_queue_get_type ())

MPG_AVAILABLE_IN_ALL
G_DECLARE_FINAL_TYPE (MpgQueue, mpg_queue, MPG, QUEUE, GObject)

/**
 * MpgQueueWatchFunc:
 * @queue: the queue
 * @value: (transfer none): the message that was taken from the queue
 * @user_data: (closure): the data given to [method@Mpg.Queue.add_watch]
 *
 * Called in the main context of a watch for each message it takes from
 * the queue.
 *
 * Returns: %G_SOURCE_CONTINUE to keep watching, %G_SOURCE_REMOVE to stop
 *
 * Since: 0.1
 */
typedef gboolean (*MpgQueueWatchFunc) (MpgQueue *queue,
                                       GVariant *value,
                                       gpointer  user_data);

MPG_AVAILABLE_IN_ALL
MpgQueue *mpg_queue_new                   (guint                 maxsize,
                                           GError              **error) G_GNUC_WARN_UNUSED_RESULT;
MPG_AVAILABLE_IN_ALL
MpgQueue *mpg_queue_new_joinable          (guint                 maxsize,
                                           GError              **error) G_GNUC_WARN_UNUSED_RESULT;
MPG_AVAILABLE_IN_ALL
guint     mpg_queue_get_maxsize           (MpgQueue             *self);
MPG_AVAILABLE_IN_ALL
gboolean  mpg_queue_get_joinable          (MpgQueue             *self);
MPG_AVAILABLE_IN_ALL
gsize     mpg_queue_get_max_message_size  (MpgQueue             *self);
MPG_AVAILABLE_IN_ALL
void      mpg_queue_set_max_message_size  (MpgQueue             *self,
                                           gsize                 max_message_size);
MPG_AVAILABLE_IN_ALL
gsize     mpg_queue_get_max_buffer_size   (MpgQueue             *self);
MPG_AVAILABLE_IN_ALL
void      mpg_queue_set_max_buffer_size   (MpgQueue             *self,
                                           gsize                 max_buffer_size);
MPG_AVAILABLE_IN_ALL
gboolean  mpg_queue_put                   (MpgQueue             *self,
                                           GVariant             *value,
                                           gboolean              block,
                                           gint                  timeout_msec,
                                           GCancellable         *cancellable,
                                           GError              **error);
MPG_AVAILABLE_IN_ALL
gboolean  mpg_queue_put_with_fds          (MpgQueue             *self,
                                           GVariant             *value,
                                           GUnixFDList          *fd_list,
                                           gboolean              block,
                                           gint                  timeout_msec,
                                           GCancellable         *cancellable,
                                           GError              **error);
MPG_AVAILABLE_IN_ALL
GVariant *mpg_queue_get                   (MpgQueue             *self,
                                           gboolean              block,
                                           gint                  timeout_msec,
                                           GCancellable         *cancellable,
                                           GError              **error) G_GNUC_WARN_UNUSED_RESULT;
MPG_AVAILABLE_IN_ALL
GVariant *mpg_queue_get_with_fds          (MpgQueue             *self,
                                           gboolean              block,
                                           gint                  timeout_msec,
                                           GUnixFDList         **out_fd_list,
                                           GCancellable         *cancellable,
                                           GError              **error) G_GNUC_WARN_UNUSED_RESULT;
MPG_AVAILABLE_IN_ALL
void      mpg_queue_get_async             (MpgQueue             *self,
                                           GCancellable         *cancellable,
                                           GAsyncReadyCallback   callback,
                                           gpointer              user_data);
MPG_AVAILABLE_IN_ALL
GVariant *mpg_queue_get_finish            (MpgQueue             *self,
                                           GAsyncResult         *result,
                                           GError              **error) G_GNUC_WARN_UNUSED_RESULT;
MPG_AVAILABLE_IN_ALL
guint     mpg_queue_add_watch             (MpgQueue             *self,
                                           MpgQueueWatchFunc     func,
                                           gpointer              user_data,
                                           GDestroyNotify        notify);
MPG_AVAILABLE_IN_ALL
guint     mpg_queue_qsize                 (MpgQueue             *self);
MPG_AVAILABLE_IN_ALL
gboolean  mpg_queue_empty                 (MpgQueue             *self);
MPG_AVAILABLE_IN_ALL
gboolean  mpg_queue_full                  (MpgQueue             *self);
MPG_AVAILABLE_IN_ALL
void      mpg_queue_close                 (MpgQueue             *self);
MPG_AVAILABLE_IN_ALL
gboolean  mpg_queue_task_done             (MpgQueue             *self,
                                           GError              **error);
MPG_AVAILABLE_IN_ALL
gboolean  mpg_queue_join                  (MpgQueue             *self,
                                           gint                  timeout_msec,
                                           GCancellable         *cancellable,
                                           GError              **error);
MPG_AVAILABLE_IN_ALL
gboolean  mpg_queue_join_thread           (MpgQueue             *self,
                                           gint                  timeout_msec,
                                           GCancellable         *cancellable,
                                           GError              **error);
MPG_AVAILABLE_IN_ALL
void      mpg_queue_cancel_join_thread    (MpgQueue             *self);
MPG_AVAILABLE_IN_ALL
GVariant *mpg_queue_to_handle             (MpgQueue             *self,
                                           GUnixFDList          *fd_list,
                                           GError              **error) G_GNUC_WARN_UNUSED_RESULT;
MPG_AVAILABLE_IN_ALL
MpgQueue *mpg_queue_new_from_handle       (GVariant             *handle,
                                           GUnixFDList          *fd_list,
                                           GError              **error) G_GNUC_WARN_UNUSED_RESULT;

G_END_DECLS
