/* mpg-process.c
 *
 * Copyright 2026 The libmpg authors
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/wait.h>

#include <glib-unix.h>

#include "mpg-enums.h"
#include "mpg-error.h"
#include "mpg-fork-private.h"
#include "mpg-process-private.h"
#include "mpg-spawn-private.h"
#include "mpg-channel-private.h"
#include "mpg-process.h"
#include "mpg-queue-private.h"
#include "mpg-runtime.h"
#include "mpg-wire-private.h"

/**
 * MpgProcess:
 *
 * A process: code that runs in a child process, as Python's
 * `multiprocessing.Process`.
 *
 * A process is created with a target — an [callback@Mpg.TaskFunc] and its
 * argument — and runs it in a child when [method@Mpg.Process.start] is
 * called. [method@Mpg.Process.join] waits for the child to end (and
 * [method@Mpg.Process.join_async] does so without blocking the main loop);
 * then [property@Mpg.Process:exitcode] says how it ended and
 * [method@Mpg.Process.dup_result] gives what the target returned.
 *
 * ```c
 * static GVariant *
 * f (GVariant *args, gpointer user_data, GError **error)
 * {
 *   const char *name;
 *
 *   g_variant_get (args, "(&s)", &name);
 *   g_print ("hello %s\n", name);
 *   return NULL;
 * }
 *
 * g_autoptr(MpgProcess) p = mpg_process_new (g_variant_new ("(s)", "bob"), f, NULL, NULL);
 * if (!mpg_process_start (p, &error) || !mpg_process_join (p, -1, NULL, &error))
 *   g_printerr ("%s\n", error->message);
 * ```
 *
 * ## How it maps to Python
 *
 * | Python `multiprocessing` | libmpg |
 * |---|---|
 * | `Process(target=f, args=(x,))` | `mpg_process_new (g_variant_new ("(i)", x), f, NULL, NULL)` |
 * | `p.start()`, `p.join(timeout)` | [method@Mpg.Process.start], [method@Mpg.Process.join] |
 * | `p.is_alive()` | [method@Mpg.Process.is_alive] |
 * | `p.terminate()`, `p.kill()`, `p.close()` | [method@Mpg.Process.terminate], [method@Mpg.Process.kill], [method@Mpg.Process.close] |
 * | `p.name`, `p.daemon`, `p.pid`, `p.exitcode`, `p.sentinel` | the properties, and [method@Mpg.Process.get_sentinel] |
 * | subclass overriding `run()` | subclass overriding [vfunc@Mpg.Process.run] |
 *
 * Exit codes are those of Python: 0 when the target returned, 1 when it
 * failed with an error, `-N` when the child was killed by signal N (`-6` for
 * an abort, `-11` for a segmentation fault). Unlike Python, the target's
 * return value and its error come back to the parent.
 *
 * ## The child
 *
 * With the fork start method the child is a copy of the parent: the target
 * can be any function, with any data. The child gets a fresh thread-default
 * main context, default signal dispositions and an empty signal mask; it is
 * killed if its parent dies; it shares the parent's standard streams and
 * environment. It closes the library's parent-side fds of other children
 * but keeps everything else the program had open. When the target returns,
 * the child sends the result, joins its own non-daemon children, flushes
 * stdio and leaves with `_exit()`, so the parent's `atexit()` handlers do
 * not run twice.
 *
 * When the parent exits normally, it terminates its daemon children and
 * then waits for all its children, as Python does.
 *
 * Setting `G_MESSAGES_DEBUG=Mpg` logs each fork, exit and reap.
 *
 * Since: 0.1
 */

typedef enum
{
  STATE_NEW,
  STATE_RUNNING,
  STATE_EXITED,
} ProcessState;

typedef enum
{
  KIND_CHILD,
  KIND_MAIN,
  KIND_PARENT,
} ProcessKind;

typedef struct
{
  GMutex mutex;

  char *name;
  char *identity;
  GVariant *args;
  MpgTaskFunc target;
  gpointer target_data;
  GDestroyNotify target_data_free;
  char *target_name;
  GUnixFDList *fd_list;
  MpgStartMethod start_method;
  gboolean daemon;

  ProcessKind kind;
  ProcessState state;
  gboolean closed;

  pid_t pid;
  /* The process that opened pidfd and result_fd: a forked copy of this
   * object must not close fd numbers that are no longer its own. */
  pid_t owner_pid;
  int pidfd;
  int result_fd;
  int status_fd;              /* a forkserver child's exit code comes here */
  GByteArray *result_buf;
  gboolean result_eof;
  gboolean result_too_large;
  guint n_waiters;

  int exitcode;
  GVariant *result;
  GError *result_error;
} MpgProcessPrivate;

G_DEFINE_TYPE_WITH_PRIVATE (MpgProcess, mpg_process, G_TYPE_OBJECT)

enum {
  PROP_0,
  PROP_NAME,
  PROP_ARGS,
  PROP_DAEMON,
  PROP_START_METHOD,
  PROP_PID,
  PROP_EXITCODE,
  N_PROPS
};

static GParamSpec *properties[N_PROPS];

/* Process-wide state, as multiprocessing's module globals. */
G_LOCK_DEFINE_STATIC (globals);
static GPtrArray *children;        /* started and not yet reaped, owned */
static MpgProcess *current_process;
/* In a child: the parent's pid, name and pidfd, taken at start; its object
 * is made on first use, as most children never ask for it. */
static MpgProcess *parent_process;
static pid_t parent_pid;
static char *parent_name;
static int parent_pidfd = -1;
static char *current_identity;     /* "" in the main process, "1:2" in a grandchild */
static guint process_counter = 1;
static gboolean atexit_registered;
/* Set while the exit handler runs: no signal emission then, as bindings
 * may have finalised their runtime before C's atexit() handlers run. */
static gboolean exiting;
static __thread ProcessKind constructing_kind;

#define RESULT_TYPE "(bmv(sis))"

/* GLib formats a debug message before it decides to drop it; on the path
 * of every start, reap and child, ask first. Children ask their parent's
 * answer, taken at start, rather than look at the environment again. */
static gboolean child_debug;
#define debug_enabled() \
  (!g_log_writer_default_would_drop (G_LOG_LEVEL_DEBUG, G_LOG_DOMAIN))
#define process_debug(...) \
  G_STMT_START { if (debug_enabled ()) g_debug (__VA_ARGS__); } G_STMT_END
#define child_process_debug(...) \
  G_STMT_START { if (child_debug) g_debug (__VA_ARGS__); } G_STMT_END

static void exit_function (void);

static void
notify (MpgProcess *self,
        GParamSpec *pspec)
{
  if (!g_atomic_int_get (&exiting))
    g_object_notify_by_pspec (G_OBJECT (self), pspec);
}

static GVariant *
mpg_process_real_run (MpgProcess  *self,
                      GError     **error)
{
  MpgProcessPrivate *priv = mpg_process_get_instance_private (self);

  if (priv->target == NULL)
    return NULL;

  return priv->target (priv->args, priv->target_data, error);
}

/* Reads whatever the child has written so far, without blocking, so that
 * a child with a large result never waits on a full pipe. */
static void
drain_result_locked (MpgProcess *self)
{
  MpgProcessPrivate *priv = mpg_process_get_instance_private (self);
  guint8 buf[65536];

  while (priv->result_fd >= 0 && !priv->result_eof)
    {
      gssize n = read (priv->result_fd, buf, sizeof buf);

      if (n > 0)
        {
          /* A child that writes more than any valid result is broken or
           * hostile: keep reading, so that it is not blocked, but discard. */
          if (priv->result_too_large ||
              priv->result_buf->len + (gsize) n > MPG_WIRE_DEFAULT_MAX)
            {
              priv->result_too_large = TRUE;
              g_byte_array_set_size (priv->result_buf, 0);
            }
          else
            g_byte_array_append (priv->result_buf, buf, n);
        }
      else if (n == 0)
        priv->result_eof = TRUE;
      else if (errno == EINTR)
        continue;
      else
        break;
    }
}

static GBytes *no_result_frame (void);

static gboolean
no_result_frame_matches (GByteArray *buf)
{
  gsize len;
  const guint8 *data = g_bytes_get_data (no_result_frame (), &len);

  return buf->len == len && memcmp (buf->data, data, len) == 0;
}

static void
decode_result_locked (MpgProcess *self)
{
  MpgProcessPrivate *priv = mpg_process_get_instance_private (self);
  g_autoptr(GVariant) message = NULL;
  g_autoptr(GVariant) error_v = NULL;
  g_autoptr(GError) error = NULL;
  gsize consumed = 0;
  gboolean ok;

  if (priv->result_too_large)
    {
      priv->result_error = g_error_new (MPG_ERROR, MPG_ERROR_TOO_LARGE,
                                        "%s returned a result larger than %u bytes",
                                        priv->name, MPG_WIRE_DEFAULT_MAX);
      return;
    }

  if (priv->result_buf->len == 0)
    {
      if (priv->exitcode < 0)
        priv->result_error = g_error_new (MPG_ERROR, MPG_ERROR_WORKER_DIED,
                                          "%s was killed by signal %d (%s)",
                                          priv->name, -priv->exitcode,
                                          g_strsignal (-priv->exitcode));
      else
        priv->result_error = g_error_new (MPG_ERROR, MPG_ERROR_WORKER_DIED,
                                          "%s exited with code %d before returning a result",
                                          priv->name, priv->exitcode);
      return;
    }

  /* Most targets return nothing: that message is known byte for byte. */
  if (no_result_frame_matches (priv->result_buf))
    return;

  if (!_mpg_wire_decode (priv->result_buf->data, priv->result_buf->len,
                         MPG_WIRE_DEFAULT_MAX, &message, &consumed, &error))
    {
      priv->result_error = g_steal_pointer (&error);
      return;
    }

  if (message == NULL || consumed != priv->result_buf->len ||
      !g_variant_is_of_type (message, G_VARIANT_TYPE (RESULT_TYPE)))
    {
      priv->result_error = g_error_new (MPG_ERROR, MPG_ERROR_PROTOCOL,
                                        "%s sent an invalid result message", priv->name);
      return;
    }

  g_variant_get_child (message, 0, "b", &ok);
  if (ok)
    {
      g_autoptr(GVariant) maybe = g_variant_get_child_value (message, 1);
      g_autoptr(GVariant) boxed = g_variant_get_maybe (maybe);

      if (boxed != NULL)
        priv->result = g_variant_get_variant (boxed);
    }
  else
    {
      error_v = g_variant_get_child_value (message, 2);
      priv->result_error = _mpg_wire_error_from_variant (error_v);
    }
}

