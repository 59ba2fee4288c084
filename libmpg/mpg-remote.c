/* mpg-remote.c
 *
 * Copyright 2026 The libmpg authors
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <gio/gio.h>
#include <glib-unix.h>
#include <gmodule.h>

#include "mpg-channel-private.h"
#include "mpg-error.h"
#include "mpg-fork-private.h"
#include "mpg-remote-private.h"
#include "mpg-spawn-private.h"
#include "mpg-wire-private.h"

/*
 * Remote workers (see mpg-remote-private.h for the design).
 *
 * Every message between the root and a relay is a 4-byte slot number
 * (little endian) followed by one wire frame (mpg-wire.c): a channel
 * message for FRAME, the tag's payload otherwise. Both ends decode what
 * they receive with the wire layer's checks, so a corrupt peer gives an
 * error, never a crash.
 *
 * In the root, one thread (the relay thread) makes every transport call:
 * MPI has no fd to poll, so it polls the workers' sockets and the
 * transport in turn, sleeping a little longer each time nothing happens
 * (up to MAX_IDLE_USEC). Pool threads hand it commands through a queue
 * and an eventfd, and never wait for it while holding a lock it needs.
 *
 * A relay is a process of its own (an MPI rank): one thread, the same
 * loop, with the pidfds of its local workers in the poll set.
 */

#ifndef MPG_MODULE_DIR
# define MPG_MODULE_DIR "/usr/local/lib/libmpg-1.0"
#endif
#ifndef MPG_LIBEXECDIR
# define MPG_LIBEXECDIR "/usr/local/libexec"
#endif

#define MAX_MESSAGE      MPG_WIRE_DEFAULT_MAX
#define SPIN_USEC        200       /* poll without sleeping this long after activity */
#define MAX_IDLE_USEC    1000      /* then sleep at most this long between polls */
#define START_TIMEOUT_SEC 120      /* a worker that does not start in this time failed */
#define QUIT_GRACE_MSEC  3000
/* Open MPI reports no error for a rank that died when the job survives
 * it (mpirun --enable-recovery): each side says it is alive every second,
 * and a side that says nothing for LOST_USEC is lost. */
#define HEARTBEAT_USEC   (1 * G_USEC_PER_SEC)
#define LOST_USEC        (10 * G_USEC_PER_SEC)

typedef enum
{
  SLOT_STARTING,
  SLOT_RUNNING,
  SLOT_FAILED,
  SLOT_ENDED,
} SlotState;

typedef struct
{
  guint id;
  guint peer;
  int fd;                 /* root: the relay's end of the pool's channel; relay: the worker's */
  int status_fd;          /* root: where the exit code goes (a socket: no SIGPIPE) */
  pid_t pid;              /* relay: the local worker */
  int pidfd;              /* relay */
  gboolean eof;           /* nothing more to read from fd */
  SlotState state;        /* root, under start_lock */
  gboolean abandoned;     /* root: its pool thread gave up waiting (start_lock) */
  GError *error;          /* root: why it failed to start */
  pid_t remote_pid;       /* root */
  char *where;            /* root */
} Slot;

typedef struct
{
  gboolean spawned;       /* started by MPI_Comm_spawn */
  gboolean lost;
  guint n_workers;
  guint64 last_used;
  gint64 last_heard;      /* monotonic time of its last message */
} Peer;

typedef enum
{
  COMMAND_START,
  COMMAND_KILL,
  COMMAND_QUIT,
} CommandKind;

typedef struct
{
  CommandKind kind;
  Slot *slot;             /* START */
  MpgPoolBackend backend; /* START */
  guint processes;        /* START */
  char **argv;            /* START */
  guint id;               /* KILL */
  int sig;                /* KILL */
} Command;

/* Process-wide state. */
static GMutex remote_lock;          /* the fields below, until the thread runs */
static const MpgRemoteTransport *transport;
static GError *load_error;
static GThread *relay_thread;
static int wake_fd = -1;
static GAsyncQueue *commands;
static guint self_peer;
static gboolean root_quit_registered;
static gboolean root_in_static_job;

/* Start handshakes: a pool thread waits for its slot to leave STARTING. */
static GMutex start_lock;
static GCond start_cond;

/* Owned by the thread that runs the loop (root: relay thread; relay: main). */
static GArray *peers;               /* of Peer; index = peer number */
static GHashTable *slots;           /* id → Slot */
static guint last_slot_id;
static guint64 use_counter;

/* ---------------------------------------------------------------- */
/* The launcher's environment                                        */

static gint
env_int (const char *name)
{
  const char *value = g_getenv (name);
  gint64 n;

  if (value == NULL || !g_ascii_string_to_signed (value, 10, 0, G_MAXINT, &n, NULL))
    return -1;
  return (gint) n;
}

gint
_mpg_remote_launched_rank (void)
{
  static const char * const names[] = { "OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK" };

  for (guint i = 0; i < G_N_ELEMENTS (names); i++)
    {
      gint rank = env_int (names[i]);

      if (rank >= 0)
        return rank;
    }
  return -1;
}

guint
_mpg_remote_launched_size (void)
{
  static const char * const names[] = { "OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_STEP_NUM_TASKS" };

  if (_mpg_remote_launched_rank () < 0)
    return 0;
  for (guint i = 0; i < G_N_ELEMENTS (names); i++)
    {
      gint size = env_int (names[i]);

      if (size > 0)
        return (guint) size;
    }
  return 0;
}

