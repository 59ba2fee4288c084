/* mpg-fork-private.h
 *
 * Copyright 2026 The libmpg authors
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#ifndef PACKAGE_VERSION
# error "config.h must be included before mpg-fork-private.h"
#endif

#include <sys/types.h>

#include <glib.h>

#include "mpg-types.h"

G_BEGIN_DECLS

/*
 * The fork start method's machinery: forking (from a long-lived thread, via
 * the binding's fork function if one is set), setting a child up, and the
 * registry of the library's parent-side fds that a child must not keep.
 */

/* Runs in the child after its set-up; must not return (it calls _exit()). */
typedef void (*MpgChildMain) (gpointer data);

void      _mpg_fork_set_func        (MpgForkFunc     func,
                                     gpointer        user_data,
                                     GDestroyNotify  destroy);
gboolean  _mpg_fork_pipe            (int             fds[2],
                                     GError        **error);
gboolean  _mpg_fork_socketpair      (int             fds[2],
                                     GError        **error);
int       _mpg_fork_register_fd     (int             fd);
pid_t     _mpg_fork_plain           (void);
void      _mpg_fork_close_fd        (int            *fd);
gboolean  _mpg_fork                 (int             child_fd,
                                     MpgChildMain    child_main,
                                     gpointer        data,
                                     pid_t          *out_pid,
                                     int            *out_pidfd,
                                     GError        **error);
gboolean  _mpg_fork_exec            (char          **argv,
                                     char          **envp,
                                     const int      *fds,
                                     guint           n_fds,
                                     pid_t          *out_pid,
                                     int            *out_pidfd,
                                     GError        **error);
int       _mpg_pidfd_open           (pid_t           pid);
int       _mpg_pidfd_send_signal    (int             pidfd,
                                     int             sig);
void      _mpg_write_all            (int             fd,
                                     const guint8   *data,
                                     gsize           len);

G_END_DECLS