static void
release_channel_locked (MpgProcess *self)
{
  MpgProcessPrivate *priv = mpg_process_get_instance_private (self);

  if (priv->owner_pid == getpid ())
    {
      _mpg_fork_close_fd (&priv->result_fd);
      _mpg_fork_close_fd (&priv->status_fd);
    }
  priv->result_fd = -1;
  priv->status_fd = -1;
  g_clear_pointer (&priv->result_buf, g_byte_array_unref);
}

static gboolean pidfd_is_readable (int pidfd);

/* Collects the exit status if the child has exited. Returns TRUE if this
 * call reaped it: the caller then notifies and forgets the child. */
static gboolean
poll_locked (MpgProcess *self)
{
  MpgProcessPrivate *priv = mpg_process_get_instance_private (self);
  siginfo_t info;
  int r;

  if (priv->state != STATE_RUNNING || priv->kind != KIND_CHILD ||
      priv->owner_pid != getpid ())
    return FALSE;

  drain_result_locked (self);

  /* Without a pidfd, the end of file of the channel, which the child holds
   * until it exits, says that it is exiting: then wait for it. */
  if (priv->pidfd < 0 && !priv->result_eof)
    return FALSE;

  /* A forkserver child is the server's: the server reaps it and sends its
   * exit code, promptly once it has ended. */
  if (priv->status_fd >= 0)
    {
      gint code;

      if (priv->pidfd >= 0 && !pidfd_is_readable (priv->pidfd))
        return FALSE;
      code = _mpg_forkserver_read_status (priv->status_fd, 5000);
      if (code == G_MININT)
        return FALSE;
      drain_result_locked (self);
      priv->exitcode = code;
      goto exited;
    }

  memset (&info, 0, sizeof info);
  do
    {
      if (priv->pidfd >= 0)
        r = waitid (P_PIDFD, priv->pidfd, &info, WEXITED | WNOHANG);
      else
        r = waitid (P_PID, priv->pid, &info, WEXITED);
    }
  while (r < 0 && errno == EINTR);

  if (r < 0)
    {
      /* Someone else reaped our child (a waitpid(-1) elsewhere in the
       * program, or SIGCHLD ignored): the status is lost. */
      g_warning ("%s (pid %d) was reaped outside libmpg; its exit code is unknown",
                 priv->name, priv->pid);
      info.si_pid = priv->pid;
      info.si_code = CLD_EXITED;
      info.si_status = 255;
    }

  if (info.si_pid == 0)
    return FALSE;

  /* Everything the child wrote before it exited is in the pipe now. */
  drain_result_locked (self);

  if (info.si_code == CLD_EXITED)
    priv->exitcode = info.si_status;
  else
    priv->exitcode = -info.si_status;

exited:
  priv->state = STATE_EXITED;

  decode_result_locked (self);
  if (priv->n_waiters == 0)
    release_channel_locked (self);

  process_debug ("%s (pid %d) reaped, exit code %d", priv->name, priv->pid, priv->exitcode);

  return TRUE;
}

static void
forget_child (MpgProcess *self)
{
  MpgProcess *owned = NULL;
  guint index;

  G_LOCK (globals);
  if (children != NULL && g_ptr_array_find (children, self, &index))
    owned = g_ptr_array_steal_index_fast (children, index);
  G_UNLOCK (globals);

  /* Outside the lock: the last reference may run user_data_free. */
  g_clear_object (&owned);
}

/* Polls the child and, if it was reaped, tells the world. */
static void
mpg_process_poll (MpgProcess *self)
{
  MpgProcessPrivate *priv = mpg_process_get_instance_private (self);
  gboolean reaped;

  g_object_ref (self);
  g_mutex_lock (&priv->mutex);
  reaped = poll_locked (self);
  g_mutex_unlock (&priv->mutex);

  if (reaped)
    {
      notify (self, properties[PROP_EXITCODE]);
      forget_child (self);
    }
  g_object_unref (self);
}

/* Reaps finished children, as multiprocessing does at each start(): a
 * child nobody joins is a zombie only until the next call. */
static GPtrArray *
snapshot_children (void)
{
  GPtrArray *snapshot = g_ptr_array_new_with_free_func (g_object_unref);

  G_LOCK (globals);
  for (guint i = 0; children != NULL && i < children->len; i++)
    g_ptr_array_add (snapshot, g_object_ref (g_ptr_array_index (children, i)));
  G_UNLOCK (globals);

  return snapshot;
}

static void
cleanup_children (void)
{
  g_autoptr(GPtrArray) snapshot = snapshot_children ();

  for (guint i = 0; i < snapshot->len; i++)
    mpg_process_poll (g_ptr_array_index (snapshot, i));
}

static void
mpg_process_dispose (GObject *object)
{
  MpgProcess *self = (MpgProcess *)object;
  MpgProcessPrivate *priv = mpg_process_get_instance_private (self);

  if (priv->target_data_free != NULL)
    {
      GDestroyNotify free_func = g_steal_pointer (&priv->target_data_free);

      free_func (g_steal_pointer (&priv->target_data));
    }
  priv->target = NULL;

  G_OBJECT_CLASS (mpg_process_parent_class)->dispose (object);
}

static void
mpg_process_finalize (GObject *object)
{
  MpgProcess *self = (MpgProcess *)object;
  MpgProcessPrivate *priv = mpg_process_get_instance_private (self);

  release_channel_locked (self);
  if (priv->owner_pid == getpid ())
    _mpg_fork_close_fd (&priv->pidfd);
  else if (priv->kind == KIND_PARENT && priv->pidfd >= 0)
    close (priv->pidfd);

  g_clear_pointer (&priv->name, g_free);
  g_clear_pointer (&priv->identity, g_free);
  g_clear_pointer (&priv->target_name, g_free);
  g_clear_object (&priv->fd_list);
  g_clear_pointer (&priv->args, g_variant_unref);
  g_clear_pointer (&priv->result, g_variant_unref);
  g_clear_error (&priv->result_error);
  g_mutex_clear (&priv->mutex);

  G_OBJECT_CLASS (mpg_process_parent_class)->finalize (object);
}