static MpgPoolBackend
env_backend (void)
{
  const char *value = g_getenv ("MPG_POOL_BACKEND");

  if (value == NULL || value[0] == '\0' || g_str_equal (value, "auto"))
    return MPG_POOL_BACKEND_AUTO;
  if (g_str_equal (value, "local"))
    return MPG_POOL_BACKEND_LOCAL;
  if (g_str_equal (value, "mpi"))
    return MPG_POOL_BACKEND_MPI;
  if (g_str_equal (value, "mpi-spawn"))
    return MPG_POOL_BACKEND_MPI_SPAWN;
  g_warning ("MPG_POOL_BACKEND=%s is not one of local, mpi, mpi-spawn: ignored", value);
  return MPG_POOL_BACKEND_AUTO;
}

MpgPoolBackend
_mpg_remote_resolve_backend (MpgPoolBackend backend)
{
  if (backend != MPG_POOL_BACKEND_AUTO)
    return backend;
  backend = env_backend ();
  if (backend != MPG_POOL_BACKEND_AUTO)
    return backend;
  return _mpg_remote_launched_size () > 1 ? MPG_POOL_BACKEND_MPI : MPG_POOL_BACKEND_LOCAL;
}

guint
_mpg_remote_default_processes (MpgPoolBackend backend)
{
  if (backend == MPG_POOL_BACKEND_MPI && _mpg_remote_launched_size () > 1)
    return _mpg_remote_launched_size () - 1;
  return 0;
}

gboolean
_mpg_remote_is_relay (void)
{
  MpgPoolBackend backend = env_backend ();

  return g_getenv (MPG_WORKER_ENV) == NULL &&
         _mpg_remote_launched_rank () > 0 && _mpg_remote_launched_size () > 1 &&
         backend != MPG_POOL_BACKEND_LOCAL && backend != MPG_POOL_BACKEND_MPI_SPAWN;
}

/* ---------------------------------------------------------------- */
/* The module                                                        */

static gboolean
load_transport (GError **error)
{
  const char *dir = g_getenv ("MPG_MODULE_DIR");
  g_autofree char *path = NULL;
  MpgRemoteTransportGetFunc get = NULL;
  GModule *module;

  if (transport != NULL)
    return TRUE;
  if (load_error != NULL)
    {
      g_propagate_error (error, g_error_copy (load_error));
      return FALSE;
    }

  path = g_build_filename (dir != NULL ? dir : MPG_MODULE_DIR, "libmpg-mpi.so", NULL);
  /* Its symbols local: libmpi's plugins are loaded by libmpi itself. */
  module = g_module_open (path, G_MODULE_BIND_LOCAL);
  if (module == NULL)
    load_error = g_error_new (MPG_ERROR, MPG_ERROR_FAILED,
                              "The MPI backend needs libmpg's MPI module, which could not be "
                              "loaded (%s): was libmpg built with MPI?", g_module_error ());
  else if (!g_module_symbol (module, MPG_REMOTE_TRANSPORT_SYMBOL, (gpointer *) &get) || get == NULL)
    load_error = g_error_new (MPG_ERROR, MPG_ERROR_FAILED,
                              "%s is not libmpg's MPI module", path);
  else
    {
      g_autoptr(GError) local_error = NULL;

      transport = get (MPG_REMOTE_TRANSPORT_ABI, &local_error);
      if (transport == NULL)
        load_error = g_error_new (MPG_ERROR, MPG_ERROR_FAILED, "The MPI module cannot be used: %s",
                                  local_error != NULL ? local_error->message : "unknown reason");
    }
  if (transport == NULL)
    {
      g_propagate_error (error, g_error_copy (load_error));
      return FALSE;
    }
  /* For the life of the process: the thread runs its code. */
  g_module_make_resident (module);
  return TRUE;
}

/* ---------------------------------------------------------------- */
/* Messages                                                          */

static GBytes *
message_new (guint     slot,
             GVariant *value)
{
  g_autoptr(GVariant) sunk = g_variant_ref_sink (value);
  g_autoptr(GBytes) frame = NULL;
  g_autoptr(GError) error = NULL;
  guint32 le = GUINT32_TO_LE (slot);
  GByteArray *buffer;

  frame = _mpg_wire_encode (sunk, &error);
  if (frame == NULL)
    {
      g_warning ("libmpg: a message for a remote worker cannot be encoded: %s", error->message);
      return NULL;
    }
  buffer = g_byte_array_sized_new (sizeof le + g_bytes_get_size (frame));
  g_byte_array_append (buffer, (const guint8 *) &le, sizeof le);
  g_byte_array_append (buffer, g_bytes_get_data (frame, NULL), g_bytes_get_size (frame));
  return g_byte_array_free_to_bytes (buffer);
}

/* Decodes a message from a peer: its slot and its value (of @type, unless
 * @type is NULL). */
static gboolean
message_parse (GBytes             *bytes,
               const GVariantType *type,
               guint              *out_slot,
               GVariant          **out_value,
               GError            **error)
{
  gsize size;
  const guint8 *data = g_bytes_get_data (bytes, &size);
  g_autoptr(GVariant) value = NULL;
  guint32 le;
  gsize consumed;

  if (size < sizeof le)
    {
      g_set_error (error, MPG_ERROR, MPG_ERROR_PROTOCOL, "A remote message of %" G_GSIZE_FORMAT
                   " bytes is too short", size);
      return FALSE;
    }
  memcpy (&le, data, sizeof le);
  if (!_mpg_wire_decode (data + sizeof le, size - sizeof le, MAX_MESSAGE, &value, &consumed, error))
    return FALSE;
  if (consumed != size - sizeof le || (type != NULL && !g_variant_is_of_type (value, type)))
    {
      g_set_error (error, MPG_ERROR, MPG_ERROR_PROTOCOL,
                   "A remote message is not what its tag says (%s)",
                   g_variant_get_type_string (value));
      return FALSE;
    }
  *out_slot = GUINT32_FROM_LE (le);
  *out_value = g_steal_pointer (&value);
  return TRUE;
}

