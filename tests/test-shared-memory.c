/* test-shared-memory.c: MpgSharedMemory and MpgArray
 *
 * Copyright 2026 The libmpg authors
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <math.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/resource.h>

#include <glib-unix.h>
#include <glib/gstdio.h>
#include <libmpg.h>

/* Bounds every wait of these tests: a hang is a failure, not a time-out of
 * the whole run. */
#define WAIT_MS 10000

/* The start method of this run's children: MPG_TEST_START_METHOD (fork,
 * spawn or forkserver; fork when unset), read in main(). Each method is a
 * meson test of its own: test-shared-memory, test-shared-memory-spawn,
 * test-shared-memory-forkserver. */
static MpgStartMethod method = MPG_START_METHOD_FORK;

/* Helpers */

static guint
count_open_fds (void)
{
  g_autoptr(GDir) dir = g_dir_open ("/proc/self/fd", 0, NULL);
  guint n = 0;

  g_assert_nonnull (dir);
  while (g_dir_read_name (dir) != NULL)
    n++;

  return n;
}

/* The byte at @i of the pattern that children write. */
static guint8
pattern_byte (gsize  i,
              guint8 seed)
{
  return (guint8) ((i * 2654435761u) >> 13) ^ seed;
}

static void
fill_pattern (guint8 *data,
              gsize   size,
              guint8  seed)
{
  for (gsize i = 0; i < size; i++)
    data[i] = pattern_byte (i, seed);
}

static gboolean
has_pattern (const guint8 *data,
             gsize         size,
             guint8        seed)
{
  for (gsize i = 0; i < size; i++)
    if (data[i] != pattern_byte (i, seed))
      return FALSE;

  return TRUE;
}

static MpgSharedMemory *
new_memory (const char *name,
            gsize       size)
{
  g_autoptr(GError) error = NULL;
  MpgSharedMemory *shm = mpg_shared_memory_new (name, size, &error);

  g_assert_no_error (error);
  g_assert_nonnull (shm);

  return shm;
}

static MpgArray *
new_array (const char *typecode,
           gsize       length)
{
  g_autoptr(GError) error = NULL;
  MpgArray *array = mpg_array_new (typecode, length, &error);

  g_assert_no_error (error);
  g_assert_nonnull (array);

  return array;
}

/* Starts @func in a child with @args (a floating reference is sunk, as
 * by mpg_process_new()). With fork, the child's user data is
 * @fork_data (often the object itself, inherited); with spawn and
 * forkserver it is @fds, which the handles in @args index. */
static MpgProcess *
start_child (MpgTaskFunc  func,
             GVariant    *args,
             gpointer     fork_data,
             GUnixFDList *fds)
{
  g_autoptr(GError) error = NULL;
  MpgProcess *p;

  if (method == MPG_START_METHOD_FORK)
    {
      p = mpg_process_new (args, func, g_object_ref (fork_data), g_object_unref);
    }
  else
    {
      p = mpg_process_new (args, func, NULL, NULL);
      mpg_process_set_start_method (p, method);
      mpg_process_set_fd_list (p, fds);
    }

  mpg_process_start (p, &error);
  g_assert_no_error (error);

  return p;
}

static void
join_child (MpgProcess *p)
{
  g_autoptr(GError) error = NULL;
  gint code;

  mpg_process_join (p, WAIT_MS, NULL, &error);
  g_assert_no_error (error);
  code = mpg_process_get_exitcode (p);
  /* memcheck ends a forked child of a threaded parent with its own exit
   * code (--error-exitcode) for a false leak: a block only another thread
   * of the parent pointed to. Only a clean exit can be checked there. */
  if (g_getenv ("MPG_TEST_VALGRIND") != NULL && code == 1)
    code = 0;
  g_assert_cmpint (code, ==, 0);
}

/* In the child: the memory that @handle describes, or the inherited
 * object itself (fork). */
static MpgSharedMemory *
child_memory (GVariant  *handle,
              gpointer   user_data,
              GError   **error)
{
  if (MPG_IS_SHARED_MEMORY (user_data))
    return g_object_ref (user_data);

  return mpg_shared_memory_new_from_handle (handle, user_data, error);
}

static MpgArray *
child_array (GVariant  *handle,
             gpointer   user_data,
             GError   **error)
{
  if (MPG_IS_ARRAY (user_data))
    return g_object_ref (user_data);

  return mpg_array_new_from_handle (handle, user_data, error);
}

static gboolean
child_fail (GError     **error,
            const char  *message)
{
  g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_FAILED, message);
  return FALSE;
}

/* Child targets. Exported (the program is linked with export_dynamic), so
 * that a spawned or forkserver child, which is this program run again,
 * finds them by name. */

G_MODULE_EXPORT GVariant *child_nothing (GVariant *args, gpointer user_data, GError **error);
G_MODULE_EXPORT GVariant *child_write_pattern (GVariant *args, gpointer user_data, GError **error);
G_MODULE_EXPORT GVariant *child_write_from_queue (GVariant *args, gpointer user_data, GError **error);
G_MODULE_EXPORT GVariant *child_write_from_pipe (GVariant *args, gpointer user_data, GError **error);
G_MODULE_EXPORT GVariant *child_count (GVariant *args, gpointer user_data, GError **error);
G_MODULE_EXPORT GVariant *child_fill_raw (GVariant *args, gpointer user_data, GError **error);

GVariant *
child_nothing (GVariant  *args,
               gpointer   user_data,
               GError   **error)
{
  return NULL;
}

/* args: (memory handle, name, size, seed). Checks that the memory is the
 * one described, and writes the pattern of @seed into it. */
GVariant *
child_write_pattern (GVariant  *args,
                     gpointer   user_data,
                     GError   **error)
{
  g_autoptr(GVariant) handle = NULL;
  g_autoptr(MpgSharedMemory) shm = NULL;
  const char *name;
  guint64 size;
  guint8 seed;
  gsize data_size;
  guint8 *data;

  g_variant_get (args, "(@(sth)&sty)", &handle, &name, &size, &seed);
  shm = child_memory (handle, user_data, error);
  if (shm == NULL)
    return NULL;

  if (g_strcmp0 (mpg_shared_memory_get_name (shm), name) != 0 ||
      mpg_shared_memory_get_size (shm) != size)
    {
      child_fail (error, "not the memory described");
      return NULL;
    }

  data = mpg_shared_memory_get_data (shm, &data_size);
  fill_pattern (data, data_size, seed);

  return NULL;
}

/* args: the queue's handle (spawn and forkserver; user data is the queue
 * with fork). Gets a memory handle with its fd and writes a pattern. */
GVariant *
child_write_from_queue (GVariant  *args,
                        gpointer   user_data,
                        GError   **error)
{
  g_autoptr(MpgQueue) queue = NULL;
  g_autoptr(GUnixFDList) fds = NULL;
  g_autoptr(GVariant) message = NULL;
  g_autoptr(GVariant) handle = NULL;
  g_autoptr(MpgSharedMemory) shm = NULL;
  guint8 seed;
  guint8 *data;
  gsize size;

  if (MPG_IS_QUEUE (user_data))
    queue = g_object_ref (user_data);
  else
    queue = mpg_queue_new_from_handle (args, user_data, error);
  if (queue == NULL)
    return NULL;

  message = mpg_queue_get_with_fds (queue, TRUE, WAIT_MS, &fds, NULL, error);
  if (message == NULL)
    return NULL;
  if (fds == NULL)
    {
      child_fail (error, "no fds came with the message");
      return NULL;
    }
  g_variant_get (message, "(@(sth)y)", &handle, &seed);
  shm = mpg_shared_memory_new_from_handle (handle, fds, error);
  if (shm == NULL)
    return NULL;

  data = mpg_shared_memory_get_data (shm, &size);
  fill_pattern (data, size, seed);
  return NULL;
}

