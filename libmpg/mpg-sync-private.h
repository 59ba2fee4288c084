/* mpg-sync-private.h: the shared page behind every synchronization primitive
 *
 * Copyright 2026 The libmpg authors
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <pthread.h>

#include <gio/gio.h>
#include <gio/gunixfdlist.h>

#include "mpg-lock.h"

G_BEGIN_DECLS

/*
 * Every primitive (Lock, RLock, Semaphore, Event, Condition, Barrier) is a
 * page of a sealed memfd that each process maps. The page starts with an
 * MpgSyncHeader: a guard (a robust, process-shared pthread mutex, held only
 * for the few instructions that change the state, so that a process killed
 * inside still lets the others in, with EOWNERDEAD), a sequence number that
 * is the futex word sleepers wait on, and the count of sleepers. The
 * primitive's own state follows the header (MpgSync.state).
 *
 * Waiting is: take the guard, look at the state, and if one must wait,
 * _mpg_sync_wait() releases the guard, sleeps on the sequence number and
 * takes the guard again. A change of state bumps the sequence number and
 * wakes the sleepers when the guard is released (_mpg_sync_unlock() after
 * _mpg_sync_changed()). Sleeps are cut into slices so that a waiter can
 * look at whether the processes it waits for are still alive (w->check_due):
 * the kernel tells nobody when the holder of a lock that lives in shared
 * memory dies.
 *
 * A process is named by its pid and its start time (clock ticks after boot,
 * from /proc/PID/stat), so that a pid used again by a new process is not
 * taken for the old one.
 */

#define MPG_SYNC_MAGIC 0x5347504du  /* "MPGS" */
#define MPG_SYNC_SIZE  4096

typedef enum
{
  MPG_SYNC_LOCK = 1,
  MPG_SYNC_RLOCK,
  MPG_SYNC_SEMAPHORE,
  MPG_SYNC_EVENT,
  MPG_SYNC_CONDITION,
  MPG_SYNC_BARRIER,
} MpgSyncKind;

typedef struct
{
  gint32  pid;     /* 0: nobody */
  gint32  padding;
  guint64 start;   /* start time, clock ticks after boot; 0 if unknown */
  guint64 thread;  /* pthread_self() in that process */
} MpgSyncOwner;

typedef struct
{
  guint32         magic;
  guint32         kind;
  guint32         seq;        /* futex word */
  guint32         n_sleepers;
  pthread_mutex_t guard;
} MpgSyncHeader;

#define MPG_SYNC_STATE_OFFSET ((sizeof (MpgSyncHeader) + 63) & ~(gsize) 63)
#define MPG_SYNC_STATE_MAX    (MPG_SYNC_SIZE - MPG_SYNC_STATE_OFFSET)

typedef struct
{
  int            fd;
  MpgSyncKind    kind;
  MpgSyncHeader *header;
  gpointer       state;     /* MPG_SYNC_STATE_MAX bytes after the header */
} MpgSync;

MpgSync  *_mpg_sync_new              (MpgSyncKind    kind,
                                      GError       **error);
MpgSync  *_mpg_sync_new_from_handle  (GVariant      *handle,
                                      GUnixFDList   *fd_list,
                                      GError       **error);
void      _mpg_sync_free             (MpgSync       *sync);
/* A full reference, not floating. */
GVariant *_mpg_sync_to_handle        (MpgSync       *sync,
                                      GUnixFDList   *fd_list,
                                      GError       **error);
const char *_mpg_sync_kind_name      (MpgSyncKind    kind);

/* Takes the guard. Returns TRUE if its last holder died holding it: the
 * state may be half changed and the caller repairs what it can. */
gboolean  _mpg_sync_lock             (MpgSync       *sync);
/* Marks the state changed: the sleepers are woken at _mpg_sync_unlock(). */
void      _mpg_sync_changed          (MpgSync       *sync);
void      _mpg_sync_unlock           (MpgSync       *sync);

typedef struct
{
  MpgSync      *sync;
  gint          timeout_msec;
  gint64        deadline;     /* monotonic µs; -1: none; 0: not yet known */
  gint64        next_check;   /* monotonic µs */
  gint64        slice;        /* µs */
  GCancellable *cancellable;
  gulong        cancel_id;
  gboolean      check_due;    /* set by _mpg_sync_wait(): look at holders */
} MpgSyncWait;

/* timeout_msec: -1 waits forever, 0 not at all. */
void      _mpg_sync_wait_init        (MpgSyncWait   *w,
                                      MpgSync       *sync,
                                      gint           timeout_msec,
                                      GCancellable  *cancellable);
void      _mpg_sync_wait_clear       (MpgSyncWait   *w);
/* With the guard held: releases it, sleeps until a change, a check time,
 * the deadline or cancellation, and takes it again. Returns FALSE with
 * MPG_ERROR_TIMEOUT or G_IO_ERROR_CANCELLED (guard held in all cases). */
gboolean  _mpg_sync_wait             (MpgSyncWait   *w,
                                      GError       **error);

/* Without the guard, for states kept in atomic words: sleeps until
 * sync's sequence number is not @seq (read before the state was looked
 * at), a check time, the deadline or cancellation. Returns as
 * _mpg_sync_wait(). A change is published with _mpg_sync_bump(). */
gboolean  _mpg_sync_sleep            (MpgSyncWait   *w,
                                      guint32        seq,
                                      GError       **error);
guint32   _mpg_sync_seq              (MpgSync       *sync);
void      _mpg_sync_bump             (MpgSync       *sync);

void      _mpg_sync_self             (MpgSyncOwner  *out);
gboolean  _mpg_sync_owner_alive      (const MpgSyncOwner *owner);
gboolean  _mpg_sync_same_process     (const MpgSyncOwner *a,
                                      const MpgSyncOwner *b);

/* Runs @func in a new thread and completes a GTask with its result in the
 * caller's thread-default main context: value >= 0, or -1 with an error. */
typedef gssize (*MpgSyncBlockingFunc) (gpointer      source,
                                       gpointer      data,
                                       GCancellable *cancellable,
                                       GError      **error);

void      _mpg_sync_run_async        (gpointer             source,
                                      gpointer             source_tag,
                                      const char          *name,
                                      MpgSyncBlockingFunc  func,
                                      gpointer             data,
                                      GDestroyNotify       data_free,
                                      GCancellable        *cancellable,
                                      GAsyncReadyCallback  callback,
                                      gpointer             user_data);
gssize    _mpg_sync_run_finish       (gpointer             source,
                                      GAsyncResult        *result,
                                      gpointer             source_tag,
                                      GError             **error);

/* For MpgCondition: the lock's state, released whole and taken back. */
MpgSync  *_mpg_lock_get_sync         (MpgLock            *lock);
gboolean  _mpg_lock_acquire_as       (MpgLock            *lock,
                                      const MpgSyncOwner *owner,
                                      guint               count,
                                      gint                timeout_msec,
                                      gboolean           *out_owner_died,
                                      GCancellable       *cancellable,
                                      GError            **error);
gboolean  _mpg_lock_release_all      (MpgLock            *lock,
                                      guint              *out_count,
                                      GError            **error);

G_END_DECLS
