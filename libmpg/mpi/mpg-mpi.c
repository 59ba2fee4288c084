/* mpg-mpi.c: libmpg's MPI transport (libmpg-mpi.so)
 *
 * Copyright 2026 The libmpg authors
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

/*
 * The MpgRemoteTransport of mpg-remote-private.h over MPI. libmpg loads
 * this module only for the MPI pool backends, so that libmpg itself does
 * not link libmpi.
 *
 * Peers and communicators. Peer 0 is the root. In a static job
 * (`mpirun -n N`), peer p is rank p of MPI_COMM_WORLD. Relays started by
 * spawn() are reached through the intercommunicator of their spawn: peer
 * first + i is its remote rank i. A relay only ever talks to peer 0: rank
 * 0 of MPI_COMM_WORLD, or of its parent intercommunicator.
 *
 * Threads. MPI is initialized with MPI_THREAD_SERIALIZED: libmpg calls
 * this vtable from one thread at a time, but not always from the same
 * one. In the root, init() and spawn() run in the pool thread that needs
 * relays, and send(), try_receive() and finalize() in libmpg's relay
 * thread; in a relay process every call comes from its relay loop. The
 * module has no lock of its own: its state is guarded by that same
 * serialization. Two calls that Open MPI may never return from,
 * MPI_Comm_spawn() and the root's disconnect and MPI_Finalize(), run in
 * a thread of their own while the caller waits (see BoundedCall); if
 * the caller gives up, that thread stays inside MPI and the module makes
 * no more MPI calls. MPI_Abort (abort()) may come from any thread at any
 * time, as it ends the process anyway.
 *
 * Lost peers. MPI_ERRORS_RETURN is set on every communicator used here,
 * so that MPI errors become GErrors instead of ending the job. But Open
 * MPI 4.1 hardly reports a lost peer: under mpirun (and for spawned
 * relays), the launcher ends the whole job when a rank dies, unless
 * recovery is enabled (`mpirun --enable-recovery`, or
 * OMPI_MCA_orte_enable_recovery=1 for a program started without
 * mpirun); with recovery, sends to a dead rank usually succeed, and
 * large ones never complete. Finding lost relays is up to libmpg's
 * protocol.
 *
 * Environment: MPG_MPI_SPAWN_HOSTS, a comma-separated list of hosts for
 * spawn() (MPI's "host" info key); MPG_MPI_SPAWN_TIMEOUT, how many
 * seconds spawn() waits for MPI_Comm_spawn() (120).
 */

#include "config.h"

#include <limits.h>
#include <string.h>
#include <unistd.h>

#include <mpi.h>
#include <gio/gio.h>
#include <gmodule.h>

#include "mpg-remote-private.h"

/* The first message the root sends to each relay it spawned, before any
 * of libmpg's: the relay's peer number. MPI keeps messages between two
 * processes on one communicator in order, so the relay's first receive
 * gets it even though libmpg may use the same tag. */
#define HELLO_TAG 0
/* How long a spawned relay waits in init() for the root's hello: the
 * root sends it as soon as MPI_Comm_spawn() returns, which is after the
 * relay's MPI_Init_thread(), so this matters only if the root died. */
#define HELLO_TIMEOUT_USEC (60 * G_USEC_PER_SEC)

typedef struct
{
  MPI_Comm comm;
  guint    first_peer;  /* the peer number of (remote) rank 0 */
  guint    n_ranks;     /* (remote) ranks the peers map to */
  gboolean spawned;     /* an intercommunicator to let go in finalize() */
  gboolean broken;      /* probing it failed: it is no longer probed */
} Link;

typedef struct
{
  MPI_Request request;
  GBytes     *data;     /* MPI reads it until the request completes */
  guint       peer;
} PendingSend;

static struct
{
  gboolean    initialized;
  gboolean    finalized;
  gboolean    owns_mpi;    /* we called MPI_Init_thread(), so we finalize */
  gboolean    relay;
  gboolean    wedged;      /* a thread is stuck in MPI: make no more calls */
  gboolean    wedge_reported;
  guint       self;
  guint       next_peer;   /* root: the first number of the next spawn */
  int         tag_ub;
  GArray     *links;       /* of Link */
  guint       next_link;   /* where try_receive() starts probing */
  GQueue      pending;     /* of PendingSend, oldest first */
  GHashTable *lost;        /* peers known to be lost, as GUINT_TO_POINTER */
} transport = { 0, };

