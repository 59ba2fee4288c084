/* mpg-channel-private.h
 *
 * Copyright 2026 The libmpg authors
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#ifndef PACKAGE_VERSION
# error "config.h must be included before mpg-channel-private.h"
#endif

#include <gio/gio.h>
#include <gio/gunixfdlist.h>

G_BEGIN_DECLS

/*
 * The channel: whole messages over an AF_UNIX SOCK_SEQPACKET socket, which
 * several processes may share. Each message is one datagram, so that
 * writers never interleave and readers never split a message, without any
 * lock that a killed process could leave held.
 *
 * A frame (see mpg-wire-private.h) up to MPG_CHANNEL_INLINE_MAX bytes
 * travels in the datagram itself. A larger one is written to a memfd, and
 * the datagram carries only a 24-byte reference with the memfd as its
 * first passed fd:
 *
 *   offset  size  field
 *   0       4     magic "MPGM"
 *   4       4     flags (little endian u32): 0 or MPG_CHANNEL_REF_REUSE
 *   8       8     size S of the frame (little endian u64)
 *   16      8     offset O of the frame in the memfd (little endian u64,
 *                 at most 4096), chosen so that the data has the same
 *                 alignment within a cache line as in the sender's memory
 *
 * The file descriptors of a message (GVariant `h` values) follow the
 * memfd, or come alone with an inline frame, as SCM_RIGHTS.
 *
 * The flags tell how the memfd comes:
 *
 * - 0: sealed against writing and resizing, exactly O + S bytes long.
 *   Nobody can change it any more, so the receiver maps it and the value
 *   it returns uses the mapping without a copy.
 * - MPG_CHANNEL_REF_REUSE: a buffer that the sender reuses for messages
 *   to the same socket (frames up to MPG_CHANNEL_REUSE_MAX bytes), at
 *   least O + S bytes long. Its first 4 bytes are not zero while it holds
 *   a message. The receiver copies the frame out before it checks
 *   anything, then zeroes those 4 bytes: the sender may then write its
 *   next message there. Allocating and freeing a memfd's pages for each
 *   message costs more than copying the message.
 */

#define MPG_CHANNEL_INLINE_MAX (64 * 1024)
#define MPG_CHANNEL_REUSE_MAX  (2 * 1024 * 1024)
#define MPG_CHANNEL_MAX_FDS    250

#define MPG_CHANNEL_REF_SIZE        24
#define MPG_CHANNEL_REF_MAX_OFFSET  4096
#define MPG_CHANNEL_REF_REUSE       1u

gboolean  _mpg_channel_socketpair   (int            fds[2],
                                     GError       **error);
gboolean  _mpg_channel_wait         (int            fd,
                                     GIOCondition   condition,
                                     gint64         deadline,
                                     GCancellable  *cancellable,
                                     GError       **error);
gboolean  _mpg_channel_send         (int            fd,
                                     GVariant      *value,
                                     GUnixFDList   *fd_list,
                                     gsize          max_message,
                                     gint64         deadline,
                                     GCancellable  *cancellable,
                                     GError       **error);
GVariant *_mpg_channel_receive      (int            fd,
                                     gsize          max_message,
                                     gint64         deadline,
                                     GCancellable  *cancellable,
                                     GUnixFDList  **out_fd_list,
                                     GError       **error);
GVariant *_mpg_channel_decode       (const guint8  *data,
                                     gsize          len,
                                     int           *fds,
                                     guint          n_fds,
                                     gsize          max_message,
                                     GUnixFDList  **out_fd_list,
                                     GError       **error);

/*
 * Test-only fault injection (tests/queue-stress.c): the calling process
 * kills itself with SIGKILL in its @countdown-th send (after a large
 * message's memfd was written, before the datagram is sent) or receive
 * (after the datagram was taken from the socket, before it is decoded).
 */
typedef enum
{
  MPG_CHANNEL_FAULT_NONE,
  MPG_CHANNEL_FAULT_KILL_IN_SEND,
  MPG_CHANNEL_FAULT_KILL_IN_RECEIVE,
} MpgChannelFault;

void      _mpg_channel_set_fault    (MpgChannelFault  fault,
                                     guint            countdown);

/*
 * Test-only: how long a sender keeps a reused memfd that it does not use
 * (200 ms by default), in microseconds.
 */
void      _mpg_channel_set_buffer_idle_time (gint64 usec);

G_END_DECLS
