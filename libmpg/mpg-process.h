/* mpg-process.h
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

/**
 * MPG_PROCESS_EXITCODE_NONE:
 *
 * The value of [property@Mpg.Process:exitcode] while the process has not
 * been started or has not ended yet (Python's `None`).
 *
 * Since: 0.1
 */
#define MPG_PROCESS_EXITCODE_NONE (-2147483647 - 1)

#define MPG_TYPE_PROCESS (mpg_process_get_type ())

MPG_AVAILABLE_IN_ALL
G_DECLARE_DERIVABLE_TYPE (MpgProcess, mpg_process, MPG, PROCESS, GObject)

/**
 * MpgProcessClass:
 * @parent_class: the parent class
 * @run: the code the child runs; the default calls the target. Runs in the
 *   child process: its return value (or error) becomes the process's result.
 *
 * The class of [class@Mpg.Process]. Subclasses override @run, as Python
 * users of `multiprocessing` override `Process.run()`.
 *
 * Since: 0.1
 */
struct _MpgProcessClass
{
  GObjectClass parent_class;

  GVariant *(*run) (MpgProcess  *self,
                    GError     **error);

  /*< private >*/
  gpointer _reserved[12];
};

MPG_AVAILABLE_IN_ALL
MpgProcess     *mpg_process_new              (GVariant             *args,
                                              MpgTaskFunc           target,
                                              gpointer              user_data,
                                              GDestroyNotify        user_data_free) G_GNUC_WARN_UNUSED_RESULT;
MPG_AVAILABLE_IN_ALL
void            mpg_process_set_target       (MpgProcess           *self,
                                              MpgTaskFunc           target,
                                              gpointer              user_data,
                                              GDestroyNotify        user_data_free);
MPG_AVAILABLE_IN_ALL
void            mpg_process_set_target_name  (MpgProcess           *self,
                                              const char           *name);
MPG_AVAILABLE_IN_ALL
void            mpg_process_set_fd_list      (MpgProcess           *self,
                                              GUnixFDList          *fd_list);
MPG_AVAILABLE_IN_ALL
GVariant       *mpg_process_get_args         (MpgProcess           *self);
MPG_AVAILABLE_IN_ALL
void            mpg_process_set_args         (MpgProcess           *self,
                                              GVariant             *args);
MPG_AVAILABLE_IN_ALL
const char     *mpg_process_get_name         (MpgProcess           *self);
MPG_AVAILABLE_IN_ALL
void            mpg_process_set_name         (MpgProcess           *self,
                                              const char           *name);
MPG_AVAILABLE_IN_ALL
gboolean        mpg_process_get_daemon       (MpgProcess           *self);
MPG_AVAILABLE_IN_ALL
void            mpg_process_set_daemon       (MpgProcess           *self,
                                              gboolean              daemon);
MPG_AVAILABLE_IN_ALL
MpgStartMethod  mpg_process_get_start_method (MpgProcess           *self);
MPG_AVAILABLE_IN_ALL
void            mpg_process_set_start_method (MpgProcess           *self,
                                              MpgStartMethod        method);
MPG_AVAILABLE_IN_ALL
gint            mpg_process_get_pid          (MpgProcess           *self);
MPG_AVAILABLE_IN_ALL
gint            mpg_process_get_exitcode     (MpgProcess           *self);
MPG_AVAILABLE_IN_ALL
gint            mpg_process_get_sentinel     (MpgProcess           *self);
MPG_AVAILABLE_IN_ALL
gboolean        mpg_process_start            (MpgProcess           *self,
                                              GError              **error);
MPG_AVAILABLE_IN_ALL
GVariant       *mpg_process_run              (MpgProcess           *self,
                                              GError              **error) G_GNUC_WARN_UNUSED_RESULT;
MPG_AVAILABLE_IN_ALL
gboolean        mpg_process_is_alive         (MpgProcess           *self);
MPG_AVAILABLE_IN_ALL
gboolean        mpg_process_join             (MpgProcess           *self,
                                              gint                  timeout_msec,
                                              GCancellable         *cancellable,
                                              GError              **error);
MPG_AVAILABLE_IN_ALL
void            mpg_process_join_async       (MpgProcess           *self,
                                              GCancellable         *cancellable,
                                              GAsyncReadyCallback   callback,
                                              gpointer              user_data);
MPG_AVAILABLE_IN_ALL
gboolean        mpg_process_join_finish      (MpgProcess           *self,
                                              GAsyncResult         *result,
                                              GError              **error);
MPG_AVAILABLE_IN_ALL
gboolean        mpg_process_terminate        (MpgProcess           *self,
                                              GError              **error);
MPG_AVAILABLE_IN_ALL
gboolean        mpg_process_kill             (MpgProcess           *self,
                                              GError              **error);
MPG_AVAILABLE_IN_ALL
gboolean        mpg_process_close            (MpgProcess           *self,
                                              GError              **error);
MPG_AVAILABLE_IN_ALL
GVariant       *mpg_process_dup_result       (MpgProcess           *self,
                                              GError              **error) G_GNUC_WARN_UNUSED_RESULT;

MPG_AVAILABLE_IN_ALL
MpgProcess     *mpg_current_process          (void);
MPG_AVAILABLE_IN_ALL
MpgProcess     *mpg_parent_process           (void);
MPG_AVAILABLE_IN_ALL
GList          *mpg_active_children          (void) G_GNUC_WARN_UNUSED_RESULT;

G_END_DECLS