static char *
mpi_error_string (int code)
{
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;

  if (MPI_Error_string (code, text, &len) != MPI_SUCCESS)
    return g_strdup_printf ("MPI error %d", code);
  return g_strndup (text, len);
}

static void
set_mpi_error (GError     **error,
               int          domain_code,
               int          mpi_code,
               const char  *format,
               ...) G_GNUC_PRINTF (4, 5);

static void
set_mpi_error (GError     **error,
               int          domain_code,
               int          mpi_code,
               const char  *format,
               ...)
{
  g_autofree char *what = NULL;
  g_autofree char *why = mpi_error_string (mpi_code);
  va_list args;

  va_start (args, format);
  what = g_strdup_vprintf (format, args);
  va_end (args);

  g_set_error (error, G_IO_ERROR, domain_code, "%s: %s", what, why);
}

static void
pending_send_free (PendingSend *ps)
{
  g_bytes_unref (ps->data);
  g_free (ps);
}

static void
add_link (MPI_Comm comm,
          guint    first_peer,
          guint    n_ranks,
          gboolean spawned)
{
  Link link = { comm, first_peer, n_ranks, spawned, FALSE };

  g_array_append_val (transport.links, link);
}

static Link *
find_link (guint  peer,
           int   *out_rank)
{
  for (guint i = 0; i < transport.links->len; i++)
    {
      Link *link = &g_array_index (transport.links, Link, i);

      if (peer >= link->first_peer && peer - link->first_peer < link->n_ranks)
        {
          *out_rank = (int) (peer - link->first_peer);
          return link;
        }
    }

  return NULL;
}

static void
mark_lost (guint peer)
{
  g_hash_table_add (transport.lost, GUINT_TO_POINTER (peer));
}

/* In a relay spawned by the root: the root's first message says which
 * peer we are. Polled rather than received, so that a root that died
 * before sending it cannot keep us here for ever. */
static gboolean
receive_hello (MPI_Comm   parent,
               guint     *out_self,
               GError   **error)
{
  gint64 deadline = g_get_monotonic_time () + HELLO_TIMEOUT_USEC;
  gulong sleep_usec = 100;

  while (TRUE)
    {
      MPI_Message message;
      MPI_Status status;
      guint32 self = 0;
      int flag = 0;
      int rc;

      rc = MPI_Improbe (0, MPI_ANY_TAG, parent, &flag, &message, &status);
      if (rc != MPI_SUCCESS)
        {
          set_mpi_error (error, G_IO_ERROR_BROKEN_PIPE, rc,
                         "Could not hear from the process that spawned this relay");
          return FALSE;
        }

      if (flag)
        {
          int count = 0;

          MPI_Get_count (&status, MPI_BYTE, &count);
          if (status.MPI_TAG != HELLO_TAG || count != sizeof self)
            {
              MPI_Mrecv (NULL, 0, MPI_BYTE, &message, MPI_STATUS_IGNORE);
              g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                           "The process that spawned this relay is not a libmpg pool "
                           "(first message: tag %d, %d bytes)", status.MPI_TAG, count);
              return FALSE;
            }

          rc = MPI_Mrecv (&self, sizeof self, MPI_BYTE, &message, MPI_STATUS_IGNORE);
          if (rc != MPI_SUCCESS)
            {
              set_mpi_error (error, G_IO_ERROR_BROKEN_PIPE, rc,
                             "Could not hear from the process that spawned this relay");
              return FALSE;
            }

          *out_self = self;
          return TRUE;
        }

      if (g_get_monotonic_time () > deadline)
        {
          g_set_error (error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT,
                       "The process that spawned this relay did not say hello within %d s",
                       (int) (HELLO_TIMEOUT_USEC / G_USEC_PER_SEC));
          return FALSE;
        }

      g_usleep (sleep_usec);
      sleep_usec = MIN (sleep_usec * 2, 10000);
    }
}