static gboolean
send_message (guint      peer,
              MpgRemoteTag tag,
              guint      slot,
              GVariant  *value,
              GError   **error)
{
  g_autoptr(GBytes) bytes = message_new (slot, value);

  if (bytes == NULL)
    {
      g_set_error_literal (error, MPG_ERROR, MPG_ERROR_PROTOCOL,
                           "A message for a remote worker could not be encoded");
      return FALSE;
    }
  return transport->send (peer, tag, bytes, error);
}

/* ---------------------------------------------------------------- */
/* Waiting                                                           */

/* Polls @fds for up to @usec microseconds (0: just look). */
static void
poll_for (struct pollfd *fds,
          guint          n,
          gint64         usec)
{
  struct timespec ts = { usec / G_USEC_PER_SEC, (usec % G_USEC_PER_SEC) * 1000 };

  if (ppoll (fds, n, &ts, NULL) < 0 && errno != EINTR)
    g_usleep (usec);
}

/* The next sleep: none just after activity, then longer and longer. */
static gint64
next_idle (gint64 *idle_since,
           gint64 *sleep_usec,
           gboolean active)
{
  gint64 now = g_get_monotonic_time ();

  if (active)
    {
      *idle_since = now;
      *sleep_usec = 0;
      return 0;
    }
  if (now - *idle_since < SPIN_USEC)
    return 0;
  *sleep_usec = *sleep_usec == 0 ? 20 : MIN (*sleep_usec * 2, MAX_IDLE_USEC);
  return *sleep_usec;
}

/* ---------------------------------------------------------------- */
/* Slots                                                             */

static void
slot_free (Slot *slot)
{
  _mpg_fork_close_fd (&slot->fd);
  _mpg_fork_close_fd (&slot->status_fd);
  _mpg_fork_close_fd (&slot->pidfd);
  g_clear_error (&slot->error);
  g_free (slot->where);
  g_free (slot);
}

static Peer *
peer_get (guint peer)
{
  if (peers == NULL || peer >= peers->len)
    return NULL;
  return &g_array_index (peers, Peer, peer);
}

/* Root: the worker's exit code goes to the pool, then its channel ends. */
static void
root_slot_end (Slot *slot,
               gint  code)
{
  gint32 value = code;
  Peer *peer = peer_get (slot->peer);

  if (slot->status_fd >= 0)
    send (slot->status_fd, &value, sizeof value, MSG_NOSIGNAL | MSG_DONTWAIT);
  _mpg_fork_close_fd (&slot->status_fd);
  _mpg_fork_close_fd (&slot->fd);
  if (peer != NULL && peer->n_workers > 0)
    peer->n_workers--;
  g_hash_table_remove (slots, GUINT_TO_POINTER (slot->id));
}

/* Root: a pool thread waits on this; tell it. FALSE if it gave up
 * waiting: then the slot is the caller's to end. */
static gboolean
root_slot_settle (Slot      *slot,
                  SlotState  state,
                  GError    *error)
{
  gboolean waited;

  g_mutex_lock (&start_lock);
  slot->state = state;
  waited = !slot->abandoned;
  if (waited && error != NULL)
    slot->error = error;
  else if (error != NULL)
    g_error_free (error);
  g_cond_broadcast (&start_cond);
  g_mutex_unlock (&start_lock);
  return waited;
}

/* ---------------------------------------------------------------- */
/* The root's relay thread                                           */

static void
root_peer_lost (guint         number,
                const GError *error)
{
  Peer *peer;
  GHashTableIter iter;
  gpointer value;
  GPtrArray *ended;

  /* The transport cannot tell which: all of them. */
  if (number == G_MAXUINT)
    {
      for (guint i = 1; peers != NULL && i < peers->len; i++)
        root_peer_lost (i, error);
      return;
    }
  peer = peer_get (number);
  if (peer == NULL || peer->lost)
    return;
  peer->lost = TRUE;
  g_warning ("libmpg: the MPI rank of remote workers %u is lost: %s", number,
             error != NULL ? error->message : "unknown reason");

  ended = g_ptr_array_new ();
  g_hash_table_iter_init (&iter, slots);
  while (g_hash_table_iter_next (&iter, NULL, &value))
    {
      Slot *slot = value;

      if (slot->peer == number)
        g_ptr_array_add (ended, slot);
    }
  for (guint i = 0; i < ended->len; i++)
    {
      Slot *slot = g_ptr_array_index (ended, i);

      if (slot->state == SLOT_STARTING)
        {
          g_hash_table_steal (slots, GUINT_TO_POINTER (slot->id));
          peer->n_workers--;
          if (!root_slot_settle (slot, SLOT_FAILED,
                                 g_error_new (MPG_ERROR, MPG_ERROR_WORKER_DIED,
                                              "The MPI rank that was to run a worker is lost: %s",
                                              error != NULL ? error->message : "unknown reason")))
            slot_free (slot);
        }
      else
        root_slot_end (slot, -SIGKILL);
    }
  g_ptr_array_free (ended, TRUE);
}

