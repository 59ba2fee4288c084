/* mpg-types.h
 *
 * Copyright 2026 The libmpg authors
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#if !defined(MPG_INSIDE) && !defined(MPG_COMPILATION)
# error "Only <libmpg.h> can be included directly."
#endif

#include <glib.h>

#include "mpg-version-macros.h"

G_BEGIN_DECLS

/**
 * MpgTaskFunc:
 * @arg: (nullable): the argument the task was given, or %NULL for none
 * @user_data: (closure): the data passed along with the function
 * @error: return location for a #GError
 *
 * A task: the code that runs in another process.
 *
 * It receives the argument given when the task was created (a process's
 * `args`) and returns a result, which travels back to the parent. A floating
 * reference is sunk. Returning %NULL without setting @error means "no
 * result", as a Python target that returns `None`.
 *
 * A task that fails sets @error and returns %NULL. The parent receives the
 * same error: same domain, code and message (see [error@Mpg.Error]).
 *
 * Returns: (transfer full) (nullable): the result, or %NULL
 *
 * Since: 0.1
 */
typedef GVariant *(*MpgTaskFunc) (GVariant  *arg,
                                  gpointer   user_data,
                                  GError   **error);

/**
 * MpgStartMethod:
 * @MPG_START_METHOD_DEFAULT: use the process-wide default at start time,
 *   see [func@Mpg.get_start_method].
 * @MPG_START_METHOD_FORK: `fork()` the calling process. The child is a copy
 *   of the parent, so any function and data work as a task. Unsafe in
 *   multi-threaded programs whose other threads hold locks at fork time.
 * @MPG_START_METHOD_SPAWN: execute a fresh worker program that finds the task
 *   by name (see [func@Mpg.init]).
 * @MPG_START_METHOD_FORKSERVER: ask a single-threaded server, started
 *   early, to fork the worker; tasks are found by name, as with spawn.
 *
 * How a child process is started; Python's `multiprocessing` start methods.
 *
 * Since: 0.1
 */
typedef enum
{
  MPG_START_METHOD_DEFAULT,
  MPG_START_METHOD_FORK,
  MPG_START_METHOD_SPAWN,
  MPG_START_METHOD_FORKSERVER,
} MpgStartMethod;

/**
 * MpgPoolBackend:
 * @MPG_POOL_BACKEND_AUTO: the environment variable `MPG_POOL_BACKEND`
 *   (`local`, `mpi` or `mpi-spawn`) if it is set; else
 *   %MPG_POOL_BACKEND_MPI when the program was started by an MPI launcher
 *   (`mpirun`, `mpiexec`, `srun`) with more than one rank, and
 *   %MPG_POOL_BACKEND_LOCAL otherwise.
 * @MPG_POOL_BACKEND_LOCAL: workers are processes of this machine, started
 *   with the pool's [property@Mpg.Pool:start-method].
 * @MPG_POOL_BACKEND_MPI: workers run on the other ranks of the MPI job
 *   the program was started in (`mpirun -n 17 ./app`); the program is
 *   rank 0. Tasks are found by name, as with spawn.
 * @MPG_POOL_BACKEND_MPI_SPAWN: workers run on ranks that the pool starts
 *   with `MPI_Comm_spawn()`, from a program started with or without an MPI
 *   launcher. Tasks are found by name, as with spawn.
 *
 * Where the workers of an [class@Mpg.Pool] run. The MPI backends need
 * libmpg's MPI module (built when MPI is found); see the "Running on a
 * cluster" guide.
 *
 * Since: 0.1
 */
typedef enum
{
  MPG_POOL_BACKEND_AUTO,
  MPG_POOL_BACKEND_LOCAL,
  MPG_POOL_BACKEND_MPI,
  MPG_POOL_BACKEND_MPI_SPAWN,
} MpgPoolBackend;

/**
 * MpgForkFunc:
 * @user_data: (closure): the data given to [func@Mpg.set_fork_func]
 *
 * A function that forks the calling process, with the semantics of POSIX
 * `fork()`: it returns the child's process ID in the parent, 0 in the child,
 * and a negative value when no child could be created.
 *
 * Language bindings whose runtime must know about forks install one with
 * [func@Mpg.set_fork_func]: Python's is `os.fork`.
 *
 * Returns: the child's process ID, 0 in the child, or a negative value
 *
 * Since: 0.1
 */
typedef gint (*MpgForkFunc) (gpointer user_data);

G_END_DECLS
