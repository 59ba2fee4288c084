/* test-sync.c: synchronization primitives shared by processes
 *
 * Copyright 2026 The libmpg authors
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include <dirent.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <gmodule.h>

#include "libmpg.h"

/* Bounds every wait of these tests: a hang is a failure. */
#define WAIT_MS 10000

/* MPG_TEST_START_METHOD: fork (unset), spawn or forkserver; read in main(). */
static MpgStartMethod method = MPG_START_METHOD_FORK;

static gboolean
under_valgrind (void)
{
  return g_getenv ("MPG_TEST_VALGRIND") != NULL;
}

/* What a child gets: some primitives and a page of shared memory, all
 * passed as handles and fds under every start method (a forked child
 * rebuilds them from the fd list it inherits). */
typedef struct
{
  MpgLock      *lock;
  MpgLock      *rlock;
  MpgSemaphore *sem;
  MpgEvent     *event;
  MpgCondition *cond;
  MpgBarrier   *barrier;
  int           mem_fd;
  gint32       *mem;     /* 1024 ints */
  gint32        param;
} Kit;

#define MEM_SIZE 4096

static void
kit_clear (Kit *kit)
{
  g_clear_object (&kit->lock);
  g_clear_object (&kit->rlock);
  g_clear_object (&kit->sem);
  g_clear_object (&kit->event);
  g_clear_object (&kit->cond);
  g_clear_object (&kit->barrier);
  if (kit->mem != NULL)
    munmap (kit->mem, MEM_SIZE);
  kit->mem = NULL;
  if (kit->mem_fd >= 0)
    close (kit->mem_fd);
  kit->mem_fd = -1;
}

G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (Kit, kit_clear)

static void
kit_init_mem (Kit *kit)
{
  kit->mem_fd = memfd_create ("test-sync", MFD_CLOEXEC);
  g_assert_cmpint (kit->mem_fd, >=, 0);
  g_assert_cmpint (ftruncate (kit->mem_fd, MEM_SIZE), ==, 0);
  kit->mem = mmap (NULL, MEM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, kit->mem_fd, 0);
  g_assert_true (kit->mem != MAP_FAILED);
}

static MpgProcess *
start_kit_child (MpgTaskFunc  func,
                 Kit         *kit,
                 gint32       param)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GUnixFDList) fds = g_unix_fd_list_new ();
  GVariantBuilder b;
  MpgProcess *p;

  g_variant_builder_init (&b, G_VARIANT_TYPE ("a{sv}"));
#define ADD(name, expr) G_STMT_START { \
    g_autoptr(GVariant) h = (expr); \
    g_assert_no_error (error); \
    g_variant_builder_add (&b, "{sv}", name, h); \
  } G_STMT_END
  if (kit->lock != NULL)
    ADD ("lock", mpg_lock_to_handle (kit->lock, fds, &error));
  if (kit->rlock != NULL)
    ADD ("rlock", mpg_lock_to_handle (kit->rlock, fds, &error));
  if (kit->sem != NULL)
    ADD ("sem", mpg_semaphore_to_handle (kit->sem, fds, &error));
  if (kit->event != NULL)
    ADD ("event", mpg_event_to_handle (kit->event, fds, &error));
  if (kit->cond != NULL)
    ADD ("cond", mpg_condition_to_handle (kit->cond, fds, &error));
  if (kit->barrier != NULL)
    ADD ("barrier", mpg_barrier_to_handle (kit->barrier, fds, &error));
  if (kit->mem != NULL)
    ADD ("mem", g_variant_ref_sink (g_variant_new_handle (g_unix_fd_list_append (fds, kit->mem_fd, &error))));
#undef ADD

  if (method == MPG_START_METHOD_FORK)
    p = mpg_process_new (g_variant_new ("(a{sv}i)", &b, param), func,
                         g_object_ref (fds), g_object_unref);
  else
    {
      p = mpg_process_new (g_variant_new ("(a{sv}i)", &b, param), func, NULL, NULL);
      mpg_process_set_start_method (p, method);
      mpg_process_set_fd_list (p, fds);
    }

  mpg_process_start (p, &error);
  g_assert_no_error (error);
  return p;
}

