/* mpg-spawn.c
 *
 * Copyright 2026 The libmpg authors
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mpg-error.h"
#include "mpg-fork-private.h"
#include "mpg-spawn.h"
#include "mpg-remote-private.h"
#include "mpg-spawn-private.h"

/**
 * mpg_init:
 * @argc: (inout) (optional): the address of `main()`'s argc, or %NULL
 * @argv: (inout) (array length=argc) (optional): the address of `main()`'s
 *   argv, or %NULL
 *
 * Call this first in `main()` of a program that starts processes or pools
 * with the spawn start method, as Python programs guard their main code
 * with `if __name__ == '__main__'` (and call `freeze_support()`).
 *
 * A spawned worker is the program itself, executed again: in it,
 * mpg_init() does not return; it runs the tasks the parent sends, found
 * by name, and exits.
 *
 * Under an MPI launcher (`mpirun -n N ./app`), mpg_init() does not return
 * on the ranks other than 0 either: they start the workers of rank 0's
 * pools and relay their tasks, and exit when rank 0 does (see
 * [enum@Mpg.PoolBackend]). In any other process it does nothing.
 *
 * Task functions run by name must be exported: from a shared library, or
 * from the program linked with `-rdynamic` (meson: `export_dynamic: true`).
 *
 * Since: 0.1
 */
void
mpg_init (int    *argc,
          char ***argv)
{
  mpg_worker_main ();
}

/**
 * mpg_worker_main:
 *
 * In a program started as a spawned worker, or as an MPI rank other than
 * 0 (see [func@Mpg.init]), runs the worker or the rank's relay and exits;
 * elsewhere returns at once. [func@Mpg.init] calls it; language bindings
 * whose workers start from a script of their own call it there, after
 * [func@Mpg.set_task_dispatcher].
 *
 * Since: 0.1
 */
void
mpg_worker_main (void)
{
  const char *kind = g_getenv (MPG_WORKER_ENV);

  if (kind == NULL)
    {
      /* Under an MPI launcher, ranks other than 0 relay for rank 0's
       * pools; rank 0 goes on, and tells them when to end. */
      if (_mpg_remote_is_relay ())
        _mpg_remote_relay_main ();
      _mpg_remote_root_init ();
      return;
    }

  if (g_str_equal (kind, "process"))
    {
      g_unsetenv (MPG_WORKER_ENV);
      _mpg_process_spawned_main ();
    }
  if (g_str_equal (kind, "pool"))
    {
      g_unsetenv (MPG_WORKER_ENV);
      _mpg_pool_spawned_main ();
    }
  if (g_str_equal (kind, "mpi-relay"))
    {
      g_unsetenv (MPG_WORKER_ENV);
      _mpg_remote_relay_main ();
    }
  if (g_str_equal (kind, "forkserver"))
    {
      g_unsetenv (MPG_WORKER_ENV);
      _mpg_forkserver_main ();
    }

  g_printerr ("libmpg: unknown worker kind '%s' in %s\n", kind, MPG_WORKER_ENV);
  _exit (127);
}

/*
 * _mpg_check_not_a_lost_worker:
 *
 * A spawned worker whose program did not call mpg_init() first runs the
 * program's main() instead of its task; were it to start processes, it
 * would spawn copies of itself for ever. Stop it, and say why.
 */
void
_mpg_check_not_a_lost_worker (void)
{
  if (g_getenv (MPG_WORKER_ENV) == NULL)
    return;

  g_printerr ("libmpg: this program was started as a spawned worker, but its main() did not "
              "call mpg_init() before using libmpg: see the documentation of the spawn start "
              "method. Exiting.\n");
  _exit (1);
}

/* Spawn command and dispatcher: process-wide, set once by bindings. */
G_LOCK_DEFINE_STATIC (spawn);
static char **spawn_command;
static MpgDispatchFunc dispatcher;
static gpointer dispatcher_data;
static GDestroyNotify dispatcher_destroy;

/**
 * mpg_set_spawn_command:
 * @argv: (array zero-terminated=1) (nullable): the program and arguments
 *   of a spawned worker, or %NULL for the default
 *
 * Sets what a spawned worker runs. The default runs this program again
 * with the same arguments (`/proc/self/exe`), for C programs that call
 * [func@Mpg.init]. Bindings set their own: e.g. the Python interpreter
 * with a script that imports the module and calls
 * [func@Mpg.worker_main]. `argv[0]` must be a path. The worker inherits
 * the environment (plus a variable that tells it it is a worker), stdin,
 * stdout and stderr, and no other fd.
 *
 * Since: 0.1
 */
void
mpg_set_spawn_command (const char * const *argv)
{
  char **copy = argv != NULL ? g_strdupv ((char **) argv) : NULL;

  G_LOCK (spawn);
  g_strfreev (spawn_command);
  spawn_command = copy;
  G_UNLOCK (spawn);
}