static void
mpg_process_get_property (GObject    *object,
                          guint       prop_id,
                          GValue     *value,
                          GParamSpec *pspec)
{
  MpgProcess *self = MPG_PROCESS (object);

  switch (prop_id)
    {
    case PROP_NAME:
      g_value_set_string (value, mpg_process_get_name (self));
      break;

    case PROP_ARGS:
      g_value_set_variant (value, mpg_process_get_args (self));
      break;

    case PROP_DAEMON:
      g_value_set_boolean (value, mpg_process_get_daemon (self));
      break;

    case PROP_START_METHOD:
      g_value_set_enum (value, mpg_process_get_start_method (self));
      break;

    case PROP_PID:
      g_value_set_int (value, mpg_process_get_pid (self));
      break;

    case PROP_EXITCODE:
      g_value_set_int (value, mpg_process_get_exitcode (self));
      break;

    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
mpg_process_set_property (GObject      *object,
                          guint         prop_id,
                          const GValue *value,
                          GParamSpec   *pspec)
{
  MpgProcess *self = MPG_PROCESS (object);

  switch (prop_id)
    {
    case PROP_NAME:
      mpg_process_set_name (self, g_value_get_string (value));
      break;

    case PROP_ARGS:
      mpg_process_set_args (self, g_value_get_variant (value));
      break;

    case PROP_DAEMON:
      mpg_process_set_daemon (self, g_value_get_boolean (value));
      break;

    case PROP_START_METHOD:
      mpg_process_set_start_method (self, g_value_get_enum (value));
      break;

    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
mpg_process_class_init (MpgProcessClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->dispose = mpg_process_dispose;
  object_class->finalize = mpg_process_finalize;
  object_class->get_property = mpg_process_get_property;
  object_class->set_property = mpg_process_set_property;

  klass->run = mpg_process_real_run;

  /**
   * MpgProcess:name:
   *
   * The process's name, for humans and logs: `Process-N` by default, where N
   * counts the processes created by this process (`Process-1:2` for the
   * second one created by `Process-1`), and `MainProcess` for the object
   * [func@Mpg.current_process] returns in the main process.
   *
   * Since: 0.1
   */
  properties[PROP_NAME] =
    g_param_spec_string ("name", NULL, NULL,
                         NULL,
                         (G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS));

  /**
   * MpgProcess:args:
   *
   * The argument the target receives, or %NULL for none. Python's `args`
   * are a tuple: `g_variant_new ("(s)", "bob")` is `args=('bob',)`.
   *
   * It can only be changed before the process is started.
   *
   * Since: 0.1
   */
  properties[PROP_ARGS] =
    g_param_spec_variant ("args", NULL, NULL,
                          G_VARIANT_TYPE_ANY, NULL,
                          (G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS));

  /**
   * MpgProcess:daemon:
   *
   * Whether the process is a daemon: one that is terminated, rather than
   * waited for, when its parent exits. A daemon process cannot start
   * processes of its own. Inherited from the creating process; it can
   * only be changed before the process is started.
   *
   * Since: 0.1
   */
  properties[PROP_DAEMON] =
    g_param_spec_boolean ("daemon", NULL, NULL,
                          FALSE,
                          (G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS));

  /**
   * MpgProcess:start-method:
   *
   * How the child will be started. %MPG_START_METHOD_DEFAULT (the default)
   * uses [func@Mpg.get_start_method] at start time. It can only be changed
   * before the process is started.
   *
   * Since: 0.1
   */
  properties[PROP_START_METHOD] =
    g_param_spec_enum ("start-method", NULL, NULL,
                       MPG_TYPE_START_METHOD,
                       MPG_START_METHOD_DEFAULT,
                       (G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS));

  /**
   * MpgProcess:pid:
   *
   * The child's process ID once started; 0 before (Python's `None`).
   *
   * Since: 0.1
   */
  properties[PROP_PID] =
    g_param_spec_int ("pid", NULL, NULL,
                      0, G_MAXINT, 0,
                      (G_PARAM_READABLE | G_PARAM_STATIC_STRINGS));

  /**
   * MpgProcess:exitcode:
   *
   * How the child ended: 0 if the target returned, 1 if it failed with an
   * error, `-N` if the child was killed by signal N, or the status it
   * passed to `exit()`. %MPG_PROCESS_EXITCODE_NONE while it has not been
   * started or has not ended (Python's `None`).
   *
   * It is notified when the child is reaped: by a join, by
   * [method@Mpg.Process.is_alive], or by reading this property.
   *
   * Since: 0.1
   */
  properties[PROP_EXITCODE] =
    g_param_spec_int ("exitcode", NULL, NULL,
                      G_MININT, G_MAXINT, MPG_PROCESS_EXITCODE_NONE,
                      (G_PARAM_READABLE | G_PARAM_STATIC_STRINGS));

  g_object_class_install_properties (object_class, N_PROPS, properties);
}

static void
mpg_process_init (MpgProcess *self)
{
  MpgProcessPrivate *priv = mpg_process_get_instance_private (self);

  g_mutex_init (&priv->mutex);
  priv->pidfd = -1;
  priv->result_fd = -1;
  priv->status_fd = -1;
  priv->exitcode = MPG_PROCESS_EXITCODE_NONE;
  priv->kind = constructing_kind;

  if (priv->kind != KIND_CHILD)
    return;

  /* As multiprocessing: the identity extends the creator's, and the daemon
   * flag is inherited from it. */
  G_LOCK (globals);
  if (current_identity == NULL || current_identity[0] == '\0')
    priv->identity = g_strdup_printf ("%u", process_counter++);
  else
    priv->identity = g_strdup_printf ("%s:%u", current_identity, process_counter++);
  G_UNLOCK (globals);

  priv->name = g_strdup_printf ("Process-%s", priv->identity);
  priv->daemon = mpg_process_get_daemon (mpg_current_process ());
}

/**
 * mpg_process_new:
 * @args: (nullable): the argument for @target, or %NULL for none; a floating
 *   reference is sunk
 * @target: (nullable) (scope notified) (closure user_data) (destroy user_data_free):
 *   the function the child runs, or %NULL for none
 * @user_data: data for @target
 * @user_data_free: (nullable): frees @user_data when the process is finalised
 *
 * Creates a process that will run @target with @args in a child process
 * once started. A process without a target is valid: its child does
 * nothing and exits with code 0.
 *
 * With the fork start method, @user_data is copied into the child with the
 * rest of the parent's memory; @user_data_free runs in the parent only.
 *
 * Returns: (transfer full): a new process
 *
 * Since: 0.1
 */
MpgProcess *
mpg_process_new (GVariant       *args,
                 MpgTaskFunc     target,
                 gpointer        user_data,
                 GDestroyNotify  user_data_free)
{
  MpgProcess *self;

  self = g_object_new (MPG_TYPE_PROCESS, "args", args, NULL);
  mpg_process_set_target (self, target, user_data, user_data_free);

  return self;
}

static gboolean
check_not_started (MpgProcess  *self,
                   GError     **error)
{
  MpgProcessPrivate *priv = mpg_process_get_instance_private (self);

  if (priv->closed)
    {
      g_set_error (error, MPG_ERROR, MPG_ERROR_CLOSED,
                   "%s is closed", priv->name);
      return FALSE;
    }

  if (priv->state != STATE_NEW || priv->kind != KIND_CHILD)
    {
      g_set_error (error, MPG_ERROR, MPG_ERROR_INVALID_STATE,
                   "%s has already been started", priv->name);
      return FALSE;
    }

  return TRUE;
}

/**
 * mpg_process_set_target:
 * @self: a process
 * @target: (nullable) (scope notified) (closure user_data) (destroy user_data_free):
 *   the function the child runs, or %NULL for none
 * @user_data: data for @target
 * @user_data_free: (nullable): frees @user_data when it is no longer needed
 *
 * Sets the function that the default [vfunc@Mpg.Process.run] calls in the
 * child. It can only be changed before the process is started; afterwards
 * the call is refused with a critical warning.
 *
 * Since: 0.1
 */
void
mpg_process_set_target (MpgProcess     *self,
                        MpgTaskFunc     target,
                        gpointer        user_data,
                        GDestroyNotify  user_data_free)
{
  MpgProcessPrivate *priv = mpg_process_get_instance_private (self);
  GDestroyNotify old_free;
  gpointer old_data;

  g_return_if_fail (MPG_IS_PROCESS (self));
  g_return_if_fail (check_not_started (self, NULL));

  old_free = priv->target_data_free;
  old_data = priv->target_data;
  priv->target = target;
  priv->target_data = user_data;
  priv->target_data_free = user_data_free;

  if (old_free != NULL)
    old_free (old_data);
}

/**
 * mpg_process_get_args:
 * @self: a process
 *
 * Gets [property@Mpg.Process:args].
 *
 * Returns: (transfer none) (nullable): the target's argument
 *
 * Since: 0.1
 */
GVariant *
mpg_process_get_args (MpgProcess *self)
{
  MpgProcessPrivate *priv = mpg_process_get_instance_private (self);

  g_return_val_if_fail (MPG_IS_PROCESS (self), NULL);

  return priv->args;
}

/**
 * mpg_process_set_args:
 * @self: a process
 * @args: (nullable): the argument, or %NULL; a floating reference is sunk
 *
 * Sets [property@Mpg.Process:args]. Only before the process is started.
 *
 * Since: 0.1
 */
void
mpg_process_set_args (MpgProcess *self,
                      GVariant   *args)
{
  MpgProcessPrivate *priv = mpg_process_get_instance_private (self);

  g_return_if_fail (MPG_IS_PROCESS (self));
  g_return_if_fail (check_not_started (self, NULL));

  if (args != NULL)
    g_variant_ref_sink (args);

  if (priv->args == args ||
      (priv->args != NULL && args != NULL && g_variant_equal (priv->args, args)))
    {
      g_clear_pointer (&args, g_variant_unref);
      return;
    }

  g_clear_pointer (&priv->args, g_variant_unref);
  priv->args = args;
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_ARGS]);
}

/**
 * mpg_process_get_name:
 * @self: a process
 *
 * Gets [property@Mpg.Process:name].
 *
 * Returns: the name
 *
 * Since: 0.1
 */
const char *
mpg_process_get_name (MpgProcess *self)
{
  MpgProcessPrivate *priv = mpg_process_get_instance_private (self);

  g_return_val_if_fail (MPG_IS_PROCESS (self), NULL);

  return priv->name;
}

/**
 * mpg_process_set_name:
 * @self: a process
 * @name: the new name
 *
 * Sets [property@Mpg.Process:name]. The name can change at any time; it
 * has no meaning for the library.
 *
 * Since: 0.1
 */
void
mpg_process_set_name (MpgProcess *self,
                      const char *name)
{
  MpgProcessPrivate *priv = mpg_process_get_instance_private (self);

  g_return_if_fail (MPG_IS_PROCESS (self));

  /* NULL keeps the default name (g_object_new() sets every property). */
  if (name == NULL)
    return;

  if (g_strcmp0 (priv->name, name) != 0)
    {
      g_free (priv->name);
      priv->name = g_strdup (name);
      g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_NAME]);
    }
}

/**
 * mpg_process_get_daemon:
 * @self: a process
 *
 * Gets [property@Mpg.Process:daemon].
 *
 * Returns: whether the process is a daemon
 *
 * Since: 0.1
 */
gboolean
mpg_process_get_daemon (MpgProcess *self)
{
  MpgProcessPrivate *priv = mpg_process_get_instance_private (self);

  g_return_val_if_fail (MPG_IS_PROCESS (self), FALSE);

  return priv->daemon;
}

/**
 * mpg_process_set_daemon:
 * @self: a process
 * @daemon: whether the process is a daemon
 *
 * Sets [property@Mpg.Process:daemon]. Only before the process is started.
 *
 * Since: 0.1
 */
void
mpg_process_set_daemon (MpgProcess *self,
                        gboolean    daemon)
{
  MpgProcessPrivate *priv = mpg_process_get_instance_private (self);

  g_return_if_fail (MPG_IS_PROCESS (self));
  g_return_if_fail (check_not_started (self, NULL));

  daemon = !!daemon;
  if (priv->daemon != daemon)
    {
      priv->daemon = daemon;
      g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_DAEMON]);
    }
}

/**
 * mpg_process_get_start_method:
 * @self: a process
 *
 * Gets [property@Mpg.Process:start-method].
 *
 * Returns: the start method
 *
 * Since: 0.1
 */