/* Chooses where a new worker goes, spawning ranks if need be. */
static gboolean
root_place (MpgPoolBackend   backend,
            guint            processes,
            guint           *out_peer,
            GError         **error)
{
  gboolean want_spawned = backend == MPG_POOL_BACKEND_MPI_SPAWN;
  Peer *best = NULL;
  guint best_number = 0;

  for (guint i = 1; i < peers->len; i++)
    {
      Peer *peer = &g_array_index (peers, Peer, i);

      if (peer->lost || peer->spawned != want_spawned)
        continue;
      /* A spawned rank per worker; static ranks shared, fewest first. */
      if (want_spawned && peer->n_workers > 0)
        continue;
      if (best == NULL || peer->n_workers < best->n_workers ||
          (peer->n_workers == best->n_workers && peer->last_used < best->last_used))
        {
          best = peer;
          best_number = i;
        }
    }

  if (best == NULL && want_spawned)
    {
      g_autofree char *relay = NULL;
      const char *argv[2];
      guint busy = 0, first;

      for (guint i = 1; i < peers->len; i++)
        if (g_array_index (peers, Peer, i).spawned && !g_array_index (peers, Peer, i).lost)
          busy++;
      relay = g_strdup (g_getenv ("MPG_MPI_RELAY"));
      if (relay == NULL)
        relay = g_build_filename (MPG_LIBEXECDIR, "mpg-mpi-relay", NULL);
      argv[0] = relay;
      argv[1] = NULL;
      /* As many as the pool has workers, at once: one spawn is one start-up. */
      processes = MAX (processes, busy + 1) - busy;
      if (!transport->spawn (argv, processes, &first, error))
        return FALSE;
      for (guint i = 0; i < processes; i++)
        {
          Peer peer = { TRUE, FALSE, 0, 0, g_get_monotonic_time () };

          if (first + i >= peers->len)
            g_array_set_size (peers, first + i + 1);
          g_array_index (peers, Peer, first + i) = peer;
        }
      best_number = first;
      best = &g_array_index (peers, Peer, first);
    }

  if (best == NULL)
    {
      g_set_error (error, MPG_ERROR, MPG_ERROR_FAILED,
                   "The pool's backend is MPI, but this job has no MPI ranks for workers: "
                   "start the program with an MPI launcher (mpirun -n N, with N ≥ 2), or "
                   "use the mpi-spawn backend");
      return FALSE;
    }
  best->n_workers++;
  best->last_used = ++use_counter;
  *out_peer = best_number;
  return TRUE;
}

static void
root_start (Command *command)
{
  Slot *slot = command->slot;
  g_autoptr(GError) error = NULL;
  g_autoptr(GVariant) argv = NULL;

  if (!root_place (command->backend, command->processes, &slot->peer, &error))
    {
      if (!root_slot_settle (slot, SLOT_FAILED, g_steal_pointer (&error)))
        slot_free (slot);
      return;
    }
  slot->id = ++last_slot_id;
  argv = g_variant_ref_sink (g_variant_new_strv ((const char * const *) command->argv, -1));
  g_hash_table_insert (slots, GUINT_TO_POINTER (slot->id), slot);
  if (!send_message (slot->peer, MPG_REMOTE_TAG_START, slot->id,
                     g_variant_new ("(u@as)", slot->id, argv), &error))
    root_peer_lost (slot->peer, error);
}

static void
root_kill (guint id,
           int   sig)
{
  Slot *slot = g_hash_table_lookup (slots, GUINT_TO_POINTER (id));
  g_autoptr(GError) error = NULL;

  if (slot == NULL || slot->state != SLOT_RUNNING)
    return;
  if (!send_message (slot->peer, MPG_REMOTE_TAG_KILL, slot->id,
                     g_variant_new ("(ui)", slot->id, sig), &error))
    root_peer_lost (slot->peer, error);
}

/* Moves the frames waiting on @slot's socket to @peer, both ways the
 * same: the pool's to its worker's rank, a local worker's to the root.
 * Sets @slot->eof at the end of the stream. Returns whether anything
 * happened; @error is set if @peer is lost. */
static gboolean
forward_slot (Slot    *slot,
              guint    peer,
              GError **error)
{
  gboolean active = FALSE;

  while (!slot->eof)
    {
      g_autoptr(GError) local_error = NULL;
      g_autoptr(GVariant) message = _mpg_channel_receive (slot->fd, MAX_MESSAGE, 0, NULL, NULL,
                                                          &local_error);

      if (message == NULL && g_error_matches (local_error, MPG_ERROR, MPG_ERROR_TIMEOUT))
        break;
      active = TRUE;
      if (message == NULL)
        slot->eof = TRUE;
      else if (!send_message (peer, MPG_REMOTE_TAG_FRAME, slot->id,
                              g_variant_new ("(uv)", slot->id, message), error))
        break;
    }
  return active;
}

/* Frames from the pool to its remote workers. */
static gboolean
root_read_slot (Slot *slot)
{
  g_autoptr(GError) error = NULL;
  gboolean was_eof = slot->eof;
  gboolean active = forward_slot (slot, slot->peer, &error);

  /* The pool shut its channel: the worker's ends too. */
  if (error == NULL && slot->eof && !was_eof)
    send_message (slot->peer, MPG_REMOTE_TAG_CLOSE, slot->id, g_variant_new_uint32 (slot->id),
                  &error);
  if (error != NULL)
    root_peer_lost (slot->peer, error);
  return active;
}

