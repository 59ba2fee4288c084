/* mpg-error.c
 *
 * Copyright 2026 The libmpg authors
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include "mpg-error.h"

/**
 * mpg_error_quark:
 *
 * The quark of the [error@Mpg.Error] domain; use %MPG_ERROR.
 *
 * Returns: the error domain's quark
 *
 * Since: 0.1
 */
G_DEFINE_QUARK (mpg-error-quark, mpg_error)
