/* mpg-queue-private.h
 *
 * Copyright 2026 The libmpg authors
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#ifndef PACKAGE_VERSION
# error "config.h must be included before mpg-queue-private.h"
#endif

#include "mpg-queue.h"

G_BEGIN_DECLS

/*
 * _mpg_queue_get_receive_fd:
 *
 * The fd that becomes readable when a message may be available to
 * mpg_queue_get() (another consumer may take it first), for mpg_wait().
 * Owned by the queue. Returns -1 if the queue is closed.
 */
int _mpg_queue_get_receive_fd (MpgQueue *self);

G_END_DECLS
