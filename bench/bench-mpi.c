/* bench-mpi.c: start time and per-task overhead of a pool, local or MPI
 *
 * Copyright 2026 The libmpg authors
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 *   bench-mpi N [spawn]      a pool of 2 workers (backend from the
 *                            environment: MPG_POOL_BACKEND, or MPI under
 *                            mpirun) maps a trivial task over N items,
 *                            chunksize 1, after a warm-up map
 *
 * Prints one JSON object: the backend, the time from the pool's creation
 * to its first result (start_s), and the time per task of the timed map
 * (task_us). bench/mpi runs it next to mpi4py.futures and multiprocessing.
 */

#include <stdio.h>
#include <stdlib.h>

#include <libmpg.h>

G_MODULE_EXPORT GVariant *bench_square (GVariant *arg, gpointer user_data, GError **error);

GVariant *
bench_square (GVariant  *arg,
              gpointer   user_data,
              GError   **error)
{
  gint32 x = g_variant_get_int32 (arg);

  return g_variant_new_int32 (x * x);
}

static GVariant *
range (gint32 n)
{
  GVariantBuilder builder;

  g_variant_builder_init (&builder, G_VARIANT_TYPE ("ai"));
  for (gint32 i = 0; i < n; i++)
    g_variant_builder_add (&builder, "i", i);
  return g_variant_builder_end (&builder);
}

int
main (int    argc,
      char **argv)
{
  g_autoptr(MpgPool) pool = NULL;
  g_autoptr(GVariant) warm = NULL;
  g_autoptr(GVariant) results = NULL;
  g_autoptr(GError) error = NULL;
  gint64 t0, t1, t2, t3;
  GEnumClass *backends;
  gint32 n;

  mpg_init (&argc, &argv);
  n = argc > 1 ? atoi (argv[1]) : 2000;

  t0 = g_get_monotonic_time ();
  pool = g_object_new (MPG_TYPE_POOL, "processes", 2,
                       "start-method", argc > 2 && g_str_equal (argv[2], "spawn")
                       ? MPG_START_METHOD_SPAWN : MPG_START_METHOD_FORK,
                       NULL);
  /* Found by name by spawned and remote workers, forked ones have it. */
  warm = mpg_pool_map (pool, mpg_pool_add_named_function (pool, "bench_square"), range (2), 1,
                       NULL, &error);
  t1 = g_get_monotonic_time ();
  if (warm == NULL)
    g_error ("warm-up: %s", error->message);

  t2 = g_get_monotonic_time ();
  results = mpg_pool_map (pool, mpg_pool_add_named_function (pool, "bench_square"), range (n), 1,
                          NULL, &error);
  t3 = g_get_monotonic_time ();
  if (results == NULL || g_variant_n_children (results) != (gsize) n)
    g_error ("map: %s", error != NULL ? error->message : "wrong length");

  backends = g_type_class_ref (MPG_TYPE_POOL_BACKEND);
  printf ("{\"backend\": \"%s\", \"start_s\": %.4f, \"task_us\": %.2f, \"n\": %d}\n",
          g_enum_get_value (backends, mpg_pool_get_backend (pool))->value_nick,
          (t1 - t0) / 1e6, (double) (t3 - t2) / n, n);
  g_type_class_unref (backends);

  mpg_pool_terminate (pool);
  mpg_pool_join (pool, -1, NULL);
  return 0;
}