static void
root_handle (guint         number,
             int           tag,
             GBytes       *bytes)
{
  g_autoptr(GVariant) value = NULL;
  g_autoptr(GError) error = NULL;
  Slot *slot;
  guint id;

  if (!message_parse (bytes, NULL, &id, &value, &error))
    {
      root_peer_lost (number, error);
      return;
    }
  if (peer_get (number) != NULL)
    peer_get (number)->last_heard = g_get_monotonic_time ();
  if (tag == MPG_REMOTE_TAG_ALIVE)
    return;
  slot = g_hash_table_lookup (slots, GUINT_TO_POINTER (id));
  if (slot == NULL || slot->peer != number)
    return;   /* a slot that ended: late news */

  switch (tag)
    {
    case MPG_REMOTE_TAG_STARTED:
      if (g_variant_is_of_type (value, G_VARIANT_TYPE ("(uis)")) && slot->state == SLOT_STARTING)
        {
          gint32 pid;
          char *where;

          g_variant_get (value, "(uis)", NULL, &pid, &where);
          slot->remote_pid = pid;
          slot->where = where;
          /* Nobody waits for it any more: it ends as any other. */
          if (!root_slot_settle (slot, SLOT_RUNNING, NULL))
            root_kill (slot->id, SIGKILL);
          return;
        }
      break;
    case MPG_REMOTE_TAG_FAILED:
      if (g_variant_is_of_type (value, G_VARIANT_TYPE ("(u(sis))")) && slot->state == SLOT_STARTING)
        {
          g_autoptr(GVariant) failure = g_variant_get_child_value (value, 1);
          Peer *peer = peer_get (number);

          g_hash_table_steal (slots, GUINT_TO_POINTER (id));
          peer->n_workers--;
          if (!root_slot_settle (slot, SLOT_FAILED, _mpg_wire_error_from_variant (failure)))
            slot_free (slot);
          return;
        }
      break;
    case MPG_REMOTE_TAG_FRAME:
      if (g_variant_is_of_type (value, G_VARIANT_TYPE ("(uv)")) && slot->state == SLOT_RUNNING)
        {
          g_autoptr(GVariant) message = g_variant_get_child_value (value, 1);
          g_autoptr(GVariant) inner = g_variant_get_variant (message);

          /* The pool may have closed its end: then it does not care. */
          if (slot->fd >= 0)
            _mpg_channel_send (slot->fd, inner, NULL, MAX_MESSAGE, -1, NULL, NULL);
          return;
        }
      break;
    case MPG_REMOTE_TAG_EXITED:
      if (g_variant_is_of_type (value, G_VARIANT_TYPE ("(ui)")) && slot->state == SLOT_RUNNING)
        {
          gint32 code;

          g_variant_get (value, "(ui)", NULL, &code);
          root_slot_end (slot, code);
          return;
        }
      break;
    default:
      break;
    }

  error = g_error_new (MPG_ERROR, MPG_ERROR_PROTOCOL, "unexpected message (tag %d, %s)",
                       tag, g_variant_get_type_string (value));
  root_peer_lost (number, error);
}

static void
root_quit_all (void)
{
  for (guint i = 1; i < peers->len; i++)
    {
      Peer *peer = &g_array_index (peers, Peer, i);

      if (!peer->lost)
        send_message (i, MPG_REMOTE_TAG_QUIT, 0, g_variant_new ("()"), NULL);
    }
  transport->finalize (QUIT_GRACE_MSEC);
}

/* Says the root is alive to each relay, and notices relays that went
 * silent. */
static void
root_heartbeat (gint64 *last_beat)
{
  gint64 now = g_get_monotonic_time ();

  if (now - *last_beat < HEARTBEAT_USEC)
    return;
  *last_beat = now;
  for (guint i = 1; i < peers->len; i++)
    {
      Peer *peer = &g_array_index (peers, Peer, i);
      g_autoptr(GError) error = NULL;

      if (peer->lost)
        continue;
      if (now - peer->last_heard > LOST_USEC)
        {
          error = g_error_new (MPG_ERROR, MPG_ERROR_WORKER_DIED,
                               "it sent nothing for %d s", (int) (LOST_USEC / G_USEC_PER_SEC));
          root_peer_lost (i, error);
        }
      else if (!send_message (i, MPG_REMOTE_TAG_ALIVE, 0, g_variant_new ("()"), &error))
        root_peer_lost (i, error);
    }
}

static gpointer
root_thread_main (gpointer data)
{
  GArray *pollfds = g_array_new (FALSE, FALSE, sizeof (struct pollfd));
  GPtrArray *polled = g_ptr_array_new ();
  gint64 idle_since = 0, sleep_usec = 0, last_beat = 0;
  gboolean active = TRUE;

  for (;;)
    {
      GHashTableIter iter;
      gpointer value;
      Command *command;
      guint peer_number;
      int tag;
      GBytes *bytes;
      g_autoptr(GError) error = NULL;

      g_array_set_size (pollfds, 0);
      g_ptr_array_set_size (polled, 0);
      g_array_append_val (pollfds, ((struct pollfd) { wake_fd, POLLIN, 0 }));
      g_ptr_array_add (polled, NULL);
      g_hash_table_iter_init (&iter, slots);
      while (g_hash_table_iter_next (&iter, NULL, &value))
        {
          Slot *slot = value;

          if (slot->state == SLOT_RUNNING && !slot->eof && slot->fd >= 0)
            {
              g_array_append_val (pollfds, ((struct pollfd) { slot->fd, POLLIN, 0 }));
              g_ptr_array_add (polled, slot);
            }
        }
      poll_for ((struct pollfd *) pollfds->data, pollfds->len,
                next_idle (&idle_since, &sleep_usec, active));
      active = FALSE;

      if (g_array_index (pollfds, struct pollfd, 0).revents & POLLIN)
        {
          guint64 n;

          if (read (wake_fd, &n, sizeof n) < 0 && errno != EAGAIN)
            g_debug ("libmpg: relay thread wake-up: %s", g_strerror (errno));
        }
      while ((command = g_async_queue_try_pop (commands)) != NULL)
        {
          gboolean quit = command->kind == COMMAND_QUIT;

          active = TRUE;
          if (command->kind == COMMAND_START)
            root_start (command);
          else if (command->kind == COMMAND_KILL)
            root_kill (command->id, command->sig);
          g_strfreev (command->argv);
          g_free (command);
          if (quit)
            {
              root_quit_all ();
              g_array_free (pollfds, TRUE);
              g_ptr_array_free (polled, TRUE);
              return NULL;
            }
        }

      for (guint i = 1; i < pollfds->len; i++)
        {
          Slot *slot = g_ptr_array_index (polled, i);

          /* Still there: root_peer_lost() may have ended it meanwhile. */
          if (g_array_index (pollfds, struct pollfd, i).revents != 0 &&
              g_hash_table_lookup (slots, GUINT_TO_POINTER (slot->id)) == slot)
            active |= root_read_slot (slot);
        }

      while (transport->try_receive (&peer_number, &tag, &bytes, &error))
        {
          active = TRUE;
          root_handle (peer_number, tag, bytes);
          g_bytes_unref (bytes);
        }
      if (error != NULL)
        {
          active = TRUE;
          root_peer_lost (peer_number, error);
        }
      root_heartbeat (&last_beat);
    }
}

