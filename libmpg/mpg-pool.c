/* mpg-pool.c
 *
 * Copyright 2026 The libmpg authors
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <glib-unix.h>

#include "mpg-channel-private.h"
#include "mpg-enums.h"
#include "mpg-error.h"
#include "mpg-fork-private.h"
#include "mpg-pool.h"
#include "mpg-pool-private.h"
#include "mpg-process-private.h"
#include "mpg-remote-private.h"
#include "mpg-spawn-private.h"
#include "mpg-runtime.h"
#include "mpg-wire-private.h"

/**
 * MpgPool:
 *
 * A pool of worker processes that runs a function over many values, as
 * Python's `multiprocessing.Pool`.
 *
 * ```c
 * static GVariant *
 * square (GVariant *arg, gpointer user_data, GError **error)
 * {
 *   gint32 x = g_variant_get_int32 (arg);
 *   return g_variant_new_int32 (x * x);
 * }
 *
 * g_autoptr(MpgPool) pool = mpg_pool_new (2);
 * guint f = mpg_pool_add_function (pool, square, NULL, NULL);
 * g_autoptr(GVariant) items = g_variant_new_parsed ("[1, 2, 3]");
 * g_autoptr(GVariant) squares = mpg_pool_map (pool, f, items, 0, NULL, &error);
 * // squares is the `ai` [1, 4, 9]
 * ```
 *
 * ## Functions and workers
 *
 * Workers are forked from the program, so a worker runs a copy of the
 * program as it was when it was forked: any function with any user data
 * works — a closure, or in Python a lambda made just before the call —
 * provided the worker was forked after the function was added with
 * [method@Mpg.Pool.add_function]. The pool forks workers when a call first
 * needs them, keeps them for later calls of the same function, and replaces
 * idle workers that predate a function when a call of that function needs
 * them. Call `add_function()` once and reuse its id to keep workers warm.
 *
 * ## Values in and out
 *
 * Items are a GVariant array of any element type; the elements of an `av`
 * are unboxed, so the function receives the value inside each variant.
 * Results come back in an array in input order, typed `aT` when every
 * result has the same type `T` (`[1, 4, 9]` is an `ai`), `av` otherwise;
 * no items give an empty `av`. A function that returns %NULL without an
 * error gives the unit value `()`. Values cannot carry file descriptors.
 *
 * ## Errors and robustness
 *
 * A task that fails makes its call fail with the same error (domain, code
 * and message). A worker that dies while running a call's task makes that
 * call fail with %MPG_ERROR_WORKER_DIED, unless [property@Mpg.Pool:retries]
 * allows running the task again; the worker is replaced and the pool goes
 * on. A task running longer than [property@Mpg.Pool:task-timeout] is killed
 * and its call fails with %MPG_ERROR_TIMEOUT. For the iterators of
 * [method@Mpg.Pool.imap] these errors are reported for the items concerned
 * only, and the iteration goes on.
 *
 * Workers ignore `SIGINT` (Ctrl-C interrupts the parent only) and die with
 * the parent, even when it is killed. [method@Mpg.Pool.terminate] and
 * disposing of the pool kill the workers and reap them.
 *
 * Workers are daemon processes: a task cannot start an [class@Mpg.Process].
 *
 * Since: 0.1
 */

/**
 * MpgPoolIterator:
 *
 * The results of [method@Mpg.Pool.imap] or [method@Mpg.Pool.imap_unordered],
 * one at a time, as they arrive. Disposing of an iterator stops dispatching
 * the items it has not started.
 *
 * Since: 0.1
 */

#define MAX_MESSAGE MPG_WIRE_DEFAULT_MAX
/* Task: (function, chunk, call serial, items). The items are an array:
 * a slice of the call's typed array, or an `av` to unbox. */
#define TASK_TYPE   "(uutv)"
/* Reply: (chunk, call serial, results, failures). The results are an `aT`
 * when they all have the type T and none failed, an `av` otherwise (with
 * `()` where an item failed); failures are (index in chunk, error).
 * Results that are an array of numbers come alone instead, as the reply
 * to the chunk the worker holds: GLib checks the normal form of an array
 * inside a tuple number by number, of a bare one by its length. */
#define REPLY_TYPE  "(utva(u(sis)))"
/* For the same reason, a large chunk of numbers goes as a head, (function,
 * chunk, call serial) or (name, chunked, chunk, call serial), then the
 * array alone. */
#define TASK_HEAD_TYPE       "(uut)"
#define NAMED_TASK_HEAD_TYPE "(sbut)"
#define SPLIT_MIN_ITEMS      256
/* A task by name (for spawned workers, and functions added by name):
 * (name, whether it takes whole chunks, chunk, call serial, items). */
#define NAMED_TASK_TYPE "(sbutv)"
/* What a spawned worker gets first: (number, maxtasksperchild,
 * initializer name or "", initargs, the start of the worker's name). */
#define SPAWN_BOOTSTRAP_TYPE "(uusmvs)"
#define INIT_ERROR_TYPE "(sis)"
#define TERMINATE_GRACE_MSEC 1000

typedef enum
{
  CALL_APPLY,
  CALL_MAP,
  CALL_STARMAP,
  CALL_IMAP,
  CALL_IMAP_UNORDERED,
} CallKind;

typedef enum
{
  POOL_RUNNING,
  POOL_CLOSED,
  POOL_TERMINATED,
} PoolState;

typedef struct
{
  gatomicrefcount ref_count;
  guint id;
  MpgTaskFunc func;
  gpointer user_data;
  GDestroyNotify user_data_free;
  gboolean chunked;           /* maps a whole chunk at once */
  char *name;                 /* how spawned workers find it */
  GError *name_error;         /* why it has none */
} Function;

typedef struct _Call Call;
typedef struct _Worker Worker;

struct _Call
{
  gatomicrefcount ref_count;
  MpgPool *pool;              /* strong reference */
  CallKind kind;
  guint64 serial;
  Function *function;
  GVariant **items;           /* one by one, unless fixed_input */
  GVariantType *item_type;    /* of a typed input array; NULL to box */
  GBytes *fixed_input;        /* the data of an array of fixed-size items */
  gsize item_size;            /* the size of one of those */
  guint n_items;
  guint chunksize;
  guint n_chunks;
  guint16 *attempts;          /* per chunk: retries, and REQUEUED */
  guint next_chunk;           /* first chunk never dispatched */
  GQueue retry_chunks;        /* chunk numbers to dispatch again */
  guint n_running;            /* chunks in workers */
  guint n_done;               /* items with a result or an error */

  GVariant **results;
  GError **errors;
  GVariant **chunk_results;   /* a chunk's typed results, none failed */

  gboolean finished;          /* no more dispatching; result decided */
  gboolean returned;          /* the waiter has been told */
  GError *error;              /* the whole call failed */
  GVariant *result;           /* of an async call, built off its context */

  /* async */
  GTask *task;
  GMainContext *context;
  GCancellable *cancellable;
  gulong cancelled_id;

  /* imap */
  guint next_index;           /* imap: next index to yield */
  GQueue completed;           /* imap_unordered: indices, completion order */
  guint n_yielded;
  gboolean error_reported;
  GTask *next_task;           /* a pending next_async() */
};

struct _Worker
{
  MpgPool *pool;              /* not a reference: the pool owns its workers */
  guint number;
  pid_t pid;
  int pidfd;
  int fd;
  guint known_functions;      /* ids up to this one were added before the fork */
  int status_fd;              /* a forkserver worker's exit code comes here */
  gboolean starting;
  gboolean spawned;
  gboolean remote;            /* runs on an MPI rank: see mpg-remote.c */
  guint remote_id;
  gboolean retiring;           /* the pool closed its channel */
  gboolean leaving;            /* did its maxtasksperchild chunks */
  gboolean timed_out;
  guint chunks_done;
  GSource *io_source;
  GSource *timeout_source;

  Call *call;                 /* the chunk running, or NULL when idle */
  guint chunk;
  /* A second chunk sent before the first one's reply, so that a worker
   * with short chunks never waits for the pool's thread. */
  Call *queued_call;
  guint queued_chunk;
  gint64 last_event;          /* when the running chunk was sent or started */
  /* A forked worker's second channel, for blocking calls that send their
   * task and read its reply themselves instead of through the pool's
   * thread; -1 for spawned workers. */
  int direct_fd;
  gboolean direct;            /* its running chunk is such a call's */
  GSource *drain_source;      /* reads the reply of an abandoned one */
  /* A forked worker counts the tasks it takes off its channels in a page
   * shared with the pool: at its death, a chunk it never took runs
   * elsewhere rather than fail as if it had killed the worker. */
  gint *received;
  guint sent;                 /* tasks sent to it */
  guint answered;             /* replies handled */
  gboolean fast;              /* its last chunk took less than FAST_CHUNK_USEC */
};

/* Chunks shorter than this are pipelined, two per worker; longer ones go
 * one at a time, so that the last chunks spread over idle workers. */
#define FAST_CHUNK_USEC 2000

/* In Call.attempts: the chunk was sent again once, free, because its
 * worker died before it took it. The low bits count the retries. */
#define REQUEUED 0x8000

struct _MpgPool
{
  GObject parent_instance;

  GMutex mutex;
  GCond cond;
  guint n_waiters;            /* threads waiting on cond */

  guint processes;
  MpgPoolBackend backend;     /* resolved at construction: never AUTO */
  MpgStartMethod start_method;
  guint maxtasksperchild;
  guint task_timeout;
  guint retries;
  MpgTaskFunc initializer;
  gpointer initializer_data;
  GDestroyNotify initializer_data_free;
  GVariant *initargs;
  char *initializer_name;
  GUnixFDList *initargs_fds;

  PoolState state;
  GError *broken;

  GPtrArray *functions;
  guint last_function_id;

  GPtrArray *workers;
  GQueue pending;             /* calls with chunks to dispatch */
  GPtrArray *calls;           /* every unfinished call */
  GPtrArray *graveyard;       /* calls to free without the lock */
  guint64 last_serial;
  guint n_starting;

  guint64 tasks_submitted;
  guint64 tasks_completed;
  guint workers_replaced;

  GThread *thread;
  GMainContext *context;
  GMainLoop *loop;
  gboolean dispatch_scheduled;
  GSource *kill_source;
};

struct _MpgPoolIterator
{
  GObject parent_instance;

  Call *call;
};

G_DEFINE_FINAL_TYPE (MpgPool, mpg_pool, G_TYPE_OBJECT)
G_DEFINE_FINAL_TYPE (MpgPoolIterator, mpg_pool_iterator, G_TYPE_OBJECT)

enum {
  PROP_0,
  PROP_PROCESSES,
  PROP_BACKEND,
  PROP_INITARGS,
  PROP_START_METHOD,
  PROP_MAXTASKSPERCHILD,
  PROP_TASK_TIMEOUT,
  PROP_RETRIES,
  PROP_TASKS_SUBMITTED,
  PROP_TASKS_COMPLETED,
  PROP_WORKERS_REPLACED,
  N_PROPS
};

static GParamSpec *properties[N_PROPS];

enum {
  SIGNAL_PROGRESS,
  N_SIGNALS
};

static guint signals[N_SIGNALS];

static guint worker_counter;

/* The pool's condition, broadcast only when someone waits on it: GLib's
 * broadcast is a system call even then. */
static void
pool_wait_locked (MpgPool *self)
{
  self->n_waiters++;
  g_cond_wait (&self->cond, &self->mutex);
  self->n_waiters--;
}

static gboolean
pool_wait_until_locked (MpgPool *self,
                        gint64   deadline)
{
  gboolean signalled;

  self->n_waiters++;
  signalled = g_cond_wait_until (&self->cond, &self->mutex, deadline);
  self->n_waiters--;
  return signalled;
}

static void
pool_broadcast_locked (MpgPool *self)
{
  if (self->n_waiters > 0)
    g_cond_broadcast (&self->cond);
}

static void schedule_dispatch_locked (MpgPool *self);
static void call_finish_locked       (Call    *call,
                                      GError  *error);

/* Functions */

static Function *
function_ref (Function *function)
{
  g_atomic_ref_count_inc (&function->ref_count);
  return function;
}

static void
function_unref (Function *function)
{
  if (!g_atomic_ref_count_dec (&function->ref_count))
    return;
  if (function->user_data_free != NULL)
    function->user_data_free (function->user_data);
  g_free (function->name);
  g_clear_error (&function->name_error);
  g_free (function);
}

/* Calls */

static Call *
call_ref (Call *call)
{
  g_atomic_ref_count_inc (&call->ref_count);
  return call;
}

static gpointer
release_pool_thread (gpointer data)
{
  g_object_unref (data);
  return NULL;
}

static void
call_free (Call *call)
{
  if (call->cancelled_id != 0)
    g_cancellable_disconnect (call->cancellable, call->cancelled_id);
  g_clear_object (&call->cancellable);
  g_clear_pointer (&call->context, g_main_context_unref);
  for (guint i = 0; call->items != NULL && i < call->n_items; i++)
    g_clear_pointer (&call->items[i], g_variant_unref);
  for (guint i = 0; call->results != NULL && i < call->n_items; i++)
    {
      g_clear_pointer (&call->results[i], g_variant_unref);
      g_clear_error (&call->errors[i]);
    }
  for (guint i = 0; i < call->n_chunks; i++)
    g_clear_pointer (&call->chunk_results[i], g_variant_unref);
  g_free (call->chunk_results);
  g_free (call->items);
  g_clear_pointer (&call->item_type, g_variant_type_free);
  g_clear_pointer (&call->fixed_input, g_bytes_unref);
  g_free (call->results);
  g_free (call->errors);
  g_free (call->attempts);
  g_queue_clear (&call->retry_chunks);
  g_queue_clear (&call->completed);
  g_clear_error (&call->error);
  g_clear_pointer (&call->result, g_variant_unref);
  g_clear_pointer (&call->function, function_unref);
  /* The pool's own thread must not drop the last reference to the pool:
   * disposing of it joins that thread. */
  if (call->pool != NULL && g_thread_self () == call->pool->thread)
    g_thread_unref (g_thread_new ("mpg-pool-release", release_pool_thread,
                                  g_steal_pointer (&call->pool)));
  g_clear_object (&call->pool);
  g_free (call);
}

static void
call_unref (Call *call)
{
  if (g_atomic_ref_count_dec (&call->ref_count))
    call_free (call);
}

/* With the pool's lock held: a call whose last reference goes is freed
 * later, by flush_graveyard(), without the lock (freeing it disconnects
 * from a cancellable, whose handler may be waiting for the lock, and may
 * release the pool). */
static void
call_unref_locked (MpgPool *self,
                   Call    *call)
{
  if (g_atomic_ref_count_dec (&call->ref_count))
    g_ptr_array_add (self->graveyard, call);
}

static void
flush_graveyard (MpgPool *self)
{
  g_autoptr(GPtrArray) dead = NULL;

  g_mutex_lock (&self->mutex);
  if (self->graveyard->len > 0)
    {
      dead = g_steal_pointer (&self->graveyard);
      self->graveyard = g_ptr_array_new ();
    }
  g_mutex_unlock (&self->mutex);

  for (guint i = 0; dead != NULL && i < dead->len; i++)
    call_free (g_ptr_array_index (dead, i));
}

static gboolean
call_is_imap (Call *call)
{
  return call->kind == CALL_IMAP || call->kind == CALL_IMAP_UNORDERED;
}

static guint
chunk_start (Call *call,
             guint chunk)
{
  return chunk * call->chunksize;
}

static guint
chunk_length (Call *call,
              guint chunk)
{
  return MIN (call->chunksize, call->n_items - chunk_start (call, chunk));
}

static gboolean
call_has_chunks_locked (Call *call)
{
  return !call->finished &&
         (call->next_chunk < call->n_chunks || !g_queue_is_empty (&call->retry_chunks));
}

/* Whether values of @type all have the same size (no framing offsets). */
/* An array of numbers (not booleans, not handles): any bytes of a
 * multiple of the element's size are in normal form. */
static gboolean
type_is_number_array (const GVariantType *type)
{
  const char *s = g_variant_type_peek_string (type);

  return s[0] == 'a' && strchr ("ynqiuxtd", s[1]) != NULL && s[1] != '\0';
}

static gboolean
type_is_fixed_size (const GVariantType *type)
{
  const char *string = g_variant_type_peek_string (type);
  gsize length = g_variant_type_get_string_length (type);

  for (gsize i = 0; i < length; i++)
    {
      if (strchr ("bynqiuxthd(){}", string[i]) == NULL)
        return FALSE;
    }
  return TRUE;
}

/* The result of item @index, which is done and did not fail. */
static GVariant *
call_dup_result (Call  *call,
                 guint  index)
{
  GVariant *chunk = call->chunk_results[index / call->chunksize];

  if (chunk != NULL)
    return g_variant_get_child_value (chunk, index % call->chunksize);
  g_assert (call->results != NULL);
  return g_variant_ref (call->results[index]);
}

static gboolean
call_item_is_done (Call  *call,
                   guint  index)
{
  return call->chunk_results[index / call->chunksize] != NULL ||
         (call->results != NULL && (call->results[index] != NULL || call->errors[index] != NULL));
}

/* Joins the chunks' results when they are all typed arrays of the same
 * fixed-size type: a copy of the bytes, no value by value work. */