/* In the child: the kit from start_kit_child()'s argument and fd list. */
static gboolean
kit_from_arg (GVariant     *arg,
              gpointer      user_data,
              Kit          *kit,
              GError      **error)
{
  GUnixFDList *fds = user_data;
  g_autoptr(GVariant) dict = NULL;
  g_autoptr(GVariant) h = NULL;

  memset (kit, 0, sizeof *kit);
  kit->mem_fd = -1;
  g_variant_get (arg, "(@a{sv}i)", &dict, &kit->param);

#define GET(name, field, ctor) G_STMT_START { \
    g_autoptr(GVariant) v = g_variant_lookup_value (dict, name, NULL); \
    if (v != NULL && (kit->field = (gpointer) ctor (v, fds, error)) == NULL) \
      return FALSE; \
  } G_STMT_END
  GET ("lock", lock, mpg_lock_new_from_handle);
  GET ("rlock", rlock, mpg_lock_new_from_handle);
  GET ("sem", sem, mpg_semaphore_new_from_handle);
  GET ("event", event, mpg_event_new_from_handle);
  GET ("cond", cond, mpg_condition_new_from_handle);
  GET ("barrier", barrier, mpg_barrier_new_from_handle);
#undef GET

  h = g_variant_lookup_value (dict, "mem", G_VARIANT_TYPE_HANDLE);
  if (h != NULL)
    {
      kit->mem_fd = g_unix_fd_list_get (fds, g_variant_get_handle (h), error);
      if (kit->mem_fd < 0)
        return FALSE;
      kit->mem = mmap (NULL, MEM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, kit->mem_fd, 0);
      if (kit->mem == MAP_FAILED)
        {
          kit->mem = NULL;
          g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_FAILED, "mmap failed");
          return FALSE;
        }
    }
  return TRUE;
}

static gint
join_code (MpgProcess *p)
{
  g_autoptr(GError) error = NULL;
  gint code;

  mpg_process_join (p, WAIT_MS, NULL, &error);
  g_assert_no_error (error);
  code = mpg_process_get_exitcode (p);
  /* memcheck ends a forked child of a threaded parent with its own exit
   * code for a false leak; only a clean exit can be checked there. */
  if (under_valgrind () && code == 1)
    code = 0;
  return code;
}

static void
join_ok (MpgProcess *p)
{
  g_assert_cmpint (join_code (p), ==, 0);
}

static guint
count_fds (void)
{
  g_autoptr(GDir) dir = g_dir_open ("/proc/self/fd", 0, NULL);
  guint n = 0;

  g_assert_nonnull (dir);
  while (g_dir_read_name (dir) != NULL)
    n++;
  return n;
}

static guint
count_dev_shm (void)
{
  g_autoptr(GDir) dir = g_dir_open ("/dev/shm", 0, NULL);
  guint n = 0;

  if (dir == NULL)
    return 0;
  while (g_dir_read_name (dir) != NULL)
    n++;
  return n;
}

/* Drops @obj and waits until it is finalized: an async wait's thread lets
 * go of its object just after the callback ran. */
static void
unref_and_wait (gpointer obj)
{
  gint64 deadline = g_get_monotonic_time () + WAIT_MS * 1000;

  g_object_add_weak_pointer (G_OBJECT (obj), &obj);
  g_object_unref (obj);
  while (g_atomic_pointer_get (&obj) != NULL)
    {
      g_assert_cmpint (g_get_monotonic_time (), <, deadline);
      g_usleep (1000);
    }
}

static guint
iterations (void)
{
  return under_valgrind () ? 300 : 10000;
}

/* Child targets, exported so that spawned children find them by name. */
G_MODULE_EXPORT GVariant *child_count (GVariant *arg, gpointer user_data, GError **error);
G_MODULE_EXPORT GVariant *child_lost_update (GVariant *arg, gpointer user_data, GError **error);
G_MODULE_EXPORT GVariant *child_hold_and_hang (GVariant *arg, gpointer user_data, GError **error);
G_MODULE_EXPORT GVariant *child_bounded (GVariant *arg, gpointer user_data, GError **error);
G_MODULE_EXPORT GVariant *child_wait_event (GVariant *arg, gpointer user_data, GError **error);
G_MODULE_EXPORT GVariant *child_wait_condition (GVariant *arg, gpointer user_data, GError **error);
G_MODULE_EXPORT GVariant *child_barrier_rounds (GVariant *arg, gpointer user_data, GError **error);
G_MODULE_EXPORT GVariant *child_barrier_broken (GVariant *arg, gpointer user_data, GError **error);
G_MODULE_EXPORT GVariant *child_hold_briefly (GVariant *arg, gpointer user_data, GError **error);
G_MODULE_EXPORT GVariant *child_set_event_later (GVariant *arg, gpointer user_data, GError **error);
G_MODULE_EXPORT GVariant *child_nothing (GVariant *arg, gpointer user_data, GError **error);

