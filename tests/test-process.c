/* test-process.c: MpgProcess
 *
 * Copyright 2026 The libmpg authors
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#define _GNU_SOURCE

#include <dirent.h>
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include <libmpg.h>

#define TEST_ERROR (test_error_quark ())
static G_DEFINE_QUARK (mpg-test-error-quark, test_error)

/* Bounds every wait of these tests: a hang is a failure, not a time-out of
 * the whole run. */
#define JOIN_TIMEOUT_MS 10000

static gboolean
under_valgrind (void)
{
  return g_getenv ("MPG_TEST_VALGRIND") != NULL;
}

/* The start method of this run: MPG_TEST_START_METHOD (fork, spawn or
 * forkserver; fork when unset), read in main(). Each method is a meson
 * test of its own: test-process, test-process-spawn,
 * test-process-forkserver. */
static MpgStartMethod method = MPG_START_METHOD_FORK;

/* Targets. Exported (the program is linked with export_dynamic), so that
 * a spawned or forkserver child, which is this program run again, finds
 * them by name. */

G_MODULE_EXPORT GVariant *return_greeting      (GVariant *arg, gpointer user_data, GError **error);
G_MODULE_EXPORT GVariant *return_nothing       (GVariant *arg, gpointer user_data, GError **error);
G_MODULE_EXPORT GVariant *fail_with_error      (GVariant *arg, gpointer user_data, GError **error);
G_MODULE_EXPORT GVariant *fail_with_io_error   (GVariant *arg, gpointer user_data, GError **error);
G_MODULE_EXPORT GVariant *fail_with_odd_domain (GVariant *arg, gpointer user_data, GError **error);
G_MODULE_EXPORT G_NORETURN GVariant *do_abort (GVariant *arg, gpointer user_data, GError **error);
G_MODULE_EXPORT GVariant *do_segfault          (GVariant *arg, gpointer user_data, GError **error);
G_MODULE_EXPORT G_NORETURN GVariant *do_exit_3 (GVariant *arg, gpointer user_data, GError **error);
G_MODULE_EXPORT G_NORETURN GVariant *sleep_forever (GVariant *arg, gpointer user_data, GError **error);
G_MODULE_EXPORT GVariant *sleep_ms             (GVariant *arg, gpointer user_data, GError **error);
G_MODULE_EXPORT GVariant *return_large         (GVariant *arg, gpointer user_data, GError **error);
G_MODULE_EXPORT GVariant *describe_self        (GVariant *arg, gpointer user_data, GError **error);
G_MODULE_EXPORT GVariant *start_grandchild     (GVariant *arg, gpointer user_data, GError **error);
G_MODULE_EXPORT GVariant *report_dispositions  (GVariant *arg, gpointer user_data, GError **error);
G_MODULE_EXPORT GVariant *describe_parent      (GVariant *arg, gpointer user_data, GError **error);
G_MODULE_EXPORT GVariant *describe_grandchild_parent (GVariant *arg, gpointer user_data, GError **error);


GVariant *
return_greeting (GVariant  *arg,
                 gpointer   user_data,
                 GError   **error)
{
  const char *name;

  g_variant_get (arg, "(&s)", &name);
  return g_variant_new_take_string (g_strdup_printf ("hello %s", name));
}

GVariant *
return_nothing (GVariant  *arg,
                gpointer   user_data,
                GError   **error)
{
  return NULL;
}

GVariant *
fail_with_error (GVariant  *arg,
                 gpointer   user_data,
                 GError   **error)
{
  g_set_error (error, TEST_ERROR, 42, "the task failed on purpose");
  return NULL;
}

GVariant *
fail_with_io_error (GVariant  *arg,
                    gpointer   user_data,
                    GError   **error)
{
  g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_PERMISSION_DENIED, "no access");
  return NULL;
}

GVariant *
fail_with_odd_domain (GVariant  *arg,
                      gpointer   user_data,
                      GError   **error)
{
  g_set_error_literal (error, g_quark_from_static_string ("odd domain!"), 7, "odd");
  return NULL;
}

static void
no_core_dump (void)
{
  struct rlimit rl = { 0, 0 };

  setrlimit (RLIMIT_CORE, &rl);
}

GVariant *
do_abort (GVariant  *arg,
          gpointer   user_data,
          GError   **error)
{
  no_core_dump ();
  abort ();
}

GVariant *
do_segfault (GVariant  *arg,
             gpointer   user_data,
             GError   **error)
{
  no_core_dump ();
  raise (SIGSEGV);
  return NULL;
}

GVariant *
do_exit_3 (GVariant  *arg,
           gpointer   user_data,
           GError   **error)
{
  _exit (3);
}

GVariant *
sleep_forever (GVariant  *arg,
               gpointer   user_data,
               GError   **error)
{
  for (;;)
    pause ();
}

GVariant *
sleep_ms (GVariant  *arg,
          gpointer   user_data,
          GError   **error)
{
  g_usleep ((gulong) g_variant_get_int32 (arg) * 1000);
  return g_variant_new_int32 (g_variant_get_int32 (arg));
}

GVariant *
return_large (GVariant  *arg,
              gpointer   user_data,
              GError   **error)
{
  gsize n = (gsize) g_variant_get_int32 (arg);
  guint8 *data = g_malloc (n);

  for (gsize i = 0; i < n; i++)
    data[i] = (guint8) (i * 7);
  return g_variant_new_from_data (G_VARIANT_TYPE_BYTESTRING, data, n, TRUE, g_free, data);
}

static GVariant *
return_user_data (GVariant  *arg,
                  gpointer   user_data,
                  GError   **error)
{
  return g_variant_new_string (user_data);
}

/* Describes the child's view of the world, for the parent to check. */
GVariant *
describe_self (GVariant  *arg,
               gpointer   user_data,
               GError   **error)
{
  MpgProcess *current = mpg_current_process ();
  MpgProcess *parent = mpg_parent_process ();
  struct sigaction sa;
  sigset_t mask;

  sigaction (SIGTERM, NULL, &sa);
  sigprocmask (SIG_SETMASK, NULL, &mask);

  return g_variant_new ("(sisiibbbb)",
                        mpg_process_get_name (current),
                        mpg_process_get_pid (current),
                        parent ? mpg_process_get_name (parent) : "",
                        parent ? mpg_process_get_pid (parent) : -1,
                        (gint32) getppid (),
                        parent != NULL && mpg_process_is_alive (parent),
                        sa.sa_handler == SIG_DFL,
                        !sigismember (&mask, SIGUSR1),
                        g_main_context_get_thread_default () != NULL &&
                          g_main_context_get_thread_default () != g_main_context_default ());
}

/* Helpers */

/* A process for this run's start method (fork: left at the default). */
static MpgProcess *
new_process (GVariant    *args,
             MpgTaskFunc  func)
{
  MpgProcess *p = mpg_process_new (args, func, NULL, NULL);

  if (method != MPG_START_METHOD_FORK)
    mpg_process_set_start_method (p, method);
  return p;
}

static MpgProcess *
start_process (GVariant    *args,
               MpgTaskFunc  func)
{
  g_autoptr(GError) error = NULL;
  MpgProcess *p = new_process (args, func);

  mpg_process_start (p, &error);
  g_assert_no_error (error);
  return p;
}

static void
join_ok (MpgProcess *p)
{
  g_autoptr(GError) error = NULL;

  mpg_process_join (p, JOIN_TIMEOUT_MS, NULL, &error);
  g_assert_no_error (error);
}

static gint
run_to_exitcode (MpgTaskFunc func)
{
  g_autoptr(MpgProcess) p = start_process (NULL, func);

  join_ok (p);
  return mpg_process_get_exitcode (p);
}