static GVariant *
call_build_fixed_result (Call *call)
{
  const GVariantType *type;
  gsize total = 0;
  guint8 *data;
  gsize offset = 0;

  /* A first chunk done item by item (boxed, or with failures). */
  if (call->chunk_results[0] == NULL)
    return NULL;
  type = g_variant_get_type (call->chunk_results[0]);
  if (!type_is_fixed_size (g_variant_type_element (type)))
    return NULL;
  for (guint c = 0; c < call->n_chunks; c++)
    {
      if (call->chunk_results[c] == NULL ||
          !g_variant_type_equal (type, g_variant_get_type (call->chunk_results[c])))
        return NULL;
      total += g_variant_get_size (call->chunk_results[c]);
    }

  data = g_malloc (MAX (total, 1));
  for (guint c = 0; c < call->n_chunks; c++)
    {
      gsize size = g_variant_get_size (call->chunk_results[c]);

      memcpy (data + offset, g_variant_get_data (call->chunk_results[c]), size);
      offset += size;
    }
  return g_variant_ref_sink (g_variant_new_from_data (type, data, total, TRUE, g_free, data));
}

/* The results of a finished map, apply or starmap; see the class docs for
 * their type. */
static GVariant *
call_build_result (Call *call)
{
  const GVariantType *type = NULL;
  g_autofree GVariant **children = NULL;
  gboolean mixed = FALSE;
  GVariant *result;

  if (call->kind == CALL_APPLY)
    return call_dup_result (call, 0);

  if (call->n_items == 0)
    return g_variant_ref_sink (g_variant_new_array (G_VARIANT_TYPE_VARIANT, NULL, 0));

  result = call_build_fixed_result (call);
  if (result != NULL)
    return result;

  children = g_new (GVariant *, call->n_items);
  for (guint i = 0; i < call->n_items; i++)
    {
      children[i] = call_dup_result (call, i);
      if (type == NULL)
        type = g_variant_get_type (children[i]);
      else if (!mixed && !g_variant_type_equal (type, g_variant_get_type (children[i])))
        mixed = TRUE;
    }

  if (mixed)
    {
      for (guint i = 0; i < call->n_items; i++)
        {
          GVariant *box = g_variant_ref_sink (g_variant_new_variant (children[i]));

          g_variant_unref (children[i]);
          children[i] = box;
        }
      type = G_VARIANT_TYPE_VARIANT;
    }

  result = g_variant_ref_sink (g_variant_new_array (type, children, call->n_items));
  for (guint i = 0; i < call->n_items; i++)
    g_variant_unref (children[i]);
  return result;
}

typedef struct
{
  Call *call;
  guint done;
  guint total;
} Progress;

static gboolean
emit_progress_cb (gpointer data)
{
  Progress *progress = data;
  Call *call = progress->call;

  g_signal_emit (call->pool, signals[SIGNAL_PROGRESS], 0, G_ASYNC_RESULT (call->task),
                 progress->done, progress->total);
  return G_SOURCE_REMOVE;
}

static void
progress_free (gpointer data)
{
  Progress *progress = data;

  call_unref (progress->call);
  g_free (progress);
}

static void
invoke_in_context (GMainContext *context,
                   GSourceFunc   func,
                   gpointer      data,
                   GDestroyNotify notify)
{
  GSource *source = g_idle_source_new ();

  g_source_set_priority (source, G_PRIORITY_DEFAULT);
  g_source_set_callback (source, func, data, notify);
  g_source_set_static_name (source, "[mpg] pool call");
  g_source_attach (source, context);
  g_source_unref (source);
}

static gboolean
return_task_cb (gpointer data)
{
  Call *call = data;
  MpgPool *pool = call->pool;
  GTask *task;
  GVariant *result = NULL;
  GError *error = NULL;

  g_mutex_lock (&pool->mutex);
  task = g_steal_pointer (&call->task);
  if (call->error != NULL)
    error = g_error_copy (call->error);
  else
    result = g_steal_pointer (&call->result);
  g_mutex_unlock (&pool->mutex);

  if (task == NULL)
    return G_SOURCE_REMOVE;

  if (error != NULL)
    g_task_return_error (task, error);
  else
    g_task_return_pointer (task, result, (GDestroyNotify) g_variant_unref);
  g_object_unref (task);

  return G_SOURCE_REMOVE;
}

static void iterator_wake_locked (Call *call);

/* Tells whoever waits for @call that something happened. */
static void
call_notify_locked (Call *call)
{
  pool_broadcast_locked (call->pool);

  if (call_is_imap (call))
    iterator_wake_locked (call);
  else if (call->finished && call->task != NULL && !call->returned)
    {
      /* Joining many results takes time: not in the caller's main loop,
       * which may be a GUI's. */
      if (call->error == NULL)
        call->result = call_build_result (call);
      call->returned = TRUE;
      invoke_in_context (call->context, return_task_cb, call_ref (call),
                         (GDestroyNotify) call_unref);
    }
}

/* Decides the call's outcome: @error (taken) for the whole call, or NULL
 * when every item is done. */
static void
call_finish_locked (Call   *call,
                    GError *error)
{
  MpgPool *pool = call->pool;

  if (call->finished)
    {
      if (error != NULL)
        g_error_free (error);
      return;
    }

  call->finished = TRUE;
  call->error = error;
  g_queue_remove (&pool->pending, call);
  if (g_ptr_array_remove (pool->calls, call))
    call_unref_locked (pool, call);

  call_notify_locked (call);
}

static void
call_item_done_locked (Call     *call,
                       guint     index,
                       GVariant *result,
                       GError   *error)
{
  if (call_item_is_done (call, index))
    {
      g_clear_pointer (&result, g_variant_unref);
      g_clear_error (&error);
      return;
    }

  /* Only items done one by one need these: a map whose chunks all come
   * back as typed arrays never touches a word per item. */
  if (call->results == NULL)
    {
      call->results = g_new0 (GVariant *, MAX (call->n_items, 1));
      call->errors = g_new0 (GError *, MAX (call->n_items, 1));
    }
  call->results[index] = result;
  call->errors[index] = error;
  call->n_done++;
  if (call->kind == CALL_IMAP_UNORDERED)
    g_queue_push_tail (&call->completed, GUINT_TO_POINTER (index));
  call->pool->tasks_completed++;
}

/* A chunk whose items all succeeded, with their results in a typed array. */
static void
call_chunk_results_locked (Call     *call,
                           guint     chunk,
                           GVariant *results)
{
  guint start = chunk_start (call, chunk);
  guint length = chunk_length (call, chunk);

  for (guint i = start; i < start + length && (call->results != NULL || i == start); i++)
    {
      if (call_item_is_done (call, i))
        {
          g_variant_unref (results);
          return;
        }
    }

  call->chunk_results[chunk] = results;
  call->n_done += length;
  if (call->kind == CALL_IMAP_UNORDERED)
    {
      for (guint i = start; i < start + length; i++)
        g_queue_push_tail (&call->completed, GUINT_TO_POINTER (i));
    }
  call->pool->tasks_completed += length;
}

/* After a chunk's items are all done. */
static void
call_chunk_done_locked (Call *call)
{
  if (call->finished)
    return;

  if (call->task != NULL && !call_is_imap (call))
    {
      Progress *progress = g_new0 (Progress, 1);

      progress->call = call_ref (call);
      progress->done = call->n_done;
      progress->total = call->n_items;
      invoke_in_context (call->context, emit_progress_cb, progress, progress_free);
    }

  if (call->n_done == call->n_items)
    {
      GError *error = NULL;

      /* The error of the first failed item, in input order. */
      for (guint i = 0; call->errors != NULL && i < call->n_items && !call_is_imap (call); i++)
        {
          if (call->errors[i] != NULL)
            {
              error = g_error_copy (call->errors[i]);
              break;
            }
        }
      call_finish_locked (call, error);
    }
  else
    call_notify_locked (call);
}

/* A chunk that will not run: its items fail with @error (imap), or the
 * whole call fails. Takes @error. */
static void
call_chunk_failed_locked (Call   *call,
                          guint   chunk,
                          GError *error)
{
  if (call_is_imap (call))
    {
      guint start = chunk_start (call, chunk);

      for (guint i = start; i < start + chunk_length (call, chunk); i++)
        call_item_done_locked (call, i, NULL, g_error_copy (error));
      g_error_free (error);
      call_chunk_done_locked (call);
    }
  else
    call_finish_locked (call, error);
}

/* Workers */

typedef struct
{
  guint id;
  MpgTaskFunc func;           /* NULL: run by name */
  gpointer user_data;
  const char *name;
  gboolean chunked;
} FunctionCopy;

typedef struct
{
  int fd;
  guint number;
  guint maxtasksperchild;
  MpgTaskFunc initializer;
  gpointer initializer_data;
  char *initializer_name;     /* spawned workers run it by name */
  char *name_prefix;          /* "Fork", "Spawn", "ForkServer" */
  GUnixFDList *initargs_fds;  /* spawned: the fds of the initargs' handles */
  GVariant *initargs;
  FunctionCopy *functions;
  guint n_functions;
  gboolean spawned;
  gint *received;             /* shared with the parent: tasks taken, or NULL */
} WorkerStart;

G_NORETURN static void
worker_exit (int exitcode)
{
  _mpg_process_exit_worker (exitcode);
}

static gboolean
worker_send (int       fd,
             GVariant *message)
{
  g_autoptr(GError) error = NULL;

  if (_mpg_channel_send (fd, message, NULL, MAX_MESSAGE, -1, NULL, &error))
    return TRUE;

  /* The parent closed the channel (it is going away) or the result cannot
   * be sent: nothing more to do here. */
  g_debug ("Pool worker %d could not send: %s", getpid (), error->message);
  return FALSE;
}

static GVariant *
worker_run_task (const FunctionCopy *function,
                 GVariant           *arg,
                 GError            **error)
{
  GVariant *result;

  if (function->func != NULL)
    result = function->func (arg, function->user_data, error);
  else
    result = _mpg_dispatch (function->name, arg, NULL, error);
  if (result == NULL && error != NULL && *error == NULL)
    result = g_variant_new_tuple (NULL, 0);
  if (result != NULL)
    g_variant_ref_sink (result);
  return result;
}

/* Runs a chunk function over the @n items of a chunk. Its result must be
 * an array of @n results; if it fails, or returns anything else, every
 * item of the chunk fails with the same error. */
static GVariant *
worker_run_chunk (const FunctionCopy *function,
                  GVariant           *items,
                  gsize               n,
                  GVariantBuilder    *failures)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GVariant) results = worker_run_task (function, items, &error);
  GVariantBuilder builder;

  if (results != NULL &&
      (!g_variant_is_of_type (results, G_VARIANT_TYPE_ARRAY) || g_variant_n_children (results) != n))
    {
      error = g_error_new (MPG_ERROR, MPG_ERROR_FAILED,
                           "A chunk function returned a %s for %" G_GSIZE_FORMAT " items: "
                           "it must return an array of one result per item",
                           g_variant_get_type_string (results), n);
      g_clear_pointer (&results, g_variant_unref);
    }
  if (error == NULL)
    return g_steal_pointer (&results);

  g_variant_builder_init (&builder, G_VARIANT_TYPE ("av"));
  for (gsize i = 0; i < n; i++)
    {
      g_variant_builder_add (&builder, "v", g_variant_new_tuple (NULL, 0));
      g_variant_builder_add (failures, "(u@(sis))", (guint32) i, _mpg_wire_error_to_variant (error));
    }
  return g_variant_builder_end (&builder);
}

/* Runs in the worker, after _mpg_fork()'s set-up; never returns. */
static void
worker_main (gpointer data)
{
  WorkerStart *start = data;
  g_autofree char *name = g_strdup_printf ("%sPoolWorker-%u",
                                           start->name_prefix != NULL ? start->name_prefix : "Fork",
                                           start->number);
  GMainContext *context;
  guint chunks_done = 0;
  int direct_fd = -1;

  _mpg_process_enter_worker (name, TRUE);
  /* Ctrl-C in a terminal reaches the whole process group: only the parent
   * should see it. */
  signal (SIGINT, SIG_IGN);

  context = g_main_context_new ();
  g_main_context_push_thread_default (context);

  /* A forked worker's first message is the end of its second channel. */
  if (!start->spawned)
    {
      GUnixFDList *fd_list = NULL;
      g_autoptr(GVariant) first = _mpg_channel_receive (start->fd, MAX_MESSAGE, -1, NULL,
                                                        &fd_list, NULL);
      g_autofree int *fds = NULL;

      if (first == NULL)
        worker_exit (0);
      if (!g_variant_is_of_type (first, G_VARIANT_TYPE ("(h)")) || fd_list == NULL ||
          g_unix_fd_list_get_length (fd_list) != 1)
        worker_exit (1);
      fds = g_unix_fd_list_steal_fds (fd_list, NULL);
      direct_fd = fds[0];
      /* Not unreffed: disposing of an object takes GLib's global signal
       * lock, which a thread of the parent may have held at the fork (a
       * forked child hung there). The list is empty; it lives as long as
       * the worker. */
      fd_list = NULL;
    }

  if (start->initializer != NULL || start->initializer_name != NULL)
    {
      g_autoptr(GVariant) args = start->initargs != NULL ? g_variant_ref (start->initargs)
                                                         : g_variant_ref_sink (g_variant_new_tuple (NULL, 0));
      g_autoptr(GVariant) result = NULL;
      g_autoptr(GError) error = NULL;
      FunctionCopy init = { 0, start->initializer, start->initializer_data, start->initializer_name, FALSE };

      if (init.func == NULL)
        {
          /* By name, with the fds of its argument's handles. */
          result = _mpg_dispatch (init.name, args, start->initargs_fds, &error);
          if (result != NULL)
            g_variant_ref_sink (result);
        }
      else
        result = worker_run_task (&init, args, &error);
      if (error != NULL)
        {
          worker_send (start->fd, _mpg_wire_error_to_variant (error));
          worker_exit (1);
        }
    }

  for (;;)
    {
      g_autoptr(GVariant) message = NULL;
      g_autoptr(GVariant) items = NULL;
      g_autoptr(GError) error = NULL;
      const FunctionCopy *function = NULL;
      FunctionCopy named = { 0, NULL, NULL, NULL, FALSE };
      const GVariantType *result_type = NULL;
      GVariantBuilder failures;
      GVariant **results;
      GVariant *reply_results;
      guint32 function_id, chunk;
      guint64 serial;
      gboolean boxed;
      gsize n;
      int fd = start->fd;

      /* A task comes on either channel; its reply goes back on the same. */
      if (direct_fd >= 0)
        {
          struct pollfd fds[2] = { { start->fd, POLLIN, 0 }, { direct_fd, POLLIN, 0 } };

          while (poll (fds, 2, -1) < 0 && errno == EINTR)
            ;
          if (fds[0].revents == 0 && (fds[1].revents & POLLIN))
            fd = direct_fd;
          else if (fds[0].revents == 0)
            {
              /* The pool closed the second channel only. */
              close (direct_fd);
              direct_fd = -1;
              continue;
            }
        }

      message = _mpg_channel_receive (fd, MAX_MESSAGE, -1, NULL, NULL, &error);
      if (message == NULL && fd == direct_fd)
        continue;
      if (message == NULL)
        worker_exit (0);   /* the pool closed the channel */
      if (g_variant_is_of_type (message, G_VARIANT_TYPE (NAMED_TASK_TYPE)))
        {
          g_variant_get (message, "(&sbutv)", &named.name, &named.chunked, &chunk, &serial, &items);
          function_id = 0;
          function = &named;
        }
      else if (g_variant_is_of_type (message, G_VARIANT_TYPE (NAMED_TASK_HEAD_TYPE)))
        {
          g_variant_get (message, "(&sbut)", &named.name, &named.chunked, &chunk, &serial);
          function_id = 0;
          function = &named;
          /* The items follow, alone. */
          items = _mpg_channel_receive (fd, MAX_MESSAGE, -1, NULL, NULL, NULL);
        }
      else if (g_variant_is_of_type (message, G_VARIANT_TYPE (TASK_TYPE)) ||
               g_variant_is_of_type (message, G_VARIANT_TYPE (TASK_HEAD_TYPE)))
        {
          if (g_variant_is_of_type (message, G_VARIANT_TYPE (TASK_TYPE)))
            g_variant_get (message, "(uutv)", &function_id, &chunk, &serial, &items);
          else
            {
              g_variant_get (message, "(uut)", &function_id, &chunk, &serial);
              items = _mpg_channel_receive (fd, MAX_MESSAGE, -1, NULL, NULL, NULL);
            }
          for (guint i = 0; i < start->n_functions; i++)
            {
              if (start->functions[i].id == function_id)
                function = &start->functions[i];
            }
        }
      else
        worker_exit (1);
      if (items == NULL || !g_variant_is_of_type (items, G_VARIANT_TYPE_ARRAY))
        worker_exit (1);
      if (start->received != NULL)
        g_atomic_int_inc (start->received);

      n = g_variant_n_children (items);
      g_variant_builder_init (&failures, G_VARIANT_TYPE ("a(u(sis))"));
      if (function != NULL && function->chunked)
        {
          reply_results = worker_run_chunk (function, items, n, &failures);
          goto reply;
        }
      boxed = g_variant_is_of_type (items, G_VARIANT_TYPE ("av"));
      results = g_new0 (GVariant *, MAX (n, 1));
      for (gsize i = 0; i < n; i++)
        {
          g_autoptr(GVariant) arg = g_variant_get_child_value (items, i);
          g_autoptr(GError) task_error = NULL;

          if (boxed)
            {
              GVariant *inner = g_variant_get_variant (arg);

              g_variant_unref (arg);
              arg = inner;
            }

          if (function == NULL)
            task_error = g_error_new (MPG_ERROR, MPG_ERROR_UNKNOWN_TASK,
                                      "Function %u is unknown in this worker", function_id);
          else
            results[i] = worker_run_task (function, arg, &task_error);

          if (task_error != NULL)
            {
              g_clear_pointer (&results[i], g_variant_unref);
              g_variant_builder_add (&failures, "(u@(sis))", (guint32) i,
                                     _mpg_wire_error_to_variant (task_error));
              results[i] = g_variant_ref_sink (g_variant_new_tuple (NULL, 0));
              result_type = G_VARIANT_TYPE_VARIANT;
            }
          else if (result_type == NULL)
            result_type = g_variant_get_type (results[i]);
          else if (!g_variant_type_equal (result_type, g_variant_get_type (results[i])))
            result_type = G_VARIANT_TYPE_VARIANT;
        }
      if (result_type == NULL)
        result_type = G_VARIANT_TYPE_VARIANT;
      if (g_variant_type_equal (result_type, G_VARIANT_TYPE_VARIANT))
        {
          for (gsize i = 0; i < n; i++)
            {
              GVariant *box = g_variant_ref_sink (g_variant_new_variant (results[i]));

              g_variant_unref (results[i]);
              results[i] = box;
            }
        }
      reply_results = g_variant_new_array (result_type, results, n);
      for (gsize i = 0; i < n; i++)
        g_variant_unref (results[i]);
      g_clear_pointer (&results, g_free);

    reply:
      /* Nothing the task left for the main context must run later. */
      while (g_main_context_iteration (context, FALSE))
        ;

      /* Numbers go alone (then nothing failed: a failure boxes them). */
      if (type_is_number_array (g_variant_get_type (reply_results)))
        {
          g_variant_builder_clear (&failures);
          if (!worker_send (fd, reply_results))
            worker_exit (1);
        }
      else if (!worker_send (fd, g_variant_new ("(ut@v@a(u(sis)))", chunk, serial,
                                                       g_variant_new_variant (reply_results),
                                                       g_variant_builder_end (&failures))))
        worker_exit (1);

      chunks_done++;
      if (start->maxtasksperchild > 0 && chunks_done >= start->maxtasksperchild)
        worker_exit (0);
    }
}

