/* test-mpi-pool.c: MpgPool with workers on MPI ranks
 *
 * Copyright 2026 The libmpg authors
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Run as `mpirun -n 3 test-mpi-pool` (the MPI backend: ranks 1 and 2 run
 * the workers), or without a launcher with MPG_POOL_BACKEND=mpi-spawn
 * (the pool spawns its ranks). With MPG_TEST_NETNS=1 (tests/mpi/netns-hosts.sh),
 * each worker rank must run in a network namespace of its own.
 *
 * Every task reports where it ran: a result computed by a local process
 * fails the tests, so a silent fallback to local workers cannot pass.
 */

#define _GNU_SOURCE

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <gio/gio.h>
#include <libmpg.h>

#define WATCHDOG_SEC 90

/* ---- tasks, found by name on the ranks ---- */

G_MODULE_EXPORT GVariant *mpi_where (GVariant *arg, gpointer user_data, GError **error);
G_MODULE_EXPORT GVariant *mpi_square (GVariant *arg, gpointer user_data, GError **error);
G_MODULE_EXPORT GVariant *mpi_add (GVariant *arg, gpointer user_data, GError **error);
G_MODULE_EXPORT GVariant *mpi_fail (GVariant *arg, gpointer user_data, GError **error);
G_MODULE_EXPORT GVariant *mpi_crash (GVariant *arg, gpointer user_data, GError **error);
G_MODULE_EXPORT GVariant *mpi_sleep (GVariant *arg, gpointer user_data, GError **error);
G_MODULE_EXPORT GVariant *mpi_kill_rank (GVariant *arg, gpointer user_data, GError **error);

static char *
netns_of_self (void)
{
  char *link = g_file_read_link ("/proc/self/ns/net", NULL);

  return link != NULL ? link : g_strdup ("?");
}

/* (square, rank, network namespace, host, worker name) */
G_MODULE_EXPORT GVariant *
mpi_where (GVariant  *arg,
           gpointer   user_data,
           GError   **error)
{
  gint32 x = g_variant_get_int32 (arg);
  const char *rank = g_getenv ("MPG_MPI_RANK");
  g_autofree char *netns = netns_of_self ();

  g_usleep (10 * 1000);
  return g_variant_new ("(iisss)", x * x, rank != NULL ? atoi (rank) : -1, netns,
                        g_get_host_name (), mpg_process_get_name (mpg_current_process ()));
}

G_MODULE_EXPORT GVariant *
mpi_square (GVariant  *arg,
            gpointer   user_data,
            GError   **error)
{
  gint32 x = g_variant_get_int32 (arg);

  return g_variant_new_int32 (x * x);
}

G_MODULE_EXPORT GVariant *
mpi_add (GVariant  *arg,
         gpointer   user_data,
         GError   **error)
{
  gint32 a, b;

  g_variant_get (arg, "(ii)", &a, &b);
  return g_variant_new_int32 (a + b);
}

G_MODULE_EXPORT GVariant *
mpi_fail (GVariant  *arg,
          gpointer   user_data,
          GError   **error)
{
  gint32 x = g_variant_get_int32 (arg);

  if (x == 7)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND, "no luck with %d on rank %s", x,
                   g_getenv ("MPG_MPI_RANK"));
      return NULL;
    }
  return g_variant_new_int32 (x);
}

G_MODULE_EXPORT GVariant *
mpi_crash (GVariant  *arg,
           gpointer   user_data,
           GError   **error)
{
  if (g_variant_get_int32 (arg) == 3)
    abort ();
  return g_variant_new_int32 (g_variant_get_int32 (arg));
}

G_MODULE_EXPORT GVariant *
mpi_sleep (GVariant  *arg,
           gpointer   user_data,
           GError   **error)
{
  g_usleep ((gulong) g_variant_get_int32 (arg) * 1000);
  return g_variant_new_int32 (g_variant_get_int32 (arg));
}

/* Kills the rank that runs it: a worker's parent is its rank's relay. */
G_MODULE_EXPORT GVariant *
mpi_kill_rank (GVariant  *arg,
               gpointer   user_data,
               GError   **error)
{
  gint32 x = g_variant_get_int32 (arg);

  if (x == 5)
    kill (getppid (), SIGKILL);
  g_usleep (200 * 1000);
  return g_variant_new_int32 (x);
}