static void
root_at_exit (void)
{
  Command *command;

  g_mutex_lock (&remote_lock);
  if (relay_thread == NULL && root_in_static_job && load_transport (NULL))
    {
      guint self, n_relays;

      /* The relays wait for the root's word even if it never made a
       * pool: start MPI just to give it. */
      if (transport->init (FALSE, &self, &n_relays, NULL))
        {
          for (guint i = 1; i <= n_relays; i++)
            send_message (i, MPG_REMOTE_TAG_QUIT, 0, g_variant_new ("()"), NULL);
          transport->finalize (QUIT_GRACE_MSEC);
        }
      g_mutex_unlock (&remote_lock);
      return;
    }
  if (relay_thread == NULL)
    {
      g_mutex_unlock (&remote_lock);
      return;
    }
  command = g_new0 (Command, 1);
  command->kind = COMMAND_QUIT;
  g_async_queue_push (commands, command);
  eventfd_write (wake_fd, 1);
  g_thread_join (g_steal_pointer (&relay_thread));
  g_mutex_unlock (&remote_lock);
}

/* Starts the transport and the relay thread, once. */
static gboolean
root_ensure (GError **error)
{
  guint n_relays = 0;

  if (relay_thread != NULL)
    return TRUE;
  if (!load_transport (error) || !transport->init (FALSE, &self_peer, &n_relays, error))
    return FALSE;

  peers = g_array_new (FALSE, TRUE, sizeof (Peer));
  g_array_set_size (peers, n_relays + 1);
  for (guint i = 1; i <= n_relays; i++)
    g_array_index (peers, Peer, i).last_heard = g_get_monotonic_time ();
  slots = g_hash_table_new_full (NULL, NULL, NULL, (GDestroyNotify) slot_free);
  commands = g_async_queue_new ();
  wake_fd = eventfd (0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake_fd < 0)
    {
      g_set_error (error, MPG_ERROR, MPG_ERROR_FAILED, "eventfd: %s", g_strerror (errno));
      return FALSE;
    }
  _mpg_fork_register_fd (wake_fd);
  relay_thread = g_thread_new ("mpg-mpi-relay", root_thread_main, NULL);
  if (!root_quit_registered)
    {
      root_quit_registered = TRUE;
      atexit (root_at_exit);
    }
  return TRUE;
}

void
_mpg_remote_root_init (void)
{
  MpgPoolBackend backend = env_backend ();

  if (_mpg_remote_launched_rank () != 0 || _mpg_remote_launched_size () < 2 ||
      backend == MPG_POOL_BACKEND_LOCAL || backend == MPG_POOL_BACKEND_MPI_SPAWN)
    return;

  g_mutex_lock (&remote_lock);
  root_in_static_job = TRUE;
  if (!root_quit_registered)
    {
      root_quit_registered = TRUE;
      atexit (root_at_exit);
    }
  g_mutex_unlock (&remote_lock);
}

gboolean
_mpg_remote_start_worker (MpgPoolBackend   backend,
                          guint            processes,
                          int              worker_fd,
                          pid_t           *out_pid,
                          int             *out_status_fd,
                          guint           *out_id,
                          char           **out_where,
                          GError         **error)
{
  g_autoptr(GError) spawn_error = NULL;
  char **argv;
  Command *command;
  Slot *slot;
  int status[2];
  gint64 deadline;
  gboolean ok;

  g_return_val_if_fail (backend == MPG_POOL_BACKEND_MPI || backend == MPG_POOL_BACKEND_MPI_SPAWN, FALSE);

  if (_mpg_remote_launched_rank () > 0 && g_getenv (MPG_WORKER_ENV) == NULL)
    {
      g_set_error (error, MPG_ERROR, MPG_ERROR_FAILED,
                   "This program runs as MPI rank %d, where it should be relaying for rank 0: "
                   "its main() must call mpg_init() first (Python and GJS do it when they "
                   "import Mpg)", _mpg_remote_launched_rank ());
      _mpg_fork_close_fd (&worker_fd);
      return FALSE;
    }

  /* What the worker runs on its machine: the spawn command. */
  argv = _mpg_spawn_dup_command (&spawn_error);
  if (argv == NULL)
    {
      g_propagate_error (error, g_steal_pointer (&spawn_error));
      _mpg_fork_close_fd (&worker_fd);
      return FALSE;
    }

  g_mutex_lock (&remote_lock);
  ok = root_ensure (error);
  g_mutex_unlock (&remote_lock);
  if (!ok || !_mpg_fork_socketpair (status, error))
    {
      g_strfreev (argv);
      _mpg_fork_close_fd (&worker_fd);
      return FALSE;
    }

  slot = g_new0 (Slot, 1);
  slot->fd = worker_fd;
  slot->status_fd = status[1];
  slot->pidfd = -1;
  slot->state = SLOT_STARTING;
  g_unix_set_fd_nonblocking (worker_fd, TRUE, NULL);

  command = g_new0 (Command, 1);
  command->kind = COMMAND_START;
  command->slot = slot;
  command->backend = backend;
  command->processes = processes;
  command->argv = argv;
  g_async_queue_push (commands, command);
  eventfd_write (wake_fd, 1);

  deadline = g_get_monotonic_time () + START_TIMEOUT_SEC * G_USEC_PER_SEC;
  g_mutex_lock (&start_lock);
  while (slot->state == SLOT_STARTING)
    if (!g_cond_wait_until (&start_cond, &start_lock, deadline))
      break;
  if (slot->state == SLOT_RUNNING)
    {
      *out_pid = slot->remote_pid;
      *out_status_fd = status[0];
      *out_id = slot->id;
      if (out_where != NULL)
        *out_where = g_strdup (slot->where);
      g_mutex_unlock (&start_lock);
      return TRUE;
    }
  if (slot->state == SLOT_STARTING)
    slot->abandoned = TRUE;
  g_mutex_unlock (&start_lock);

  _mpg_fork_close_fd (&status[0]);
  if (slot->state == SLOT_FAILED)
    {
      g_propagate_error (error, g_steal_pointer (&slot->error));
      /* The relay thread let go of it. */
      slot_free (slot);
    }
  else
    {
      /* Still starting: the relay thread owns it, and ends it when the
       * answer comes; the pool's end of the channel goes now. */
      g_set_error (error, MPG_ERROR, MPG_ERROR_TIMEOUT,
                   "A remote worker did not start within %d s", START_TIMEOUT_SEC);
    }
  return FALSE;
}