/**
 * mpg_set_task_dispatcher:
 * @dispatcher: (nullable) (scope notified) (closure user_data) (destroy destroy):
 *   the function that runs tasks by name in a spawned worker, or %NULL
 *   for the default
 * @user_data: data for @dispatcher
 * @destroy: (nullable): frees @user_data when the dispatcher is replaced
 *
 * Sets how a spawned worker runs a task it is given by name. The default
 * looks the name up as a C symbol (`dlsym()`) of type [callback@Mpg.TaskFunc]
 * and calls it with the argument and, as its user data, the
 * #GUnixFDList of the argument's handles (or %NULL).
 *
 * The dispatcher runs with a new thread-default main context pushed, as
 * tasks do: a runtime that needs the global default context to make
 * progress (JavaScript's `import()`, promises) must push that one while it
 * runs.
 *
 * Since: 0.1
 */
void
mpg_set_task_dispatcher (MpgDispatchFunc dispatcher_func,
                         gpointer        user_data,
                         GDestroyNotify  destroy)
{
  GDestroyNotify old_destroy;
  gpointer old_data;

  G_LOCK (spawn);
  old_destroy = dispatcher_destroy;
  old_data = dispatcher_data;
  dispatcher = dispatcher_func;
  dispatcher_data = user_data;
  dispatcher_destroy = destroy;
  G_UNLOCK (spawn);

  if (old_destroy != NULL)
    old_destroy (old_data);
}

GVariant *
_mpg_dispatch (const char   *name,
               GVariant     *arg,
               GUnixFDList  *fd_list,
               GError      **error)
{
  MpgDispatchFunc func;
  gpointer data;
  MpgTaskFunc task;

  G_LOCK (spawn);
  func = dispatcher;
  data = dispatcher_data;
  G_UNLOCK (spawn);

  if (func != NULL)
    return func (name, arg, fd_list, data, error);

  task = (MpgTaskFunc) dlsym (RTLD_DEFAULT, name);
  if (task == NULL)
    {
      g_set_error (error, MPG_ERROR, MPG_ERROR_UNKNOWN_TASK,
                   "No exported function '%s' in the worker (link the program with "
                   "-rdynamic, or put the function in a shared library)", name);
      return NULL;
    }
  return task (arg, fd_list, error);
}

/*
 * _mpg_task_name_for:
 *
 * The name a spawned worker finds @func by: its exported symbol. Fails for
 * a function without one (static, or a program not linked with -rdynamic)
 * and for user data, which cannot travel to another program.
 */
char *
_mpg_task_name_for (MpgTaskFunc   func,
                    gpointer      user_data,
                    GError      **error)
{
  Dl_info info;

  if (user_data != NULL)
    {
      g_set_error_literal (error, MPG_ERROR, MPG_ERROR_UNKNOWN_TASK,
                           "The spawn and forkserver start methods run a task by name in "
                           "another program: a task with user data cannot be sent (pass the "
                           "data as the task's argument)");
      return NULL;
    }

  if (dladdr ((gpointer) func, &info) == 0 || info.dli_sname == NULL ||
      info.dli_saddr != (gpointer) func)
    {
      g_set_error (error, MPG_ERROR, MPG_ERROR_UNKNOWN_TASK,
                   "The task function %p has no exported name, which the spawn and "
                   "forkserver start methods need: make it non-static, and link the "
                   "program with -rdynamic (meson: export_dynamic: true)", (gpointer) func);
      return NULL;
    }

  return g_strdup (info.dli_sname);
}

static char **
default_command (GError **error)
{
  g_autofree char *exe = NULL;
  g_autofree char *cmdline = NULL;
  gsize length;
  GPtrArray *argv;

  exe = g_file_read_link ("/proc/self/exe", error);
  if (exe == NULL || !g_file_get_contents ("/proc/self/cmdline", &cmdline, &length, error))
    return NULL;

  argv = g_ptr_array_new ();
  g_ptr_array_add (argv, g_steal_pointer (&exe));
  /* cmdline is NUL-separated; skip argv[0]. */
  for (gsize i = strlen (cmdline) + 1; i < length; i += strlen (cmdline + i) + 1)
    g_ptr_array_add (argv, g_strdup (cmdline + i));
  g_ptr_array_add (argv, NULL);

  return (char **) g_ptr_array_free (argv, FALSE);
}

/*
 * _mpg_spawn_dup_command:
 *
 * Returns: what a spawned worker runs (see mpg_set_spawn_command()), with
 * argv[0] a full path: the command MPI ranks run for remote workers.
 */
char **
_mpg_spawn_dup_command (GError **error)
{
  char **argv;

  G_LOCK (spawn);
  argv = g_strdupv (spawn_command);
  G_UNLOCK (spawn);

  if (argv == NULL)
    argv = default_command (error);
  return argv;
}

/*
 * _mpg_spawn:
 * @kind: "process" or "pool"
 * @fds: the fds the worker gets as 3, 4, ...
 *
 * Starts a spawned worker: the spawn command, with the environment and
 * MPG_WORKER=@kind.
 */
gboolean
_mpg_spawn (const char  *kind,
            const int   *fds,
            guint        n_fds,
            pid_t       *out_pid,
            int         *out_pidfd,
            GError     **error)
{
  g_auto(GStrv) argv = NULL;
  g_auto(GStrv) envp = NULL;

  _mpg_check_not_a_lost_worker ();

  argv = _mpg_spawn_dup_command (error);
  if (argv == NULL)
    return FALSE;

  envp = g_get_environ ();
  envp = g_environ_setenv (envp, MPG_WORKER_ENV, kind, TRUE);

  return _mpg_fork_exec (argv, envp, fds, n_fds, out_pid, out_pidfd, error);
}