/* ---- helpers ---- */

static MpgPool *shared_pool;
static char *root_netns;

static GVariant *
range (gint32 from,
       gint32 to)
{
  GVariantBuilder builder;

  g_variant_builder_init (&builder, G_VARIANT_TYPE ("ai"));
  for (gint32 i = from; i < to; i++)
    g_variant_builder_add (&builder, "i", i);
  return g_variant_builder_end (&builder);
}

static void
watchdog (int sig)
{
  static const char message[] = "Bail out! a test of test-mpi-pool hung\n";

  (void) !write (STDOUT_FILENO, message, sizeof message - 1);
  _exit (1);
}

/* Checks where each (square, rank, netns, host, name) result ran. */
static void
check_remote_results (GVariant *results,
                      gint32    from)
{
  g_autoptr(GHashTable) ranks = g_hash_table_new (NULL, NULL);
  g_autoptr(GHashTable) namespaces = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  gboolean netns = g_getenv ("MPG_TEST_NETNS") != NULL;

  g_assert_cmpstr (g_variant_get_type_string (results), ==, "a(iisss)");
  for (gsize i = 0; i < g_variant_n_children (results); i++)
    {
      gint32 square, rank;
      const char *ns, *host, *name;

      g_variant_get_child (results, i, "(ii&s&s&s)", &square, &rank, &ns, &host, &name);
      g_assert_cmpint (square, ==, (from + (gint32) i) * (from + (gint32) i));
      /* Computed on a rank other than 0: never by a local process. */
      g_assert_cmpint (rank, >=, 1);
      g_assert_true (g_str_has_prefix (name, "MpiPoolWorker-"));
      g_hash_table_add (ranks, GINT_TO_POINTER (rank));
      if (netns)
        g_assert_cmpstr (ns, !=, root_netns);
      g_hash_table_add (namespaces, g_strdup (ns));
    }
  if (g_test_verbose ())
    g_printerr ("# results from %u ranks, %u network namespaces\n",
                g_hash_table_size (ranks), g_hash_table_size (namespaces));
  /* Every worker got some of the work. */
  g_assert_cmpuint (g_hash_table_size (ranks), ==, mpg_pool_get_processes (shared_pool));
  if (netns)
    g_assert_cmpuint (g_hash_table_size (namespaces), ==, 2);
}

/* ---- tests ---- */

static void
test_backend (void)
{
  const char *expected = g_getenv ("MPG_POOL_BACKEND");
  MpgPoolBackend backend = mpg_pool_get_backend (shared_pool);

  if (expected != NULL && g_str_equal (expected, "mpi-spawn"))
    g_assert_cmpint (backend, ==, MPG_POOL_BACKEND_MPI_SPAWN);
  else
    g_assert_cmpint (backend, ==, MPG_POOL_BACKEND_MPI);
  g_assert_cmpuint (mpg_pool_get_processes (shared_pool), ==, 2);
}

static void
test_map (void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GVariant) results = NULL;
  g_autoptr(GVariant) local_results = NULL;
  g_autoptr(MpgPool) local = NULL;
  guint where = mpg_pool_add_named_function (shared_pool, "mpi_where");
  guint square = mpg_pool_add_named_function (shared_pool, "mpi_square");
  guint local_square;

  results = mpg_pool_map (shared_pool, where, range (1, 25), 1, NULL, &error);
  g_assert_no_error (error);
  check_remote_results (results, 1);

  /* The same map, remote and local, gives the same value. */
  g_clear_pointer (&results, g_variant_unref);
  results = mpg_pool_map (shared_pool, square, range (0, 1000), 0, NULL, &error);
  g_assert_no_error (error);
  local = g_object_new (MPG_TYPE_POOL, "processes", 2, "backend", MPG_POOL_BACKEND_LOCAL, NULL);
  local_square = mpg_pool_add_function (local, mpi_square, NULL, NULL);
  local_results = mpg_pool_map (local, local_square, range (0, 1000), 0, NULL, &error);
  g_assert_no_error (error);
  g_assert_true (g_variant_equal (results, local_results));
  mpg_pool_terminate (local);
}

