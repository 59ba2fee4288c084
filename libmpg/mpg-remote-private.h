/* mpg-remote-private.h
 *
 * Copyright 2026 The libmpg authors
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#ifndef PACKAGE_VERSION
# error "config.h must be included before mpg-remote-private.h"
#endif

#include <sys/types.h>
#include <glib.h>

#include "mpg-types.h"

G_BEGIN_DECLS

/*
 * Remote workers: a pool's workers on other machines.
 *
 * The pool does not know about MPI. A remote worker looks to it like a
 * forkserver worker: a channel (a socket of a socketpair whose other end
 * the relay thread owns), a pid it cannot signal itself, and a status
 * pipe that gives its exit code. Everything else (tasks by name, the
 * bootstrap message, replies) is the spawned worker's protocol, frame for
 * frame.
 *
 * mpg-remote.c relays those frames: in the pool's process, a relay thread
 * moves them between the workers' sockets and the peers; on each peer (a
 * relay process: an MPI rank), the relay starts each worker as a local
 * spawned worker (the pool's spawn command, MPG_WORKER=pool, fd 3) and
 * moves its frames. A task that crashes costs a worker, never a rank.
 *
 * The transport below is a separately loaded module (libmpg-mpi.so), so
 * that libmpg does not depend on libmpi: it sends and receives whole
 * messages between peers, and nothing else.
 */

#define MPG_REMOTE_TRANSPORT_ABI 1

/* Peer 0 is the root (the program that made the pool); 1… are relays. */
typedef struct
{
  guint abi;

  /* Initializes the transport in this process. @relay: this process is a
   * relay (a static rank ≥ 1, or spawned by spawn()). Returns this
   * process's peer number and, in the root, the number of relays
   * already there (static ranks: world size − 1; else 0). */
  gboolean (*init)        (gboolean   relay,
                           guint     *out_self,
                           guint     *out_n_relays,
                           GError   **error);

  /* Root only: starts @n relays running @argv (MPI_Comm_spawn). They are
   * numbered from *@out_first on. */
  gboolean (*spawn)       (const char * const *argv,
                           guint               n,
                           guint              *out_first,
                           GError            **error);

  /* Queues @data for @peer with @tag, without waiting (the transport keeps
   * a reference until it went). An error means the peer is lost. */
  gboolean (*send)        (guint      peer,
                           int        tag,
                           GBytes    *data,
                           GError   **error);

  /* Takes one message if there is one, without waiting: TRUE and the
   * message, or FALSE (with @error set if a peer was lost: then
   * *@out_peer says which, G_MAXUINT for all of them). Also progresses
   * sends. */
  gboolean (*try_receive) (guint     *out_peer,
                           int       *out_tag,
                           GBytes   **out_data,
                           GError   **error);

  /* Waits (up to @timeout_msec) for the queued sends to go; ends the
   * transport (MPI_Finalize). */
  void     (*finalize)    (gint       timeout_msec);

  /* Ends the whole job at once (MPI_Abort). */
  void     (*abort)       (int        code);

  /* Where this process runs, for messages: "rank 3 on node7". */
  char    *(*describe)    (void);
} MpgRemoteTransport;

/* The module exports this; it returns NULL with @error set if MPI cannot
 * be used. */
#define MPG_REMOTE_TRANSPORT_SYMBOL "mpg_remote_transport_get"
typedef const MpgRemoteTransport *(*MpgRemoteTransportGetFunc) (guint     abi,
                                                                GError  **error);

/* Message tags between the root and a relay. Payloads are GVariants in
 * normal form (serialized data), of the given types. */
typedef enum
{
  MPG_REMOTE_TAG_START = 1,   /* root → relay "(uas)": slot, spawn argv */
  MPG_REMOTE_TAG_STARTED,     /* relay → root "(uis)": slot, pid, where */
  MPG_REMOTE_TAG_FAILED,      /* relay → root "(u(sis))": slot, error */
  MPG_REMOTE_TAG_FRAME,       /* both "(uv)": slot, a channel message */
  MPG_REMOTE_TAG_CLOSE,       /* root → relay "u": the pool shut the channel */
  MPG_REMOTE_TAG_KILL,        /* root → relay "(ui)": slot, signal */
  MPG_REMOTE_TAG_EXITED,      /* relay → root "(ui)": slot, code or -signal */
  MPG_REMOTE_TAG_QUIT,        /* root → relay "()": end */
  MPG_REMOTE_TAG_ALIVE,       /* both "()", every HEARTBEAT_USEC */
} MpgRemoteTag;

/* Which pools use remote workers: the pool's backend, resolved (never
 * AUTO). */
MpgPoolBackend _mpg_remote_resolve_backend (MpgPoolBackend  backend);

/* How many relays a static job has (world size − 1), from the launcher's
 * environment; 0 when not started by an MPI launcher. */
guint     _mpg_remote_launched_size (void);
/* This process's rank under an MPI launcher, or -1. */
gint      _mpg_remote_launched_rank (void);

/* Starts a remote worker: the pool keeps @worker_fd's peer end, which is
 * its channel; @worker_fd is taken (closed on failure). On success, the worker's
 * pid (on its machine), a status fd (as _mpg_forkserver_start()'s) and an
 * id for _mpg_remote_kill(). */
gboolean  _mpg_remote_start_worker  (MpgPoolBackend   backend,
                                     guint            processes,
                                     int              worker_fd,
                                     pid_t           *out_pid,
                                     int             *out_status_fd,
                                     guint           *out_id,
                                     char           **out_where,
                                     GError         **error);
void      _mpg_remote_kill          (guint            id,
                                     int              sig);

/* How many workers a pool of this backend has by default: the relays of
 * a static job, the CPUs otherwise. */
guint     _mpg_remote_default_processes (MpgPoolBackend backend);

/* In a static rank ≥ 1, or a spawned relay: relays for ever, then exits. */
G_NORETURN void _mpg_remote_relay_main (void);

/* Whether this process should be a relay: a static rank ≥ 1 whose
 * backend is not forced to local, and not a spawned worker. */
gboolean  _mpg_remote_is_relay      (void);

/* In the root of a static job: makes sure the relays are told to quit
 * when the program exits, even if it never made a pool. */
void      _mpg_remote_root_init     (void);

G_END_DECLS
