/* test-pool.c: MpgPool
 *
 * Copyright 2026 The libmpg authors
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#define _GNU_SOURCE

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include <glib/gstdio.h>
#include <libmpg.h>

/* A domain that only this program registers: the library cannot know it,
 * so it has to recreate it by name. */
#define TEST_ERROR (test_error_quark ())
static G_DEFINE_QUARK (mpg-test-pool-error-quark, test_error)

/* A domain that only the workers register (never the parent). */
#define CHILD_ONLY_DOMAIN "mpg-test-pool-child-only-error-quark"

/* Bounds every wait of these tests. The blocking calls that take no
 * timeout (apply, map) are bounded by the per-test watchdog below. */
#define WAIT_MS 10000

static gboolean
under_valgrind (void)
{
  return g_getenv ("MPG_TEST_VALGRIND") != NULL;
}

/* Time limits for "promptly", loosened under valgrind. */
static guint
scaled (guint ms)
{
  return under_valgrind () ? ms * 10 : ms;
}

/* Watchdog: a test that hangs ends the program with a TAP "Bail out!"
 * naming it, instead of eating meson's time-out for the whole program. */

static char watchdog_message[512];
static size_t watchdog_message_len;

static void
watchdog_expired (int signum)
{
  /* Async-signal-safe calls only. */
  (void) !write (STDOUT_FILENO, watchdog_message, watchdog_message_len);
  (void) !write (STDERR_FILENO, watchdog_message, watchdog_message_len);
  _exit (99);
}

typedef struct
{
  const char *path;
  void (*func) (void);
} PoolTest;

static void assert_test_left_nothing (void);

static void
run_bounded (gconstpointer data)
{
  const PoolTest *test = data;
  guint seconds = under_valgrind () ? 240 : 30;
  struct sigaction sa;

  memset (&sa, 0, sizeof sa);
  sa.sa_handler = watchdog_expired;
  sa.sa_flags = SA_RESTART;
  sigaction (SIGALRM, &sa, NULL);

  g_snprintf (watchdog_message, sizeof watchdog_message,
              "Bail out! %s did not end within %u s\n", test->path, seconds);
  watchdog_message_len = strlen (watchdog_message);
  alarm (seconds);
  test->func ();
  assert_test_left_nothing ();
  alarm (0);
}

/* Files the tasks leave behind for the parent to check. */

static char *
make_tmpdir (void)
{
  g_autoptr(GError) error = NULL;
  char *dir = g_dir_make_tmp ("mpg-test-pool-XXXXXX", &error);

  g_assert_no_error (error);
  return dir;
}

static void
remove_tmpdir (const char *dir)
{
  GDir *d = g_dir_open (dir, 0, NULL);
  const char *name;

  if (d == NULL)
    return;
  while ((name = g_dir_read_name (d)) != NULL)
    {
      g_autofree char *path = g_build_filename (dir, name, NULL);

      g_unlink (path);
    }
  g_dir_close (d);
  g_rmdir (dir);
}

static gboolean
file_exists (const char *dir,
             const char *name)
{
  g_autofree char *path = g_build_filename (dir, name, NULL);

  return g_file_test (path, G_FILE_TEST_EXISTS);
}

static void
write_pid_file (const char *dir,
                const char *name)
{
  g_autofree char *path = g_build_filename (dir, name, NULL);
  g_autofree char *text = g_strdup_printf ("%d", (int) getpid ());

  /* Written to a temporary file and renamed: never seen half-written. */
  g_file_set_contents (path, text, -1, NULL);
}

static void
append_line (const char *dir,
             const char *name,
             const char *line)
{
  g_autofree char *path = g_build_filename (dir, name, NULL);
  g_autofree char *text = g_strdup_printf ("%s\n", line);
  int fd = open (path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);

  if (fd < 0)
    return;
  (void) !write (fd, text, strlen (text));
  close (fd);
}

static guint
count_lines (const char *dir,
             const char *name)
{
  g_autofree char *path = g_build_filename (dir, name, NULL);
  g_autofree char *contents = NULL;
  guint n = 0;

  if (!g_file_get_contents (path, &contents, NULL, NULL))
    return 0;
  for (const char *p = contents; *p; p++)
    if (*p == '\n')
      n++;
  return n;
}

static gboolean
wait_for_file (const char *dir,
               const char *name,
               guint       timeout_ms)
{
  gint64 deadline = g_get_monotonic_time () + (gint64) timeout_ms * 1000;

  while (!file_exists (dir, name))
    {
      if (g_get_monotonic_time () > deadline)
        return FALSE;
      /* Async calls may need this thread's main context to make progress. */
      while (g_main_context_iteration (NULL, FALSE))
        ;
      g_usleep (2000);
    }
  return TRUE;
}

static pid_t
read_pid_file (const char *dir,
               const char *name)
{
  g_autofree char *path = g_build_filename (dir, name, NULL);
  g_autofree char *contents = NULL;
  g_autoptr(GError) error = NULL;

  g_file_get_contents (path, &contents, NULL, &error);
  g_assert_no_error (error);
  return (pid_t) atoi (contents);
}

/* Processes */

static gboolean
pid_gone (pid_t pid)
{
  /* A zombie still answers kill(pid, 0): ESRCH means exited and reaped. */
  return kill (pid, 0) == -1 && errno == ESRCH;
}

static gboolean
wait_pid_gone (pid_t pid,
               guint timeout_ms)
{
  gint64 deadline = g_get_monotonic_time () + (gint64) timeout_ms * 1000;

  while (!pid_gone (pid))
    {
      if (g_get_monotonic_time () > deadline)
        return FALSE;
      g_usleep (2000);
    }
  return TRUE;
}

static gboolean
pids_contain (GArray *pids,
              pid_t   pid)
{
  for (guint i = 0; i < pids->len; i++)
    if (g_array_index (pids, gint, i) == pid)
      return TRUE;
  return FALSE;
}

/* Says which children are left, for the failure's log. */
static void
describe_children (void)
{
  g_autoptr(GDir) tasks = g_dir_open ("/proc/self/task", 0, NULL);
  const char *tid;

  while (tasks != NULL && (tid = g_dir_read_name (tasks)) != NULL)
    {
      g_autofree char *path = g_strdup_printf ("/proc/self/task/%s/children", tid);
      g_autofree char *contents = NULL;
      g_auto(GStrv) pids = NULL;

      if (!g_file_get_contents (path, &contents, NULL, NULL))
        continue;
      pids = g_strsplit (g_strstrip (contents), " ", -1);
      for (guint i = 0; pids[i] != NULL; i++)
        {
          g_autofree char *stat_path = g_strdup_printf ("/proc/%s/stat", pids[i]);
          g_autofree char *wchan_path = g_strdup_printf ("/proc/%s/wchan", pids[i]);
          g_autofree char *stat = NULL;
          g_autofree char *wchan = NULL;

          if (pids[i][0] == '\0')
            continue;
          g_file_get_contents (stat_path, &stat, NULL, NULL);
          g_file_get_contents (wchan_path, &wchan, NULL, NULL);
          g_test_message ("child left (of thread %s): %s, waiting in %s",
                          tid, stat ? g_strstrip (stat) : pids[i], wchan ? wchan : "?");
        }
    }
}

#define assert_no_child_left() assert_no_child_left_at (G_STRLOC)

static void
assert_no_child_left_at (const char *where)
{
  int status;
  pid_t r;

  errno = 0;
  r = waitpid (-1, &status, WNOHANG);
  if (r > 0)
    g_test_message ("a zombie was left: pid %d", (int) r);
  else if (r == 0)
    {
      g_test_message ("%s: children left", where);
      describe_children ();
    }
  g_assert_cmpint (r, ==, -1);
  g_assert_cmpint (errno, ==, ECHILD);
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

/* Weak pointers are cleared at dispose: this tells finalization, which
 * may happen in another thread. */
static void
set_flag (gpointer data)
{
  g_atomic_int_set ((gint *) data, TRUE);
}

static void
watch_finalize (gpointer  object,
                gint     *finalized)
{
  *finalized = FALSE;
  g_object_set_data_full (object, "mpg-test-finalize-watch", finalized, set_flag);
}

/* Every pool a test makes must be finalized by its end. */
static gint live_pools;

static void
pool_finalized (gpointer data)
{
  g_atomic_int_add (&live_pools, -1);
}

static MpgPool *
track_pool (MpgPool *pool)
{
  g_assert_nonnull (pool);
  g_assert_true (MPG_IS_POOL (pool));
  g_atomic_int_inc (&live_pools);
  g_object_set_data_full (G_OBJECT (pool), "mpg-test-live-pool", &live_pools, pool_finalized);
  return pool;
}

/* After each test: its pools finalized (a call still running may hold one
 * a little longer), and no worker, zombie or not, left behind. */
static void
assert_test_left_nothing (void)
{
  gint64 deadline = g_get_monotonic_time () + (gint64) scaled (3000) * 1000;
  int status;
  pid_t r;

  while (g_atomic_int_get (&live_pools) > 0 && g_get_monotonic_time () < deadline)
    {
      while (g_main_context_iteration (NULL, FALSE))
        ;
      g_usleep (2000);
    }
  if (g_atomic_int_get (&live_pools) > 0)
    g_test_message ("%d pools were not finalized", g_atomic_int_get (&live_pools));
  g_assert_cmpint (g_atomic_int_get (&live_pools), ==, 0);

  deadline = g_get_monotonic_time () + (gint64) scaled (1000) * 1000;
  while ((r = waitpid (-1, &status, WNOHANG)) == 0 && g_get_monotonic_time () < deadline)
    g_usleep (2000);
  if (r > 0)
    g_test_message ("a zombie was left: pid %d", (int) r);
  else if (r == 0)
    {
      g_test_message ("children left after the test");
      describe_children ();
    }
  g_assert_cmpint (r, ==, -1);
}

static void
no_core_dump (void)
{
  struct rlimit rl = { 0, 0 };

  setrlimit (RLIMIT_CORE, &rl);
}

/* Tasks: they run in the workers */

static GVariant *
task_square (GVariant  *arg,
             gpointer   user_data,
             GError   **error)
{
  gint32 x;

  if (!g_variant_is_of_type (arg, G_VARIANT_TYPE_INT32))
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                   "expected an int32, got %s", g_variant_get_type_string (arg));
      return NULL;
    }
  x = g_variant_get_int32 (arg);
  /* A little jitter, so that chunks finish out of order. */
  if (x % 3 == 0)
    g_usleep ((x % 4) * 500);
  return g_variant_new_int32 (x * x);
}

static GVariant *
task_type_string (GVariant  *arg,
                  gpointer   user_data,
                  GError   **error)
{
  return g_variant_new_string (arg ? g_variant_get_type_string (arg) : "NULL");
}

static GVariant *
task_strlen (GVariant  *arg,
             gpointer   user_data,
             GError   **error)
{
  return g_variant_new_int32 ((gint32) strlen (g_variant_get_string (arg, NULL)));
}

static GVariant *
task_pair_sum (GVariant  *arg,
               gpointer   user_data,
               GError   **error)
{
  gint32 a, b;

  g_variant_get (arg, "(ii)", &a, &b);
  return g_variant_new_int32 (a + b);
}

/* Even numbers give an int32, odd ones a string. */
static GVariant *
task_mixed (GVariant  *arg,
            gpointer   user_data,
            GError   **error)
{
  gint32 x = g_variant_get_int32 (arg);

  if (x % 2 == 0)
    return g_variant_new_int32 (x);
  return g_variant_new_take_string (g_strdup_printf ("%d", x));
}

static GVariant *
task_nothing (GVariant  *arg,
              gpointer   user_data,
              GError   **error)
{
  return NULL;
}

static GVariant *
task_sleep (GVariant  *arg,
            gpointer   user_data,
            GError   **error)
{
  g_usleep ((gulong) g_variant_get_int32 (arg) * 1000);
  return g_variant_new_int32 (g_variant_get_int32 (arg));
}

/* Returns the worker's pid, after sleeping arg msec if arg is an int32. */
static GVariant *
task_pid (GVariant  *arg,
          gpointer   user_data,
          GError   **error)
{
  if (arg != NULL && g_variant_is_of_type (arg, G_VARIANT_TYPE_INT32))
    g_usleep ((gulong) g_variant_get_int32 (arg) * 1000);
  return g_variant_new_int32 ((gint32) getpid ());
}

/* arg (index, error code or -1, sleep msec); user data: a directory where
 * it leaves "item-<index>" when it starts, or NULL. */
static GVariant *
task_item (GVariant  *arg,
           gpointer   user_data,
           GError   **error)
{
  const char *dir = user_data;
  gint32 i, code, sleep_ms;

  g_variant_get (arg, "(iii)", &i, &code, &sleep_ms);
  if (dir != NULL)
    {
      g_autofree char *name = g_strdup_printf ("item-%d", i);

      write_pid_file (dir, name);
    }
  if (sleep_ms > 0)
    g_usleep ((gulong) sleep_ms * 1000);
  if (code >= 0)
    {
      g_set_error (error, TEST_ERROR, code, "item %d failed", i);
      return NULL;
    }
  return g_variant_new_int32 (i);
}

static GVariant *
task_fail (GVariant  *arg,
           gpointer   user_data,
           GError   **error)
{
  g_set_error_literal (error, TEST_ERROR, 42, "the task failed on purpose");
  return NULL;
}

static GVariant *
task_io_error (GVariant  *arg,
               gpointer   user_data,
               GError   **error)
{
  g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_PERMISSION_DENIED, "no access");
  return NULL;
}

static GVariant *
task_child_domain_error (GVariant  *arg,
                         gpointer   user_data,
                         GError   **error)
{
  g_set_error_literal (error, g_quark_from_static_string (CHILD_ONLY_DOMAIN), 3, "child only");
  return NULL;
}

static GVariant *
task_odd_domain_error (GVariant  *arg,
                       gpointer   user_data,
                       GError   **error)
{
  g_set_error_literal (error, g_quark_from_static_string ("odd domain!"), 7, "odd");
  return NULL;
}

/* Leaves its pid in "running" (user data: a directory), sleeps arg msec. */
static GVariant *
task_running (GVariant  *arg,
              gpointer   user_data,
              GError   **error)
{
  write_pid_file (user_data, "running");
  g_usleep ((gulong) g_variant_get_int32 (arg) * 1000);
  return g_variant_new_int32 (g_variant_get_int32 (arg));
}

static GVariant *
task_die_on_3 (GVariant  *arg,
               gpointer   user_data,
               GError   **error)
{
  gint32 x = g_variant_get_int32 (arg);

  if (x == 3)
    {
      write_pid_file (user_data, "died");
      raise (SIGKILL);
    }
  g_usleep (5000);
  return g_variant_new_int32 (x);
}

static GVariant *
task_segfault (GVariant  *arg,
               gpointer   user_data,
               GError   **error)
{
  write_pid_file (user_data, "died");
  no_core_dump ();
  raise (SIGSEGV);
  return NULL;
}

static GVariant *
task_exit_3 (GVariant  *arg,
             gpointer   user_data,
             GError   **error)
{
  write_pid_file (user_data, "died");
  _exit (3);
}

/* Dies the first time it runs: "crashed" in the user data's directory
 * remembers that it did. */
static GVariant *
task_crash_once (GVariant  *arg,
                 gpointer   user_data,
                 GError   **error)
{
  if (!file_exists (user_data, "crashed"))
    {
      write_pid_file (user_data, "crashed");
      raise (SIGKILL);
    }
  return g_variant_new_string ("survived");
}

static GVariant *
task_crash_always (GVariant  *arg,
                   gpointer   user_data,
                   GError   **error)
{
  append_line (user_data, "attempts", "x");
  raise (SIGKILL);
  return NULL;
}

/* Squares its int32; the item 100 kills the worker. */
static GVariant *
task_die_on_100 (GVariant  *arg,
                 gpointer   user_data,
                 GError   **error)
{
  gint32 x = g_variant_get_int32 (arg);

  if (x == 100)
    {
      no_core_dump ();
      raise (SIGKILL);
    }
  return g_variant_new_int32 (x * x);
}

static GVariant *
task_heap_int (GVariant  *arg,
               gpointer   user_data,
               GError   **error)
{
  return g_variant_new ("(ii)", *(int *) user_data, (gint32) getpid ());
}

static GVariant *
task_user_string (GVariant  *arg,
                  gpointer   user_data,
                  GError   **error)
{
  return g_variant_new_string (user_data);
}

/* Chunk functions: they get a whole chunk */

/* Squares an `ai` chunk at once; fails on any other type. */
static GVariant *
chunk_square (GVariant  *items,
              gpointer   user_data,
              GError   **error)
{
  const gint32 *in;
  gint32 *out;
  gsize n;

  if (!g_variant_is_of_type (items, G_VARIANT_TYPE ("ai")))
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                   "expected an ai chunk, got %s", g_variant_get_type_string (items));
      return NULL;
    }
  in = g_variant_get_fixed_array (items, &n, sizeof (gint32));
  out = g_new (gint32, MAX (n, 1));
  for (gsize i = 0; i < n; i++)
    out[i] = in[i] * in[i];
  return g_variant_new_from_data (G_VARIANT_TYPE ("ai"), out, n * sizeof (gint32), FALSE, g_free, out);
}