void
_mpg_remote_kill (guint id,
                  int   sig)
{
  Command *command = g_new0 (Command, 1);

  command->kind = COMMAND_KILL;
  command->id = id;
  command->sig = sig;
  g_async_queue_push (commands, command);
  eventfd_write (wake_fd, 1);
}

/* ---------------------------------------------------------------- */
/* A relay                                                           */

static guint relay_rank_number;

static char **
relay_worker_environ (void)
{
  char **envp = g_get_environ ();
  GPtrArray *kept = g_ptr_array_new ();
  g_autofree char *rank = g_strdup_printf ("%u", relay_rank_number);

  /* The worker is not an MPI process: it must not think it is a rank. */
  for (guint i = 0; envp[i] != NULL; i++)
    {
      if (g_str_has_prefix (envp[i], "OMPI_") || g_str_has_prefix (envp[i], "PMIX_") ||
          g_str_has_prefix (envp[i], "PMI_"))
        g_free (envp[i]);
      else
        g_ptr_array_add (kept, envp[i]);
    }
  g_free (envp);
  g_ptr_array_add (kept, NULL);
  envp = (char **) g_ptr_array_free (kept, FALSE);
  envp = g_environ_setenv (envp, MPG_WORKER_ENV, "pool", TRUE);
  envp = g_environ_setenv (envp, "MPG_MPI_RANK", rank, TRUE);
  return envp;
}

static void
relay_start (guint     id,
             GVariant *value)
{
  g_autofree const char **argv = NULL;
  g_auto(GStrv) envp = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *where = NULL;
  int fds[2];
  Slot *slot;

  g_variant_get (value, "(u^a&s)", NULL, &argv);
  if (argv[0] == NULL)
    error = g_error_new_literal (MPG_ERROR, MPG_ERROR_PROTOCOL, "An empty command to start");

  slot = g_new0 (Slot, 1);
  slot->id = id;
  slot->fd = -1;
  slot->status_fd = -1;
  slot->pidfd = -1;
  if (error == NULL && _mpg_fork_socketpair (fds, &error))
    {
      envp = relay_worker_environ ();
      if (_mpg_fork_exec ((char **) argv, envp, &fds[1], 1, &slot->pid, &slot->pidfd, &error))
        slot->fd = fds[0];
      else
        _mpg_fork_close_fd (&fds[0]);
      _mpg_fork_close_fd (&fds[1]);
    }
  if (error != NULL)
    {
      send_message (0, MPG_REMOTE_TAG_FAILED, id,
                    g_variant_new ("(u@(sis))", id, _mpg_wire_error_to_variant (error)), NULL);
      slot_free (slot);
      return;
    }

  g_unix_set_fd_nonblocking (slot->fd, TRUE, NULL);
  g_hash_table_insert (slots, GUINT_TO_POINTER (id), slot);
  where = transport->describe ();
  send_message (0, MPG_REMOTE_TAG_STARTED, id, g_variant_new ("(uis)", id, slot->pid, where), NULL);
}

static void
relay_reap (Slot *slot)
{
  int status = 0;
  gint code;

  /* Whatever it sent before it died goes first (a lost root shows in
   * the main loop's receive). */
  forward_slot (slot, 0, NULL);
  while (waitpid (slot->pid, &status, 0) < 0 && errno == EINTR)
    ;
  code = WIFSIGNALED (status) ? -WTERMSIG (status) : WEXITSTATUS (status);
  send_message (0, MPG_REMOTE_TAG_EXITED, slot->id, g_variant_new ("(ui)", slot->id, code), NULL);
  g_hash_table_remove (slots, GUINT_TO_POINTER (slot->id));
}

G_NORETURN static void
relay_end (int code)
{
  GHashTableIter iter;
  gpointer value;

  /* Workers do not outlive their relay. */
  g_hash_table_iter_init (&iter, slots);
  while (g_hash_table_iter_next (&iter, NULL, &value))
    {
      Slot *slot = value;

      _mpg_pidfd_send_signal (slot->pidfd, SIGKILL);
      while (waitpid (slot->pid, NULL, 0) < 0 && errno == EINTR)
        ;
    }
  if (code == 0)
    transport->finalize (QUIT_GRACE_MSEC);
  fflush (NULL);
  _exit (code);
}

