/* mpg-spawn-private.h
 *
 * Copyright 2026 The libmpg authors
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#ifndef PACKAGE_VERSION
# error "config.h must be included before mpg-spawn-private.h"
#endif

#include <sys/types.h>

#include <gio/gio.h>
#include <gio/gunixfdlist.h>

#include "mpg-types.h"

G_BEGIN_DECLS

/* The environment variable that makes a spawned program a worker. */
#define MPG_WORKER_ENV "MPG_WORKER"

void      _mpg_check_not_a_lost_worker (void);
char     *_mpg_task_name_for        (MpgTaskFunc    func,
                                     gpointer       user_data,
                                     GError       **error);
gboolean  _mpg_spawn                (const char    *kind,
                                     const int     *fds,
                                     guint          n_fds,
                                     pid_t         *out_pid,
                                     int           *out_pidfd,
                                     GError       **error);
GVariant *_mpg_dispatch             (const char    *name,
                                     GVariant      *arg,
                                     GUnixFDList   *fd_list,
                                     GError       **error);

gboolean  _mpg_forkserver_start     (const char    *kind,
                                     const int     *fds,
                                     guint          n_fds,
                                     pid_t         *out_pid,
                                     int           *out_pidfd,
                                     int           *out_status_fd,
                                     GError       **error);
gint      _mpg_forkserver_read_status (int          status_fd,
                                       gint         timeout_msec);

/* Worker entry points, in the spawned program. */
char    **_mpg_spawn_dup_command    (GError       **error);

G_NORETURN void _mpg_process_spawned_main (void);
G_NORETURN void _mpg_pool_spawned_main    (void);
G_NORETURN void _mpg_forkserver_main      (void);

G_END_DECLS
