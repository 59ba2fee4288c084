/* mpg-runtime.h
 *
 * Copyright 2026 The libmpg authors
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#if !defined(MPG_INSIDE) && !defined(MPG_COMPILATION)
# error "Only <libmpg.h> can be included directly."
#endif

#include <glib.h>

#include "mpg-types.h"
#include "mpg-version-macros.h"

G_BEGIN_DECLS

MPG_AVAILABLE_IN_ALL
guint          mpg_cpu_count          (void);
MPG_AVAILABLE_IN_ALL
MpgStartMethod mpg_get_start_method   (void);
MPG_AVAILABLE_IN_ALL
void           mpg_set_start_method   (MpgStartMethod  method);
MPG_AVAILABLE_IN_ALL
void           mpg_set_fork_func      (MpgForkFunc     fork_func,
                                       gpointer        user_data,
                                       GDestroyNotify  destroy);

G_END_DECLS