static gboolean
mpi_init (gboolean   relay,
          guint     *out_self,
          guint     *out_n_relays,
          GError   **error)
{
  MPI_Comm parent = MPI_COMM_NULL;
  int is_initialized = 0;
  int is_finalized = 0;
  int provided = MPI_THREAD_SINGLE;
  int world_rank = 0;
  int world_size = 1;
  int *tag_ub = NULL;
  int flag = 0;
  int rc;

  g_return_val_if_fail (out_self != NULL, FALSE);
  g_return_val_if_fail (out_n_relays != NULL, FALSE);
  g_return_val_if_fail (!transport.initialized, FALSE);

  MPI_Finalized (&is_finalized);
  if (is_finalized || transport.finalized)
    {
      g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_CLOSED,
                           "MPI was finalized in this process and cannot be used again");
      return FALSE;
    }

  /* A program (or another library, such as mpi4py) may have initialized
   * MPI already: then it is theirs to finalize, and we only check that
   * it allows calls from our threads. */
  MPI_Initialized (&is_initialized);
  if (is_initialized)
    {
      MPI_Query_thread (&provided);
    }
  else
    {
      rc = MPI_Init_thread (NULL, NULL, MPI_THREAD_SERIALIZED, &provided);
      if (rc != MPI_SUCCESS)
        {
          set_mpi_error (error, G_IO_ERROR_FAILED, rc, "Could not initialize MPI");
          return FALSE;
        }
      transport.owns_mpi = TRUE;
    }

  /* Set first: errors of calls on no communicator go to the world's
   * handler, and MPI_Comm_spawn() reports through MPI_COMM_SELF's. */
  MPI_Comm_set_errhandler (MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  MPI_Comm_set_errhandler (MPI_COMM_SELF, MPI_ERRORS_RETURN);

  if (provided < MPI_THREAD_SERIALIZED)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                   "MPI provides thread level %d; libmpg needs MPI_THREAD_SERIALIZED (%d) "
                   "as it calls MPI from more than one thread",
                   provided, MPI_THREAD_SERIALIZED);
      goto fail;
    }

  MPI_Comm_rank (MPI_COMM_WORLD, &world_rank);
  MPI_Comm_size (MPI_COMM_WORLD, &world_size);
  MPI_Comm_get_parent (&parent);
  MPI_Comm_get_attr (MPI_COMM_WORLD, MPI_TAG_UB, &tag_ub, &flag);
  transport.tag_ub = flag && tag_ub != NULL ? *tag_ub : 32767;

  transport.links = g_array_new (FALSE, FALSE, sizeof (Link));
  transport.lost = g_hash_table_new (NULL, NULL);
  g_queue_init (&transport.pending);
  transport.next_link = 0;
  transport.relay = relay;

  if (!relay)
    {
      if (parent != MPI_COMM_NULL || world_rank != 0)
        {
          g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                       "Only rank 0 of a job that was not spawned can make a pool of MPI "
                       "workers (this is rank %d%s)",
                       world_rank, parent != MPI_COMM_NULL ? " of a spawned job" : "");
          goto fail;
        }

      transport.self = 0;
      transport.next_peer = (guint) world_size;
      if (world_size > 1)
        add_link (MPI_COMM_WORLD, 0, (guint) world_size, FALSE);
      *out_n_relays = (guint) world_size - 1;
    }
  else if (parent != MPI_COMM_NULL)
    {
      MPI_Comm_set_errhandler (parent, MPI_ERRORS_RETURN);
      add_link (parent, 0, 1, TRUE);

      if (!receive_hello (parent, &transport.self, error))
        goto fail;
      *out_n_relays = 0;
    }
  else
    {
      if (world_rank == 0)
        {
          g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                               "Rank 0 of a static MPI job is the root, not a relay");
          goto fail;
        }

      transport.self = (guint) world_rank;
      add_link (MPI_COMM_WORLD, 0, (guint) world_size, FALSE);
      *out_n_relays = 0;
    }

  transport.initialized = TRUE;
  *out_self = transport.self;
  return TRUE;

