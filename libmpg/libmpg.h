/* libmpg.h
 *
 * Copyright 2026 The libmpg authors
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <glib.h>
#include <glib-object.h>
#include <gio/gio.h>

#define MPG_INSIDE
# include "mpg-version.h"
# include "mpg-version-macros.h"
# include "mpg-enums.h"
# include "mpg-error.h"
# include "mpg-types.h"
# include "mpg-runtime.h"
# include "mpg-process.h"
# include "mpg-connection.h"
# include "mpg-queue.h"
# include "mpg-pool.h"
# include "mpg-spawn.h"
# include "mpg-wait.h"
# include "mpg-lock.h"
# include "mpg-semaphore.h"
# include "mpg-event.h"
# include "mpg-condition.h"
# include "mpg-barrier.h"
# include "mpg-shared-memory.h"
# include "mpg-array.h"
#undef MPG_INSIDE
