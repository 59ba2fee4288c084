/* fork-safety.c: start methods in a busy multi-threaded parent
 *
 * Copyright 2026 The libmpg authors
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * The parent has threads busy inside GLib — building and printing
 * GVariants, running GTasks, and talking to a private D-Bus daemon over a
 * GDBus connection — while it makes a fresh pool for each of N maps, with
 * each start method. A map that does not finish within its deadline counts
 * as a hang (the pool is then terminated). With spawn and forkserver there
 * must be none; with fork the count is reported (a forked child may inherit a lock that
 * another thread held, which is what spawn is for).
 *
 *   _build/tests/fork-safety            a short run (CI): 25 maps per method
 *   _build/tests/fork-safety -m slow    the full run: 1,000 maps per method
 *
 * This program is its own spawned worker: main() calls mpg_init() first.
 */

#include <signal.h>
#include <unistd.h>

#include <libmpg.h>

G_MODULE_EXPORT GVariant *fork_safety_task (GVariant *arg, gpointer user_data, GError **error);
G_MODULE_EXPORT GVariant *fork_safety_locking_task (GVariant *arg, gpointer user_data, GError **error);

/* The positive control's lock: a thread holds it nearly all the time. */
G_LOCK_DEFINE_STATIC (control);

GVariant *
fork_safety_locking_task (GVariant *arg, gpointer user_data, GError **error)
{
  G_LOCK (control);
  G_UNLOCK (control);
  return g_variant_new_int32 (g_variant_get_int32 (arg) * 2);
}

/* Works with containers, whose type information GLib keeps in a table
 * behind a lock: the kind of work a child deadlocks in when a busy thread
 * held that lock at fork time. */
GVariant *
fork_safety_task (GVariant *arg, gpointer user_data, GError **error)
{
  g_autoptr(GVariant) v = g_variant_ref_sink (g_variant_new_parsed ("[{'k', <(%i, [1, 2])>}]",
                                                                    g_variant_get_int32 (arg)));
  g_autofree char *text = g_variant_print (v, FALSE);

  return g_variant_new_int32 (g_variant_get_int32 (arg) * 2 + (text[0] == '{' ? 0 : 1));
}

static gint stop;

static gpointer
variant_thread (gpointer data)
{
  while (!g_atomic_int_get (&stop))
    {
      g_autoptr(GVariant) v = g_variant_ref_sink (
        g_variant_new_parsed ("[{'a', <(1, [2, 3], {'x': <@mv nothing>})>}]"));
      g_autofree char *text = g_variant_print (v, TRUE);
      g_autoptr(GVariantType) t = g_variant_type_new ("a{s(iasv)}");
    }
  return NULL;
}

static void
task_func (GTask *task, gpointer source, gpointer data, GCancellable *cancellable)
{
  g_autoptr(GVariant) v = g_variant_ref_sink (g_variant_new_parsed ("(1, 'two', [3.0])"));

  g_task_return_boolean (task, TRUE);
}

static gpointer
gtask_thread (gpointer data)
{
  while (!g_atomic_int_get (&stop))
    {
      g_autoptr(GTask) task = g_task_new (NULL, NULL, NULL, NULL);

      g_task_run_in_thread_sync (task, task_func);
    }
  return NULL;
}

static gpointer
dbus_thread (gpointer data)
{
  GDBusConnection *connection = data;

  while (!g_atomic_int_get (&stop))
    {
      g_autoptr(GVariant) reply = NULL;

      reply = g_dbus_connection_call_sync (connection, "org.freedesktop.DBus",
                                           "/org/freedesktop/DBus", "org.freedesktop.DBus",
                                           "ListNames", NULL, G_VARIANT_TYPE ("(as)"),
                                           G_DBUS_CALL_FLAGS_NONE, 5000, NULL, NULL);
    }
  return NULL;
}

typedef struct
{
  GMainLoop *loop;
  GVariant *result;
  GError *error;
  gboolean done;
} MapState;

