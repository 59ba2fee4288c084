/* mpg-wait.h
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

#include "mpg-version-macros.h"

G_BEGIN_DECLS

MPG_AVAILABLE_IN_ALL
GPtrArray *mpg_wait (GPtrArray     *objects,
                     gint           timeout_msec,
                     GCancellable  *cancellable,
                     GError       **error) G_GNUC_WARN_UNUSED_RESULT;

G_END_DECLS
