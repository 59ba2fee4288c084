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

/*
 * _mpg_queue_flush_all:
 *
 * Waits until this process has sent every message that its unbounded
 * queues buffered because their sockets were full, but for queues whose
 * join was cancelled (mpg_queue_cancel_join_thread()): those messages are
 * dropped. For the exit of a process: registered with atexit() by the
 * first buffer, and called by a child's exit function (children leave with
 * _exit()).
 */
void _mpg_queue_flush_all (void);

G_END_DECLS
