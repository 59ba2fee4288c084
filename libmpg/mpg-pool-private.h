/* mpg-pool-private.h
 *
 * Copyright 2026 The libmpg authors
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#ifndef PACKAGE_VERSION
# error "config.h must be included before mpg-pool-private.h"
#endif

#include <glib.h>

G_BEGIN_DECLS

gboolean  _mpg_pool_reply_check (GVariant   *message,
                                 guint32     chunk,
                                 guint64     serial,
                                 guint       length,
                                 GVariant  **out_results,
                                 GVariant  **out_failures,
                                 GError    **error);

G_END_DECLS