MpgStartMethod
mpg_process_get_start_method (MpgProcess *self)
{
  MpgProcessPrivate *priv = mpg_process_get_instance_private (self);

  g_return_val_if_fail (MPG_IS_PROCESS (self), MPG_START_METHOD_DEFAULT);

  return priv->start_method;
}

/**
 * mpg_process_set_start_method:
 * @self: a process
 * @method: the start method
 *
 * Sets [property@Mpg.Process:start-method]. Only before the process is
 * started.
 *
 * Since: 0.1
 */
void
mpg_process_set_start_method (MpgProcess     *self,
                              MpgStartMethod  method)
{
  MpgProcessPrivate *priv = mpg_process_get_instance_private (self);

  g_return_if_fail (MPG_IS_PROCESS (self));
  g_return_if_fail (method >= MPG_START_METHOD_DEFAULT && method <= MPG_START_METHOD_FORKSERVER);
  g_return_if_fail (check_not_started (self, NULL));

  if (priv->start_method != method)
    {
      priv->start_method = method;
      g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_START_METHOD]);
    }
}

/**
 * mpg_process_get_pid:
 * @self: a process
 *
 * Gets [property@Mpg.Process:pid].
 *
 * Returns: the process ID, or 0 if the process has not been started
 *
 * Since: 0.1
 */
gint
mpg_process_get_pid (MpgProcess *self)
{
  MpgProcessPrivate *priv = mpg_process_get_instance_private (self);

  g_return_val_if_fail (MPG_IS_PROCESS (self), 0);

  if (self == current_process)
    return getpid ();

  return priv->pid;
}

/**
 * mpg_process_get_exitcode:
 * @self: a process
 *
 * Gets [property@Mpg.Process:exitcode], first checking, without blocking,
 * whether a running child has ended.
 *
 * Returns: the exit code, or %MPG_PROCESS_EXITCODE_NONE if the process has
 *   not been started or has not ended
 *
 * Since: 0.1
 */
gint
mpg_process_get_exitcode (MpgProcess *self)
{
  MpgProcessPrivate *priv = mpg_process_get_instance_private (self);
  gint exitcode;

  g_return_val_if_fail (MPG_IS_PROCESS (self), MPG_PROCESS_EXITCODE_NONE);

  mpg_process_poll (self);

  g_mutex_lock (&priv->mutex);
  exitcode = priv->exitcode;
  g_mutex_unlock (&priv->mutex);

  return exitcode;
}

/**
 * mpg_process_get_sentinel:
 * @self: a process
 *
 * Gets a file descriptor that becomes readable when the process ends, as
 * Python's `Process.sentinel`: a pidfd, which a program can poll along with
 * its other fds. It stays valid until the process is closed or finalised;
 * do not close it.
 *
 * Returns: the fd, or -1 if the process has not been started or is closed
 *
 * Since: 0.1
 */
gint
mpg_process_get_sentinel (MpgProcess *self)
{
  MpgProcessPrivate *priv = mpg_process_get_instance_private (self);
  gint fd;

  g_return_val_if_fail (MPG_IS_PROCESS (self), -1);

  g_mutex_lock (&priv->mutex);
  if (priv->closed)
    fd = -1;
  else if (priv->pidfd >= 0)
    fd = priv->pidfd;
  else
    fd = priv->result_fd;   /* no pidfds: the channel ends when the child does */
  g_mutex_unlock (&priv->mutex);

  return fd;
}

/**
 * mpg_process_run:
 * @self: a process
 * @error: return location for a #GError
 *
 * Runs the process's code in the calling process: the target by default,
 * or what a subclass's [vfunc@Mpg.Process.run] does. The child calls this
 * after [method@Mpg.Process.start]; calling it directly is what Python's
 * `Process.run()` is.
 *
 * Returns: (transfer full) (nullable): the result, or %NULL for none or on
 *   error
 *
 * Since: 0.1
 */