/* args: the connection's handle (spawn and forkserver; user data is the
 * connection with fork). Receives a memory handle with its fd, writes a
 * pattern and answers. */
GVariant *
child_write_from_pipe (GVariant  *args,
                       gpointer   user_data,
                       GError   **error)
{
  g_autoptr(MpgConnection) conn = NULL;
  g_autoptr(GUnixFDList) fds = NULL;
  g_autoptr(GVariant) message = NULL;
  g_autoptr(GVariant) handle = NULL;
  g_autoptr(MpgSharedMemory) shm = NULL;
  guint8 seed;
  guint8 *data;
  gsize size;

  if (MPG_IS_CONNECTION (user_data))
    conn = g_object_ref (user_data);
  else
    conn = mpg_connection_new_from_handle (args, user_data, error);
  if (conn == NULL)
    return NULL;

  message = mpg_connection_recv_with_fds (conn, &fds, NULL, error);
  if (message == NULL)
    return NULL;
  if (fds == NULL)
    {
      child_fail (error, "no fds came with the message");
      return NULL;
    }
  g_variant_get (message, "(@(sth)y)", &handle, &seed);
  shm = mpg_shared_memory_new_from_handle (handle, fds, error);
  if (shm == NULL)
    return NULL;

  data = mpg_shared_memory_get_data (shm, &size);
  fill_pattern (data, size, seed);

  if (!mpg_connection_send (conn, g_variant_new_string ("done"), NULL, error))
    return NULL;
  return NULL;
}

#define N_COUNTERS   4
#define N_INCREMENTS 10000

/* args: (array handle, increments). Adds 1 to element 0, @increments
 * times, each under the array's lock, once all the children are ready
 * (element 1 counts them), so that they run at the same time. */
GVariant *
child_count (GVariant  *args,
             gpointer   user_data,
             GError   **error)
{
  g_autoptr(GVariant) handle = NULL;
  g_autoptr(MpgArray) array = NULL;
  gint64 deadline = g_get_monotonic_time () + WAIT_MS * G_TIME_SPAN_MILLISECOND;
  MpgLock *lock;
  gint32 *counter;
  gint32 n;

  g_variant_get (args, "(@(st(sth)mv)i)", &handle, &n);
  array = child_array (handle, user_data, error);
  if (array == NULL)
    return NULL;

  lock = mpg_array_get_lock (array);
  if (lock == NULL)
    {
      child_fail (error, "the array has no lock");
      return NULL;
    }
  counter = mpg_array_get_data (array);

  g_atomic_int_inc (&counter[1]);
  while (g_atomic_int_get (&counter[1]) < N_COUNTERS)
    {
      if (g_get_monotonic_time () > deadline)
        {
          child_fail (error, "the other children did not start");
          return NULL;
        }
      g_thread_yield ();
    }

  for (gint32 i = 0; i < n; i++)
    {
      if (!mpg_lock_acquire (lock, WAIT_MS, NULL, NULL, error))
        return NULL;
      /* A read, then a write: without the lock, increments get lost. */
      *(volatile gint32 *) &counter[0] = *(volatile gint32 *) &counter[0] + 1;
      if (!mpg_lock_release (lock, error))
        return NULL;
    }

  return NULL;
}

/* args: an array handle. Element i of a raw array of doubles becomes i/2. */
GVariant *
child_fill_raw (GVariant  *args,
                gpointer   user_data,
                GError   **error)
{
  g_autoptr(MpgArray) array = child_array (args, user_data, error);

  if (array == NULL)
    return NULL;
  if (mpg_array_get_lock (array) != NULL)
    {
      child_fail (error, "a raw array has a lock");
      return NULL;
    }

  for (gsize i = 0; i < mpg_array_get_length (array); i++)
    if (!mpg_array_set (array, i, g_variant_new_double (i / 2.0), error))
      return NULL;

  return NULL;
}

/* Shared memory */