void
_mpg_remote_relay_main (void)
{
  g_autoptr(GError) error = NULL;
  GArray *pollfds = g_array_new (FALSE, FALSE, sizeof (struct pollfd));
  GPtrArray *polled = g_ptr_array_new ();
  gint64 idle_since = 0, sleep_usec = 0, last_beat = 0, last_heard = 0;
  gboolean active = TRUE;
  guint n_relays;

  /* A worker killed by its relay must not kill the relay with SIGPIPE,
   * nor Ctrl-C in mpirun's terminal end it before the root says so. */
  signal (SIGPIPE, SIG_IGN);

  if (!load_transport (&error) || !transport->init (TRUE, &relay_rank_number, &n_relays, &error))
    {
      g_printerr ("libmpg: this process was to relay for MPI rank 0, but cannot: %s\n",
                  error->message);
      _exit (1);
    }
  slots = g_hash_table_new_full (NULL, NULL, NULL, (GDestroyNotify) slot_free);

  for (;;)
    {
      GHashTableIter iter;
      gpointer value;
      guint peer_number, id;
      int tag;
      GBytes *bytes;

      g_array_set_size (pollfds, 0);
      g_ptr_array_set_size (polled, 0);
      g_hash_table_iter_init (&iter, slots);
      while (g_hash_table_iter_next (&iter, NULL, &value))
        {
          Slot *slot = value;

          g_array_append_val (pollfds, ((struct pollfd) { slot->pidfd, POLLIN, 0 }));
          g_ptr_array_add (polled, slot);
          if (!slot->eof)
            {
              g_array_append_val (pollfds, ((struct pollfd) { slot->fd, POLLIN, 0 }));
              g_ptr_array_add (polled, slot);
            }
        }
      poll_for ((struct pollfd *) pollfds->data, pollfds->len,
                next_idle (&idle_since, &sleep_usec, active));
      active = FALSE;

      /* Frames first, then deaths: a worker's last reply precedes its end. */
      for (guint i = 0; i < pollfds->len; i++)
        {
          struct pollfd *pfd = &g_array_index (pollfds, struct pollfd, i);
          Slot *slot = g_ptr_array_index (polled, i);

          if (pfd->revents != 0 && pfd->fd == slot->fd)
            active |= forward_slot (slot, 0, NULL);
        }
      for (guint i = 0; i < pollfds->len; i++)
        {
          struct pollfd *pfd = &g_array_index (pollfds, struct pollfd, i);
          Slot *slot = g_ptr_array_index (polled, i);

          if (pfd->revents != 0 && pfd->fd == slot->pidfd)
            {
              active = TRUE;
              relay_reap (slot);
            }
        }

      while (transport->try_receive (&peer_number, &tag, &bytes, &error))
        {
          g_autoptr(GVariant) message = NULL;
          Slot *slot;

          active = TRUE;
          if (!message_parse (bytes, NULL, &id, &message, &error))
            {
              g_bytes_unref (bytes);
              break;
            }
          g_bytes_unref (bytes);
          last_heard = g_get_monotonic_time ();
          slot = g_hash_table_lookup (slots, GUINT_TO_POINTER (id));
          if (tag == MPG_REMOTE_TAG_ALIVE)
            ;
          else if (tag == MPG_REMOTE_TAG_QUIT)
            relay_end (0);
          else if (tag == MPG_REMOTE_TAG_START && g_variant_is_of_type (message, G_VARIANT_TYPE ("(uas)")))
            relay_start (id, message);
          else if (tag == MPG_REMOTE_TAG_FRAME && g_variant_is_of_type (message, G_VARIANT_TYPE ("(uv)")))
            {
              g_autoptr(GVariant) boxed = g_variant_get_child_value (message, 1);
              g_autoptr(GVariant) inner = g_variant_get_variant (boxed);

              if (slot != NULL)
                _mpg_channel_send (slot->fd, inner, NULL, MAX_MESSAGE, -1, NULL, NULL);
            }
          else if (tag == MPG_REMOTE_TAG_CLOSE)
            {
              if (slot != NULL)
                shutdown (slot->fd, SHUT_WR);
            }
          else if (tag == MPG_REMOTE_TAG_KILL && g_variant_is_of_type (message, G_VARIANT_TYPE ("(ui)")))
            {
              gint32 sig;

              g_variant_get (message, "(ui)", NULL, &sig);
              if (slot != NULL)
                _mpg_pidfd_send_signal (slot->pidfd, sig);
            }
          else
            {
              error = g_error_new (MPG_ERROR, MPG_ERROR_PROTOCOL,
                                   "unexpected message from rank 0 (tag %d)", tag);
              break;
            }
        }
      /* The root's heartbeat counts from its first word: before that, it
       * may not have started MPI yet (it does at its first pool). */
      if (error == NULL && last_heard != 0)
        {
          gint64 now = g_get_monotonic_time ();

          if (now - last_heard > LOST_USEC)
            error = g_error_new (MPG_ERROR, MPG_ERROR_WORKER_DIED, "rank 0 sent nothing for %d s",
                                 (int) (LOST_USEC / G_USEC_PER_SEC));
          else if (now - last_beat >= HEARTBEAT_USEC)
            {
              last_beat = now;
              send_message (0, MPG_REMOTE_TAG_ALIVE, 0, g_variant_new ("()"), &error);
            }
        }
      if (error != NULL)
        {
          /* The root is gone or broken: nobody to work for. */
          g_printerr ("libmpg: relay for MPI rank 0 ends: %s\n", error->message);
          relay_end (1);
        }
    }
}