static void
worker_start_free (WorkerStart *start)
{
  g_clear_pointer (&start->initargs, g_variant_unref);
  g_free (start->initializer_name);
  g_free (start->name_prefix);
  g_clear_object (&start->initargs_fds);
  g_free (start->functions);
  g_free (start);
}

static gboolean worker_io_cb      (int          fd,
                                   GIOCondition condition,
                                   gpointer     data);

static void
worker_clear_timeout (Worker *worker)
{
  if (worker->timeout_source != NULL)
    {
      g_source_destroy (worker->timeout_source);
      g_clear_pointer (&worker->timeout_source, g_source_unref);
    }
}

static void
worker_kill (Worker *worker,
             int     sig)
{
  if (worker->starting)
    return;   /* no pid yet: spawn_worker_locked() checks again */
  if (worker->remote)
    _mpg_remote_kill (worker->remote_id, sig);
  else if (worker->pidfd >= 0)
    _mpg_pidfd_send_signal (worker->pidfd, sig);
  else if (worker->pid > 0)
    kill (worker->pid, sig);
}

static char *
describe_status (int status)
{
  if (WIFSIGNALED (status))
    return g_strdup_printf ("killed by signal %d (%s)", WTERMSIG (status),
                            g_strsignal (WTERMSIG (status)));
  if (WIFEXITED (status))
    return g_strdup_printf ("exited with code %d", WEXITSTATUS (status));
  return g_strdup ("ended");
}

/* Dispatches @chunk of @call again: first (it never ran, so it goes
 * before the others) or last (a retry). */
static void
call_redo_chunk_locked (MpgPool  *self,
                        Call     *call,
                        guint     chunk,
                        gboolean  first)
{
  if (first)
    g_queue_push_head (&call->retry_chunks, GUINT_TO_POINTER (chunk));
  else
    g_queue_push_tail (&call->retry_chunks, GUINT_TO_POINTER (chunk));
  if (!g_queue_find (&self->pending, call))
    g_queue_push_tail (&self->pending, call);
}

/* The worker's channel ended: reap it, and settle the chunk it held. */
static void
worker_lost_locked (MpgPool *self,
                    Worker  *worker)
{
  gboolean caller_owns_direct_fd;
  g_autofree char *how = NULL;
  int status = 0;
  pid_t r;
  Call *call;

  /* A caller reading a reply on the second channel closes it when it
   * notices; one that gave up left it to the drain source. */
  caller_owns_direct_fd = worker->direct && worker->drain_source == NULL;
  worker_clear_timeout (worker);
  if (worker->io_source != NULL)
    {
      g_source_destroy (worker->io_source);
      g_clear_pointer (&worker->io_source, g_source_unref);
    }
  if (worker->drain_source != NULL)
    {
      g_source_destroy (worker->drain_source);
      g_clear_pointer (&worker->drain_source, g_source_unref);
    }
  _mpg_fork_close_fd (&worker->fd);
  if (caller_owns_direct_fd)
    worker->direct_fd = -1;
  else
    _mpg_fork_close_fd (&worker->direct_fd);

  /* The channel ends when the worker exits, so this returns at once (a
   * worker that closed it otherwise is ended). A forkserver worker is the
   * server's child: the server sends its exit code. */
  if (worker->status_fd >= 0)
    {
      gint code = _mpg_forkserver_read_status (worker->status_fd, 200);

      if (code == G_MININT)
        {
          worker_kill (worker, SIGKILL);
          /* A remote worker's relay answers unless its rank is lost,
           * which the relay thread reports as a kill: this only bounds
           * a rank that stopped answering at all. */
          code = _mpg_forkserver_read_status (worker->status_fd, worker->remote ? 30000 : -1);
          if (code == G_MININT)
            code = -SIGKILL;
        }
      _mpg_fork_close_fd (&worker->status_fd);
      if (code >= 0)
        status = W_EXITCODE (code, 0);
      else
        status = -code;   /* W_EXITCODE (0, signal) */
    }
  else
    {
      /* The channel ends a moment before the worker can be reaped: wait
       * for its pidfd (200 ms at most) rather than sleep in steps. */
      r = waitpid (worker->pid, &status, WNOHANG);
      if (r == 0 && worker->pidfd >= 0)
        {
          struct pollfd pfd = { worker->pidfd, POLLIN, 0 };

          while (poll (&pfd, 1, 200) < 0 && errno == EINTR)
            ;
          r = waitpid (worker->pid, &status, WNOHANG);
        }
      for (guint i = 0; r == 0 && i < 200; i++)
        {
          g_usleep (1000);
          r = waitpid (worker->pid, &status, WNOHANG);
        }
      if (r == 0)
        {
          worker_kill (worker, SIGKILL);
          while (waitpid (worker->pid, &status, 0) < 0 && errno == EINTR)
            ;
        }
    }
  _mpg_fork_close_fd (&worker->pidfd);
  how = describe_status (status);
  g_debug ("Pool worker %d %s", worker->pid, how);

  call = g_steal_pointer (&worker->call);
  if (call != NULL)
    {
      /* Whether it took the chunk off its channel at all. Only for a
       * worker that has answered before: one that dies at its start (an
       * initializer that crashes) would otherwise be replaced for ever. */
      gboolean never_took_it = worker->received != NULL && worker->answered > 0 &&
                               (guint) g_atomic_int_get (worker->received) == worker->answered &&
                               !(call->attempts[worker->chunk] & REQUEUED);

      call->n_running--;
      if (call->finished)
        ;
      else if (never_took_it && self->broken == NULL && !worker->timed_out &&
               self->state != POOL_TERMINATED)
        {
          g_debug ("Pool worker %d died before it took chunk %u: it runs elsewhere",
                   worker->pid, worker->chunk);
          /* Once: a chunk whose message kills every worker that takes it
           * must not go round for ever. */
          call->attempts[worker->chunk] |= REQUEUED;
          call_redo_chunk_locked (self, call, worker->chunk, TRUE);
        }
      else if (self->broken != NULL)
        call_chunk_failed_locked (call, worker->chunk, g_error_copy (self->broken));
      else if (worker->timed_out)
        call_chunk_failed_locked (call, worker->chunk,
                                  g_error_new (MPG_ERROR, MPG_ERROR_TIMEOUT,
                                               "A task of the pool ran longer than %u ms per item: "
                                               "worker process %d was killed",
                                               self->task_timeout, worker->pid));
      else if ((call->attempts[worker->chunk] & ~REQUEUED) < self->retries &&
               self->state != POOL_TERMINATED)
        {
          call->attempts[worker->chunk]++;
          call_redo_chunk_locked (self, call, worker->chunk, FALSE);
        }
      else
        call_chunk_failed_locked (call, worker->chunk,
                                  g_error_new (MPG_ERROR, MPG_ERROR_WORKER_DIED,
                                               "Worker process %d %s while running a task",
                                               worker->pid, how));
      call_unref_locked (self, call);
    }
  /* A chunk queued behind it never started: it runs elsewhere, without
   * counting as an attempt. */
  call = g_steal_pointer (&worker->queued_call);
  if (call != NULL)
    {
      call->n_running--;
      if (!call->finished && self->broken == NULL && self->state != POOL_TERMINATED)
        {
          g_debug ("Pool worker %d: chunk %u, queued behind, runs elsewhere",
                   worker->pid, worker->queued_chunk);
          call_redo_chunk_locked (self, call, worker->queued_chunk, TRUE);
        }
      else if (!call->finished)
        call_chunk_failed_locked (call, worker->queued_chunk,
                                  self->broken != NULL ? g_error_copy (self->broken)
                                  : g_error_new (MPG_ERROR, MPG_ERROR_WORKER_DIED,
                                                 "Worker process %d %s before running a task",
                                                 worker->pid, how));
      call_unref_locked (self, call);
    }

  if (self->state == POOL_RUNNING && !worker->retiring)
    self->workers_replaced++;

  g_ptr_array_remove (self->workers, worker);
  pool_broadcast_locked (self);
  schedule_dispatch_locked (self);
}

static gboolean
worker_timeout_cb (gpointer data)
{
  Worker *worker = data;

  /* The pool's lock is not needed: the worker stays in the pool until its
   * channel ends, which only this thread notices. */
  worker->timed_out = TRUE;
  worker_kill (worker, SIGKILL);
  g_clear_pointer (&worker->timeout_source, g_source_unref);
  return G_SOURCE_REMOVE;
}

/* Sends a chunk to @worker, on @fd: its channel, or its second one for a
 * call that reads the reply itself. */
static gboolean
worker_send_chunk_locked (MpgPool *self,
                          Worker  *worker,
                          int      fd,
                          Call    *call,
                          guint    chunk)
{
  g_autoptr(GError) error = NULL;
  GVariant *slice;
  GVariant *message;
  guint start = chunk_start (call, chunk);
  guint length = chunk_length (call, chunk);

  if (call->fixed_input != NULL)
    {
      g_autoptr(GBytes) bytes = g_bytes_new_from_bytes (call->fixed_input, start * call->item_size,
                                                        length * call->item_size);
      g_autoptr(GVariantType) array_type = g_variant_type_new_array (call->item_type);

      slice = g_variant_new_from_bytes (array_type, bytes, TRUE);
    }
  else if (call->item_type != NULL)
    slice = g_variant_new_array (call->item_type, call->items + start, length);
  else
    {
      GVariantBuilder builder;

      g_variant_builder_init (&builder, G_VARIANT_TYPE ("av"));
      for (guint i = start; i < start + length; i++)
        g_variant_builder_add (&builder, "v", call->items[i]);
      slice = g_variant_builder_end (&builder);
    }

  worker->sent++;
  if (worker->call == NULL)
    {
      worker->call = call_ref (call);
      worker->chunk = chunk;
      worker->last_event = g_get_monotonic_time ();
    }
  else
    {
      g_assert (worker->queued_call == NULL);
      worker->queued_call = call_ref (call);
      worker->queued_chunk = chunk;
    }
  call->n_running++;

  if (self->task_timeout > 0)
    {
      worker->timeout_source = g_timeout_source_new ((guint) MIN ((guint64) self->task_timeout * length,
                                                                  G_MAXUINT));
      g_source_set_callback (worker->timeout_source, worker_timeout_cb, worker, NULL);
      g_source_set_static_name (worker->timeout_source, "[mpg] pool task timeout");
      g_source_attach (worker->timeout_source, self->context);
    }

  if (length >= SPLIT_MIN_ITEMS && type_is_number_array (g_variant_get_type (slice)))
    {
      /* The head, then the numbers alone (still floating: the send
       * below takes them). */
      if (worker->spawned || call->function->func == NULL)
        message = g_variant_new (NAMED_TASK_HEAD_TYPE, call->function->name,
                                 call->function->chunked, chunk, call->serial);
      else
        message = g_variant_new (TASK_HEAD_TYPE, call->function->id, chunk, call->serial);
      if (_mpg_channel_send (fd, message, NULL, MAX_MESSAGE, -1, NULL, &error))
        message = slice;
      else
        {
          g_variant_unref (g_variant_ref_sink (slice));
          message = NULL;
        }
    }
  else if (worker->spawned || call->function->func == NULL)
    message = g_variant_new ("(sbut@v)", call->function->name, call->function->chunked,
                             chunk, call->serial, g_variant_new_variant (slice));
  else
    message = g_variant_new ("(uut@v)", call->function->id, chunk, call->serial,
                             g_variant_new_variant (slice));
  if (message == NULL ||
      !_mpg_channel_send (fd, message, NULL, MAX_MESSAGE, -1, NULL, &error))
    {
      /* A worker that cannot take a task is gone: settle it as a death. */
      g_debug ("Pool worker %d: %s", worker->pid, error->message);
      worker_kill (worker, SIGKILL);
      return FALSE;
    }

  return TRUE;
}

/*
 * _mpg_pool_reply_check:
 * @message: a message from a worker (any type)
 * @chunk: the chunk the worker holds
 * @serial: the serial of its call
 * @length: the number of items in the chunk
 * @out_results: (out): the results array
 * @out_failures: (out): the failures, `a(u(sis))`
 *
 * Checks a worker's reply before the pool believes any of it: the type,
 * the chunk and call it answers, one result per item, failures only in a
 * boxed (`av`) reply, each naming an item of the chunk once.
 */
gboolean
_mpg_pool_reply_check (GVariant   *message,
                       guint32     chunk,
                       guint64     serial,
                       guint       length,
                       GVariant  **out_results,
                       GVariant  **out_failures,
                       GError    **error)
{
  g_autoptr(GVariant) results = NULL;
  g_autoptr(GVariant) failures = NULL;
  g_autofree guint8 *seen = NULL;
  guint32 got_chunk;
  guint64 got_serial;
  gsize n_failures;

  if (type_is_number_array (g_variant_get_type (message)))
    {
      /* Numbers alone: the results of the chunk the worker holds. */
      if (g_variant_n_children (message) != length)
        goto malformed;
      *out_results = g_variant_ref (message);
      *out_failures = g_variant_ref_sink (g_variant_new_array (G_VARIANT_TYPE ("(u(sis))"), NULL, 0));
      return TRUE;
    }
  if (!g_variant_is_of_type (message, G_VARIANT_TYPE (REPLY_TYPE)))
    goto malformed;

  g_variant_get (message, "(utv@a(u(sis)))", &got_chunk, &got_serial, &results, &failures);
  if (got_serial != serial || got_chunk != chunk ||
      !g_variant_is_of_type (results, G_VARIANT_TYPE_ARRAY) ||
      g_variant_n_children (results) != length)
    goto malformed;

  n_failures = g_variant_n_children (failures);
  if (n_failures > 0 && !g_variant_is_of_type (results, G_VARIANT_TYPE ("av")))
    goto malformed;
  if (n_failures > length)
    goto malformed;
  seen = g_malloc0 (MAX (length, 1));
  for (gsize i = 0; i < n_failures; i++)
    {
      guint32 index;

      g_variant_get_child (failures, i, "(u(sis))", &index, NULL, NULL, NULL);
      if (index >= length || seen[index])
        goto malformed;
      seen[index] = 1;
    }

  *out_results = g_steal_pointer (&results);
  *out_failures = g_steal_pointer (&failures);
  return TRUE;

malformed:
  g_set_error_literal (error, MPG_ERROR, MPG_ERROR_PROTOCOL,
                       "A pool worker sent a reply that does not match its task");
  return FALSE;
}

static gboolean
worker_handle_message_locked (MpgPool  *self,
                              Worker   *worker,
                              GVariant *message)
{
  g_autoptr(GVariant) results = NULL;
  g_autoptr(GVariant) failures = NULL;
  Call *call = worker->call;
  guint chunk = worker->chunk;
  guint start, length;
  gboolean boxed;
  gsize n_failures;

  if (g_variant_is_of_type (message, G_VARIANT_TYPE (INIT_ERROR_TYPE)))
    {
      g_autoptr(GError) error = _mpg_wire_error_from_variant (message);

      if (self->broken == NULL)
        {
          self->broken = g_error_copy (error);
          g_prefix_error (&self->broken, "Pool initializer failed: ");
        }
      /* Every call waiting for a worker fails: none will start. */
      while (!g_queue_is_empty (&self->pending))
        call_finish_locked (g_queue_peek_head (&self->pending), g_error_copy (self->broken));
      return TRUE;
    }

  if (call == NULL)
    return FALSE;
  start = chunk_start (call, chunk);
  length = chunk_length (call, chunk);
  if (!_mpg_pool_reply_check (message, chunk, call->serial, length,
                              &results, &failures, NULL))
    return FALSE;
  boxed = g_variant_is_of_type (results, G_VARIANT_TYPE ("av"));
  n_failures = g_variant_n_children (failures);

  worker_clear_timeout (worker);
  {
    gint64 now = g_get_monotonic_time ();

    worker->fast = now - worker->last_event < FAST_CHUNK_USEC;
    worker->last_event = now;
  }
  worker->answered++;
  /* The queued chunk, if any, is the one running now. */
  worker->call = g_steal_pointer (&worker->queued_call);
  worker->chunk = worker->queued_chunk;
  worker->chunks_done++;
  call->n_running--;

  for (gsize i = 0; i < n_failures && !call->finished; i++)
    {
      g_autoptr(GVariant) error_variant = NULL;
      guint32 index;

      g_variant_get_child (failures, i, "(u@(sis))", &index, &error_variant);
      if (index < length)
        call_item_done_locked (call, start + index, NULL,
                               _mpg_wire_error_from_variant (error_variant));
    }
  if (!boxed && !call->finished)
    call_chunk_results_locked (call, chunk, g_variant_ref (results));
  for (guint i = 0; i < length && boxed && !call->finished; i++)
    {
      GVariant *value = g_variant_get_child_value (results, i);

      if (boxed)
        {
          GVariant *inner = g_variant_get_variant (value);

          g_variant_unref (value);
          value = inner;
        }
      /* Items that failed are done already: the value is dropped. */
      call_item_done_locked (call, start + i, value, NULL);
    }
  call_chunk_done_locked (call);
  call_unref_locked (self, call);

  /* A worker that did its share leaves by itself. */
  if (self->maxtasksperchild > 0 && worker->chunks_done >= self->maxtasksperchild)
    worker->leaving = TRUE;

  return TRUE;
}


