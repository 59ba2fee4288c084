/* mpg-process-private.h
 *
 * Copyright 2026 The libmpg authors
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#ifndef PACKAGE_VERSION
# error "config.h must be included before mpg-process-private.h"
#endif

#include <glib.h>

G_BEGIN_DECLS

void      _mpg_process_enter_worker (const char *name,
                                     gboolean    daemon);
G_NORETURN
void      _mpg_process_exit_worker  (int         exitcode);

G_END_DECLS