/* Each item's result is "TYPE:LENGTH" of the chunk it came in. */
static GVariant *
chunk_describe (GVariant  *items,
                gpointer   user_data,
                GError   **error)
{
  g_autofree char *text = g_strdup_printf ("%s:%" G_GSIZE_FORMAT,
                                           g_variant_get_type_string (items),
                                           g_variant_n_children (items));
  GVariantBuilder builder;

  g_variant_builder_init (&builder, G_VARIANT_TYPE ("as"));
  for (gsize i = 0; i < g_variant_n_children (items); i++)
    g_variant_builder_add (&builder, "s", text);
  return g_variant_builder_end (&builder);
}

/* Fails a chunk that holds the item 5; returns one result too few for a
 * chunk that holds 7; squares the others. */
static GVariant *
chunk_picky (GVariant  *items,
             gpointer   user_data,
             GError   **error)
{
  const gint32 *in;
  gsize n;

  in = g_variant_get_fixed_array (items, &n, sizeof (gint32));
  for (gsize i = 0; i < n; i++)
    {
      if (in[i] == 5)
        {
          g_set_error (error, TEST_ERROR, 5, "item 5 failed");
          return NULL;
        }
      if (in[i] == 7)
        return g_variant_new_fixed_array (G_VARIANT_TYPE_INT32, in, n - 1, sizeof (gint32));
    }
  return chunk_square (items, NULL, error);
}

static gint32 init_value = -1;
static const char *init_tag = NULL;

static GVariant *
initializer_set_global (GVariant  *arg,
                        gpointer   user_data,
                        GError   **error)
{
  init_value = g_variant_get_int32 (arg);
  init_tag = user_data;
  /* Ignored by the pool. */
  return g_variant_new_string ("ignored");
}

static GVariant *
initializer_fail (GVariant  *arg,
                  gpointer   user_data,
                  GError   **error)
{
  append_line (user_data, "inits", "x");
  g_set_error_literal (error, TEST_ERROR, 7, "init broke");
  return NULL;
}

static GVariant *
task_read_init (GVariant  *arg,
                gpointer   user_data,
                GError   **error)
{
  return g_variant_new ("(is)", init_value, init_tag ? init_tag : "");
}

/* Counts, in the parent, the user data freed by the pool. */
static guint freed_count;

static void
counted_free (gpointer data)
{
  g_free (data);
  freed_count++;
}

/* Helpers */

static MpgPool *
new_pool (guint processes)
{
  return track_pool (mpg_pool_new (processes));
}

static guint
add_function (MpgPool        *pool,
              MpgTaskFunc     func,
              gpointer        user_data,
              GDestroyNotify  user_data_free)
{
  guint id = mpg_pool_add_function (pool, func, user_data, user_data_free);

  g_assert_cmpuint (id, >=, 1);
  return id;
}

static GVariant *
apply_ok (MpgPool  *pool,
          guint     function,
          GVariant *arg)
{
  g_autoptr(GError) error = NULL;
  GVariant *value = mpg_pool_apply (pool, function, arg, NULL, &error);

  g_assert_no_error (error);
  g_assert_nonnull (value);
  return value;
}

static gint32
apply_int (MpgPool  *pool,
           guint     function,
           GVariant *arg)
{
  g_autoptr(GVariant) value = apply_ok (pool, function, arg);

  g_assert_cmpstr (g_variant_get_type_string (value), ==, "i");
  return g_variant_get_int32 (value);
}

static GVariant *
map_ok (MpgPool  *pool,
        guint     function,
        GVariant *items,
        guint     chunksize)
{
  g_autoptr(GError) error = NULL;
  GVariant *value = mpg_pool_map (pool, function, items, chunksize, NULL, &error);

  g_assert_no_error (error);
  g_assert_nonnull (value);
  return value;
}

/* [0, 1, …, n - 1] */
static GVariant *
int_items (guint n)
{
  GVariantBuilder builder;

  g_variant_builder_init (&builder, G_VARIANT_TYPE ("ai"));
  for (guint i = 0; i < n; i++)
    g_variant_builder_add (&builder, "i", (gint32) i);
  return g_variant_builder_end (&builder);
}

/* [(i, -1, 0), …] with the failures and sleeps given. */
static GVariant *
item_tuples (guint         n,
             const gint32 *codes,
             const gint32 *sleeps)
{
  GVariantBuilder builder;

  g_variant_builder_init (&builder, G_VARIANT_TYPE ("a(iii)"));
  for (guint i = 0; i < n; i++)
    g_variant_builder_add (&builder, "(iii)", (gint32) i,
                           codes ? codes[i] : -1, sleeps ? sleeps[i] : 0);
  return g_variant_builder_end (&builder);
}

static void
assert_squares (GVariant *result,
                guint     n)
{
  const gint32 *values;
  gsize len;

  g_assert_cmpstr (g_variant_get_type_string (result), ==, "ai");
  values = g_variant_get_fixed_array (result, &len, sizeof (gint32));
  g_assert_cmpuint (len, ==, n);
  for (gsize i = 0; i < len; i++)
    g_assert_cmpint (values[i], ==, (gint32) (i * i));
}

/* Compares type and printed value, for readable failures. */
static void
assert_variant (GVariant   *value,
                const char *type,
                const char *text)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GVariant) expected = g_variant_parse (G_VARIANT_TYPE (type), text, NULL, NULL, &error);
  g_autofree char *got = NULL;
  g_autofree char *want = NULL;

  g_assert_no_error (error);
  g_assert_nonnull (value);
  got = g_variant_print (value, TRUE);
  want = g_variant_print (expected, TRUE);
  g_assert_cmpstr (g_variant_get_type_string (value), ==, type);
  g_assert_cmpstr (got, ==, want);
  g_assert_true (g_variant_equal (value, expected));
}

/* The message of MPG_ERROR_WORKER_DIED names the pid and the signal or
 * exit code. */
static void
assert_died_message (const GError *error,
                     pid_t         pid,
                     int           signum,
                     int           exit_code)
{
  g_autofree char *pid_text = g_strdup_printf ("%d", (int) pid);

  g_test_message ("worker died: %s", error->message);
  g_assert_nonnull (strstr (error->message, pid_text));
  if (signum > 0)
    {
      g_autofree char *num = g_strdup_printf ("%d", signum);
      const char *abbrev = sigabbrev_np (signum);

      /* "SIGKILL", "KILL", "Killed", "signal 9", "-9": any will do. */
      g_assert_true ((abbrev && strstr (error->message, abbrev)) ||
                     strstr (error->message, g_strsignal (signum)) ||
                     strstr (error->message, num));
    }
  else if (under_valgrind ())
    {
      /* memcheck ends a child that leaks by its own exit code
       * (--error-exitcode), and a forked child of a threaded parent always
       * seems to leak: only the kind of death can be checked. */
      g_assert_nonnull (strstr (error->message, "exited with code"));
    }
  else
    {
      g_autofree char *code = g_strdup_printf ("%d", exit_code);

      g_assert_nonnull (strstr (error->message, code));
    }
}

/* The counter follows the reaping of the old worker, which may come
 * after the call that made it leave: wait for it (bounded). */
static void
assert_replaced_at_least (MpgPool *pool,
                          guint    n)
{
  gint64 deadline = g_get_monotonic_time () + (gint64) scaled (2000) * 1000;

  while (mpg_pool_get_workers_replaced (pool) < n && g_get_monotonic_time () < deadline)
    g_usleep (2000);
  g_assert_cmpuint (mpg_pool_get_workers_replaced (pool), >=, n);
}

/* Async calls */

typedef struct
{
  GMainLoop *loop;
  guint pending;
  gboolean timed_out;
} Waiter;

typedef struct
{
  Waiter *waiter;
  MpgPool *pool;
  GVariant *value;
  GError *error;
  guint n_callbacks;
  gint64 done_at;
  /* Not references: only compared. */
  GAsyncResult *result;
  GMainContext *context;
  GMainContext *expected_context;
  GThread *thread;
  /* What the progress signal said about this call. */
  guint n_progress;
  guint last_done;
  guint total;
  GAsyncResult *progress_call;
  gboolean progress_bad_order;
  gboolean progress_bad_total;
  gboolean progress_changed_call;
  gboolean progress_after_callback;
  gboolean progress_wrong_context;
} Call;

static void
waiter_init (Waiter       *waiter,
             GMainContext *context)
{
  waiter->loop = g_main_loop_new (context, FALSE);
  waiter->pending = 0;
  waiter->timed_out = FALSE;
}

static void
waiter_clear (Waiter *waiter)
{
  g_clear_pointer (&waiter->loop, g_main_loop_unref);
}

static gboolean
waiter_expired (gpointer user_data)
{
  Waiter *waiter = user_data;

  waiter->timed_out = TRUE;
  g_main_loop_quit (waiter->loop);
  return G_SOURCE_REMOVE;
}

/* Runs the loop until every call completed; FALSE if they did not within
 * timeout_ms. */
static gboolean
waiter_run (Waiter *waiter,
            guint   timeout_ms)
{
  GSource *guard;

  if (waiter->pending == 0)
    return TRUE;
  guard = g_timeout_source_new (timeout_ms);
  g_source_set_callback (guard, waiter_expired, waiter, NULL);
  g_source_attach (guard, g_main_loop_get_context (waiter->loop));
  g_main_loop_run (waiter->loop);
  g_source_destroy (guard);
  g_source_unref (guard);
  return !waiter->timed_out && waiter->pending == 0;
}

static void
call_init (Call    *call,
           Waiter  *waiter,
           MpgPool *pool)
{
  memset (call, 0, sizeof *call);
  call->waiter = waiter;
  call->pool = pool;
  call->expected_context = g_main_context_get_thread_default ();
  waiter->pending++;
}

static void
call_clear (Call *call)
{
  g_clear_pointer (&call->value, g_variant_unref);
  g_clear_error (&call->error);
}

static void
call_finished (Call         *call,
               GAsyncResult *result)
{
  call->n_callbacks++;
  call->done_at = g_get_monotonic_time ();
  call->result = result;
  call->context = g_main_context_get_thread_default ();
  call->thread = g_thread_self ();
  if (call->n_callbacks == 1 && --call->waiter->pending == 0)
    g_main_loop_quit (call->waiter->loop);
}

static void
applied_cb (GObject      *object,
            GAsyncResult *result,
            gpointer      user_data)
{
  Call *call = user_data;

  call->value = mpg_pool_apply_finish (call->pool, result, &call->error);
  call_finished (call, result);
}

static void
mapped_cb (GObject      *object,
           GAsyncResult *result,
           gpointer      user_data)
{
  Call *call = user_data;

  call->value = mpg_pool_map_finish (call->pool, result, &call->error);
  call_finished (call, result);
}

static void
starmapped_cb (GObject      *object,
               GAsyncResult *result,
               gpointer      user_data)
{
  Call *call = user_data;

  call->value = mpg_pool_starmap_finish (call->pool, result, &call->error);
  call_finished (call, result);
}

/* The progress signal: finds the call by the user data of its result. */
typedef struct
{
  Call *calls[8];
  guint n_calls;
  guint n_unknown;
} ProgressWatch;

static void
on_progress (MpgPool      *pool,
             GAsyncResult *result,
             guint         done,
             guint         total,
             gpointer      user_data)
{
  ProgressWatch *watch = user_data;
  Call *call = NULL;

  if (G_IS_ASYNC_RESULT (result))
    {
      gpointer data = g_async_result_get_user_data (result);

      for (guint i = 0; i < watch->n_calls; i++)
        if (watch->calls[i] == data)
          call = watch->calls[i];
    }
  if (call == NULL)
    {
      watch->n_unknown++;
      return;
    }

  if (done > total)
    call->progress_bad_order = TRUE;
  if (call->n_progress > 0)
    {
      if (done <= call->last_done)
        call->progress_bad_order = TRUE;
      if (total != call->total)
        call->progress_bad_total = TRUE;
      if (result != call->progress_call)
        call->progress_changed_call = TRUE;
    }
  if (call->n_callbacks > 0)
    call->progress_after_callback = TRUE;
  if (g_main_context_get_thread_default () != call->expected_context)
    call->progress_wrong_context = TRUE;
  call->n_progress++;
  call->last_done = done;
  call->total = total;
  call->progress_call = result;
}

static void
assert_progress (const Call *call,
                 guint       emissions,
                 guint       total)
{
  g_assert_cmpuint (call->n_callbacks, ==, 1);
  g_assert_cmpuint (call->n_progress, ==, emissions);
  g_assert_false (call->progress_bad_order);
  g_assert_false (call->progress_bad_total);
  g_assert_false (call->progress_changed_call);
  g_assert_false (call->progress_after_callback);
  g_assert_false (call->progress_wrong_context);
  g_assert_cmpuint (call->last_done, ==, total);
  g_assert_cmpuint (call->total, ==, total);
  g_assert_true (call->progress_call == call->result);
}

/* Iterators: the items as text, "0 1 e2 3 end", e<code> for a TEST_ERROR. */
static char *
iterate_to_text (MpgPoolIterator *it,
                 guint            max_steps)
{
  GString *text = g_string_new (NULL);

  for (guint step = 0; step < max_steps; step++)
    {
      g_autoptr(GVariant) value = NULL;
      g_autoptr(GError) error = NULL;

      if (text->len > 0)
        g_string_append_c (text, ' ');
      if (mpg_pool_iterator_next (it, WAIT_MS, NULL, &value, &error))
        {
          g_assert_no_error (error);
          if (value == NULL)
            {
              g_string_append (text, "end");
              break;
            }
          g_string_append_printf (text, "%d", g_variant_get_int32 (value));
        }
      else
        {
          g_assert_nonnull (error);
          if (error->domain == TEST_ERROR)
            {
              g_autofree char *expected = g_strdup_printf ("item %d failed", error->code);

              g_assert_cmpstr (error->message, ==, expected);
              g_string_append_printf (text, "e%d", error->code);
            }
          else
            g_string_append_printf (text, "x%s:%d:%s", g_quark_to_string (error->domain),
                                    error->code, error->message);
        }
    }
  return g_string_free (text, FALSE);
}

static int
compare_strings (gconstpointer a,
                 gconstpointer b)
{
  return strcmp (*(char * const *) a, *(char * const *) b);
}

/* The words of text, sorted, except a last "end" that stays last. */
static char *
sorted_words (const char *text)
{
  g_auto(GStrv) words = g_strsplit (text, " ", -1);
  guint n = g_strv_length (words);

  if (n > 0 && g_str_equal (words[n - 1], "end"))
    n--;
  qsort (words, n, sizeof (char *), compare_strings);
  return g_strjoinv (" ", words);
}

static gpointer
cancel_after_50ms (gpointer data)
{
  g_usleep (50 * 1000);
  g_cancellable_cancel (data);
  return NULL;
}

/* Tests */

static void
test_pool_construct (void)
{
  g_autoptr(MpgPool) pool = NULL;
  g_autoptr(MpgPool) automatic = NULL;
  g_autoptr(MpgPool) limited = NULL;
  g_autoptr(GArray) pids = NULL;
  g_autoptr(GVariant) result = NULL;
  guint processes = 0, maxtasks = 99, timeout = 99, retries = 99, replaced = 99;
  guint64 submitted = 99, completed = 99;
  guint id;

  g_test_summary ("processes (0 = cpu_count), maxtasksperchild and the other properties; workers are forked lazily");

  automatic = new_pool (0);
  g_assert_cmpuint (mpg_pool_get_processes (automatic), ==, mpg_cpu_count ());
  g_object_get (automatic, "processes", &processes, NULL);
  g_assert_cmpuint (processes, ==, mpg_cpu_count ());

  pool = new_pool (2);
  g_object_get (pool,
                "processes", &processes,
                "maxtasksperchild", &maxtasks,
                "task-timeout", &timeout,
                "retries", &retries,
                "tasks-submitted", &submitted,
                "tasks-completed", &completed,
                "workers-replaced", &replaced,
                NULL);
  g_assert_cmpuint (processes, ==, 2);
  g_assert_cmpuint (mpg_pool_get_processes (pool), ==, 2);
  g_assert_cmpuint (maxtasks, ==, 0);
  g_assert_cmpuint (mpg_pool_get_maxtasksperchild (pool), ==, 0);
  g_assert_cmpuint (timeout, ==, 0);
  g_assert_cmpuint (retries, ==, 0);
  g_assert_cmpuint (submitted, ==, 0);
  g_assert_cmpuint (completed, ==, 0);
  g_assert_cmpuint (replaced, ==, 0);

  /* No worker before the first call. */
  pids = mpg_pool_dup_worker_pids (pool);
  g_assert_nonnull (pids);
  g_assert_cmpuint (pids->len, ==, 0);
  g_clear_pointer (&pids, g_array_unref);

  id = add_function (pool, task_square, NULL, NULL);
  g_assert_cmpint (apply_int (pool, id, g_variant_new_int32 (3)), ==, 9);
  pids = mpg_pool_dup_worker_pids (pool);
  g_assert_cmpuint (pids->len, >=, 1);
  g_assert_cmpuint (pids->len, <=, 2);
  g_clear_pointer (&pids, g_array_unref);

  result = map_ok (pool, id, int_items (20), 1);
  assert_squares (result, 20);
  pids = mpg_pool_dup_worker_pids (pool);
  g_assert_cmpuint (pids->len, >=, 1);
  g_assert_cmpuint (pids->len, <=, 2);
  for (guint i = 0; i < pids->len; i++)
    g_assert_cmpint (g_array_index (pids, gint, i), >, 0);

  /* Counters are in items. */
  g_assert_cmpuint (mpg_pool_get_tasks_submitted (pool), ==, 21);
  g_assert_cmpuint (mpg_pool_get_tasks_completed (pool), ==, 21);
  g_assert_cmpuint (mpg_pool_get_workers_replaced (pool), ==, 0);

  limited = track_pool (mpg_pool_new_full (1, NULL, NULL, NULL, NULL, 3));
  g_assert_nonnull (limited);
  g_assert_cmpuint (mpg_pool_get_maxtasksperchild (limited), ==, 3);
  g_object_get (limited, "maxtasksperchild", &maxtasks, NULL);
  g_assert_cmpuint (maxtasks, ==, 3);
  g_assert_cmpuint (mpg_pool_get_processes (limited), ==, 1);
}

