/* bench-mpg.c: the benchmark workloads with libmpg's C API.
 *
 * One run of one workload per invocation; prints one JSON object on
 * stdout. The driver (bench/run) alternates this program with the other
 * implementations and computes medians and ratios.
 *
 *   bench-mpg map N CHUNKSIZE        map(square, range(N)), warm pool of 2
 *   bench-mpg map-chunk N CHUNKSIZE  the same with a chunk function
 *   bench-mpg apply N                N sequential apply(square, (x,))
 *   bench-mpg queue COUNT SIZE       a child puts COUNT messages of SIZE bytes
 *                                    (an `ay`; SIZE 0: small ints, `i`)
 *   bench-mpg pipe COUNT SIZE        the same over a Pipe/Connection
 *   bench-mpg spawn N                N sequential start + join of a no-op
 *   bench-mpg cpu N WORKERS MS       map of a task of MS ms CPU over N items
 *   bench-mpg lifecycle              pool of 2: create, map 2 items, close, join
 *   bench-mpg gui N                  1 ms timeout while map_async of N items
 *   bench-mpg memory                 RSS/PSS of the parent and an idle worker
 *   bench-mpg lock N                 N uncontended acquire + release of a Lock
 *   bench-mpg lock-counter N         2 children each add 1 to a shared counter
 *                                    N times under a Lock
 *
 * Copyright 2026 The libmpg authors
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <libmpg.h>
#include <sys/mman.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench-common.h"

static GVariant *
square (GVariant *arg, gpointer user_data, GError **error)
{
  gint64 v = g_variant_get_int32 (arg);

  /* int64: the squares of range(100000) do not fit an int32. */
  return g_variant_new_int64 (v * v);
}

/* square over a whole chunk: an `ai` in, an `ax` out. */
static GVariant *
square_chunk (GVariant *items, gpointer user_data, GError **error)
{
  gsize n;
  const gint32 *in = g_variant_get_fixed_array (items, &n, sizeof (gint32));
  gint64 *out = g_new (gint64, MAX (n, 1));

  for (gsize i = 0; i < n; i++)
    out[i] = (gint64) in[i] * in[i];
  return g_variant_new_from_data (G_VARIANT_TYPE ("ax"), out, n * sizeof (gint64),
                                  TRUE, g_free, out);
}

static GVariant *
noop (GVariant *arg, gpointer user_data, GError **error)
{
  return NULL;
}

static GVariant *
burn (GVariant *arg, gpointer user_data, GError **error)
{
  bench_burn_cpu (GPOINTER_TO_UINT (user_data));
  return g_variant_new_int32 (g_variant_get_int32 (arg));
}

static GVariant *
range_variant (guint n)
{
  gint32 *v = g_new (gint32, MAX (n, 1));

  for (guint i = 0; i < n; i++)
    v[i] = (gint32) i;
  return g_variant_new_from_data (G_VARIANT_TYPE ("ai"), v, n * sizeof (gint32),
                                  TRUE, g_free, v);
}

static void
die (GError *error)
{
  fprintf (stderr, "bench-mpg: %s\n", error ? error->message : "failed");
  exit (1);
}

/* A pool of 2 with func added, and both workers forked and warm. */
static MpgPool *
warm_pool_full (guint processes, MpgTaskFunc func, gpointer data, gboolean chunked, guint *out_id)
{
  MpgPool *pool = mpg_pool_new (processes);
  GError *error = NULL;
  GVariant *r;

  *out_id = chunked ? mpg_pool_add_chunk_function (pool, func, data, NULL)
                    : mpg_pool_add_function (pool, func, data, NULL);
  r = mpg_pool_map (pool, *out_id, range_variant (processes * 2), 1, NULL, &error);
  if (r == NULL)
    die (error);
  g_variant_unref (r);
  return pool;
}

static MpgPool *
warm_pool (guint processes, MpgTaskFunc func, gpointer data, guint *out_id)
{
  return warm_pool_full (processes, func, data, FALSE, out_id);
}

static void
close_pool (MpgPool *pool)
{
  mpg_pool_terminate (pool);
  mpg_pool_join (pool, -1, NULL);
  g_object_unref (pool);
}