GVariant *
mpg_process_run (MpgProcess  *self,
                 GError     **error)
{
  GVariant *result;

  g_return_val_if_fail (MPG_IS_PROCESS (self), NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  result = MPG_PROCESS_GET_CLASS (self)->run (self, error);
  if (result != NULL)
    g_variant_take_ref (result);

  return result;
}

/* What a child inherited from its ancestors and must keep, unused: their
 * children and current process objects. Kept reachable, so that a leak
 * checker does not count them as lost. */
static GPtrArray *inherited;

/* The message of a target that returned nothing, the common case: made
 * once, before the first fork, so that children only read it. */
static GBytes *
no_result_frame (void)
{
  static GBytes *frame;

  if (g_once_init_enter (&frame))
    {
      GBytes *made = _mpg_wire_encode (g_variant_new ("(bmv(sis))", TRUE, NULL, "", 0, ""),
                                       NULL);

      g_once_init_leave (&frame, made);
    }

  return frame;
}

/* Work that every forked child would repeat, on pages it would then copy,
 * done once in the parent instead: the no-result message, GLib's one-time
 * set-up of main contexts, the key of the thread-default context stack
 * that child_run() pushes on, and GLib's record of this thread, which
 * pushing a context looks up. (Not the global default context, which a
 * child must not share with its parent: a child makes its own.) */
static void
prepare_fork_children (void)
{
  static gsize prepared;

  if (g_once_init_enter (&prepared))
    {
      no_result_frame ();
      g_main_context_unref (g_main_context_new ());
      g_main_context_get_thread_default ();
      g_thread_self ();
      g_once_init_leave (&prepared, 1);
    }

  child_debug = debug_enabled ();
}

/* Runs the process's code in the child and sends the outcome to the
 * parent. Returns the exit code. */
static int
child_run (MpgProcess *self,
           int         result_fd)
{
  MpgProcessPrivate *priv = mpg_process_get_instance_private (self);
  g_autoptr(GMainContext) context = g_main_context_new ();
  g_autoptr(GVariant) result = NULL;
  g_autoptr(GBytes) frame = NULL;
  g_autoptr(GError) error = NULL;
  const guint8 *data = NULL;
  gsize len = 0;

  g_main_context_push_thread_default (context);

  result = mpg_process_run (self, &error);

  /* A result that cannot be framed fails the process like an error. */
  if (error == NULL && result == NULL)
    data = g_bytes_get_data (no_result_frame (), &len);
  else if (error == NULL)
    frame = _mpg_wire_encode (g_variant_new ("(bmv(sis))", TRUE, result, "", 0, ""), &error);

  if (error != NULL)
    {
      frame = _mpg_wire_encode (g_variant_new ("(bmv@(sis))", FALSE, NULL,
                                               _mpg_wire_error_to_variant (error)), NULL);
      /* As multiprocessing prints the traceback of a failed run(). */
      fprintf (stderr, "Process %s:\n%s (%s, %d)\n", priv->name, error->message,
               g_quark_to_string (error->domain), error->code);
    }

  if (frame != NULL)
    data = g_bytes_get_data (frame, &len);
  _mpg_write_all (result_fd, data, len);

  g_main_context_pop_thread_default (context);

  return error != NULL ? 1 : 0;
}

/* Makes @self this process's current process, in a child just forked. */
static void
enter_child (MpgProcess *self)
{
  MpgProcessPrivate *priv = mpg_process_get_instance_private (self);

  /* Locks other threads of the parent held at fork time stay locked in
   * the child, which has only this thread: start them afresh. */
  g_mutex_init (&G_LOCK_NAME (globals));
  g_mutex_init (&priv->mutex);

  /* This process is now the child. The parent's children are not ours:
   * their fds were closed by the fork set-up; keep their objects rather
   * than finalise them with fd numbers that may be reused. */
  G_LOCK (globals);
  if (inherited == NULL)
    inherited = g_ptr_array_new ();
  g_ptr_array_add (inherited, g_steal_pointer (&children));
  g_ptr_array_add (inherited, current_identity);
  g_ptr_array_add (inherited, parent_process);
  g_free (parent_name);
  if (current_process != NULL)
    {
      MpgProcessPrivate *cpriv = mpg_process_get_instance_private (current_process);

      parent_name = g_strdup (cpriv->name);
    }
  else
    parent_name = g_strdup ("MainProcess");
  g_ptr_array_add (inherited, current_process);
  process_counter = 1;
  current_identity = g_strdup (priv->identity);
  current_process = self;
  parent_process = NULL;
  G_UNLOCK (globals);

  /* The pidfd now, while the parent is known to be alive (a pidfd is
   * close-on-exec from the start); the parent's object when asked for.
   * One inherited from our parent's own start is not ours to keep. */
  if (parent_pidfd >= 0)
    close (parent_pidfd);
  parent_pid = getppid ();
  parent_pidfd = _mpg_pidfd_open (parent_pid);

  priv->state = STATE_RUNNING;
  priv->pid = getpid ();
  priv->owner_pid = 0;
  priv->pidfd = -1;
  priv->result_fd = -1;
  exiting = FALSE;
  atexit_registered = TRUE; /* this process leaves through exit_function() */

  child_process_debug ("%s (pid %d) started", priv->name, priv->pid);
}

/* Runs in the child, after _mpg_fork()'s set-up. */
static void
child_main (gpointer data)
{
  MpgProcess *self = data;
  MpgProcessPrivate *priv = mpg_process_get_instance_private (self);
  int result_fd = priv->result_fd;
  int exitcode;

  enter_child (self);

  exitcode = child_run (self, result_fd);

  /* result_fd stays open until _exit(): where there are no pidfds, its end
   * of file tells the parent that this process is exiting. */
  exit_function ();

  child_process_debug ("%s (pid %d) exiting with code %d", priv->name, priv->pid, exitcode);

  fflush (NULL);
  _exit (exitcode);
}

#define SPAWN_BOOTSTRAP_TYPE "(ssbmvis)"

/* Starts the child with the spawn start method: a new program, told over
 * a socket what to run (task name, process name, daemon flag, args and
 * their fds). Called with the lock held. */
static gboolean
spawn_child (MpgProcess     *self,
             MpgStartMethod  method,
             int             result_fd,
             pid_t          *out_pid,
             int            *out_pidfd,
             GError        **error)
{
  MpgProcessPrivate *priv = mpg_process_get_instance_private (self);
  int boot[2];
  int child_fds[2];
  gboolean ok;

  if (!_mpg_fork_socketpair (boot, error))
    return FALSE;

  child_fds[0] = result_fd;
  child_fds[1] = boot[1];
  if (method == MPG_START_METHOD_FORKSERVER)
    ok = _mpg_forkserver_start ("process", child_fds, 2, out_pid, out_pidfd, &priv->status_fd,
                                error);
  else
    ok = _mpg_spawn ("process", child_fds, 2, out_pid, out_pidfd, error);
  _mpg_fork_close_fd (&boot[1]);

  if (ok)
    {
      GVariant *bootstrap = g_variant_new (SPAWN_BOOTSTRAP_TYPE,
                                           priv->target_name != NULL ? priv->target_name : "",
                                           priv->name, priv->daemon, priv->args,
                                           (gint32) getpid (), priv->identity);

      /* The child reads it at once; a child that died first is seen by
       * join(), as any other failure of the child. */
      if (!_mpg_channel_send (boot[0], bootstrap, priv->fd_list, MPG_WIRE_DEFAULT_MAX,
                              g_get_monotonic_time () + 10 * G_USEC_PER_SEC, NULL, error))
        {
          g_prefix_error (error, "Could not start the spawned process: ");
          if (*out_pidfd >= 0)
            _mpg_pidfd_send_signal (*out_pidfd, SIGKILL);
          else
            kill (*out_pid, SIGKILL);
          if (priv->status_fd >= 0)
            {
              _mpg_forkserver_read_status (priv->status_fd, -1);
              _mpg_fork_close_fd (&priv->status_fd);
            }
          else
            while (waitpid (*out_pid, NULL, 0) < 0 && errno == EINTR)
              ;
          _mpg_fork_close_fd (out_pidfd);
          ok = FALSE;
        }
    }
  _mpg_fork_close_fd (&boot[0]);

  return ok;
}

typedef struct
{
  char *name;
  GUnixFDList *fd_list;
} SpawnedTask;

static void _mpg_process_enter_worker_with_identity (const char *name,
                                                     gboolean    daemon,
                                                     const char *identity);

static GVariant *
spawned_target (GVariant  *args,
                gpointer   user_data,
                GError   **error)
{
  SpawnedTask *task = user_data;

  if (task->name[0] == '\0')
    return NULL;   /* a process without a target */

  return _mpg_dispatch (task->name, args, task->fd_list, error);
}

/* In a spawned program: receive the bootstrap, become the child process,
 * run the task by name, send the result and exit. */
void
_mpg_process_spawned_main (void)
{
  g_autoptr(GVariant) bootstrap = NULL;
  g_autoptr(GError) error = NULL;
  GUnixFDList *fd_list = NULL;
  SpawnedTask *task;
  const char *name;
  gboolean daemon;
  GVariant *args;
  gint32 requester_pid;
  const char *identity;
  MpgProcess *self;
  MpgProcessPrivate *priv;
  int exitcode;

  bootstrap = _mpg_channel_receive (4, MPG_WIRE_DEFAULT_MAX, -1, NULL, &fd_list, &error);
  close (4);
  if (bootstrap == NULL || !g_variant_is_of_type (bootstrap, G_VARIANT_TYPE (SPAWN_BOOTSTRAP_TYPE)))
    {
      g_printerr ("libmpg: a spawned process got no valid start message: %s\n",
                  error != NULL ? error->message : "wrong type");
      _exit (1);
    }

  task = g_new0 (SpawnedTask, 1);
  g_variant_get (bootstrap, "(s&sbmvi&s)", &task->name, &name, &daemon, &args, &requester_pid,
                 &identity);
  task->fd_list = fd_list;

  _mpg_process_enter_worker_with_identity (name, daemon, identity);
  self = current_process;
  priv = mpg_process_get_instance_private (self);

  /* A forkserver child's parent is the process that asked for it, as in
   * multiprocessing, not the server. */
  if (parent_pid != requester_pid)
    {
      if (parent_pidfd >= 0)
        close (parent_pidfd);
      parent_pid = requester_pid;
      parent_pidfd = _mpg_pidfd_open (requester_pid);
    }
  priv->args = args;
  priv->target = spawned_target;
  priv->target_data = task;

  exitcode = child_run (self, 3);
  exit_function ();
  fflush (NULL);
  _exit (exitcode);
}

/**
 * mpg_process_set_target_name:
 * @self: a process
 * @name: (nullable): the name a spawned child finds the target by
 *
 * Names the target for the spawn start method, where the child is a new
 * program that finds its task by name through the task dispatcher (see
 * [func@Mpg.set_task_dispatcher]): a C symbol by default, a Python
 * `module:qualname` in Python. Without a name, the spawn start method
 * uses the exported symbol of the C target, if it has one.
 *
 * Since: 0.1
 */
void
mpg_process_set_target_name (MpgProcess *self,
                             const char *name)
{
  MpgProcessPrivate *priv = mpg_process_get_instance_private (self);

  g_return_if_fail (MPG_IS_PROCESS (self));

  g_mutex_lock (&priv->mutex);
  g_free (priv->target_name);
  priv->target_name = g_strdup (name);
  g_mutex_unlock (&priv->mutex);
}

/**
 * mpg_process_set_fd_list:
 * @self: a process
 * @fd_list: (nullable): the fds that handles in the args refer to
 *
 * Sets the fds that go with [property@Mpg.Process:args], for arguments
 * that carry queues, connections or other fds as handles (see
 * [method@Mpg.Queue.to_handle]). With the fork start method the child
 * inherits every fd anyway; with spawn they are sent to the child, whose
 * target gets them as its user data. The process lets go of the list once
 * the child is started.
 *
 * Since: 0.1
 */
void
mpg_process_set_fd_list (MpgProcess  *self,
                         GUnixFDList *fd_list)
{
  MpgProcessPrivate *priv = mpg_process_get_instance_private (self);

  g_return_if_fail (MPG_IS_PROCESS (self));
  g_return_if_fail (fd_list == NULL || G_IS_UNIX_FD_LIST (fd_list));

  g_mutex_lock (&priv->mutex);
  g_set_object (&priv->fd_list, fd_list);
  g_mutex_unlock (&priv->mutex);
}

/**
 * mpg_process_start:
 * @self: a process
 * @error: return location for a #GError
 *
 * Starts the child process, which runs [vfunc@Mpg.Process.run].
 *
 * A process can be started once. Starting a closed process, a process
 * that was started already, or a process from within a daemon process, is
 * an error (%MPG_ERROR_CLOSED, %MPG_ERROR_INVALID_STATE). A failed fork is
 * %G_SPAWN_ERROR_FORK; a program that cannot be spawned, a #GError of
 * the %G_IO_ERROR or %G_SPAWN_ERROR domain.
 *
 * As Python's `start()`, this also reaps children of this process that
 * ended and that nobody joined.
 *
 * Returns: %TRUE if the child was started
 *
 * Since: 0.1
 */
gboolean
mpg_process_start (MpgProcess  *self,
                   GError     **error)
{
  MpgProcessPrivate *priv = mpg_process_get_instance_private (self);
  MpgStartMethod method;
  int fds[2];
  pid_t pid;
  int pidfd;

  g_return_val_if_fail (MPG_IS_PROCESS (self), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  _mpg_check_not_a_lost_worker ();

  g_mutex_lock (&priv->mutex);

  if (!check_not_started (self, error))
    goto failed;

  if (mpg_process_get_daemon (mpg_current_process ()))
    {
      g_set_error_literal (error, MPG_ERROR, MPG_ERROR_INVALID_STATE,
                           "Daemon processes are not allowed to have children");
      goto failed;
    }

  method = priv->start_method;
  if (method == MPG_START_METHOD_DEFAULT)
    method = mpg_get_start_method ();
  if (method != MPG_START_METHOD_FORK && priv->target_name == NULL && priv->target != NULL &&
      (priv->target_name = _mpg_task_name_for (priv->target, priv->target_data, error)) == NULL)
    goto failed;

  g_mutex_unlock (&priv->mutex);
  cleanup_children ();
  g_mutex_lock (&priv->mutex);

  if (method == MPG_START_METHOD_FORK)
    prepare_fork_children ();

  if (!_mpg_fork_pipe (fds, error))
    goto failed;

  priv->result_fd = fds[1];
  if (method != MPG_START_METHOD_FORK)
    {
      if (!spawn_child (self, method, fds[1], &pid, &pidfd, error))
        {
          priv->result_fd = -1;
          _mpg_fork_close_fd (&fds[0]);
          _mpg_fork_close_fd (&fds[1]);
          goto failed;
        }
    }
  else if (!_mpg_fork (fds[1], child_main, self, &pid, &pidfd, error))
    {
      priv->result_fd = -1;
      _mpg_fork_close_fd (&fds[0]);
      _mpg_fork_close_fd (&fds[1]);
      goto failed;
    }
  _mpg_fork_close_fd (&fds[1]);
  g_unix_set_fd_nonblocking (fds[0], TRUE, NULL);

  /* The child has its copies of the args' fds now (inherited or sent):
   * holding ours would keep, e.g., a pipe's end open behind the caller. */
  g_clear_object (&priv->fd_list);

  priv->pid = pid;
  priv->pidfd = pidfd;
  priv->owner_pid = getpid ();
  priv->result_fd = fds[0];
  priv->result_buf = g_byte_array_new ();
  priv->state = STATE_RUNNING;

  G_LOCK (globals);
  if (children == NULL)
    children = g_ptr_array_new_with_free_func (g_object_unref);
  g_ptr_array_add (children, g_object_ref (self));
  if (!atexit_registered)
    {
      atexit_registered = TRUE;
      atexit (exit_function);
    }
  G_UNLOCK (globals);

  process_debug ("%s forked as pid %d", priv->name, pid);

  g_mutex_unlock (&priv->mutex);

  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_PID]);

  return TRUE;

failed:
  g_mutex_unlock (&priv->mutex);
  return FALSE;
}