static void
test_memory_new (void)
{
  static const gsize sizes[] = { 1, 100, 4095, 4096, 4097, 1024 * 1024 + 3 };
  g_autoptr(GError) error = NULL;

  g_test_summary ("new() makes zero-filled, sealed, writable memory of the size asked for");

  for (guint i = 0; i < G_N_ELEMENTS (sizes); i++)
    {
      g_autoptr(MpgSharedMemory) shm = new_memory (NULL, sizes[i]);
      gsize size = 0;
      guint8 *data = mpg_shared_memory_get_data (shm, &size);
      struct stat st;
      int seals;

      g_assert_cmpuint (mpg_shared_memory_get_size (shm), ==, sizes[i]);
      g_assert_cmpuint (size, ==, sizes[i]);
      for (gsize j = 0; j < size; j++)
        g_assert_cmpuint (data[j], ==, 0);
      fill_pattern (data, size, 7);
      g_assert_true (has_pattern (data, size, 7));

      g_assert_cmpint (fstat (mpg_shared_memory_get_fd (shm), &st), ==, 0);
      g_assert_cmpint (st.st_size, ==, sizes[i]);
      g_assert_cmpint (fcntl (mpg_shared_memory_get_fd (shm), F_GETFD), ==, FD_CLOEXEC);
      seals = fcntl (mpg_shared_memory_get_fd (shm), F_GET_SEALS);
      g_assert_cmpint (seals & (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL), ==,
                       F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
      /* Sealed for good: nobody can shrink it under a mapping. */
      g_assert_cmpint (ftruncate (mpg_shared_memory_get_fd (shm), 0), <, 0);
    }

  {
    g_autoptr(MpgSharedMemory) shm = mpg_shared_memory_new (NULL, 0, &error);

    g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
    g_assert_nonnull (strstr (error->message, "different from zero"));
    g_assert_null (shm);
    g_clear_error (&error);
  }
}

static void
test_memory_names (void)
{
  g_autoptr(MpgSharedMemory) a = new_memory (NULL, 16);
  g_autoptr(MpgSharedMemory) b = new_memory (NULL, 16);
  g_autoptr(MpgSharedMemory) named = new_memory ("my-block", 16);
  g_autoptr(MpgSharedMemory) unnamed = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *prefix = g_strdup_printf ("mpg-%d-", (int) getpid ());
  g_autofree char *link = NULL;
  g_autofree char *fd_path = NULL;
  g_autofree char *long_name = g_strnfill (250, 'x');
  g_autofree char *name = NULL;
  guint64 size = 0;

  g_test_summary ("Names are made up unique when not given, shown in /proc, and checked");

  g_assert_true (g_str_has_prefix (mpg_shared_memory_get_name (a), prefix));
  g_assert_true (g_str_has_prefix (mpg_shared_memory_get_name (b), prefix));
  g_assert_cmpstr (mpg_shared_memory_get_name (a), !=, mpg_shared_memory_get_name (b));
  g_assert_cmpstr (mpg_shared_memory_get_name (named), ==, "my-block");

  fd_path = g_strdup_printf ("/proc/self/fd/%d", mpg_shared_memory_get_fd (named));
  link = g_file_read_link (fd_path, &error);
  g_assert_no_error (error);
  g_assert_true (g_str_has_prefix (link, "/memfd:my-block"));

  g_object_get (named, "name", &name, "size", &size, NULL);
  g_assert_cmpstr (name, ==, "my-block");
  g_assert_cmpuint (size, ==, 16);

  unnamed = mpg_shared_memory_new ("", 16, &error);
  g_assert_no_error (error);
  g_assert_true (g_str_has_prefix (mpg_shared_memory_get_name (unnamed), prefix));

  g_assert_null (mpg_shared_memory_new (long_name, 16, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);

  long_name[249] = '\0';
  g_clear_object (&unnamed);
  unnamed = mpg_shared_memory_new (long_name, 16, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (mpg_shared_memory_get_name (unnamed), ==, long_name);
}

static void
test_memory_initable (void)
{
  g_autoptr(MpgSharedMemory) shm = NULL;
  g_autoptr(GError) error = NULL;

  g_test_summary ("g_initable_new() with the construct properties is new()");

  shm = g_initable_new (MPG_TYPE_SHARED_MEMORY, NULL, &error, "size", (guint64) 123, NULL);
  g_assert_no_error (error);
  g_assert_cmpuint (mpg_shared_memory_get_size (shm), ==, 123);
  g_assert_nonnull (mpg_shared_memory_get_data (shm, NULL));
  g_clear_object (&shm);

  shm = g_initable_new (MPG_TYPE_SHARED_MEMORY, NULL, &error, "name", "x", NULL);
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
  g_assert_null (shm);
}

static void
test_memory_system_errors (void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(MpgSharedMemory) shm = NULL;
  g_autoptr(MpgArray) array = NULL;
  struct rlimit saved, limit;
  guint open_fds;
  int lowest;

  g_test_summary ("Memory or fds the system cannot give are a GIOError, leaking nothing");

  /* More than the address space */
  open_fds = count_open_fds ();
  shm = mpg_shared_memory_new (NULL, G_MAXSSIZE, &error);
  g_assert_nonnull (error);
  g_assert_true (error->domain == G_IO_ERROR);
  g_test_message ("%s", error->message);
  g_assert_null (shm);
  g_clear_error (&error);
  g_assert_cmpuint (count_open_fds (), ==, open_fds);

  /* No fd left: the lowest free one is the limit (for a moment: this
   * program has no other thread that opens files). */
  lowest = dup (0);
  g_assert_cmpint (lowest, >=, 0);
  close (lowest);
  g_assert_cmpint (getrlimit (RLIMIT_NOFILE, &saved), ==, 0);
  limit = saved;
  limit.rlim_cur = lowest;
  g_assert_cmpint (setrlimit (RLIMIT_NOFILE, &limit), ==, 0);

  shm = mpg_shared_memory_new (NULL, 4096, &error);
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_TOO_MANY_OPEN_FILES);
  g_assert_null (shm);
  g_clear_error (&error);
  array = mpg_array_new ("i", 4, &error);
  g_assert_nonnull (error);
  g_assert_true (error->domain == G_IO_ERROR);
  g_assert_null (array);
  g_clear_error (&error);
  array = mpg_array_new_raw ("i", 4, &error);
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_TOO_MANY_OPEN_FILES);
  g_assert_null (array);
  g_clear_error (&error);

  g_assert_cmpint (setrlimit (RLIMIT_NOFILE, &saved), ==, 0);
  g_assert_cmpuint (count_open_fds (), ==, open_fds);
}

static void
test_memory_bytes (void)
{
  MpgSharedMemory *shm = new_memory (NULL, 4096);
  g_autoptr(GBytes) bytes = NULL;
  gpointer weak = shm;
  guint8 *data = mpg_shared_memory_get_data (shm, NULL);
  guint fds_with = count_open_fds ();
  gsize size;

  g_test_summary ("get_bytes() is the memory itself and keeps the object alive");

  g_object_add_weak_pointer (G_OBJECT (shm), &weak);
  bytes = mpg_shared_memory_get_bytes (shm);
  g_assert_true (g_bytes_get_data (bytes, &size) == (gconstpointer) data);
  g_assert_cmpuint (size, ==, 4096);

  g_object_unref (shm);
  g_assert_nonnull (weak);
  /* Still mapped: writes through the pointer show in the bytes. */
  data[100] = 42;
  g_assert_cmpuint (((const guint8 *) g_bytes_get_data (bytes, NULL))[100], ==, 42);
  g_assert_cmpuint (count_open_fds (), ==, fds_with);

  g_clear_pointer (&bytes, g_bytes_unref);
  g_assert_null (weak);
  g_assert_cmpuint (count_open_fds (), ==, fds_with - 1);
}

static void
test_memory_handle (void)
{
  g_autoptr(MpgSharedMemory) shm = new_memory ("round-trip", 10000);
  g_autoptr(MpgSharedMemory) copy = NULL;
  g_autoptr(GUnixFDList) fds = g_unix_fd_list_new ();
  g_autoptr(GVariant) handle = NULL;
  g_autoptr(GError) error = NULL;
  guint8 *a;
  guint8 *b;

  g_test_summary ("A handle rebuilt in the same process maps the same memory");

  handle = mpg_shared_memory_to_handle (shm, fds, &error);
  g_assert_no_error (error);
  g_assert_false (g_variant_is_floating (handle));
  g_assert_cmpstr (g_variant_get_type_string (handle), ==, "(sth)");
  g_assert_cmpint (g_unix_fd_list_get_length (fds), ==, 1);

  copy = mpg_shared_memory_new_from_handle (handle, fds, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (mpg_shared_memory_get_name (copy), ==, "round-trip");
  g_assert_cmpuint (mpg_shared_memory_get_size (copy), ==, 10000);
  /* Its own copy of the fd: the list keeps its own. */
  g_assert_cmpint (g_unix_fd_list_get_length (fds), ==, 1);
  g_assert_cmpint (mpg_shared_memory_get_fd (copy), !=, g_unix_fd_list_peek_fds (fds, NULL)[0]);
  g_assert_cmpint (mpg_shared_memory_get_fd (copy), !=, mpg_shared_memory_get_fd (shm));

  a = mpg_shared_memory_get_data (shm, NULL);
  b = mpg_shared_memory_get_data (copy, NULL);
  g_assert_true (a != b);
  fill_pattern (a, 10000, 3);
  g_assert_true (has_pattern (b, 10000, 3));
  fill_pattern (b, 10000, 4);
  g_assert_true (has_pattern (a, 10000, 4));

  /* The copy outlives the original. */
  g_clear_object (&shm);
  g_assert_true (has_pattern (b, 10000, 4));
}

static GVariant *
pattern_args (MpgSharedMemory *shm,
              GUnixFDList     *fds,
              guint8           seed)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GVariant) handle = mpg_shared_memory_to_handle (shm, fds, &error);

  g_assert_no_error (error);
  return g_variant_new ("(@(sth)sty)", handle, mpg_shared_memory_get_name (shm),
                        (guint64) mpg_shared_memory_get_size (shm), seed);
}

static void
test_memory_child_writes (void)
{
  g_autoptr(MpgSharedMemory) shm = new_memory ("child-writes", 64 * 1024 + 123);
  g_autoptr(GUnixFDList) fds = g_unix_fd_list_new ();
  g_autoptr(MpgProcess) p = NULL;
  gsize size;
  guint8 *data = mpg_shared_memory_get_data (shm, &size);

  g_test_summary ("What a child writes to the memory, the parent reads");

  /* With fork, the child has the object itself. */
  p = start_child (child_write_pattern, pattern_args (shm, fds, 0x5a), shm, fds);
  g_clear_object (&fds);
  join_child (p);

  g_assert_true (has_pattern (data, size, 0x5a));
}

static void
test_memory_process_args (void)
{
  g_autoptr(MpgSharedMemory) shm = new_memory ("process-args", 3 * 4096);
  g_autoptr(GUnixFDList) fds = g_unix_fd_list_new ();
  g_autoptr(MpgProcess) p = NULL;
  gsize size;
  guint8 *data = mpg_shared_memory_get_data (shm, &size);

  g_test_summary ("A child maps memory given as a handle in its args, with its fd list");

  /* Every start method goes through the handle: with fork, the child's
   * user data is the fd list it inherited. */
  p = start_child (child_write_pattern, pattern_args (shm, fds, 0xc3), fds, fds);
  g_clear_object (&fds);
  join_child (p);

  g_assert_true (has_pattern (data, size, 0xc3));
}

