/* mpg-mpi-relay.c: the program MPI pools spawn on their relay ranks
 *
 * Copyright 2026 The libmpg authors
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <libmpg.h>

/* MPI_Comm_spawn() starts this program for a pool of the mpi-spawn
 * backend. mpg_worker_main() sees MPG_WORKER, relays the pool's workers
 * until the root says quit, and exits: it does not return. */
int
main (void)
{
  g_setenv ("MPG_WORKER", "mpi-relay", TRUE);
  mpg_worker_main ();
  return 1;
}