static gboolean
pid_exists (pid_t pid)
{
  g_autofree char *path = g_strdup_printf ("/proc/%d", pid);

  return g_file_test (path, G_FILE_TEST_EXISTS);
}

/* The parent of @pid, from /proc/PID/stat. */
static pid_t
ppid_of (pid_t pid)
{
  g_autofree char *path = g_strdup_printf ("/proc/%d/stat", pid);
  g_autofree char *contents = NULL;
  const char *after_comm;
  char state;
  int ppid = -1;

  if (!g_file_get_contents (path, &contents, NULL, NULL))
    return -1;
  after_comm = strrchr (contents, ')');
  if (after_comm == NULL || sscanf (after_comm + 1, " %c %d", &state, &ppid) != 2)
    return -1;
  return ppid;
}

static guint
count_open_fds (void)
{
  DIR *dir = opendir ("/proc/self/fd");
  struct dirent *ent;
  guint n = 0;

  g_assert_nonnull (dir);
  while ((ent = readdir (dir)) != NULL)
    if (ent->d_name[0] != '.')
      n++;
  closedir (dir);
  return n;
}

/* Children of this process according to the kernel, zombies included. */
static guint
count_kernel_children (void)
{
  g_autofree char *path = g_strdup_printf ("/proc/%d/task/%d/children", getpid (), getpid ());
  g_autofree char *contents = NULL;
  g_auto(GStrv) pids = NULL;
  guint n = 0;

  /* Children of every thread: forks may come from the library's fork thread. */
  g_autoptr(GDir) tasks = g_dir_open ("/proc/self/task", 0, NULL);
  const char *tid;

  g_assert_nonnull (tasks);
  while ((tid = g_dir_read_name (tasks)) != NULL)
    {
      g_free (path);
      g_free (contents);
      g_strfreev (pids);
      path = g_strdup_printf ("/proc/self/task/%s/children", tid);
      contents = NULL;
      pids = NULL;
      if (!g_file_get_contents (path, &contents, NULL, NULL))
        continue;
      pids = g_strsplit (g_strstrip (contents), " ", -1);
      for (guint i = 0; pids[i] != NULL; i++)
        if (pids[i][0] != '\0')
          n++;
    }
  return n;
}

/* Children the kernel shows when none of the tests' children is left: a
 * forkserver run's server is a child of this process from its first start
 * on, until the program exits. */
static guint
idle_children (void)
{
  return method == MPG_START_METHOD_FORKSERVER ? 1 : 0;
}

/* Tests */

static void
test_process_result (void)
{
  g_autoptr(MpgProcess) p = NULL;
  g_autoptr(GVariant) result = NULL;
  g_autoptr(GError) error = NULL;

  g_test_summary ("A target's return value comes back to the parent; exit code 0");

  p = start_process (g_variant_new ("(s)", "bob"), return_greeting);
  join_ok (p);

  g_assert_cmpint (mpg_process_get_exitcode (p), ==, 0);
  result = mpg_process_dup_result (p, &error);
  g_assert_no_error (error);
  g_assert_nonnull (result);
  g_assert_cmpstr (g_variant_get_string (result, NULL), ==, "hello bob");
  g_assert_false (mpg_process_is_alive (p));
}

static void
test_process_no_target (void)
{
  g_autoptr(MpgProcess) p = NULL;
  g_autoptr(GVariant) result = NULL;
  g_autoptr(GError) error = NULL;

  g_test_summary ("A process without target starts, does nothing and exits 0");

  p = new_process (NULL, NULL);
  g_assert_cmpint (mpg_process_get_exitcode (p), ==, MPG_PROCESS_EXITCODE_NONE);
  g_assert_cmpint (mpg_process_get_pid (p), ==, 0);
  mpg_process_start (p, &error);
  g_assert_no_error (error);
  g_assert_cmpint (mpg_process_get_pid (p), >, 0);
  join_ok (p);
  g_assert_cmpint (mpg_process_get_exitcode (p), ==, 0);

  result = mpg_process_dup_result (p, &error);
  g_assert_no_error (error);
  g_assert_null (result);

  g_clear_object (&p);
  p = start_process (NULL, return_nothing);
  join_ok (p);
  result = mpg_process_dup_result (p, &error);
  g_assert_no_error (error);
  g_assert_null (result);
}

static void
test_process_user_data (void)
{
  g_autoptr(MpgProcess) p = NULL;
  g_autoptr(GVariant) result = NULL;
  g_autoptr(GError) error = NULL;
  char *data = g_strdup ("closure data");

  g_test_summary ("The target's user data reaches the child; it is freed in the parent");

  p = mpg_process_new (NULL, return_user_data, data, g_free);
  mpg_process_start (p, &error);
  g_assert_no_error (error);
  join_ok (p);
  result = mpg_process_dup_result (p, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (g_variant_get_string (result, NULL), ==, "closure data");
}

static void
test_process_exitcodes (void)
{
  g_test_summary ("Exit codes as multiprocessing: 0, 1, -6, -11, exit status");

  g_assert_cmpint (run_to_exitcode (return_nothing), ==, 0);
  g_assert_cmpint (run_to_exitcode (fail_with_error), ==, 1);
  g_assert_cmpint (run_to_exitcode (do_abort), ==, -SIGABRT);
  g_assert_cmpint (run_to_exitcode (do_segfault), ==, -SIGSEGV);
  g_assert_cmpint (run_to_exitcode (do_exit_3), ==, 3);
}

static void
test_process_terminate_kill (void)
{
  g_autoptr(MpgProcess) p = NULL;
  g_autoptr(MpgProcess) q = NULL;
  g_autoptr(GVariant) result = NULL;
  g_autoptr(GError) error = NULL;

  g_test_summary ("terminate() gives -15, kill() gives -9; the result says the worker died");

  p = start_process (NULL, sleep_forever);
  g_assert_true (mpg_process_is_alive (p));
  mpg_process_terminate (p, &error);
  g_assert_no_error (error);
  join_ok (p);
  g_assert_cmpint (mpg_process_get_exitcode (p), ==, -SIGTERM);

  /* Signalling a process that has ended is harmless. */
  mpg_process_terminate (p, &error);
  g_assert_no_error (error);

  q = start_process (NULL, sleep_forever);
  mpg_process_kill (q, &error);
  g_assert_no_error (error);
  join_ok (q);
  g_assert_cmpint (mpg_process_get_exitcode (q), ==, -SIGKILL);

  result = mpg_process_dup_result (q, &error);
  g_assert_error (error, MPG_ERROR, MPG_ERROR_WORKER_DIED);
  g_assert_null (result);
}

static void
test_process_errors_come_back (void)
{
  g_autoptr(MpgProcess) p = NULL;
  g_autoptr(GVariant) result = NULL;
  g_autoptr(GError) error = NULL;

  g_test_summary ("A task's GError comes back with its domain, code and message");

  p = start_process (NULL, fail_with_error);
  join_ok (p);
  result = mpg_process_dup_result (p, &error);
  g_assert_error (error, TEST_ERROR, 42);
  g_assert_cmpstr (error->message, ==, "the task failed on purpose");
  g_assert_null (result);
  g_clear_error (&error);
  g_clear_object (&p);

  p = start_process (NULL, fail_with_io_error);
  join_ok (p);
  result = mpg_process_dup_result (p, &error);
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_PERMISSION_DENIED);
  g_clear_error (&error);
  g_clear_object (&p);

  /* A domain name that cannot be a real one is not recreated. */
  p = start_process (NULL, fail_with_odd_domain);
  join_ok (p);
  result = mpg_process_dup_result (p, &error);
  g_assert_error (error, MPG_ERROR, MPG_ERROR_REMOTE);
  g_assert_nonnull (strstr (error->message, "odd domain!:7: odd"));
}

