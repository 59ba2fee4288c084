/* mpg-pool.h
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

#include "mpg-types.h"
#include "mpg-version-macros.h"

G_BEGIN_DECLS

#define MPG_TYPE_POOL (mpg_pool_get_type ())

MPG_AVAILABLE_IN_ALL
G_DECLARE_FINAL_TYPE (MpgPool, mpg_pool, MPG, POOL, GObject)

#define MPG_TYPE_POOL_ITERATOR (mpg_pool_iterator_get_type ())

MPG_AVAILABLE_IN_ALL
G_DECLARE_FINAL_TYPE (MpgPoolIterator, mpg_pool_iterator, MPG, POOL_ITERATOR, GObject)

MPG_AVAILABLE_IN_ALL
MpgPool         *mpg_pool_new                 (guint                 processes) G_GNUC_WARN_UNUSED_RESULT;
MPG_AVAILABLE_IN_ALL
MpgPool         *mpg_pool_new_full            (guint                 processes,
                                               MpgTaskFunc           initializer,
                                               gpointer              initializer_data,
                                               GDestroyNotify        initializer_data_free,
                                               GVariant             *initargs,
                                               guint                 maxtasksperchild) G_GNUC_WARN_UNUSED_RESULT;

MPG_AVAILABLE_IN_ALL
guint            mpg_pool_get_processes       (MpgPool              *self);
MPG_AVAILABLE_IN_ALL
MpgPoolBackend   mpg_pool_get_backend         (MpgPool              *self);
MPG_AVAILABLE_IN_ALL
MpgStartMethod   mpg_pool_get_start_method    (MpgPool              *self);
MPG_AVAILABLE_IN_ALL
void             mpg_pool_set_initializer     (MpgPool              *self,
                                               MpgTaskFunc           initializer,
                                               gpointer              initializer_data,
                                               GDestroyNotify        initializer_data_free);
MPG_AVAILABLE_IN_ALL
void             mpg_pool_set_initializer_name (MpgPool             *self,
                                               const char           *name,
                                               GUnixFDList          *fd_list);
MPG_AVAILABLE_IN_ALL
guint            mpg_pool_get_maxtasksperchild (MpgPool             *self);
MPG_AVAILABLE_IN_ALL
guint            mpg_pool_get_task_timeout    (MpgPool              *self);
MPG_AVAILABLE_IN_ALL
void             mpg_pool_set_task_timeout    (MpgPool              *self,
                                               guint                 timeout_msec);
MPG_AVAILABLE_IN_ALL
guint            mpg_pool_get_retries         (MpgPool              *self);
MPG_AVAILABLE_IN_ALL
void             mpg_pool_set_retries         (MpgPool              *self,
                                               guint                 retries);
MPG_AVAILABLE_IN_ALL
guint64          mpg_pool_get_tasks_submitted (MpgPool              *self);
MPG_AVAILABLE_IN_ALL
guint64          mpg_pool_get_tasks_completed (MpgPool              *self);
MPG_AVAILABLE_IN_ALL
guint            mpg_pool_get_workers_replaced (MpgPool             *self);
MPG_AVAILABLE_IN_ALL
GArray          *mpg_pool_dup_worker_pids     (MpgPool              *self) G_GNUC_WARN_UNUSED_RESULT;

MPG_AVAILABLE_IN_ALL
guint            mpg_pool_add_function        (MpgPool              *self,
                                               MpgTaskFunc           func,
                                               gpointer              user_data,
                                               GDestroyNotify        user_data_free);
MPG_AVAILABLE_IN_ALL
guint            mpg_pool_add_chunk_function  (MpgPool              *self,
                                               MpgTaskFunc           func,
                                               gpointer              user_data,
                                               GDestroyNotify        user_data_free);
MPG_AVAILABLE_IN_ALL
guint            mpg_pool_add_named_function  (MpgPool              *self,
                                               const char           *name);
MPG_AVAILABLE_IN_ALL
guint            mpg_pool_add_named_chunk_function (MpgPool         *self,
                                               const char           *name);
MPG_AVAILABLE_IN_ALL
void             mpg_pool_remove_function     (MpgPool              *self,
                                               guint                 function);

MPG_AVAILABLE_IN_ALL
GVariant        *mpg_pool_apply               (MpgPool              *self,
                                               guint                 function,
                                               GVariant             *arg,
                                               GCancellable         *cancellable,
                                               GError              **error) G_GNUC_WARN_UNUSED_RESULT;
MPG_AVAILABLE_IN_ALL
void             mpg_pool_apply_async         (MpgPool              *self,
                                               guint                 function,
                                               GVariant             *arg,
                                               GCancellable         *cancellable,
                                               GAsyncReadyCallback   callback,
                                               gpointer              user_data);
MPG_AVAILABLE_IN_ALL
GVariant        *mpg_pool_apply_finish        (MpgPool              *self,
                                               GAsyncResult         *result,
                                               GError              **error) G_GNUC_WARN_UNUSED_RESULT;

MPG_AVAILABLE_IN_ALL
GVariant        *mpg_pool_map                 (MpgPool              *self,
                                               guint                 function,
                                               GVariant             *items,
                                               guint                 chunksize,
                                               GCancellable         *cancellable,
                                               GError              **error) G_GNUC_WARN_UNUSED_RESULT;
MPG_AVAILABLE_IN_ALL
void             mpg_pool_map_async           (MpgPool              *self,
                                               guint                 function,
                                               GVariant             *items,
                                               guint                 chunksize,
                                               GCancellable         *cancellable,
                                               GAsyncReadyCallback   callback,
                                               gpointer              user_data);
MPG_AVAILABLE_IN_ALL
GVariant        *mpg_pool_map_finish          (MpgPool              *self,
                                               GAsyncResult         *result,
                                               GError              **error) G_GNUC_WARN_UNUSED_RESULT;

MPG_AVAILABLE_IN_ALL
GVariant        *mpg_pool_starmap             (MpgPool              *self,
                                               guint                 function,
                                               GVariant             *items,
                                               guint                 chunksize,
                                               GCancellable         *cancellable,
                                               GError              **error) G_GNUC_WARN_UNUSED_RESULT;
MPG_AVAILABLE_IN_ALL
void             mpg_pool_starmap_async       (MpgPool              *self,
                                               guint                 function,
                                               GVariant             *items,
                                               guint                 chunksize,
                                               GCancellable         *cancellable,
                                               GAsyncReadyCallback   callback,
                                               gpointer              user_data);
MPG_AVAILABLE_IN_ALL
GVariant        *mpg_pool_starmap_finish      (MpgPool              *self,
                                               GAsyncResult         *result,
                                               GError              **error) G_GNUC_WARN_UNUSED_RESULT;

MPG_AVAILABLE_IN_ALL
MpgPoolIterator *mpg_pool_imap                (MpgPool              *self,
                                               guint                 function,
                                               GVariant             *items,
                                               guint                 chunksize,
                                               GError              **error) G_GNUC_WARN_UNUSED_RESULT;
MPG_AVAILABLE_IN_ALL
MpgPoolIterator *mpg_pool_imap_unordered      (MpgPool              *self,
                                               guint                 function,
                                               GVariant             *items,
                                               guint                 chunksize,
                                               GError              **error) G_GNUC_WARN_UNUSED_RESULT;

MPG_AVAILABLE_IN_ALL
void             mpg_pool_close               (MpgPool              *self);
MPG_AVAILABLE_IN_ALL
void             mpg_pool_terminate           (MpgPool              *self);
MPG_AVAILABLE_IN_ALL
gboolean         mpg_pool_join                (MpgPool              *self,
                                               gint                  timeout_msec,
                                               GError              **error);

MPG_AVAILABLE_IN_ALL
gboolean         mpg_pool_iterator_next       (MpgPoolIterator      *self,
                                               gint                  timeout_msec,
                                               GCancellable         *cancellable,
                                               GVariant            **out_value,
                                               GError              **error);
MPG_AVAILABLE_IN_ALL
void             mpg_pool_iterator_next_async (MpgPoolIterator      *self,
                                               GCancellable         *cancellable,
                                               GAsyncReadyCallback   callback,
                                               gpointer              user_data);
MPG_AVAILABLE_IN_ALL
gboolean         mpg_pool_iterator_next_finish (MpgPoolIterator     *self,
                                               GAsyncResult         *result,
                                               GVariant            **out_value,
                                               GError              **error);
MPG_AVAILABLE_IN_ALL
guint            mpg_pool_iterator_get_length (MpgPoolIterator      *self);

G_END_DECLS
