/* test-spawn.c: the spawn and forkserver start methods, for processes and
 * pools
 *
 * Copyright 2026 The libmpg authors
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * This program is its own spawned worker: main() calls mpg_init() first,
 * and the task functions are exported (the test is linked with
 * export_dynamic).
 */

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>
#include <sys/wait.h>

#include <libmpg.h>

/* Exported tasks: found by name in the spawned program. */
G_MODULE_EXPORT GVariant *spawn_test_square      (GVariant *arg, gpointer user_data, GError **error);
G_MODULE_EXPORT GVariant *spawn_test_identity    (GVariant *arg, gpointer user_data, GError **error);
G_MODULE_EXPORT GVariant *spawn_test_fail        (GVariant *arg, gpointer user_data, GError **error);
G_MODULE_EXPORT GVariant *spawn_test_put         (GVariant *arg, gpointer user_data, GError **error);
G_MODULE_EXPORT GVariant *spawn_test_fd_is_open  (GVariant *arg, gpointer user_data, GError **error);
G_MODULE_EXPORT GVariant *spawn_test_sleep       (GVariant *arg, gpointer user_data, GError **error);
G_MODULE_EXPORT GVariant *spawn_test_init        (GVariant *arg, gpointer user_data, GError **error);
G_MODULE_EXPORT GVariant *spawn_test_read_init   (GVariant *arg, gpointer user_data, GError **error);
G_MODULE_EXPORT GVariant *spawn_test_die         (GVariant *arg, gpointer user_data, GError **error);
G_MODULE_EXPORT GVariant *spawn_test_init_queue  (GVariant *arg, gpointer user_data, GError **error);
G_MODULE_EXPORT GVariant *spawn_test_put_item    (GVariant *arg, gpointer user_data, GError **error);
G_MODULE_EXPORT GVariant *spawn_test_chunk_square (GVariant *arg, gpointer user_data, GError **error);

GVariant *
spawn_test_square (GVariant *arg, gpointer user_data, GError **error)
{
  gint32 x = g_variant_get_int32 (arg);

  return g_variant_new_int32 (x * x);
}

/* A chunk function: squares an `ai` (or `av` of one int32, from apply). */
GVariant *
spawn_test_chunk_square (GVariant *arg, gpointer user_data, GError **error)
{
  GVariantBuilder builder;
  gboolean boxed = g_variant_is_of_type (arg, G_VARIANT_TYPE ("av"));

  g_variant_builder_init (&builder, boxed ? G_VARIANT_TYPE ("av") : G_VARIANT_TYPE ("ai"));
  for (gsize i = 0; i < g_variant_n_children (arg); i++)
    {
      g_autoptr(GVariant) item = g_variant_get_child_value (arg, i);
      g_autoptr(GVariant) x = boxed ? g_variant_get_variant (item) : g_variant_ref (item);
      gint32 v = g_variant_get_int32 (x);

      if (boxed)
        g_variant_builder_add (&builder, "v", g_variant_new_int32 (v * v));
      else
        g_variant_builder_add (&builder, "i", v * v);
    }
  return g_variant_builder_end (&builder);
}

/* (name, pid, parent pid, is a worker started by spawn) */
GVariant *
spawn_test_identity (GVariant *arg, gpointer user_data, GError **error)
{
  return g_variant_new ("(sii)", mpg_process_get_name (mpg_current_process ()),
                        (gint32) getpid (), mpg_process_get_pid (mpg_parent_process ()));
}

GVariant *
spawn_test_fail (GVariant *arg, gpointer user_data, GError **error)
{
  g_set_error (error, G_IO_ERROR, G_IO_ERROR_PERMISSION_DENIED, "no: %s",
               g_variant_get_string (arg, NULL));
  return NULL;
}

/* The argument is a queue's handle; the user data the fds it refers to. */
GVariant *
spawn_test_put (GVariant *arg, gpointer user_data, GError **error)
{
  g_autoptr(MpgQueue) q = mpg_queue_new_from_handle (arg, user_data, error);

  if (q == NULL)
    return NULL;
  if (!mpg_queue_put (q, g_variant_new_parsed ("[<42>, <@mv nothing>, <'hello'>]"),
                      TRUE, -1, NULL, error))
    return NULL;
  return NULL;
}