GVariant *
child_nothing (GVariant  *arg,
               gpointer   user_data,
               GError   **error)
{
  return NULL;
}

/* param 0: under the Lock; 1: under the RLock, taken twice. */
GVariant *
child_count (GVariant  *arg,
             gpointer   user_data,
             GError   **error)
{
  g_auto(Kit) kit;
  MpgLock *lock;

  if (!kit_from_arg (arg, user_data, &kit, error))
    return NULL;
  lock = kit.param == 0 ? kit.lock : kit.rlock;

  for (guint i = 0; i < iterations (); i++)
    {
      volatile gint32 *counter = kit.mem;
      gint32 v;

      if (!mpg_lock_acquire (lock, WAIT_MS, NULL, NULL, error))
        return NULL;
      if (kit.param == 1 && !mpg_lock_acquire (lock, 0, NULL, NULL, error))
        return NULL;
      /* A read and a later write: without the lock, increments are lost. */
      v = *counter;
      if (i % 64 == 0)
        g_thread_yield ();
      *counter = v + 1;
      if (kit.param == 1 && !mpg_lock_release (lock, error))
        return NULL;
      if (!mpg_lock_release (lock, error))
        return NULL;
    }
  return NULL;
}

static void
run_counter (gboolean recursive)
{
  g_autoptr(GError) error = NULL;
  g_auto(Kit) kit = { .mem_fd = -1 };
  MpgProcess *children[4];

  if (recursive)
    kit.rlock = MPG_LOCK (mpg_rlock_new (&error));
  else
    kit.lock = mpg_lock_new (&error);
  g_assert_no_error (error);
  kit_init_mem (&kit);

  for (guint i = 0; i < G_N_ELEMENTS (children); i++)
    children[i] = start_kit_child (child_count, &kit, recursive ? 1 : 0);
  for (guint i = 0; i < G_N_ELEMENTS (children); i++)
    {
      join_ok (children[i]);
      g_object_unref (children[i]);
    }

  g_assert_cmpint (kit.mem[0], ==, 4 * iterations ());
}

static void
test_counter_lock (void)
{
  run_counter (FALSE);
}

static void
test_counter_rlock (void)
{
  run_counter (TRUE);
}

/* Without a lock, an increment is lost: both read, meet, both write. */
GVariant *
child_lost_update (GVariant  *arg,
                   gpointer   user_data,
                   GError   **error)
{
  g_auto(Kit) kit;
  gint32 v;

  if (!kit_from_arg (arg, user_data, &kit, error))
    return NULL;

  v = g_atomic_int_get (&kit.mem[0]);
  if (mpg_barrier_wait (kit.barrier, WAIT_MS, NULL, error) < 0)
    return NULL;
  g_atomic_int_set (&kit.mem[0], v + 1);
  return NULL;
}

static void
test_lost_update (void)
{
  g_autoptr(GError) error = NULL;
  g_auto(Kit) kit = { .mem_fd = -1 };
  g_autoptr(MpgProcess) a = NULL;
  g_autoptr(MpgProcess) b = NULL;

  kit.barrier = mpg_barrier_new (2, -1, &error);
  g_assert_no_error (error);
  kit_init_mem (&kit);

  a = start_kit_child (child_lost_update, &kit, 0);
  b = start_kit_child (child_lost_update, &kit, 0);
  join_ok (a);
  join_ok (b);

  /* Two increments, one left: what the lock of test_counter_* prevents. */
  g_assert_cmpint (kit.mem[0], ==, 1);
}

/* Takes the lock, the RLock (twice) and a unit of the semaphore, tells the
 * parent and waits to be killed. */
GVariant *
child_hold_and_hang (GVariant  *arg,
                     gpointer   user_data,
                     GError   **error)
{
  g_auto(Kit) kit;

  if (!kit_from_arg (arg, user_data, &kit, error))
    return NULL;

  if (!mpg_lock_acquire (kit.lock, WAIT_MS, NULL, NULL, error) ||
      !mpg_lock_acquire (kit.rlock, WAIT_MS, NULL, NULL, error) ||
      !mpg_lock_acquire (kit.rlock, WAIT_MS, NULL, NULL, error) ||
      !mpg_semaphore_acquire (kit.sem, WAIT_MS, NULL, error))
    return NULL;

  mpg_event_set (kit.event);
  g_usleep (60 * G_USEC_PER_SEC);
  g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_FAILED, "Not killed");
  return NULL;
}

