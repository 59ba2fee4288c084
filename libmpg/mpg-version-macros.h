/* mpg-version-macros.h
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

#include "mpg-version.h"

#ifndef _MPG_EXTERN
# define _MPG_EXTERN extern
#endif


#ifdef MPG_DISABLE_DEPRECATION_WARNINGS
# define MPG_DEPRECATED _MPG_EXTERN
# define MPG_DEPRECATED_FOR(f) _MPG_EXTERN
# define MPG_UNAVAILABLE(maj,min) _MPG_EXTERN
#else
# define MPG_DEPRECATED G_DEPRECATED _MPG_EXTERN
# define MPG_DEPRECATED_FOR(f) G_DEPRECATED_FOR (f) _MPG_EXTERN
# define MPG_UNAVAILABLE(maj,min) G_UNAVAILABLE (maj, min) _MPG_EXTERN
#endif

#define MPG_VERSION_1_0 (G_ENCODE_VERSION (1, 0))

/* Every 0.x and 1.x release implements the 1.0 API (Mpg-1.0). */
#define MPG_VERSION_CUR_STABLE (MPG_VERSION_1_0)

#ifndef MPG_VERSION_MIN_REQUIRED
# define MPG_VERSION_MIN_REQUIRED (MPG_VERSION_CUR_STABLE)
#endif

#ifndef MPG_VERSION_MAX_ALLOWED
# define MPG_VERSION_MAX_ALLOWED (MPG_VERSION_CUR_STABLE)
#endif

#if MPG_VERSION_MAX_ALLOWED < MPG_VERSION_MIN_REQUIRED
# error "MPG_VERSION_MAX_ALLOWED must be >= MPG_VERSION_MIN_REQUIRED"
#endif

#define MPG_AVAILABLE_IN_ALL _MPG_EXTERN

#if MPG_VERSION_MIN_REQUIRED >= MPG_VERSION_1_0
# define MPG_DEPRECATED_IN_1_0 MPG_DEPRECATED
# define MPG_DEPRECATED_IN_1_0_FOR(f) MPG_DEPRECATED_FOR (f)
#else
# define MPG_DEPRECATED_IN_1_0 _MPG_EXTERN
# define MPG_DEPRECATED_IN_1_0_FOR(f) _MPG_EXTERN
#endif

#if MPG_VERSION_MAX_ALLOWED < MPG_VERSION_1_0
# define MPG_AVAILABLE_IN_1_0 MPG_UNAVAILABLE (1, 0)
#else
# define MPG_AVAILABLE_IN_1_0 _MPG_EXTERN
#endif