typedef struct
{
  GMainLoop *loop;
  GVariant *results;
  GError *error;
  guint ticks;
  guint progress;
} AsyncState;

static gboolean
tick_cb (gpointer data)
{
  AsyncState *state = data;

  state->ticks++;
  return G_SOURCE_CONTINUE;
}

static void
progress_cb (MpgPool      *pool,
             GAsyncResult *call,
             guint         done,
             guint         total,
             gpointer      data)
{
  AsyncState *state = data;

  state->progress = done;
}

static void
map_done_cb (GObject      *source,
             GAsyncResult *result,
             gpointer      data)
{
  AsyncState *state = data;

  state->results = mpg_pool_map_finish (MPG_POOL (source), result, &state->error);
  g_main_loop_quit (state->loop);
}

static void
test_map_async (void)
{
  AsyncState state = { 0 };
  guint where = mpg_pool_add_named_function (shared_pool, "mpi_where");
  gint64 start = g_get_monotonic_time ();
  gulong handler;
  guint ticker;
  double seconds;

  state.loop = g_main_loop_new (NULL, FALSE);
  ticker = g_timeout_add (5, tick_cb, &state);
  handler = g_signal_connect (shared_pool, "progress", G_CALLBACK (progress_cb), &state);
  mpg_pool_map_async (shared_pool, where, range (1, 41), 1, NULL, map_done_cb, &state);
  g_main_loop_run (state.loop);
  seconds = (g_get_monotonic_time () - start) / 1e6;
  g_source_remove (ticker);
  g_signal_handler_disconnect (shared_pool, handler);

  g_assert_no_error (state.error);
  check_remote_results (state.results, 1);
  g_assert_cmpuint (state.progress, ==, 40);
  /* The main loop kept running: a 5 ms timer fired through the map. */
  if (g_test_verbose ())
    g_printerr ("# %u ticks of 5 ms in %.3f s\n", state.ticks, seconds);
  g_assert_cmpuint (state.ticks, >=, (guint) (seconds * 1000 / 5 / 4));
  g_variant_unref (state.results);
  g_main_loop_unref (state.loop);
}

static void
test_imap_starmap_apply (void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(MpgPoolIterator) it = NULL;
  g_autoptr(GVariant) sums = NULL;
  g_autoptr(GVariant) one = NULL;
  guint square = mpg_pool_add_named_function (shared_pool, "mpi_square");
  guint add = mpg_pool_add_named_function (shared_pool, "mpi_add");
  GVariant *value;
  gint32 total = 0;
  guint n = 0;

  it = mpg_pool_imap (shared_pool, square, range (0, 30), 4, &error);
  g_assert_no_error (error);
  while (mpg_pool_iterator_next (it, 30000, NULL, &value, &error) && value != NULL)
    {
      g_assert_cmpint (g_variant_get_int32 (value), ==, (gint32) (n * n));
      n++;
      g_variant_unref (value);
    }
  g_assert_no_error (error);
  g_assert_cmpuint (n, ==, 30);
  g_clear_object (&it);

  it = mpg_pool_imap_unordered (shared_pool, square, range (0, 30), 1, &error);
  g_assert_no_error (error);
  n = 0;
  while (mpg_pool_iterator_next (it, 30000, NULL, &value, &error) && value != NULL)
    {
      total += g_variant_get_int32 (value);
      n++;
      g_variant_unref (value);
    }
  g_assert_no_error (error);
  g_assert_cmpuint (n, ==, 30);
  g_assert_cmpint (total, ==, 8555);   /* Σ i², i < 30 */

  sums = mpg_pool_starmap (shared_pool, add, g_variant_new_parsed ("[(1, 2), (3, 4), (5, 6)]"), 0,
                           NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (g_variant_print (sums, FALSE), ==, "[3, 7, 11]");

  one = mpg_pool_apply (shared_pool, square, g_variant_new_int32 (12), NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpint (g_variant_get_int32 (one), ==, 144);
}

static void
test_error (void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GVariant) results = NULL;
  guint fail = mpg_pool_add_named_function (shared_pool, "mpi_fail");

  results = mpg_pool_map (shared_pool, fail, range (0, 10), 1, NULL, &error);
  g_assert_null (results);
  /* Same domain, code and message as the task's. */
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND);
  g_assert_true (g_str_has_prefix (error->message, "no luck with 7 on rank "));
  g_assert_false (g_str_has_suffix (error->message, "rank (null)"));
}

