/* mpg-spawn.h
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

/**
 * MpgDispatchFunc:
 * @name: the task's name, as the parent gave it
 * @arg: the task's argument
 * @fd_list: (nullable): the fds that handles in @arg refer to
 * @user_data: the data given to [func@Mpg.set_task_dispatcher]
 * @error: return location for a #GError
 *
 * Runs the task called @name in a spawned worker: finds it (a C symbol, a
 * Python `module:qualname`, a JavaScript module and export) and calls it.
 *
 * Returns: (transfer full) (nullable): the task's result, %NULL for none
 *   or with @error set
 *
 * Since: 0.1
 */
typedef GVariant *(*MpgDispatchFunc) (const char   *name,
                                      GVariant     *arg,
                                      GUnixFDList  *fd_list,
                                      gpointer      user_data,
                                      GError      **error);

MPG_AVAILABLE_IN_ALL
void      mpg_init                  (int              *argc,
                                     char           ***argv);
MPG_AVAILABLE_IN_ALL
void      mpg_worker_main           (void);
MPG_AVAILABLE_IN_ALL
void      mpg_set_spawn_command     (const char * const *argv);
MPG_AVAILABLE_IN_ALL
void      mpg_set_task_dispatcher   (MpgDispatchFunc   dispatcher,
                                     gpointer          user_data,
                                     GDestroyNotify    destroy);

G_END_DECLS