static int
w_map (guint n, guint chunksize, gboolean chunked)
{
  guint f;
  MpgPool *pool = warm_pool_full (2, chunked ? square_chunk : square, NULL, chunked, &f);
  GVariant *items = g_variant_ref_sink (range_variant (n));
  GError *error = NULL;
  gint64 t0 = g_get_monotonic_time ();
  GVariant *r = mpg_pool_map (pool, f, items, chunksize, NULL, &error);
  double s = (g_get_monotonic_time () - t0) / 1e6;
  gsize len;
  const gint64 *out;

  if (r == NULL)
    die (error);
  out = g_variant_get_fixed_array (r, &len, sizeof (gint64));
  if (len != n || (n > 7 && out[7] != 49))
    die (NULL);
  printf ("{\"seconds\": %.6f}\n", s);
  g_variant_unref (r);
  g_variant_unref (items);
  close_pool (pool);
  return 0;
}

static int
w_apply (guint n)
{
  guint f;
  MpgPool *pool = warm_pool (2, square, NULL, &f);
  GError *error = NULL;
  gint64 t0 = g_get_monotonic_time ();

  for (guint i = 0; i < n; i++)
    {
      GVariant *r = mpg_pool_apply (pool, f, g_variant_new_int32 (i % 1000), NULL, &error);
      if (r == NULL)
        die (error);
      g_variant_unref (r);
    }
  printf ("{\"seconds\": %.6f}\n", (g_get_monotonic_time () - t0) / 1e6);
  close_pool (pool);
  return 0;
}

typedef struct {
  MpgQueue *queue;
  MpgConnection *conn;
  guint count;
  gsize size;
} Producer;

static GVariant *
producer (GVariant *arg, gpointer user_data, GError **error)
{
  Producer *p = user_data;
  /* One message value, sent COUNT times: building it is not the transport. */
  GVariant *msg = NULL;

  if (p->size != 0)
    {
      gpointer data = g_malloc0 (p->size);
      msg = g_variant_ref_sink (g_variant_new_from_data (G_VARIANT_TYPE_BYTESTRING, data,
                                                         p->size, TRUE, g_free, data));
    }
  for (guint i = 0; i < p->count; i++)
    {
      GVariant *v = msg ? g_variant_ref (msg) : g_variant_ref_sink (g_variant_new_int32 (i));
      gboolean ok = p->queue
        ? mpg_queue_put (p->queue, v, TRUE, -1, NULL, error)
        : mpg_connection_send (p->conn, v, NULL, error);

      g_variant_unref (v);
      if (!ok)
        return NULL;
    }
  if (msg)
    g_variant_unref (msg);
  return NULL;
}

static int
w_transport (gboolean use_queue, guint count, gsize size)
{
  Producer p = { NULL, NULL, count, size };
  MpgConnection *reader = NULL, *writer = NULL;
  MpgProcess *proc;
  GError *error = NULL;
  gint64 t0;
  gsize total = 0;
  double s;

  if (use_queue)
    {
      p.queue = mpg_queue_new (0, &error);
      if (p.queue == NULL)
        die (error);
      mpg_queue_set_max_message_size (p.queue, MAX (size * 2 + 4096, 1 << 20));
    }
  else
    {
      if (!mpg_pipe_new (FALSE, &reader, &writer, &error))
        die (error);
      mpg_connection_set_max_message_size (reader, MAX (size * 2 + 4096, 1 << 20));
      mpg_connection_set_max_message_size (writer, MAX (size * 2 + 4096, 1 << 20));
      p.conn = writer;
    }
  proc = mpg_process_new (NULL, producer, &p, NULL);
  t0 = g_get_monotonic_time ();
  if (!mpg_process_start (proc, &error))
    die (error);
  if (writer)
    mpg_connection_close (writer);
  for (guint i = 0; i < count; i++)
    {
      GVariant *v = use_queue
        ? mpg_queue_get (p.queue, TRUE, -1, NULL, &error)
        : mpg_connection_recv (reader, NULL, &error);
      if (v == NULL)
        die (error);
      total += size == 0 ? 0 : g_variant_get_size (v);
      g_variant_unref (v);
    }
  s = (g_get_monotonic_time () - t0) / 1e6;
  if (!mpg_process_join (proc, -1, NULL, &error))
    die (error);
  if (total != (gsize) count * size)
    die (NULL);
  printf ("{\"seconds\": %.6f}\n", s);
  g_object_unref (proc);
  g_clear_object (&p.queue);
  g_clear_object (&reader);
  g_clear_object (&writer);
  return 0;
}