fail:
  /* MPI stays initialized (owns_mpi says whose it is): MPI_Finalize()
   * waits for every other rank of the job to call it too, so calling it
   * here could hang. A process that gives up exits or aborts. */
  g_clear_pointer (&transport.links, g_array_unref);
  g_clear_pointer (&transport.lost, g_hash_table_unref);
  return FALSE;
}

/* A blocking MPI call that may never return, run in a thread of its own
 * so that the caller can give up: the caller waits for the thread, so
 * calls stay serialized, but once it gave up the thread may still be
 * inside MPI and no other MPI call can be made (transport.wedged). Each
 * kind of call is an rc box that starts with a BoundedCall. */
typedef struct _BoundedCall BoundedCall;
struct _BoundedCall
{
  GMutex    mutex;
  GCond     cond;
  gboolean  done;
  void    (*run)   (BoundedCall *call);
  void    (*clear) (BoundedCall *call);
};

static void
bounded_call_init (BoundedCall  *call,
                   void        (*run)   (BoundedCall *call),
                   void        (*clear) (BoundedCall *call))
{
  g_mutex_init (&call->mutex);
  g_cond_init (&call->cond);
  call->run = run;
  call->clear = clear;
}

static void
bounded_call_clear (gpointer data)
{
  BoundedCall *call = data;

  if (call->clear != NULL)
    call->clear (call);
  g_mutex_clear (&call->mutex);
  g_cond_clear (&call->cond);
}

static gpointer
bounded_call_thread (gpointer data)
{
  BoundedCall *call = data;

  call->run (call);

  g_mutex_lock (&call->mutex);
  call->done = TRUE;
  g_cond_signal (&call->cond);
  g_mutex_unlock (&call->mutex);

  g_atomic_rc_box_release_full (call, bounded_call_clear);
  return NULL;
}

/* FALSE if @call did not finish by @deadline: the module is wedged. */
static gboolean
run_bounded (BoundedCall *call,
             const char  *thread_name,
             gint64       deadline)
{
  GThread *thread;
  gboolean done;

  thread = g_thread_new (thread_name, bounded_call_thread, g_atomic_rc_box_acquire (call));

  g_mutex_lock (&call->mutex);
  while (!call->done && g_cond_wait_until (&call->cond, &call->mutex, deadline))
    ;
  done = call->done;
  g_mutex_unlock (&call->mutex);

  if (done)
    {
      g_thread_join (thread);
    }
  else
    {
      g_thread_unref (thread);
      transport.wedged = TRUE;
    }

  return done;
}

/* Open MPI 4.1 never returns from MPI_Comm_spawn() when a spawned program
 * exits before MPI_Init() (it is not an MPI program, or a library is
 * missing) or a host cannot be reached: spawn() gives up after a while. */
typedef struct
{
  BoundedCall  call;
  char        *command;
  char       **args;
  int          n;
  MPI_Info     info;
  MPI_Comm     intercomm;
  int         *errcodes;
  int          rc;
} SpawnCall;

static void
spawn_call_run (BoundedCall *call)
{
  SpawnCall *spawn = (SpawnCall *) call;

  spawn->rc = MPI_Comm_spawn (spawn->command, spawn->args, spawn->n, spawn->info, 0,
                              MPI_COMM_SELF, &spawn->intercomm, spawn->errcodes);
  if (spawn->info != MPI_INFO_NULL)
    MPI_Info_free (&spawn->info);
}

static void
spawn_call_clear (BoundedCall *call)
{
  SpawnCall *spawn = (SpawnCall *) call;

  g_free (spawn->command);
  g_strfreev (spawn->args);
  g_free (spawn->errcodes);
}

/* How long spawn() waits for MPI_Comm_spawn(): MPG_MPI_SPAWN_TIMEOUT
 * seconds, 120 by default (starting relays on many hosts takes a while). */