static void
test_memory_queue (void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(MpgQueue) queue = mpg_queue_new (0, &error);
  g_autoptr(MpgSharedMemory) shm = new_memory ("through-a-queue", 100000);
  g_autoptr(GUnixFDList) child_fds = g_unix_fd_list_new ();
  g_autoptr(GUnixFDList) fds = g_unix_fd_list_new ();
  g_autoptr(GVariant) queue_handle = NULL;
  g_autoptr(GVariant) handle = NULL;
  g_autoptr(MpgProcess) p = NULL;
  gsize size;
  guint8 *data = mpg_shared_memory_get_data (shm, &size);

  g_test_summary ("A child maps memory whose handle and fd it got from a queue");

  g_assert_no_error (error);
  queue_handle = mpg_queue_to_handle (queue, child_fds, &error);
  g_assert_no_error (error);
  p = start_child (child_write_from_queue, queue_handle, queue, child_fds);
  g_clear_object (&child_fds);

  handle = mpg_shared_memory_to_handle (shm, fds, &error);
  g_assert_no_error (error);
  g_assert_true (mpg_queue_put_with_fds (queue, g_variant_new ("(@(sth)y)", handle, 0x11), fds,
                                         TRUE, WAIT_MS, NULL, &error));
  g_assert_no_error (error);
  g_clear_object (&fds);
  join_child (p);

  g_assert_true (has_pattern (data, size, 0x11));
}

static void
test_memory_pipe (void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(MpgConnection) parent_conn = NULL;
  g_autoptr(MpgConnection) child_conn = NULL;
  g_autoptr(MpgSharedMemory) shm = new_memory ("through-a-pipe", 5000);
  g_autoptr(GUnixFDList) child_fds = g_unix_fd_list_new ();
  g_autoptr(GUnixFDList) fds = g_unix_fd_list_new ();
  g_autoptr(GVariant) conn_handle = NULL;
  g_autoptr(GVariant) handle = NULL;
  g_autoptr(GVariant) reply = NULL;
  g_autoptr(MpgProcess) p = NULL;
  gsize size;
  guint8 *data = mpg_shared_memory_get_data (shm, &size);

  g_test_summary ("A child maps memory whose handle and fd it got through a pipe");

  g_assert_true (mpg_pipe_new (TRUE, &parent_conn, &child_conn, &error));
  g_assert_no_error (error);
  conn_handle = mpg_connection_to_handle (child_conn, child_fds, &error);
  g_assert_no_error (error);
  p = start_child (child_write_from_pipe, conn_handle, child_conn, child_fds);
  g_clear_object (&child_fds);
  mpg_connection_close (child_conn);

  handle = mpg_shared_memory_to_handle (shm, fds, &error);
  g_assert_no_error (error);
  g_assert_true (mpg_connection_send_with_fds (parent_conn, g_variant_new ("(@(sth)y)", handle, 0x77),
                                               fds, NULL, &error));
  g_assert_no_error (error);
  g_clear_object (&fds);

  g_assert_true (mpg_connection_poll (parent_conn, WAIT_MS, NULL, &error));
  g_assert_no_error (error);
  reply = mpg_connection_recv (parent_conn, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (g_variant_get_string (reply, NULL), ==, "done");
  join_child (p);

  g_assert_true (has_pattern (data, size, 0x77));
}

/* A memfd of @size bytes with @seals added. */
static int
make_memfd (gsize size,
            int   seals)
{
  int fd = memfd_create ("test", MFD_CLOEXEC | MFD_ALLOW_SEALING);

  g_assert_cmpint (fd, >=, 0);
  g_assert_cmpint (ftruncate (fd, size), ==, 0);
  if (seals != 0)
    g_assert_cmpint (fcntl (fd, F_ADD_SEALS, seals), ==, 0);

  return fd;
}

/* Appends @fd to a new list, which then holds the only copy. */
static GUnixFDList *
fd_list_taking (int fd)
{
  return g_unix_fd_list_new_from_array (&fd, 1);
}

static void
assert_rejected (GVariant    *handle,
                 GUnixFDList *fds,
                 const char  *why)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(MpgSharedMemory) shm = NULL;
  gint n_fds = g_unix_fd_list_get_length (fds);
  guint open_fds = count_open_fds ();

  shm = mpg_shared_memory_new_from_handle (handle, fds, &error);
  g_assert_error (error, MPG_ERROR, MPG_ERROR_PROTOCOL);
  g_assert_null (shm);
  g_test_message ("%s: %s", why, error->message);
  g_assert_nonnull (strstr (error->message, why));
  g_assert_cmpint (g_unix_fd_list_get_length (fds), ==, n_fds);
  g_assert_cmpuint (count_open_fds (), ==, open_fds);
}

static void
test_memory_handle_invalid (void)
{
  g_autoptr(MpgSharedMemory) shm = new_memory ("good", 4096);
  g_autoptr(GUnixFDList) good = g_unix_fd_list_new ();
  g_autoptr(GUnixFDList) fds = NULL;
  g_autoptr(GVariant) handle = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *path = NULL;
  g_autofree char *tmp_path = NULL;
  int pipe_fds[2];
  int fd;

  g_test_summary ("Handles that are not of sealed memfds of their size are refused, leaking nothing");

  handle = mpg_shared_memory_to_handle (shm, good, &error);
  g_assert_no_error (error);

  assert_rejected (g_variant_new ("(sti)", "x", (guint64) 4096, 0), good, "must be of type (sth)");
  assert_rejected (g_variant_new ("(sth)", "x", (guint64) 4096, -1), good, "not an index");
  assert_rejected (g_variant_new ("(sth)", "x", (guint64) 4096, 1), good, "not an index");
  assert_rejected (g_variant_new ("(sth)", "x", (guint64) 0, 0), good, "size of 0 bytes");
  assert_rejected (g_variant_new ("(sth)", "x", G_MAXUINT64, 0), good, "size of");
  assert_rejected (g_variant_new ("(sth)", "x", (guint64) 4095, 0), good, "has 4096 bytes, not the 4095");
  assert_rejected (g_variant_new ("(sth)", "x", (guint64) 8192, 0), good, "has 4096 bytes, not the 8192");

  /* A pipe */
  g_assert_true (g_unix_open_pipe (pipe_fds, FD_CLOEXEC, &error));
  g_assert_no_error (error);
  close (pipe_fds[1]);
  fds = fd_list_taking (pipe_fds[0]);
  assert_rejected (g_variant_new ("(sth)", "x", (guint64) 4096, 0), fds, "not a memfd");
  g_clear_object (&fds);

  /* A memfd that could shrink under the mapping, or grow */
  fds = fd_list_taking (make_memfd (4096, 0));
  assert_rejected (g_variant_new ("(sth)", "x", (guint64) 4096, 0), fds, "not sealed");
  g_clear_object (&fds);
  fds = fd_list_taking (make_memfd (4096, F_SEAL_GROW));
  assert_rejected (g_variant_new ("(sth)", "x", (guint64) 4096, 0), fds, "not sealed");
  g_clear_object (&fds);

  /* Sealed against writing, or opened read-only */
  fds = fd_list_taking (make_memfd (4096, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE));
  assert_rejected (g_variant_new ("(sth)", "x", (guint64) 4096, 0), fds, "cannot be written");
  g_clear_object (&fds);
  path = g_strdup_printf ("/proc/self/fd/%d", mpg_shared_memory_get_fd (shm));
  fd = open (path, O_RDONLY | O_CLOEXEC);
  g_assert_cmpint (fd, >=, 0);
  fds = fd_list_taking (fd);
  assert_rejected (g_variant_new ("(sth)", "x", (guint64) 4096, 0), fds, "cannot be written");
  g_clear_object (&fds);

  /* A regular file */
  fd = g_file_open_tmp ("mpg-test-XXXXXX", &tmp_path, &error);
  g_assert_no_error (error);
  g_unlink (tmp_path);
  g_assert_cmpint (ftruncate (fd, 4096), ==, 0);
  fds = fd_list_taking (fd);
  assert_rejected (g_variant_new ("(sth)", "x", (guint64) 4096, 0), fds, "not");
  g_clear_object (&fds);

  /* And the good one still maps. */
  {
    g_autoptr(MpgSharedMemory) copy = mpg_shared_memory_new_from_handle (handle, good, &error);

    g_assert_no_error (error);
    g_assert_nonnull (copy);
  }
}