static void
map_done (GObject *source, GAsyncResult *result, gpointer data)
{
  MapState *state = data;

  state->result = mpg_pool_map_finish (MPG_POOL (source), result, &state->error);
  state->done = TRUE;
  g_main_loop_quit (state->loop);
}

static gboolean
deadline_cb (gpointer data)
{
  g_main_loop_quit (data);
  return G_SOURCE_REMOVE;
}

/* Returns the number of maps that hung. */
static guint
run_maps (MpgStartMethod method,
          guint          n)
{
  g_autoptr(GMainContext) context = g_main_context_new ();
  guint hangs = 0;

  g_main_context_push_thread_default (context);

  for (guint i = 0; i < n; i++)
    {
      g_autoptr(MpgPool) pool = g_object_new (MPG_TYPE_POOL, "processes", 1,
                                              "start-method", method, NULL);
      g_autoptr(GCancellable) cancellable = g_cancellable_new ();
      MapState state = { g_main_loop_new (context, FALSE), NULL, NULL, FALSE };
      guint f = mpg_pool_add_function (pool, fork_safety_task, NULL, NULL);
      GSource *deadline = g_timeout_source_new_seconds (3);

      g_source_set_callback (deadline, deadline_cb, state.loop, NULL);
      g_source_attach (deadline, context);
      mpg_pool_map_async (pool, f, g_variant_new_parsed ("[1, 2, 3]"), 1, cancellable,
                          map_done, &state);
      g_main_loop_run (state.loop);
      g_source_destroy (deadline);
      g_source_unref (deadline);

      if (!state.done)
        {
          hangs++;
          g_cancellable_cancel (cancellable);
          while (!state.done)
            g_main_context_iteration (context, TRUE);
        }
      else
        {
          g_autofree char *text = NULL;

          g_assert_no_error (state.error);
          text = g_variant_print (state.result, FALSE);
          g_assert_cmpstr (text, ==, "[2, 4, 6]");
        }

      /* terminate() kills a hung worker; disposing reaps it. */
      mpg_pool_terminate (pool);
      g_clear_pointer (&state.result, g_variant_unref);
      g_clear_error (&state.error);
      g_main_loop_unref (state.loop);
    }

  g_main_context_pop_thread_default (context);
  return hangs;
}

static GDBusConnection *connection;

static gpointer
lock_holder_thread (gpointer data)
{
  while (!g_atomic_int_get (&stop))
    {
      G_LOCK (control);
      g_usleep (20000);
      G_UNLOCK (control);
    }
  return NULL;
}

/* Returns TRUE if a pool of @method running fork_safety_locking_task hung. */
static gboolean
locking_map_hangs (MpgStartMethod method)
{
  g_autoptr(GMainContext) context = g_main_context_new ();
  g_autoptr(MpgPool) pool = g_object_new (MPG_TYPE_POOL, "processes", 1, "start-method", method, NULL);
  MapState state = { g_main_loop_new (context, FALSE), NULL, NULL, FALSE };
  g_autoptr(GCancellable) cancellable = g_cancellable_new ();
  GSource *deadline = g_timeout_source_new_seconds (3);
  guint f;

  g_main_context_push_thread_default (context);
  f = mpg_pool_add_function (pool, fork_safety_locking_task, NULL, NULL);
  g_source_set_callback (deadline, deadline_cb, state.loop, NULL);
  g_source_attach (deadline, context);
  mpg_pool_map_async (pool, f, g_variant_new_parsed ("[1]"), 1, cancellable, map_done, &state);
  g_main_loop_run (state.loop);
  g_source_destroy (deadline);
  g_source_unref (deadline);
  if (!state.done)
    {
      g_cancellable_cancel (cancellable);
      while (!state.done)
        g_main_context_iteration (context, TRUE);
      mpg_pool_terminate (pool);
      g_clear_error (&state.error);
      g_main_loop_unref (state.loop);
      g_main_context_pop_thread_default (context);
      return TRUE;
    }
  g_assert_no_error (state.error);
  g_clear_pointer (&state.result, g_variant_unref);
  mpg_pool_terminate (pool);
  g_main_loop_unref (state.loop);
  g_main_context_pop_thread_default (context);
  return FALSE;
}