static gint64
spawn_timeout_usec (void)
{
  const char *value = g_getenv ("MPG_MPI_SPAWN_TIMEOUT");
  guint64 seconds = 120;

  if (value != NULL && *value != '\0')
    g_ascii_string_to_unsigned (value, 10, 1, G_MAXINT, &seconds, NULL);

  return (gint64) seconds * G_USEC_PER_SEC;
}

static gboolean
check_not_wedged (GError **error)
{
  if (!transport.wedged)
    return TRUE;

  g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_BROKEN_PIPE,
                       "MPI cannot be used any more in this process: "
                       "an MPI_Comm_spawn() never returned");
  return FALSE;
}

static gboolean
mpi_spawn (const char * const  *argv,
           guint                n,
           guint               *out_first,
           GError             **error)
{
  SpawnCall *call;
  const char *hosts;
  MPI_Comm intercomm;
  guint first;
  int rc;

  g_return_val_if_fail (transport.initialized, FALSE);
  g_return_val_if_fail (!transport.relay, FALSE);
  g_return_val_if_fail (argv != NULL && argv[0] != NULL, FALSE);
  g_return_val_if_fail (n > 0 && n <= INT_MAX, FALSE);
  g_return_val_if_fail (out_first != NULL, FALSE);

  if (!check_not_wedged (error))
    return FALSE;

  hosts = g_getenv ("MPG_MPI_SPAWN_HOSTS");
  if (hosts != NULL && *hosts == '\0')
    hosts = NULL;

  /* Open MPI reports a missing program by aborting the job or hanging,
   * so look first where we can: on this host. */
  if (hosts == NULL)
    {
      g_autofree char *path = g_find_program_in_path (argv[0]);

      if (path == NULL)
        {
          g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND,
                       "Could not spawn MPI relays: %s is not an executable program",
                       argv[0]);
          return FALSE;
        }
    }

  call = g_atomic_rc_box_new0 (SpawnCall);
  bounded_call_init (&call->call, spawn_call_run, spawn_call_clear);
  call->command = g_strdup (argv[0]);
  call->args = g_strdupv ((char **) argv + 1);
  call->n = (int) n;
  call->info = MPI_INFO_NULL;
  call->intercomm = MPI_COMM_NULL;
  call->errcodes = g_new0 (int, n);

  if (hosts != NULL)
    {
      MPI_Info_create (&call->info);
      MPI_Info_set (call->info, "host", hosts);
    }

  if (!run_bounded (&call->call, "mpg-mpi-spawn", g_get_monotonic_time () + spawn_timeout_usec ()))
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT,
                   "Spawning %u MPI relays running %s did not finish within %d s; "
                   "MPI cannot be used any more in this process",
                   n, argv[0], (int) (spawn_timeout_usec () / G_USEC_PER_SEC));
      g_atomic_rc_box_release_full (call, bounded_call_clear);
      return FALSE;
    }

  rc = call->rc;
  intercomm = call->intercomm;
  for (guint i = 0; rc == MPI_SUCCESS && i < n; i++)
    rc = call->errcodes[i];
  g_atomic_rc_box_release_full (call, bounded_call_clear);

  if (rc != MPI_SUCCESS)
    {
      set_mpi_error (error, G_IO_ERROR_FAILED, rc,
                     "Could not spawn %u MPI relays running %s", n, argv[0]);
      /* Not disconnected: any relay that did start would keep the
       * collective disconnect waiting. They give up after HELLO_TIMEOUT. */
      if (intercomm != MPI_COMM_NULL)
        MPI_Comm_free (&intercomm);
      return FALSE;
    }

  MPI_Comm_set_errhandler (intercomm, MPI_ERRORS_RETURN);

  first = transport.next_peer;
  for (guint i = 0; i < n; i++)
    {
      guint32 hello = first + i;

      /* Eager-sized, so this returns at once even if the relay is slow. */
      rc = MPI_Send (&hello, sizeof hello, MPI_BYTE, (int) i, HELLO_TAG, intercomm);
      if (rc != MPI_SUCCESS)
        mark_lost (first + i);
    }

  add_link (intercomm, first, n, TRUE);
  transport.next_peer += n;
  *out_first = first;
  return TRUE;
}