static GHashTable *
list_dev_shm (void)
{
  GHashTable *names = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  g_autoptr(GDir) dir = g_dir_open ("/dev/shm", 0, NULL);
  const char *name;

  while (dir != NULL && (name = g_dir_read_name (dir)) != NULL)
    g_hash_table_add (names, g_strdup (name));

  return names;
}

static void
test_memory_no_dev_shm (void)
{
  g_autoptr(GHashTable) before = list_dev_shm ();
  g_autoptr(GHashTable) after = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(MpgSharedMemory) shm = new_memory ("mpg-test-dev-shm", 1024 * 1024);
  g_autoptr(MpgArray) array = new_array ("d", 1000);
  g_autoptr(GUnixFDList) fds = g_unix_fd_list_new ();
  g_autoptr(GVariant) handle = NULL;
  g_autoptr(MpgSharedMemory) copy = NULL;
  GHashTableIter iter;
  gpointer name;

  g_test_summary ("Shared memory and arrays leave nothing in /dev/shm");

  handle = mpg_shared_memory_to_handle (shm, fds, &error);
  g_assert_no_error (error);
  copy = mpg_shared_memory_new_from_handle (handle, fds, &error);
  g_assert_no_error (error);
  memset (mpg_shared_memory_get_data (copy, NULL), 1, 1024 * 1024);

  after = list_dev_shm ();
  g_hash_table_iter_init (&iter, after);
  while (g_hash_table_iter_next (&iter, &name, NULL))
    {
      g_assert_false (g_str_has_prefix (name, "mpg"));
      g_assert_true (g_hash_table_contains (before, name));
    }
}

/* Arrays */

typedef struct
{
  const char *typecode;
  gsize size;
  const char *type;
  const char *zero;
  const char *min;
  const char *max;
  const char *too_small;   /* NULL: none of the type */
  const char *too_large;
  const char *wrong;       /* a value of another type */
} TypecodeCase;

static const TypecodeCase typecode_cases[] = {
  { "c", 1, "y", "0", "0", "255", NULL, NULL, "int16 0" },
  { "b", 1, "n", "0", "-128", "127", "-129", "300", "byte 0" },
  { "B", 1, "y", "0", "0", "255", NULL, NULL, "int16 0" },
  { "h", 2, "n", "0", "-32768", "32767", NULL, NULL, "0" },
  { "H", 2, "q", "0", "0", "65535", NULL, NULL, "int16 0" },
  { "i", 4, "i", "0", "-2147483648", "2147483647", NULL, NULL, "int64 0" },
  { "I", 4, "u", "0", "0", "4294967295", NULL, NULL, "0" },
  { "l", 8, "x", "0", "-9223372036854775808", "9223372036854775807", NULL, NULL, "0" },
  { "L", 8, "t", "0", "0", "18446744073709551615", NULL, NULL, "int64 0" },
  { "q", 8, "x", "0", "-9223372036854775808", "9223372036854775807", NULL, NULL, "uint64 0" },
  { "Q", 8, "t", "0", "0", "18446744073709551615", NULL, NULL, "int64 0" },
  { "f", 4, "d", "0.0", "-3.4028234663852886e+38", "3.4028234663852886e+38", "-1e39", "1e300", "0" },
  { "d", 8, "d", "0.0", "-1.7976931348623157e+308", "1.7976931348623157e+308", NULL, NULL, "0" },
  { "u", 4, "s", "''", "'a'", "'\U0001F600'", NULL, "'ab'", "0" },
  { "?", 1, "b", "false", "false", "true", NULL, NULL, "byte 1" },
};

/* Values parsed during a test, freed at its end. */
static GPtrArray *parsed;

/* A value in GVariant text format, of @type if not NULL. It lives until
 * the end of the test (transfer none). */
static GVariant *
parse (const char *type,
       const char *text)
{
  g_autoptr(GError) error = NULL;
  GVariant *value = g_variant_parse (type != NULL ? G_VARIANT_TYPE (type) : NULL,
                                     text, NULL, NULL, &error);

  g_assert_no_error (error);
  g_ptr_array_add (parsed, value);
  return value;
}

static void
assert_element (MpgArray   *array,
                gsize       index,
                const char *expected)
{
  g_autoptr(GVariant) value = (mpg_array_get (array, index));
  GVariant *want = parse (g_variant_type_peek_string (mpg_array_get_item_type (array)), expected);

  g_assert_true (g_variant_is_of_type (value, mpg_array_get_item_type (array)));
  g_assert_cmpvariant (value, want);
}