static gboolean dispatch_cb (gpointer data);

static gboolean
worker_io_cb (int          fd,
              GIOCondition condition,
              gpointer     data)
{
  Worker *worker = data;
  MpgPool *self = worker->pool;
  gboolean keep = TRUE;

  g_mutex_lock (&self->mutex);

  for (;;)
    {
      g_autoptr(GVariant) message = NULL;
      g_autoptr(GError) error = NULL;

      message = _mpg_channel_receive (worker->fd, MAX_MESSAGE, 0, NULL, NULL, &error);
      if (message == NULL && g_error_matches (error, MPG_ERROR, MPG_ERROR_TIMEOUT))
        break;   /* nothing more for now */
      if (message == NULL || !worker_handle_message_locked (self, worker, message))
        {
          if (message != NULL || !g_error_matches (error, MPG_ERROR, MPG_ERROR_END_OF_STREAM))
            g_debug ("Pool worker %d: %s", worker->pid,
                     message != NULL ? "malformed message" : error->message);
          /* A worker that breaks the protocol is ended like a dead one. */
          if (message != NULL)
            worker_kill (worker, SIGKILL);
          worker_lost_locked (self, worker);
          keep = FALSE;
          break;
        }
    }

  g_mutex_unlock (&self->mutex);

  /* The worker that answered is idle: give it its next chunk now, not
   * after another pass of the main loop. */
  dispatch_cb (self);

  return keep ? G_SOURCE_CONTINUE : G_SOURCE_REMOVE;
}

static void
worker_free (gpointer data)
{
  Worker *worker = data;

  g_assert (worker->call == NULL);
  g_assert (worker->queued_call == NULL);
  g_assert (worker->io_source == NULL);
  g_assert (worker->drain_source == NULL);
  if (worker->received != NULL)
    munmap (worker->received, sizeof (gint));
  g_assert (worker->timeout_source == NULL);
  g_free (worker);
}

static guint
count_live_workers_locked (MpgPool *self)
{
  guint n = 0;

  for (guint i = 0; i < self->workers->len; i++)
    {
      Worker *worker = g_ptr_array_index (self->workers, i);

      if (!worker->retiring && !worker->leaving)
        n++;
    }
  return n;
}

/* Whether workers find functions by name: spawned ones, and remote ones. */
static gboolean
finds_by_name (MpgPool *self)
{
  return self->start_method != MPG_START_METHOD_FORK || self->backend != MPG_POOL_BACKEND_LOCAL;
}

/* Forks a worker that knows every function added so far. Releases the
 * lock while forking: a binding's fork function may need to wait for a
 * thread that is itself waiting for this lock. */
static Worker *
spawn_worker_locked (MpgPool  *self,
                     GError  **error)
{
  WorkerStart *start = g_new0 (WorkerStart, 1);
  Worker *worker = g_new0 (Worker, 1);
  int fds[2];
  gboolean ok;

  worker->pool = self;
  worker->fd = -1;
  worker->pidfd = -1;
  worker->status_fd = -1;
  worker->direct_fd = -1;
  worker->starting = TRUE;
  worker->known_functions = self->last_function_id;
  worker->number = g_atomic_int_add (&worker_counter, 1) + 1;
  g_ptr_array_add (self->workers, worker);
  self->n_starting++;

  start->number = worker->number;
  start->maxtasksperchild = self->maxtasksperchild;
  start->initializer = self->initializer;
  start->initializer_data = self->initializer_data;
  start->initargs = self->initargs != NULL ? g_variant_ref (self->initargs) : NULL;
  start->n_functions = self->functions->len;
  start->functions = g_new (FunctionCopy, MAX (1, self->functions->len));
  for (guint i = 0; i < self->functions->len; i++)
    {
      Function *function = g_ptr_array_index (self->functions, i);

      start->functions[i].id = function->id;
      start->functions[i].func = function->func;
      start->functions[i].user_data = function->user_data;
      start->functions[i].name = NULL;   /* named tasks come by name */
      start->functions[i].chunked = function->chunked;
    }
  if (finds_by_name (self))
    {
      worker->spawned = TRUE;
      worker->known_functions = G_MAXUINT;
    }
  worker->remote = self->backend != MPG_POOL_BACKEND_LOCAL;

  g_mutex_unlock (&self->mutex);

  ok = _mpg_fork_socketpair (fds, error);
  if (ok && worker->spawned)
    {
      if (self->initializer_name != NULL)
        start->initializer_name = g_strdup (self->initializer_name);
      ok = (self->initializer == NULL || start->initializer_name != NULL ||
            (start->initializer_name = _mpg_task_name_for (self->initializer,
                                                           self->initializer_data, error)) != NULL);
      if (ok && worker->remote && self->initargs_fds != NULL &&
          g_unix_fd_list_get_length (self->initargs_fds) > 0)
        {
          ok = FALSE;
          g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                               "The pool's initargs hold objects that live in this machine "
                               "(queues, pipes, locks, shared memory): they cannot go to "
                               "workers on MPI ranks");
        }
      if (ok && worker->remote)
        {
          /* The relay thread takes the worker's end. */
          ok = _mpg_remote_start_worker (self->backend, self->processes, fds[1], &worker->pid,
                                         &worker->status_fd, &worker->remote_id, NULL, error);
          fds[1] = -1;
        }
      else if (ok)
        ok = (self->start_method == MPG_START_METHOD_FORKSERVER
            ? _mpg_forkserver_start ("pool", &fds[1], 1, &worker->pid, &worker->pidfd,
                                     &worker->status_fd, error)
            : _mpg_spawn ("pool", &fds[1], 1, &worker->pid, &worker->pidfd, error));
      _mpg_fork_close_fd (&fds[1]);
      if (ok && !_mpg_channel_send (fds[0],
                                    g_variant_new (SPAWN_BOOTSTRAP_TYPE, worker->number,
                                                   self->maxtasksperchild,
                                                   start->initializer_name != NULL ? start->initializer_name : "",
                                                   start->initargs,
                                                   worker->remote ? "Mpi"
                                                   : self->start_method == MPG_START_METHOD_FORKSERVER
                                                   ? "ForkServer" : "Spawn"),
                                    self->initargs_fds, MAX_MESSAGE, -1, NULL, error))
        {
          /* Gone already: the end of its channel settles it below. */
          g_clear_error (error);
        }
      if (ok)
        worker->fd = fds[0];
      else
        _mpg_fork_close_fd (&fds[0]);
    }
  else if (ok)
    {
      int direct[2] = { -1, -1 };

      start->fd = fds[1];
      worker->received = mmap (NULL, sizeof (gint), PROT_READ | PROT_WRITE,
                               MAP_SHARED | MAP_ANONYMOUS, -1, 0);
      if (worker->received == MAP_FAILED)
        worker->received = NULL;
      start->received = worker->received;
      ok = _mpg_fork (fds[1], worker_main, start, &worker->pid, &worker->pidfd, error);
      _mpg_fork_close_fd (&fds[1]);
      /* Only this worker shares it: not the children forked later. */
      if (worker->received != NULL)
        madvise (worker->received, sizeof (gint), MADV_DONTFORK);
      /* Its second channel (see Worker.direct_fd), whose end it gets
       * first: forked with the other, it would be in every later child. */
      if (ok && _mpg_fork_socketpair (direct, NULL))
        {
          g_autoptr(GUnixFDList) fd_list = g_unix_fd_list_new_from_array (&direct[1], 1);
          g_autofree int *stolen = NULL;
          gboolean sent;

          sent = _mpg_channel_send (fds[0], g_variant_new ("(h)", 0), fd_list, MAX_MESSAGE, -1,
                                    NULL, NULL);
          /* Back from the list: a registered fd is closed by the registry. */
          stolen = g_unix_fd_list_steal_fds (fd_list, NULL);
          _mpg_fork_close_fd (&stolen[0]);
          if (sent)
            {
              g_unix_set_fd_nonblocking (direct[0], TRUE, NULL);
              worker->direct_fd = direct[0];
            }
          else
            _mpg_fork_close_fd (&direct[0]);
        }
      else if (ok)
        {
          /* Without it, a worker waits for nothing: end it. */
          ok = FALSE;
          kill (worker->pid, SIGKILL);
          waitpid (worker->pid, NULL, 0);
          _mpg_fork_close_fd (&worker->pidfd);
          g_set_error_literal (error, MPG_ERROR, MPG_ERROR_FAILED,
                               "Could not make a channel for a pool worker");
        }
      if (ok)
        worker->fd = fds[0];
      else
        _mpg_fork_close_fd (&fds[0]);
    }
  worker_start_free (start);

  g_mutex_lock (&self->mutex);

  self->n_starting--;
  worker->starting = FALSE;
  if (!ok)
    {
      g_ptr_array_remove (self->workers, worker);
      pool_broadcast_locked (self);
      return NULL;
    }

  g_unix_set_fd_nonblocking (worker->fd, TRUE, NULL);
  worker->io_source = g_unix_fd_source_new (worker->fd, G_IO_IN | G_IO_HUP | G_IO_ERR);
  g_source_set_callback (worker->io_source, G_SOURCE_FUNC (worker_io_cb), worker, NULL);
  g_source_set_static_name (worker->io_source, "[mpg] pool worker");
  g_source_attach (worker->io_source, self->context);

  g_debug ("Pool worker %d started", worker->pid);

  /* Terminated while forking: the worker goes at once. */
  if (self->state == POOL_TERMINATED)
    worker_kill (worker, SIGKILL);

  return worker;
}

/* Asks an idle worker to leave: it exits when its channel ends. */
static void
retire_worker_locked (MpgPool *self,
                      Worker  *worker)
{
  worker->retiring = TRUE;
  shutdown (worker->fd, SHUT_WR);
}

static gboolean
worker_is_idle (Worker *worker)
{
  return !worker->starting && !worker->retiring && !worker->leaving && worker->call == NULL;
}

/* A worker running a short chunk can take one more. Not with task
 * timeouts (each chunk's clock starts when it is sent), nor past
 * maxtasksperchild, nor behind a chunk whose reply comes on the second
 * channel (replies must come in the order of the tasks). */
static gboolean
worker_has_room (MpgPool *self,
                 Worker  *worker)
{
  return !worker->starting && !worker->retiring && !worker->leaving &&
         worker->call != NULL && worker->queued_call == NULL && worker->fast && !worker->direct &&
         self->task_timeout == 0 &&
         (self->maxtasksperchild == 0 || worker->chunks_done + 2 <= self->maxtasksperchild);
}

static Worker *
find_worker_with_room_locked (MpgPool *self,
                              guint    function_id)
{
  for (guint i = 0; i < self->workers->len; i++)
    {
      Worker *worker = g_ptr_array_index (self->workers, i);

      if (worker_has_room (self, worker) && worker->known_functions >= function_id)
        return worker;
    }
  return NULL;
}

static Worker *
find_idle_worker_locked (MpgPool *self,
                         guint    function_id,
                         gboolean knowing)
{
  for (guint i = 0; i < self->workers->len; i++)
    {
      Worker *worker = g_ptr_array_index (self->workers, i);

      if (worker_is_idle (worker) && (worker->known_functions >= function_id) == knowing)
        return worker;
    }
  return NULL;
}

/* Gives idle workers the chunks of the pending calls. Only the pool's
 * thread may fork workers (@may_spawn): elsewhere, a call that needs one
 * more worker schedules a dispatch in the pool's thread. */
static void
dispatch_locked (MpgPool  *self,
                 gboolean  may_spawn)
{
  gboolean progress = TRUE;

  while (progress && self->state != POOL_TERMINATED)
    {
      Call *call = g_queue_peek_head (&self->pending);
      Worker *worker;
      guint chunk;

      progress = FALSE;
      if (call == NULL)
        break;

      if (!call_has_chunks_locked (call))
        {
          g_queue_pop_head (&self->pending);
          progress = TRUE;
          continue;
        }

      worker = find_idle_worker_locked (self, call->function->id, TRUE);
      if (worker == NULL && self->broken == NULL &&
          count_live_workers_locked (self) + self->n_starting < self->processes)
        {
          g_autoptr(GError) error = NULL;

          if (!may_spawn)
            {
              schedule_dispatch_locked (self);
              break;
            }
          worker = spawn_worker_locked (self, &error);
          if (worker == NULL)
            {
              call_finish_locked (call, g_steal_pointer (&error));
              progress = TRUE;
              continue;
            }
          /* The lock was released: look again. */
          progress = TRUE;
          continue;
        }
      if (worker == NULL)
        worker = find_worker_with_room_locked (self, call->function->id);
      if (worker == NULL)
        {
          /* Make room: an idle worker that cannot run this call's function
           * is replaced by one that can. */
          Worker *stale = find_idle_worker_locked (self, call->function->id, FALSE);

          if (stale != NULL)
            {
              if (!may_spawn)
                {
                  schedule_dispatch_locked (self);
                  break;
                }
              retire_worker_locked (self, stale);
              progress = TRUE;
            }
          continue;
        }

      if (!g_queue_is_empty (&call->retry_chunks))
        chunk = GPOINTER_TO_UINT (g_queue_pop_head (&call->retry_chunks));
      else
        chunk = call->next_chunk++;
      worker_send_chunk_locked (self, worker, worker->fd, call, chunk);

      /* Round robin between calls, one chunk at a time. */
      g_queue_pop_head (&self->pending);
      if (call_has_chunks_locked (call))
        g_queue_push_tail (&self->pending, call);
      progress = TRUE;
    }

  /* A closed pool lets its workers go once everything is done. */
  if (self->state == POOL_CLOSED && g_queue_is_empty (&self->pending))
    {
      for (guint i = 0; i < self->workers->len; i++)
        {
          Worker *worker = g_ptr_array_index (self->workers, i);

          if (worker_is_idle (worker))
            retire_worker_locked (self, worker);
        }
    }
}

static gboolean
dispatch_cb (gpointer data)
{
  MpgPool *self = data;

  g_mutex_lock (&self->mutex);
  self->dispatch_scheduled = FALSE;
  dispatch_locked (self, TRUE);
  pool_broadcast_locked (self);
  g_mutex_unlock (&self->mutex);

  flush_graveyard (self);

  return G_SOURCE_REMOVE;
}

static void
schedule_dispatch_locked (MpgPool *self)
{
  GSource *source;

  if (self->dispatch_scheduled || self->context == NULL)
    return;

  self->dispatch_scheduled = TRUE;
  source = g_idle_source_new ();
  g_source_set_callback (source, dispatch_cb, self, NULL);
  g_source_set_static_name (source, "[mpg] pool dispatch");
  g_source_attach (source, self->context);
  g_source_unref (source);
}

static gpointer
pool_thread_main (gpointer data)
{
  MpgPool *self = data;
  sigset_t set;

  /* Signals such as Ctrl-C's are for the program's own threads. */
  sigemptyset (&set);
  sigaddset (&set, SIGINT);
  sigaddset (&set, SIGTERM);
  sigaddset (&set, SIGHUP);
  sigaddset (&set, SIGQUIT);
  pthread_sigmask (SIG_BLOCK, &set, NULL);

  g_main_context_push_thread_default (self->context);
  g_main_loop_run (self->loop);
  g_main_context_pop_thread_default (self->context);

  return NULL;
}

/* The pool's thread and main context, made on the first call. GLib
 * aborts the program when a main context cannot make its wake-up fd: with
 * no fd left, the call fails instead. */
static gboolean
ensure_thread_locked (MpgPool  *self,
                      GError  **error)
{
  GMainContext *context;
  GThread *thread;
  int probe;

  if (self->thread != NULL)
    return TRUE;

  probe = eventfd (0, EFD_CLOEXEC);
  if (probe < 0)
    {
      int saved_errno = errno;

      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved_errno),
                   "Could not start the pool's thread: %s", g_strerror (saved_errno));
      return FALSE;
    }
  close (probe);

  context = g_main_context_new ();
  self->loop = g_main_loop_new (context, FALSE);
  self->context = context;
  thread = g_thread_try_new ("mpg-pool", pool_thread_main, self, error);
  if (thread == NULL)
    {
      g_prefix_error (error, "Could not start the pool's thread: ");
      g_clear_pointer (&self->loop, g_main_loop_unref);
      g_clear_pointer (&self->context, g_main_context_unref);
      return FALSE;
    }
  self->thread = thread;
  return TRUE;
}

static gboolean
kill_workers_cb (gpointer data)
{
  MpgPool *self = data;

  g_mutex_lock (&self->mutex);
  for (guint i = 0; i < self->workers->len; i++)
    worker_kill (g_ptr_array_index (self->workers, i), SIGKILL);
  g_clear_pointer (&self->kill_source, g_source_unref);
  g_mutex_unlock (&self->mutex);

  return G_SOURCE_REMOVE;
}