static void
count_notify (GObject    *object,
              GParamSpec *pspec,
              gpointer    user_data)
{
  (*(guint *) user_data)++;
}

static void
test_pool_properties (void)
{
  g_autoptr(MpgPool) pool = new_pool (1);
  guint timeout_notified = 0, retries_notified = 0, retries = 0;

  g_test_summary ("task-timeout and retries read back, notified only on change");

  g_signal_connect (pool, "notify::task-timeout", G_CALLBACK (count_notify), &timeout_notified);
  g_signal_connect (pool, "notify::retries", G_CALLBACK (count_notify), &retries_notified);

  mpg_pool_set_task_timeout (pool, 250);
  mpg_pool_set_task_timeout (pool, 250);
  g_assert_cmpuint (mpg_pool_get_task_timeout (pool), ==, 250);
  g_assert_cmpuint (timeout_notified, ==, 1);
  g_object_set (pool, "task-timeout", 0, NULL);
  g_assert_cmpuint (mpg_pool_get_task_timeout (pool), ==, 0);
  g_assert_cmpuint (timeout_notified, ==, 2);

  g_object_set (pool, "retries", 2, NULL);
  g_object_get (pool, "retries", &retries, NULL);
  g_assert_cmpuint (retries, ==, 2);
  mpg_pool_set_retries (pool, 2);
  g_assert_cmpuint (retries_notified, ==, 1);
  mpg_pool_set_retries (pool, 0);
  g_assert_cmpuint (mpg_pool_get_retries (pool), ==, 0);
  g_assert_cmpuint (retries_notified, ==, 2);
}

static void
test_pool_apply (void)
{
  g_autoptr(MpgPool) pool = new_pool (2);
  g_autoptr(GVariant) value = NULL;
  Waiter waiter;
  Call call;
  guint square, type_string, nothing;

  g_test_summary ("apply() and apply_async() return func(arg); a NULL arg is (), a NULL result is ()");

  square = add_function (pool, task_square, NULL, NULL);
  type_string = add_function (pool, task_type_string, NULL, NULL);
  nothing = add_function (pool, task_nothing, NULL, NULL);

  g_assert_cmpint (apply_int (pool, square, g_variant_new_int32 (7)), ==, 49);

  value = apply_ok (pool, type_string, NULL);
  assert_variant (value, "s", "'()'");
  g_clear_pointer (&value, g_variant_unref);
  value = apply_ok (pool, type_string, g_variant_new ("(si)", "x", 1));
  assert_variant (value, "s", "'(si)'");
  g_clear_pointer (&value, g_variant_unref);

  value = apply_ok (pool, nothing, g_variant_new_int32 (1));
  assert_variant (value, "()", "()");
  g_clear_pointer (&value, g_variant_unref);

  waiter_init (&waiter, NULL);
  call_init (&call, &waiter, pool);
  mpg_pool_apply_async (pool, square, g_variant_new_int32 (9), NULL, applied_cb, &call);
  /* Never completes before returning to the main loop. */
  g_assert_cmpuint (call.n_callbacks, ==, 0);
  g_assert_true (waiter_run (&waiter, WAIT_MS));
  g_assert_no_error (call.error);
  assert_variant (call.value, "i", "81");
  g_assert_true (call.thread == g_thread_self ());
  call_clear (&call);

  call_init (&call, &waiter, pool);
  mpg_pool_apply_async (pool, nothing, NULL, NULL, applied_cb, &call);
  g_assert_true (waiter_run (&waiter, WAIT_MS));
  g_assert_no_error (call.error);
  assert_variant (call.value, "()", "()");
  call_clear (&call);
  waiter_clear (&waiter);
}

static void
test_pool_map_order (void)
{
  g_autoptr(MpgPool) pool = new_pool (2);
  const guint chunksizes[] = { 0, 1, 3, 1000 };
  guint n = under_valgrind () ? 30 : 100;
  guint id;

  g_test_summary ("map() returns the results in input order, whatever the chunk size");

  id = add_function (pool, task_square, NULL, NULL);
  for (guint i = 0; i < G_N_ELEMENTS (chunksizes); i++)
    {
      g_autoptr(GVariant) result = map_ok (pool, id, int_items (n), chunksizes[i]);

      g_test_message ("chunksize %u", chunksizes[i]);
      assert_squares (result, n);
    }

  /* One item, and fewer items than a chunk. */
  {
    g_autoptr(GVariant) one = map_ok (pool, id, int_items (1), 0);
    g_autoptr(GVariant) few = map_ok (pool, id, int_items (5), 3);

    assert_squares (one, 1);
    assert_squares (few, 5);
  }
}

/* With one worker that exits after every chunk, the pids of the results
 * show the chunks: the items of one chunk share a pid, no two chunks do. */
static void
assert_chunks (GVariant    *pids,
               const guint *sizes,
               guint        n_sizes)
{
  g_autoptr(GHashTable) seen = g_hash_table_new (NULL, NULL);
  const gint32 *values;
  gsize len, i = 0;

  g_assert_cmpstr (g_variant_get_type_string (pids), ==, "ai");
  values = g_variant_get_fixed_array (pids, &len, sizeof (gint32));
  for (guint c = 0; c < n_sizes; c++)
    {
      g_assert_cmpuint (i + sizes[c], <=, len);
      g_assert_false (g_hash_table_contains (seen, GINT_TO_POINTER (values[i])));
      g_hash_table_add (seen, GINT_TO_POINTER (values[i]));
      for (guint j = 1; j < sizes[c]; j++)
        g_assert_cmpint (values[i + j], ==, values[i]);
      i += sizes[c];
    }
  g_assert_cmpuint (i, ==, len);
}

static void
test_pool_map_chunks (void)
{
  g_autoptr(MpgPool) pool = track_pool (mpg_pool_new_full (1, NULL, NULL, NULL, NULL, 1));
  g_autoptr(GVariant) result = NULL;
  g_autoptr(MpgPoolIterator) it = NULL;
  g_autoptr(GError) error = NULL;
  const guint sizes_3[] = { 3, 3, 1 };
  const guint sizes_auto_8[] = { 2, 2, 2, 2 };
  const guint sizes_auto_9[] = { 3, 3, 3 };
  const guint sizes_1[] = { 1, 1, 1 };
  const guint sizes_large[] = { 5 };
  gint32 pids[3];
  guint id;

  g_test_summary ("Chunk sizes 1, 3, large and 0 (len / (4 * processes), rounded up); imap's 0 is 1");

  id = add_function (pool, task_pid, NULL, NULL);

  result = map_ok (pool, id, int_items (7), 3);
  assert_chunks (result, sizes_3, G_N_ELEMENTS (sizes_3));
  g_clear_pointer (&result, g_variant_unref);

  /* 8 / (4 * 1) = 2; 9 / 4 = 2.25, rounded up to 3. */
  result = map_ok (pool, id, int_items (8), 0);
  assert_chunks (result, sizes_auto_8, G_N_ELEMENTS (sizes_auto_8));
  g_clear_pointer (&result, g_variant_unref);
  result = map_ok (pool, id, int_items (9), 0);
  assert_chunks (result, sizes_auto_9, G_N_ELEMENTS (sizes_auto_9));
  g_clear_pointer (&result, g_variant_unref);

  result = map_ok (pool, id, int_items (3), 1);
  assert_chunks (result, sizes_1, G_N_ELEMENTS (sizes_1));
  g_clear_pointer (&result, g_variant_unref);

  result = map_ok (pool, id, int_items (5), 1000);
  assert_chunks (result, sizes_large, G_N_ELEMENTS (sizes_large));
  g_clear_pointer (&result, g_variant_unref);

  it = mpg_pool_imap (pool, id, int_items (3), 0, &error);
  g_assert_no_error (error);
  for (guint i = 0; i < 3; i++)
    {
      g_autoptr(GVariant) value = NULL;

      g_assert_true (mpg_pool_iterator_next (it, WAIT_MS, NULL, &value, &error));
      g_assert_no_error (error);
      g_assert_nonnull (value);
      pids[i] = g_variant_get_int32 (value);
    }
  g_assert_cmpint (pids[0], !=, pids[1]);
  g_assert_cmpint (pids[1], !=, pids[2]);
  g_assert_cmpint (pids[0], !=, pids[2]);
}

static void
test_pool_map_types (void)
{
  g_autoptr(MpgPool) pool = new_pool (2);
  g_autoptr(GError) error = NULL;
  g_autoptr(GVariant) result = NULL;
  guint square, type_string, len, pair_sum, mixed, nothing;

  g_test_summary ("map() over ai, as, av (unboxed), a(ii); results ai when homogeneous, av when mixed, () for NULL");

  square = add_function (pool, task_square, NULL, NULL);
  type_string = add_function (pool, task_type_string, NULL, NULL);
  len = add_function (pool, task_strlen, NULL, NULL);
  pair_sum = add_function (pool, task_pair_sum, NULL, NULL);
  mixed = add_function (pool, task_mixed, NULL, NULL);
  nothing = add_function (pool, task_nothing, NULL, NULL);

  result = map_ok (pool, square, g_variant_new_parsed ("[1, 2, 3]"), 0);
  assert_variant (result, "ai", "[1, 4, 9]");
  g_clear_pointer (&result, g_variant_unref);

  result = map_ok (pool, len, g_variant_new_parsed ("['a', 'bb', '', 'dddd']"), 1);
  assert_variant (result, "ai", "[1, 2, 0, 4]");
  g_clear_pointer (&result, g_variant_unref);

  /* The elements of an av are unboxed before the call. */
  result = map_ok (pool, square, g_variant_new_parsed ("[<1>, <2>, <3>]"), 1);
  assert_variant (result, "ai", "[1, 4, 9]");
  g_clear_pointer (&result, g_variant_unref);
  result = map_ok (pool, type_string, g_variant_new_parsed ("[<1>, <'x'>, <(1, 2)>, <[true]>]"), 1);
  assert_variant (result, "as", "['i', 's', '(ii)', 'ab']");
  g_clear_pointer (&result, g_variant_unref);

  result = map_ok (pool, pair_sum, g_variant_new_parsed ("[(1, 2), (3, 4), (5, 6)]"), 2);
  assert_variant (result, "ai", "[3, 7, 11]");
  g_clear_pointer (&result, g_variant_unref);

  result = map_ok (pool, mixed, int_items (4), 1);
  assert_variant (result, "av", "[<0>, <'1'>, <2>, <'3'>]");
  g_clear_pointer (&result, g_variant_unref);
  /* Mixed within the first chunk too: that chunk comes boxed. */
  result = map_ok (pool, mixed, int_items (4), 2);
  assert_variant (result, "av", "[<0>, <'1'>, <2>, <'3'>]");
  g_clear_pointer (&result, g_variant_unref);

  /* All results odd: homogeneous again. */
  result = map_ok (pool, mixed, g_variant_new_parsed ("[1, 3]"), 1);
  assert_variant (result, "as", "['1', '3']");
  g_clear_pointer (&result, g_variant_unref);

  result = map_ok (pool, nothing, int_items (3), 2);
  assert_variant (result, "a()", "[(), (), ()]");
  g_clear_pointer (&result, g_variant_unref);

  result = map_ok (pool, square, g_variant_new_parsed ("@ai []"), 0);
  assert_variant (result, "av", "[]");
  g_clear_pointer (&result, g_variant_unref);
  result = map_ok (pool, len, g_variant_new_parsed ("@as []"), 5);
  assert_variant (result, "av", "[]");
  g_clear_pointer (&result, g_variant_unref);

  /* Items that are not an array. */
  result = mpg_pool_map (pool, square, g_variant_new_int32 (5), 0, NULL, &error);
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
  g_assert_null (result);
  g_clear_error (&error);
  result = mpg_pool_map (pool, pair_sum, g_variant_new ("(ii)", 1, 2), 0, NULL, &error);
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
  g_assert_null (result);
  g_clear_error (&error);
}

static gboolean
tick (gpointer user_data)
{
  (*(guint *) user_data)++;
  return G_SOURCE_CONTINUE;
}

static void
test_pool_map_async (void)
{
  g_autoptr(MpgPool) pool = new_pool (2);
  Waiter waiter;
  Call call, star;
  guint sleep_id, pair_sum, ticker, ticks = 0;
  GVariantBuilder builder;

  g_test_summary ("map_async() and starmap_async() complete in a running main loop, which keeps running");

  sleep_id = add_function (pool, task_sleep, NULL, NULL);
  pair_sum = add_function (pool, task_pair_sum, NULL, NULL);

  g_variant_builder_init (&builder, G_VARIANT_TYPE ("ai"));
  for (guint i = 0; i < 10; i++)
    g_variant_builder_add (&builder, "i", 30);

  waiter_init (&waiter, NULL);
  call_init (&call, &waiter, pool);
  call_init (&star, &waiter, pool);
  mpg_pool_map_async (pool, sleep_id, g_variant_builder_end (&builder), 1, NULL, mapped_cb, &call);
  mpg_pool_starmap_async (pool, pair_sum, g_variant_new_parsed ("[(1, 1), (2, 2)]"), 0, NULL,
                          starmapped_cb, &star);
  g_assert_cmpuint (call.n_callbacks + star.n_callbacks, ==, 0);
  ticker = g_timeout_add (10, tick, &ticks);
  g_assert_true (waiter_run (&waiter, WAIT_MS));
  g_source_remove (ticker);

  g_assert_no_error (call.error);
  assert_variant (call.value, "ai", "[30, 30, 30, 30, 30, 30, 30, 30, 30, 30]");
  g_assert_no_error (star.error);
  assert_variant (star.value, "ai", "[2, 4]");
  g_assert_cmpuint (call.n_callbacks, ==, 1);
  g_assert_cmpuint (star.n_callbacks, ==, 1);
  g_assert_true (call.context == NULL);
  /* 10 × 30 ms on 2 workers: the loop dispatched meanwhile. */
  g_assert_cmpuint (ticks, >=, 3);

  call_clear (&call);
  call_clear (&star);
  waiter_clear (&waiter);
}

typedef struct
{
  MpgPool *pool;
  guint function;
  GMainContext *context;
  GThread *thread;
  gboolean completed;
  Call call;
  ProgressWatch watch;
} ThreadCall;

static gpointer
map_async_in_thread (gpointer data)
{
  ThreadCall *tc = data;
  Waiter waiter;

  tc->context = g_main_context_new ();
  tc->thread = g_thread_self ();
  g_main_context_push_thread_default (tc->context);

  waiter_init (&waiter, tc->context);
  call_init (&tc->call, &waiter, tc->pool);
  tc->watch.calls[tc->watch.n_calls++] = &tc->call;
  mpg_pool_map_async (tc->pool, tc->function, int_items (12), 3, NULL, mapped_cb, &tc->call);
  tc->completed = waiter_run (&waiter, WAIT_MS);
  waiter_clear (&waiter);

  g_main_context_pop_thread_default (tc->context);
  return NULL;
}

static void
test_pool_map_async_context (void)
{
  g_autoptr(MpgPool) pool = new_pool (2);
  ThreadCall tc;
  GThread *thread;
  gulong handler;

  g_test_summary ("map_async() completes, and emits progress, in the thread-default main context of its caller");

  memset (&tc, 0, sizeof tc);
  tc.pool = pool;
  tc.function = add_function (pool, task_square, NULL, NULL);
  handler = g_signal_connect (pool, "progress", G_CALLBACK (on_progress), &tc.watch);

  thread = g_thread_new ("map-async", map_async_in_thread, &tc);
  g_thread_join (thread);
  g_signal_handler_disconnect (pool, handler);

  g_assert_true (tc.completed);
  g_assert_no_error (tc.call.error);
  assert_squares (tc.call.value, 12);
  g_assert_true (tc.call.thread == tc.thread);
  g_assert_true (tc.call.context == tc.context);
  g_assert_cmpuint (tc.watch.n_unknown, ==, 0);
  assert_progress (&tc.call, 4, 12);

  call_clear (&tc.call);
  g_main_context_unref (tc.context);
}