static int
w_spawn (guint n)
{
  GError *error = NULL;
  gint64 t0 = g_get_monotonic_time ();

  for (guint i = 0; i < n; i++)
    {
      MpgProcess *p = mpg_process_new (NULL, noop, NULL, NULL);
      if (!mpg_process_start (p, &error) || !mpg_process_join (p, -1, NULL, &error))
        die (error);
      g_object_unref (p);
    }
  printf ("{\"seconds\": %.6f}\n", (g_get_monotonic_time () - t0) / 1e6);
  return 0;
}

static int
w_cpu (guint n, guint workers, guint ms)
{
  guint f;
  MpgPool *pool = warm_pool (workers, burn, GUINT_TO_POINTER (ms), &f);
  GVariant *items = g_variant_ref_sink (range_variant (n));
  GError *error = NULL;
  gint64 t0 = g_get_monotonic_time ();
  GVariant *r = mpg_pool_map (pool, f, items, 1, NULL, &error);
  double s = (g_get_monotonic_time () - t0) / 1e6;

  if (r == NULL)
    die (error);
  printf ("{\"seconds\": %.6f}\n", s);
  g_variant_unref (r);
  g_variant_unref (items);
  close_pool (pool);
  return 0;
}

static int
w_lifecycle (void)
{
  GError *error = NULL;
  gint64 t0 = g_get_monotonic_time ();
  MpgPool *pool = mpg_pool_new (2);
  guint f = mpg_pool_add_function (pool, square, NULL, NULL);
  GVariant *r = mpg_pool_map (pool, f, range_variant (2), 0, NULL, &error);

  if (r == NULL)
    die (error);
  g_variant_unref (r);
  mpg_pool_close (pool);
  if (!mpg_pool_join (pool, -1, &error))
    die (error);
  g_object_unref (pool);
  printf ("{\"seconds\": %.6f}\n", (g_get_monotonic_time () - t0) / 1e6);
  return 0;
}

typedef struct {
  GMainLoop *loop;
  GArray *delays;      /* double, ms */
  gint64 last;
  gboolean done;
  GVariant *result;
  double finish_ms;    /* how long mpg_pool_map_finish() took */
} Gui;

static gboolean
tick (gpointer user_data)
{
  Gui *g = user_data;
  gint64 now = g_get_monotonic_time ();

  if (g->last)
    {
      double d = (now - g->last) / 1000.0 - 1.0;
      g_array_append_val (g->delays, d);
    }
  g->last = now;
  return G_SOURCE_CONTINUE;
}

static void
quit_loop (gpointer loop)
{
  g_main_loop_quit (loop);
}

static void
mapped (GObject *source, GAsyncResult *res, gpointer user_data)
{
  Gui *g = user_data;
  GError *error = NULL;
  gint64 t0 = g_get_monotonic_time ();

  g->result = mpg_pool_map_finish (MPG_POOL (source), res, &error);
  g->finish_ms = (g_get_monotonic_time () - t0) / 1000.0;
  if (g->result == NULL)
    die (error);
  /* The loop runs on for a few ticks, so that the time this callback took
   * shows in the delay of the next tick. */
  g_timeout_add_once (10, quit_loop, g->loop);
}

static int
w_gui (guint n)
{
  guint f;
  MpgPool *pool = warm_pool (2, square, NULL, &f);
  Gui g = { g_main_loop_new (NULL, FALSE), g_array_new (FALSE, FALSE, sizeof (double)), 0, FALSE, NULL, 0 };
  guint id = g_timeout_add (1, tick, &g);
  gint64 t0 = g_get_monotonic_time ();
  double s;

  mpg_pool_map_async (pool, f, range_variant (n), 0, NULL, mapped, &g);
  g_main_loop_run (g.loop);
  s = (g_get_monotonic_time () - t0) / 1e6;
  g_source_remove (id);
  bench_print_delays ((double *) (void *) g.delays->data, g.delays->len, s, g.finish_ms);
  g_variant_unref (g.result);
  g_array_unref (g.delays);
  g_main_loop_unref (g.loop);
  close_pool (pool);
  return 0;
}