static gboolean
mpi_send (guint      peer,
          int        tag,
          GBytes    *data,
          GError   **error)
{
  PendingSend *ps;
  const void *bytes;
  gsize size = 0;
  Link *link;
  int rank = 0;
  int rc;

  g_return_val_if_fail (transport.initialized, FALSE);
  g_return_val_if_fail (tag >= 0 && tag <= transport.tag_ub, FALSE);
  g_return_val_if_fail (data != NULL, FALSE);

  if (!check_not_wedged (error))
    return FALSE;

  link = find_link (peer, &rank);
  if (link == NULL || peer == transport.self)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                   "There is no MPI peer %u", peer);
      return FALSE;
    }

  if (g_hash_table_contains (transport.lost, GUINT_TO_POINTER (peer)))
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_BROKEN_PIPE,
                   "MPI peer %u was lost", peer);
      return FALSE;
    }

  bytes = g_bytes_get_data (data, &size);
  if (size > INT_MAX)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_MESSAGE_TOO_LARGE,
                   "A message of %" G_GSIZE_FORMAT " bytes is too large for MPI (at most %d)",
                   size, INT_MAX);
      return FALSE;
    }

  ps = g_new0 (PendingSend, 1);
  ps->data = g_bytes_ref (data);
  ps->peer = peer;

  rc = MPI_Isend (bytes, (int) size, MPI_BYTE, rank, tag, link->comm, &ps->request);
  if (rc != MPI_SUCCESS)
    {
      pending_send_free (ps);
      mark_lost (peer);
      set_mpi_error (error, G_IO_ERROR_BROKEN_PIPE, rc,
                     "Could not send to MPI peer %u", peer);
      return FALSE;
    }

  g_queue_push_tail (&transport.pending, ps);
  return TRUE;
}

/* Completes the sends that went. Only the first failure is reported: the
 * others stay queued and come up at the next call. */
static gboolean
progress_sends (guint   *out_peer,
                GError **error)
{
  GList *l = transport.pending.head;

  while (l != NULL)
    {
      PendingSend *ps = l->data;
      GList *next = l->next;
      int flag = 0;
      int rc;

      rc = MPI_Test (&ps->request, &flag, MPI_STATUS_IGNORE);
      if (rc != MPI_SUCCESS)
        {
          guint peer = ps->peer;

          g_queue_delete_link (&transport.pending, l);
          /* A failed request may still hold the buffer: let MPI drop it
           * and keep the data for as long as the process lives. */
          if (ps->request != MPI_REQUEST_NULL)
            {
              MPI_Request_free (&ps->request);
              g_free (ps);
            }
          else
            {
              pending_send_free (ps);
            }

          mark_lost (peer);
          *out_peer = peer;
          set_mpi_error (error, G_IO_ERROR_BROKEN_PIPE, rc,
                         "Could not send to MPI peer %u", peer);
          return FALSE;
        }

      if (flag)
        {
          g_queue_delete_link (&transport.pending, l);
          pending_send_free (ps);
        }

      l = next;
    }

  return TRUE;
}