static gboolean
pidfd_is_readable (int pidfd)
{
  GPollFD pfd = { pidfd, G_IO_IN, 0 };

  return g_poll (&pfd, 1, 0) == 1;
}

/**
 * mpg_process_is_alive:
 * @self: a process
 *
 * Whether the process is running: it was started and has not ended. This
 * reaps the child if it has ended. The main process is always alive.
 *
 * Returns: %TRUE if the process is running
 *
 * Since: 0.1
 */
gboolean
mpg_process_is_alive (MpgProcess *self)
{
  MpgProcessPrivate *priv = mpg_process_get_instance_private (self);
  gboolean alive;

  g_return_val_if_fail (MPG_IS_PROCESS (self), FALSE);

  if (self == current_process)
    return TRUE;

  if (priv->kind == KIND_PARENT)
    {
      if (priv->pidfd >= 0)
        return !pidfd_is_readable (priv->pidfd);
      /* Without a pidfd: we are re-parented when the parent dies. */
      return getppid () == priv->pid;
    }

  mpg_process_poll (self);

  g_mutex_lock (&priv->mutex);
  alive = priv->state == STATE_RUNNING;
  g_mutex_unlock (&priv->mutex);

  return alive;
}

typedef struct
{
  GSource *pid_source;
  GSource *result_source;
  GSource *timeout_source;
  GSource *cancel_source;
  gboolean counted;
} JoinData;

static void
clear_source (GSource **source)
{
  if (*source != NULL)
    {
      g_source_destroy (*source);
      g_clear_pointer (source, g_source_unref);
    }
}

static void
join_data_clear_sources (JoinData *jd)
{
  clear_source (&jd->pid_source);
  clear_source (&jd->result_source);
  clear_source (&jd->timeout_source);
  clear_source (&jd->cancel_source);
}

static void
join_data_free (gpointer data)
{
  JoinData *jd = data;

  join_data_clear_sources (jd);
  g_free (jd);
}

/* Stops watching, at once: the task may outlive this call, and its sources
 * must neither fire again nor outlive the fds they watch. */
static void
join_complete (GTask  *task,
               GError *error)
{
  MpgProcess *self = g_task_get_source_object (task);
  MpgProcessPrivate *priv = mpg_process_get_instance_private (self);
  JoinData *jd = g_task_get_task_data (task);

  join_data_clear_sources (jd);

  if (jd->counted)
    {
      jd->counted = FALSE;
      g_mutex_lock (&priv->mutex);
      if (--priv->n_waiters == 0 && priv->state == STATE_EXITED)
        release_channel_locked (self);
      g_mutex_unlock (&priv->mutex);
    }

  if (error != NULL)
    g_task_return_error (task, error);
  else
    g_task_return_boolean (task, TRUE);
  g_object_unref (task);
}

static gboolean
join_check_exit (GTask *task)
{
  MpgProcess *self = g_task_get_source_object (task);
  MpgProcessPrivate *priv = mpg_process_get_instance_private (self);
  gboolean reaped;
  gboolean exited;

  if (priv->kind == KIND_PARENT)
    {
      join_complete (task, NULL);
      return G_SOURCE_REMOVE;
    }

  g_mutex_lock (&priv->mutex);
  reaped = poll_locked (self);
  exited = priv->state == STATE_EXITED;
  g_mutex_unlock (&priv->mutex);

  if (reaped)
    {
      notify (self, properties[PROP_EXITCODE]);
      forget_child (self);
    }

  /* A pidfd is readable once the process is a zombie, so the status is
   * there; but another waiter in another thread may have reaped it first. */
  if (exited)
    {
      join_complete (task, NULL);
      return G_SOURCE_REMOVE;
    }

  return G_SOURCE_CONTINUE;
}

static gboolean
join_on_exit (int          fd,
              GIOCondition condition,
              gpointer     user_data)
{
  return join_check_exit (user_data);
}

static gboolean
join_on_result (int          fd,
                GIOCondition condition,
                gpointer     user_data)
{
  GTask *task = user_data;
  MpgProcess *self = g_task_get_source_object (task);
  MpgProcessPrivate *priv = mpg_process_get_instance_private (self);
  gboolean more;

  g_mutex_lock (&priv->mutex);
  drain_result_locked (self);
  more = !priv->result_eof;
  g_mutex_unlock (&priv->mutex);

  /* Without a pidfd, the end of file is the exit event. */
  if (!more && priv->pidfd < 0)
    {
      join_check_exit (task);
      return G_SOURCE_REMOVE;
    }

  return more ? G_SOURCE_CONTINUE : G_SOURCE_REMOVE;
}

static gboolean
join_on_timeout (gpointer user_data)
{
  GTask *task = user_data;
  MpgProcess *self = g_task_get_source_object (task);

  join_complete (task, g_error_new (MPG_ERROR, MPG_ERROR_TIMEOUT,
                                    "Timed out waiting for %s to end",
                                    mpg_process_get_name (self)));
  return G_SOURCE_REMOVE;
}

static gboolean
join_on_cancelled (GCancellable *cancellable,
                   gpointer      user_data)
{
  GTask *task = user_data;
  GError *error = NULL;

  g_cancellable_set_error_if_cancelled (cancellable, &error);
  join_complete (task, error);
  return G_SOURCE_REMOVE;
}

static gboolean
check_joinable_locked (MpgProcess  *self,
                       GError     **error)
{
  MpgProcessPrivate *priv = mpg_process_get_instance_private (self);

  if (priv->closed)
    g_set_error (error, MPG_ERROR, MPG_ERROR_CLOSED, "%s is closed", priv->name);
  else if (self == current_process || priv->kind == KIND_MAIN)
    g_set_error_literal (error, MPG_ERROR, MPG_ERROR_INVALID_STATE,
                         "A process cannot join itself; only a child or the parent can be joined");
  else if (priv->state == STATE_NEW)
    g_set_error (error, MPG_ERROR, MPG_ERROR_INVALID_STATE,
                 "%s cannot be joined: it has not been started", priv->name);
  else if (priv->kind == KIND_CHILD && priv->owner_pid != getpid ())
    g_set_error (error, MPG_ERROR, MPG_ERROR_INVALID_STATE,
                 "%s is not a child of this process", priv->name);
  else if (priv->kind == KIND_PARENT && priv->pidfd < 0)
    g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                         "Joining the parent process needs pidfds (Linux 5.3 or later)");
  else
    return TRUE;

  return FALSE;
}

static void
join_async_internal (MpgProcess          *self,
                     gint                 timeout_msec,
                     GCancellable        *cancellable,
                     GAsyncReadyCallback  callback,
                     gpointer             user_data)
{
  MpgProcessPrivate *priv = mpg_process_get_instance_private (self);
  GTask *task;
  JoinData *jd;
  GError *error = NULL;

  task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (task, mpg_process_join_async);
  g_task_set_name (task, "[mpg] join process");
  jd = g_new0 (JoinData, 1);
  g_task_set_task_data (task, jd, join_data_free);

  g_mutex_lock (&priv->mutex);

  check_joinable_locked (self, &error);

  if (error != NULL || priv->state == STATE_EXITED)
    {
      g_mutex_unlock (&priv->mutex);
      if (error != NULL)
        g_task_return_error (task, error);
      else
        g_task_return_boolean (task, TRUE);
      g_object_unref (task);
      return;
    }

  if (priv->kind == KIND_CHILD)
    {
      priv->n_waiters++;
      jd->counted = TRUE;
      if (priv->result_fd >= 0 && !priv->result_eof)
        jd->result_source = g_unix_fd_source_new (priv->result_fd, G_IO_IN | G_IO_HUP | G_IO_ERR);
    }
  if (priv->pidfd >= 0)
    jd->pid_source = g_unix_fd_source_new (priv->pidfd, G_IO_IN);

  g_mutex_unlock (&priv->mutex);

  if (jd->result_source != NULL)
    {
      g_source_set_static_name (jd->result_source, "[mpg] process result");
      g_task_attach_source (task, jd->result_source, G_SOURCE_FUNC (join_on_result));
    }

  if (jd->pid_source != NULL)
    {
      g_source_set_static_name (jd->pid_source, "[mpg] process exit");
      g_task_attach_source (task, jd->pid_source, G_SOURCE_FUNC (join_on_exit));
    }
  else if (jd->result_source == NULL)
    {
      /* No pidfd and the channel already ended: the child is exiting. */
      GSource *idle = g_idle_source_new ();

      g_source_set_static_name (idle, "[mpg] process exit");
      g_task_attach_source (task, idle, G_SOURCE_FUNC (join_check_exit));
      jd->pid_source = idle;
    }

  if (timeout_msec >= 0)
    {
      jd->timeout_source = g_timeout_source_new (timeout_msec);
      g_source_set_static_name (jd->timeout_source, "[mpg] join timeout");
      g_task_attach_source (task, jd->timeout_source, join_on_timeout);
    }

  if (cancellable != NULL)
    {
      jd->cancel_source = g_cancellable_source_new (cancellable);
      g_source_set_static_name (jd->cancel_source, "[mpg] join cancelled");
      g_task_attach_source (task, jd->cancel_source, G_SOURCE_FUNC (join_on_cancelled));
    }
}