/* GObject */

static void
mpg_pool_dispose (GObject *object)
{
  MpgPool *self = MPG_POOL (object);

  mpg_pool_terminate (self);
  mpg_pool_join (self, -1, NULL);

  if (self->thread != NULL)
    {
      g_main_loop_quit (self->loop);
      g_thread_join (g_steal_pointer (&self->thread));
    }
  flush_graveyard (self);

  G_OBJECT_CLASS (mpg_pool_parent_class)->dispose (object);
}

static void
mpg_pool_finalize (GObject *object)
{
  MpgPool *self = MPG_POOL (object);

  if (self->kill_source != NULL)
    {
      g_source_destroy (self->kill_source);
      g_source_unref (self->kill_source);
    }
  g_clear_pointer (&self->loop, g_main_loop_unref);
  g_clear_pointer (&self->context, g_main_context_unref);
  g_ptr_array_unref (self->workers);
  g_ptr_array_unref (self->calls);
  g_ptr_array_unref (self->graveyard);
  g_queue_clear (&self->pending);
  g_ptr_array_unref (self->functions);
  g_clear_error (&self->broken);
  g_clear_pointer (&self->initargs, g_variant_unref);
  g_clear_pointer (&self->initializer_name, g_free);
  g_clear_object (&self->initargs_fds);
  if (self->initializer_data_free != NULL)
    self->initializer_data_free (self->initializer_data);
  g_mutex_clear (&self->mutex);
  g_cond_clear (&self->cond);

  G_OBJECT_CLASS (mpg_pool_parent_class)->finalize (object);
}

static void
mpg_pool_get_property (GObject    *object,
                       guint       prop_id,
                       GValue     *value,
                       GParamSpec *pspec)
{
  MpgPool *self = MPG_POOL (object);

  switch (prop_id)
    {
    case PROP_PROCESSES:
      g_value_set_uint (value, mpg_pool_get_processes (self));
      break;
    case PROP_BACKEND:
      g_value_set_enum (value, mpg_pool_get_backend (self));
      break;
    case PROP_INITARGS:
      g_value_set_variant (value, self->initargs);
      break;
    case PROP_MAXTASKSPERCHILD:
      g_value_set_uint (value, mpg_pool_get_maxtasksperchild (self));
      break;
    case PROP_START_METHOD:
      g_value_set_enum (value, mpg_pool_get_start_method (self));
      break;
    case PROP_TASK_TIMEOUT:
      g_value_set_uint (value, mpg_pool_get_task_timeout (self));
      break;
    case PROP_RETRIES:
      g_value_set_uint (value, mpg_pool_get_retries (self));
      break;
    case PROP_TASKS_SUBMITTED:
      g_value_set_uint64 (value, mpg_pool_get_tasks_submitted (self));
      break;
    case PROP_TASKS_COMPLETED:
      g_value_set_uint64 (value, mpg_pool_get_tasks_completed (self));
      break;
    case PROP_WORKERS_REPLACED:
      g_value_set_uint (value, mpg_pool_get_workers_replaced (self));
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
mpg_pool_set_property (GObject      *object,
                       guint         prop_id,
                       const GValue *value,
                       GParamSpec   *pspec)
{
  MpgPool *self = MPG_POOL (object);

  switch (prop_id)
    {
    case PROP_PROCESSES:
      /* 0 is resolved in constructed(), where the backend is known. */
      self->processes = g_value_get_uint (value);
      break;
    case PROP_BACKEND:
      self->backend = g_value_get_enum (value);
      break;
    case PROP_INITARGS:
      g_clear_pointer (&self->initargs, g_variant_unref);
      self->initargs = g_value_dup_variant (value);
      break;
    case PROP_MAXTASKSPERCHILD:
      self->maxtasksperchild = g_value_get_uint (value);
      break;
    case PROP_START_METHOD:
      g_mutex_lock (&self->mutex);
      if (self->thread != NULL)
        g_critical ("MpgPool:start-method can only be set before the pool's first call");
      else
        {
          self->start_method = g_value_get_enum (value);
          /* As multiprocessing's context: decided when the pool is made. */
          if (self->start_method == MPG_START_METHOD_DEFAULT)
            self->start_method = mpg_get_start_method ();
        }
      g_mutex_unlock (&self->mutex);
      break;
    case PROP_TASK_TIMEOUT:
      mpg_pool_set_task_timeout (self, g_value_get_uint (value));
      break;
    case PROP_RETRIES:
      mpg_pool_set_retries (self, g_value_get_uint (value));
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
mpg_pool_constructed (GObject *object)
{
  MpgPool *self = MPG_POOL (object);

  G_OBJECT_CLASS (mpg_pool_parent_class)->constructed (object);

  /* As the start method: decided once, when the pool is made. */
  self->backend = _mpg_remote_resolve_backend (self->backend);
  if (self->processes == 0)
    self->processes = _mpg_remote_default_processes (self->backend);
  if (self->processes == 0)
    self->processes = MAX (1, mpg_cpu_count ());
}

static void
mpg_pool_class_init (MpgPoolClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->constructed = mpg_pool_constructed;
  object_class->dispose = mpg_pool_dispose;
  object_class->finalize = mpg_pool_finalize;
  object_class->get_property = mpg_pool_get_property;
  object_class->set_property = mpg_pool_set_property;

  /**
   * MpgPool:processes:
   *
   * The number of worker processes. Set to 0 (the default) at
   * construction for [func@Mpg.cpu_count], or with the MPI backend in a
   * job started by an MPI launcher, for one worker per rank other than
   * rank 0; reads back the number in use.
   *
   * Since: 0.1
   */
  properties[PROP_PROCESSES] =
    g_param_spec_uint ("processes", NULL, NULL, 0, G_MAXUINT16, 0,
                       (G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY | G_PARAM_STATIC_STRINGS));

  /**
   * MpgPool:backend:
   *
   * Where the workers run: processes of this machine, or MPI ranks (see
   * [enum@Mpg.PoolBackend]). The default, %MPG_POOL_BACKEND_AUTO, takes the
   * environment variable `MPG_POOL_BACKEND` if it is set, else MPI ranks
   * when the program was started by an MPI launcher with several ranks,
   * else local processes. Reads back the backend in use (never
   * %MPG_POOL_BACKEND_AUTO).
   *
   * With MPI, the pool works as with local workers started with the
   * spawn method: functions are found by name (C symbols, Python
   * `module:qualname`, GJS module and export), and values must not hold
   * file descriptors. Each rank runs its workers as local processes, so
   * a task that crashes costs a worker, which is replaced, not a rank.
   *
   * Since: 0.1
   */
  properties[PROP_BACKEND] =
    g_param_spec_enum ("backend", NULL, NULL, MPG_TYPE_POOL_BACKEND, MPG_POOL_BACKEND_AUTO,
                       (G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY | G_PARAM_STATIC_STRINGS));

  /**
   * MpgPool:initargs:
   *
   * The argument of the workers' initializer (see
   * [ctor@Mpg.Pool.new_full] and [method@Mpg.Pool.set_initializer_name]),
   * or %NULL for the unit value `()`.
   *
   * Since: 0.1
   */
  properties[PROP_INITARGS] =
    g_param_spec_variant ("initargs", NULL, NULL, G_VARIANT_TYPE_ANY, NULL,
                          (G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY | G_PARAM_STATIC_STRINGS));

  /**
   * MpgPool:start-method:
   *
   * How the pool starts its workers: fork (they run a copy of this
   * program, so any function works) or spawn (a new program that finds
   * each function by name: see [func@Mpg.init] and
   * [method@Mpg.Pool.add_named_function]). The default,
   * %MPG_START_METHOD_DEFAULT, takes [func@Mpg.get_start_method] when the
   * pool is made; reads back the method in use. It can be changed until the
   * pool's first call (functions added before with
   * [method@Mpg.Pool.add_function] keep the name they got, if any).
   *
   * Since: 0.1
   */
  properties[PROP_START_METHOD] =
    g_param_spec_enum ("start-method", NULL, NULL, MPG_TYPE_START_METHOD,
                       MPG_START_METHOD_DEFAULT,
                       (G_PARAM_READWRITE | G_PARAM_CONSTRUCT | G_PARAM_STATIC_STRINGS));

  /**
   * MpgPool:maxtasksperchild:
   *
   * How many chunks of tasks a worker runs before it is replaced by a new
   * one; 0 (the default) for no limit.
   *
   * Since: 0.1
   */
  properties[PROP_MAXTASKSPERCHILD] =
    g_param_spec_uint ("maxtasksperchild", NULL, NULL, 0, G_MAXUINT, 0,
                       (G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY | G_PARAM_STATIC_STRINGS));

  /**
   * MpgPool:task-timeout:
   *
   * The longest a task may run, in milliseconds, or 0 (the default) for no
   * limit. A chunk of n items may run n times as long. A worker running a
   * task longer is killed and replaced, and the task's call fails with
   * %MPG_ERROR_TIMEOUT. Applies to tasks dispatched after it is set.
   *
   * Since: 0.1
   */
  properties[PROP_TASK_TIMEOUT] =
    g_param_spec_uint ("task-timeout", NULL, NULL, 0, G_MAXUINT, 0,
                       (G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS));

  /**
   * MpgPool:retries:
   *
   * How many times a chunk of tasks whose worker died is run again, by
   * another worker, before its call fails with %MPG_ERROR_WORKER_DIED.
   * 0 (the default) runs nothing twice. Only useful for tasks that can
   * safely run more than once.
   *
   * Since: 0.1
   */
  properties[PROP_RETRIES] =
    g_param_spec_uint ("retries", NULL, NULL, 0, G_MAXUINT8, 0,
                       (G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS));

  /**
   * MpgPool:tasks-submitted:
   *
   * How many tasks (items) calls have submitted to the pool. Not notified.
   *
   * Since: 0.1
   */
  properties[PROP_TASKS_SUBMITTED] =
    g_param_spec_uint64 ("tasks-submitted", NULL, NULL, 0, G_MAXUINT64, 0,
                         (G_PARAM_READABLE | G_PARAM_STATIC_STRINGS));

  /**
   * MpgPool:tasks-completed:
   *
   * How many tasks (items) have finished, successfully or not. Not
   * notified: see [signal@Mpg.Pool::progress].
   *
   * Since: 0.1
   */
  properties[PROP_TASKS_COMPLETED] =
    g_param_spec_uint64 ("tasks-completed", NULL, NULL, 0, G_MAXUINT64, 0,
                         (G_PARAM_READABLE | G_PARAM_STATIC_STRINGS));

  /**
   * MpgPool:workers-replaced:
   *
   * How many workers have been replaced because they died, timed out or
   * reached [property@Mpg.Pool:maxtasksperchild]. Not notified.
   *
   * Since: 0.1
   */
  properties[PROP_WORKERS_REPLACED] =
    g_param_spec_uint ("workers-replaced", NULL, NULL, 0, G_MAXUINT, 0,
                       (G_PARAM_READABLE | G_PARAM_STATIC_STRINGS));

  g_object_class_install_properties (object_class, N_PROPS, properties);

  /**
   * MpgPool::progress:
   * @self: the pool
   * @call: the call, the same #GAsyncResult its callback receives
   * @done: how many of the call's items are done
   * @total: how many items the call has
   *
   * Emitted after each finished chunk of an asynchronous call
   * ([method@Mpg.Pool.map_async], [method@Mpg.Pool.starmap_async],
   * [method@Mpg.Pool.apply_async]), in the thread-default main context of
   * the call, always before the call's callback. Use
   * g_async_result_get_user_data() on @call to tell calls apart.
   *
   * Since: 0.1
   */
  signals[SIGNAL_PROGRESS] =
    g_signal_new ("progress", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0,
                  NULL, NULL, NULL, G_TYPE_NONE, 3,
                  G_TYPE_ASYNC_RESULT, G_TYPE_UINT, G_TYPE_UINT);
}

static void
function_unref_void (gpointer data)
{
  function_unref (data);
}

static void
mpg_pool_init (MpgPool *self)
{
  g_mutex_init (&self->mutex);
  g_cond_init (&self->cond);
  self->workers = g_ptr_array_new_with_free_func (worker_free);
  self->calls = g_ptr_array_new ();
  self->graveyard = g_ptr_array_new ();
  self->functions = g_ptr_array_new_with_free_func (function_unref_void);
}

/**
 * mpg_pool_new:
 * @processes: the number of worker processes, or 0 for
 *   [func@Mpg.cpu_count]
 *
 * Creates a pool. No process is forked until a call needs one.
 *
 * Returns: (transfer full): a new pool
 *
 * Since: 0.1
 */
MpgPool *
mpg_pool_new (guint processes)
{
  return g_object_new (MPG_TYPE_POOL, "processes", processes, NULL);
}

/**
 * mpg_pool_new_full:
 * @processes: the number of worker processes, or 0 for
 *   [func@Mpg.cpu_count]
 * @initializer: (nullable) (scope notified) (closure initializer_data) (destroy initializer_data_free):
 *   a function each worker runs when it starts, or %NULL
 * @initializer_data: data for @initializer
 * @initializer_data_free: (nullable): frees @initializer_data when the pool
 *   is finalised
 * @initargs: (nullable): the argument of @initializer; a floating
 *   reference is sunk
 * @maxtasksperchild: how many chunks of tasks a worker runs before it is
 *   replaced, or 0 for no limit
 *
 * Creates a pool whose workers run @initializer when they start, as
 * Python's `Pool(processes, initializer, initargs, maxtasksperchild)`.
 *
 * Unlike Python, whose pool forks new workers for ever when the
 * initializer fails, a failing initializer breaks the pool: every pending
 * call and every later one fails with the initializer's error, prefixed
 * with "Pool initializer failed: ".
 *
 * Returns: (transfer full): a new pool
 *
 * Since: 0.1
 */
MpgPool *
mpg_pool_new_full (guint           processes,
                   MpgTaskFunc     initializer,
                   gpointer        initializer_data,
                   GDestroyNotify  initializer_data_free,
                   GVariant       *initargs,
                   guint           maxtasksperchild)
{
  MpgPool *self = g_object_new (MPG_TYPE_POOL,
                                "processes", processes,
                                "maxtasksperchild", maxtasksperchild,
                                NULL);

  self->initializer = initializer;
  self->initializer_data = initializer_data;
  self->initializer_data_free = initializer_data_free;
  if (initargs != NULL)
    self->initargs = g_variant_ref_sink (initargs);

  return self;
}

/**
 * mpg_pool_get_processes:
 * @self: a pool
 *
 * Gets the number of worker processes: [property@Mpg.Pool:processes].
 *
 * Returns: the number of worker processes
 *
 * Since: 0.1
 */
guint
mpg_pool_get_processes (MpgPool *self)
{
  g_return_val_if_fail (MPG_IS_POOL (self), 0);
  return self->processes;
}

/**
 * mpg_pool_set_initializer:
 * @self: a pool
 * @initializer: (nullable) (scope notified) (closure initializer_data) (destroy initializer_data_free):
 *   a function each worker runs when it starts, or %NULL
 * @initializer_data: data for @initializer
 * @initializer_data_free: (nullable): frees @initializer_data when it is
 *   replaced or the pool is finalised
 *
 * Sets the workers' initializer, as [ctor@Mpg.Pool.new_full] does, for a
 * pool made with g_object_new() (with its [property@Mpg.Pool:initargs]
 * and [property@Mpg.Pool:backend], for example). Call it before the
 * pool's first call.
 *
 * Since: 0.1
 */
void
mpg_pool_set_initializer (MpgPool        *self,
                          MpgTaskFunc     initializer,
                          gpointer        initializer_data,
                          GDestroyNotify  initializer_data_free)
{
  gpointer old_data;
  GDestroyNotify old_free;

  g_return_if_fail (MPG_IS_POOL (self));

  g_mutex_lock (&self->mutex);
  if (self->thread != NULL)
    {
      g_mutex_unlock (&self->mutex);
      g_critical ("mpg_pool_set_initializer() can only be called before the pool's first call");
      if (initializer_data_free != NULL)
        initializer_data_free (initializer_data);
      return;
    }
  old_data = self->initializer_data;
  old_free = self->initializer_data_free;
  self->initializer = initializer;
  self->initializer_data = initializer_data;
  self->initializer_data_free = initializer_data_free;
  g_mutex_unlock (&self->mutex);

  if (old_free != NULL)
    old_free (old_data);
}

/**
 * mpg_pool_set_initializer_name:
 * @self: a pool
 * @name: (nullable): the name spawned workers find the initializer by
 * @fd_list: (nullable): the fds that handles in the initializer's argument
 *   refer to
 *
 * For the spawn and forkserver start methods, where workers find the
 * initializer by name (see [method@Mpg.Pool.add_named_function]): names
 * it, and gives the fds of its argument, e.g. a queue's (see
 * [method@Mpg.Queue.to_handle]), which a worker's initializer run by name
 * receives as its user data. Without a name, these start methods use the
 * exported symbol of the C initializer. Call it before the pool's first
 * call.
 *
 * Since: 0.1
 */
void
mpg_pool_set_initializer_name (MpgPool     *self,
                               const char  *name,
                               GUnixFDList *fd_list)
{
  g_return_if_fail (MPG_IS_POOL (self));
  g_return_if_fail (fd_list == NULL || G_IS_UNIX_FD_LIST (fd_list));

  g_mutex_lock (&self->mutex);
  g_free (self->initializer_name);
  self->initializer_name = g_strdup (name);
  g_set_object (&self->initargs_fds, fd_list);
  g_mutex_unlock (&self->mutex);
}

/**
 * mpg_pool_get_backend:
 * @self: a pool
 *
 * Gets where the pool's workers run: [property@Mpg.Pool:backend].
 *
 * Returns: where the pool's workers run (never %MPG_POOL_BACKEND_AUTO)
 *
 * Since: 0.1
 */
MpgPoolBackend
mpg_pool_get_backend (MpgPool *self)
{
  g_return_val_if_fail (MPG_IS_POOL (self), MPG_POOL_BACKEND_LOCAL);
  return self->backend;
}

/**
 * mpg_pool_get_start_method:
 * @self: a pool
 *
 * Gets how the pool starts its workers: [property@Mpg.Pool:start-method].
 *
 * Returns: how the pool starts its workers
 *
 * Since: 0.1
 */
MpgStartMethod
mpg_pool_get_start_method (MpgPool *self)
{
  g_return_val_if_fail (MPG_IS_POOL (self), MPG_START_METHOD_FORK);
  return self->start_method;
}

/**
 * mpg_pool_get_maxtasksperchild:
 * @self: a pool
 *
 * Gets how many chunks a worker runs before it is replaced:
 * [property@Mpg.Pool:maxtasksperchild].
 *
 * Returns: the value of [property@Mpg.Pool:maxtasksperchild]
 *
 * Since: 0.1
 */
guint
mpg_pool_get_maxtasksperchild (MpgPool *self)
{
  g_return_val_if_fail (MPG_IS_POOL (self), 0);
  return self->maxtasksperchild;
}

/**
 * mpg_pool_get_task_timeout:
 * @self: a pool
 *
 * Gets how long a task may run: [property@Mpg.Pool:task-timeout].
 *
 * Returns: the value of [property@Mpg.Pool:task-timeout], in milliseconds
 *
 * Since: 0.1
 */
guint
mpg_pool_get_task_timeout (MpgPool *self)
{
  g_return_val_if_fail (MPG_IS_POOL (self), 0);
  return g_atomic_int_get (&self->task_timeout);
}

/**
 * mpg_pool_set_task_timeout:
 * @self: a pool
 * @timeout_msec: the longest a task may run, in milliseconds, or 0 for no
 *   limit
 *
 * Sets [property@Mpg.Pool:task-timeout].
 *
 * Since: 0.1
 */
void
mpg_pool_set_task_timeout (MpgPool *self,
                           guint    timeout_msec)
{
  gboolean changed;

  g_return_if_fail (MPG_IS_POOL (self));

  g_mutex_lock (&self->mutex);
  changed = self->task_timeout != timeout_msec;
  self->task_timeout = timeout_msec;
  g_mutex_unlock (&self->mutex);
  if (changed)
    g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_TASK_TIMEOUT]);
}

/**
 * mpg_pool_get_retries:
 * @self: a pool
 *
 * Gets how many times a task whose worker died runs again:
 * [property@Mpg.Pool:retries].
 *
 * Returns: the value of [property@Mpg.Pool:retries]
 *
 * Since: 0.1
 */
guint
mpg_pool_get_retries (MpgPool *self)
{
  g_return_val_if_fail (MPG_IS_POOL (self), 0);
  return g_atomic_int_get (&self->retries);
}

/**
 * mpg_pool_set_retries:
 * @self: a pool
 * @retries: how many times a chunk whose worker died runs again
 *
 * Sets [property@Mpg.Pool:retries].
 *
 * Since: 0.1
 */
void
mpg_pool_set_retries (MpgPool *self,
                      guint    retries)
{
  gboolean changed;

  g_return_if_fail (MPG_IS_POOL (self));

  retries = MIN (retries, G_MAXUINT8);
  g_mutex_lock (&self->mutex);
  changed = self->retries != retries;
  self->retries = retries;
  g_mutex_unlock (&self->mutex);
  if (changed)
    g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_RETRIES]);
}