static void
test_crash (void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GVariant) results = NULL;
  guint crash = mpg_pool_add_named_function (shared_pool, "mpi_crash");
  guint where = mpg_pool_add_named_function (shared_pool, "mpi_where");
  guint replaced = mpg_pool_get_workers_replaced (shared_pool);

  /* A task that kills its worker costs the worker, not the rank. */
  results = mpg_pool_map (shared_pool, crash, range (0, 6), 1, NULL, &error);
  g_assert_null (results);
  g_assert_error (error, MPG_ERROR, MPG_ERROR_WORKER_DIED);
  g_clear_error (&error);

  results = mpg_pool_map (shared_pool, where, range (1, 25), 1, NULL, &error);
  g_assert_no_error (error);
  check_remote_results (results, 1);
  g_assert_cmpuint (mpg_pool_get_workers_replaced (shared_pool), >, replaced);
}

static void
test_timeout (void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GVariant) result = NULL;
  guint slow = mpg_pool_add_named_function (shared_pool, "mpi_sleep");
  gint64 start = g_get_monotonic_time ();

  mpg_pool_set_task_timeout (shared_pool, 300);
  result = mpg_pool_apply (shared_pool, slow, g_variant_new_int32 (20000), NULL, &error);
  mpg_pool_set_task_timeout (shared_pool, 0);
  g_assert_null (result);
  g_assert_error (error, MPG_ERROR, MPG_ERROR_TIMEOUT);
  g_assert_cmpint (g_get_monotonic_time () - start, <, 15 * G_USEC_PER_SEC);
  g_clear_error (&error);

  result = mpg_pool_apply (shared_pool, slow, g_variant_new_int32 (5), NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpint (g_variant_get_int32 (result), ==, 5);
}

static gboolean
cancel_cb (gpointer data)
{
  g_cancellable_cancel (data);
  return G_SOURCE_REMOVE;
}