typedef struct
{
  MpgLock  *lock;
  gboolean  ok;
  gboolean  died;
  GError   *error;
} Waiter;

static gpointer
waiter_thread (gpointer data)
{
  Waiter *w = data;

  w->ok = mpg_lock_acquire (w->lock, WAIT_MS, &w->died, NULL, &w->error);
  return NULL;
}

static void
test_holder_killed (void)
{
  g_autoptr(GError) error = NULL;
  g_auto(Kit) kit = { .mem_fd = -1 };
  g_autoptr(MpgProcess) p = NULL;
  Waiter w = { 0 };
  GThread *thread;
  gboolean died = FALSE;
  gint64 start;

  kit.lock = mpg_lock_new (&error);
  g_assert_no_error (error);
  kit.rlock = MPG_LOCK (mpg_rlock_new (&error));
  g_assert_no_error (error);
  kit.sem = mpg_semaphore_new (1, &error);
  g_assert_no_error (error);
  kit.event = mpg_event_new (&error);
  g_assert_no_error (error);

  p = start_kit_child (child_hold_and_hang, &kit, 0);
  g_assert_true (mpg_event_wait (kit.event, WAIT_MS, NULL, &error));
  g_assert_no_error (error);

  /* Held: a try fails, and the semaphore has no unit. */
  g_assert_false (mpg_lock_acquire (kit.lock, 0, &died, NULL, &error));
  g_assert_error (error, MPG_ERROR, MPG_ERROR_TIMEOUT);
  g_clear_error (&error);
  g_assert_cmpuint (mpg_semaphore_get_value (kit.sem), ==, 0);

  /* A waiter already blocked when the holder dies proceeds. */
  w.lock = kit.lock;
  thread = g_thread_new ("waiter", waiter_thread, &w);
  g_usleep (50 * G_TIME_SPAN_MILLISECOND);

  g_assert_true (mpg_process_kill (p, &error));
  g_assert_no_error (error);
  g_assert_cmpint (join_code (p), ==, -SIGKILL);

  start = g_get_monotonic_time ();
  g_thread_join (thread);
  g_assert_no_error (w.error);
  g_assert_true (w.ok);
  g_assert_true (w.died);
  /* Within about a second of the death (the slices grow to 1 s). */
  g_assert_cmpint (g_get_monotonic_time () - start, <, WAIT_MS * 1000);
  g_assert_true (mpg_lock_release (kit.lock, &error));
  g_assert_no_error (error);

  /* A call that does not wait takes the RLock over at once. */
  g_assert_true (mpg_lock_acquire (kit.rlock, 0, &died, NULL, &error));
  g_assert_no_error (error);
  g_assert_true (died);
  g_assert_cmpuint (mpg_lock_get_count (kit.rlock), ==, 1);
  g_assert_true (mpg_lock_is_mine (kit.rlock));
  g_assert_true (mpg_lock_release (kit.rlock, &error));
  g_assert_no_error (error);

  /* The dead process's unit comes back to a waiter. */
  g_assert_true (mpg_semaphore_acquire (kit.sem, WAIT_MS, NULL, &error));
  g_assert_no_error (error);
  g_assert_true (mpg_semaphore_release (kit.sem, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (mpg_semaphore_get_value (kit.sem), ==, 1);

  /* And the lock works as before: nobody else took it. */
  g_assert_true (mpg_lock_acquire (kit.lock, 0, &died, NULL, &error));
  g_assert_no_error (error);
  g_assert_false (died);
  g_assert_true (mpg_lock_release (kit.lock, &error));
  g_assert_no_error (error);
}

/* Counts how many are inside at once, under a semaphore of param units. */
GVariant *
child_bounded (GVariant  *arg,
               gpointer   user_data,
               GError   **error)
{
  g_auto(Kit) kit;
  guint rounds = under_valgrind () ? 20 : 200;

  if (!kit_from_arg (arg, user_data, &kit, error))
    return NULL;

  for (guint i = 0; i < rounds; i++)
    {
      gint inside;

      if (!mpg_semaphore_acquire (kit.sem, WAIT_MS, NULL, error))
        return NULL;
      inside = g_atomic_int_add (&kit.mem[0], 1) + 1;
      for (;;)
        {
          gint max = g_atomic_int_get (&kit.mem[1]);

          if (inside <= max || g_atomic_int_compare_and_exchange (&kit.mem[1], max, inside))
            break;
        }
      g_usleep (50);
      g_atomic_int_add (&kit.mem[0], -1);
      if (!mpg_semaphore_release (kit.sem, error))
        return NULL;
    }
  return NULL;
}

static void
test_semaphore_bound (void)
{
  g_autoptr(GError) error = NULL;
  g_auto(Kit) kit = { .mem_fd = -1 };
  MpgProcess *children[4];

  kit.sem = mpg_semaphore_new_bounded (2, &error);
  g_assert_no_error (error);
  kit_init_mem (&kit);

  for (guint i = 0; i < G_N_ELEMENTS (children); i++)
    children[i] = start_kit_child (child_bounded, &kit, 0);
  for (guint i = 0; i < G_N_ELEMENTS (children); i++)
    {
      join_ok (children[i]);
      g_object_unref (children[i]);
    }

  g_assert_cmpint (kit.mem[0], ==, 0);
  g_assert_cmpint (kit.mem[1], >=, 1);
  g_assert_cmpint (kit.mem[1], <=, 2);
  g_assert_cmpuint (mpg_semaphore_get_value (kit.sem), ==, 2);

  /* Bounded: one more release is an error, and changes nothing. */
  g_assert_false (mpg_semaphore_release (kit.sem, &error));
  g_assert_error (error, MPG_ERROR, MPG_ERROR_INVALID_STATE);
  g_assert_cmpuint (mpg_semaphore_get_value (kit.sem), ==, 2);
}

GVariant *
child_wait_event (GVariant  *arg,
                  gpointer   user_data,
                  GError   **error)
{
  g_auto(Kit) kit;

  if (!kit_from_arg (arg, user_data, &kit, error))
    return NULL;

  g_atomic_int_inc (&kit.mem[1]);
  if (!mpg_event_wait (kit.event, WAIT_MS, NULL, error))
    return NULL;
  g_atomic_int_inc (&kit.mem[0]);
  return NULL;
}

static void
wait_for_count (gint32 *word,
                gint32  value)
{
  gint64 deadline = g_get_monotonic_time () + WAIT_MS * 1000;

  while (g_atomic_int_get (word) < value)
    {
      g_assert_cmpint (g_get_monotonic_time (), <, deadline);
      g_usleep (1000);
    }
}

static void
test_event_wakes (void)
{
  g_autoptr(GError) error = NULL;
  g_auto(Kit) kit = { .mem_fd = -1 };
  MpgProcess *children[3];

  kit.event = mpg_event_new (&error);
  g_assert_no_error (error);
  kit_init_mem (&kit);

  for (guint i = 0; i < G_N_ELEMENTS (children); i++)
    children[i] = start_kit_child (child_wait_event, &kit, 0);
  wait_for_count (&kit.mem[1], 3);
  g_usleep (20 * G_TIME_SPAN_MILLISECOND);
  g_assert_cmpint (g_atomic_int_get (&kit.mem[0]), ==, 0);

  mpg_event_set (kit.event);
  for (guint i = 0; i < G_N_ELEMENTS (children); i++)
    {
      join_ok (children[i]);
      g_object_unref (children[i]);
    }
  g_assert_cmpint (kit.mem[0], ==, 3);
}

/* mem[1]: how many wait; mem[0]: the predicate; mem[2]: how many woke. */
GVariant *
child_wait_condition (GVariant  *arg,
                      gpointer   user_data,
                      GError   **error)
{
  g_auto(Kit) kit;
  MpgLock *lock;

  if (!kit_from_arg (arg, user_data, &kit, error))
    return NULL;

  lock = mpg_condition_get_lock (kit.cond);
  if (!mpg_lock_acquire (lock, WAIT_MS, NULL, NULL, error))
    return NULL;
  kit.mem[1]++;
  while (kit.mem[0] == 0)
    if (!mpg_condition_wait (kit.cond, WAIT_MS, NULL, error))
      {
        mpg_lock_release (lock, NULL);
        return NULL;
      }
  kit.mem[2]++;
  if (!mpg_lock_release (lock, error))
    return NULL;
  return NULL;
}

static void
test_condition_wakes (void)
{
  g_autoptr(GError) error = NULL;
  g_auto(Kit) kit = { .mem_fd = -1 };
  MpgProcess *children[3];
  MpgLock *lock;
  gint64 deadline;

  kit.cond = mpg_condition_new (NULL, &error);
  g_assert_no_error (error);
  lock = mpg_condition_get_lock (kit.cond);
  g_assert_true (mpg_lock_get_recursive (lock));
  kit_init_mem (&kit);

  for (guint i = 0; i < G_N_ELEMENTS (children); i++)
    children[i] = start_kit_child (child_wait_condition, &kit, 0);

  /* Once all three wait (they count themselves under the lock, and wait
   * releases it), notify them all. */
  deadline = g_get_monotonic_time () + WAIT_MS * 1000;
  for (;;)
    {
      g_assert_true (mpg_lock_acquire (lock, WAIT_MS, NULL, NULL, &error));
      g_assert_no_error (error);
      if (kit.mem[1] == 3)
        break;
      g_assert_true (mpg_lock_release (lock, &error));
      g_assert_cmpint (g_get_monotonic_time (), <, deadline);
      g_usleep (1000);
    }
  kit.mem[0] = 1;
  g_assert_true (mpg_condition_notify_all (kit.cond, &error));
  g_assert_no_error (error);
  g_assert_true (mpg_lock_release (lock, &error));
  g_assert_no_error (error);

  for (guint i = 0; i < G_N_ELEMENTS (children); i++)
    {
      join_ok (children[i]);
      g_object_unref (children[i]);
    }
  g_assert_cmpint (kit.mem[2], ==, 3);
}

static gboolean
count_action (gpointer   user_data,
              GError   **error)
{
  gint32 *mem = user_data;

  g_atomic_int_inc (&mem[1]);
  return TRUE;
}

/* Three rounds at a barrier of 4: mem[10 + 4 * round + index] counts the
 * indices; each process's action counts into mem[1]. */
GVariant *
child_barrier_rounds (GVariant  *arg,
                      gpointer   user_data,
                      GError   **error)
{
  g_auto(Kit) kit;

  if (!kit_from_arg (arg, user_data, &kit, error))
    return NULL;

  mpg_barrier_set_action (kit.barrier, count_action, kit.mem, NULL);
  for (guint round = 0; round < 3; round++)
    {
      gint index = mpg_barrier_wait (kit.barrier, WAIT_MS, NULL, error);

      if (index < 0)
        return NULL;
      g_atomic_int_inc (&kit.mem[10 + 4 * round + index]);
    }
  return NULL;
}

static void
test_barrier_rounds (void)
{
  g_autoptr(GError) error = NULL;
  g_auto(Kit) kit = { .mem_fd = -1 };
  MpgProcess *children[4];

  kit.barrier = mpg_barrier_new (4, -1, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (mpg_barrier_get_parties (kit.barrier), ==, 4);
  kit_init_mem (&kit);

  for (guint i = 0; i < G_N_ELEMENTS (children); i++)
    children[i] = start_kit_child (child_barrier_rounds, &kit, 0);
  for (guint i = 0; i < G_N_ELEMENTS (children); i++)
    {
      join_ok (children[i]);
      g_object_unref (children[i]);
    }

  /* Each index once per round, the action once per round. */
  for (guint i = 0; i < 12; i++)
    g_assert_cmpint (kit.mem[10 + i], ==, 1);
  g_assert_cmpint (kit.mem[1], ==, 3);
  g_assert_false (mpg_barrier_get_broken (kit.barrier));
  g_assert_cmpuint (mpg_barrier_get_n_waiting (kit.barrier), ==, 0);
}

/* param: the timeout of the wait. Exits 0 if the barrier broke. */
GVariant *
child_barrier_broken (GVariant  *arg,
                      gpointer   user_data,
                      GError   **error)
{
  g_auto(Kit) kit;
  g_autoptr(GError) local_error = NULL;

  if (!kit_from_arg (arg, user_data, &kit, error))
    return NULL;

  if (mpg_barrier_wait (kit.barrier, kit.param, NULL, &local_error) >= 0)
    {
      g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_FAILED, "The barrier did not break");
      return NULL;
    }
  if (!g_error_matches (local_error, MPG_ERROR, MPG_ERROR_BROKEN_BARRIER))
    {
      g_propagate_error (error, g_steal_pointer (&local_error));
      return NULL;
    }
  return NULL;
}

static void
test_barrier_timeout_abort (void)
{
  g_autoptr(GError) error = NULL;
  g_auto(Kit) kit = { .mem_fd = -1 };
  g_autoptr(MpgProcess) p = NULL;
  g_autoptr(MpgProcess) q = NULL;
  gint64 deadline;

  kit.barrier = mpg_barrier_new (2, -1, &error);
  g_assert_no_error (error);

  /* Alone at a barrier of 2 with a timeout: it breaks. */
  p = start_kit_child (child_barrier_broken, &kit, 100);
  join_ok (p);
  g_assert_true (mpg_barrier_get_broken (kit.barrier));
  g_assert_cmpint (mpg_barrier_wait (kit.barrier, 0, NULL, &error), ==, -1);
  g_assert_error (error, MPG_ERROR, MPG_ERROR_BROKEN_BARRIER);
  g_clear_error (&error);

  mpg_barrier_reset (kit.barrier);
  g_assert_false (mpg_barrier_get_broken (kit.barrier));

  /* A waiter in another process fails when the barrier is aborted. */
  q = start_kit_child (child_barrier_broken, &kit, WAIT_MS);
  deadline = g_get_monotonic_time () + WAIT_MS * 1000;
  while (mpg_barrier_get_n_waiting (kit.barrier) < 1)
    {
      g_assert_cmpint (g_get_monotonic_time (), <, deadline);
      g_usleep (1000);
    }
  mpg_barrier_abort (kit.barrier);
  join_ok (q);
  g_assert_true (mpg_barrier_get_broken (kit.barrier));
}

/* Holds the lock for param ms, having said so with the event. */
GVariant *
child_hold_briefly (GVariant  *arg,
                    gpointer   user_data,
                    GError   **error)
{
  g_auto(Kit) kit;

  if (!kit_from_arg (arg, user_data, &kit, error))
    return NULL;

  if (!mpg_lock_acquire (kit.lock, WAIT_MS, NULL, NULL, error))
    return NULL;
  mpg_event_set (kit.event);
  g_usleep (kit.param * G_TIME_SPAN_MILLISECOND);
  if (!mpg_lock_release (kit.lock, error))
    return NULL;
  return NULL;
}

GVariant *
child_set_event_later (GVariant  *arg,
                       gpointer   user_data,
                       GError   **error)
{
  g_auto(Kit) kit;

  if (!kit_from_arg (arg, user_data, &kit, error))
    return NULL;

  g_usleep (kit.param * G_TIME_SPAN_MILLISECOND);
  mpg_event_set (kit.event);
  return NULL;
}

typedef struct
{
  GMainLoop *loop;
  guint      ticks;
  gboolean   done;
  gboolean   ok;
  GError    *error;
} AsyncState;

static gboolean
tick (gpointer user_data)
{
  AsyncState *state = user_data;

  state->ticks++;
  return G_SOURCE_CONTINUE;
}

static gboolean
guard_expired (gpointer user_data)
{
  AsyncState *state = user_data;

  g_main_loop_quit (state->loop);
  return G_SOURCE_REMOVE;
}

static void
lock_acquired_cb (GObject      *source,
                  GAsyncResult *result,
                  gpointer      user_data)
{
  AsyncState *state = user_data;

  state->ok = mpg_lock_acquire_finish (MPG_LOCK (source), result, NULL, &state->error);
  state->done = TRUE;
  g_main_loop_quit (state->loop);
}

static void
event_waited_cb (GObject      *source,
                 GAsyncResult *result,
                 gpointer      user_data)
{
  AsyncState *state = user_data;

  state->ok = mpg_event_wait_finish (MPG_EVENT (source), result, &state->error);
  state->done = TRUE;
  g_main_loop_quit (state->loop);
}

static void
run_loop (AsyncState *state)
{
  guint ticker = g_timeout_add (10, tick, state);
  guint guard = g_timeout_add (WAIT_MS, guard_expired, state);

  g_main_loop_run (state->loop);
  g_source_remove (ticker);
  g_source_remove (guard);
  g_assert_true (state->done);
}

/* A main loop keeps running while it waits for a lock held in another
 * process, and for an event set there. */
static void
test_async_in_main_loop (void)
{
  g_autoptr(GError) error = NULL;
  g_auto(Kit) kit = { .mem_fd = -1 };
  g_autoptr(MpgProcess) holder = NULL;
  g_autoptr(MpgProcess) setter = NULL;
  AsyncState state = { 0 };

  kit.lock = mpg_lock_new (&error);
  g_assert_no_error (error);
  kit.event = mpg_event_new (&error);
  g_assert_no_error (error);
  state.loop = g_main_loop_new (NULL, FALSE);

  holder = start_kit_child (child_hold_briefly, &kit, 300);
  g_assert_true (mpg_event_wait (kit.event, WAIT_MS, NULL, &error));
  g_assert_no_error (error);
  mpg_event_clear (kit.event);

  mpg_lock_acquire_async (kit.lock, NULL, lock_acquired_cb, &state);
  run_loop (&state);
  g_assert_no_error (state.error);
  g_assert_true (state.ok);
  g_assert_true (mpg_lock_is_mine (kit.lock));
  /* 300 ms at a 10 ms tick: the loop ran all along. */
  g_assert_cmpuint (state.ticks, >=, 3);
  g_assert_true (mpg_lock_release (kit.lock, &error));
  g_assert_no_error (error);
  join_ok (holder);

  memset (&state.ticks, 0, sizeof state - G_STRUCT_OFFSET (AsyncState, ticks));
  setter = start_kit_child (child_set_event_later, &kit, 200);
  mpg_event_wait_async (kit.event, NULL, event_waited_cb, &state);
  run_loop (&state);
  g_assert_no_error (state.error);
  g_assert_true (state.ok);
  g_assert_cmpuint (state.ticks, >=, 3);
  join_ok (setter);

  g_main_loop_unref (state.loop);
  unref_and_wait (g_steal_pointer (&kit.lock));
  unref_and_wait (g_steal_pointer (&kit.event));
}

typedef struct
{
  const char *name;
  void (*func) (void);
  gboolean all_methods;
} TestCase;

static const TestCase tests[] = {
  { "lock/counter", test_counter_lock, TRUE },
  { "rlock/counter", test_counter_rlock, TRUE },
  { "lock/lost-update-without", test_lost_update, TRUE },
  { "holder-killed", test_holder_killed, TRUE },
  { "semaphore/bound", test_semaphore_bound, TRUE },
  { "event/wakes", test_event_wakes, TRUE },
  { "condition/wakes", test_condition_wakes, TRUE },
  { "barrier/rounds", test_barrier_rounds, TRUE },
  { "barrier/timeout-abort", test_barrier_timeout_abort, TRUE },
  { "async/main-loop", test_async_in_main_loop, FALSE },
};

/* Every test leaves no fd open and nothing in /dev/shm. */
static void
run_checked (gconstpointer data)
{
  const TestCase *tc = data;
  guint fds = count_fds ();
  guint shm = count_dev_shm ();

  tc->func ();

  g_assert_cmpuint (count_fds (), ==, fds);
  g_assert_cmpuint (count_dev_shm (), ==, shm);
}

int
main (int   argc,
      char *argv[])
{
  const char *env;
  const char *method_name;

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

  /* What lives as long as the process, made before the fds are counted:
   * the default main context's wake-up fd, the forkserver's connection,
   * GLib's own. */
  {
    g_auto(Kit) kit = { .mem_fd = -1 };
    g_autoptr(MpgProcess) p = NULL;

    MpgEvent *event = mpg_event_new (NULL);
    AsyncState state = { 0 };

    p = start_kit_child (child_nothing, &kit, 0);
    join_ok (p);

    /* And GLib's own, made on the first wait in a thread. */
    mpg_event_set (event);
    state.loop = g_main_loop_new (NULL, FALSE);
    mpg_event_wait_async (event, NULL, event_waited_cb, &state);
    run_loop (&state);
    g_main_loop_unref (state.loop);

    unref_and_wait (event);
  }

  for (guint i = 0; i < G_N_ELEMENTS (tests); i++)
    {
      g_autofree char *path = NULL;

      if (method != MPG_START_METHOD_FORK && !tests[i].all_methods)
        continue;
      path = g_strdup_printf ("/Mpg/Sync/%s%s%s", method_name, "/", tests[i].name);
      g_test_add_data_func (path, &tests[i], run_checked);
    }

  return g_test_run ();
}