static void
test_process_large_result (void)
{
  g_autoptr(MpgProcess) p = NULL;
  g_autoptr(GVariant) result = NULL;
  g_autoptr(GError) error = NULL;
  const gint32 size = 8 * 1024 * 1024;
  const guint8 *data;
  gsize len;

  g_test_summary ("A result larger than a pipe's buffer does not block the child");

  p = start_process (g_variant_new_int32 (size), return_large);
  join_ok (p);
  g_assert_cmpint (mpg_process_get_exitcode (p), ==, 0);
  result = mpg_process_dup_result (p, &error);
  g_assert_no_error (error);
  data = g_variant_get_fixed_array (result, &len, 1);
  g_assert_cmpuint (len, ==, size);
  for (gsize i = 0; i < len; i += 4099)
    g_assert_cmpuint (data[i], ==, (guint8) (i * 7));
}

static void
count_notify (GObject    *object,
              GParamSpec *pspec,
              gpointer    user_data)
{
  guint *count = user_data;

  (*count)++;
}

static void
test_process_names (void)
{
  g_autoptr(MpgProcess) a = mpg_process_new (NULL, NULL, NULL, NULL);
  g_autoptr(MpgProcess) b = mpg_process_new (NULL, NULL, NULL, NULL);
  g_autoptr(MpgProcess) c = NULL;
  guint na, nb;
  guint notified = 0;

  g_test_summary ("Default names count up as Process-N; names can be set, with notify");

  g_assert_true (g_str_has_prefix (mpg_process_get_name (a), "Process-"));
  na = atoi (mpg_process_get_name (a) + strlen ("Process-"));
  nb = atoi (mpg_process_get_name (b) + strlen ("Process-"));
  g_assert_cmpuint (na, >, 0);
  g_assert_cmpuint (nb, ==, na + 1);

  g_signal_connect (b, "notify::name", G_CALLBACK (count_notify), &notified);
  mpg_process_set_name (b, "worker");
  mpg_process_set_name (b, "worker");
  g_assert_cmpuint (notified, ==, 1);
  g_assert_cmpstr (mpg_process_get_name (b), ==, "worker");

  c = g_object_new (MPG_TYPE_PROCESS, "name", "other", "daemon", TRUE, NULL);
  g_assert_cmpstr (mpg_process_get_name (c), ==, "other");
  g_assert_true (mpg_process_get_daemon (c));
  g_assert_cmpint (mpg_process_get_start_method (c), ==, MPG_START_METHOD_DEFAULT);
}