GVariant *
spawn_test_fd_is_open (GVariant *arg, gpointer user_data, GError **error)
{
  return g_variant_new_boolean (fcntl (g_variant_get_int32 (arg), F_GETFD) >= 0);
}

GVariant *
spawn_test_sleep (GVariant *arg, gpointer user_data, GError **error)
{
  g_usleep ((gulong) g_variant_get_int32 (arg) * 1000);
  return g_variant_new_int32 (g_variant_get_int32 (arg));
}

static gint32 init_value = -1;

GVariant *
spawn_test_init (GVariant *arg, gpointer user_data, GError **error)
{
  init_value = g_variant_get_int32 (arg);
  return NULL;
}

GVariant *
spawn_test_read_init (GVariant *arg, gpointer user_data, GError **error)
{
  return g_variant_new_int32 (init_value);
}

GVariant *
spawn_test_die (GVariant *arg, gpointer user_data, GError **error)
{
  raise (SIGKILL);
  return NULL;
}

/* The pool's queue, in each worker: its initializer gets it by handle. */
static MpgQueue *worker_queue;

GVariant *
spawn_test_init_queue (GVariant *arg, gpointer user_data, GError **error)
{
  worker_queue = mpg_queue_new_from_handle (arg, user_data, error);
  return NULL;
}

GVariant *
spawn_test_put_item (GVariant *arg, gpointer user_data, GError **error)
{
  if (!mpg_queue_put (worker_queue, g_variant_ref (arg), TRUE, -1, NULL, error))
    return NULL;
  return g_variant_new_boolean (TRUE);
}

static GVariant *
static_task (GVariant *arg, gpointer user_data, GError **error)
{
  return NULL;
}

static gboolean
guard_cb (gpointer data)
{
  g_error ("test timed out");
  return G_SOURCE_REMOVE;
}

/* Each test runs with spawn and with forkserver. */
static MpgStartMethod method;

static MpgProcess *
spawn_process (MpgTaskFunc  target,
               GVariant    *args)
{
  MpgProcess *p = mpg_process_new (args, target, NULL, NULL);

  mpg_process_set_start_method (p, method);
  return p;
}

static void
test_spawn_process (void)
{
  g_autoptr(MpgProcess) p = spawn_process (spawn_test_identity, NULL);
  g_autoptr(GVariant) result = NULL;
  g_autoptr(GError) error = NULL;
  const char *name;
  gint32 pid, ppid;

  g_test_summary ("A spawned process runs its exported target by name; its result, name and "
                  "parent are those of a child");

  g_assert_true (mpg_process_start (p, &error));
  g_assert_no_error (error);
  g_assert_true (mpg_process_join (p, 10000, NULL, &error));
  g_assert_no_error (error);
  g_assert_cmpint (mpg_process_get_exitcode (p), ==, 0);

  result = mpg_process_dup_result (p, &error);
  g_assert_no_error (error);
  g_variant_get (result, "(&sii)", &name, &pid, &ppid);
  g_assert_cmpstr (name, ==, mpg_process_get_name (p));
  g_assert_cmpint (pid, ==, mpg_process_get_pid (p));
  g_assert_cmpint (ppid, ==, getpid ());
}

static void
test_spawn_process_error (void)
{
  g_autoptr(MpgProcess) p = spawn_process (spawn_test_fail, g_variant_new_string ("bob"));
  g_autoptr(GVariant) result = NULL;
  g_autoptr(GError) error = NULL;

  g_test_summary ("A spawned target's error ends it with code 1; the parent gets the error");

  g_assert_true (mpg_process_start (p, &error));
  g_assert_true (mpg_process_join (p, 10000, NULL, &error));
  g_assert_cmpint (mpg_process_get_exitcode (p), ==, 1);
  result = mpg_process_dup_result (p, &error);
  g_assert_null (result);
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_PERMISSION_DENIED);
  g_assert_cmpstr (error->message, ==, "no: bob");
}