/**
 * mpg_pool_get_tasks_submitted:
 * @self: a pool
 *
 * Gets how many tasks were submitted to the pool:
 * [property@Mpg.Pool:tasks-submitted].
 *
 * Returns: the value of [property@Mpg.Pool:tasks-submitted]
 *
 * Since: 0.1
 */
guint64
mpg_pool_get_tasks_submitted (MpgPool *self)
{
  guint64 n;

  g_return_val_if_fail (MPG_IS_POOL (self), 0);

  g_mutex_lock (&self->mutex);
  n = self->tasks_submitted;
  g_mutex_unlock (&self->mutex);
  return n;
}

/**
 * mpg_pool_get_tasks_completed:
 * @self: a pool
 *
 * Gets how many tasks the pool completed: [property@Mpg.Pool:tasks-
 * completed].
 *
 * Returns: the value of [property@Mpg.Pool:tasks-completed]
 *
 * Since: 0.1
 */
guint64
mpg_pool_get_tasks_completed (MpgPool *self)
{
  guint64 n;

  g_return_val_if_fail (MPG_IS_POOL (self), 0);

  g_mutex_lock (&self->mutex);
  n = self->tasks_completed;
  g_mutex_unlock (&self->mutex);
  return n;
}

/**
 * mpg_pool_get_workers_replaced:
 * @self: a pool
 *
 * Gets how many workers died and were replaced:
 * [property@Mpg.Pool:workers-replaced].
 *
 * Returns: the value of [property@Mpg.Pool:workers-replaced]
 *
 * Since: 0.1
 */
guint
mpg_pool_get_workers_replaced (MpgPool *self)
{
  guint n;

  g_return_val_if_fail (MPG_IS_POOL (self), 0);

  g_mutex_lock (&self->mutex);
  n = self->workers_replaced;
  g_mutex_unlock (&self->mutex);
  return n;
}

/**
 * mpg_pool_dup_worker_pids:
 * @self: a pool
 *
 * Lists the process ids of the pool's live workers.
 *
 * Returns: (transfer full) (element-type gint): the pids
 *
 * Since: 0.1
 */
GArray *
mpg_pool_dup_worker_pids (MpgPool *self)
{
  GArray *pids;

  g_return_val_if_fail (MPG_IS_POOL (self), NULL);

  pids = g_array_new (FALSE, FALSE, sizeof (gint));
  g_mutex_lock (&self->mutex);
  for (guint i = 0; i < self->workers->len; i++)
    {
      Worker *worker = g_ptr_array_index (self->workers, i);
      gint pid = worker->pid;

      if (!worker->starting)
        g_array_append_val (pids, pid);
    }
  g_mutex_unlock (&self->mutex);

  return pids;
}

static guint
add_function (MpgPool        *self,
              MpgTaskFunc     func,
              gpointer        user_data,
              GDestroyNotify  user_data_free,
              const char     *name,
              gboolean        chunked)
{
  Function *function;
  guint id;

  function = g_new0 (Function, 1);
  g_atomic_ref_count_init (&function->ref_count);
  function->func = func;
  function->user_data = user_data;
  function->user_data_free = user_data_free;
  function->chunked = chunked;
  if (name != NULL)
    function->name = g_strdup (name);
  else if (finds_by_name (self))
    function->name = _mpg_task_name_for (func, user_data, &function->name_error);

  g_mutex_lock (&self->mutex);
  id = function->id = ++self->last_function_id;
  g_ptr_array_add (self->functions, function);
  g_mutex_unlock (&self->mutex);

  return id;
}

/**
 * mpg_pool_add_function:
 * @self: a pool
 * @func: (scope notified) (closure user_data) (destroy user_data_free):
 *   the function
 * @user_data: data for @func
 * @user_data_free: (nullable): frees @user_data once the function is
 *   removed and no call uses it
 *
 * Makes @func something the pool's calls can run, and returns its id.
 *
 * Workers are forked: they run @func and @user_data as they were when the
 * worker was forked, whatever they are (a closure, a lambda). Workers
 * forked before this call cannot run @func; the pool replaces them when a
 * call of @func needs them. Reusing the id keeps workers warm.
 *
 * Returns: the function's id, for the calls and
 *   [method@Mpg.Pool.remove_function]
 *
 * Since: 0.1
 */
guint
mpg_pool_add_function (MpgPool        *self,
                       MpgTaskFunc     func,
                       gpointer        user_data,
                       GDestroyNotify  user_data_free)
{
  g_return_val_if_fail (MPG_IS_POOL (self), 0);
  g_return_val_if_fail (func != NULL, 0);

  return add_function (self, func, user_data, user_data_free, NULL, FALSE);
}

/**
 * mpg_pool_add_chunk_function:
 * @self: a pool
 * @func: (scope notified) (closure user_data) (destroy user_data_free):
 *   the function, called once per chunk
 * @user_data: data for @func
 * @user_data_free: (nullable): frees @user_data once the function is
 *   removed and no call uses it
 *
 * Like [method@Mpg.Pool.add_function], for a function that maps a whole
 * chunk of items at once: the fast way to map many small items.
 *
 * @func receives the chunk's items as one array: a slice of the call's
 * items with their type (an `ai` for a map over an `ai`), or an `av` when
 * the items are boxed (a map over an `av`, [method@Mpg.Pool.apply]'s
 * argument as an `av` of one). It returns an array with one result per
 * item, in order: an `aT` or an `av`, which is unboxed. If it fails, or
 * returns anything else, every item of the chunk fails with that error.
 *
 * A map over 100,000 integers costs one call of @func per chunk instead
 * of a #GVariant per item and result.
 *
 * Returns: the function's id
 *
 * Since: 0.1
 */
guint
mpg_pool_add_chunk_function (MpgPool        *self,
                             MpgTaskFunc     func,
                             gpointer        user_data,
                             GDestroyNotify  user_data_free)
{
  g_return_val_if_fail (MPG_IS_POOL (self), 0);
  g_return_val_if_fail (func != NULL, 0);

  return add_function (self, func, user_data, user_data_free, NULL, TRUE);
}

/**
 * mpg_pool_add_named_function:
 * @self: a pool
 * @name: the function's name
 *
 * Makes the function called @name something the pool's calls can run, and
 * returns its id. Workers find it by name when they run it, through the
 * task dispatcher ([func@Mpg.set_task_dispatcher]): an exported C symbol
 * by default, a Python `module:qualname` in Python. Unlike
 * [method@Mpg.Pool.add_function], this works with every start method and
 * never needs workers to be replaced.
 *
 * Returns: the function's id
 *
 * Since: 0.1
 */
guint
mpg_pool_add_named_function (MpgPool    *self,
                             const char *name)
{
  g_return_val_if_fail (MPG_IS_POOL (self), 0);
  g_return_val_if_fail (name != NULL, 0);

  return add_function (self, NULL, NULL, NULL, name, FALSE);
}

/**
 * mpg_pool_add_named_chunk_function:
 * @self: a pool
 * @name: the function's name
 *
 * Like [method@Mpg.Pool.add_named_function], for a function that maps a
 * whole chunk of items at once, as [method@Mpg.Pool.add_chunk_function]
 * describes: the task dispatcher gets the chunk's items as its argument.
 *
 * Returns: the function's id
 *
 * Since: 0.1
 */
guint
mpg_pool_add_named_chunk_function (MpgPool    *self,
                                   const char *name)
{
  g_return_val_if_fail (MPG_IS_POOL (self), 0);
  g_return_val_if_fail (name != NULL, 0);

  return add_function (self, NULL, NULL, NULL, name, TRUE);
}

/**
 * mpg_pool_remove_function:
 * @self: a pool
 * @function: an id from [method@Mpg.Pool.add_function]
 *
 * Forgets @function: later calls with its id fail. Calls already made
 * finish.
 *
 * Since: 0.1
 */
void
mpg_pool_remove_function (MpgPool *self,
                          guint    function)
{
  Function *removed = NULL;

  g_return_if_fail (MPG_IS_POOL (self));

  g_mutex_lock (&self->mutex);
  for (guint i = 0; i < self->functions->len; i++)
    {
      Function *f = g_ptr_array_index (self->functions, i);

      if (f->id == function)
        {
          removed = g_ptr_array_steal_index (self->functions, i);
          break;
        }
    }
  g_mutex_unlock (&self->mutex);

  if (removed == NULL)
    g_warning ("%s: pool %p has no function %u", G_STRFUNC, self, function);
  else
    function_unref (removed);
}

/* Submitting calls */

static gboolean
check_running_locked (MpgPool  *self,
                      GError  **error)
{
  if (self->state != POOL_RUNNING)
    {
      g_set_error_literal (error, MPG_ERROR, MPG_ERROR_INVALID_STATE, "Pool not running");
      return FALSE;
    }
  if (self->broken != NULL)
    {
      g_propagate_error (error, g_error_copy (self->broken));
      return FALSE;
    }
  return TRUE;
}

static Function *
find_function_locked (MpgPool  *self,
                      guint     id,
                      GError  **error)
{
  for (guint i = 0; i < self->functions->len; i++)
    {
      Function *function = g_ptr_array_index (self->functions, i);

      if (function->id == id && finds_by_name (self) &&
          function->func != NULL && function->name == NULL && function->name_error == NULL)
        function->name = _mpg_task_name_for (function->func, function->user_data,
                                             &function->name_error);
      if (function->id == id && function->name_error != NULL && finds_by_name (self))
        {
          g_propagate_error (error, g_error_copy (function->name_error));
          return NULL;
        }
      if (function->id == id)
        return function_ref (function);
    }

  g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
               "Unknown function %u: add it with mpg_pool_add_function()", id);
  return NULL;
}

/* Validates @items (sinking a floating reference) and makes a call. */
static Call *
call_new (MpgPool   *self,
          CallKind   kind,
          guint      function_id,
          GVariant  *items,
          guint      chunksize,
          GError   **error)
{
  g_autoptr(GVariant) owned = items != NULL ? g_variant_ref_sink (items) : NULL;
  Function *function;
  Call *call;
  gsize n;

  if (kind == CALL_APPLY)
    n = 1;
  else
    {
      if (owned == NULL || !g_variant_is_of_type (owned, G_VARIANT_TYPE_ARRAY))
        {
          g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                       "The items must be a GVariant array, not %s",
                       owned != NULL ? g_variant_get_type_string (owned) : "NULL");
          return NULL;
        }
      n = g_variant_n_children (owned);
      if (n > G_MAXUINT32)
        {
          g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, "Too many items");
          return NULL;
        }
    }

  _mpg_check_not_a_lost_worker ();

  call = g_new0 (Call, 1);
  g_atomic_ref_count_init (&call->ref_count);
  call->kind = kind;
  call->n_items = n;

  if (kind == CALL_APPLY)
    {
      call->items = g_new0 (GVariant *, 1);
      call->items[0] = owned != NULL ? g_variant_ref (owned)
                                     : g_variant_ref_sink (g_variant_new_tuple (NULL, 0));
    }
  else if (n > 0 && kind != CALL_STARMAP &&
           type_is_fixed_size (g_variant_type_element (g_variant_get_type (owned))))
    {
      /* Chunks are slices of the array's bytes. */
      call->item_type = g_variant_type_copy (g_variant_type_element (g_variant_get_type (owned)));
      call->fixed_input = g_variant_get_data_as_bytes (owned);
      call->item_size = g_variant_get_size (owned) / n;
    }
  else
    {
      gboolean boxed = g_variant_is_of_type (owned, G_VARIANT_TYPE ("av"));

      /* Chunks of a typed array travel as typed arrays: cheaper to
       * serialise and check than variants. */
      if (!boxed)
        call->item_type = g_variant_type_copy (g_variant_type_element (g_variant_get_type (owned)));
      call->items = g_new0 (GVariant *, MAX (n, 1));

      for (gsize i = 0; i < n; i++)
        {
          GVariant *child = g_variant_get_child_value (owned, i);

          if (boxed)
            {
              call->items[i] = g_variant_get_variant (child);
              g_variant_unref (child);
            }
          else
            call->items[i] = child;

          if (kind == CALL_STARMAP && !g_variant_is_of_type (call->items[i], G_VARIANT_TYPE_TUPLE))
            {
              g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                           "starmap() needs tuples: item %" G_GSIZE_FORMAT " is a %s",
                           i, g_variant_get_type_string (call->items[i]));
              call_unref (call);
              return NULL;
            }
        }
    }

  if (chunksize == 0)
    {
      if (kind == CALL_IMAP || kind == CALL_IMAP_UNORDERED || kind == CALL_APPLY)
        chunksize = 1;
      else
        {
          /* Python's rule: about four chunks per worker. */
          guint64 divisor = (guint64) self->processes * 4;

          chunksize = (guint) ((n + divisor - 1) / divisor);
          if (chunksize == 0)
            chunksize = 1;
        }
    }
  call->chunksize = chunksize;
  call->n_chunks = (guint) ((n + chunksize - 1) / chunksize);
  call->attempts = g_new0 (guint16, MAX (call->n_chunks, 1));
  call->chunk_results = g_new0 (GVariant *, MAX (call->n_chunks, 1));

  g_mutex_lock (&self->mutex);
  function = check_running_locked (self, error) ? find_function_locked (self, function_id, error) : NULL;
  if (function == NULL)
    {
      g_mutex_unlock (&self->mutex);
      call_unref (call);
      return NULL;
    }
  call->function = function;
  call->pool = g_object_ref (self);
  call->serial = ++self->last_serial;
  self->tasks_submitted += n;
  g_mutex_unlock (&self->mutex);

  return call;
}