static void
assert_set_fails (MpgArray   *array,
                  gsize       index,
                  GVariant   *value,
                  const char *message)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GVariant) before = (mpg_array_get (array, index));
  g_autoptr(GVariant) after = NULL;

  g_assert_false (mpg_array_set (array, index, value, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
  g_assert_nonnull (strstr (error->message, message));
  after = (mpg_array_get (array, index));
  g_assert_cmpvariant (before, after);
}

static void
test_array_typecodes (void)
{
  g_test_summary ("Every typecode: size, type, zeros, extremes, range and type errors");

  for (guint i = 0; i < G_N_ELEMENTS (typecode_cases); i++)
    {
      const TypecodeCase *c = &typecode_cases[i];
      g_autoptr(MpgArray) array = new_array (c->typecode, 3);
      g_autoptr(GError) error = NULL;
      g_autoptr(GVariant) whole = NULL;
      GVariant *want;
      g_autofree char *want_text = NULL;

      g_test_message ("typecode %s", c->typecode);
      g_assert_cmpstr (mpg_array_get_typecode (array), ==, c->typecode);
      g_assert_cmpuint (mpg_array_get_length (array), ==, 3);
      g_assert_cmpuint (mpg_array_get_item_size (array), ==, c->size);
      g_assert_cmpstr (g_variant_type_peek_string (mpg_array_get_item_type (array)), ==, c->type);
      g_assert_cmpuint (mpg_shared_memory_get_size (mpg_array_get_memory (array)), ==, 3 * c->size);
      g_assert_true (mpg_array_get_data (array) ==
                     (gpointer) mpg_shared_memory_get_data (mpg_array_get_memory (array), NULL));

      for (gsize j = 0; j < 3; j++)
        assert_element (array, j, c->zero);

      g_assert_true (mpg_array_set (array, 0, parse (c->type, c->min), &error));
      g_assert_no_error (error);
      g_assert_true (mpg_array_set (array, 2, parse (c->type, c->max), &error));
      g_assert_no_error (error);
      assert_element (array, 0, c->min);
      assert_element (array, 1, c->zero);
      assert_element (array, 2, c->max);

      whole = (mpg_array_to_variant (array));
      want_text = g_strdup_printf ("[%s, %s, %s]", c->min, c->zero, c->max);
      want = parse (g_variant_get_type_string (whole), want_text);
      g_assert_cmpint (g_variant_get_type_string (whole)[0], ==, 'a');
      g_assert_cmpstr (g_variant_get_type_string (whole) + 1, ==, c->type);
      g_assert_cmpvariant (whole, want);

      if (c->too_small != NULL)
        assert_set_fails (array, 1, parse (c->type, c->too_small), "out of range");
      if (c->too_large != NULL)
        assert_set_fails (array, 1, parse (c->type, c->too_large),
                          c->type[0] == 's' ? "one character" : "out of range");
      assert_set_fails (array, 1, parse (NULL, c->wrong), "takes values of type");
    }
}

static void
test_array_memory_layout (void)
{
  g_autoptr(GError) error = NULL;

  g_test_summary ("get_data() is a C array of the typecode's type");

  {
    g_autoptr(MpgArray) array = new_array ("b", 4);
    gint8 *data = mpg_array_get_data (array);

    g_assert_true (mpg_array_set (array, 1, g_variant_new_int16 (-5), &error));
    g_assert_cmpint (data[1], ==, -5);
    data[3] = -100;
    assert_element (array, 3, "-100");
  }
  {
    g_autoptr(MpgArray) array = new_array ("f", 2);
    float *data = mpg_array_get_data (array);

    g_assert_true (mpg_array_set (array, 0, g_variant_new_double (0.5), &error));
    g_assert_cmpfloat (data[0], ==, 0.5f);
    data[1] = -2.25f;
    assert_element (array, 1, "-2.25");
    /* Infinities and NaN are floats too */
    g_assert_true (mpg_array_set (array, 0, g_variant_new_double (-INFINITY), &error));
    g_assert_no_error (error);
    g_assert_true (isinf (data[0]) && data[0] < 0);
  }
  {
    g_autoptr(MpgArray) array = new_array ("u", 3);
    guint32 *data = mpg_array_get_data (array);

    g_assert_true (mpg_array_set (array, 0, g_variant_new_string ("é"), &error));
    g_assert_cmpuint (data[0], ==, 0xe9);
    /* Whatever the memory holds, a valid string comes out. */
    data[1] = 0xd800;
    assert_element (array, 1, "'\uFFFD'");
    data[2] = 0xffffffffu;
    assert_element (array, 2, "'\uFFFD'");
  }
  {
    g_autoptr(MpgArray) array = new_array ("?", 2);
    guint8 *data = mpg_array_get_data (array);
    g_autoptr(GVariant) whole = NULL;

    data[0] = 7;
    assert_element (array, 0, "true");
    whole = (mpg_array_to_variant (array));
    g_assert_true (g_variant_is_normal_form (whole));
    g_assert_cmpvariant (whole, parse ("ab", "[true, false]"));
  }
  {
    g_autoptr(MpgArray) array = new_array ("L", 1);

    g_assert_true (mpg_array_set (array, 0, g_variant_new_uint64 (G_MAXUINT64), &error));
    g_assert_cmpuint (*(unsigned long *) mpg_array_get_data (array), ==, G_MAXULONG);
  }
  g_assert_no_error (error);
}

static void
test_array_unknown_typecode (void)
{
  static const char *const bad[] = { "x", "", "ii", "Z", "e" };

  g_test_summary ("An unknown typecode fails with INVALID_ARGUMENT naming it");

  for (guint i = 0; i < G_N_ELEMENTS (bad); i++)
    {
      g_autoptr(GError) error = NULL;
      g_autoptr(MpgArray) array = NULL;
      g_autoptr(MpgLock) lock = mpg_lock_new (&error);
      g_autofree char *quoted = g_strdup_printf ("'%s'", bad[i]);

      g_assert_no_error (error);

      array = mpg_array_new (bad[i], 1, &error);
      g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
      g_assert_nonnull (strstr (error->message, quoted));
      g_assert_null (array);
      g_clear_error (&error);

      array = mpg_array_new_raw (bad[i], 1, &error);
      g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
      g_assert_null (array);
      g_clear_error (&error);

      array = mpg_array_new_with_lock (bad[i], 1, lock, &error);
      g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
      g_assert_null (array);
    }

  {
    g_autoptr(GError) error = NULL;
    g_autoptr(MpgArray) array = mpg_array_new_raw ("q", G_MAXSIZE / 4, &error);

    g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
    g_assert_null (array);
  }
}

static void
test_array_zero_length (void)
{
  static const char *const codes[] = { "B", "i", "u" };

  g_test_summary ("An array of length 0 works, and keeps its length through a handle");

  for (guint i = 0; i < G_N_ELEMENTS (codes); i++)
    {
      g_autoptr(MpgArray) array = new_array (codes[i], 0);
      g_autoptr(GUnixFDList) fds = g_unix_fd_list_new ();
      g_autoptr(GVariant) handle = NULL;
      g_autoptr(GVariant) whole = NULL;
      g_autoptr(MpgArray) copy = NULL;
      g_autoptr(GError) error = NULL;
      g_autofree char *array_type = g_strdup_printf ("a%s", g_variant_type_peek_string (mpg_array_get_item_type (array)));

      g_assert_cmpuint (mpg_array_get_length (array), ==, 0);
      g_assert_cmpuint (mpg_shared_memory_get_size (mpg_array_get_memory (array)), ==, 1);
      whole = (mpg_array_to_variant (array));
      g_assert_cmpuint (g_variant_n_children (whole), ==, 0);
      g_assert_cmpstr (g_variant_get_type_string (whole), ==, array_type);
      g_assert_true (mpg_array_set_from_variant (array, parse (array_type, "[]"), &error));
      g_assert_no_error (error);

      handle = mpg_array_to_handle (array, fds, &error);
      g_assert_no_error (error);
      copy = mpg_array_new_from_handle (handle, fds, &error);
      g_assert_no_error (error);
      g_assert_cmpuint (mpg_array_get_length (copy), ==, 0);
    }
}

static void
assert_ints (MpgArray   *array,
             const char *expected)
{
  g_autoptr(GVariant) whole = (mpg_array_to_variant (array));

  g_assert_cmpvariant (whole, parse (g_variant_get_type_string (whole), expected));
}

static void
assert_set_from_fails (MpgArray   *array,
                       GVariant   *values,
                       const char *message)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GVariant) before = (mpg_array_to_variant (array));
  g_autoptr(GVariant) after = NULL;

  g_assert_false (mpg_array_set_from_variant (array, values, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
  g_test_message ("%s", error->message);
  g_assert_nonnull (strstr (error->message, message));
  /* Nothing was written. */
  after = (mpg_array_to_variant (array));
  g_assert_cmpvariant (before, after);
}

static void
test_array_set_from_variant (void)
{
  g_autoptr(MpgArray) ints = new_array ("i", 5);
  g_autoptr(MpgArray) bytes = new_array ("b", 3);
  g_autoptr(MpgArray) chars = new_array ("u", 3);
  g_autoptr(MpgArray) bools = new_array ("?", 3);
  g_autoptr(MpgArray) floats = new_array ("f", 2);
  g_autoptr(GError) error = NULL;

  g_test_summary ("set_from_variant() writes a prefix, or nothing when a value is wrong");

  g_assert_true (mpg_array_set_from_variant (ints, parse ("ai", "[1, 2, 3]"), &error));
  g_assert_no_error (error);
  assert_ints (ints, "[1, 2, 3, 0, 0]");
  g_assert_true (mpg_array_set_from_variant (ints, parse ("ai", "[9, 8, 7, 6, 5]"), &error));
  g_assert_no_error (error);
  assert_ints (ints, "[9, 8, 7, 6, 5]");
  assert_set_from_fails (ints, parse ("ai", "[1, 2, 3, 4, 5, 6]"), "6 values do not fit");
  assert_set_from_fails (ints, parse ("ax", "[1]"), "an array of type ai, not ax");
  assert_set_from_fails (ints, parse ("i", "1"), "an array of type ai, not i");

  assert_set_from_fails (bytes, parse ("an", "[1, 300]"), "Value 1: 300 is out of range");
  assert_set_from_fails (bytes, parse ("an", "[-129]"), "out of range");
  g_assert_true (mpg_array_set_from_variant (bytes, parse ("an", "[-128, 127]"), &error));
  g_assert_no_error (error);
  assert_ints (bytes, "[-128, 127, 0]");

  g_assert_true (mpg_array_set_from_variant (chars, parse ("as", "['x', '€', '']"), &error));
  g_assert_no_error (error);
  assert_ints (chars, "['x', '€', '']");
  assert_set_from_fails (chars, parse ("as", "['a', 'bc']"), "one character");

  g_assert_true (mpg_array_set_from_variant (bools, parse ("ab", "[true, false, true]"), &error));
  g_assert_no_error (error);
  assert_ints (bools, "[true, false, true]");

  g_assert_true (mpg_array_set_from_variant (floats, parse ("ad", "[0.5, -0.25]"), &error));
  g_assert_no_error (error);
  assert_ints (floats, "[0.5, -0.25]");
  assert_set_from_fails (floats, parse ("ad", "[1.0, 1e300]"), "out of range");
}

static void
test_array_locks (void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(MpgArray) locked = new_array ("i", 1);
  g_autoptr(MpgArray) raw = mpg_array_new_raw ("i", 1, &error);
  g_autoptr(MpgLock) lock = mpg_lock_new (&error);
  g_autoptr(MpgArray) shared = NULL;
  g_autoptr(MpgArray) initable = NULL;
  g_autoptr(MpgLock) prop_lock = NULL;
  g_autoptr(MpgSharedMemory) prop_memory = NULL;
  g_autofree char *typecode = NULL;
  guint64 length = 0;

  g_test_summary ("new() comes with an RLock, new_raw() with none, new_with_lock() with the one given");

  g_assert_no_error (error);
  g_assert_true (MPG_IS_RLOCK (mpg_array_get_lock (locked)));
  g_assert_null (mpg_array_get_lock (raw));

  shared = mpg_array_new_with_lock ("d", 2, lock, &error);
  g_assert_no_error (error);
  g_assert_true (mpg_array_get_lock (shared) == lock);

  g_object_get (shared, "typecode", &typecode, "length", &length, "lock", &prop_lock,
                "memory", &prop_memory, NULL);
  g_assert_cmpstr (typecode, ==, "d");
  g_assert_cmpuint (length, ==, 2);
  g_assert_true (prop_lock == lock);
  g_assert_true (prop_memory == mpg_array_get_memory (shared));

  /* Over existing memory, which must be exactly the elements' size. */
  initable = g_initable_new (MPG_TYPE_ARRAY, NULL, &error, "typecode", "h", "length", (guint64) 8,
                             "memory", prop_memory, NULL);
  g_assert_no_error (error);
  g_assert_null (mpg_array_get_lock (initable));
  g_assert_true (mpg_array_get_data (initable) == mpg_array_get_data (shared));
  g_clear_object (&initable);

  initable = g_initable_new (MPG_TYPE_ARRAY, NULL, &error, "typecode", "h", "length", (guint64) 7,
                             "memory", prop_memory, NULL);
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
  g_assert_null (initable);
}

static void
test_array_out_of_range_index (void)
{
  g_autoptr(MpgArray) array = new_array ("i", 3);
  g_autoptr(GVariant) one = g_variant_ref_sink (g_variant_new_int32 (1));

  g_test_summary ("An index out of range is a programmer error");

  g_test_expect_message ("Mpg", G_LOG_LEVEL_CRITICAL, "*index < self->length*");
  g_assert_null (mpg_array_get (array, 3));
  g_test_assert_expected_messages ();

  g_test_expect_message ("Mpg", G_LOG_LEVEL_CRITICAL, "*index < self->length*");
  g_assert_false (mpg_array_set (array, 3, one, NULL));
  g_test_assert_expected_messages ();
}

static void
test_array_counter (void)
{
  /* Value('i', 0), and a count of the children ready to start */
  g_autoptr(MpgArray) counter = new_array ("i", 2);
  g_autoptr(GUnixFDList) fds = g_unix_fd_list_new ();
  g_autoptr(GVariant) handle = NULL;
  g_autoptr(GError) error = NULL;
  MpgProcess *children[N_COUNTERS];

  g_test_summary ("Children that increment a counter under its lock lose no increment");

  handle = mpg_array_to_handle (counter, fds, &error);
  g_assert_no_error (error);

  for (guint i = 0; i < N_COUNTERS; i++)
    children[i] = start_child (child_count, g_variant_new ("(@(st(sth)mv)i)", handle, N_INCREMENTS),
                               counter, fds);
  for (guint i = 0; i < N_COUNTERS; i++)
    {
      join_child (children[i]);
      g_object_unref (children[i]);
    }

  assert_element (counter, 0, G_STRINGIFY (N_COUNTERS) "0000");
  assert_element (counter, 1, G_STRINGIFY (N_COUNTERS));
}

static void
test_array_raw_child (void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(MpgArray) array = mpg_array_new_raw ("d", 100, &error);
  g_autoptr(GUnixFDList) fds = g_unix_fd_list_new ();
  g_autoptr(GVariant) handle = NULL;
  g_autoptr(MpgProcess) p = NULL;
  double *data;

  g_test_summary ("A raw array (no lock) is shared with a child");

  g_assert_no_error (error);
  handle = mpg_array_to_handle (array, fds, &error);
  g_assert_no_error (error);
  g_assert_cmpint (g_unix_fd_list_get_length (fds), ==, 1);

  p = start_child (child_fill_raw, handle, array, fds);
  join_child (p);

  data = mpg_array_get_data (array);
  for (guint i = 0; i < 100; i++)
    g_assert_cmpfloat (data[i], ==, i / 2.0);
}

static void
test_array_handle (void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(MpgLock) lock = mpg_lock_new (&error);
  g_autoptr(MpgArray) array = NULL;
  g_autoptr(MpgArray) copy = NULL;
  g_autoptr(MpgArray) rcopy = NULL;
  g_autoptr(MpgArray) locked = new_array ("Q", 2);
  g_autoptr(GUnixFDList) fds = g_unix_fd_list_new ();
  g_autoptr(GVariant) handle = NULL;
  g_autoptr(GVariant) rhandle = NULL;

  g_test_summary ("A handle rebuilds the same array with the same lock");

  g_assert_no_error (error);
  array = mpg_array_new_with_lock ("h", 7, lock, &error);
  g_assert_no_error (error);

  handle = mpg_array_to_handle (array, fds, &error);
  g_assert_no_error (error);
  g_assert_false (g_variant_is_floating (handle));
  g_assert_cmpstr (g_variant_get_type_string (handle), ==, "(st(sth)mv)");
  copy = mpg_array_new_from_handle (handle, fds, &error);
  g_assert_no_error (error);

  g_assert_cmpstr (mpg_array_get_typecode (copy), ==, "h");
  g_assert_cmpuint (mpg_array_get_length (copy), ==, 7);
  g_assert_true (mpg_array_get_data (copy) != mpg_array_get_data (array));
  g_assert_true (mpg_array_set (copy, 6, g_variant_new_int16 (-7), &error));
  assert_element (array, 6, "-7");

  /* The same lock: held through the copy, the original cannot take it. */
  g_assert_nonnull (mpg_array_get_lock (copy));
  g_assert_false (MPG_IS_RLOCK (mpg_array_get_lock (copy)));
  g_assert_true (mpg_lock_acquire (mpg_array_get_lock (copy), 0, NULL, NULL, &error));
  g_assert_no_error (error);
  g_assert_false (mpg_lock_acquire (lock, 0, NULL, NULL, &error));
  g_assert_error (error, MPG_ERROR, MPG_ERROR_TIMEOUT);
  g_clear_error (&error);
  g_assert_true (mpg_lock_release (mpg_array_get_lock (copy), &error));
  g_assert_no_error (error);

  /* An RLock stays one. */
  rhandle = mpg_array_to_handle (locked, fds, &error);
  g_assert_no_error (error);
  rcopy = mpg_array_new_from_handle (rhandle, fds, &error);
  g_assert_no_error (error);
  g_assert_true (MPG_IS_RLOCK (mpg_array_get_lock (rcopy)));
  g_assert_cmpstr (mpg_array_get_typecode (rcopy), ==, "Q");
}

static void
assert_array_rejected (GVariant    *handle,
                       GUnixFDList *fds,
                       GQuark       domain,
                       gint         code,
                       const char  *why)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(MpgArray) array = NULL;
  guint open_fds = count_open_fds ();

  array = mpg_array_new_from_handle (handle, fds, &error);
  g_assert_error (error, domain, code);
  g_assert_null (array);
  g_test_message ("%s: %s", why, error->message);
  g_assert_nonnull (strstr (error->message, why));
  g_assert_cmpuint (count_open_fds (), ==, open_fds);
}