static void
test_process_notify (void)
{
  g_autoptr(MpgProcess) p = new_process (NULL, return_nothing);
  g_autoptr(GError) error = NULL;
  guint pid_notified = 0, exit_notified = 0;

  g_test_summary ("pid and exitcode are notified when they change");

  g_signal_connect (p, "notify::pid", G_CALLBACK (count_notify), &pid_notified);
  g_signal_connect (p, "notify::exitcode", G_CALLBACK (count_notify), &exit_notified);
  mpg_process_start (p, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (pid_notified, ==, 1);
  join_ok (p);
  g_assert_cmpuint (exit_notified, ==, 1);
  join_ok (p);
  g_assert_cmpuint (exit_notified, ==, 1);
}

static void
test_process_join_timeout (void)
{
  g_autoptr(MpgProcess) p = NULL;
  g_autoptr(GError) error = NULL;
  gint64 start;

  g_test_summary ("join() with a timeout fails with MPG_ERROR_TIMEOUT; the child lives on");

  p = start_process (NULL, sleep_forever);
  start = g_get_monotonic_time ();
  g_assert_false (mpg_process_join (p, 100, NULL, &error));
  g_assert_error (error, MPG_ERROR, MPG_ERROR_TIMEOUT);
  g_assert_cmpint (g_get_monotonic_time () - start, >=, 100 * 1000);
  g_assert_true (mpg_process_is_alive (p));
  g_assert_cmpint (mpg_process_get_exitcode (p), ==, MPG_PROCESS_EXITCODE_NONE);
  g_clear_error (&error);

  /* A zero timeout polls. */
  g_assert_false (mpg_process_join (p, 0, NULL, &error));
  g_assert_error (error, MPG_ERROR, MPG_ERROR_TIMEOUT);
  g_clear_error (&error);

  mpg_process_kill (p, &error);
  g_assert_no_error (error);
  join_ok (p);
  g_assert_cmpint (mpg_process_get_exitcode (p), ==, -SIGKILL);
}

static gboolean
cancel_later (gpointer data)
{
  g_cancellable_cancel (data);
  return G_SOURCE_REMOVE;
}

static gpointer
cancel_from_thread (gpointer data)
{
  g_usleep (50 * 1000);
  g_cancellable_cancel (data);
  return NULL;
}

static void
test_process_join_cancel (void)
{
  g_autoptr(MpgProcess) p = NULL;
  g_autoptr(GCancellable) cancellable = g_cancellable_new ();
  g_autoptr(GError) error = NULL;
  GThread *thread;

  g_test_summary ("A cancelled join fails with G_IO_ERROR_CANCELLED and leaves the child running");

  p = start_process (NULL, sleep_forever);
  thread = g_thread_new ("canceller", cancel_from_thread, cancellable);
  g_assert_false (mpg_process_join (p, JOIN_TIMEOUT_MS, cancellable, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_thread_join (thread);
  g_assert_true (mpg_process_is_alive (p));
  g_clear_error (&error);

  mpg_process_terminate (p, &error);
  g_assert_no_error (error);
  join_ok (p);
  g_assert_cmpint (mpg_process_get_exitcode (p), ==, -SIGTERM);
}

typedef struct
{
  GMainLoop *loop;
  guint pending;
  GError *error;
  gboolean timed_out;
} AsyncState;

static void
joined_cb (GObject      *object,
           GAsyncResult *result,
           gpointer      user_data)
{
  AsyncState *state = user_data;

  if (!mpg_process_join_finish (MPG_PROCESS (object), result, &state->error))
    g_assert_nonnull (state->error);
  if (--state->pending == 0)
    g_main_loop_quit (state->loop);
}

static gboolean
async_guard (gpointer user_data)
{
  AsyncState *state = user_data;

  state->timed_out = TRUE;
  g_main_loop_quit (state->loop);
  return G_SOURCE_REMOVE;
}

static gboolean
tick (gpointer user_data)
{
  guint *ticks = user_data;

  (*ticks)++;
  return G_SOURCE_CONTINUE;
}

static void
test_process_join_async (void)
{
  g_autoptr(MpgProcess) p = NULL;
  g_autoptr(MpgProcess) q = NULL;
  AsyncState state = { NULL, 0, NULL, FALSE };
  guint guard, ticker, ticks = 0;

  g_test_summary ("join_async completes in a running main loop, which keeps running meanwhile");

  state.loop = g_main_loop_new (NULL, FALSE);
  p = start_process (g_variant_new_int32 (200), sleep_ms);
  q = start_process (g_variant_new_int32 (50), sleep_ms);

  /* Two joins of one process, one of another, all at once. */
  state.pending = 3;
  mpg_process_join_async (p, NULL, joined_cb, &state);
  mpg_process_join_async (p, NULL, joined_cb, &state);
  mpg_process_join_async (q, NULL, joined_cb, &state);
  ticker = g_timeout_add (10, tick, &ticks);
  guard = g_timeout_add_seconds (10, async_guard, &state);
  g_main_loop_run (state.loop);
  g_source_remove (ticker);

  g_assert_false (state.timed_out);
  g_source_remove (guard);
  g_assert_no_error (state.error);
  g_assert_cmpint (mpg_process_get_exitcode (p), ==, 0);
  g_assert_cmpint (mpg_process_get_exitcode (q), ==, 0);
  /* The loop kept dispatching while the children ran. */
  g_assert_cmpuint (ticks, >=, 5);

  g_main_loop_unref (state.loop);
}

static void
test_process_join_async_cancel (void)
{
  g_autoptr(MpgProcess) p = NULL;
  g_autoptr(GCancellable) cancellable = g_cancellable_new ();
  g_autoptr(GError) error = NULL;
  AsyncState state = { NULL, 1, NULL, FALSE };
  guint guard;

  g_test_summary ("Cancelling join_async completes it with G_IO_ERROR_CANCELLED");

  state.loop = g_main_loop_new (NULL, FALSE);
  p = start_process (NULL, sleep_forever);
  mpg_process_join_async (p, cancellable, joined_cb, &state);
  g_timeout_add (50, cancel_later, cancellable);
  guard = g_timeout_add_seconds (10, async_guard, &state);
  g_main_loop_run (state.loop);
  g_assert_false (state.timed_out);
  g_source_remove (guard);
  g_assert_error (state.error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_clear_error (&state.error);
  g_assert_true (mpg_process_is_alive (p));

  mpg_process_kill (p, &error);
  g_assert_no_error (error);
  join_ok (p);
  g_main_loop_unref (state.loop);
}

static gpointer
join_in_thread (gpointer data)
{
  MpgProcess *p = data;
  GError *error = NULL;

  mpg_process_join (p, JOIN_TIMEOUT_MS, NULL, &error);
  return error;
}

static void
test_process_join_threads (void)
{
  g_autoptr(MpgProcess) p = NULL;
  GThread *threads[4];

  g_test_summary ("Several threads can join one process at once");

  p = start_process (g_variant_new_int32 (100), sleep_ms);
  for (guint i = 0; i < G_N_ELEMENTS (threads); i++)
    threads[i] = g_thread_new ("joiner", join_in_thread, p);
  for (guint i = 0; i < G_N_ELEMENTS (threads); i++)
    {
      GError *error = g_thread_join (threads[i]);

      g_assert_no_error (error);
    }
  g_assert_cmpint (mpg_process_get_exitcode (p), ==, 0);
}

static void
test_process_misuse (void)
{
  g_autoptr(MpgProcess) p = new_process (NULL, sleep_forever);
  g_autoptr(GVariant) result = NULL;
  g_autoptr(GError) error = NULL;

  g_test_summary ("Misuse is a GError: join, signal or result before start, start twice, close while running");

  g_assert_false (mpg_process_join (p, 0, NULL, &error));
  g_assert_error (error, MPG_ERROR, MPG_ERROR_INVALID_STATE);
  g_clear_error (&error);
  g_assert_false (mpg_process_terminate (p, &error));
  g_assert_error (error, MPG_ERROR, MPG_ERROR_INVALID_STATE);
  g_clear_error (&error);
  g_assert_false (mpg_process_is_alive (p));
  g_assert_cmpint (mpg_process_get_sentinel (p), ==, -1);

  mpg_process_start (p, &error);
  g_assert_no_error (error);
  g_assert_cmpint (mpg_process_get_sentinel (p), >=, 0);

  g_assert_false (mpg_process_start (p, &error));
  g_assert_error (error, MPG_ERROR, MPG_ERROR_INVALID_STATE);
  g_clear_error (&error);

  result = mpg_process_dup_result (p, &error);
  g_assert_error (error, MPG_ERROR, MPG_ERROR_INVALID_STATE);
  g_assert_null (result);
  g_clear_error (&error);

  g_assert_false (mpg_process_close (p, &error));
  g_assert_error (error, MPG_ERROR, MPG_ERROR_INVALID_STATE);
  g_clear_error (&error);

  g_assert_false (mpg_process_join (mpg_current_process (), 0, NULL, &error));
  g_assert_error (error, MPG_ERROR, MPG_ERROR_INVALID_STATE);
  g_clear_error (&error);

  mpg_process_kill (p, &error);
  g_assert_no_error (error);
  join_ok (p);

  g_assert_true (mpg_process_close (p, &error));
  g_assert_no_error (error);
  g_assert_true (mpg_process_close (p, &error));
  g_assert_cmpint (mpg_process_get_sentinel (p), ==, -1);

  g_assert_false (mpg_process_start (p, &error));
  g_assert_error (error, MPG_ERROR, MPG_ERROR_CLOSED);
  g_clear_error (&error);
  g_assert_false (mpg_process_join (p, 0, NULL, &error));
  g_assert_error (error, MPG_ERROR, MPG_ERROR_CLOSED);
  g_clear_error (&error);
  result = mpg_process_dup_result (p, &error);
  g_assert_error (error, MPG_ERROR, MPG_ERROR_CLOSED);
  g_clear_error (&error);
  g_assert_false (mpg_process_is_alive (p));
}

static void
test_process_setters_after_start (void)
{
  if (g_test_subprocess ())
    {
      g_autoptr(MpgProcess) p = start_process (NULL, return_nothing);

      mpg_process_set_daemon (p, TRUE);
      join_ok (p);
      return;
    }

  g_test_summary ("Changing daemon after start is refused with a critical warning");

  g_test_trap_subprocess (NULL, 10 * G_USEC_PER_SEC, G_TEST_SUBPROCESS_DEFAULT);
  g_test_trap_assert_failed ();
  g_test_trap_assert_stderr ("*CRITICAL*check_not_started*");
}

static void
test_process_no_zombie (void)
{
  g_autoptr(MpgProcess) p = NULL;
  g_autoptr(MpgProcess) q = NULL;
  g_autoptr(GList) children = NULL;
  pid_t pid;

  g_test_summary ("A joined child leaves no zombie; an unjoined one is reaped by the next start()");

  p = start_process (NULL, return_nothing);
  pid = mpg_process_get_pid (p);
  join_ok (p);
  g_assert_false (pid_exists (pid));

  /* Not joined: reaped by the cleanup in the next start(), as Python does. */
  g_clear_object (&p);
  p = start_process (NULL, return_nothing);
  pid = mpg_process_get_pid (p);
  g_clear_object (&p);
  g_usleep (200 * 1000);
  q = start_process (NULL, return_nothing);
  g_assert_false (pid_exists (pid));
  join_ok (q);

  children = mpg_active_children ();
  g_assert_null (children);
  g_assert_cmpuint (count_kernel_children (), ==, idle_children ());
}

static void
test_process_many_cycles (void)
{
  /* A spawn costs a few ms more than a fork. */
  guint cycles = under_valgrind () ? 30 : method == MPG_START_METHOD_FORK ? 500 : 100;
  guint fds_before, fds_after;
  GList *children;

  g_test_summary ("Many start/join cycles leak no fd and leave no child");

  /* The first start creates the process-wide state. */
  g_object_unref (start_process (NULL, return_nothing));
  while ((children = mpg_active_children ()) != NULL)
    {
      g_list_free_full (children, g_object_unref);
      g_usleep (1000);
    }

  fds_before = count_open_fds ();
  for (guint i = 0; i < cycles; i++)
    {
      g_autoptr(MpgProcess) p = start_process (g_variant_new ("(s)", "x"), return_greeting);
      g_autoptr(GVariant) result = NULL;
      g_autoptr(GError) error = NULL;

      join_ok (p);
      g_assert_cmpint (mpg_process_get_exitcode (p), ==, 0);
      result = mpg_process_dup_result (p, &error);
      g_assert_no_error (error);
    }
  fds_after = count_open_fds ();

  g_assert_cmpuint (fds_after, ==, fds_before);
  g_assert_cmpuint (count_kernel_children (), ==, idle_children ());
}

static void
test_process_current_parent (void)
{
  g_autoptr(MpgProcess) p = NULL;
  g_autoptr(GVariant) result = NULL;
  g_autoptr(GError) error = NULL;
  const char *name, *parent_name;
  gint32 pid, parent_pid, real_ppid;
  gboolean parent_alive, term_default, usr1_unblocked, fresh_context;
  struct sigaction ignore;
  struct sigaction old_term;
  sigset_t block, old_mask;

  g_test_summary ("current_process() and parent_process() in parent and child; signals reset in the child");

  g_assert_cmpstr (mpg_process_get_name (mpg_current_process ()), ==, "MainProcess");
  g_assert_cmpint (mpg_process_get_pid (mpg_current_process ()), ==, getpid ());
  g_assert_true (mpg_process_is_alive (mpg_current_process ()));
  g_assert_null (mpg_parent_process ());

  /* The child must not inherit these. */
  memset (&ignore, 0, sizeof ignore);
  ignore.sa_handler = SIG_IGN;
  sigaction (SIGTERM, &ignore, &old_term);
  sigemptyset (&block);
  sigaddset (&block, SIGUSR1);
  sigprocmask (SIG_BLOCK, &block, &old_mask);

  p = start_process (NULL, describe_self);
  join_ok (p);

  sigaction (SIGTERM, &old_term, NULL);
  sigprocmask (SIG_SETMASK, &old_mask, NULL);

  result = mpg_process_dup_result (p, &error);
  g_assert_no_error (error);
  g_variant_get (result, "(&si&siibbbb)", &name, &pid, &parent_name, &parent_pid,
                 &real_ppid, &parent_alive, &term_default, &usr1_unblocked, &fresh_context);
  g_assert_cmpstr (name, ==, mpg_process_get_name (p));
  g_assert_cmpint (pid, ==, mpg_process_get_pid (p));
  g_assert_cmpstr (parent_name, ==, "MainProcess");
  g_assert_cmpint (parent_pid, ==, getpid ());
  if (method == MPG_START_METHOD_FORKSERVER)
    {
      /* The child is the server's, the server ours: parent_process() is
       * still this process, as in multiprocessing. */
      g_assert_cmpint (real_ppid, !=, getpid ());
      g_assert_cmpint (ppid_of (real_ppid), ==, getpid ());
    }
  else
    g_assert_cmpint (real_ppid, ==, getpid ());
  g_assert_true (parent_alive);
  g_assert_true (term_default);
  g_assert_true (usr1_unblocked);
  g_assert_true (fresh_context);
}

static void
test_process_active_children (void)
{
  g_autoptr(MpgProcess) p = NULL;
  g_autoptr(MpgProcess) q = NULL;
  GList *children;
  g_autoptr(GError) error = NULL;

  g_test_summary ("active_children() lists the running children");

  p = start_process (NULL, sleep_forever);
  q = start_process (NULL, return_nothing);
  join_ok (q);

  children = mpg_active_children ();
  g_assert_cmpuint (g_list_length (children), ==, 1);
  g_assert_true (children->data == p);
  g_list_free_full (children, g_object_unref);

  mpg_process_kill (p, &error);
  g_assert_no_error (error);
  join_ok (p);
  children = mpg_active_children ();
  g_assert_null (children);
}

GVariant *
start_grandchild (GVariant  *arg,
                  gpointer   user_data,
                  GError   **error)
{
  g_autoptr(MpgProcess) p = mpg_process_new (g_variant_new ("(s)", "grandchild"),
                                             return_greeting, NULL, NULL);
  g_autoptr(GVariant) result = NULL;
  gboolean join;
  gint32 grandchild_method;

  /* (join it, its start method): the run's method, from the child too. */
  g_variant_get (arg, "(bi)", &join, &grandchild_method);
  mpg_process_set_start_method (p, grandchild_method);

  if (!mpg_process_start (p, error))
    return NULL;
  if (join)
    {
      if (!mpg_process_join (p, JOIN_TIMEOUT_MS, NULL, error))
        return NULL;
      result = mpg_process_dup_result (p, error);
      if (result == NULL)
        return NULL;
    }
  return g_variant_new ("(ssi)", mpg_process_get_name (p),
                        result ? g_variant_get_string (result, NULL) : "",
                        join ? mpg_process_get_exitcode (p) : -1);
}

/* The signals test_process_signals_reset() gives handlers in the parent. */
#define HANDLED_SIGNAL (SIGRTMIN + 2)

static void
test_signal_handler (int sig)
{
}

static gboolean
is_default (int sig)
{
  struct sigaction sa;

  return sigaction (sig, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL;
}

GVariant *
report_dispositions (GVariant  *arg,
                     gpointer   user_data,
                     GError   **error)
{
  return g_variant_new ("(bbb)", is_default (SIGUSR2), is_default (HANDLED_SIGNAL),
                        is_default (SIGPIPE));
}

static void
test_process_signals_reset (void)
{
  g_autoptr(MpgProcess) p = NULL;
  g_autoptr(GVariant) result = NULL;
  g_autoptr(GError) error = NULL;
  struct sigaction handler, ignore, old_usr2, old_rt, old_pipe;
  gboolean usr2_default, rt_default, pipe_default;

  g_test_summary ("Signals the parent handles or ignores have their default disposition in the child");

  memset (&handler, 0, sizeof handler);
  handler.sa_handler = test_signal_handler;
  memset (&ignore, 0, sizeof ignore);
  ignore.sa_handler = SIG_IGN;
  sigaction (SIGUSR2, &handler, &old_usr2);
  sigaction (HANDLED_SIGNAL, &handler, &old_rt);
  sigaction (SIGPIPE, &ignore, &old_pipe);

  p = start_process (NULL, report_dispositions);
  join_ok (p);

  sigaction (SIGUSR2, &old_usr2, NULL);
  sigaction (HANDLED_SIGNAL, &old_rt, NULL);
  sigaction (SIGPIPE, &old_pipe, NULL);

  g_assert_cmpint (mpg_process_get_exitcode (p), ==, 0);
  result = mpg_process_dup_result (p, &error);
  g_assert_no_error (error);
  g_variant_get (result, "(bbb)", &usr2_default, &rt_default, &pipe_default);
  g_assert_true (usr2_default);
  g_assert_true (rt_default);
  g_assert_true (pipe_default);
}

/* The pidfds this process holds. */
static gint32
count_pidfds (void)
{
  g_autoptr(GDir) dir = g_dir_open ("/proc/self/fd", 0, NULL);
  const char *entry;
  gint32 n = 0;

  g_assert_nonnull (dir);
  while ((entry = g_dir_read_name (dir)) != NULL)
    {
      g_autofree char *path = g_build_filename ("/proc/self/fd", entry, NULL);
      g_autofree char *target = g_file_read_link (path, NULL);

      if (target != NULL && g_str_equal (target, "anon_inode:[pidfd]"))
        n++;
    }
  return n;
}

/* (parent_process() twice the same object, its name, its pid, pidfds) */
GVariant *
describe_parent (GVariant  *arg,
                 gpointer   user_data,
                 GError   **error)
{
  gint32 n_pidfds = count_pidfds ();
  MpgProcess *parent = mpg_parent_process ();

  if (parent == NULL)
    return g_variant_new ("(bsii)", FALSE, "", -1, n_pidfds);

  return g_variant_new ("(bsii)", parent == mpg_parent_process (), mpg_process_get_name (parent),
                        mpg_process_get_pid (parent), n_pidfds);
}

/* Without ever asking for its own parent: starts a grandchild that
 * describes its parent, and returns that with this process's pidfd count. */
GVariant *
describe_grandchild_parent (GVariant  *arg,
                            gpointer   user_data,
                            GError   **error)
{
  g_autoptr(MpgProcess) p = mpg_process_new (NULL, describe_parent, NULL, NULL);
  gint32 n_pidfds = count_pidfds ();
  g_autoptr(GVariant) result = NULL;

  mpg_process_set_start_method (p, g_variant_get_int32 (arg));
  if (!mpg_process_start (p, error) || !mpg_process_join (p, JOIN_TIMEOUT_MS, NULL, error))
    return NULL;
  result = mpg_process_dup_result (p, error);
  if (result == NULL)
    return NULL;
  return g_variant_new ("(@(bsii)si)", result, mpg_process_get_name (mpg_current_process ()),
                        n_pidfds);
}

static void
test_process_parent_on_demand (void)
{
  g_autoptr(MpgProcess) p = NULL;
  g_autoptr(MpgProcess) q = NULL;
  g_autoptr(GVariant) result = NULL;
  g_autoptr(GError) error = NULL;
  gboolean same;
  const char *name, *child_name;
  gint32 pid, n_pidfds, child_n_pidfds;

  g_test_summary ("parent_process() is one object, made on first use; a grandchild holds "
                  "its parent's pidfd, not its grandparent's");

  p = start_process (NULL, describe_parent);
  join_ok (p);
  result = mpg_process_dup_result (p, &error);
  g_assert_no_error (error);
  g_variant_get (result, "(b&sii)", &same, &name, &pid, &n_pidfds);
  g_assert_true (same);
  g_assert_cmpstr (name, ==, "MainProcess");
  g_assert_cmpint (pid, ==, getpid ());
  g_clear_pointer (&result, g_variant_unref);

  q = start_process (g_variant_new_int32 (method), describe_grandchild_parent);
  join_ok (q);
  g_assert_cmpint (mpg_process_get_exitcode (q), ==, 0);
  result = mpg_process_dup_result (q, &error);
  g_assert_no_error (error);
  g_variant_get (result, "((b&sii)&si)", &same, &name, &pid, &n_pidfds, &child_name,
                 &child_n_pidfds);
  g_assert_true (same);
  g_assert_cmpstr (child_name, ==, mpg_process_get_name (q));
  /* A spawned child is not told its parent's name (it says MainProcess). */
  if (method == MPG_START_METHOD_FORK)
    g_assert_cmpstr (name, ==, child_name);
  if (method != MPG_START_METHOD_FORKSERVER)
    g_assert_cmpint (pid, ==, mpg_process_get_pid (q));
  /* The child counted its parent's pidfd; the grandchild has its parent's
   * in its place (the child's own children's are closed in it). Without
   * pidfds (under valgrind) both count none. */
  g_assert_cmpint (n_pidfds, ==, child_n_pidfds);
}

static void
test_process_nested (void)
{
  g_autoptr(MpgProcess) p = NULL;
  g_autoptr(MpgProcess) q = NULL;
  g_autoptr(GVariant) result = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *expected = NULL;
  const char *name, *greeting;
  gint32 code;

  g_test_summary ("A child can start and join children of its own, named Process-N:1");

  p = start_process (g_variant_new ("(bi)", TRUE, method), start_grandchild);
  join_ok (p);
  g_assert_cmpint (mpg_process_get_exitcode (p), ==, 0);
  result = mpg_process_dup_result (p, &error);
  g_assert_no_error (error);
  g_variant_get (result, "(&s&si)", &name, &greeting, &code);
  expected = g_strdup_printf ("%s:1", mpg_process_get_name (p));
  /* Spawned and forkserver children are told their identity, too. */
  g_assert_cmpstr (name, ==, expected);
  g_assert_cmpstr (greeting, ==, "hello grandchild");
  g_assert_cmpint (code, ==, 0);

  /* Not joined by the child: its exit waits for the grandchild anyway. */
  q = start_process (g_variant_new ("(bi)", FALSE, method), start_grandchild);
  join_ok (q);
  g_assert_cmpint (mpg_process_get_exitcode (q), ==, 0);
}

static void
test_process_daemon (void)
{
  g_autoptr(MpgProcess) p = new_process (g_variant_new ("(bi)", TRUE, method), start_grandchild);
  g_autoptr(GVariant) result = NULL;
  g_autoptr(GError) error = NULL;

  g_test_summary ("A daemon process cannot have children");

  mpg_process_set_daemon (p, TRUE);
  mpg_process_start (p, &error);
  g_assert_no_error (error);
  join_ok (p);
  g_assert_cmpint (mpg_process_get_exitcode (p), ==, 1);
  result = mpg_process_dup_result (p, &error);
  g_assert_error (error, MPG_ERROR, MPG_ERROR_INVALID_STATE);
}

typedef struct
{
  MpgProcess *p;
  GError *error;
} ThreadStart;

static gpointer
start_in_thread (gpointer data)
{
  ThreadStart *ts = data;

  ts->p = new_process (g_variant_new_int32 (300), sleep_ms);
  mpg_process_start (ts->p, &ts->error);
  return NULL;
}

static void
test_process_start_from_thread (void)
{
  ThreadStart ts = { NULL, NULL };
  GThread *thread;

  g_test_summary ("A child started from a thread that exits lives on (fork from a long-lived thread)");

  thread = g_thread_new ("short-lived", start_in_thread, &ts);
  g_thread_join (thread);
  g_assert_no_error (ts.error);

  join_ok (ts.p);
  /* Had the thread forked, PR_SET_PDEATHSIG would have killed the child. */
  g_assert_cmpint (mpg_process_get_exitcode (ts.p), ==, 0);
  g_object_unref (ts.p);
}

static void
test_process_start_method (void)
{
  g_autoptr(MpgProcess) p = mpg_process_new (NULL, return_user_data, g_strdup ("data"), g_free);
  g_autoptr(GError) error = NULL;

  g_test_summary ("fork is the default start method; the program-wide one applies to a process "
                  "left at the default when it starts (the methods themselves: every test "
                  "under test-process-spawn and test-process-forkserver)");

  g_assert_cmpint (mpg_get_start_method (), ==, MPG_START_METHOD_FORK);
  g_assert_cmpint (mpg_process_get_start_method (p), ==, MPG_START_METHOD_DEFAULT);
  mpg_set_start_method (MPG_START_METHOD_FORKSERVER);
  g_assert_cmpint (mpg_get_start_method (), ==, MPG_START_METHOD_FORKSERVER);
  mpg_set_start_method (MPG_START_METHOD_SPAWN);
  g_assert_cmpint (mpg_get_start_method (), ==, MPG_START_METHOD_SPAWN);

  /* Spawned, a target with user data is refused at start. */
  g_assert_false (mpg_process_start (p, &error));
  g_assert_error (error, MPG_ERROR, MPG_ERROR_UNKNOWN_TASK);
  g_assert_cmpint (mpg_process_get_pid (p), ==, 0);
  g_clear_error (&error);

  mpg_set_start_method (MPG_START_METHOD_DEFAULT);
  g_assert_cmpint (mpg_get_start_method (), ==, MPG_START_METHOD_FORK);

  /* Its own method wins over the program's. */
  mpg_set_start_method (MPG_START_METHOD_SPAWN);
  mpg_process_set_start_method (p, MPG_START_METHOD_FORK);
  mpg_process_start (p, &error);
  mpg_set_start_method (MPG_START_METHOD_DEFAULT);
  g_assert_no_error (error);
  join_ok (p);
  g_assert_cmpint (mpg_process_get_exitcode (p), ==, 0);
}

static int fork_calls;

static int
counting_fork (gpointer user_data)
{
  g_atomic_int_inc (&fork_calls);
  return fork ();
}

static int
failing_fork (gpointer user_data)
{
  errno = EAGAIN;
  return -1;
}

static int
lying_fork (gpointer user_data)
{
  /* Claims to be the child without forking. */
  return 0;
}

static void
test_process_fork_func (void)
{
  g_autoptr(MpgProcess) p = NULL;
  g_autoptr(MpgProcess) q = NULL;
  g_autoptr(MpgProcess) r = NULL;
  g_autoptr(GError) error = NULL;

  g_test_summary ("A binding's fork function is used; its failure is a GError");

  mpg_set_fork_func (counting_fork, NULL, NULL);
  p = start_process (NULL, return_nothing);
  join_ok (p);
  g_assert_cmpint (fork_calls, ==, 1);
  g_assert_cmpint (mpg_process_get_exitcode (p), ==, 0);

  mpg_set_fork_func (failing_fork, NULL, NULL);
  q = mpg_process_new (NULL, return_nothing, NULL, NULL);
  g_assert_false (mpg_process_start (q, &error));
  g_assert_error (error, G_SPAWN_ERROR, G_SPAWN_ERROR_FORK);
  g_clear_error (&error);

  mpg_set_fork_func (lying_fork, NULL, NULL);
  r = mpg_process_new (NULL, return_nothing, NULL, NULL);
  g_assert_false (mpg_process_start (r, &error));
  g_assert_error (error, G_SPAWN_ERROR, G_SPAWN_ERROR_FORK);
  g_clear_error (&error);

  mpg_set_fork_func (NULL, NULL, NULL);
  g_assert_cmpuint (count_kernel_children (), ==, 0);
}

typedef struct
{
  MpgProcessClass parent_class;
} TestSquareClass;

typedef struct
{
  MpgProcess parent_instance;
  gint32 x;
} TestSquare;

static GType test_square_get_type (void);
G_DEFINE_TYPE (TestSquare, test_square, MPG_TYPE_PROCESS)

static GVariant *
test_square_run (MpgProcess  *process,
                 GError     **error)
{
  TestSquare *self = (TestSquare *) process;

  return g_variant_new_int32 (self->x * self->x);
}

static void
test_square_class_init (TestSquareClass *klass)
{
  MPG_PROCESS_CLASS (klass)->run = test_square_run;
}

static void
test_square_init (TestSquare *self)
{
}

static void
test_process_subclass (void)
{
  TestSquare *square = g_object_new (test_square_get_type (), NULL);
  g_autoptr(GVariant) result = NULL;
  g_autoptr(GError) error = NULL;

  g_test_summary ("A subclass overriding run() runs its code in the child");

  square->x = 7;
  mpg_process_start (MPG_PROCESS (square), &error);
  g_assert_no_error (error);
  join_ok (MPG_PROCESS (square));
  result = mpg_process_dup_result (MPG_PROCESS (square), &error);
  g_assert_no_error (error);
  g_assert_cmpint (g_variant_get_int32 (result), ==, 49);

  /* run() called directly runs in the caller, as Python's Process.run(). */
  g_clear_pointer (&result, g_variant_unref);
  square->x = 3;
  result = mpg_process_run (MPG_PROCESS (square), &error);
  g_assert_no_error (error);
  g_assert_cmpint (g_variant_get_int32 (result), ==, 9);
  g_object_unref (square);
}

static void
test_process_cpu_count (void)
{
  cpu_set_t set;

  g_test_summary ("cpu_count() is the number of CPUs of the affinity mask");

  g_assert_cmpint (sched_getaffinity (0, sizeof set, &set), ==, 0);
  g_assert_cmpuint (mpg_cpu_count (), ==, CPU_COUNT (&set));
  g_assert_cmpuint (mpg_cpu_count (), >=, 1);
}

/* Tests that need another program: the worker. */

static int wait_orphan (pid_t pid, guint timeout_ms);
static const char *method_name (void);

static GSubprocess *
spawn_worker (const char          *mode,
              GSubprocessFlags     flags,
              GError             **error)
{
  const char *worker = g_getenv ("MPG_TEST_WORKER");
  g_autoptr(GSubprocessLauncher) launcher = NULL;

  g_assert_nonnull (worker);
  launcher = g_subprocess_launcher_new (flags);
  g_subprocess_launcher_setenv (launcher, "G_MESSAGES_DEBUG", "Mpg", TRUE);
  /* The worker starts its children with this run's method. */
  return g_subprocess_launcher_spawn (launcher, error, worker, mode, method_name (), NULL);
}

/* This process's children, as a set of pids. */
static GHashTable *
kernel_children (void)
{
  GHashTable *set = g_hash_table_new (NULL, NULL);
  g_autoptr(GDir) tasks = g_dir_open ("/proc/self/task", 0, NULL);
  const char *tid;

  g_assert_nonnull (tasks);
  while ((tid = g_dir_read_name (tasks)) != NULL)
    {
      g_autofree char *path = g_strdup_printf ("/proc/self/task/%s/children", tid);
      g_autofree char *contents = NULL;
      g_auto(GStrv) pids = NULL;

      if (!g_file_get_contents (path, &contents, NULL, NULL))
        continue;
      pids = g_strsplit (g_strstrip (contents), " ", -1);
      for (guint i = 0; pids[i] != NULL; i++)
        if (pids[i][0] != '\0')
          g_hash_table_add (set, GINT_TO_POINTER (atoi (pids[i])));
    }
  return set;
}

/* Reaps, within a second, the orphans re-parented to us (a subreaper)
 * since @before: a forkserver worker's server outlives it a moment. */
static void
reap_new_orphans (GHashTable *before)
{
  g_autoptr(GHashTable) now = kernel_children ();
  GHashTableIter iter;
  gpointer pid;

  g_hash_table_iter_init (&iter, now);
  while (g_hash_table_iter_next (&iter, &pid, NULL))
    if (!g_hash_table_contains (before, pid))
      g_assert_cmpint (wait_orphan (GPOINTER_TO_INT (pid), 1000), !=, -1);
}

/* Waits (bounded) for an orphan that was re-parented to us, a subreaper. */
static int
wait_orphan (pid_t pid,
             guint timeout_ms)
{
  gint64 deadline = g_get_monotonic_time () + timeout_ms * 1000;
  int status;

  while (g_get_monotonic_time () < deadline)
    {
      pid_t r = waitpid (pid, &status, WNOHANG);

      if (r == pid)
        return status;
      g_usleep (5000);
    }
  return -1;
}

static void
test_process_parent_killed (void)
{
  g_autoptr(GSubprocess) worker = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *line = NULL;
  g_autoptr(GDataInputStream) in = NULL;
  g_autoptr(GHashTable) before = kernel_children ();
  pid_t child;
  int status;
  gint64 killed_at;

  g_test_summary ("A parent killed with SIGKILL leaves no child behind within a second");

  /* Orphans re-parent to us, so that we can see how they end. */
  g_assert_cmpint (prctl (PR_SET_CHILD_SUBREAPER, 1), ==, 0);

  worker = spawn_worker ("parent-killed", G_SUBPROCESS_FLAGS_STDOUT_PIPE, &error);
  g_assert_no_error (error);
  in = g_data_input_stream_new (g_subprocess_get_stdout_pipe (worker));
  line = g_data_input_stream_read_line (in, NULL, NULL, &error);
  g_assert_no_error (error);
  g_assert_nonnull (line);
  child = atoi (line);
  g_assert_cmpint (child, >, 0);
  g_assert_true (pid_exists (child));

  g_subprocess_force_exit (worker);
  killed_at = g_get_monotonic_time ();
  g_subprocess_wait (worker, NULL, &error);
  g_assert_no_error (error);

  status = wait_orphan (child, 1000);
  g_assert_cmpint (status, !=, -1);
  /* Killed by PR_SET_PDEATHSIG; unless the parent died while the child was
   * still starting — before its prctl() (a forked child then sees that its
   * parent changed and exits), exec'ing, or reading its start message — and
   * it ended by itself: either way, it is gone. */
  if (WIFSIGNALED (status))
    g_assert_cmpint (WTERMSIG (status), ==, SIGKILL);
  else
    {
      g_assert_true (WIFEXITED (status));
      if (method == MPG_START_METHOD_FORK)
        g_assert_cmpint (WEXITSTATUS (status), ==, 1);
    }
  g_assert_cmpint (g_get_monotonic_time () - killed_at, <, G_USEC_PER_SEC);
  reap_new_orphans (before);

  prctl (PR_SET_CHILD_SUBREAPER, 0);
}

static void
test_process_exit_handler (void)
{
  g_autoptr(GSubprocess) worker = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *out = NULL;
  g_autofree char *err = NULL;
  g_autoptr(GHashTable) before = kernel_children ();
  int daemon_pid = 0, child_pid = 0;
  int status;

  g_test_summary ("At normal exit, daemon children are terminated and the others joined");

  g_assert_cmpint (prctl (PR_SET_CHILD_SUBREAPER, 1), ==, 0);

  worker = spawn_worker ("exit-handler",
                         G_SUBPROCESS_FLAGS_STDOUT_PIPE | G_SUBPROCESS_FLAGS_STDERR_PIPE, &error);
  g_assert_no_error (error);
  g_subprocess_communicate_utf8 (worker, NULL, NULL, &out, &err, &error);
  g_assert_no_error (error);
  g_assert_true (g_subprocess_get_if_exited (worker));
  g_assert_cmpint (g_subprocess_get_exit_status (worker), ==, 0);

  g_assert_cmpint (sscanf (out, "%d %d", &daemon_pid, &child_pid), ==, 2);
  /* The non-daemon child finished, and its unterminated line was flushed. */
  g_assert_nonnull (strstr (out, "non-daemon child done"));
  /* Both were reaped by the exiting parent: nothing re-parented to us. */
  g_assert_cmpint (waitpid (daemon_pid, &status, WNOHANG), ==, -1);
  g_assert_cmpint (waitpid (child_pid, &status, WNOHANG), ==, -1);
  g_assert_false (pid_exists (daemon_pid));
  g_assert_false (pid_exists (child_pid));

  /* G_MESSAGES_DEBUG=Mpg shows the life cycle. */
  g_assert_nonnull (strstr (err, "forked as pid"));
  g_assert_nonnull (strstr (err, "reaped, exit code 0"));
  g_assert_nonnull (strstr (err, "reaped, exit code -15"));
  reap_new_orphans (before);

  prctl (PR_SET_CHILD_SUBREAPER, 0);
}

static void
test_process_flush (void)
{
  g_autoptr(GSubprocess) worker = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *out = NULL;
  g_autoptr(GHashTable) before = kernel_children ();

  g_test_summary ("What a child prints reaches the shared stdout, flushed before _exit()");

  /* To reap the worker's forkserver, which outlives it a moment. */
  g_assert_cmpint (prctl (PR_SET_CHILD_SUBREAPER, 1), ==, 0);

  worker = spawn_worker ("flush", G_SUBPROCESS_FLAGS_STDOUT_PIPE, &error);
  g_assert_no_error (error);
  g_subprocess_communicate_utf8 (worker, NULL, NULL, &out, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpint (g_subprocess_get_exit_status (worker), ==, 0);
  g_assert_cmpstr (out, ==, "partial line from the child");
  reap_new_orphans (before);

  prctl (PR_SET_CHILD_SUBREAPER, 0);
}

static const char *
method_name (void)
{
  if (method == MPG_START_METHOD_SPAWN)
    return "spawn";
  if (method == MPG_START_METHOD_FORKSERVER)
    return "forkserver";
  return "fork";
}

/* ALL: run under every start method; the others run in the fork run only. */
typedef enum
{
  ALL,
  /* Starts no process, or not with the method: the same under every one. */
  ONCE,
  /* Its point is fork's: user data or code that only a copy of the
   * parent's memory has, or the fork function. */
  FORK_ONLY,
} Methods;

static const struct
{
  const char *name;
  GTestFunc func;
  Methods methods;
} tests[] = {
  { "result", test_process_result, ALL },
  { "no-target", test_process_no_target, ALL },
  /* The target's user data: a spawned child refuses it (test-spawn). */
  { "user-data", test_process_user_data, FORK_ONLY },
  { "exitcodes", test_process_exitcodes, ALL },
  { "terminate-kill", test_process_terminate_kill, ALL },
  { "errors-come-back", test_process_errors_come_back, ALL },
  { "large-result", test_process_large_result, ALL },
  { "names", test_process_names, ONCE },
  { "notify", test_process_notify, ALL },
  { "join-timeout", test_process_join_timeout, ALL },
  { "join-cancel", test_process_join_cancel, ALL },
  { "join-async", test_process_join_async, ALL },
  { "join-async-cancel", test_process_join_async_cancel, ALL },
  { "join-threads", test_process_join_threads, ALL },
  { "misuse", test_process_misuse, ALL },
  /* A critical in the parent, before anything is started. */
  { "setters-after-start", test_process_setters_after_start, ONCE },
  { "no-zombie", test_process_no_zombie, ALL },
  { "many-cycles", test_process_many_cycles, ALL },
  { "current-parent", test_process_current_parent, ALL },
  { "active-children", test_process_active_children, ALL },
  { "nested", test_process_nested, ALL },
  { "signals-reset", test_process_signals_reset, ALL },
  { "parent-on-demand", test_process_parent_on_demand, ALL },
  { "daemon", test_process_daemon, ALL },
  /* A spawn (and the forkserver's first start) from a thread that exits
   * must not be killed by PR_SET_PDEATHSIG either. */
  { "start-from-thread", test_process_start_from_thread, ALL },
  /* Sets the methods itself. */
  { "start-method", test_process_start_method, ONCE },
  /* The binding's fork function: only fork calls it. */
  { "fork-func", test_process_fork_func, FORK_ONLY },
  /* A subclass's run() is code, not a name: only a forked copy has it. */
  { "subclass", test_process_subclass, FORK_ONLY },
  { "cpu-count", test_process_cpu_count, ONCE },
  /* The worker program starts its children with the run's method. */
  { "parent-killed", test_process_parent_killed, ALL },
  { "exit-handler", test_process_exit_handler, ALL },
  { "flush", test_process_flush, ALL },
};

int
main (int   argc,
      char *argv[])
{
  const char *env;

  /* First: in a spawned or forkserver child this runs the task and never
   * returns. */
  mpg_init (&argc, &argv);

  g_test_init (&argc, &argv, NULL);

  env = g_getenv ("MPG_TEST_START_METHOD");
  if (env == NULL || g_str_equal (env, "fork"))
    method = MPG_START_METHOD_FORK;
  else if (g_str_equal (env, "spawn"))
    method = MPG_START_METHOD_SPAWN;
  else if (g_str_equal (env, "forkserver"))
    method = MPG_START_METHOD_FORKSERVER;
  else
    g_error ("MPG_TEST_START_METHOD: unknown start method '%s'", env);

  for (guint i = 0; i < G_N_ELEMENTS (tests); i++)
    {
      g_autofree char *path = NULL;

      if (method != MPG_START_METHOD_FORK && tests[i].methods != ALL)
        continue;
      if (method == MPG_START_METHOD_FORK)
        path = g_strdup_printf ("/Mpg/Process/%s", tests[i].name);
      else
        path = g_strdup_printf ("/Mpg/Process/%s/%s", method_name (), tests[i].name);
      g_test_add_func (path, tests[i].func);
    }

  return g_test_run ();
}