static void
test_cancel (void)
{
  AsyncState state = { 0 };
  g_autoptr(GCancellable) cancellable = g_cancellable_new ();
  guint slow = mpg_pool_add_named_function (shared_pool, "mpi_sleep");
  g_autoptr(GVariant) items = g_variant_ref_sink (g_variant_new_parsed ("[200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200]"));
  gint64 start = g_get_monotonic_time ();

  state.loop = g_main_loop_new (NULL, FALSE);
  mpg_pool_map_async (shared_pool, slow, items, 1, cancellable, map_done_cb, &state);
  g_timeout_add (250, cancel_cb, cancellable);
  g_main_loop_run (state.loop);
  g_assert_null (state.results);
  g_assert_error (state.error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  /* Cancelled, not run to the end (8 × 200 ms per worker). */
  g_assert_cmpint (g_get_monotonic_time () - start, <, 1500 * 1000);
  g_clear_error (&state.error);
  g_main_loop_unref (state.loop);
}

static void
test_terminate (void)
{
  g_autoptr(MpgPool) pool = g_object_new (MPG_TYPE_POOL, "processes", 2, NULL);
  g_autoptr(GError) error = NULL;
  guint slow = mpg_pool_add_named_function (pool, "mpi_sleep");
  g_autoptr(GVariant) result = NULL;
  gint64 start;

  /* A second pool shares the ranks with the first. */
  result = mpg_pool_apply (pool, slow, g_variant_new_int32 (1), NULL, &error);
  g_assert_no_error (error);
  mpg_pool_apply_async (pool, slow, g_variant_new_int32 (60000), NULL, NULL, NULL);
  g_usleep (200 * 1000);
  start = g_get_monotonic_time ();
  mpg_pool_terminate (pool);
  g_assert_true (mpg_pool_join (pool, 20000, &error));
  g_assert_no_error (error);
  g_assert_cmpint (g_get_monotonic_time () - start, <, 10 * G_USEC_PER_SEC);
}

static guint
count_fds (void)
{
  g_autoptr(GDir) dir = g_dir_open ("/proc/self/fd", 0, NULL);
  guint n = 0;

  while (g_dir_read_name (dir) != NULL)
    n++;
  return n;
}

static void
test_no_leak (void)
{
  guint before = 0;
  gint64 deadline;

  /* Pools come and go; their workers' channels and status sockets go
   * with them, once the ranks said their workers ended. The first pool
   * is not counted: MPI opens its connections to ranks the first time
   * it talks to them, and keeps them. */
  for (int i = 0; i < 4; i++)
    {
      g_autoptr(MpgPool) pool = NULL;
      g_autoptr(GError) error = NULL;
      g_autoptr(GVariant) results = NULL;

      if (i == 1)
        before = count_fds ();
      pool = g_object_new (MPG_TYPE_POOL, "processes", 2, NULL);

      results = mpg_pool_map (pool, mpg_pool_add_named_function (pool, "mpi_square"),
                              range (0, 50), 0, NULL, &error);
      g_assert_no_error (error);
      mpg_pool_close (pool);
      g_assert_true (mpg_pool_join (pool, 20000, &error));
      g_assert_no_error (error);
    }
  deadline = g_get_monotonic_time () + 10 * G_USEC_PER_SEC;
  while (count_fds () != before && g_get_monotonic_time () < deadline)
    g_usleep (10 * 1000);
  g_assert_cmpuint (count_fds (), ==, before);
}

/* --kill-rank: a task kills its rank. Prints what the map returned;
 * exits 0 if it failed with MPG_ERROR_WORKER_DIED, 3 otherwise. The MPI
 * runtime may end the whole job first: tests/mpi/kill-rank.sh judges. */
static int
kill_rank_main (void)
{
  g_autoptr(MpgPool) pool = g_object_new (MPG_TYPE_POOL, "processes", 2, NULL);
  g_autoptr(GError) error = NULL;
  g_autoptr(GVariant) results = NULL;
  guint task = mpg_pool_add_named_function (pool, "mpi_kill_rank");
  gint64 start = g_get_monotonic_time ();

  results = mpg_pool_map (pool, task, range (0, 20), 1, NULL, &error);
  g_print ("kill-rank: after %.1f s: %s\n", (g_get_monotonic_time () - start) / 1e6,
           error != NULL ? error->message : "no error");
  mpg_pool_terminate (pool);
  mpg_pool_join (pool, 10000, NULL);
  return g_error_matches (error, MPG_ERROR, MPG_ERROR_WORKER_DIED) ? 0 : 3;
}

int
main (int    argc,
      char **argv)
{
  int status;

  /* Ranks other than 0 relay here and never return. */
  mpg_init (&argc, &argv);

  if (argc > 1 && g_str_equal (argv[1], "--kill-rank"))
    {
      alarm (WATCHDOG_SEC);
      return kill_rank_main ();
    }

  g_test_init (&argc, &argv, NULL);
  signal (SIGALRM, watchdog);
  alarm (WATCHDOG_SEC * 4);

  root_netns = netns_of_self ();
  shared_pool = g_object_new (MPG_TYPE_POOL, "processes", 2, NULL);

  g_test_add_func ("/mpi-pool/backend", test_backend);
  g_test_add_func ("/mpi-pool/map", test_map);
  g_test_add_func ("/mpi-pool/map-async", test_map_async);
  g_test_add_func ("/mpi-pool/imap-starmap-apply", test_imap_starmap_apply);
  g_test_add_func ("/mpi-pool/error", test_error);
  g_test_add_func ("/mpi-pool/crash", test_crash);
  g_test_add_func ("/mpi-pool/timeout", test_timeout);
  g_test_add_func ("/mpi-pool/cancel", test_cancel);
  g_test_add_func ("/mpi-pool/terminate", test_terminate);
  g_test_add_func ("/mpi-pool/no-leak", test_no_leak);

  status = g_test_run ();
  mpg_pool_terminate (shared_pool);
  mpg_pool_join (shared_pool, 10000, NULL);
  g_clear_object (&shared_pool);
  g_free (root_netns);
  return status;
}