static void
test_array_handle_invalid (void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(MpgArray) array = new_array ("i", 3);
  g_autoptr(GUnixFDList) fds = g_unix_fd_list_new ();
  g_autoptr(GVariant) handle = NULL;
  g_autoptr(GVariant) memory = NULL;
  g_autoptr(GVariant) lock = NULL;
  g_autoptr(MpgSharedMemory) odd = new_memory (NULL, 10);
  g_autoptr(GVariant) odd_memory = NULL;
  GQuark protocol = MPG_ERROR;

  g_test_summary ("Array handles that do not agree with their memory are refused, leaking nothing");

  handle = mpg_array_to_handle (array, fds, &error);
  g_assert_no_error (error);
  g_variant_get (handle, "(&st@(sth)mv)", NULL, NULL, &memory, &lock);
  g_assert_nonnull (lock);
  odd_memory = mpg_shared_memory_to_handle (odd, fds, &error);
  g_assert_no_error (error);

  assert_array_rejected (g_variant_new ("(s@(sth)mv)", "i", memory, NULL), fds,
                         protocol, MPG_ERROR_PROTOCOL, "must be of type (st(sth)mv)");
  assert_array_rejected (g_variant_new ("(st@(sth)mv)", "Z", (guint64) 3, memory, NULL), fds,
                         protocol, MPG_ERROR_PROTOCOL, "unknown typecode 'Z'");
  assert_array_rejected (g_variant_new ("(st@(sth)mv)", "i", (guint64) 4, memory, NULL), fds,
                         protocol, MPG_ERROR_PROTOCOL, "4 elements of typecode 'i' do not fill 12 bytes");
  assert_array_rejected (g_variant_new ("(st@(sth)mv)", "q", (guint64) 1, memory, NULL), fds,
                         protocol, MPG_ERROR_PROTOCOL, "do not fill");
  assert_array_rejected (g_variant_new ("(st@(sth)mv)", "i", G_MAXUINT64, memory, NULL), fds,
                         protocol, MPG_ERROR_PROTOCOL, "do not fill");
  assert_array_rejected (g_variant_new ("(st@(sth)mv)", "i", (guint64) 2, odd_memory, NULL), fds,
                         protocol, MPG_ERROR_PROTOCOL, "do not fill 10 bytes");
  assert_array_rejected (g_variant_new ("(st@(sth)mv)", "i", (guint64) 3,
                                        g_variant_new ("(sth)", "x", (guint64) 12, 99), NULL), fds,
                         protocol, MPG_ERROR_PROTOCOL, "not an index");
  /* A memory handle that names the lock's fd */
  assert_array_rejected (g_variant_new ("(st@(sth)mv)", "i", (guint64) 3,
                                        g_variant_new ("(sth)", "x", (guint64) 12, 1), NULL), fds,
                         protocol, MPG_ERROR_PROTOCOL, "bytes, not the 12");
  assert_array_rejected (g_variant_new ("(st@(sth)mv)", "i", (guint64) 3, memory,
                                        g_variant_new_int32 (1)), fds,
                         G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, "its lock");

  /* A raw one from the same parts is fine. */
  {
    g_autoptr(MpgArray) raw = mpg_array_new_from_handle (g_variant_new ("(st@(sth)mv)", "i", (guint64) 3,
                                                                        memory, NULL),
                                                         fds, &error);

    g_assert_no_error (error);
    g_assert_null (mpg_array_get_lock (raw));
  }
}