static gboolean
mpi_try_receive (guint     *out_peer,
                 int       *out_tag,
                 GBytes   **out_data,
                 GError   **error)
{
  guint n_links;

  g_return_val_if_fail (transport.initialized, FALSE);
  g_return_val_if_fail (out_peer != NULL, FALSE);
  g_return_val_if_fail (out_tag != NULL, FALSE);
  g_return_val_if_fail (out_data != NULL, FALSE);

  /* Said once: from then on, there is just nothing to receive. */
  if (transport.wedged)
    {
      if (transport.wedge_reported)
        return FALSE;
      transport.wedge_reported = TRUE;
      *out_peer = G_MAXUINT;
      return check_not_wedged (error);
    }

  if (!progress_sends (out_peer, error))
    return FALSE;

  /* Each call starts with the communicator after the one that last had a
   * message, so that a busy one (the world of a static job) cannot keep
   * the relays of a spawn waiting. */
  n_links = transport.links->len;
  for (guint i = 0; i < n_links; i++)
    {
      guint index = (transport.next_link + i) % n_links;
      Link *link = &g_array_index (transport.links, Link, index);
      MPI_Message message = MPI_MESSAGE_NULL;
      MPI_Status status;
      guint peer;
      char *buffer;
      int count = 0;
      int flag = 0;
      int rc;

      if (link->broken)
        continue;

      rc = MPI_Improbe (MPI_ANY_SOURCE, MPI_ANY_TAG, link->comm, &flag, &message, &status);
      if (rc != MPI_SUCCESS)
        {
          /* A communicator that fails is not asked again, or every call
           * would report the same loss. Which peer failed is known only
           * when there is one. */
          link->broken = TRUE;
          *out_peer = link->n_ranks == 1 ? link->first_peer : G_MAXUINT;
          set_mpi_error (error, G_IO_ERROR_BROKEN_PIPE, rc,
                         "Could not receive from MPI peers %u to %u", link->first_peer,
                         link->first_peer + link->n_ranks - 1);
          return FALSE;
        }

      if (!flag)
        continue;

      peer = link->first_peer + (guint) status.MPI_SOURCE;
      MPI_Get_count (&status, MPI_BYTE, &count);
      buffer = g_malloc (count);
      rc = MPI_Mrecv (buffer, count, MPI_BYTE, &message, &status);
      if (rc != MPI_SUCCESS)
        {
          g_free (buffer);
          mark_lost (peer);
          *out_peer = peer;
          set_mpi_error (error, G_IO_ERROR_BROKEN_PIPE, rc,
                         "Could not receive from MPI peer %u", peer);
          return FALSE;
        }

      transport.next_link = (index + 1) % n_links;
      *out_peer = peer;
      *out_tag = status.MPI_TAG;
      *out_data = g_bytes_new_take (buffer, count);
      return TRUE;
    }

  return FALSE;
}

/* The end of the transport: MPI_Comm_disconnect() of the communicators
 * to spawned processes, then MPI_Finalize() if MPI is ours. Both are
 * collective and wait for the other side to get there too (a disconnect
 * on one side only would hang; a free instead would let a singleton root
 * exit, and its launcher kill the relays, while they are finalizing). A
 * side that died does not hold them up under --enable-recovery; without
 * it, the launcher ends the whole job anyway. A side that hangs would,
 * so the root gives up after a while: see end_transport(). */
typedef struct
{
  BoundedCall  call;
  GArray      *links;
  gboolean     finalize;
} EndCall;

static void
end_call_run (BoundedCall *call)
{
  EndCall *end = (EndCall *) call;

  for (guint i = 0; i < end->links->len; i++)
    {
      Link *link = &g_array_index (end->links, Link, i);

      if (link->spawned)
        MPI_Comm_disconnect (&link->comm);
    }

  if (end->finalize)
    MPI_Finalize ();
}

static void
end_call_clear (BoundedCall *call)
{
  EndCall *end = (EndCall *) call;

  g_array_unref (end->links);
}

/* A relay waits for as long as the root takes (in a static job, until
 * the root program finalizes): giving up would make it exit unfinalized,
 * and mpirun would end the job, root included. The root waits up to
 * @timeout_msec, so that a relay that hangs cannot keep the program from
 * exiting; mpirun then ends the job (and reports a failure). */
static gboolean
end_transport (gboolean finalize,
               gint     timeout_msec)
{
  EndCall *call;
  gboolean done;

  call = g_atomic_rc_box_new0 (EndCall);
  bounded_call_init (&call->call, end_call_run, end_call_clear);
  call->links = g_array_ref (transport.links);
  call->finalize = finalize;

  if (transport.relay || timeout_msec < 0)
    {
      end_call_run (&call->call);
      done = TRUE;
    }
  else
    {
      done = run_bounded (&call->call, "mpg-mpi-finalize",
                          g_get_monotonic_time () + (gint64) timeout_msec * 1000);
      if (!done)
        g_debug ("MPI did not finalize within %d ms: a relay may hang", timeout_msec);
    }

  g_atomic_rc_box_release_full (call, bounded_call_clear);
  return done;
}