static void
test_spawn_process_unnamed (void)
{
  g_autoptr(MpgProcess) p = spawn_process (static_task, NULL);
  g_autoptr(MpgProcess) q = mpg_process_new (NULL, spawn_test_square, p, NULL);
  g_autoptr(GError) error = NULL;

  g_test_summary ("A target without an exported name, or with user data, is an error at start, "
                  "and nothing is started");

  g_assert_false (mpg_process_start (p, &error));
  g_assert_error (error, MPG_ERROR, MPG_ERROR_UNKNOWN_TASK);
  g_assert_cmpint (mpg_process_get_pid (p), ==, 0);
  g_clear_error (&error);

  mpg_process_set_start_method (q, method);
  g_assert_false (mpg_process_start (q, &error));
  g_assert_error (error, MPG_ERROR, MPG_ERROR_UNKNOWN_TASK);
}

static void
test_spawn_process_named (void)
{
  g_autoptr(MpgProcess) p = mpg_process_new (g_variant_new_int32 (9), NULL, NULL, NULL);
  g_autoptr(MpgProcess) q = mpg_process_new (NULL, NULL, NULL, NULL);
  g_autoptr(GVariant) result = NULL;
  g_autoptr(GError) error = NULL;

  g_test_summary ("A target given by name; an unknown name fails the child with "
                  "MPG_ERROR_UNKNOWN_TASK");

  mpg_process_set_start_method (p, method);
  mpg_process_set_target_name (p, "spawn_test_square");
  g_assert_true (mpg_process_start (p, &error));
  g_assert_true (mpg_process_join (p, 10000, NULL, &error));
  result = mpg_process_dup_result (p, &error);
  g_assert_no_error (error);
  g_assert_cmpint (g_variant_get_int32 (result), ==, 81);

  mpg_process_set_start_method (q, method);
  mpg_process_set_target_name (q, "spawn_test_no_such_function");
  g_assert_true (mpg_process_start (q, &error));
  g_assert_true (mpg_process_join (q, 10000, NULL, &error));
  g_assert_cmpint (mpg_process_get_exitcode (q), ==, 1);
  g_clear_pointer (&result, g_variant_unref);
  result = mpg_process_dup_result (q, &error);
  g_assert_error (error, MPG_ERROR, MPG_ERROR_UNKNOWN_TASK);
}

static void
test_spawn_process_queue (void)
{
  g_autoptr(MpgQueue) q = NULL;
  g_autoptr(GUnixFDList) fds = g_unix_fd_list_new ();
  g_autoptr(MpgProcess) p = NULL;
  g_autoptr(GVariant) value = NULL;
  g_autoptr(GVariant) handle = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *text = NULL;

  g_test_summary ("The seed's Queue example with spawn: the queue travels as a handle and its "
                  "fds, and is rebuilt in the child");

  q = mpg_queue_new (0, &error);
  g_assert_no_error (error);
  handle = mpg_queue_to_handle (q, fds, &error);
  g_assert_no_error (error);
  p = spawn_process (spawn_test_put, handle);
  mpg_process_set_fd_list (p, fds);
  g_assert_true (mpg_process_start (p, &error));

  value = mpg_queue_get (q, TRUE, 10000, NULL, &error);
  g_assert_no_error (error);
  text = g_variant_print (value, FALSE);
  g_assert_cmpstr (text, ==, "[<42>, <@mv nothing>, <'hello'>]");
  g_assert_true (mpg_process_join (p, 10000, NULL, &error));
  g_assert_cmpint (mpg_process_get_exitcode (p), ==, 0);
}

static void
test_spawn_process_fds (void)
{
  g_autoptr(MpgProcess) p = NULL;
  g_autoptr(GVariant) result = NULL;
  g_autoptr(GError) error = NULL;
  int fds[2];

  g_test_summary ("A spawned child inherits no fd by accident (multiprocessing's spawn "
                  "closes them too), only stdin, stdout and stderr");

  g_assert_no_errno (pipe (fds));   /* inheritable: no O_CLOEXEC */
  /* Above the numbers the child's own fds get (3 and 4). */
  g_assert_cmpint (dup2 (fds[1], 100), ==, 100);
  close (fds[1]);
  fds[1] = 100;
  p = spawn_process (spawn_test_fd_is_open, g_variant_new_int32 (fds[1]));
  g_assert_true (mpg_process_start (p, &error));
  g_assert_true (mpg_process_join (p, 10000, NULL, &error));
  result = mpg_process_dup_result (p, &error);
  g_assert_no_error (error);
  g_assert_false (g_variant_get_boolean (result));
  close (fds[0]);
  close (fds[1]);
}