typedef enum
{
  ONCE,        /* the start method does not matter: only in the fork run */
  ALL,         /* in the run of every start method */
} Methods;

static const struct
{
  const char *name;
  GTestFunc func;
  Methods methods;
} tests[] = {
  { "SharedMemory/new", test_memory_new, ONCE },
  { "SharedMemory/names", test_memory_names, ONCE },
  { "SharedMemory/initable", test_memory_initable, ONCE },
  { "SharedMemory/system-errors", test_memory_system_errors, ONCE },
  { "SharedMemory/bytes", test_memory_bytes, ONCE },
  { "SharedMemory/handle", test_memory_handle, ONCE },
  { "SharedMemory/handle-invalid", test_memory_handle_invalid, ONCE },
  { "SharedMemory/no-dev-shm", test_memory_no_dev_shm, ONCE },
  { "SharedMemory/child-writes", test_memory_child_writes, ALL },
  { "SharedMemory/process-args", test_memory_process_args, ALL },
  { "SharedMemory/queue", test_memory_queue, ALL },
  { "SharedMemory/pipe", test_memory_pipe, ALL },
  { "Array/typecodes", test_array_typecodes, ONCE },
  { "Array/memory-layout", test_array_memory_layout, ONCE },
  { "Array/unknown-typecode", test_array_unknown_typecode, ONCE },
  { "Array/zero-length", test_array_zero_length, ONCE },
  { "Array/set-from-variant", test_array_set_from_variant, ONCE },
  { "Array/locks", test_array_locks, ONCE },
  { "Array/out-of-range-index", test_array_out_of_range_index, ONCE },
  { "Array/handle", test_array_handle, ONCE },
  { "Array/handle-invalid", test_array_handle_invalid, ONCE },
  { "Array/counter", test_array_counter, ALL },
  { "Array/raw-child", test_array_raw_child, ALL },
};

/* Runs a test and checks that it left no fd open. */
static void
run_checking_fds (gconstpointer data)
{
  GTestFunc func = (GTestFunc) data;
  guint before = count_open_fds ();

  func ();
  g_ptr_array_set_size (parsed, 0);
  g_assert_cmpuint (count_open_fds (), ==, before);
}

/* Starts and joins one child, so that what the start method keeps for
 * good (the fork server and its socket) exists before the first count of
 * fds. */
static void
warm_up (void)
{
  g_autoptr(GUnixFDList) fds = g_unix_fd_list_new ();
  g_autoptr(MpgProcess) p = start_child (child_nothing, NULL, fds, fds);

  join_child (p);
}

int
main (int   argc,
      char *argv[])
{
  const char *env;
  const char *method_name;

  /* First: in a spawned or forkserver child this runs the task and never
   * returns. */
  mpg_init (&argc, &argv);

  g_test_init (&argc, &argv, NULL);

  env = g_getenv ("MPG_TEST_START_METHOD");
  method_name = env != NULL ? env : "fork";
  if (g_str_equal (method_name, "fork"))
    method = MPG_START_METHOD_FORK;
  else if (g_str_equal (method_name, "spawn"))
    method = MPG_START_METHOD_SPAWN;
  else if (g_str_equal (method_name, "forkserver"))
    method = MPG_START_METHOD_FORKSERVER;
  else
    g_error ("MPG_TEST_START_METHOD: unknown start method '%s'", env);

  for (guint i = 0; i < G_N_ELEMENTS (tests); i++)
    {
      g_autofree char *path = NULL;

      if (method != MPG_START_METHOD_FORK && tests[i].methods != ALL)
        continue;
      if (method == MPG_START_METHOD_FORK)
        {
          path = g_strdup_printf ("/Mpg/%s", tests[i].name);
        }
      else
        {
          /* /Mpg/Class/method/name, as test-queue's paths */
          const char *slash = strchr (tests[i].name, '/');

          path = g_strdup_printf ("/Mpg/%.*s/%s%s", (int) (slash - tests[i].name),
                                  tests[i].name, method_name, slash);
        }
      g_test_add_data_func (path, tests[i].func, run_checking_fds);
    }

  parsed = g_ptr_array_new_with_free_func ((GDestroyNotify) g_variant_unref);
  warm_up ();

  return g_test_run ();
}
