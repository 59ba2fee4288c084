/* progress.c: a pool's map in a main loop, with progress and no blocking
 *
 * mpg_pool_map_async() runs a task over N_ITEMS items in a pool of worker
 * processes while the main loop goes on: a "progress" line is printed for
 * each finished chunk (items done / total), then the sum of the results.
 * Meanwhile a 1 ms timeout source in the same loop counts its ticks and
 * notes the worst delay of a tick (beyond its 1 ms): the map never blocks
 * the loop.
 *
 * Prints, for instance:
 *
 *     progress 10/200
 *     progress 20/200
 *     …
 *     progress 200/200
 *     sum 2686700
 *     ticks 263, worst delay 4.1 ms
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <libmpg.h>

#define N_ITEMS   200
#define CHUNKSIZE 10

typedef struct
{
  GMainLoop *loop;
  guint      ticks;
  gint64     last_tick;
  gint64     worst_delay;
  gint64     sum;
  GError    *error;
} State;

/* The task: about 2 ms of work, then the square of the item. */
static GVariant *
square_slowly (GVariant  *x,
               gpointer   user_data,
               GError   **error)
{
  gint32 v = g_variant_get_int32 (x);

  g_usleep (2000);
  return g_variant_new_int32 (v * v);
}

static gboolean
tick_cb (gpointer user_data)
{
  State *state = user_data;
  gint64 now = g_get_monotonic_time ();

  /* How late this tick is, after the previous one, in µs. */
  if (state->ticks > 0)
    state->worst_delay = MAX (state->worst_delay, now - state->last_tick - 1000);
  state->last_tick = now;
  state->ticks++;

  return G_SOURCE_CONTINUE;
}

static void
progress_cb (MpgPool      *pool,
             GAsyncResult *call,
             guint         done,
             guint         total,
             gpointer      user_data)
{
  g_print ("progress %u/%u\n", done, total);
}

static void
mapped_cb (GObject      *object,
           GAsyncResult *result,
           gpointer      user_data)
{
  State *state = user_data;
  g_autoptr(GVariant) results = NULL;

  results = mpg_pool_map_finish (MPG_POOL (object), result, &state->error);
  if (results != NULL)
    {
      gsize n;
      const gint32 *squares = g_variant_get_fixed_array (results, &n, sizeof (gint32));

      for (gsize i = 0; i < n; i++)
        state->sum += squares[i];
    }

  g_main_loop_quit (state->loop);
}

int
main (void)
{
  g_autoptr(MpgPool) pool = NULL;
  g_autoptr(GMainLoop) loop = NULL;
  g_autoptr(GError) error = NULL;
  State state = { 0, };
  gint32 items[N_ITEMS];
  guint tick_id;
  guint f_id;

  for (guint i = 0; i < N_ITEMS; i++)
    items[i] = i + 1;

  loop = g_main_loop_new (NULL, FALSE);
  state.loop = loop;

  pool = mpg_pool_new (2);
  f_id = mpg_pool_add_function (pool, square_slowly, NULL, NULL);
  g_signal_connect (pool, "progress", G_CALLBACK (progress_cb), &state);

  tick_id = g_timeout_add (1, tick_cb, &state);
  mpg_pool_map_async (pool, f_id,
                      g_variant_new_fixed_array (G_VARIANT_TYPE_INT32, items,
                                                 N_ITEMS, sizeof (gint32)),
                      CHUNKSIZE, NULL, mapped_cb, &state);
  g_main_loop_run (loop);
  g_source_remove (tick_id);

  if (state.error != NULL)
    {
      g_printerr ("%s\n", state.error->message);
      g_clear_error (&state.error);
      return 1;
    }

  g_print ("sum %" G_GINT64_FORMAT "\n", state.sum);
  g_print ("ticks %u, worst delay %.1f ms\n",
           state.ticks, state.worst_delay / 1000.0);

  mpg_pool_close (pool);
  if (!mpg_pool_join (pool, -1, &error))
    {
      g_printerr ("%s\n", error->message);
      return 1;
    }

  return 0;
}
