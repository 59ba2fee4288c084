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
 * travels in the datagram itself. A larger one is written to a sealed
 * memfd, and the datagram carries only a 16-byte reference ("MPGM", flags,
 * size) with the memfd as its first passed fd. The file descriptors of a
 * message (GVariant `h` values) follow as SCM_RIGHTS.
 */

#define MPG_CHANNEL_INLINE_MAX (64 * 1024)
#define MPG_CHANNEL_MAX_FDS    250

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

G_END_DECLS