/* Queues @call (or finishes it at once when it has no items). */
static void
call_submit (Call *call)
{
  MpgPool *self = call->pool;

  g_mutex_lock (&self->mutex);
  if (call->finished)
    ;   /* cancelled already */
  else if (!check_running_locked (self, NULL))
    {
      GError *error = NULL;

      check_running_locked (self, &error);
      call->finished = TRUE;
      call->error = error;
      call_notify_locked (call);
    }
  else
    {
      GError *error = NULL;

      g_ptr_array_add (self->calls, call_ref (call));
      if (call->n_items == 0)
        call_finish_locked (call, NULL);
      else if (!ensure_thread_locked (self, &error))
        call_finish_locked (call, error);
      else
        {
          g_queue_push_tail (&self->pending, call);
          /* Idle workers get their chunks now, from this thread: a round
           * trip through the pool's thread costs more than the send. */
          if (g_thread_self () != self->thread)
            dispatch_locked (self, FALSE);
          else
            schedule_dispatch_locked (self);
        }
    }
  g_mutex_unlock (&self->mutex);
}

static void
call_cancelled_cb (GCancellable *cancellable,
                   gpointer      data)
{
  Call *call = data;
  MpgPool *self = call->pool;

  g_mutex_lock (&self->mutex);
  if (!call->finished)
    call_finish_locked (call, g_error_new_literal (G_IO_ERROR, G_IO_ERROR_CANCELLED,
                                                   "Operation was cancelled"));
  g_mutex_unlock (&self->mutex);
}

static void
call_cancelled_cb_wake (GCancellable *cancellable,
                        gpointer      data)
{
  MpgPool *self = data;

  g_mutex_lock (&self->mutex);
  pool_broadcast_locked (self);
  g_mutex_unlock (&self->mutex);
}

static Worker *
find_worker_by_number_locked (MpgPool *self,
                              guint    number)
{
  for (guint i = 0; i < self->workers->len; i++)
    {
      Worker *worker = g_ptr_array_index (self->workers, i);

      if (worker->number == number)
        return worker;
    }
  return NULL;
}

/* The reply of a call that stopped waiting for it (cancelled) comes here,
 * in the pool's thread. */
static gboolean
worker_drain_cb (int          fd,
                 GIOCondition condition,
                 gpointer     data)
{
  Worker *worker = data;
  MpgPool *self = worker->pool;
  g_autoptr(GVariant) message = NULL;
  g_autoptr(GError) error = NULL;

  g_mutex_lock (&self->mutex);
  message = _mpg_channel_receive (worker->direct_fd, MAX_MESSAGE, 0, NULL, NULL, &error);
  if (message == NULL && g_error_matches (error, MPG_ERROR, MPG_ERROR_TIMEOUT))
    {
      g_mutex_unlock (&self->mutex);
      return G_SOURCE_CONTINUE;
    }
  g_clear_pointer (&worker->drain_source, g_source_unref);
  worker->direct = FALSE;
  /* A bad reply or none: the worker is ended, and its channel's end
   * settles the chunk as a death. */
  if (message == NULL || !worker_handle_message_locked (self, worker, message))
    worker_kill (worker, SIGKILL);
  g_mutex_unlock (&self->mutex);

  dispatch_cb (self);
  return G_SOURCE_REMOVE;
}

/* A blocking call of one chunk, from a thread other than the pool's, with
 * an idle forked worker, nobody waiting before it, and neither a task
 * timeout nor maxtasksperchild: this thread sends
 * the task on the worker's second channel and reads the reply there,
 * instead of a round trip through the pool's thread. Returns FALSE to go
 * the usual way. Anything unusual (the worker dies, the call is cancelled)
 * is left to the pool's thread, which the caller then waits for. */
static gboolean
call_run_direct (Call         *call,
                 GCancellable *cancellable)
{
  MpgPool *self = call->pool;
  g_autoptr(GVariant) message = NULL;
  g_autoptr(GError) error = NULL;
  Worker *worker;
  guint number;
  gboolean sent;
  int fd;

  if (call->n_chunks != 1 || g_thread_self () == self->thread)
    return FALSE;

  g_mutex_lock (&self->mutex);
  worker = NULL;
  /* Not with maxtasksperchild: a worker exits right after its last reply,
   * and the pool's thread could see the end of its channel before this
   * thread reads the reply on the other one. */
  if (call->finished || !check_running_locked (self, NULL) || self->task_timeout > 0 ||
      self->maxtasksperchild > 0 ||
      self->thread == NULL || !g_queue_is_empty (&self->pending) ||
      (worker = find_idle_worker_locked (self, call->function->id, TRUE)) == NULL ||
      worker->direct_fd < 0)
    {
      g_mutex_unlock (&self->mutex);
      return FALSE;
    }
  /* The fd stays open while worker->direct is set: if the worker goes,
   * it becomes this thread's to close. */
  fd = worker->direct_fd;
  g_ptr_array_add (self->calls, call_ref (call));
  call->next_chunk = 1;
  worker->direct = TRUE;
  number = worker->number;
  sent = worker_send_chunk_locked (self, worker, fd, call, 0);
  g_mutex_unlock (&self->mutex);

  /* The reply takes the worker some time: wait first, then read. */
  if (sent && _mpg_channel_wait (fd, G_IO_IN, -1, cancellable, &error))
    message = _mpg_channel_receive (fd, MAX_MESSAGE, 0, NULL, NULL, &error);

  g_mutex_lock (&self->mutex);
  worker = find_worker_by_number_locked (self, number);
  if (worker == NULL || worker->direct_fd != fd)
    _mpg_fork_close_fd (&fd);   /* the worker is gone */
  else if (worker->direct && worker->call == call)
    {
      if (message != NULL)
        {
          worker->direct = FALSE;
          if (!worker_handle_message_locked (self, worker, message))
            worker_kill (worker, SIGKILL);
          else
            dispatch_locked (self, FALSE);
        }
      else if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED) && worker->direct_fd >= 0)
        {
          /* The reply still comes: the pool's thread reads it. */
          worker->drain_source = g_unix_fd_source_new (worker->direct_fd, G_IO_IN | G_IO_HUP | G_IO_ERR);
          g_source_set_callback (worker->drain_source, G_SOURCE_FUNC (worker_drain_cb), worker, NULL);
          g_source_set_static_name (worker->drain_source, "[mpg] pool worker reply");
          g_source_attach (worker->drain_source, self->context);
        }
      else
        {
          /* The worker is going: its channel's end settles the chunk, and
           * the pool's thread closes the fd. */
          worker->direct = FALSE;
        }
    }
  g_mutex_unlock (&self->mutex);
  return TRUE;
}

/* Runs @call and waits for it in this thread. */
static GVariant *
call_run_sync (Call          *call,
               GCancellable  *cancellable,
               GError       **error)
{
  MpgPool *self = call->pool;
  GVariant *result = NULL;

  if (cancellable != NULL)
    {
      call->cancellable = g_object_ref (cancellable);
      call->cancelled_id = g_cancellable_connect (cancellable, G_CALLBACK (call_cancelled_cb),
                                                  call, NULL);
    }

  if (!call_run_direct (call, cancellable))
    call_submit (call);

  g_mutex_lock (&self->mutex);
  while (!call->finished)
    pool_wait_locked (self);
  if (call->error != NULL)
    g_propagate_error (error, g_error_copy (call->error));
  else
    result = call_build_result (call);
  g_mutex_unlock (&self->mutex);

  call_unref (call);

  return result;
}

static void
call_run_async (Call                *call,
                GCancellable        *cancellable,
                gpointer             source_tag,
                GAsyncReadyCallback  callback,
                gpointer             user_data)
{
  call->task = g_task_new (call->pool, cancellable, callback, user_data);
  g_task_set_source_tag (call->task, source_tag);
  g_task_set_task_data (call->task, call_ref (call), (GDestroyNotify) call_unref);
  call->context = g_main_context_ref_thread_default ();

  if (cancellable != NULL)
    {
      call->cancellable = g_object_ref (cancellable);
      call->cancelled_id = g_cancellable_connect (cancellable, G_CALLBACK (call_cancelled_cb),
                                                  call, NULL);
    }

  /* The task is returned from an idle in its context, whichever thread
   * finishes the call. */
  call_submit (call);
  call_unref (call);
}

static void
report_error_async (MpgPool             *self,
                    gpointer             source_tag,
                    GError              *error,
                    GAsyncReadyCallback  callback,
                    gpointer             user_data)
{
  g_task_report_error (self, callback, user_data, source_tag, error);
}

static GVariant *
call_finish (MpgPool       *self,
             GAsyncResult  *result,
             gpointer       source_tag,
             GError       **error)
{
  g_return_val_if_fail (g_task_is_valid (result, self), NULL);
  g_return_val_if_fail (g_async_result_is_tagged (result, source_tag), NULL);

  return g_task_propagate_pointer (G_TASK (result), error);
}

/**
 * mpg_pool_apply:
 * @self: a pool
 * @function: an id from [method@Mpg.Pool.add_function]
 * @arg: (nullable): the argument, or %NULL for `()`; a floating reference
 *   is sunk
 * @cancellable: (nullable): a #GCancellable
 * @error: return location for a #GError
 *
 * Runs @function with @arg in a worker and waits for its result, as
 * Python's `Pool.apply()`.
 *
 * Returns: (transfer full): the result, or %NULL with @error set
 *
 * Since: 0.1
 */