static void
test_positive_control (void)
{
  GThread *holder;
  guint hangs = 0;
  guint tries;

  g_test_summary ("The detector works: with fork, a task that takes a lock another thread "
                  "held at fork time hangs, and is counted; with spawn the same task does not");

  g_atomic_int_set (&stop, 0);
  holder = g_thread_new ("lock-holder", lock_holder_thread, NULL);
  g_usleep (50000);

  for (tries = 0; tries < 10 && hangs == 0; tries++)
    hangs += locking_map_hangs (MPG_START_METHOD_FORK);
  g_printerr ("# positive control: fork hung after %u tries\n", tries);
  g_assert_cmpuint (hangs, ==, 1);

  /* A spawned worker has its own copy of the lock, free. */
  g_assert_false (locking_map_hangs (MPG_START_METHOD_SPAWN));

  g_atomic_int_set (&stop, 1);
  g_thread_join (holder);
}

static const char *names[] = { "default", "fork", "spawn", "forkserver" };

static void
test_start_method (gconstpointer data)
{
  MpgStartMethod method = GPOINTER_TO_INT (data);
  guint n = g_test_slow () ? 1000 : 25;
  GThread *threads[4];
  guint hangs;

  g_test_summary ("Fresh pools in a parent whose threads are busy in GLib and GDBus: "
                  "no hang with spawn or forkserver; the count with fork is reported");

  g_atomic_int_set (&stop, 0);
  threads[0] = g_thread_new ("variants", variant_thread, NULL);
  threads[1] = g_thread_new ("variants", variant_thread, NULL);
  threads[2] = g_thread_new ("gtasks", gtask_thread, NULL);
  threads[3] = g_thread_new ("dbus", dbus_thread, connection);

  hangs = run_maps (method, n);

  g_atomic_int_set (&stop, 1);
  for (guint i = 0; i < G_N_ELEMENTS (threads); i++)
    g_thread_join (threads[i]);

  /* Printed for the record, also when tests run quietly. */
  g_printerr ("# %s: %u of %u maps hung\n", names[method], hangs, n);
  if (method != MPG_START_METHOD_FORK)
    g_assert_cmpuint (hangs, ==, 0);
}

int
main (int    argc,
      char **argv)
{
  g_autoptr(GTestDBus) bus = NULL;
  g_autoptr(GError) error = NULL;
  int ret;

  mpg_init (&argc, &argv);

  g_test_init (&argc, &argv, NULL);
  alarm (3600);

  bus = g_test_dbus_new (G_TEST_DBUS_NONE);
  g_test_dbus_up (bus);
  connection = g_dbus_connection_new_for_address_sync (g_test_dbus_get_bus_address (bus),
                                                       G_DBUS_CONNECTION_FLAGS_AUTHENTICATION_CLIENT |
                                                       G_DBUS_CONNECTION_FLAGS_MESSAGE_BUS_CONNECTION,
                                                       NULL, NULL, &error);
  g_assert_no_error (error);

  g_test_add_func ("/Mpg/ForkSafety/positive-control", test_positive_control);
  g_test_add_data_func ("/Mpg/ForkSafety/spawn", GINT_TO_POINTER (MPG_START_METHOD_SPAWN),
                        test_start_method);
  g_test_add_data_func ("/Mpg/ForkSafety/forkserver", GINT_TO_POINTER (MPG_START_METHOD_FORKSERVER),
                        test_start_method);
  g_test_add_data_func ("/Mpg/ForkSafety/fork", GINT_TO_POINTER (MPG_START_METHOD_FORK),
                        test_start_method);

  ret = g_test_run ();

  g_dbus_connection_close_sync (connection, NULL, NULL);
  g_clear_object (&connection);
  g_test_dbus_down (bus);

  return ret;
}