/**
 * mpg_process_join_async:
 * @self: a process
 * @cancellable: (nullable): a #GCancellable
 * @callback: (scope async): called when the process has ended
 * @user_data: data for @callback
 *
 * Waits, without blocking, for the process to end, and reaps it: a child
 * watch (on a pidfd) in the thread-default main context of the caller,
 * where @callback is called. Call [method@Mpg.Process.join_finish] there.
 *
 * Cancelling @cancellable stops the wait, not the child: it fails the join
 * with %G_IO_ERROR_CANCELLED. Several joins may wait at once, from any
 * threads. The parent process (from [func@Mpg.parent_process]) can be
 * joined too: the join completes when it ends.
 *
 * Since: 0.1
 */
void
mpg_process_join_async (MpgProcess          *self,
                        GCancellable        *cancellable,
                        GAsyncReadyCallback  callback,
                        gpointer             user_data)
{
  g_return_if_fail (MPG_IS_PROCESS (self));
  g_return_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable));

  join_async_internal (self, -1, cancellable, callback, user_data);
}

/**
 * mpg_process_join_finish:
 * @self: a process
 * @result: the result passed to the callback
 * @error: return location for a #GError
 *
 * Completes [method@Mpg.Process.join_async].
 *
 * Returns: %TRUE if the process has ended; %FALSE with @error set if the
 *   join failed or was cancelled
 *
 * Since: 0.1
 */
gboolean
mpg_process_join_finish (MpgProcess    *self,
                         GAsyncResult  *result,
                         GError       **error)
{
  g_return_val_if_fail (MPG_IS_PROCESS (self), FALSE);
  g_return_val_if_fail (g_task_is_valid (result, self), FALSE);
  g_return_val_if_fail (g_task_get_source_tag (G_TASK (result)) == mpg_process_join_async, FALSE);

  return g_task_propagate_boolean (G_TASK (result), error);
}

/* The wait of mpg_process_join(): on the child's pidfd (and its result
 * pipe, so that a large result never blocks it) directly, rather than
 * through a private main context and a GTask: this is on the path of every
 * start and join, and of every exit. Same checks and outcomes as the
 * asynchronous join. */
static gboolean
join_blocking (MpgProcess    *self,
               gint           timeout_msec,
               GCancellable  *cancellable,
               GError       **error)
{
  MpgProcessPrivate *priv = mpg_process_get_instance_private (self);
  gint64 deadline;
  GPollFD pfds[3];
  GPollFD cancel_pfd;
  gboolean have_cancel_fd = FALSE;
  gboolean counted = FALSE;
  gboolean ret = FALSE;

  g_mutex_lock (&priv->mutex);
  if (!check_joinable_locked (self, error))
    {
      g_mutex_unlock (&priv->mutex);
      return FALSE;
    }
  /* While we wait unlocked, the channel must stay open: another thread's
   * reap releases it only when no one is waiting. */
  if (priv->kind == KIND_CHILD)
    {
      priv->n_waiters++;
      counted = TRUE;
    }
  g_mutex_unlock (&priv->mutex);

  deadline = timeout_msec < 0 ? -1 : g_get_monotonic_time () + (gint64) timeout_msec * 1000;
  if (cancellable != NULL)
    have_cancel_fd = g_cancellable_make_pollfd (cancellable, &cancel_pfd);

  for (;;)
    {
      gboolean reaped = FALSE;
      gboolean exited;
      guint n = 0;
      gint timeout;

      if (g_cancellable_set_error_if_cancelled (cancellable, error))
        break;

      g_mutex_lock (&priv->mutex);
      if (priv->kind == KIND_PARENT)
        exited = pidfd_is_readable (priv->pidfd);
      else
        {
          reaped = poll_locked (self);
          exited = priv->state == STATE_EXITED;
        }
      if (!exited)
        {
          if (priv->pidfd >= 0)
            pfds[n++] = (GPollFD) { priv->pidfd, G_IO_IN, 0 };
          if (priv->kind == KIND_CHILD && priv->result_fd >= 0 && !priv->result_eof)
            pfds[n++] = (GPollFD) { priv->result_fd, G_IO_IN, 0 };
        }
      g_mutex_unlock (&priv->mutex);

      if (reaped)
        {
          notify (self, properties[PROP_EXITCODE]);
          forget_child (self);
        }
      if (exited)
        {
          ret = TRUE;
          break;
        }

      if (deadline < 0)
        timeout = -1;
      else
        {
          gint64 now = g_get_monotonic_time ();

          if (now >= deadline)
            {
              g_set_error (error, MPG_ERROR, MPG_ERROR_TIMEOUT,
                           "Timed out waiting for %s to end", mpg_process_get_name (self));
              break;
            }
          timeout = (gint) MIN ((deadline - now + 999) / 1000, G_MAXINT);
        }

      /* Without a pidfd, the end of the result pipe says that the child is
       * exiting and poll_locked() waits for it; should that leave nothing
       * to wait on (a fork server that did not send the exit code yet),
       * look again shortly rather than sleep for ever. */
      if (n == 0 && (timeout < 0 || timeout > 10))
        timeout = 10;

      if (have_cancel_fd)
        pfds[n++] = cancel_pfd;

      if (g_poll (pfds, n, timeout) < 0 && errno != EINTR)
        {
          int saved_errno = errno;

          g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved_errno),
                       "poll() failed: %s", g_strerror (saved_errno));
          break;
        }
    }

  if (have_cancel_fd)
    g_cancellable_release_fd (cancellable);

  if (counted)
    {
      g_mutex_lock (&priv->mutex);
      if (--priv->n_waiters == 0 && priv->state == STATE_EXITED)
        release_channel_locked (self);
      g_mutex_unlock (&priv->mutex);
    }

  return ret;
}

/**
 * mpg_process_join:
 * @self: a process
 * @timeout_msec: how long to wait at most, in milliseconds, or -1 for ever
 * @cancellable: (nullable): a #GCancellable
 * @error: return location for a #GError
 *
 * Waits for the process to end and reaps it, as Python's `join(timeout)`.
 * Blocks the calling thread (from any thread, with or without a running
 * main loop: it waits on the child's file descriptors and dispatches
 * nothing meanwhile).
 *
 * Unlike Python's `join()`, which returns silently on timeout, this fails
 * with %MPG_ERROR_TIMEOUT when @timeout_msec expires, and with
 * %G_IO_ERROR_CANCELLED when @cancellable is cancelled; the child keeps
 * running in both cases. Joining a process that was not started, or the
 * calling process itself, is %MPG_ERROR_INVALID_STATE.
 *
 * Returns: %TRUE if the process has ended
 *
 * Since: 0.1
 */
gboolean
mpg_process_join (MpgProcess    *self,
                  gint           timeout_msec,
                  GCancellable  *cancellable,
                  GError       **error)
{
  g_return_val_if_fail (MPG_IS_PROCESS (self), FALSE);
  g_return_val_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  return join_blocking (self, timeout_msec, cancellable, error);
}

static gboolean
send_signal (MpgProcess  *self,
             int          sig,
             GError     **error)
{
  MpgProcessPrivate *priv = mpg_process_get_instance_private (self);
  gboolean ret = TRUE;

  g_mutex_lock (&priv->mutex);

  if (priv->closed)
    {
      g_set_error (error, MPG_ERROR, MPG_ERROR_CLOSED, "%s is closed", priv->name);
      ret = FALSE;
    }
  else if (priv->kind != KIND_CHILD || self == current_process || priv->owner_pid != getpid ())
    {
      g_set_error (error, MPG_ERROR, MPG_ERROR_INVALID_STATE,
                   "Only a child of this process can be sent a signal");
      ret = FALSE;
    }
  else if (priv->state == STATE_NEW)
    {
      g_set_error (error, MPG_ERROR, MPG_ERROR_INVALID_STATE,
                   "%s has not been started", priv->name);
      ret = FALSE;
    }
  else if (priv->state == STATE_RUNNING)
    {
      /* A pidfd names this child even if its pid was already reused. A
       * child that already exited (ESRCH) needs no signal. */
      g_debug ("Sending signal %d to %s (pid %d)", sig, priv->name, priv->pid);
      if ((priv->pidfd >= 0 ? _mpg_pidfd_send_signal (priv->pidfd, sig)
                            : kill (priv->pid, sig)) < 0 && errno != ESRCH)
        {
          int saved_errno = errno;

          g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved_errno),
                       "Could not send signal %d to %s: %s",
                       sig, priv->name, g_strerror (saved_errno));
          ret = FALSE;
        }
    }

  g_mutex_unlock (&priv->mutex);

  return ret;
}

/**
 * mpg_process_terminate:
 * @self: a process
 * @error: return location for a #GError
 *
 * Sends `SIGTERM` to the child, as Python's `terminate()`. Its exit code
 * becomes `-15` unless it handles the signal. Does nothing if the child has
 * ended already. Unlike Python, where they are orphaned, the child's own
 * children are then killed too, as every child dies with its parent.
 *
 * Returns: %TRUE on success; %FALSE if the process was not started or is
 *   closed
 *
 * Since: 0.1
 */
