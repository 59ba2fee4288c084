/* bench-common.h: helpers shared by the C benchmark programs.
 *
 * Copyright 2026 The libmpg authors
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Spins until this thread has used MS milliseconds of CPU: a task of a
 * fixed cost whatever the load of the machine. */
static inline void
bench_burn_cpu (unsigned ms)
{
  struct timespec t0, t;
  volatile unsigned long x = 0;

  clock_gettime (CLOCK_THREAD_CPUTIME_ID, &t0);
  for (;;)
    {
      for (int i = 0; i < 10000; i++)
        x += i;
      clock_gettime (CLOCK_THREAD_CPUTIME_ID, &t);
      if ((t.tv_sec - t0.tv_sec) * 1000.0 + (t.tv_nsec - t0.tv_nsec) / 1e6 >= ms)
        break;
    }
}

static inline int
bench_cmp_double (const void *a, const void *b)
{
  double x = *(const double *) a, y = *(const double *) b;

  return x < y ? -1 : x > y;
}

/* The delays (ms) of a 1 ms timer beyond its period: worst, p99, mean. */
static inline void
bench_print_delays (double *d, unsigned n, double seconds, double finish_ms)
{
  double worst = 0, p99 = 0, sum = 0;

  if (n > 0)
    {
      qsort (d, n, sizeof *d, bench_cmp_double);
      worst = d[n - 1];
      p99 = d[(unsigned) ((n - 1) * 0.99)];
      for (unsigned i = 0; i < n; i++)
        sum += d[i];
    }
  printf ("{\"seconds\": %.6f, \"worst_ms\": %.3f, \"p99_ms\": %.3f, \"mean_ms\": %.3f, \"ticks\": %u, "
          "\"finish_ms\": %.3f}\n",
          seconds, worst, p99, n ? sum / n : 0.0, n, finish_ms);
}

/* Rss and Pss (KiB) of a process, from /proc/PID/smaps_rollup. */
static inline void
bench_read_memory (int pid, long *rss, long *pss)
{
  char path[64], line[256];
  FILE *f;

  *rss = *pss = -1;
  if (pid > 0)
    snprintf (path, sizeof path, "/proc/%d/smaps_rollup", pid);
  else
    snprintf (path, sizeof path, "/proc/self/smaps_rollup");
  f = fopen (path, "r");
  if (f == NULL)
    return;
  while (fgets (line, sizeof line, f))
    {
      if (strncmp (line, "Rss:", 4) == 0)
        *rss = atol (line + 4);
      else if (strncmp (line, "Pss:", 4) == 0)
        *pss = atol (line + 4);
    }
  fclose (f);
}

static inline void
bench_print_memory (int worker_pid)
{
  long prss, ppss, wrss, wpss;

  bench_read_memory (0, &prss, &ppss);
  bench_read_memory (worker_pid, &wrss, &wpss);
  printf ("{\"parent_rss_kib\": %ld, \"parent_pss_kib\": %ld, "
          "\"worker_rss_kib\": %ld, \"worker_pss_kib\": %ld}\n",
          prss, ppss, wrss, wpss);
}
