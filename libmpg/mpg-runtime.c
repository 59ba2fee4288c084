/* mpg-runtime.c
 *
 * Copyright 2026 The libmpg authors
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include <sched.h>
#include <unistd.h>

#include "mpg-fork-private.h"
#include "mpg-runtime.h"

static gint default_start_method = MPG_START_METHOD_FORK;

/**
 * mpg_cpu_count:
 *
 * The number of CPUs this process may run on: those of its CPU affinity
 * mask, as Python's `os.process_cpu_count()` counts them (and not all the
 * CPUs of the machine, which `multiprocessing.cpu_count()` returns).
 *
 * This is the default number of workers of a pool.
 *
 * Returns: the number of usable CPUs, at least 1
 *
 * Since: 0.1
 */
guint
mpg_cpu_count (void)
{
  cpu_set_t set;
  long n;

  if (sched_getaffinity (0, sizeof set, &set) == 0)
    {
      n = CPU_COUNT (&set);
      if (n > 0)
        return (guint) n;
    }

  n = sysconf (_SC_NPROCESSORS_ONLN);
  return n > 0 ? (guint) n : 1;
}

/**
 * mpg_get_start_method:
 *
 * The process-wide default start method, used by processes whose
 * [property@Mpg.Process:start-method] is %MPG_START_METHOD_DEFAULT.
 *
 * It is %MPG_START_METHOD_FORK unless [func@Mpg.set_start_method] changed it.
 *
 * Returns: the default start method (never %MPG_START_METHOD_DEFAULT)
 *
 * Since: 0.1
 */
MpgStartMethod
mpg_get_start_method (void)
{
  return (MpgStartMethod) g_atomic_int_get (&default_start_method);
}

/**
 * mpg_set_start_method:
 * @method: the new default start method
 *
 * Sets the process-wide default start method, as Python's
 * `multiprocessing.set_start_method()`. %MPG_START_METHOD_DEFAULT restores
 * the built-in default, %MPG_START_METHOD_FORK.
 *
 * Processes that are already running are not affected.
 *
 * Since: 0.1
 */
void
mpg_set_start_method (MpgStartMethod method)
{
  g_return_if_fail (method >= MPG_START_METHOD_DEFAULT && method <= MPG_START_METHOD_FORKSERVER);

  if (method == MPG_START_METHOD_DEFAULT)
    method = MPG_START_METHOD_FORK;

  g_atomic_int_set (&default_start_method, method);
}

/**
 * mpg_set_fork_func:
 * @fork_func: (nullable) (scope notified) (closure user_data) (destroy destroy):
 *   the function that forks, or %NULL for the C library's `fork()`
 * @user_data: data for @fork_func
 * @destroy: (nullable): frees @user_data when @fork_func is replaced
 *
 * Sets the function the fork start method calls to create a child process.
 *
 * Language runtimes that must see their process fork, so that their own
 * locks and threads are made consistent in the child, set their fork
 * function here. Python's is `os.fork`: a Python callable run in a child
 * that C's `fork()` created can deadlock on the interpreter lock, and the
 * PyGObject override of this library installs `os.fork` when it is
 * imported. C and Vala programs need not call this.
 *
 * The function is called with an internal lock held: it must not start
 * processes itself.
 *
 * Since: 0.1
 */
void
mpg_set_fork_func (MpgForkFunc    fork_func,
                   gpointer       user_data,
                   GDestroyNotify destroy)
{
  _mpg_fork_set_func (fork_func, user_data, destroy);
}