gboolean
mpg_process_terminate (MpgProcess  *self,
                       GError     **error)
{
  g_return_val_if_fail (MPG_IS_PROCESS (self), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  return send_signal (self, SIGTERM, error);
}

/**
 * mpg_process_kill:
 * @self: a process
 * @error: return location for a #GError
 *
 * Sends `SIGKILL` to the child, as Python's `kill()`; its exit code becomes
 * `-9`. Does nothing if the child has ended already.
 *
 * Returns: %TRUE on success; %FALSE if the process was not started or is
 *   closed
 *
 * Since: 0.1
 */
gboolean
mpg_process_kill (MpgProcess  *self,
                  GError     **error)
{
  g_return_val_if_fail (MPG_IS_PROCESS (self), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  return send_signal (self, SIGKILL, error);
}

/**
 * mpg_process_close:
 * @self: a process
 * @error: return location for a #GError
 *
 * Releases the resources of a process that has ended (or was never
 * started), as Python's `close()`. Afterwards most calls on it fail with
 * %MPG_ERROR_CLOSED. Closing twice is harmless.
 *
 * Returns: %TRUE on success; %FALSE with %MPG_ERROR_INVALID_STATE if the
 *   child is still running
 *
 * Since: 0.1
 */
gboolean
mpg_process_close (MpgProcess  *self,
                   GError     **error)
{
  MpgProcessPrivate *priv = mpg_process_get_instance_private (self);

  g_return_val_if_fail (MPG_IS_PROCESS (self), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  mpg_process_poll (self);

  g_mutex_lock (&priv->mutex);

  if (priv->state == STATE_RUNNING)
    {
      g_mutex_unlock (&priv->mutex);
      g_set_error (error, MPG_ERROR, MPG_ERROR_INVALID_STATE,
                   "Cannot close %s while it is still running; join or terminate it first",
                   priv->name);
      return FALSE;
    }

  if (!priv->closed && priv->n_waiters == 0)
    {
      priv->closed = TRUE;
      release_channel_locked (self);
      if (priv->owner_pid == getpid ())
        _mpg_fork_close_fd (&priv->pidfd);
      priv->pidfd = -1;
    }
  else
    priv->closed = TRUE;

  g_mutex_unlock (&priv->mutex);

  return TRUE;
}

/**
 * mpg_process_dup_result:
 * @self: a process
 * @error: return location for a #GError
 *
 * Gets what the child's [vfunc@Mpg.Process.run] returned, once the process
 * has ended (after a join, or once [method@Mpg.Process.is_alive] returned
 * %FALSE).
 *
 * If the target failed, this fails with the target's error: the same
 * domain, code and message, or %MPG_ERROR_REMOTE if this process does not
 * know the domain. If the child died before it returned (killed by a
 * signal, or it called `exit()`), this fails with %MPG_ERROR_WORKER_DIED.
 * Calling it before the process has ended is %MPG_ERROR_INVALID_STATE.
 *
 * Returns: (transfer full) (nullable): the result, or %NULL if the target
 *   returned none or on error
 *
 * Since: 0.1
 */
GVariant *
mpg_process_dup_result (MpgProcess  *self,
                        GError     **error)
{
  MpgProcessPrivate *priv = mpg_process_get_instance_private (self);
  GVariant *result = NULL;

  g_return_val_if_fail (MPG_IS_PROCESS (self), NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  mpg_process_poll (self);

  g_mutex_lock (&priv->mutex);
  if (priv->closed)
    g_set_error (error, MPG_ERROR, MPG_ERROR_CLOSED, "%s is closed", priv->name);
  else if (priv->state != STATE_EXITED)
    g_set_error (error, MPG_ERROR, MPG_ERROR_INVALID_STATE,
                 "%s has not ended yet", priv->name);
  else if (priv->result_error != NULL)
    g_propagate_error (error, g_error_copy (priv->result_error));
  else if (priv->result != NULL)
    result = g_variant_ref (priv->result);
  g_mutex_unlock (&priv->mutex);

  return result;
}

/**
 * mpg_current_process:
 *
 * The process object of the calling process, as Python's
 * `multiprocessing.current_process()`: in a child, the #MpgProcess it runs;
 * in the main process, an object named `MainProcess`.
 *
 * Returns: (transfer none): the current process
 *
 * Since: 0.1
 */
MpgProcess *
mpg_current_process (void)
{
  MpgProcess *ret;

  G_LOCK (globals);
  if (current_process == NULL)
    {
      G_UNLOCK (globals);

      constructing_kind = KIND_MAIN;
      ret = g_object_new (MPG_TYPE_PROCESS, "name", "MainProcess", NULL);
      constructing_kind = KIND_CHILD;

      G_LOCK (globals);
      if (current_process == NULL)
        {
          MpgProcessPrivate *priv = mpg_process_get_instance_private (ret);

          priv->state = STATE_RUNNING;
          current_process = ret;
          current_identity = g_strdup ("");
        }
      else
        g_object_unref (ret);
    }
  ret = current_process;
  G_UNLOCK (globals);

  return ret;
}

/**
 * mpg_parent_process:
 *
 * The parent of the calling process, as Python's
 * `multiprocessing.parent_process()`: %NULL in the main process; in a child,
 * an object with the parent's name and pid, whose
 * [method@Mpg.Process.is_alive] and [method@Mpg.Process.join] tell when the
 * parent ends.
 *
 * Returns: (transfer none) (nullable): the parent process, or %NULL
 *
 * Since: 0.1
 */
MpgProcess *
mpg_parent_process (void)
{
  MpgProcess *ret;
  MpgProcess *made;

  G_LOCK (globals);
  ret = parent_process;
  if (ret != NULL || parent_pid == 0)
    {
      G_UNLOCK (globals);
      return ret;
    }
  G_UNLOCK (globals);

  constructing_kind = KIND_PARENT;
  made = g_object_new (MPG_TYPE_PROCESS, "name", parent_name, NULL);
  constructing_kind = KIND_CHILD;

  G_LOCK (globals);
  if (parent_process == NULL)
    {
      MpgProcessPrivate *ppriv = mpg_process_get_instance_private (made);

      /* The object owns the pidfd from now on. */
      ppriv->pid = parent_pid;
      ppriv->pidfd = parent_pidfd;
      ppriv->state = STATE_RUNNING;
      parent_pidfd = -1;
      parent_process = g_steal_pointer (&made);
    }
  ret = parent_process;
  G_UNLOCK (globals);

  g_clear_object (&made);
  return ret;
}

/**
 * mpg_active_children:
 *
 * The children of the calling process that are still running, as Python's
 * `multiprocessing.active_children()`. As there, this reaps the children
 * that have ended.
 *
 * Returns: (transfer full) (element-type MpgProcess): the running children
 *
 * Since: 0.1
 */
GList *
mpg_active_children (void)
{
  g_autoptr(GPtrArray) snapshot = NULL;
  GList *list = NULL;

  cleanup_children ();

  snapshot = snapshot_children ();
  for (guint i = snapshot->len; i > 0; i--)
    {
      MpgProcess *child = g_ptr_array_index (snapshot, i - 1);

      if (mpg_process_is_alive (child))
        list = g_list_prepend (list, g_object_ref (child));
    }

  return list;
}

/* At the exit of a process (the parent's atexit(), or the end of a child),
 * as multiprocessing's _exit_function: terminate the daemon children, then
 * wait for all the children, then for the queues' buffers to be sent. */
static void
exit_function (void)
{
  /* Kept, never freed: dropping the last reference to a process here
   * would run its user_data_free, which may belong to a language runtime
   * that is already finalised when C's atexit() handlers run. */
  static GPtrArray *snapshot;

  g_atomic_int_set (&exiting, TRUE);

  snapshot = snapshot_children ();
  for (guint i = 0; i < snapshot->len; i++)
    {
      MpgProcess *child = g_ptr_array_index (snapshot, i);

      if (mpg_process_get_daemon (child) && mpg_process_is_alive (child))
        mpg_process_terminate (child, NULL);
    }

  for (guint i = 0; i < snapshot->len; i++)
    {
      MpgProcess *child = g_ptr_array_index (snapshot, i);

      g_debug ("At exit: waiting for %s (pid %d)",
               mpg_process_get_name (child), mpg_process_get_pid (child));
      mpg_process_join (child, -1, NULL, NULL);
    }

  /* Last, as multiprocessing joins its queues' feeder threads: they have
   * been sending meanwhile, to the children too. */
  _mpg_queue_flush_all ();
}

/*
 * _mpg_process_enter_worker:
 * @name: the worker's name, e.g. "ForkPoolWorker-1"
 *
 * For a child forked with _mpg_fork() that is not an #MpgProcess of its
 * parent (a pool worker): makes mpg_current_process(), mpg_parent_process()
 * and mpg_active_children() describe this process, as in a child of
 * mpg_process_start(). The worker leaves through _mpg_process_exit_worker().
 */
static void
_mpg_process_enter_worker_with_identity (const char *name,
                                         gboolean    daemon,
                                         const char *identity)
{
  MpgProcess *self;
  MpgProcessPrivate *priv;

  g_mutex_init (&G_LOCK_NAME (globals));
  constructing_kind = KIND_CHILD;
  self = g_object_new (MPG_TYPE_PROCESS, NULL);
  priv = mpg_process_get_instance_private (self);
  g_free (priv->name);
  priv->name = g_strdup (name);
  priv->daemon = daemon;
  /* A spawned child continues its parent's numbering, as multiprocessing's
   * do: its own children are "Process-<identity>:N". */
  if (identity != NULL && identity[0] != '\0')
    {
      g_free (priv->identity);
      priv->identity = g_strdup (identity);
    }
  enter_child (self);
}

void
_mpg_process_enter_worker (const char *name,
                           gboolean    daemon)
{
  _mpg_process_enter_worker_with_identity (name, daemon, NULL);
}

/*
 * _mpg_process_exit_worker:
 * @exitcode: the exit code
 *
 * Leaves a pool worker as a process's child leaves: children it started
 * are joined (daemon ones terminated), stdio flushed, then _exit().
 */
void
_mpg_process_exit_worker (int exitcode)
{
  exit_function ();
  fflush (NULL);
  _exit (exitcode);
}