static void
test_spawn_process_terminate (void)
{
  g_autoptr(MpgProcess) p = spawn_process (spawn_test_sleep, g_variant_new_int32 (30000));
  g_autoptr(GError) error = NULL;

  g_test_summary ("A spawned process can be terminated: exit code -SIGTERM");

  g_assert_true (mpg_process_start (p, &error));
  g_assert_true (mpg_process_is_alive (p));
  g_assert_true (mpg_process_terminate (p, &error));
  g_assert_true (mpg_process_join (p, 10000, NULL, &error));
  g_assert_cmpint (mpg_process_get_exitcode (p), ==, -SIGTERM);
}

static MpgPool *
spawn_pool (guint processes)
{
  return g_object_new (MPG_TYPE_POOL, "processes", processes, "start-method", method, NULL);
}

static void
test_spawn_pool_map (void)
{
  g_autoptr(MpgPool) pool = spawn_pool (2);
  g_autoptr(GVariant) result = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *text = NULL;
  guint f, g;

  g_test_summary ("The seed's Pool example with spawned workers, by function and by name");

  g_assert_cmpint (mpg_pool_get_start_method (pool), ==, method);
  f = mpg_pool_add_function (pool, spawn_test_square, NULL, NULL);
  result = mpg_pool_map (pool, f, g_variant_new_parsed ("[1, 2, 3]"), 0, NULL, &error);
  g_assert_no_error (error);
  text = g_variant_print (result, FALSE);
  g_assert_cmpstr (text, ==, "[1, 4, 9]");

  g_clear_pointer (&result, g_variant_unref);
  g = mpg_pool_add_named_function (pool, "spawn_test_square");
  result = mpg_pool_apply (pool, g, g_variant_new_int32 (12), NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpint (g_variant_get_int32 (result), ==, 144);

  /* Chunk functions, by function and by name. */
  g_clear_pointer (&result, g_variant_unref);
  g_clear_pointer (&text, g_free);
  f = mpg_pool_add_chunk_function (pool, spawn_test_chunk_square, NULL, NULL);
  result = mpg_pool_map (pool, f, g_variant_new_parsed ("[1, 2, 3, 4, 5]"), 2, NULL, &error);
  g_assert_no_error (error);
  text = g_variant_print (result, FALSE);
  g_assert_cmpstr (text, ==, "[1, 4, 9, 16, 25]");
  g_clear_pointer (&result, g_variant_unref);
  g = mpg_pool_add_named_chunk_function (pool, "spawn_test_chunk_square");
  result = mpg_pool_apply (pool, g, g_variant_new_int32 (11), NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpint (g_variant_get_int32 (result), ==, 121);

  mpg_pool_close (pool);
  g_assert_true (mpg_pool_join (pool, 10000, &error));
}

static void
test_spawn_pool_errors (void)
{
  g_autoptr(MpgPool) pool = spawn_pool (2);
  g_autoptr(GVariant) result = NULL;
  g_autoptr(GError) error = NULL;
  guint f;

  g_test_summary ("Spawned workers: an unexported function fails at submit time, an unknown name "
                  "and a task's error fail the call, a worker that dies fails it with "
                  "WORKER_DIED and the pool goes on");

  f = mpg_pool_add_function (pool, static_task, NULL, NULL);
  result = mpg_pool_map (pool, f, g_variant_new_parsed ("[1]"), 0, NULL, &error);
  g_assert_null (result);
  g_assert_error (error, MPG_ERROR, MPG_ERROR_UNKNOWN_TASK);
  g_clear_error (&error);

  f = mpg_pool_add_named_function (pool, "spawn_test_nothing_here");
  result = mpg_pool_apply (pool, f, NULL, NULL, &error);
  g_assert_error (error, MPG_ERROR, MPG_ERROR_UNKNOWN_TASK);
  g_clear_error (&error);

  f = mpg_pool_add_function (pool, spawn_test_fail, NULL, NULL);
  result = mpg_pool_apply (pool, f, g_variant_new_string ("x"), NULL, &error);
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_PERMISSION_DENIED);
  g_clear_error (&error);

  f = mpg_pool_add_function (pool, spawn_test_die, NULL, NULL);
  result = mpg_pool_apply (pool, f, NULL, NULL, &error);
  g_assert_error (error, MPG_ERROR, MPG_ERROR_WORKER_DIED);
  g_clear_error (&error);

  f = mpg_pool_add_function (pool, spawn_test_square, NULL, NULL);
  result = mpg_pool_apply (pool, f, g_variant_new_int32 (5), NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpint (g_variant_get_int32 (result), ==, 25);
}

static void
test_spawn_pool_initializer (void)
{
  g_autoptr(MpgPool) pool = NULL;
  g_autoptr(GVariant) result = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *text = NULL;
  guint f;

  g_test_summary ("A spawned worker runs the initializer by name with its argument");

  /* mpg_pool_new_full() takes the default start method. */
  mpg_set_start_method (method);
  pool = mpg_pool_new_full (2, spawn_test_init, NULL, NULL, g_variant_new_int32 (77), 0);
  mpg_set_start_method (MPG_START_METHOD_DEFAULT);
  g_assert_cmpint (mpg_pool_get_start_method (pool), ==, method);

  f = mpg_pool_add_function (pool, spawn_test_read_init, NULL, NULL);
  result = mpg_pool_map (pool, f, g_variant_new_parsed ("[0, 0, 0, 0]"), 1, NULL, &error);
  g_assert_no_error (error);
  text = g_variant_print (result, FALSE);
  g_assert_cmpstr (text, ==, "[77, 77, 77, 77]");
}

static void
test_spawn_pool_initializer_queue (void)
{
  g_autoptr(MpgQueue) q = NULL;
  g_autoptr(GUnixFDList) fds = g_unix_fd_list_new ();
  g_autoptr(MpgPool) pool = NULL;
  g_autoptr(GVariant) handle = NULL;
  g_autoptr(GVariant) result = NULL;
  g_autoptr(GError) error = NULL;
  gint32 sum = 0;
  guint f;

  g_test_summary ("A queue given to the workers through the initializer's argument (handle and "
                  "fds), as multiprocessing's Pool(initializer=, initargs=(q,))");

  q = mpg_queue_new (0, &error);
  g_assert_no_error (error);
  mpg_set_start_method (method);
  handle = mpg_queue_to_handle (q, fds, &error);
  g_assert_no_error (error);
  pool = mpg_pool_new_full (2, spawn_test_init_queue, NULL, NULL, handle, 0);
  mpg_set_start_method (MPG_START_METHOD_DEFAULT);
  mpg_pool_set_initializer_name (pool, "spawn_test_init_queue", fds);

  f = mpg_pool_add_function (pool, spawn_test_put_item, NULL, NULL);
  result = mpg_pool_map (pool, f, g_variant_new_parsed ("[1, 2, 3, 4]"), 1, NULL, &error);
  g_assert_no_error (error);
  for (guint i = 0; i < 4; i++)
    {
      g_autoptr(GVariant) v = mpg_queue_get (q, TRUE, 10000, NULL, &error);

      g_assert_no_error (error);
      sum += g_variant_get_int32 (v);
    }
  g_assert_cmpint (sum, ==, 10);
}

/* Threads that keep GLib busy (type-info locks, GTask's thread pool, the
 * allocator) while processes are started: a fork could copy a lock that
 * one of them holds; an exec'd child starts afresh. */
static gint stop_threads;

static gpointer
busy_thread (gpointer data)
{
  while (!g_atomic_int_get (&stop_threads))
    {
      g_autoptr(GVariant) v = g_variant_ref_sink (g_variant_new_parsed ("[{'a', <(1, [2, 3])>}]"));
      g_autofree char *text = g_variant_print (v, TRUE);
    }
  return NULL;
}

static void
test_spawn_busy_parent (void)
{
  guint n = g_test_slow () ? 1000 : 30;
  GThread *threads[3];
  guint hangs = 0;

  g_test_summary ("Spawned processes start and finish in a parent whose threads are busy in "
                  "GLib (run with -m slow for 1,000)");

  /* A stress test, not a memory check: under valgrind, which runs one
   * thread at a time, the busy threads starve the rest (seen: a run killed
   * by its 300 s alarm). tests/fork-safety is not run there either. */
  if (g_getenv ("MPG_TEST_VALGRIND") != NULL)
    {
      g_test_skip ("a stress test: not under valgrind");
      return;
    }

  g_atomic_int_set (&stop_threads, 0);
  for (guint i = 0; i < G_N_ELEMENTS (threads); i++)
    threads[i] = g_thread_new ("busy", busy_thread, NULL);

  for (guint i = 0; i < n; i++)
    {
      g_autoptr(MpgProcess) p = spawn_process (spawn_test_square, g_variant_new_int32 ((gint32) i));
      g_autoptr(GVariant) result = NULL;
      g_autoptr(GError) error = NULL;

      g_assert_true (mpg_process_start (p, &error));
      if (!mpg_process_join (p, 10000, NULL, &error))
        {
          hangs++;
          g_clear_error (&error);
          mpg_process_kill (p, NULL);
          mpg_process_join (p, -1, NULL, NULL);
          continue;
        }
      result = mpg_process_dup_result (p, &error);
      g_assert_no_error (error);
      g_assert_cmpint (g_variant_get_int32 (result), ==, (gint32) (i * i));
    }

  g_atomic_int_set (&stop_threads, 1);
  for (guint i = 0; i < G_N_ELEMENTS (threads); i++)
    g_thread_join (threads[i]);

  g_test_message ("%u of %u processes hung", hangs, n);
  g_assert_cmpuint (hangs, ==, 0);
}

typedef struct
{
  MpgStartMethod method;
  GTestFunc func;
} TestCase;

static void
run_test (gconstpointer data)
{
  const TestCase *test_case = data;

  method = test_case->method;
  test_case->func ();
}

static const struct
{
  const char *name;
  MpgStartMethod method;
} methods[] = {
  { "Spawn", MPG_START_METHOD_SPAWN },
  { "ForkServer", MPG_START_METHOD_FORKSERVER },
};

static const struct
{
  const char *name;
  GTestFunc func;
} tests[] = {
  { "process", test_spawn_process },
  { "process-error", test_spawn_process_error },
  { "process-unnamed", test_spawn_process_unnamed },
  { "process-named", test_spawn_process_named },
  { "process-queue", test_spawn_process_queue },
  { "process-fds", test_spawn_process_fds },
  { "process-terminate", test_spawn_process_terminate },
  { "pool-map", test_spawn_pool_map },
  { "pool-errors", test_spawn_pool_errors },
  { "pool-initializer", test_spawn_pool_initializer },
  { "pool-initializer-queue", test_spawn_pool_initializer_queue },
  { "busy-parent", test_spawn_busy_parent },
};

int
main (int    argc,
      char **argv)
{
  /* First: in a spawned worker this runs the task and never returns. */
  mpg_init (&argc, &argv);

  g_test_init (&argc, &argv, NULL);
  g_timeout_add_seconds (300, guard_cb, NULL);
  alarm (300);

  for (guint m = 0; m < G_N_ELEMENTS (methods); m++)
    {
      for (guint t = 0; t < G_N_ELEMENTS (tests); t++)
        {
          g_autofree char *path = g_strdup_printf ("/Mpg/%s/%s", methods[m].name, tests[t].name);
          TestCase *test_case = g_new (TestCase, 1);

          test_case->method = methods[m].method;
          test_case->func = tests[t].func;
          g_test_add_data_func_full (path, test_case, run_test, g_free);
        }
    }

  return g_test_run ();
}