GVariant *
mpg_pool_apply (MpgPool       *self,
                guint          function,
                GVariant      *arg,
                GCancellable  *cancellable,
                GError       **error)
{
  Call *call;

  g_return_val_if_fail (MPG_IS_POOL (self), NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  call = call_new (self, CALL_APPLY, function, arg, 1, error);
  if (call == NULL)
    return NULL;
  return call_run_sync (call, cancellable, error);
}

/**
 * mpg_pool_apply_async:
 * @self: a pool
 * @function: an id from [method@Mpg.Pool.add_function]
 * @arg: (nullable): the argument, or %NULL for `()`; a floating reference
 *   is sunk
 * @cancellable: (nullable): a #GCancellable
 * @callback: (scope async) (closure user_data): called in the
 *   thread-default main context of the caller when the result is there
 * @user_data: data for @callback
 *
 * Runs @function with @arg in a worker, as Python's `Pool.apply_async()`.
 * Get the result with [method@Mpg.Pool.apply_finish].
 *
 * Since: 0.1
 */
void
mpg_pool_apply_async (MpgPool             *self,
                      guint                function,
                      GVariant            *arg,
                      GCancellable        *cancellable,
                      GAsyncReadyCallback  callback,
                      gpointer             user_data)
{
  GError *error = NULL;
  Call *call;

  g_return_if_fail (MPG_IS_POOL (self));

  call = call_new (self, CALL_APPLY, function, arg, 1, &error);
  if (call == NULL)
    report_error_async (self, mpg_pool_apply_async, error, callback, user_data);
  else
    call_run_async (call, cancellable, mpg_pool_apply_async, callback, user_data);
}

/**
 * mpg_pool_apply_finish:
 * @self: a pool
 * @result: the #GAsyncResult given to the callback
 * @error: return location for a #GError
 *
 * Finishes [method@Mpg.Pool.apply_async].
 *
 * Returns: (transfer full): the result, or %NULL with @error set
 *
 * Since: 0.1
 */
GVariant *
mpg_pool_apply_finish (MpgPool       *self,
                       GAsyncResult  *result,
                       GError       **error)
{
  return call_finish (self, result, mpg_pool_apply_async, error);
}

/**
 * mpg_pool_map:
 * @self: a pool
 * @function: an id from [method@Mpg.Pool.add_function]
 * @items: an array of the arguments (an `av` is unboxed); a floating
 *   reference is sunk
 * @chunksize: how many items a worker takes at a time, or 0 for about
 *   four chunks per worker
 * @cancellable: (nullable): a #GCancellable
 * @error: return location for a #GError
 *
 * Runs @function on every item, in the workers, and waits for the
 * results, as Python's `Pool.map()`.
 *
 * The results are in input order, in an `aT` array if they all have the
 * type `T` and an `av` otherwise (an empty `av` for no items). If tasks
 * failed, the call fails with the error of the first failed item, once
 * every item has run.
 *
 * Returns: (transfer full): the results, or %NULL with @error set
 *
 * Since: 0.1
 */
GVariant *
mpg_pool_map (MpgPool       *self,
              guint          function,
              GVariant      *items,
              guint          chunksize,
              GCancellable  *cancellable,
              GError       **error)
{
  Call *call;

  g_return_val_if_fail (MPG_IS_POOL (self), NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  call = call_new (self, CALL_MAP, function, items, chunksize, error);
  if (call == NULL)
    return NULL;
  return call_run_sync (call, cancellable, error);
}

/**
 * mpg_pool_map_async:
 * @self: a pool
 * @function: an id from [method@Mpg.Pool.add_function]
 * @items: an array of the arguments (an `av` is unboxed); a floating
 *   reference is sunk
 * @chunksize: how many items a worker takes at a time, or 0 for about
 *   four chunks per worker
 * @cancellable: (nullable): a #GCancellable
 * @callback: (scope async) (closure user_data): called in the
 *   thread-default main context of the caller when the results are there
 * @user_data: data for @callback
 *
 * Runs @function on every item, in the workers, as Python's
 * `Pool.map_async()`. The pool emits [signal@Mpg.Pool::progress] after
 * each chunk. Cancelling @cancellable stops dispatching the call's items
 * and fails it with %G_IO_ERROR_CANCELLED at once; the pool stays usable.
 * Get the results with [method@Mpg.Pool.map_finish].
 *
 * Since: 0.1
 */
void
mpg_pool_map_async (MpgPool             *self,
                    guint                function,
                    GVariant            *items,
                    guint                chunksize,
                    GCancellable        *cancellable,
                    GAsyncReadyCallback  callback,
                    gpointer             user_data)
{
  GError *error = NULL;
  Call *call;

  g_return_if_fail (MPG_IS_POOL (self));

  call = call_new (self, CALL_MAP, function, items, chunksize, &error);
  if (call == NULL)
    report_error_async (self, mpg_pool_map_async, error, callback, user_data);
  else
    call_run_async (call, cancellable, mpg_pool_map_async, callback, user_data);
}

/**
 * mpg_pool_map_finish:
 * @self: a pool
 * @result: the #GAsyncResult given to the callback
 * @error: return location for a #GError
 *
 * Finishes [method@Mpg.Pool.map_async].
 *
 * Returns: (transfer full): the results, as [method@Mpg.Pool.map] gives
 *   them, or %NULL with @error set
 *
 * Since: 0.1
 */
GVariant *
mpg_pool_map_finish (MpgPool       *self,
                     GAsyncResult  *result,
                     GError       **error)
{
  return call_finish (self, result, mpg_pool_map_async, error);
}

/**
 * mpg_pool_starmap:
 * @self: a pool
 * @function: an id from [method@Mpg.Pool.add_function]
 * @items: an array of tuples (an `av` of tuples is unboxed); a floating
 *   reference is sunk
 * @chunksize: how many items a worker takes at a time, or 0 for about
 *   four chunks per worker
 * @cancellable: (nullable): a #GCancellable
 * @error: return location for a #GError
 *
 * As [method@Mpg.Pool.map], for Python's `Pool.starmap()`: every item must
 * be a tuple (%G_IO_ERROR_INVALID_ARGUMENT otherwise), which the function
 * receives whole (bindings unpack it into arguments).
 *
 * Returns: (transfer full): the results, or %NULL with @error set
 *
 * Since: 0.1
 */
GVariant *
mpg_pool_starmap (MpgPool       *self,
                  guint          function,
                  GVariant      *items,
                  guint          chunksize,
                  GCancellable  *cancellable,
                  GError       **error)
{
  Call *call;

  g_return_val_if_fail (MPG_IS_POOL (self), NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  call = call_new (self, CALL_STARMAP, function, items, chunksize, error);
  if (call == NULL)
    return NULL;
  return call_run_sync (call, cancellable, error);
}

/**
 * mpg_pool_starmap_async:
 * @self: a pool
 * @function: an id from [method@Mpg.Pool.add_function]
 * @items: an array of tuples; a floating reference is sunk
 * @chunksize: how many items a worker takes at a time, or 0 for about
 *   four chunks per worker
 * @cancellable: (nullable): a #GCancellable
 * @callback: (scope async) (closure user_data): called in the
 *   thread-default main context of the caller when the results are there
 * @user_data: data for @callback
 *
 * As [method@Mpg.Pool.map_async], with tuples as
 * [method@Mpg.Pool.starmap]. Get the results with
 * [method@Mpg.Pool.starmap_finish].
 *
 * Since: 0.1
 */
void
mpg_pool_starmap_async (MpgPool             *self,
                        guint                function,
                        GVariant            *items,
                        guint                chunksize,
                        GCancellable        *cancellable,
                        GAsyncReadyCallback  callback,
                        gpointer             user_data)
{
  GError *error = NULL;
  Call *call;

  g_return_if_fail (MPG_IS_POOL (self));

  call = call_new (self, CALL_STARMAP, function, items, chunksize, &error);
  if (call == NULL)
    report_error_async (self, mpg_pool_starmap_async, error, callback, user_data);
  else
    call_run_async (call, cancellable, mpg_pool_starmap_async, callback, user_data);
}

/**
 * mpg_pool_starmap_finish:
 * @self: a pool
 * @result: the #GAsyncResult given to the callback
 * @error: return location for a #GError
 *
 * Finishes [method@Mpg.Pool.starmap_async].
 *
 * Returns: (transfer full): the results, or %NULL with @error set
 *
 * Since: 0.1
 */
GVariant *
mpg_pool_starmap_finish (MpgPool       *self,
                         GAsyncResult  *result,
                         GError       **error)
{
  return call_finish (self, result, mpg_pool_starmap_async, error);
}

static MpgPoolIterator *
imap_common (MpgPool   *self,
             CallKind   kind,
             guint      function,
             GVariant  *items,
             guint      chunksize,
             GError   **error)
{
  MpgPoolIterator *iterator;
  Call *call;

  call = call_new (self, kind, function, items, chunksize, error);
  if (call == NULL)
    return NULL;

  iterator = g_object_new (MPG_TYPE_POOL_ITERATOR, NULL);
  iterator->call = call;
  call_submit (call);

  return iterator;
}

/**
 * mpg_pool_imap:
 * @self: a pool
 * @function: an id from [method@Mpg.Pool.add_function]
 * @items: an array of the arguments (an `av` is unboxed); a floating
 *   reference is sunk
 * @chunksize: how many items a worker takes at a time; 0 means 1
 * @error: return location for a #GError
 *
 * Runs @function on every item, in the workers, and returns at once an
 * iterator that gives the results in input order as they arrive, as
 * Python's `Pool.imap()`. A failed item is an error of
 * [method@Mpg.PoolIterator.next] for that item only.
 *
 * Returns: (transfer full): an iterator, or %NULL with @error set
 *
 * Since: 0.1
 */
MpgPoolIterator *
mpg_pool_imap (MpgPool   *self,
               guint      function,
               GVariant  *items,
               guint      chunksize,
               GError   **error)
{
  g_return_val_if_fail (MPG_IS_POOL (self), NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  return imap_common (self, CALL_IMAP, function, items, chunksize, error);
}

/**
 * mpg_pool_imap_unordered:
 * @self: a pool
 * @function: an id from [method@Mpg.Pool.add_function]
 * @items: an array of the arguments (an `av` is unboxed); a floating
 *   reference is sunk
 * @chunksize: how many items a worker takes at a time; 0 means 1
 * @error: return location for a #GError
 *
 * As [method@Mpg.Pool.imap], but the iterator gives the results in the
 * order they finish, as Python's `Pool.imap_unordered()`.
 *
 * Returns: (transfer full): an iterator, or %NULL with @error set
 *
 * Since: 0.1
 */
MpgPoolIterator *
mpg_pool_imap_unordered (MpgPool   *self,
                         guint      function,
                         GVariant  *items,
                         guint      chunksize,
                         GError   **error)
{
  g_return_val_if_fail (MPG_IS_POOL (self), NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  return imap_common (self, CALL_IMAP_UNORDERED, function, items, chunksize, error);
}

/**
 * mpg_pool_close:
 * @self: a pool
 *
 * Stops the pool from taking new calls (they fail with
 * %MPG_ERROR_INVALID_STATE). Calls already made complete; then the workers
 * exit. As Python's `Pool.close()`.
 *
 * Since: 0.1
 */
void
mpg_pool_close (MpgPool *self)
{
  g_return_if_fail (MPG_IS_POOL (self));

  g_mutex_lock (&self->mutex);
  if (self->state == POOL_RUNNING)
    self->state = POOL_CLOSED;
  schedule_dispatch_locked (self);
  g_mutex_unlock (&self->mutex);
}

/**
 * mpg_pool_terminate:
 * @self: a pool
 *
 * Stops the workers at once (`SIGTERM`, then `SIGKILL` a second later for
 * those still there) and fails every unfinished call with
 * %MPG_ERROR_CLOSED, as Python's `Pool.terminate()` (whose pending results
 * never complete). Disposing of a pool terminates it.
 *
 * Since: 0.1
 */
void
mpg_pool_terminate (MpgPool *self)
{
  g_return_if_fail (MPG_IS_POOL (self));

  g_mutex_lock (&self->mutex);
  if (self->state == POOL_TERMINATED)
    {
      g_mutex_unlock (&self->mutex);
      return;
    }
  self->state = POOL_TERMINATED;

  while (self->calls->len > 0)
    call_finish_locked (g_ptr_array_index (self->calls, 0),
                        g_error_new_literal (MPG_ERROR, MPG_ERROR_CLOSED, "Pool terminated"));

  for (guint i = 0; i < self->workers->len; i++)
    worker_kill (g_ptr_array_index (self->workers, i), SIGTERM);

  if (self->workers->len > 0 && self->context != NULL)
    {
      self->kill_source = g_timeout_source_new (TERMINATE_GRACE_MSEC);
      g_source_set_callback (self->kill_source, kill_workers_cb, self, NULL);
      g_source_set_static_name (self->kill_source, "[mpg] pool kill");
      g_source_attach (self->kill_source, self->context);
    }
  g_mutex_unlock (&self->mutex);

  flush_graveyard (self);
}

/**
 * mpg_pool_join:
 * @self: a pool
 * @timeout_msec: how long to wait at most, in milliseconds, or -1 for no
 *   limit
 * @error: return location for a #GError
 *
 * Waits until every worker has exited and is reaped, as Python's
 * `Pool.join()`. The pool must have been closed or terminated first
 * (%MPG_ERROR_INVALID_STATE otherwise). After a timeout, fails with
 * %MPG_ERROR_TIMEOUT.
 *
 * Returns: %TRUE when the workers are gone
 *
 * Since: 0.1
 */
gboolean
mpg_pool_join (MpgPool  *self,
               gint      timeout_msec,
               GError  **error)
{
  gint64 deadline = timeout_msec < 0 ? -1 : g_get_monotonic_time () + (gint64) timeout_msec * 1000;
  gboolean ret = TRUE;

  g_return_val_if_fail (MPG_IS_POOL (self), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  g_mutex_lock (&self->mutex);
  if (self->state == POOL_RUNNING)
    {
      g_set_error_literal (error, MPG_ERROR, MPG_ERROR_INVALID_STATE,
                           "Close or terminate the pool before joining it");
      g_mutex_unlock (&self->mutex);
      return FALSE;
    }

  while (self->workers->len > 0 || (self->state == POOL_CLOSED && self->calls->len > 0))
    {
      if (deadline < 0)
        pool_wait_locked (self);
      else if (!pool_wait_until_locked (self, deadline) &&
               g_get_monotonic_time () >= deadline)
        {
          g_set_error_literal (error, MPG_ERROR, MPG_ERROR_TIMEOUT,
                               "Timed out waiting for the pool's workers");
          ret = FALSE;
          break;
        }
    }
  g_mutex_unlock (&self->mutex);

  return ret;
}

/* Iterators */

static void
mpg_pool_iterator_dispose (GObject *object)
{
  MpgPoolIterator *self = MPG_POOL_ITERATOR (object);

  if (self->call != NULL)
    {
      Call *call = g_steal_pointer (&self->call);
      MpgPool *pool = call->pool;

      g_mutex_lock (&pool->mutex);
      call_finish_locked (call, g_error_new_literal (G_IO_ERROR, G_IO_ERROR_CANCELLED,
                                                     "The iterator was disposed of"));
      g_mutex_unlock (&pool->mutex);
      call_unref (call);
    }

  G_OBJECT_CLASS (mpg_pool_iterator_parent_class)->dispose (object);
}

static void
mpg_pool_iterator_class_init (MpgPoolIteratorClass *klass)
{
  G_OBJECT_CLASS (klass)->dispose = mpg_pool_iterator_dispose;
}

static void
mpg_pool_iterator_init (MpgPoolIterator *self)
{
}

typedef enum
{
  NEXT_NONE,     /* nothing yet */
  NEXT_VALUE,
  NEXT_ERROR,
  NEXT_END,
} NextOutcome;

static NextOutcome
iterator_take_locked (Call      *call,
                      GVariant **out_value,
                      GError   **error)
{
  guint index;

  if (call->n_yielded == call->n_items)
    return NEXT_END;

  if (call->kind == CALL_IMAP)
    {
      index = call->next_index;
      if (!call_item_is_done (call, index))
        goto nothing;
      call->next_index++;
    }
  else
    {
      if (g_queue_is_empty (&call->completed))
        goto nothing;
      index = GPOINTER_TO_UINT (g_queue_pop_head (&call->completed));
    }

  call->n_yielded++;
  if (call->errors != NULL && call->errors[index] != NULL)
    {
      g_propagate_error (error, g_steal_pointer (&call->errors[index]));
      return NEXT_ERROR;
    }
  *out_value = call_dup_result (call, index);
  if (call->results != NULL)
    g_clear_pointer (&call->results[index], g_variant_unref);
  return NEXT_VALUE;

nothing:
  /* A call that failed as a whole (the pool was terminated) reports it
   * once, then ends. */
  if (call->finished && call->error != NULL)
    {
      if (call->error_reported)
        return NEXT_END;
      call->error_reported = TRUE;
      g_propagate_error (error, g_error_copy (call->error));
      return NEXT_ERROR;
    }
  return NEXT_NONE;
}

/**
 * mpg_pool_iterator_next:
 * @self: an iterator
 * @timeout_msec: how long to wait at most, in milliseconds; 0 to poll,
 *   -1 for no limit
 * @cancellable: (nullable): a #GCancellable
 * @out_value: (out) (transfer full) (optional) (nullable): the next
 *   result, or %NULL at the end
 * @error: return location for a #GError
 *
 * Takes the next result, as `next()` on the iterator of Python's
 * `Pool.imap()` does: %TRUE with a value, %TRUE with %NULL at the end,
 * %FALSE with the item's error when the item failed (the next call goes
 * on with the next item), %FALSE with %MPG_ERROR_TIMEOUT when no result
 * came within @timeout_msec (nothing is taken) and %G_IO_ERROR_CANCELLED
 * when @cancellable was cancelled.
 *
 * Returns: %TRUE unless @error is set
 *
 * Since: 0.1
 */
gboolean
mpg_pool_iterator_next (MpgPoolIterator  *self,
                        gint              timeout_msec,
                        GCancellable     *cancellable,
                        GVariant        **out_value,
                        GError          **error)
{
  gint64 deadline = timeout_msec < 0 ? -1 : g_get_monotonic_time () + (gint64) timeout_msec * 1000;
  g_autoptr(GVariant) value = NULL;
  MpgPool *pool;
  Call *call;
  gulong cancelled_id = 0;
  NextOutcome outcome;

  g_return_val_if_fail (MPG_IS_POOL_ITERATOR (self), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  call = self->call;
  pool = call->pool;

  if (out_value != NULL)
    *out_value = NULL;

  if (g_cancellable_set_error_if_cancelled (cancellable, error))
    return FALSE;

  if (cancellable != NULL)
    cancelled_id = g_cancellable_connect (cancellable, G_CALLBACK (call_cancelled_cb_wake),
                                          pool, NULL);

  g_mutex_lock (&pool->mutex);
  for (;;)
    {
      outcome = iterator_take_locked (call, &value, error);
      if (outcome != NEXT_NONE)
        break;
      if (g_cancellable_is_cancelled (cancellable))
        {
          g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_CANCELLED, "Operation was cancelled");
          outcome = NEXT_ERROR;
          break;
        }
      if (deadline < 0)
        pool_wait_locked (pool);
      else if (g_get_monotonic_time () >= deadline ||
               (!pool_wait_until_locked (pool, deadline) &&
                g_get_monotonic_time () >= deadline))
        {
          outcome = iterator_take_locked (call, &value, error);
          if (outcome == NEXT_NONE)
            {
              g_set_error_literal (error, MPG_ERROR, MPG_ERROR_TIMEOUT, "No result yet");
              outcome = NEXT_ERROR;
            }
          break;
        }
    }
  g_mutex_unlock (&pool->mutex);

  if (cancelled_id != 0)
    g_cancellable_disconnect (cancellable, cancelled_id);

  if (outcome == NEXT_ERROR)
    return FALSE;
  if (out_value != NULL)
    *out_value = g_steal_pointer (&value);
  return TRUE;
}

static gboolean
next_async_cb (gpointer data)
{
  Call *call = data;
  MpgPool *pool = call->pool;
  GVariant *value = NULL;
  GError *error = NULL;
  NextOutcome outcome;
  GTask *task;

  g_mutex_lock (&pool->mutex);
  task = g_steal_pointer (&call->next_task);
  if (task == NULL)
    {
      g_mutex_unlock (&pool->mutex);
      return G_SOURCE_REMOVE;
    }
  outcome = iterator_take_locked (call, &value, &error);
  if (outcome == NEXT_NONE)
    {
      call->next_task = task;
      g_mutex_unlock (&pool->mutex);
      return G_SOURCE_REMOVE;
    }
  g_mutex_unlock (&pool->mutex);

  if (outcome == NEXT_ERROR)
    g_task_return_error (task, error);
  else
    g_task_return_pointer (task, value, (GDestroyNotify) g_variant_unref);
  g_object_unref (task);

  return G_SOURCE_REMOVE;
}

static void
iterator_wake_locked (Call *call)
{
  if (call->next_task != NULL)
    invoke_in_context (g_task_get_context (call->next_task), next_async_cb, call_ref (call),
                       (GDestroyNotify) call_unref);
}

static gboolean
next_cancelled_cb (GCancellable *cancellable,
                   gpointer      data)
{
  GTask *task = data;
  Call *call = g_task_get_task_data (task);
  MpgPool *pool = call->pool;
  gboolean mine;

  g_mutex_lock (&pool->mutex);
  mine = call->next_task == task;
  if (mine)
    call->next_task = NULL;
  g_mutex_unlock (&pool->mutex);

  if (mine)
    {
      g_task_return_new_error (task, G_IO_ERROR, G_IO_ERROR_CANCELLED, "Operation was cancelled");
      g_object_unref (task);
    }

  return G_SOURCE_REMOVE;
}

/**
 * mpg_pool_iterator_next_async:
 * @self: an iterator
 * @cancellable: (nullable): a #GCancellable
 * @callback: (scope async) (closure user_data): called in the
 *   thread-default main context of the caller when the next result is
 *   there
 * @user_data: data for @callback
 *
 * Takes the next result without blocking; see
 * [method@Mpg.PoolIterator.next]. Only one may be pending at a time
 * (%G_IO_ERROR_PENDING otherwise). Finish with
 * [method@Mpg.PoolIterator.next_finish].
 *
 * Since: 0.1
 */
void
mpg_pool_iterator_next_async (MpgPoolIterator     *self,
                              GCancellable        *cancellable,
                              GAsyncReadyCallback  callback,
                              gpointer             user_data)
{
  g_autoptr(GTask) task = NULL;
  MpgPool *pool;
  Call *call;

  g_return_if_fail (MPG_IS_POOL_ITERATOR (self));

  call = self->call;
  pool = call->pool;

  task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (task, mpg_pool_iterator_next_async);
  g_task_set_task_data (task, call_ref (call), (GDestroyNotify) call_unref);

  g_mutex_lock (&pool->mutex);
  if (call->next_task != NULL)
    {
      g_mutex_unlock (&pool->mutex);
      g_task_return_new_error (task, G_IO_ERROR, G_IO_ERROR_PENDING,
                               "A next_async() of this iterator is pending already");
      return;
    }
  call->next_task = g_object_ref (task);
  iterator_wake_locked (call);
  g_mutex_unlock (&pool->mutex);

  if (cancellable != NULL)
    {
      g_autoptr(GSource) source = g_cancellable_source_new (cancellable);

      g_task_attach_source (task, source, G_SOURCE_FUNC (next_cancelled_cb));
    }
}

/**
 * mpg_pool_iterator_next_finish:
 * @self: an iterator
 * @result: the #GAsyncResult given to the callback
 * @out_value: (out) (transfer full) (optional) (nullable): the next
 *   result, or %NULL at the end
 * @error: return location for a #GError
 *
 * Finishes [method@Mpg.PoolIterator.next_async], with the meaning of
 * [method@Mpg.PoolIterator.next].
 *
 * Returns: %TRUE unless @error is set
 *
 * Since: 0.1
 */
gboolean
mpg_pool_iterator_next_finish (MpgPoolIterator  *self,
                               GAsyncResult     *result,
                               GVariant        **out_value,
                               GError          **error)
{
  GError *local_error = NULL;
  GVariant *value;

  g_return_val_if_fail (g_task_is_valid (result, self), FALSE);
  g_return_val_if_fail (g_async_result_is_tagged (result, mpg_pool_iterator_next_async), FALSE);

  value = g_task_propagate_pointer (G_TASK (result), &local_error);
  if (out_value != NULL)
    *out_value = NULL;
  if (local_error != NULL)
    {
      g_propagate_error (error, local_error);
      return FALSE;
    }
  if (out_value != NULL)
    *out_value = value;
  else if (value != NULL)
    g_variant_unref (value);
  return TRUE;
}

/**
 * mpg_pool_iterator_get_length:
 * @self: an iterator
 *
 * Gets the number of items of the iterator's call.
 *
 * Returns: how many items the iterator's call has
 *
 * Since: 0.1
 */
guint
mpg_pool_iterator_get_length (MpgPoolIterator *self)
{
  g_return_val_if_fail (MPG_IS_POOL_ITERATOR (self), 0);

  return self->call != NULL ? self->call->n_items : 0;
}

/* In a spawned pool worker: receive the bootstrap, then run the same
 * loop as a forked worker, with every task found by name. */
void
_mpg_pool_spawned_main (void)
{
  g_autoptr(GVariant) bootstrap = NULL;
  g_autoptr(GError) error = NULL;
  WorkerStart *start = g_new0 (WorkerStart, 1);
  char *initializer_name;

  bootstrap = _mpg_channel_receive (3, MAX_MESSAGE, -1, NULL, &start->initargs_fds, &error);
  if (bootstrap == NULL || !g_variant_is_of_type (bootstrap, G_VARIANT_TYPE (SPAWN_BOOTSTRAP_TYPE)))
    {
      g_printerr ("libmpg: a spawned pool worker got no valid start message: %s\n",
                  error != NULL ? error->message : "wrong type");
      _exit (1);
    }

  start->fd = 3;
  start->spawned = TRUE;
  g_variant_get (bootstrap, "(uusmvs)", &start->number, &start->maxtasksperchild,
                 &initializer_name, &start->initargs, &start->name_prefix);
  if (initializer_name[0] != '\0')
    start->initializer_name = initializer_name;
  else
    g_free (initializer_name);

  worker_main (start);
  _exit (1);   /* not reached: worker_main() exits */
}
