/* mpg-error.c
 *
 * Copyright 2026 The libmpg authors
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include "mpg-error.h"

G_DEFINE_QUARK (mpg-error-quark, mpg_error)