/* @timeout_msec bounds the wait for the queued sends, and then the root's
 * wait for the relays in end_transport(); a negative one waits for ever. */
static void
mpi_finalize (gint timeout_msec)
{
  GQueue abandoned = G_QUEUE_INIT;
  gint64 deadline;
  gulong sleep_usec = 50;

  if (!transport.initialized)
    return;

  if (transport.wedged)
    {
      /* No MPI call may be made: let go of what is ours, and of nothing
       * MPI may still read. */
      while (!g_queue_is_empty (&transport.pending))
        g_free (g_queue_pop_head (&transport.pending));
      g_clear_pointer (&transport.links, g_array_unref);
      g_clear_pointer (&transport.lost, g_hash_table_unref);
      transport.initialized = FALSE;
      transport.finalized = TRUE;
      return;
    }

  deadline = timeout_msec < 0 ? G_MAXINT64 : g_get_monotonic_time () + (gint64) timeout_msec * 1000;
  while (!g_queue_is_empty (&transport.pending))
    {
      g_autoptr(GError) local_error = NULL;
      guint peer;

      /* A failed send is dropped (its peer is lost); keep flushing the rest. */
      if (!progress_sends (&peer, &local_error))
        continue;
      if (g_queue_is_empty (&transport.pending) || g_get_monotonic_time () >= deadline)
        break;

      g_usleep (sleep_usec);
      sleep_usec = MIN (sleep_usec * 2, 5000);
    }

  /* Sends that did not go in time: MPI forgets the requests, but may read
   * their buffers until MPI_Finalize(), so the data lives until then. */
  while (!g_queue_is_empty (&transport.pending))
    {
      PendingSend *ps = g_queue_pop_head (&transport.pending);

      MPI_Request_free (&ps->request);
      g_queue_push_tail (&abandoned, ps);
    }

  if (end_transport (transport.owns_mpi, timeout_msec) && transport.owns_mpi)
    {
      transport.owns_mpi = FALSE;
      g_queue_clear_full (&abandoned, (GDestroyNotify) pending_send_free);
    }
  else
    {
      /* MPI may still read them. */
      g_queue_clear_full (&abandoned, g_free);
    }

  g_clear_pointer (&transport.links, g_array_unref);
  g_clear_pointer (&transport.lost, g_hash_table_unref);
  transport.initialized = FALSE;
  transport.finalized = TRUE;
}

static void
mpi_abort (int code)
{
  int is_initialized = 0;
  int is_finalized = 0;

  MPI_Initialized (&is_initialized);
  MPI_Finalized (&is_finalized);
  if (is_initialized && !is_finalized)
    MPI_Abort (MPI_COMM_WORLD, code);

  /* No job to end (or MPI_Abort() returned, which it should not). */
  _exit (code);
}

static char *
mpi_describe (void)
{
  char name[MPI_MAX_PROCESSOR_NAME];
  int len = 0;

  if (!transport.initialized || transport.wedged
      || MPI_Get_processor_name (name, &len) != MPI_SUCCESS)
    return g_strdup_printf ("rank %u on %s", transport.self, g_get_host_name ());

  return g_strdup_printf ("rank %u on %.*s", transport.self, len, name);
}

static const MpgRemoteTransport mpi_transport = {
  .abi = MPG_REMOTE_TRANSPORT_ABI,
  .init = mpi_init,
  .spawn = mpi_spawn,
  .send = mpi_send,
  .try_receive = mpi_try_receive,
  .finalize = mpi_finalize,
  .abort = mpi_abort,
  .describe = mpi_describe,
};

G_MODULE_EXPORT const MpgRemoteTransport *mpg_remote_transport_get (guint     abi,
                                                                   GError  **error);

G_MODULE_EXPORT const MpgRemoteTransport *
mpg_remote_transport_get (guint     abi,
                          GError  **error)
{
  if (abi != MPG_REMOTE_TRANSPORT_ABI)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                   "The MPI module speaks transport ABI %d, not %u",
                   MPG_REMOTE_TRANSPORT_ABI, abi);
      return NULL;
    }

  return &mpi_transport;
}