static void
test_pool_starmap (void)
{
  g_autoptr(MpgPool) pool = new_pool (2);
  g_autoptr(GVariant) result = NULL;
  g_autoptr(GError) error = NULL;
  Waiter waiter;
  Call call;
  guint pair_sum, type_string;

  g_test_summary ("starmap() passes every tuple whole; items that are not tuples are G_IO_ERROR_INVALID_ARGUMENT");

  pair_sum = add_function (pool, task_pair_sum, NULL, NULL);
  type_string = add_function (pool, task_type_string, NULL, NULL);

  result = mpg_pool_starmap (pool, pair_sum, g_variant_new_parsed ("[(1, 2), (3, 4), (10, -10)]"),
                             1, NULL, &error);
  g_assert_no_error (error);
  assert_variant (result, "ai", "[3, 7, 0]");
  g_clear_pointer (&result, g_variant_unref);

  result = mpg_pool_starmap (pool, type_string, g_variant_new_parsed ("[('a', 1, true), ('b', 2, false)]"),
                             0, NULL, &error);
  g_assert_no_error (error);
  assert_variant (result, "as", "['(sib)', '(sib)']");
  g_clear_pointer (&result, g_variant_unref);

  /* av elements are unboxed, as map does; then they must be tuples. */
  result = mpg_pool_starmap (pool, pair_sum, g_variant_new_parsed ("[<(1, 1)>, <(2, 3)>]"), 0, NULL, &error);
  g_assert_no_error (error);
  assert_variant (result, "ai", "[2, 5]");
  g_clear_pointer (&result, g_variant_unref);

  result = mpg_pool_starmap (pool, pair_sum, g_variant_new_parsed ("@a(ii) []"), 0, NULL, &error);
  g_assert_no_error (error);
  assert_variant (result, "av", "[]");
  g_clear_pointer (&result, g_variant_unref);

  result = mpg_pool_starmap (pool, pair_sum, g_variant_new_parsed ("[1, 2]"), 0, NULL, &error);
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
  g_assert_null (result);
  g_clear_error (&error);

  result = mpg_pool_starmap (pool, pair_sum, g_variant_new_parsed ("[<(1, 1)>, <3>]"), 0, NULL, &error);
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
  g_assert_null (result);
  g_clear_error (&error);

  result = mpg_pool_starmap (pool, pair_sum, g_variant_new ("(ii)", 1, 2), 0, NULL, &error);
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
  g_assert_null (result);
  g_clear_error (&error);

  waiter_init (&waiter, NULL);
  call_init (&call, &waiter, pool);
  mpg_pool_starmap_async (pool, pair_sum, g_variant_new_parsed ("['x', 'y']"), 0, NULL,
                          starmapped_cb, &call);
  g_assert_true (waiter_run (&waiter, WAIT_MS));
  g_assert_error (call.error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
  g_assert_null (call.value);
  call_clear (&call);

  call_init (&call, &waiter, pool);
  mpg_pool_starmap_async (pool, pair_sum, g_variant_new_parsed ("[(5, 6)]"), 0, NULL,
                          starmapped_cb, &call);
  g_assert_true (waiter_run (&waiter, WAIT_MS));
  g_assert_no_error (call.error);
  assert_variant (call.value, "ai", "[11]");
  call_clear (&call);
  waiter_clear (&waiter);
}

static void
test_pool_imap (void)
{
  g_autoptr(MpgPool) pool = new_pool (2);
  g_autoptr(MpgPoolIterator) it = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *text = NULL;
  g_autofree char *sorted = NULL;
  gint32 sleeps[8];
  guint id;

  g_test_summary ("imap() yields in input order, imap_unordered() every item in completion order");

  id = add_function (pool, task_item, NULL, NULL);

  /* The first items take longest: completion order is not input order. */
  for (guint i = 0; i < G_N_ELEMENTS (sleeps); i++)
    sleeps[i] = (G_N_ELEMENTS (sleeps) - i) * 15;

  it = mpg_pool_imap (pool, id, item_tuples (8, NULL, sleeps), 0, &error);
  g_assert_no_error (error);
  g_assert_nonnull (it);
  g_assert_true (MPG_IS_POOL_ITERATOR (it));
  g_assert_cmpuint (mpg_pool_iterator_get_length (it), ==, 8);
  text = iterate_to_text (it, 20);
  g_assert_cmpstr (text, ==, "0 1 2 3 4 5 6 7 end");
  g_clear_pointer (&text, g_free);
  g_clear_object (&it);

  it = mpg_pool_imap (pool, id, item_tuples (8, NULL, sleeps), 3, &error);
  g_assert_no_error (error);
  text = iterate_to_text (it, 20);
  g_assert_cmpstr (text, ==, "0 1 2 3 4 5 6 7 end");
  g_clear_pointer (&text, g_free);
  g_clear_object (&it);

  it = mpg_pool_imap_unordered (pool, id, item_tuples (8, NULL, sleeps), 0, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (mpg_pool_iterator_get_length (it), ==, 8);
  text = iterate_to_text (it, 20);
  g_test_message ("imap_unordered: %s", text);
  g_assert_true (g_str_has_suffix (text, " end"));
  sorted = sorted_words (text);
  g_assert_cmpstr (sorted, ==, "0 1 2 3 4 5 6 7 end");
  g_clear_pointer (&text, g_free);
  g_clear_pointer (&sorted, g_free);
  g_clear_object (&it);

  /* Item 0 takes far longer than the rest, which another worker runs:
   * in completion order it cannot come first. */
  memset (sleeps, 0, sizeof sleeps);
  sleeps[0] = scaled (300);
  it = mpg_pool_imap_unordered (pool, id, item_tuples (6, NULL, sleeps), 1, &error);
  g_assert_no_error (error);
  text = iterate_to_text (it, 20);
  g_test_message ("imap_unordered: %s", text);
  g_assert_false (g_str_has_prefix (text, "0 "));
  sorted = sorted_words (text);
  g_assert_cmpstr (sorted, ==, "0 1 2 3 4 5 end");
  g_clear_object (&it);

  /* Empty input: the end at once. */
  it = mpg_pool_imap (pool, id, g_variant_new_parsed ("@a(iii) []"), 0, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (mpg_pool_iterator_get_length (it), ==, 0);
  g_clear_pointer (&text, g_free);
  text = iterate_to_text (it, 3);
  g_assert_cmpstr (text, ==, "end");
  g_clear_object (&it);

  it = mpg_pool_imap (pool, id, g_variant_new_int32 (1), 0, &error);
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
  g_assert_null (it);
  g_clear_error (&error);
  it = mpg_pool_imap_unordered (pool, id, g_variant_new_int32 (1), 0, &error);
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
  g_assert_null (it);
}

static void
test_pool_iterator_timeout (void)
{
  g_autoptr(MpgPool) pool = new_pool (1);
  g_autoptr(MpgPoolIterator) it = NULL;
  g_autoptr(GCancellable) cancelled = g_cancellable_new ();
  g_autoptr(GCancellable) cancellable = g_cancellable_new ();
  g_autoptr(GVariant) value = NULL;
  g_autoptr(GError) error = NULL;
  GThread *canceller;
  gint64 start;
  guint id;

  g_test_summary ("iterator next(): timeout 0 polls, -1 waits; a timeout or a cancellation consumes nothing");

  id = add_function (pool, task_sleep, NULL, NULL);
  it = mpg_pool_imap (pool, id, g_variant_new_parsed ("[300, 0, 1500]"), 0, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (mpg_pool_iterator_get_length (it), ==, 3);

  start = g_get_monotonic_time ();
  g_assert_false (mpg_pool_iterator_next (it, 0, NULL, &value, &error));
  g_assert_error (error, MPG_ERROR, MPG_ERROR_TIMEOUT);
  g_assert_null (value);
  g_assert_cmpint (g_get_monotonic_time () - start, <, scaled (100) * 1000);
  g_clear_error (&error);

  start = g_get_monotonic_time ();
  g_assert_false (mpg_pool_iterator_next (it, 50, NULL, &value, &error));
  g_assert_error (error, MPG_ERROR, MPG_ERROR_TIMEOUT);
  g_assert_null (value);
  g_assert_cmpint (g_get_monotonic_time () - start, >=, 50 * 1000);
  g_clear_error (&error);

  /* Nothing was consumed: the first item comes first. */
  g_assert_true (mpg_pool_iterator_next (it, -1, NULL, &value, &error));
  g_assert_no_error (error);
  assert_variant (value, "i", "300");
  g_clear_pointer (&value, g_variant_unref);

  g_assert_true (mpg_pool_iterator_next (it, WAIT_MS, NULL, &value, &error));
  g_assert_no_error (error);
  assert_variant (value, "i", "0");
  g_clear_pointer (&value, g_variant_unref);

  /* The last item takes 1.5 s: cancelled before, and while waiting. */
  g_cancellable_cancel (cancelled);
  g_assert_false (mpg_pool_iterator_next (it, WAIT_MS, cancelled, &value, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_assert_null (value);
  g_clear_error (&error);

  canceller = g_thread_new ("canceller", cancel_after_50ms, cancellable);
  start = g_get_monotonic_time ();
  g_assert_false (mpg_pool_iterator_next (it, -1, cancellable, &value, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_assert_null (value);
  g_assert_cmpint (g_get_monotonic_time () - start, <, scaled (500) * 1000);
  g_clear_error (&error);
  g_thread_join (canceller);

  g_assert_true (mpg_pool_iterator_next (it, -1, NULL, &value, &error));
  g_assert_no_error (error);
  assert_variant (value, "i", "1500");
  g_clear_pointer (&value, g_variant_unref);

  g_assert_true (mpg_pool_iterator_next (it, 0, NULL, &value, &error));
  g_assert_no_error (error);
  g_assert_null (value);
}

typedef struct
{
  MpgPoolIterator *it;
  GMainLoop *loop;
  GString *text;
  guint steps;
  gboolean ended;
} IterState;

static void
next_cb (GObject      *object,
         GAsyncResult *result,
         gpointer      user_data)
{
  IterState *state = user_data;
  g_autoptr(GVariant) value = NULL;
  g_autoptr(GError) error = NULL;

  if (state->text->len > 0)
    g_string_append_c (state->text, ' ');
  if (mpg_pool_iterator_next_finish (state->it, result, &value, &error))
    {
      if (value == NULL)
        {
          g_string_append (state->text, "end");
          state->ended = TRUE;
          g_main_loop_quit (state->loop);
          return;
        }
      g_string_append_printf (state->text, "%d", g_variant_get_int32 (value));
    }
  else if (error->domain == TEST_ERROR)
    g_string_append_printf (state->text, "e%d", error->code);
  else
    g_string_append_printf (state->text, "x%s", error->message);

  if (++state->steps > 50)
    {
      g_main_loop_quit (state->loop);
      return;
    }
  mpg_pool_iterator_next_async (state->it, NULL, next_cb, state);
}

static char *
iterate_async (MpgPoolIterator *it)
{
  IterState state = { it, NULL, g_string_new (NULL), 0, FALSE };
  Waiter waiter;

  waiter_init (&waiter, NULL);
  state.loop = waiter.loop;
  /* The waiter's loop, quit by next_cb; pending keeps waiter_run going. */
  waiter.pending = 1;
  mpg_pool_iterator_next_async (it, NULL, next_cb, &state);
  waiter_run (&waiter, WAIT_MS);
  g_assert_false (waiter.timed_out);
  g_assert_true (state.ended);
  waiter_clear (&waiter);
  return g_string_free (state.text, FALSE);
}

static void
test_pool_iterator_async (void)
{
  g_autoptr(MpgPool) pool = new_pool (2);
  g_autoptr(MpgPoolIterator) it = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *text = NULL;
  g_autofree char *sorted = NULL;
  const gint32 codes[] = { -1, 5, -1, -1 };
  guint id;

  g_test_summary ("iterator next_async(): results in order, an item's error, then the end");

  id = add_function (pool, task_item, NULL, NULL);

  it = mpg_pool_imap (pool, id, item_tuples (6, NULL, NULL), 2, &error);
  g_assert_no_error (error);
  text = iterate_async (it);
  g_assert_cmpstr (text, ==, "0 1 2 3 4 5 end");
  g_clear_pointer (&text, g_free);
  g_clear_object (&it);

  it = mpg_pool_imap (pool, id, item_tuples (4, codes, NULL), 1, &error);
  g_assert_no_error (error);
  text = iterate_async (it);
  g_assert_cmpstr (text, ==, "0 e5 2 3 end");
  g_clear_pointer (&text, g_free);
  g_clear_object (&it);

  it = mpg_pool_imap_unordered (pool, id, item_tuples (4, codes, NULL), 1, &error);
  g_assert_no_error (error);
  text = iterate_async (it);
  sorted = sorted_words (text);
  g_assert_cmpstr (sorted, ==, "0 2 3 e5 end");
}

static void
test_pool_imap_error (void)
{
  g_autoptr(MpgPool) pool = new_pool (2);
  g_autoptr(MpgPoolIterator) it = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *text = NULL;
  g_autofree char *sorted = NULL;
  const gint32 codes[] = { -1, -1, 2, -1, -1, -1 };
  const gint32 codes_two[] = { -1, 1, -1, -1, 4, -1 };
  guint id;

  g_test_summary ("An item that fails in imap is reported in its place; the other items still come");

  id = add_function (pool, task_item, NULL, NULL);

  it = mpg_pool_imap (pool, id, item_tuples (6, codes, NULL), 0, &error);
  g_assert_no_error (error);
  text = iterate_to_text (it, 20);
  g_assert_cmpstr (text, ==, "0 1 e2 3 4 5 end");
  g_clear_pointer (&text, g_free);
  g_clear_object (&it);

  /* In chunks of 3: the items after the failing one in its chunk run too. */
  it = mpg_pool_imap (pool, id, item_tuples (6, codes_two, NULL), 3, &error);
  g_assert_no_error (error);
  text = iterate_to_text (it, 20);
  g_assert_cmpstr (text, ==, "0 e1 2 3 e4 5 end");
  g_clear_pointer (&text, g_free);
  g_clear_object (&it);

  it = mpg_pool_imap_unordered (pool, id, item_tuples (6, codes, NULL), 1, &error);
  g_assert_no_error (error);
  text = iterate_to_text (it, 20);
  sorted = sorted_words (text);
  g_assert_cmpstr (sorted, ==, "0 1 3 4 5 e2 end");
}

static void
test_pool_errors (void)
{
  g_autoptr(MpgPool) pool = new_pool (2);
  g_autoptr(GVariant) result = NULL;
  g_autoptr(GError) error = NULL;
  const gint32 codes[] = { -1, 17, -1 };
  Waiter waiter;
  Call call;
  guint fail, io_error, child_domain, odd_domain, item;

  g_test_summary ("A task's error comes back with its domain (recreated by name), code and message");

  fail = add_function (pool, task_fail, NULL, NULL);
  io_error = add_function (pool, task_io_error, NULL, NULL);
  child_domain = add_function (pool, task_child_domain_error, NULL, NULL);
  odd_domain = add_function (pool, task_odd_domain_error, NULL, NULL);
  item = add_function (pool, task_item, NULL, NULL);

  result = mpg_pool_apply (pool, fail, NULL, NULL, &error);
  g_assert_error (error, TEST_ERROR, 42);
  g_assert_cmpstr (error->message, ==, "the task failed on purpose");
  g_assert_null (result);
  g_clear_error (&error);

  result = mpg_pool_apply (pool, io_error, NULL, NULL, &error);
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_PERMISSION_DENIED);
  g_assert_cmpstr (error->message, ==, "no access");
  g_clear_error (&error);

  result = mpg_pool_map (pool, io_error, int_items (3), 1, NULL, &error);
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_PERMISSION_DENIED);
  g_assert_cmpstr (error->message, ==, "no access");
  g_assert_null (result);
  g_clear_error (&error);

  result = mpg_pool_map (pool, item, item_tuples (3, codes, NULL), 0, NULL, &error);
  g_assert_error (error, TEST_ERROR, 17);
  g_assert_cmpstr (error->message, ==, "item 1 failed");
  g_assert_null (result);
  g_clear_error (&error);

  result = mpg_pool_starmap (pool, item, item_tuples (3, codes, NULL), 0, NULL, &error);
  g_assert_error (error, TEST_ERROR, 17);
  g_clear_error (&error);

  /* A domain the parent never registered is recreated by its name... */
  g_assert_cmpuint (g_quark_try_string (CHILD_ONLY_DOMAIN), ==, 0);
  result = mpg_pool_apply (pool, child_domain, NULL, NULL, &error);
  g_assert_nonnull (error);
  g_assert_cmpuint (error->domain, ==, g_quark_try_string (CHILD_ONLY_DOMAIN));
  g_assert_cmpint (error->code, ==, 3);
  g_assert_cmpstr (error->message, ==, "child only");
  g_clear_error (&error);

  /* ...unless it cannot be a domain's name: then MPG_ERROR_REMOTE names it. */
  result = mpg_pool_apply (pool, odd_domain, NULL, NULL, &error);
  g_assert_error (error, MPG_ERROR, MPG_ERROR_REMOTE);
  g_assert_nonnull (strstr (error->message, "odd domain!"));
  g_assert_nonnull (strstr (error->message, "odd"));
  g_clear_error (&error);

  waiter_init (&waiter, NULL);
  call_init (&call, &waiter, pool);
  mpg_pool_apply_async (pool, fail, NULL, NULL, applied_cb, &call);
  g_assert_true (waiter_run (&waiter, WAIT_MS));
  g_assert_error (call.error, TEST_ERROR, 42);
  g_assert_cmpstr (call.error->message, ==, "the task failed on purpose");
  g_assert_null (call.value);
  call_clear (&call);

  call_init (&call, &waiter, pool);
  mpg_pool_map_async (pool, item, item_tuples (3, codes, NULL), 1, NULL, mapped_cb, &call);
  g_assert_true (waiter_run (&waiter, WAIT_MS));
  g_assert_error (call.error, TEST_ERROR, 17);
  g_assert_cmpstr (call.error->message, ==, "item 1 failed");
  call_clear (&call);
  waiter_clear (&waiter);

  /* The pool works on. */
  result = apply_ok (pool, item, g_variant_new ("(iii)", 4, -1, 0));
  assert_variant (result, "i", "4");
}

static void
assert_all_items_ran (const char *dir,
                      guint       n)
{
  for (guint i = 0; i < n; i++)
    {
      g_autofree char *name = g_strdup_printf ("item-%u", i);

      if (!file_exists (dir, name))
        g_test_message ("item %u did not run", i);
      g_assert_true (file_exists (dir, name));
    }
}

static void
test_pool_map_lowest_error (void)
{
  g_autoptr(MpgPool) pool = new_pool (2);
  g_autoptr(GError) error = NULL;
  g_autoptr(GVariant) result = NULL;
  gint32 codes[12], sleeps[12];
  const guint chunksizes[] = { 1, 4 };
  Waiter waiter;
  Call call;
  guint id;

  g_test_summary ("map() waits for every chunk and fails with the error of the lowest failing item");

  for (guint i = 0; i < G_N_ELEMENTS (codes); i++)
    {
      codes[i] = (i == 2 || i == 9) ? (gint32) i : -1;
      sleeps[i] = 0;
    }
  /* Item 9 fails first: item 2 fails later, and wins. */
  sleeps[2] = scaled (200);

  for (guint c = 0; c < G_N_ELEMENTS (chunksizes); c++)
    {
      g_autofree char *dir = make_tmpdir ();

      id = add_function (pool, task_item, g_strdup (dir), g_free);
      g_test_message ("chunksize %u", chunksizes[c]);
      result = mpg_pool_map (pool, id, item_tuples (12, codes, sleeps), chunksizes[c], NULL, &error);
      g_assert_error (error, TEST_ERROR, 2);
      g_assert_cmpstr (error->message, ==, "item 2 failed");
      g_assert_null (result);
      g_clear_error (&error);
      /* Every chunk ran, and every item of a chunk, even after a failure. */
      assert_all_items_ran (dir, 12);
      mpg_pool_remove_function (pool, id);
      remove_tmpdir (dir);
    }

  waiter_init (&waiter, NULL);
  call_init (&call, &waiter, pool);
  id = add_function (pool, task_item, NULL, NULL);
  mpg_pool_map_async (pool, id, item_tuples (12, codes, sleeps), 1, NULL, mapped_cb, &call);
  g_assert_true (waiter_run (&waiter, WAIT_MS));
  g_assert_error (call.error, TEST_ERROR, 2);
  call_clear (&call);
  waiter_clear (&waiter);
}

static void
test_pool_initializer (void)
{
  g_autoptr(MpgPool) pool = NULL;
  g_autoptr(GVariant) result = NULL;
  guint id, freed_before = freed_count;

  g_test_summary ("The initializer runs in every worker with initargs: a global it sets is seen by the tasks");

  pool = track_pool (mpg_pool_new_full (2, initializer_set_global, g_strdup ("tagged"), counted_free,
                                        g_variant_new_int32 (77), 0));
  g_assert_nonnull (pool);
  id = add_function (pool, task_read_init, NULL, NULL);

  result = apply_ok (pool, id, NULL);
  assert_variant (result, "(is)", "(77, 'tagged')");
  g_clear_pointer (&result, g_variant_unref);

  result = map_ok (pool, id, int_items (8), 1);
  assert_variant (result, "a(is)", "[(77, 'tagged'), (77, 'tagged'), (77, 'tagged'), (77, 'tagged'),"
                                   " (77, 'tagged'), (77, 'tagged'), (77, 'tagged'), (77, 'tagged')]");

  /* Not in the parent. */
  g_assert_cmpint (init_value, ==, -1);
  g_assert_null (init_tag);

  g_clear_object (&pool);
  g_assert_cmpuint (freed_count, ==, freed_before + 1);
}

static void
test_pool_initializer_fails (void)
{
  g_autofree char *dir = make_tmpdir ();
  g_autoptr(MpgPool) pool = NULL;
  g_autoptr(GVariant) result = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(GArray) pids = NULL;
  Waiter waiter;
  Call call;
  guint id, inits;
  gint64 deadline;

  g_test_summary ("A failing initializer fails every call with its error, prefixed; no more workers are forked");

  pool = track_pool (mpg_pool_new_full (2, initializer_fail, g_strdup (dir), g_free, NULL, 0));
  g_assert_nonnull (pool);
  id = add_function (pool, task_square, NULL, NULL);

  result = mpg_pool_apply (pool, id, g_variant_new_int32 (3), NULL, &error);
  g_assert_error (error, TEST_ERROR, 7);
  g_assert_cmpstr (error->message, ==, "Pool initializer failed: init broke");
  g_assert_null (result);
  g_clear_error (&error);

  result = mpg_pool_map (pool, id, int_items (6), 1, NULL, &error);
  g_assert_error (error, TEST_ERROR, 7);
  g_assert_cmpstr (error->message, ==, "Pool initializer failed: init broke");
  g_assert_null (result);
  g_clear_error (&error);

  waiter_init (&waiter, NULL);
  call_init (&call, &waiter, pool);
  mpg_pool_map_async (pool, id, int_items (4), 1, NULL, mapped_cb, &call);
  g_assert_true (waiter_run (&waiter, WAIT_MS));
  g_assert_error (call.error, TEST_ERROR, 7);
  g_assert_cmpstr (call.error->message, ==, "Pool initializer failed: init broke");
  call_clear (&call);
  waiter_clear (&waiter);

  /* The workers exit and are not replaced. */
  deadline = g_get_monotonic_time () + scaled (2000) * 1000;
  for (;;)
    {
      pids = mpg_pool_dup_worker_pids (pool);
      if (pids->len == 0 || g_get_monotonic_time () > deadline)
        break;
      g_clear_pointer (&pids, g_array_unref);
      g_usleep (5000);
    }
  g_assert_cmpuint (pids->len, ==, 0);
  g_clear_pointer (&pids, g_array_unref);

  inits = count_lines (dir, "inits");
  g_assert_cmpuint (inits, >=, 1);
  g_assert_cmpuint (inits, <=, 2);

  result = mpg_pool_apply (pool, id, g_variant_new_int32 (3), NULL, &error);
  g_assert_error (error, TEST_ERROR, 7);
  g_assert_cmpstr (error->message, ==, "Pool initializer failed: init broke");
  g_clear_error (&error);
  g_usleep (scaled (100) * 1000);
  g_assert_cmpuint (count_lines (dir, "inits"), ==, inits);
  pids = mpg_pool_dup_worker_pids (pool);
  g_assert_cmpuint (pids->len, ==, 0);

  g_clear_object (&pool);
  remove_tmpdir (dir);
}

static void
test_pool_maxtasksperchild (void)
{
  g_autoptr(MpgPool) pool = NULL;
  g_autoptr(GArray) pids = NULL;
  g_autoptr(GVariant) result = NULL;
  const guint pairs[] = { 2, 2, 2 };
  gint32 a, b, c;
  gint64 deadline;
  guint id;

  g_test_summary ("maxtasksperchild: a worker exits after that many chunks and is replaced by a new pid");

  pool = track_pool (mpg_pool_new_full (1, NULL, NULL, NULL, NULL, 2));
  id = add_function (pool, task_pid, NULL, NULL);

  a = apply_int (pool, id, NULL);
  pids = mpg_pool_dup_worker_pids (pool);
  /* After one chunk of two, the worker is still there. */
  g_assert_true (pids_contain (pids, a));
  g_clear_pointer (&pids, g_array_unref);

  g_assert_cmpint (apply_int (pool, id, NULL), ==, a);
  /* After the second, it leaves, and is reaped. */
  deadline = g_get_monotonic_time () + scaled (2000) * 1000;
  for (;;)
    {
      pids = mpg_pool_dup_worker_pids (pool);
      if (!pids_contain (pids, a) || g_get_monotonic_time () > deadline)
        break;
      g_clear_pointer (&pids, g_array_unref);
      g_usleep (5000);
    }
  g_assert_false (pids_contain (pids, a));
  g_clear_pointer (&pids, g_array_unref);
  g_assert_true (wait_pid_gone (a, scaled (2000)));

  b = apply_int (pool, id, NULL);
  g_assert_cmpint (b, !=, a);
  pids = mpg_pool_dup_worker_pids (pool);
  g_assert_true (pids_contain (pids, b));
  g_assert_cmpuint (pids->len, ==, 1);
  g_clear_pointer (&pids, g_array_unref);
  assert_replaced_at_least (pool, 1);

  /* Chunks, not items, count: three chunks of one item, two per worker. */
  g_assert_cmpint (apply_int (pool, id, NULL), ==, b);
  result = map_ok (pool, id, int_items (6), 1);
  assert_chunks (result, pairs, G_N_ELEMENTS (pairs));
  g_clear_pointer (&result, g_variant_unref);

  g_clear_object (&pool);
  pool = track_pool (mpg_pool_new_full (1, NULL, NULL, NULL, NULL, 1));
  id = add_function (pool, task_pid, NULL, NULL);
  a = apply_int (pool, id, NULL);
  b = apply_int (pool, id, NULL);
  c = apply_int (pool, id, NULL);
  g_assert_cmpint (a, !=, b);
  g_assert_cmpint (b, !=, c);
  g_assert_cmpint (a, !=, c);
  assert_replaced_at_least (pool, 2);
  g_assert_true (wait_pid_gone (a, scaled (2000)));
  g_assert_true (wait_pid_gone (b, scaled (2000)));
}

typedef struct
{
  MpgPool *pool;
  guint function;
  GVariant *arg;
  GVariant *value;
  GError *error;
  gint64 done_at;
} ThreadApply;

static gpointer
apply_in_thread (gpointer data)
{
  ThreadApply *ta = data;

  ta->value = mpg_pool_apply (ta->pool, ta->function, ta->arg, NULL, &ta->error);
  ta->done_at = g_get_monotonic_time ();
  return NULL;
}

static void
thread_apply_clear (ThreadApply *ta)
{
  g_clear_pointer (&ta->value, g_variant_unref);
  g_clear_error (&ta->error);
}

static void
assert_not_running (MpgPool *pool,
                    guint    id)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GVariant) value = NULL;
  g_autoptr(MpgPoolIterator) it = NULL;
  Waiter waiter;
  Call apply_call, map_call, starmap_call;

  value = mpg_pool_apply (pool, id, g_variant_new_int32 (1), NULL, &error);
  g_assert_error (error, MPG_ERROR, MPG_ERROR_INVALID_STATE);
  g_assert_cmpstr (error->message, ==, "Pool not running");
  g_assert_null (value);
  g_clear_error (&error);

  value = mpg_pool_map (pool, id, int_items (2), 0, NULL, &error);
  g_assert_error (error, MPG_ERROR, MPG_ERROR_INVALID_STATE);
  g_assert_null (value);
  g_clear_error (&error);

  value = mpg_pool_starmap (pool, id, g_variant_new_parsed ("[(1, 2)]"), 0, NULL, &error);
  g_assert_error (error, MPG_ERROR, MPG_ERROR_INVALID_STATE);
  g_assert_null (value);
  g_clear_error (&error);

  it = mpg_pool_imap (pool, id, int_items (2), 0, &error);
  g_assert_error (error, MPG_ERROR, MPG_ERROR_INVALID_STATE);
  g_assert_null (it);
  g_clear_error (&error);

  it = mpg_pool_imap_unordered (pool, id, int_items (2), 0, &error);
  g_assert_error (error, MPG_ERROR, MPG_ERROR_INVALID_STATE);
  g_assert_null (it);
  g_clear_error (&error);

  waiter_init (&waiter, NULL);
  call_init (&apply_call, &waiter, pool);
  call_init (&map_call, &waiter, pool);
  call_init (&starmap_call, &waiter, pool);
  mpg_pool_apply_async (pool, id, g_variant_new_int32 (1), NULL, applied_cb, &apply_call);
  mpg_pool_map_async (pool, id, int_items (2), 0, NULL, mapped_cb, &map_call);
  mpg_pool_starmap_async (pool, id, g_variant_new_parsed ("[(1, 2)]"), 0, NULL, starmapped_cb, &starmap_call);
  g_assert_true (waiter_run (&waiter, WAIT_MS));
  g_assert_error (apply_call.error, MPG_ERROR, MPG_ERROR_INVALID_STATE);
  g_assert_error (map_call.error, MPG_ERROR, MPG_ERROR_INVALID_STATE);
  g_assert_error (starmap_call.error, MPG_ERROR, MPG_ERROR_INVALID_STATE);
  call_clear (&apply_call);
  call_clear (&map_call);
  call_clear (&starmap_call);
  waiter_clear (&waiter);
}

static void
test_pool_close (void)
{
  g_autofree char *dir = make_tmpdir ();
  g_autoptr(MpgPool) pool = new_pool (2);
  g_autoptr(GError) error = NULL;
  g_autoptr(GArray) pids = NULL;
  ThreadApply ta = { NULL };
  GThread *thread;
  Waiter waiter;
  Call call;
  guint running, sleep_id;

  g_test_summary ("close(): pending calls complete, new calls fail with INVALID_STATE, join() reaps every worker");

  running = add_function (pool, task_running, g_strdup (dir), g_free);
  sleep_id = add_function (pool, task_sleep, NULL, NULL);

  /* join() before close() or terminate() is a state error, even with -1. */
  g_assert_false (mpg_pool_join (pool, 0, &error));
  g_assert_error (error, MPG_ERROR, MPG_ERROR_INVALID_STATE);
  g_clear_error (&error);
  g_assert_false (mpg_pool_join (pool, -1, &error));
  g_assert_error (error, MPG_ERROR, MPG_ERROR_INVALID_STATE);
  g_clear_error (&error);

  /* A blocking call running in a thread, and an async one queued. */
  ta.pool = pool;
  ta.function = running;
  ta.arg = g_variant_new_int32 (scaled (300));
  thread = g_thread_new ("apply", apply_in_thread, &ta);
  g_assert_true (wait_for_file (dir, "running", WAIT_MS));

  waiter_init (&waiter, NULL);
  call_init (&call, &waiter, pool);
  mpg_pool_map_async (pool, sleep_id, g_variant_new_parsed ("[100, 100, 100, 100]"), 1, NULL,
                      mapped_cb, &call);
  pids = mpg_pool_dup_worker_pids (pool);
  g_assert_cmpuint (pids->len, >=, 1);

  mpg_pool_close (pool);

  g_assert_true (waiter_run (&waiter, WAIT_MS));
  g_assert_no_error (call.error);
  assert_variant (call.value, "ai", "[100, 100, 100, 100]");
  call_clear (&call);
  waiter_clear (&waiter);

  g_thread_join (thread);
  g_assert_no_error (ta.error);
  g_assert_cmpint (g_variant_get_int32 (ta.value), ==, scaled (300));
  thread_apply_clear (&ta);

  assert_not_running (pool, sleep_id);

  g_assert_true (mpg_pool_join (pool, WAIT_MS, &error));
  g_assert_no_error (error);
  /* Joined means exited and reaped. */
  for (guint i = 0; i < pids->len; i++)
    g_assert_true (pid_gone (g_array_index (pids, gint, i)));
  g_clear_pointer (&pids, g_array_unref);
  pids = mpg_pool_dup_worker_pids (pool);
  g_assert_cmpuint (pids->len, ==, 0);

  /* Again: harmless. */
  mpg_pool_close (pool);
  g_assert_true (mpg_pool_join (pool, 0, &error));
  g_assert_no_error (error);

  g_clear_object (&pool);
  remove_tmpdir (dir);
}

static void
test_pool_join_timeout (void)
{
  g_autofree char *dir = make_tmpdir ();
  g_autoptr(MpgPool) pool = new_pool (1);
  g_autoptr(MpgPool) unused = new_pool (1);
  g_autoptr(GError) error = NULL;
  ThreadApply ta = { NULL };
  GThread *thread;
  gint64 start;

  g_test_summary ("join() with a timeout while a call still runs fails with MPG_ERROR_TIMEOUT");

  ta.pool = pool;
  ta.function = add_function (pool, task_running, g_strdup (dir), g_free);
  ta.arg = g_variant_new_int32 (1000);
  thread = g_thread_new ("apply", apply_in_thread, &ta);
  g_assert_true (wait_for_file (dir, "running", WAIT_MS));

  mpg_pool_close (pool);
  start = g_get_monotonic_time ();
  g_assert_false (mpg_pool_join (pool, 50, &error));
  g_assert_error (error, MPG_ERROR, MPG_ERROR_TIMEOUT);
  g_assert_cmpint (g_get_monotonic_time () - start, >=, 50 * 1000);
  g_clear_error (&error);

  g_assert_true (mpg_pool_join (pool, -1, &error));
  g_assert_no_error (error);
  g_thread_join (thread);
  g_assert_no_error (ta.error);
  g_assert_cmpint (g_variant_get_int32 (ta.value), ==, 1000);
  thread_apply_clear (&ta);

  /* A pool that never forked joins at once. */
  mpg_pool_close (unused);
  g_assert_true (mpg_pool_join (unused, 0, &error));
  g_assert_no_error (error);

  g_clear_object (&pool);
  remove_tmpdir (dir);
}

static void
test_pool_terminate (void)
{
  g_autofree char *dir = make_tmpdir ();
  g_autoptr(MpgPool) pool = new_pool (2);
  g_autoptr(MpgPool) unused = new_pool (2);
  g_autoptr(GError) error = NULL;
  g_autoptr(GArray) pids = NULL;
  ThreadApply ta = { NULL };
  GThread *thread;
  Waiter waiter;
  Call call;
  pid_t running_pid;
  gint64 start;
  guint sleep_id;

  g_test_summary ("terminate(): workers killed at once, pending calls fail with MPG_ERROR_CLOSED");

  ta.pool = pool;
  ta.function = add_function (pool, task_running, g_strdup (dir), g_free);
  ta.arg = g_variant_new_int32 (20000);
  sleep_id = add_function (pool, task_sleep, NULL, NULL);
  thread = g_thread_new ("apply", apply_in_thread, &ta);
  g_assert_true (wait_for_file (dir, "running", WAIT_MS));
  running_pid = read_pid_file (dir, "running");

  waiter_init (&waiter, NULL);
  call_init (&call, &waiter, pool);
  mpg_pool_map_async (pool, sleep_id, g_variant_new_parsed ("[20000, 20000, 20000]"), 1, NULL,
                      mapped_cb, &call);
  /* Let the map start on the other worker. */
  g_usleep (scaled (100) * 1000);
  while (g_main_context_iteration (NULL, FALSE))
    ;
  pids = mpg_pool_dup_worker_pids (pool);

  start = g_get_monotonic_time ();
  mpg_pool_terminate (pool);

  g_assert_true (waiter_run (&waiter, WAIT_MS));
  g_assert_error (call.error, MPG_ERROR, MPG_ERROR_CLOSED);
  g_assert_null (call.value);
  call_clear (&call);
  waiter_clear (&waiter);

  g_thread_join (thread);
  g_assert_error (ta.error, MPG_ERROR, MPG_ERROR_CLOSED);
  g_assert_null (ta.value);
  g_assert_cmpint (ta.done_at - start, <, scaled (1000) * 1000);
  thread_apply_clear (&ta);

  g_assert_true (mpg_pool_join (pool, WAIT_MS, &error));
  g_assert_no_error (error);
  g_assert_true (pid_gone (running_pid));
  for (guint i = 0; i < pids->len; i++)
    g_assert_true (pid_gone (g_array_index (pids, gint, i)));

  assert_not_running (pool, sleep_id);

  mpg_pool_terminate (unused);
  g_assert_true (mpg_pool_join (unused, 0, &error));
  g_assert_no_error (error);

  g_clear_object (&pool);
  remove_tmpdir (dir);
}

typedef struct
{
  MpgPool *pool;
  guint function;
  GVariant *items;
  GCancellable *cancellable;
  GVariant *value;
  GError *error;
  gint64 done_at;
} ThreadMap;

static gpointer
map_in_thread (gpointer data)
{
  ThreadMap *tm = data;

  tm->value = mpg_pool_map (tm->pool, tm->function, tm->items, 1, tm->cancellable, &tm->error);
  tm->done_at = g_get_monotonic_time ();
  return NULL;
}

static guint
count_item_files (const char *dir)
{
  GDir *d = g_dir_open (dir, 0, NULL);
  const char *name;
  guint n = 0;

  while ((name = g_dir_read_name (d)) != NULL)
    /* Not the temporary files of g_file_set_contents(). */
    if (g_str_has_prefix (name, "item-") && strchr (name, '.') == NULL)
      n++;
  g_dir_close (d);
  return n;
}

typedef struct
{
  GCancellable *cancellable;
  gint64 cancelled_at;
} Canceller;

static gboolean
cancel_and_note (gpointer user_data)
{
  Canceller *c = user_data;

  c->cancelled_at = g_get_monotonic_time ();
  g_cancellable_cancel (c->cancellable);
  return G_SOURCE_REMOVE;
}

static void
test_pool_cancel (void)
{
  g_autofree char *dir = make_tmpdir ();
  g_autoptr(MpgPool) pool = new_pool (2);
  g_autoptr(GCancellable) cancellable = g_cancellable_new ();
  g_autoptr(GCancellable) cancelled = g_cancellable_new ();
  g_autoptr(GVariant) value = NULL;
  g_autoptr(GError) error = NULL;
  gint32 sleeps[20];
  Canceller canceller = { NULL, 0 };
  ThreadMap tm = { NULL };
  GThread *thread;
  Waiter waiter;
  Call call;
  guint item, square, started;

  g_test_summary ("Cancelling map_async() fails it with G_IO_ERROR_CANCELLED at once, stops its dispatch; the pool works on");

  item = add_function (pool, task_item, g_strdup (dir), g_free);
  square = add_function (pool, task_square, NULL, NULL);
  for (guint i = 0; i < G_N_ELEMENTS (sleeps); i++)
    sleeps[i] = 1000;

  waiter_init (&waiter, NULL);
  call_init (&call, &waiter, pool);
  canceller.cancellable = cancellable;
  mpg_pool_map_async (pool, item, item_tuples (20, NULL, sleeps), 1, cancellable, mapped_cb, &call);
  g_timeout_add (100, cancel_and_note, &canceller);
  g_assert_true (waiter_run (&waiter, WAIT_MS));
  g_assert_error (call.error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_assert_null (call.value);
  /* The running chunks take 1 s: their end is not waited for. */
  g_test_message ("cancelled after %" G_GINT64_FORMAT " us", call.done_at - canceller.cancelled_at);
  g_assert_cmpint (call.done_at - canceller.cancelled_at, <, scaled (300) * 1000);
  call_clear (&call);

  /* Usable: waits for the running chunks, not for the 20 items. */
  g_assert_cmpint (apply_int (pool, square, g_variant_new_int32 (4)), ==, 16);
  started = count_item_files (dir);
  g_test_message ("%u items of 20 started", started);
  g_assert_cmpuint (started, >=, 1);
  g_assert_cmpuint (started, <=, 6);

  /* Cancelled before the call. */
  g_cancellable_cancel (cancelled);
  call_init (&call, &waiter, pool);
  mpg_pool_map_async (pool, square, int_items (4), 1, cancelled, mapped_cb, &call);
  g_assert_true (waiter_run (&waiter, WAIT_MS));
  g_assert_error (call.error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  call_clear (&call);

  call_init (&call, &waiter, pool);
  mpg_pool_apply_async (pool, square, g_variant_new_int32 (2), cancelled, applied_cb, &call);
  g_assert_true (waiter_run (&waiter, WAIT_MS));
  g_assert_error (call.error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  call_clear (&call);
  waiter_clear (&waiter);

  value = mpg_pool_apply (pool, square, g_variant_new_int32 (2), cancelled, &error);
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_assert_null (value);
  g_clear_error (&error);

  value = mpg_pool_map (pool, square, int_items (3), 1, cancelled, &error);
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_assert_null (value);
  g_clear_error (&error);

  /* A blocking map cancelled from another thread. */
  g_cancellable_reset (cancellable);
  tm.pool = pool;
  tm.function = item;
  tm.items = item_tuples (20, NULL, sleeps);
  tm.cancellable = cancellable;
  thread = g_thread_new ("map", map_in_thread, &tm);
  g_usleep (100 * 1000);
  canceller.cancelled_at = g_get_monotonic_time ();
  g_cancellable_cancel (cancellable);
  g_thread_join (thread);
  g_assert_error (tm.error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_assert_null (tm.value);
  g_assert_cmpint (tm.done_at - canceller.cancelled_at, <, scaled (300) * 1000);
  g_clear_error (&tm.error);

  value = map_ok (pool, square, int_items (10), 2);
  assert_squares (value, 10);

  /* Let the cancelled chunks end before the last unref: dropping it while
   * they run is /Mpg/Pool/cancel-then-unref's business. */
  g_usleep (scaled (300) * 1000);
  g_clear_object (&pool);
  remove_tmpdir (dir);
}

static void
test_pool_cancel_then_unref (void)
{
  g_autofree char *dir = make_tmpdir ();
  g_autoptr(GCancellable) cancellable = g_cancellable_new ();
  g_autoptr(GArray) pids = NULL;
  MpgPool *pool = new_pool (2);
  gint finalized;
  Waiter waiter;
  Call call;
  guint id;

  g_test_summary ("The last reference dropped while a cancelled call's chunks still run: the pool goes, and its workers");

  watch_finalize (pool, &finalized);
  id = add_function (pool, task_running, g_strdup (dir), g_free);
  waiter_init (&waiter, NULL);
  call_init (&call, &waiter, pool);
  mpg_pool_map_async (pool, id, g_variant_new_parsed ("[500, 500, 500, 500]"), 1, cancellable,
                      mapped_cb, &call);
  g_assert_true (wait_for_file (dir, "running", WAIT_MS));
  pids = mpg_pool_dup_worker_pids (pool);
  g_cancellable_cancel (cancellable);
  g_assert_true (waiter_run (&waiter, WAIT_MS));
  g_assert_error (call.error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  call_clear (&call);
  waiter_clear (&waiter);

  /* The running chunks still hold the pool: it goes when they end. */
  g_object_unref (pool);
  {
    gint64 deadline = g_get_monotonic_time () + (gint64) scaled (3000) * 1000;

    while (!g_atomic_int_get (&finalized) && g_get_monotonic_time () < deadline)
      {
        while (g_main_context_iteration (NULL, FALSE))
          ;
        g_usleep (2000);
      }
  }
  g_assert_true (g_atomic_int_get (&finalized));
  for (guint i = 0; i < pids->len; i++)
    g_assert_true (wait_pid_gone (g_array_index (pids, gint, i), scaled (1000)));
  remove_tmpdir (dir);
}

static void
test_pool_progress (void)
{
  g_autoptr(MpgPool) pool = new_pool (2);
  ProgressWatch watch = { { NULL }, 0, 0 };
  Waiter waiter;
  Call a, b, c, d;
  guint square, pair_sum;
  gulong handler;

  g_test_summary ("progress: after each chunk of an async call, counts in items, before its callback, with the call's result");

  square = add_function (pool, task_square, NULL, NULL);
  pair_sum = add_function (pool, task_pair_sum, NULL, NULL);
  handler = g_signal_connect (pool, "progress", G_CALLBACK (on_progress), &watch);

  waiter_init (&waiter, NULL);
  call_init (&a, &waiter, pool);
  call_init (&b, &waiter, pool);
  call_init (&c, &waiter, pool);
  call_init (&d, &waiter, pool);
  watch.calls[watch.n_calls++] = &a;
  watch.calls[watch.n_calls++] = &b;
  watch.calls[watch.n_calls++] = &c;
  watch.calls[watch.n_calls++] = &d;

  /* Four calls at once, told apart by the user data of their result. */
  mpg_pool_map_async (pool, square, int_items (10), 2, NULL, mapped_cb, &a);
  mpg_pool_map_async (pool, square, int_items (7), 3, NULL, mapped_cb, &b);
  mpg_pool_apply_async (pool, square, g_variant_new_int32 (5), NULL, applied_cb, &c);
  mpg_pool_starmap_async (pool, pair_sum, g_variant_new_parsed ("[(1, 1), (2, 2), (3, 3), (4, 4)]"), 1,
                          NULL, starmapped_cb, &d);
  g_assert_true (waiter_run (&waiter, WAIT_MS));

  g_assert_cmpuint (watch.n_unknown, ==, 0);
  g_assert_no_error (a.error);
  assert_squares (a.value, 10);
  assert_progress (&a, 5, 10);
  g_assert_no_error (b.error);
  assert_squares (b.value, 7);
  assert_progress (&b, 3, 7);
  g_assert_no_error (c.error);
  assert_variant (c.value, "i", "25");
  assert_progress (&c, 1, 1);
  g_assert_no_error (d.error);
  assert_variant (d.value, "ai", "[2, 4, 6, 8]");
  assert_progress (&d, 4, 4);

  call_clear (&a);
  call_clear (&b);
  call_clear (&c);
  call_clear (&d);
  waiter_clear (&waiter);
  g_signal_handler_disconnect (pool, handler);
}

static void
test_pool_worker_killed (void)
{
  g_autofree char *dir = make_tmpdir ();
  g_autoptr(MpgPool) pool = new_pool (2);
  g_autoptr(GVariant) result = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(GArray) pids = NULL;
  ThreadApply ta = { NULL };
  GThread *thread;
  Waiter waiter;
  Call dying, healthy;
  guint die, square, pid_id, running;
  pid_t pid;
  gint64 killed_at;

  g_test_summary ("A worker killed during a call fails it with MPG_ERROR_WORKER_DIED; other and later calls work");

  die = add_function (pool, task_die_on_3, g_strdup (dir), g_free);
  square = add_function (pool, task_square, NULL, NULL);
  pid_id = add_function (pool, task_pid, NULL, NULL);
  running = add_function (pool, task_running, g_strdup (dir), g_free);

  /* The task kills itself on item 3. */
  result = mpg_pool_map (pool, die, int_items (8), 1, NULL, &error);
  g_assert_error (error, MPG_ERROR, MPG_ERROR_WORKER_DIED);
  g_assert_null (result);
  pid = read_pid_file (dir, "died");
  assert_died_message (error, pid, SIGKILL, 0);
  g_clear_error (&error);
  g_assert_true (wait_pid_gone (pid, scaled (2000)));

  result = map_ok (pool, square, int_items (10), 1);
  assert_squares (result, 10);
  g_clear_pointer (&result, g_variant_unref);
  assert_replaced_at_least (pool, 1);
  pids = mpg_pool_dup_worker_pids (pool);
  g_assert_false (pids_contain (pids, pid));
  g_assert_cmpuint (pids->len, <=, 2);
  g_clear_pointer (&pids, g_array_unref);

  /* Another call at the same time is not disturbed. */
  waiter_init (&waiter, NULL);
  call_init (&dying, &waiter, pool);
  call_init (&healthy, &waiter, pool);
  mpg_pool_map_async (pool, die, int_items (6), 1, NULL, mapped_cb, &dying);
  mpg_pool_map_async (pool, square, int_items (20), 1, NULL, mapped_cb, &healthy);
  g_assert_true (waiter_run (&waiter, WAIT_MS));
  g_assert_error (dying.error, MPG_ERROR, MPG_ERROR_WORKER_DIED);
  g_assert_no_error (healthy.error);
  assert_squares (healthy.value, 20);
  call_clear (&dying);
  call_clear (&healthy);
  waiter_clear (&waiter);

  /* Killed by the test while it sleeps. */
  {
    g_autofree char *path = g_build_filename (dir, "running", NULL);

    g_unlink (path);
  }
  ta.pool = pool;
  ta.function = running;
  ta.arg = g_variant_new_int32 (20000);
  thread = g_thread_new ("apply", apply_in_thread, &ta);
  g_assert_true (wait_for_file (dir, "running", WAIT_MS));
  pid = read_pid_file (dir, "running");
  killed_at = g_get_monotonic_time ();
  g_assert_cmpint (kill (pid, SIGKILL), ==, 0);
  g_thread_join (thread);
  g_assert_error (ta.error, MPG_ERROR, MPG_ERROR_WORKER_DIED);
  assert_died_message (ta.error, pid, SIGKILL, 0);
  g_assert_cmpint (ta.done_at - killed_at, <, scaled (1000) * 1000);
  thread_apply_clear (&ta);

  g_assert_cmpint (apply_int (pool, pid_id, NULL), !=, pid);
  g_assert_true (wait_pid_gone (pid, scaled (2000)));

  g_clear_object (&pool);
  remove_tmpdir (dir);
}

static void
test_pool_worker_crash (void)
{
  g_autofree char *dir = make_tmpdir ();
  g_autoptr(MpgPool) pool = new_pool (1);
  g_autoptr(GVariant) result = NULL;
  g_autoptr(GError) error = NULL;
  guint segv, exit_3, square;
  pid_t pid;

  g_test_summary ("A task that segfaults or calls _exit() fails its call with MPG_ERROR_WORKER_DIED; the next call works");

  segv = add_function (pool, task_segfault, g_strdup (dir), g_free);
  exit_3 = add_function (pool, task_exit_3, g_strdup (dir), g_free);
  square = add_function (pool, task_square, NULL, NULL);

  result = mpg_pool_apply (pool, segv, NULL, NULL, &error);
  g_assert_error (error, MPG_ERROR, MPG_ERROR_WORKER_DIED);
  g_assert_null (result);
  pid = read_pid_file (dir, "died");
  assert_died_message (error, pid, SIGSEGV, 0);
  g_clear_error (&error);
  g_assert_cmpint (apply_int (pool, square, g_variant_new_int32 (6)), ==, 36);

  result = mpg_pool_apply (pool, exit_3, NULL, NULL, &error);
  g_assert_error (error, MPG_ERROR, MPG_ERROR_WORKER_DIED);
  pid = read_pid_file (dir, "died");
  assert_died_message (error, pid, 0, 3);
  g_clear_error (&error);
  g_assert_cmpint (apply_int (pool, square, g_variant_new_int32 (7)), ==, 49);

  result = mpg_pool_map (pool, segv, int_items (3), 1, NULL, &error);
  g_assert_error (error, MPG_ERROR, MPG_ERROR_WORKER_DIED);
  g_clear_error (&error);
  result = map_ok (pool, square, int_items (5), 0);
  assert_squares (result, 5);
  assert_replaced_at_least (pool, 3);

  g_clear_object (&pool);
  remove_tmpdir (dir);
}

static void
test_pool_retries (void)
{
  g_autofree char *dir = make_tmpdir ();
  g_autofree char *dir2 = make_tmpdir ();
  g_autofree char *dir3 = make_tmpdir ();
  g_autoptr(MpgPool) pool = new_pool (1);
  g_autoptr(GVariant) result = NULL;
  g_autoptr(GError) error = NULL;
  guint once, once_again, always, in_map;

  g_test_summary ("retries = 1 runs a chunk whose worker died once again, and the call succeeds");

  once = add_function (pool, task_crash_once, g_strdup (dir), g_free);
  once_again = add_function (pool, task_crash_once, g_strdup (dir2), g_free);
  always = add_function (pool, task_crash_always, g_strdup (dir), g_free);
  in_map = add_function (pool, task_crash_once, g_strdup (dir3), g_free);

  /* Without retries, the crash is the call's end. */
  g_assert_cmpuint (mpg_pool_get_retries (pool), ==, 0);
  result = mpg_pool_apply (pool, once_again, NULL, NULL, &error);
  g_assert_error (error, MPG_ERROR, MPG_ERROR_WORKER_DIED);
  g_clear_error (&error);
  g_assert_true (file_exists (dir2, "crashed"));

  mpg_pool_set_retries (pool, 1);
  result = apply_ok (pool, once, NULL);
  assert_variant (result, "s", "'survived'");
  g_clear_pointer (&result, g_variant_unref);
  g_assert_true (file_exists (dir, "crashed"));

  result = map_ok (pool, in_map, int_items (4), 2);
  assert_variant (result, "as", "['survived', 'survived', 'survived', 'survived']");
  g_clear_pointer (&result, g_variant_unref);

  /* One retry, not more. */
  result = mpg_pool_apply (pool, always, NULL, NULL, &error);
  g_assert_error (error, MPG_ERROR, MPG_ERROR_WORKER_DIED);
  g_clear_error (&error);
  g_assert_cmpuint (count_lines (dir, "attempts"), ==, 2);

  assert_replaced_at_least (pool, 4);
  result = apply_ok (pool, once_again, NULL);
  assert_variant (result, "s", "'survived'");

  g_clear_object (&pool);
  remove_tmpdir (dir);
  remove_tmpdir (dir2);
  remove_tmpdir (dir3);
}

static void
test_pool_task_timeout (void)
{
  g_autofree char *dir = make_tmpdir ();
  g_autoptr(MpgPool) pool = new_pool (1);
  g_autoptr(GVariant) result = NULL;
  g_autoptr(GError) error = NULL;
  guint running, sleep_id, timeout = scaled (250);
  gint32 short_sleep = timeout * 2 / 5, long_sleep = timeout * 3 / 2;
  GVariantBuilder builder;
  gint64 start;
  pid_t pid;

  g_test_summary ("task-timeout kills a chunk running longer than timeout × its items: MPG_ERROR_TIMEOUT, next call works");

  running = add_function (pool, task_running, g_strdup (dir), g_free);
  sleep_id = add_function (pool, task_sleep, NULL, NULL);
  mpg_pool_set_task_timeout (pool, timeout);
  g_assert_cmpuint (mpg_pool_get_task_timeout (pool), ==, timeout);

  start = g_get_monotonic_time ();
  result = mpg_pool_apply (pool, running, g_variant_new_int32 (20000), NULL, &error);
  g_assert_error (error, MPG_ERROR, MPG_ERROR_TIMEOUT);
  g_assert_null (result);
  g_clear_error (&error);
  g_assert_cmpint (g_get_monotonic_time () - start, >=, timeout * 1000);
  g_assert_cmpint (g_get_monotonic_time () - start, <, (timeout + scaled (1000)) * 1000);
  pid = read_pid_file (dir, "running");
  g_assert_true (wait_pid_gone (pid, scaled (2000)));

  g_assert_cmpint (apply_int (pool, sleep_id, g_variant_new_int32 (10)), ==, 10);
  assert_replaced_at_least (pool, 1);

  /* Three items of 0.4 × timeout in one chunk: 1.2 × timeout, within 3 × timeout. */
  g_variant_builder_init (&builder, G_VARIANT_TYPE ("ai"));
  for (guint i = 0; i < 3; i++)
    g_variant_builder_add (&builder, "i", short_sleep);
  result = map_ok (pool, sleep_id, g_variant_builder_end (&builder), 3);
  g_assert_cmpuint (g_variant_n_children (result), ==, 3);
  g_clear_pointer (&result, g_variant_unref);

  /* Three items of 1.5 × timeout: 4.5 × timeout, too long. */
  g_variant_builder_init (&builder, G_VARIANT_TYPE ("ai"));
  for (guint i = 0; i < 3; i++)
    g_variant_builder_add (&builder, "i", long_sleep);
  result = mpg_pool_map (pool, sleep_id, g_variant_builder_end (&builder), 3, NULL, &error);
  g_assert_error (error, MPG_ERROR, MPG_ERROR_TIMEOUT);
  g_assert_null (result);
  g_clear_error (&error);

  /* No timeout any more. */
  mpg_pool_set_task_timeout (pool, 0);
  g_assert_cmpint (apply_int (pool, sleep_id, g_variant_new_int32 (long_sleep)), ==, long_sleep);

  g_clear_object (&pool);
  remove_tmpdir (dir);
}

static void
test_pool_function_added_later (void)
{
  g_autoptr(MpgPool) pool = new_pool (2);
  g_autoptr(GArray) before = NULL;
  g_autoptr(GVariant) result = NULL;
  int *heap_int;
  gint32 value, pid;
  guint pid_id, heap_id;

  g_test_summary ("A function added after the workers started: the pool replaces them, the result is right");

  pid_id = add_function (pool, task_pid, NULL, NULL);
  result = map_ok (pool, pid_id, g_variant_new_parsed ("[20, 20, 20, 20, 20, 20]"), 1);
  g_clear_pointer (&result, g_variant_unref);
  before = mpg_pool_dup_worker_pids (pool);
  g_assert_cmpuint (before->len, >=, 1);

  /* Warm workers run the same function again. */
  pid = apply_int (pool, pid_id, NULL);
  g_assert_true (pids_contain (before, pid));

  /* The workers were forked before this int existed. */
  heap_int = g_new (int, 1);
  *heap_int = 4242;
  heap_id = add_function (pool, task_heap_int, heap_int, g_free);
  g_assert_cmpuint (heap_id, !=, pid_id);

  result = apply_ok (pool, heap_id, NULL);
  g_variant_get (result, "(ii)", &value, &pid);
  g_assert_cmpint (value, ==, 4242);
  g_assert_false (pids_contain (before, pid));
  g_clear_pointer (&result, g_variant_unref);

  result = map_ok (pool, heap_id, int_items (6), 1);
  g_assert_cmpstr (g_variant_get_type_string (result), ==, "a(ii)");
  for (gsize i = 0; i < g_variant_n_children (result); i++)
    {
      g_variant_get_child (result, i, "(ii)", &value, &pid);
      g_assert_cmpint (value, ==, 4242);
      g_assert_false (pids_contain (before, pid));
    }
  g_clear_pointer (&result, g_variant_unref);

  /* And the first function still works. */
  g_assert_cmpint (apply_int (pool, pid_id, NULL), >, 0);
}

static void
test_pool_remove_function (void)
{
  g_autoptr(MpgPool) pool = new_pool (1);
  g_autoptr(MpgPoolIterator) it = NULL;
  g_autoptr(GVariant) result = NULL;
  g_autoptr(GError) error = NULL;
  Waiter waiter;
  Call call;
  guint id, sleep_id, freed_before = freed_count;
  guint bad_ids[3];

  g_test_summary ("remove_function(): running calls finish; the id, like one never added, is G_IO_ERROR_INVALID_ARGUMENT");

  id = add_function (pool, task_user_string, g_strdup ("data"), counted_free);
  sleep_id = add_function (pool, task_sleep, g_strdup ("more"), counted_free);
  result = apply_ok (pool, id, NULL);
  assert_variant (result, "s", "'data'");
  g_clear_pointer (&result, g_variant_unref);

  /* Removed while a call runs: the call finishes. */
  waiter_init (&waiter, NULL);
  call_init (&call, &waiter, pool);
  mpg_pool_apply_async (pool, sleep_id, g_variant_new_int32 (200), NULL, applied_cb, &call);
  mpg_pool_remove_function (pool, sleep_id);
  g_assert_true (waiter_run (&waiter, WAIT_MS));
  g_assert_no_error (call.error);
  assert_variant (call.value, "i", "200");
  call_clear (&call);

  mpg_pool_remove_function (pool, id);

  /* The removed ids, and one never added. */
  bad_ids[0] = id;
  bad_ids[1] = sleep_id;
  bad_ids[2] = 9999;
  for (guint i = 0; i < G_N_ELEMENTS (bad_ids); i++)
    {
      guint bad = bad_ids[i];

      result = mpg_pool_apply (pool, bad, NULL, NULL, &error);
      g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
      g_assert_nonnull (strstr (error->message, "Unknown function"));
      g_assert_null (result);
      g_clear_error (&error);

      result = mpg_pool_map (pool, bad, int_items (3), 0, NULL, &error);
      g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
      g_assert_null (result);
      g_clear_error (&error);

      result = mpg_pool_starmap (pool, bad, g_variant_new_parsed ("[(1, 2)]"), 0, NULL, &error);
      g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
      g_clear_error (&error);

      it = mpg_pool_imap (pool, bad, int_items (3), 0, &error);
      g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
      g_assert_null (it);
      g_clear_error (&error);

      it = mpg_pool_imap_unordered (pool, bad, int_items (3), 0, &error);
      g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
      g_assert_null (it);
      g_clear_error (&error);

      call_init (&call, &waiter, pool);
      mpg_pool_apply_async (pool, bad, NULL, NULL, applied_cb, &call);
      g_assert_true (waiter_run (&waiter, WAIT_MS));
      g_assert_error (call.error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
      call_clear (&call);

      call_init (&call, &waiter, pool);
      mpg_pool_map_async (pool, bad, int_items (2), 0, NULL, mapped_cb, &call);
      g_assert_true (waiter_run (&waiter, WAIT_MS));
      g_assert_error (call.error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
      call_clear (&call);
    }
  waiter_clear (&waiter);

  /* A new function gets a new id, which works. */
  id = add_function (pool, task_square, NULL, NULL);
  g_assert_cmpint (apply_int (pool, id, g_variant_new_int32 (3)), ==, 9);

  /* The user data of the removed functions was freed, by now at least. */
  g_clear_object (&pool);
  g_assert_cmpuint (freed_count, ==, freed_before + 2);
}

typedef struct
{
  MpgPool *pool;
  guint function;
  guint rounds;
  guint seed;
  char *failure;
} ThreadWork;

static gpointer
work_in_thread (gpointer data)
{
  ThreadWork *tw = data;

  for (guint r = 0; r < tw->rounds && tw->failure == NULL; r++)
    {
      g_autoptr(GError) error = NULL;
      gint32 x = (gint32) (tw->seed * 100 + r);

      if (r % 2 == 0)
        {
          g_autoptr(GVariant) value = mpg_pool_apply (tw->pool, tw->function, g_variant_new_int32 (x), NULL, &error);

          if (value == NULL)
            tw->failure = g_strdup_printf ("apply: %s", error->message);
          else if (g_variant_get_int32 (value) != x * x)
            tw->failure = g_strdup_printf ("apply(%d) gave %d", x, g_variant_get_int32 (value));
        }
      else
        {
          g_autoptr(GVariant) value = mpg_pool_map (tw->pool, tw->function, int_items (5), 1, NULL, &error);

          if (value == NULL)
            tw->failure = g_strdup_printf ("map: %s", error->message);
          else if (g_variant_n_children (value) != 5)
            tw->failure = g_strdup ("map: not 5 results");
          else
            for (gsize i = 0; i < 5; i++)
              {
                gint32 v;

                g_variant_get_child (value, i, "i", &v);
                if (v != (gint32) (i * i))
                  tw->failure = g_strdup_printf ("map: item %" G_GSIZE_FORMAT " gave %d", i, v);
              }
        }
    }
  return NULL;
}

static void
test_pool_threads (void)
{
  g_autofree char *dir = make_tmpdir ();
  g_autoptr(MpgPool) pool = new_pool (2);
  ThreadWork work[4];
  GThread *threads[4];
  ThreadApply ta = { NULL };
  GThread *thread;
  guint square, ticks = 0, ticker;
  gint64 deadline;

  g_test_summary ("Calls from several threads at once; a blocking call blocks only its own thread");

  square = add_function (pool, task_square, NULL, NULL);
  ta.function = add_function (pool, task_running, g_strdup (dir), g_free);

  /* Fork both workers now, knowing both functions, while this process has
   * one thread: a fork while other threads are busy in GLib can copy a
   * lock one of them holds into the child, which then hangs (the fork
   * start method's known hazard: tests/fork-safety measures it). */
  {
    g_autoptr(GError) error = NULL;
    g_autoptr(GVariant) warm = mpg_pool_map (pool, square, g_variant_new_parsed ("[1, 2, 3, 4]"),
                                             1, NULL, &error);

    g_assert_no_error (error);
  }

  for (guint i = 0; i < G_N_ELEMENTS (threads); i++)
    {
      work[i] = (ThreadWork) { pool, square, under_valgrind () ? 6 : 40, i + 1, NULL };
      threads[i] = g_thread_new ("worker", work_in_thread, &work[i]);
    }
  for (guint i = 0; i < G_N_ELEMENTS (threads); i++)
    {
      g_thread_join (threads[i]);
      if (work[i].failure)
        g_test_message ("thread %u: %s", i, work[i].failure);
      g_assert_null (work[i].failure);
    }

  /* The main loop keeps running while another thread waits for a call. */
  ta.pool = pool;
  ta.arg = g_variant_new_int32 (300);
  ticker = g_timeout_add (10, tick, &ticks);
  thread = g_thread_new ("apply", apply_in_thread, &ta);
  deadline = g_get_monotonic_time () + 200 * 1000;
  while (g_get_monotonic_time () < deadline)
    {
      g_main_context_iteration (NULL, FALSE);
      g_usleep (1000);
    }
  g_source_remove (ticker);
  g_thread_join (thread);
  g_assert_no_error (ta.error);
  g_assert_cmpint (g_variant_get_int32 (ta.value), ==, 300);
  g_assert_cmpuint (ticks, >=, 5);
  thread_apply_clear (&ta);

  g_clear_object (&pool);
  remove_tmpdir (dir);
}

static void
test_pool_sigint (void)
{
  g_autoptr(MpgPool) pool = new_pool (1);
  g_autoptr(GArray) pids = NULL;
  guint id;
  gint32 pid;

  g_test_summary ("Workers ignore SIGINT (Ctrl-C is for the parent)");

  id = add_function (pool, task_pid, NULL, NULL);
  pid = apply_int (pool, id, NULL);
  g_assert_cmpint (kill (pid, SIGINT), ==, 0);
  g_usleep (scaled (100) * 1000);
  g_assert_cmpint (apply_int (pool, id, NULL), ==, pid);
  pids = mpg_pool_dup_worker_pids (pool);
  g_assert_true (pids_contain (pids, pid));
  g_assert_cmpuint (mpg_pool_get_workers_replaced (pool), ==, 0);
}

static void
drain_iterator (MpgPool *pool,
                guint    id,
                gboolean unordered)
{
  g_autoptr(MpgPoolIterator) it = NULL;
  g_autoptr(GError) error = NULL;
  guint n = 0;

  if (unordered)
    it = mpg_pool_imap_unordered (pool, id, int_items (4), 0, &error);
  else
    it = mpg_pool_imap (pool, id, int_items (4), 2, &error);
  g_assert_no_error (error);
  for (guint step = 0; step < 10; step++)
    {
      g_autoptr(GVariant) value = NULL;

      g_assert_true (mpg_pool_iterator_next (it, WAIT_MS, NULL, &value, &error));
      g_assert_no_error (error);
      if (value == NULL)
        break;
      n++;
    }
  g_assert_cmpuint (n, ==, 4);
}

static void
use_pool (MpgPool *pool,
          guint    calls)
{
  guint id = add_function (pool, task_square, NULL, NULL);
  Waiter waiter;

  waiter_init (&waiter, NULL);
  for (guint i = 0; i < calls; i++)
    {
      if (i % 10 == 3)
        {
          g_autoptr(GVariant) result = map_ok (pool, id, int_items (5), 0);

          assert_squares (result, 5);
        }
      else if (i % 20 == 7)
        drain_iterator (pool, id, i % 40 == 7);
      else if (i % 25 == 11)
        {
          Call call;

          call_init (&call, &waiter, pool);
          mpg_pool_map_async (pool, id, int_items (6), 2, NULL, mapped_cb, &call);
          g_assert_true (waiter_run (&waiter, WAIT_MS));
          g_assert_no_error (call.error);
          assert_squares (call.value, 6);
          call_clear (&call);
        }
      else
        g_assert_cmpint (apply_int (pool, id, g_variant_new_int32 ((gint32) i)), ==, (gint32) (i * i));
    }
  waiter_clear (&waiter);
}

static void
test_pool_no_leaks (void)
{
  MpgPool *pool;
  guint calls = under_valgrind () ? 20 : 200;
  guint fds_before, fds_after;
  gint finalized;
  g_autoptr(GError) error = NULL;

  g_test_summary ("Many calls then dispose: no fd, no process, no zombie left");

  /* The first pool creates any process-wide state. */
  pool = new_pool (2);
  use_pool (pool, 30);
  mpg_pool_close (pool);
  g_assert_true (mpg_pool_join (pool, WAIT_MS, &error));
  g_assert_no_error (error);
  g_object_unref (pool);

  fds_before = count_open_fds ();

  pool = new_pool (2);
  watch_finalize (pool, &finalized);
  use_pool (pool, calls);
  mpg_pool_close (pool);
  g_assert_true (mpg_pool_join (pool, WAIT_MS, &error));
  g_assert_no_error (error);
  g_object_unref (pool);
  g_assert_true (finalized);

  fds_after = count_open_fds ();
  g_assert_cmpuint (fds_after, ==, fds_before);
  assert_no_child_left ();

  /* Disposed without close() and join(): the same. */
  pool = new_pool (2);
  watch_finalize (pool, &finalized);
  use_pool (pool, calls / 4);
  {
    g_autoptr(GArray) pids = mpg_pool_dup_worker_pids (pool);

    g_object_unref (pool);
    g_assert_true (finalized);
    for (guint i = 0; i < pids->len; i++)
      g_assert_true (wait_pid_gone (g_array_index (pids, gint, i), scaled (1000)));
  }
  g_assert_cmpuint (count_open_fds (), ==, fds_before);
  assert_no_child_left ();
}

static void
test_pool_dispose_running (void)
{
  g_autofree char *dir = make_tmpdir ();
  g_autoptr(GArray) pids = NULL;
  MpgPool *pool;
  Waiter waiter;
  Call call;
  guint running;
  gint finalized;

  g_test_summary ("Disposing of a pool while a call runs kills and reaps its workers; the call fails");

  pool = new_pool (2);
  watch_finalize (pool, &finalized);
  running = add_function (pool, task_running, g_strdup (dir), g_free);

  waiter_init (&waiter, NULL);
  call_init (&call, &waiter, pool);
  mpg_pool_map_async (pool, running, g_variant_new_parsed ("[20000, 20000, 20000]"), 1, NULL,
                      mapped_cb, &call);
  g_assert_true (wait_for_file (dir, "running", WAIT_MS));
  pids = mpg_pool_dup_worker_pids (pool);
  g_assert_cmpuint (pids->len, >=, 1);

  /* As a binding does (the call may hold a reference): dispose at once. */
  g_object_run_dispose (G_OBJECT (pool));
  g_assert_true (waiter_run (&waiter, scaled (2000)));
  g_assert_error (call.error, MPG_ERROR, MPG_ERROR_CLOSED);
  g_assert_null (call.value);
  call_clear (&call);
  waiter_clear (&waiter);

  g_object_unref (pool);
  g_assert_true (finalized);
  for (guint i = 0; i < pids->len; i++)
    {
      pid_t pid = g_array_index (pids, gint, i);

      if (!wait_pid_gone (pid, scaled (1000)))
        {
          g_test_message ("worker %d is still there", (int) pid);
          kill (pid, SIGKILL);
          g_assert_not_reached ();
        }
    }
  assert_no_child_left ();
  remove_tmpdir (dir);
}

/* Waits (bounded) for an orphan re-parented to us, a subreaper. */
static int
wait_orphan (pid_t pid,
             guint timeout_ms)
{
  gint64 deadline = g_get_monotonic_time () + (gint64) timeout_ms * 1000;
  int status;

  while (g_get_monotonic_time () < deadline)
    {
      if (waitpid (pid, &status, WNOHANG) == pid)
        return status;
      g_usleep (5000);
    }
  return -1;
}

static char *
parent_killed_path (pid_t test_pid)
{
  return g_strdup_printf ("%s/mpg-test-pool-%d.pids", g_get_tmp_dir (), (int) test_pid);
}

static void
test_pool_parent_killed (void)
{
  g_autofree char *path = NULL;
  g_autofree char *contents = NULL;
  g_auto(GStrv) lines = NULL;
  g_autoptr(GError) error = NULL;
  guint n = 0;

  if (g_test_subprocess ())
    {
      g_autoptr(MpgPool) pool = new_pool (2);
      g_autoptr(GVariant) result = NULL;
      g_autoptr(GArray) pids = NULL;
      GString *text = g_string_new (NULL);
      guint id = add_function (pool, task_pid, NULL, NULL);

      result = map_ok (pool, id, g_variant_new_parsed ("[50, 50, 50, 50]"), 1);
      pids = mpg_pool_dup_worker_pids (pool);
      for (guint i = 0; i < pids->len; i++)
        g_string_append_printf (text, "%d\n", g_array_index (pids, gint, i));
      path = parent_killed_path (getppid ());
      g_file_set_contents (path, text->str, -1, NULL);
      g_string_free (text, TRUE);
      raise (SIGKILL);
      return;
    }

  g_test_summary ("Workers die when the parent dies");

  /* Orphans re-parent to us, so that we can see how they end. */
  g_assert_cmpint (prctl (PR_SET_CHILD_SUBREAPER, 1), ==, 0);
  g_test_trap_subprocess (NULL, 20 * G_USEC_PER_SEC, G_TEST_SUBPROCESS_DEFAULT);
  g_test_trap_assert_failed ();

  path = parent_killed_path (getpid ());
  g_file_get_contents (path, &contents, NULL, &error);
  g_assert_no_error (error);
  g_unlink (path);
  lines = g_strsplit (contents, "\n", -1);
  for (guint i = 0; lines[i] != NULL; i++)
    {
      pid_t pid = atoi (lines[i]);
      int status;

      if (pid <= 0)
        continue;
      n++;
      status = wait_orphan (pid, 2000);
      if (status == -1)
        {
          g_test_message ("worker %d outlived its parent", (int) pid);
          kill (pid, SIGKILL);
          waitpid (pid, &status, 0);
          status = -1;
        }
      /* Killed by PR_SET_PDEATHSIG, or out on the end of its channel
       * first: either way, gone with its parent. */
      g_assert_cmpint (status, !=, -1);
    }
  prctl (PR_SET_CHILD_SUBREAPER, 0);
  g_assert_cmpuint (n, >=, 1);
}

static void
test_pool_chunk_function (void)
{
  g_autoptr(MpgPool) pool = new_pool (2);
  g_autoptr(GVariant) result = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(MpgPoolIterator) it = NULL;
  g_autofree char *text = NULL;
  guint square, describe, picky;

  g_test_summary ("A chunk function maps whole chunks: typed slices in, one array of results out");

  square = mpg_pool_add_chunk_function (pool, chunk_square, NULL, NULL);
  describe = mpg_pool_add_chunk_function (pool, chunk_describe, NULL, NULL);
  picky = mpg_pool_add_chunk_function (pool, chunk_picky, NULL, NULL);

  /* Default chunks, chunks of 1 and of 7: the same squares. */
  result = map_ok (pool, square, int_items (1000), 0);
  assert_squares (result, 1000);
  g_clear_pointer (&result, g_variant_unref);
  result = map_ok (pool, square, int_items (50), 1);
  assert_squares (result, 50);
  g_clear_pointer (&result, g_variant_unref);
  result = map_ok (pool, square, int_items (100), 7);
  assert_squares (result, 100);
  g_clear_pointer (&result, g_variant_unref);

  /* One call per chunk, with the chunk's items as they were typed. */
  result = map_ok (pool, describe, int_items (10), 3);
  assert_variant (result, "as", "['ai:3', 'ai:3', 'ai:3', 'ai:3', 'ai:3', 'ai:3', "
                                "'ai:3', 'ai:3', 'ai:3', 'ai:1']");
  g_clear_pointer (&result, g_variant_unref);
  result = map_ok (pool, describe, g_variant_new_parsed ("[<1>, <'two'>, <3.0>]"), 2);
  assert_variant (result, "as", "['av:2', 'av:2', 'av:1']");
  g_clear_pointer (&result, g_variant_unref);
  result = map_ok (pool, describe, g_variant_new_parsed ("['a', 'bb', 'ccc']"), 0);
  assert_variant (result, "as", "['as:1', 'as:1', 'as:1']");
  g_clear_pointer (&result, g_variant_unref);

  /* apply: a chunk of one, boxed. */
  result = apply_ok (pool, describe, g_variant_new_int32 (4));
  assert_variant (result, "s", "'av:1'");
  g_clear_pointer (&result, g_variant_unref);

  /* A failing chunk fails each of its items; the map reports the first. */
  result = mpg_pool_map (pool, picky, int_items (12), 4, NULL, &error);
  g_assert_error (error, TEST_ERROR, 5);
  g_assert_cmpstr (error->message, ==, "item 5 failed");
  g_assert_null (result);
  g_clear_error (&error);

  /* imap: the other chunks' results still come; a chunk that broke the
   * contract (one result short) fails with a message that says so. */
  it = mpg_pool_imap (pool, picky, int_items (12), 4, &error);
  g_assert_no_error (error);
  text = iterate_to_text (it, 20);
  g_assert_cmpstr (text, ==, "0 1 4 9 e5 e5 e5 e5 64 81 100 121 end");
  g_clear_object (&it);

  result = mpg_pool_map (pool, picky, g_variant_new_parsed ("[@i 6, 7]"), 2, NULL, &error);
  g_assert_error (error, MPG_ERROR, MPG_ERROR_FAILED);
  g_assert_nonnull (strstr (error->message, "chunk function"));
  g_assert_nonnull (strstr (error->message, "ai for 2 items"));
  g_assert_null (result);
}

static void
test_pool_pipelined_death (void)
{
  g_autoptr(MpgPool) pool = new_pool (2);
  g_autoptr(MpgPoolIterator) it = NULL;
  g_autoptr(GError) error = NULL;
  guint id, n = 300, values = 0, died = 0;

  g_test_summary ("Short chunks are sent two at a time: when a worker dies, the chunk queued behind "
                  "the one it was running still runs, elsewhere");

  id = add_function (pool, task_die_on_100, NULL, NULL);
  it = mpg_pool_imap (pool, id, int_items (n), 1, &error);
  g_assert_no_error (error);
  for (guint i = 0; i <= n; i++)
    {
      g_autoptr(GVariant) value = NULL;
      g_autoptr(GError) item_error = NULL;

      if (mpg_pool_iterator_next (it, WAIT_MS, NULL, &value, &item_error))
        {
          if (value == NULL)
            {
              g_assert_cmpuint (i, ==, n);
              break;
            }
          g_assert_cmpint (g_variant_get_int32 (value), ==, (gint32) (i * i));
          values++;
        }
      else
        {
          g_assert_error (item_error, MPG_ERROR, MPG_ERROR_WORKER_DIED);
          g_assert_cmpuint (i, ==, 100);
          died++;
        }
    }
  g_assert_cmpuint (values, ==, n - 1);
  g_assert_cmpuint (died, ==, 1);
  assert_replaced_at_least (pool, 1);
}

typedef struct
{
  GCancellable *cancellable;
  guint delay_ms;
} CancelLater;

static gpointer
cancel_later (gpointer data)
{
  CancelLater *cl = data;

  g_usleep ((gulong) cl->delay_ms * 1000);
  g_cancellable_cancel (cl->cancellable);
  return NULL;
}

static void
test_pool_apply_direct (void)
{
  g_autoptr(MpgPool) pool = new_pool (2);
  g_autoptr(GCancellable) cancellable = g_cancellable_new ();
  g_autoptr(GVariant) result = NULL;
  g_autoptr(GError) error = NULL;
  CancelLater cl = { cancellable, 100 };
  GThread *thread;
  guint sleep_id, die_id;
  gint64 start;

  g_test_summary ("A blocking apply() reads its reply itself: cancelled, its late reply is "
                  "dropped; its worker killed, it fails with WORKER_DIED; the pool works on");

  sleep_id = add_function (pool, task_sleep, NULL, NULL);
  die_id = add_function (pool, task_die_on_100, NULL, NULL);
  result = map_ok (pool, die_id, int_items (4), 1);
  g_clear_pointer (&result, g_variant_unref);

  /* Cancelled while the task sleeps: back at once. */
  thread = g_thread_new ("cancel", cancel_later, &cl);
  start = g_get_monotonic_time ();
  result = mpg_pool_apply (pool, sleep_id, g_variant_new_int32 (scaled (1500)), cancellable, &error);
  g_thread_join (thread);
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_assert_null (result);
  g_assert_cmpint (g_get_monotonic_time () - start, <, (gint64) scaled (1200) * 1000);
  g_clear_error (&error);

  /* The late reply is not anybody else's: each call gets its own. */
  for (gint32 x = 1; x <= 20; x++)
    g_assert_cmpint (apply_int (pool, die_id, g_variant_new_int32 (x)), ==, x * x);
  g_assert_cmpint (apply_int (pool, sleep_id, g_variant_new_int32 (30)), ==, 30);

  /* The worker dies under a blocking apply. */
  result = mpg_pool_apply (pool, die_id, g_variant_new_int32 (100), NULL, &error);
  g_assert_error (error, MPG_ERROR, MPG_ERROR_WORKER_DIED);
  g_assert_null (result);
  for (gint32 x = 1; x <= 10; x++)
    g_assert_cmpint (apply_int (pool, die_id, g_variant_new_int32 (x)), ==, x * x);
  assert_replaced_at_least (pool, 1);
}

static const PoolTest tests[] = {
  { "/Mpg/Pool/construct", test_pool_construct },
  { "/Mpg/Pool/properties", test_pool_properties },
  { "/Mpg/Pool/apply", test_pool_apply },
  { "/Mpg/Pool/map/order", test_pool_map_order },
  { "/Mpg/Pool/map/chunks", test_pool_map_chunks },
  { "/Mpg/Pool/map/types", test_pool_map_types },
  { "/Mpg/Pool/map/async", test_pool_map_async },
  { "/Mpg/Pool/map/async-context", test_pool_map_async_context },
  { "/Mpg/Pool/map/lowest-error", test_pool_map_lowest_error },
  { "/Mpg/Pool/starmap", test_pool_starmap },
  { "/Mpg/Pool/imap/order", test_pool_imap },
  { "/Mpg/Pool/imap/error", test_pool_imap_error },
  { "/Mpg/Pool/chunk-function", test_pool_chunk_function },
  { "/Mpg/Pool/pipelined-death", test_pool_pipelined_death },
  { "/Mpg/Pool/apply-direct", test_pool_apply_direct },
  { "/Mpg/Pool/iterator/timeout", test_pool_iterator_timeout },
  { "/Mpg/Pool/iterator/async", test_pool_iterator_async },
  { "/Mpg/Pool/errors", test_pool_errors },
  { "/Mpg/Pool/initializer", test_pool_initializer },
  { "/Mpg/Pool/initializer-fails", test_pool_initializer_fails },
  { "/Mpg/Pool/maxtasksperchild", test_pool_maxtasksperchild },
  { "/Mpg/Pool/close", test_pool_close },
  { "/Mpg/Pool/join-timeout", test_pool_join_timeout },
  { "/Mpg/Pool/terminate", test_pool_terminate },
  { "/Mpg/Pool/cancel", test_pool_cancel },
  { "/Mpg/Pool/cancel-then-unref", test_pool_cancel_then_unref },
  { "/Mpg/Pool/progress", test_pool_progress },
  { "/Mpg/Pool/worker-killed", test_pool_worker_killed },
  { "/Mpg/Pool/worker-crash", test_pool_worker_crash },
  { "/Mpg/Pool/retries", test_pool_retries },
  { "/Mpg/Pool/task-timeout", test_pool_task_timeout },
  { "/Mpg/Pool/function-added-later", test_pool_function_added_later },
  { "/Mpg/Pool/remove-function", test_pool_remove_function },
  { "/Mpg/Pool/threads", test_pool_threads },
  { "/Mpg/Pool/sigint", test_pool_sigint },
  { "/Mpg/Pool/no-leaks", test_pool_no_leaks },
  { "/Mpg/Pool/dispose-running", test_pool_dispose_running },
  { "/Mpg/Pool/parent-killed", test_pool_parent_killed },
};

int
main (int   argc,
      char *argv[])
{
  g_test_init (&argc, &argv, NULL);

  /* Registered here, before any worker is forked; never by libmpg. */
  (void) TEST_ERROR;

  for (guint i = 0; i < G_N_ELEMENTS (tests); i++)
    g_test_add_data_func (tests[i].path, &tests[i], run_bounded);

  return g_test_run ();
}