static int
w_memory (void)
{
  guint f;
  MpgPool *pool = warm_pool (2, square, NULL, &f);
  GArray *pids = mpg_pool_dup_worker_pids (pool);

  g_usleep (200000);
  bench_print_memory (g_array_index (pids, gint, 0));
  g_array_unref (pids);
  close_pool (pool);
  return 0;
}

static int
w_lock (guint n)
{
  GError *error = NULL;
  MpgLock *lock = mpg_lock_new (&error);
  gint64 t0;

  if (lock == NULL)
    die (error);
  t0 = g_get_monotonic_time ();
  for (guint i = 0; i < n; i++)
    {
      mpg_lock_acquire (lock, -1, NULL, NULL, NULL);
      mpg_lock_release (lock, NULL);
    }
  printf ("{\"seconds\": %.6f}\n", (g_get_monotonic_time () - t0) / 1e6);
  g_object_unref (lock);
  return 0;
}

typedef struct {
  MpgLock *lock;
  volatile gint64 *counter;   /* [0]: the counter; [1]: go */
  guint n;
} Counter;

static GVariant *
count_task (GVariant *arg, gpointer user_data, GError **error)
{
  Counter *c = user_data;

  /* Both start together, so that they contend. */
  while (!__atomic_load_n (&c->counter[1], __ATOMIC_ACQUIRE))
    ;
  for (guint i = 0; i < c->n; i++)
    {
      if (!mpg_lock_acquire (c->lock, -1, NULL, NULL, error))
        return NULL;
      *c->counter += 1;
      if (!mpg_lock_release (c->lock, error))
        return NULL;
    }
  return NULL;
}

static int
w_lock_counter (guint n)
{
  GError *error = NULL;
  Counter c = { mpg_lock_new (&error), NULL, n };
  MpgProcess *p[2];
  gint64 t0;

  if (c.lock == NULL)
    die (error);
  c.counter = mmap (NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  t0 = g_get_monotonic_time ();
  for (guint i = 0; i < 2; i++)
    {
      p[i] = mpg_process_new (NULL, count_task, &c, NULL);
      if (!mpg_process_start (p[i], &error))
        die (error);
    }
  __atomic_store_n (&c.counter[1], 1, __ATOMIC_RELEASE);
  for (guint i = 0; i < 2; i++)
    {
      if (!mpg_process_join (p[i], -1, NULL, &error))
        die (error);
      g_object_unref (p[i]);
    }
  printf ("{\"seconds\": %.6f}\n", (g_get_monotonic_time () - t0) / 1e6);
  if (*c.counter != 2 * (gint64) n)
    {
      fprintf (stderr, "lock-counter: %" G_GINT64_FORMAT " != %u\n", *c.counter, 2 * n);
      return 1;
    }
  g_object_unref (c.lock);
  return 0;
}

int
main (int argc, char **argv)
{
  const char *w = argc > 1 ? argv[1] : "";
#define ARG(i, d) (argc > (i) ? (guint) strtoul (argv[i], NULL, 10) : (d))

  if (g_str_equal (w, "map"))
    return w_map (ARG (2, 100000), ARG (3, 0), FALSE);
  if (g_str_equal (w, "map-chunk"))
    return w_map (ARG (2, 100000), ARG (3, 0), TRUE);
  if (g_str_equal (w, "apply"))
    return w_apply (ARG (2, 5000));
  if (g_str_equal (w, "queue") || g_str_equal (w, "pipe"))
    return w_transport (g_str_equal (w, "queue"), ARG (2, 256), ARG (3, 1 << 20));
  if (g_str_equal (w, "spawn"))
    return w_spawn (ARG (2, 500));
  if (g_str_equal (w, "cpu"))
    return w_cpu (ARG (2, 100), ARG (3, 2), ARG (4, 10));
  if (g_str_equal (w, "lifecycle"))
    return w_lifecycle ();
  if (g_str_equal (w, "gui"))
    return w_gui (ARG (2, 100000));
  if (g_str_equal (w, "memory"))
    return w_memory ();
  if (g_str_equal (w, "lock"))
    return w_lock (ARG (2, 1000000));
  if (g_str_equal (w, "lock-counter"))
    return w_lock_counter (ARG (2, 100000));
  fprintf (stderr, "usage: bench-mpg map|map-chunk|apply|queue|pipe|spawn|cpu|lifecycle|gui|memory|lock|lock-counter ARGS\n");
  return 2;
}
