/* test-sync-local.c: Lock, RLock, Semaphore, Event, Condition and Barrier
 * within one process
 *
 * Copyright 2026 The libmpg authors
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

/*
 * Everything one process can check about the synchronization primitives:
 * their semantics, with threads standing in for processes, their async
 * calls in a main loop, and their handles, round trips and hostile ones.
 * What needs several processes (holders killed, every start method) is in
 * test-sync.c.
 *
 * Every test runs in a fixture that checks, at its end, that the objects
 * it created were finalized, that no file descriptor was left open and
 * that nothing appeared in /dev/shm.
 */

#include "config.h"

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <glib-unix.h>
#include <libmpg.h>

#include "mpg-sync-private.h"

/* Bounds every wait of these tests: a hang is a failure, not a time-out of
 * the whole run. */
#define WAIT_MS 10000
#define WAIT_US (WAIT_MS * G_TIME_SPAN_MILLISECOND)

/* How soon a call that must not wait returns, and how soon a waiter wakes
 * once woken, with room for a loaded machine and valgrind. The sleeps of
 * the primitives are cut into slices of 20 ms to 1 s: a wake-up that took
 * a slice would take up to a second. */
#define PROMPT_MS 400

static gboolean under_valgrind;

/* Helpers */

static guint
count_fds (void)
{
  DIR *dir = opendir ("/proc/self/fd");
  struct dirent *ent;
  guint n = 0;

  g_assert_nonnull (dir);
  while ((ent = readdir (dir)) != NULL)
    if (ent->d_name[0] != '.')
      n++;
  closedir (dir);
  /* Not the one opendir() used. */
  return n - 1;
}

static gint
compare_names (gconstpointer a,
               gconstpointer b)
{
  return g_strcmp0 (*(char * const *) a, *(char * const *) b);
}

/* The names in /dev/shm, sorted, joined by newlines ("" if there is no
 * /dev/shm). */
static char *
list_dev_shm (void)
{
  g_autoptr(GDir) dir = g_dir_open ("/dev/shm", 0, NULL);
  g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func (g_free);
  const char *name;

  while (dir != NULL && (name = g_dir_read_name (dir)) != NULL)
    g_ptr_array_add (names, g_strdup (name));
  g_ptr_array_sort (names, compare_names);
  g_ptr_array_add (names, NULL);

  return g_strjoinv ("\n", (char **) names->pdata);
}

typedef struct
{
  guint      n_fds;
  char      *dev_shm;
  GPtrArray *refs;   /* GWeakRef *: the objects the test created */
} Fixture;

static void
fixture_setup (Fixture       *f,
               gconstpointer  data)
{
  f->refs = g_ptr_array_new ();
  f->dev_shm = list_dev_shm ();
  f->n_fds = count_fds ();
}

/* Waits until every tracked object is finalized: an async call's thread
 * may drop its reference just after the callback ran. */
static void
fixture_teardown (Fixture       *f,
                  gconstpointer  data)
{
  g_autofree char *dev_shm = NULL;

  for (guint i = 0; i < f->refs->len; i++)
    {
      GWeakRef *ref = f->refs->pdata[i];
      gint64 deadline = g_get_monotonic_time () + WAIT_US;
      GObject *object;

      while ((object = g_weak_ref_get (ref)) != NULL)
        {
          g_object_unref (object);
          g_assert_cmpint (g_get_monotonic_time (), <, deadline);
          g_main_context_iteration (NULL, FALSE);
          g_usleep (1000);
        }
      g_weak_ref_clear (ref);
      g_free (ref);
    }
  g_ptr_array_unref (f->refs);

  g_assert_cmpuint (count_fds (), ==, f->n_fds);

  dev_shm = list_dev_shm ();
  g_assert_cmpstr (dev_shm, ==, f->dev_shm);
  g_free (f->dev_shm);
}

/* Checks at teardown that @object was finalized. */
static gpointer
track (Fixture  *f,
       gpointer  object)
{
  GWeakRef *ref = g_new0 (GWeakRef, 1);

  g_assert_true (G_IS_OBJECT (object));
  g_weak_ref_init (ref, object);
  g_ptr_array_add (f->refs, ref);
  return object;
}

static gint64
ms_since (gint64 start)
{
  return (g_get_monotonic_time () - start) / G_TIME_SPAN_MILLISECOND;
}

/* Polls @expr until it holds; a failure after WAIT_MS. */
#define WAIT_UNTIL(expr)                                                    \
  G_STMT_START {                                                            \
    gint64 wait_until_deadline_ = g_get_monotonic_time () + WAIT_US;        \
    while (!(expr))                                                         \
      {                                                                     \
        g_assert_cmpint (g_get_monotonic_time (), <, wait_until_deadline_); \
        g_usleep (1000);                                                    \
      }                                                                     \
  } G_STMT_END

static gint
current_tid (void)
{
  return (gint) syscall (SYS_gettid);
}

/* Whether the thread @tid is in a futex wait now, as a waiting primitive
 * is. */
static gboolean
thread_in_futex (gint tid)
{
  g_autofree char *path = g_strdup_printf ("/proc/self/task/%d/syscall", tid);
  g_autofree char *contents = NULL;

  if (!g_file_get_contents (path, &contents, NULL, NULL) || !g_ascii_isdigit (contents[0]))
    return FALSE;
  return g_ascii_strtoll (contents, NULL, 10) == SYS_futex;
}

/* Waits until the thread whose id *@tid will hold sleeps in a futex wait,
 * twice 20 ms apart: a thread that only passes through a mutex on its way
 * is not taken for a sleeper. The thread stores its id just before it
 * calls the waiting function. */
static void
wait_until_sleeping (const gint *tid)
{
  gint64 deadline = g_get_monotonic_time () + WAIT_US;

  for (;;)
    {
      gint t = g_atomic_int_get (tid);

      if (t != 0 && thread_in_futex (t))
        {
          g_usleep (20 * 1000);
          if (thread_in_futex (t))
            return;
        }
      g_assert_cmpint (g_get_monotonic_time (), <, deadline);
      g_usleep (1000);
    }
}

static MpgLock *
new_lock (gboolean recursive)
{
  g_autoptr(GError) error = NULL;
  MpgLock *lock;

  if (recursive)
    lock = MPG_LOCK (mpg_rlock_new (&error));
  else
    lock = mpg_lock_new (&error);
  g_assert_no_error (error);
  g_assert_nonnull (lock);
  return lock;
}

static void
acquire_ok (MpgLock *lock)
{
  g_autoptr(GError) error = NULL;
  gboolean died = TRUE;

  g_assert_true (mpg_lock_acquire (lock, WAIT_MS, &died, NULL, &error));
  g_assert_no_error (error);
  g_assert_false (died);
}

static void
release_ok (MpgLock *lock)
{
  g_autoptr(GError) error = NULL;

  g_assert_true (mpg_lock_release (lock, &error));
  g_assert_no_error (error);
}

/* A blocking call made by a thread of its own, and what it returned. */
typedef struct
{
  gpointer      object;
  gint          timeout_msec;
  GCancellable *cancellable;
  gint          tid;          /* set just before the call */
  gint          done;         /* atomic: the call returned */
  gboolean      ok;
  gint          index;        /* Barrier */
  GError       *error;
  gboolean      mine;         /* Lock: is_mine just after the call */
  guint         count;        /* Lock: get_count just after the call */
  gint64        returned_at;
  GThread      *thread;
} Call;

static void
call_start (Call         *call,
            const char   *name,
            GThreadFunc   func,
            gpointer      object,
            gint          timeout_msec,
            GCancellable *cancellable)
{
  memset (call, 0, sizeof *call);
  call->object = object;
  call->timeout_msec = timeout_msec;
  call->cancellable = cancellable;
  call->thread = g_thread_new (name, func, call);
}

static void
call_join (Call *call)
{
  g_thread_join (call->thread);
  call->thread = NULL;
}

static void
call_clear (Call *call)
{
  g_clear_error (&call->error);
}

static void
call_returned (Call *call)
{
  call->returned_at = g_get_monotonic_time ();
  g_atomic_int_set (&call->done, 1);
}

static gpointer
lock_acquire_thread (gpointer data)
{
  Call *call = data;

  g_atomic_int_set (&call->tid, current_tid ());
  call->ok = mpg_lock_acquire (call->object, call->timeout_msec, NULL, call->cancellable,
                               &call->error);
  call->mine = mpg_lock_is_mine (call->object);
  call->count = mpg_lock_get_count (call->object);
  call_returned (call);
  return NULL;
}

/* Acquires, then releases at once if it got the lock. */
static gpointer
lock_acquire_release_thread (gpointer data)
{
  Call *call = data;

  lock_acquire_thread (data);
  if (call->ok)
    release_ok (call->object);
  return NULL;
}

static gpointer
lock_release_thread (gpointer data)
{
  Call *call = data;

  call->ok = mpg_lock_release (call->object, &call->error);
  call->mine = mpg_lock_is_mine (call->object);
  call->count = mpg_lock_get_count (call->object);
  call_returned (call);
  return NULL;
}

static gpointer
lock_look_thread (gpointer data)
{
  Call *call = data;

  call->mine = mpg_lock_is_mine (call->object);
  call->count = mpg_lock_get_count (call->object);
  call_returned (call);
  return NULL;
}

/* Runs @func in a thread and waits for it. */
static void
call_in_thread (Call         *call,
                GThreadFunc   func,
                gpointer      object,
                gint          timeout_msec,
                GCancellable *cancellable)
{
  call_start (call, "call", func, object, timeout_msec, cancellable);
  call_join (call);
}

/* A thread that holds a lock until told to release it. */
typedef struct
{
  MpgLock *lock;
  gint     held;      /* atomic */
  gint     release;   /* atomic */
  gint64   released_at;
  GThread *thread;
} Holder;

static gpointer
holder_thread (gpointer data)
{
  Holder *h = data;

  acquire_ok (h->lock);
  g_atomic_int_set (&h->held, 1);
  WAIT_UNTIL (g_atomic_int_get (&h->release));
  h->released_at = g_get_monotonic_time ();
  release_ok (h->lock);
  return NULL;
}

static void
holder_start (Holder  *h,
              MpgLock *lock)
{
  memset (h, 0, sizeof *h);
  h->lock = lock;
  h->thread = g_thread_new ("holder", holder_thread, h);
  WAIT_UNTIL (g_atomic_int_get (&h->held));
}

static void
holder_release (Holder *h)
{
  g_atomic_int_set (&h->release, 1);
}

static void
holder_join (Holder *h)
{
  holder_release (h);
  g_thread_join (h->thread);
  h->thread = NULL;
}

/* Lock */

static void
test_lock_basic (Fixture       *f,
                 gconstpointer  data)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(MpgLock) lock = track (f, new_lock (FALSE));
  gboolean recursive = TRUE;

  g_test_summary ("A Lock: acquire and release, is_mine, get_count, and a release of "
                  "an unlocked lock fails with INVALID_STATE");

  g_assert_false (MPG_IS_RLOCK (lock));
  g_assert_false (mpg_lock_get_recursive (lock));
  g_object_get (lock, "recursive", &recursive, NULL);
  g_assert_false (recursive);

  g_assert_cmpuint (mpg_lock_get_count (lock), ==, 0);
  g_assert_false (mpg_lock_is_mine (lock));

  acquire_ok (lock);
  g_assert_cmpuint (mpg_lock_get_count (lock), ==, 1);
  g_assert_true (mpg_lock_is_mine (lock));

  release_ok (lock);
  g_assert_cmpuint (mpg_lock_get_count (lock), ==, 0);
  g_assert_false (mpg_lock_is_mine (lock));

  g_assert_false (mpg_lock_release (lock, &error));
  g_assert_error (error, MPG_ERROR, MPG_ERROR_INVALID_STATE);
  g_clear_error (&error);
  g_assert_cmpuint (mpg_lock_get_count (lock), ==, 0);

  /* A free lock is taken without waiting. */
  g_assert_true (mpg_lock_acquire (lock, 0, NULL, NULL, &error));
  g_assert_no_error (error);
  release_ok (lock);
}

static void
test_lock_timeout_zero (Fixture       *f,
                        gconstpointer  data)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(MpgLock) lock = track (f, new_lock (FALSE));
  gboolean died = TRUE;
  gint64 start;
  Call call;

  g_test_summary ("A timeout of 0 on a held lock fails at once with TIMEOUT, in the "
                  "holding thread (a Lock does not recurse) and in another");

  acquire_ok (lock);

  start = g_get_monotonic_time ();
  g_assert_false (mpg_lock_acquire (lock, 0, &died, NULL, &error));
  g_assert_error (error, MPG_ERROR, MPG_ERROR_TIMEOUT);
  g_assert_false (died);
  g_assert_cmpint (ms_since (start), <, PROMPT_MS);
  g_clear_error (&error);

  start = g_get_monotonic_time ();
  call_in_thread (&call, lock_acquire_thread, lock, 0, NULL);
  g_assert_false (call.ok);
  g_assert_error (call.error, MPG_ERROR, MPG_ERROR_TIMEOUT);
  g_assert_false (call.mine);
  g_assert_cmpuint (call.count, ==, 1);
  g_assert_cmpint (ms_since (start), <, PROMPT_MS);
  call_clear (&call);

  g_assert_true (mpg_lock_is_mine (lock));
  release_ok (lock);
}

static void
test_lock_timeout (Fixture       *f,
                   gconstpointer  data)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(MpgLock) lock = track (f, new_lock (FALSE));
  g_autoptr(MpgLock) rlock = track (f, new_lock (TRUE));
  gint64 start, elapsed;
  Call call;

  g_test_summary ("A timeout of 100 ms on a held lock waits at least 100 ms, then fails "
                  "with TIMEOUT; for a Lock and an RLock held by another thread");

  acquire_ok (lock);
  start = g_get_monotonic_time ();
  g_assert_false (mpg_lock_acquire (lock, 100, NULL, NULL, &error));
  elapsed = ms_since (start);
  g_assert_error (error, MPG_ERROR, MPG_ERROR_TIMEOUT);
  g_assert_cmpint (elapsed, >=, 100);
  g_assert_cmpint (elapsed, <, 100 + 2 * PROMPT_MS);
  g_clear_error (&error);

  start = g_get_monotonic_time ();
  call_in_thread (&call, lock_acquire_thread, lock, 100, NULL);
  elapsed = (call.returned_at - start) / G_TIME_SPAN_MILLISECOND;
  g_assert_false (call.ok);
  g_assert_error (call.error, MPG_ERROR, MPG_ERROR_TIMEOUT);
  g_assert_cmpint (elapsed, >=, 100);
  g_assert_cmpint (elapsed, <, 100 + 2 * PROMPT_MS);
  call_clear (&call);
  release_ok (lock);

  acquire_ok (rlock);
  start = g_get_monotonic_time ();
  call_in_thread (&call, lock_acquire_thread, rlock, 100, NULL);
  elapsed = (call.returned_at - start) / G_TIME_SPAN_MILLISECOND;
  g_assert_false (call.ok);
  g_assert_error (call.error, MPG_ERROR, MPG_ERROR_TIMEOUT);
  g_assert_cmpint (elapsed, >=, 100);
  call_clear (&call);
  g_assert_cmpuint (mpg_lock_get_count (rlock), ==, 1);
  release_ok (rlock);
}

static void
test_lock_release_other_thread (Fixture       *f,
                                gconstpointer  data)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(MpgLock) lock = track (f, new_lock (FALSE));
  Call call;

  g_test_summary ("Any thread may release a Lock, as in Python: one that another "
                  "thread acquired");

  acquire_ok (lock);
  call_in_thread (&call, lock_release_thread, lock, 0, NULL);
  g_assert_no_error (call.error);
  g_assert_true (call.ok);
  g_assert_cmpuint (call.count, ==, 0);
  call_clear (&call);
  g_assert_false (mpg_lock_is_mine (lock));
  g_assert_cmpuint (mpg_lock_get_count (lock), ==, 0);

  /* The other way: a thread acquires and ends holding it. */
  call_in_thread (&call, lock_acquire_thread, lock, WAIT_MS, NULL);
  g_assert_no_error (call.error);
  g_assert_true (call.ok);
  g_assert_true (call.mine);
  call_clear (&call);
  g_assert_false (mpg_lock_is_mine (lock));
  g_assert_cmpuint (mpg_lock_get_count (lock), ==, 1);
  release_ok (lock);
  g_assert_cmpuint (mpg_lock_get_count (lock), ==, 0);

  g_assert_false (mpg_lock_release (lock, &error));
  g_assert_error (error, MPG_ERROR, MPG_ERROR_INVALID_STATE);
}

static void
test_lock_is_mine (Fixture       *f,
                   gconstpointer  data)
{
  g_autoptr(MpgLock) lock = track (f, new_lock (FALSE));
  Call call;

  g_test_summary ("is_mine() is TRUE only in the thread that acquired the lock; "
                  "get_count() is the same in every thread");

  call_in_thread (&call, lock_look_thread, lock, 0, NULL);
  g_assert_false (call.mine);
  g_assert_cmpuint (call.count, ==, 0);

  acquire_ok (lock);
  g_assert_true (mpg_lock_is_mine (lock));
  call_in_thread (&call, lock_look_thread, lock, 0, NULL);
  g_assert_false (call.mine);
  g_assert_cmpuint (call.count, ==, 1);
  release_ok (lock);

  call_in_thread (&call, lock_acquire_thread, lock, WAIT_MS, NULL);
  g_assert_no_error (call.error);
  g_assert_true (call.mine);
  g_assert_false (mpg_lock_is_mine (lock));
  g_assert_cmpuint (mpg_lock_get_count (lock), ==, 1);
  release_ok (lock);
}

static void
test_lock_blocks (Fixture       *f,
                  gconstpointer  data)
{
  g_autoptr(MpgLock) lock = track (f, new_lock (FALSE));
  gint64 released_at;
  Call call;

  g_test_summary ("A lock held by one thread blocks another until it is released; "
                  "the waiter then gets it at once");

  acquire_ok (lock);
  call_start (&call, "waiter", lock_acquire_release_thread, lock, WAIT_MS, NULL);
  wait_until_sleeping (&call.tid);
  g_usleep (100 * 1000);
  g_assert_false (g_atomic_int_get (&call.done));

  released_at = g_get_monotonic_time ();
  release_ok (lock);
  call_join (&call);
  g_assert_no_error (call.error);
  g_assert_true (call.ok);
  g_assert_true (call.mine);
  g_assert_cmpuint (call.count, ==, 1);
  g_assert_cmpint (call.returned_at, >=, released_at);
  g_assert_cmpint ((call.returned_at - released_at) / G_TIME_SPAN_MILLISECOND, <, PROMPT_MS);
  g_assert_cmpuint (mpg_lock_get_count (lock), ==, 0);
}

static void
test_lock_cancel (Fixture       *f,
                  gconstpointer  data)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(MpgLock) lock = track (f, new_lock (FALSE));
  g_autoptr(GCancellable) cancellable = g_cancellable_new ();
  g_autoptr(GCancellable) cancelled = g_cancellable_new ();
  gint64 cancelled_at, start;
  Call call;

  g_test_summary ("Cancelling a blocked acquire from another thread fails it with "
                  "CANCELLED at once, not at the end of a sleep slice; the lock stays "
                  "with its holder");

  acquire_ok (lock);
  call_start (&call, "waiter", lock_acquire_thread, lock, WAIT_MS, cancellable);
  wait_until_sleeping (&call.tid);
  /* After 1.3 s of waiting the waiter sleeps a second at a time. */
  g_usleep (1500 * 1000);
  g_assert_false (g_atomic_int_get (&call.done));

  cancelled_at = g_get_monotonic_time ();
  g_cancellable_cancel (cancellable);
  call_join (&call);
  g_assert_false (call.ok);
  g_assert_error (call.error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_assert_false (call.mine);
  g_assert_cmpint ((call.returned_at - cancelled_at) / G_TIME_SPAN_MILLISECOND, <, PROMPT_MS);
  call_clear (&call);

  g_assert_true (mpg_lock_is_mine (lock));
  g_assert_cmpuint (mpg_lock_get_count (lock), ==, 1);

  /* Cancelled before the call: it fails without waiting. */
  g_cancellable_cancel (cancelled);
  start = g_get_monotonic_time ();
  g_assert_false (mpg_lock_acquire (lock, WAIT_MS, NULL, cancelled, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_assert_cmpint (ms_since (start), <, PROMPT_MS);

  release_ok (lock);
}

/* RLock */

static void
test_rlock_recursion (Fixture       *f,
                      gconstpointer  data)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(MpgLock) lock = track (f, new_lock (TRUE));
  gboolean recursive = FALSE;

  g_test_summary ("An RLock is acquired again by its holder (count 3, even with a "
                  "timeout of 0) and released as many times");

  g_assert_true (MPG_IS_RLOCK (lock));
  g_assert_true (mpg_lock_get_recursive (lock));
  g_object_get (lock, "recursive", &recursive, NULL);
  g_assert_true (recursive);

  acquire_ok (lock);
  acquire_ok (lock);
  g_assert_true (mpg_lock_acquire (lock, 0, NULL, NULL, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (mpg_lock_get_count (lock), ==, 3);
  g_assert_true (mpg_lock_is_mine (lock));

  for (guint left = 2; left != G_MAXUINT; left--)
    {
      release_ok (lock);
      g_assert_cmpuint (mpg_lock_get_count (lock), ==, left);
      g_assert_true (mpg_lock_is_mine (lock) == (left > 0));
    }

  g_assert_false (mpg_lock_release (lock, &error));
  g_assert_error (error, MPG_ERROR, MPG_ERROR_INVALID_STATE);
}

static void
test_rlock_not_owner (Fixture       *f,
                      gconstpointer  data)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(MpgLock) lock = track (f, new_lock (TRUE));
  g_autoptr(MpgLock) orphan = track (f, new_lock (TRUE));
  Call call;

  g_test_summary ("Only the holder of an RLock releases it: another thread fails with "
                  "INVALID_STATE and cannot take it; a thread that ends holding it "
                  "keeps it held");

  acquire_ok (lock);
  acquire_ok (lock);

  call_in_thread (&call, lock_release_thread, lock, 0, NULL);
  g_assert_false (call.ok);
  g_assert_error (call.error, MPG_ERROR, MPG_ERROR_INVALID_STATE);
  g_assert_false (call.mine);
  g_assert_cmpuint (call.count, ==, 2);
  call_clear (&call);

  call_in_thread (&call, lock_acquire_thread, lock, 0, NULL);
  g_assert_false (call.ok);
  g_assert_error (call.error, MPG_ERROR, MPG_ERROR_TIMEOUT);
  call_clear (&call);

  g_assert_true (mpg_lock_is_mine (lock));
  g_assert_cmpuint (mpg_lock_get_count (lock), ==, 2);
  release_ok (lock);
  release_ok (lock);

  /* A thread that ends holding an RLock is not a dead process: it stays
   * held, and nobody else may release it. */
  call_in_thread (&call, lock_acquire_thread, orphan, WAIT_MS, NULL);
  g_assert_no_error (call.error);
  g_assert_true (call.mine);
  g_assert_false (mpg_lock_is_mine (orphan));
  g_assert_false (mpg_lock_release (orphan, &error));
  g_assert_error (error, MPG_ERROR, MPG_ERROR_INVALID_STATE);
  g_clear_error (&error);
  g_assert_false (mpg_lock_acquire (orphan, 0, NULL, NULL, &error));
  g_assert_error (error, MPG_ERROR, MPG_ERROR_TIMEOUT);
  g_assert_cmpuint (mpg_lock_get_count (orphan), ==, 1);
}

static void
test_rlock_blocks (Fixture       *f,
                   gconstpointer  data)
{
  g_autoptr(MpgLock) lock = track (f, new_lock (TRUE));
  Call call;

  g_test_summary ("An RLock held twice blocks another thread until it is released "
                  "twice");

  acquire_ok (lock);
  acquire_ok (lock);
  call_start (&call, "waiter", lock_acquire_release_thread, lock, WAIT_MS, NULL);
  wait_until_sleeping (&call.tid);

  release_ok (lock);
  g_usleep (100 * 1000);
  g_assert_false (g_atomic_int_get (&call.done));
  g_assert_cmpuint (mpg_lock_get_count (lock), ==, 1);

  release_ok (lock);
  call_join (&call);
  g_assert_no_error (call.error);
  g_assert_true (call.ok);
  g_assert_true (call.mine);
  g_assert_cmpuint (call.count, ==, 1);
  g_assert_cmpuint (mpg_lock_get_count (lock), ==, 0);
}

/* Semaphore */

static MpgSemaphore *
new_semaphore (guint    value,
               gboolean bounded)
{
  g_autoptr(GError) error = NULL;
  MpgSemaphore *sem;

  if (bounded)
    sem = mpg_semaphore_new_bounded (value, &error);
  else
    sem = mpg_semaphore_new (value, &error);
  g_assert_no_error (error);
  g_assert_nonnull (sem);
  return sem;
}

static void
sem_acquire_ok (MpgSemaphore *sem)
{
  g_autoptr(GError) error = NULL;

  g_assert_true (mpg_semaphore_acquire (sem, WAIT_MS, NULL, &error));
  g_assert_no_error (error);
}

static void
sem_release_ok (MpgSemaphore *sem)
{
  g_autoptr(GError) error = NULL;

  g_assert_true (mpg_semaphore_release (sem, &error));
  g_assert_no_error (error);
}

static void
test_semaphore_values (Fixture       *f,
                       gconstpointer  data)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(MpgSemaphore) sem = track (f, new_semaphore (2, FALSE));
  g_autoptr(MpgSemaphore) empty = track (f, new_semaphore (0, FALSE));
  gboolean bounded = TRUE;
  gint64 start, elapsed;
  guint value = 0;

  g_test_summary ("A Semaphore counts units: acquire takes one, waits (with a timeout) "
                  "when there is none; an unbounded one may be released above its "
                  "initial value");

  g_assert_cmpuint (mpg_semaphore_get_value (sem), ==, 2);
  g_assert_false (mpg_semaphore_get_bounded (sem));
  g_assert_cmpuint (mpg_semaphore_get_max_value (sem), ==, 0);
  g_object_get (sem, "value", &value, "bounded", &bounded, NULL);
  g_assert_cmpuint (value, ==, 2);
  g_assert_false (bounded);

  g_assert_true (mpg_semaphore_acquire (sem, 0, NULL, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (mpg_semaphore_get_value (sem), ==, 1);
  sem_acquire_ok (sem);
  g_assert_cmpuint (mpg_semaphore_get_value (sem), ==, 0);

  start = g_get_monotonic_time ();
  g_assert_false (mpg_semaphore_acquire (sem, 0, NULL, &error));
  g_assert_error (error, MPG_ERROR, MPG_ERROR_TIMEOUT);
  g_assert_cmpint (ms_since (start), <, PROMPT_MS);
  g_clear_error (&error);

  start = g_get_monotonic_time ();
  g_assert_false (mpg_semaphore_acquire (sem, 100, NULL, &error));
  elapsed = ms_since (start);
  g_assert_error (error, MPG_ERROR, MPG_ERROR_TIMEOUT);
  g_assert_cmpint (elapsed, >=, 100);
  g_assert_cmpint (elapsed, <, 100 + 2 * PROMPT_MS);
  g_clear_error (&error);
  g_assert_cmpuint (mpg_semaphore_get_value (sem), ==, 0);

  sem_release_ok (sem);
  sem_release_ok (sem);
  sem_release_ok (sem);
  g_assert_cmpuint (mpg_semaphore_get_value (sem), ==, 3);
  g_object_get (sem, "value", &value, NULL);
  g_assert_cmpuint (value, ==, 3);

  g_assert_cmpuint (mpg_semaphore_get_value (empty), ==, 0);
  g_assert_false (mpg_semaphore_acquire (empty, 0, NULL, &error));
  g_assert_error (error, MPG_ERROR, MPG_ERROR_TIMEOUT);
}

static void
test_semaphore_bounded (Fixture       *f,
                        gconstpointer  data)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(MpgSemaphore) sem = track (f, new_semaphore (2, TRUE));
  gboolean bounded = FALSE;

  g_test_summary ("A bounded Semaphore fails a release above its initial value with "
                  "INVALID_STATE, as Python's BoundedSemaphore raises ValueError");

  g_assert_true (mpg_semaphore_get_bounded (sem));
  g_assert_cmpuint (mpg_semaphore_get_max_value (sem), ==, 2);
  g_object_get (sem, "bounded", &bounded, NULL);
  g_assert_true (bounded);

  g_assert_false (mpg_semaphore_release (sem, &error));
  g_assert_error (error, MPG_ERROR, MPG_ERROR_INVALID_STATE);
  g_clear_error (&error);
  g_assert_cmpuint (mpg_semaphore_get_value (sem), ==, 2);

  sem_acquire_ok (sem);
  sem_acquire_ok (sem);
  g_assert_cmpuint (mpg_semaphore_get_value (sem), ==, 0);
  sem_release_ok (sem);
  sem_release_ok (sem);
  g_assert_cmpuint (mpg_semaphore_get_value (sem), ==, 2);

  g_assert_false (mpg_semaphore_release (sem, &error));
  g_assert_error (error, MPG_ERROR, MPG_ERROR_INVALID_STATE);
  g_assert_cmpuint (mpg_semaphore_get_value (sem), ==, 2);
  g_assert_cmpuint (mpg_semaphore_get_max_value (sem), ==, 2);
}

static void
test_semaphore_bounded_zero (Fixture       *f,
                             gconstpointer  data)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(MpgSemaphore) sem = track (f, new_semaphore (0, TRUE));

  g_test_summary ("A bounded Semaphore made with 0 is bounded: any release fails, as "
                  "Python's BoundedSemaphore(0).release() raises ValueError");

  g_assert_true (mpg_semaphore_get_bounded (sem));
  g_assert_cmpuint (mpg_semaphore_get_value (sem), ==, 0);
  g_assert_false (mpg_semaphore_release (sem, &error));
  g_assert_error (error, MPG_ERROR, MPG_ERROR_INVALID_STATE);
  g_assert_cmpuint (mpg_semaphore_get_value (sem), ==, 0);
}

static gpointer
sem_acquire_thread (gpointer data)
{
  Call *call = data;

  g_atomic_int_set (&call->tid, current_tid ());
  call->ok = mpg_semaphore_acquire (call->object, call->timeout_msec, call->cancellable,
                                    &call->error);
  call_returned (call);
  return NULL;
}

static void
test_semaphore_wakes (Fixture       *f,
                      gconstpointer  data)
{
  g_autoptr(MpgSemaphore) sem = track (f, new_semaphore (0, FALSE));
  g_autoptr(GCancellable) cancellable = g_cancellable_new ();
  gint64 released_at;
  Call call;

  g_test_summary ("A release by another thread wakes a waiting acquire at once; a "
                  "cancelled one fails with CANCELLED and takes no unit");

  call_start (&call, "waiter", sem_acquire_thread, sem, WAIT_MS, NULL);
  wait_until_sleeping (&call.tid);
  released_at = g_get_monotonic_time ();
  sem_release_ok (sem);
  call_join (&call);
  g_assert_no_error (call.error);
  g_assert_true (call.ok);
  g_assert_cmpint ((call.returned_at - released_at) / G_TIME_SPAN_MILLISECOND, <, PROMPT_MS);
  g_assert_cmpuint (mpg_semaphore_get_value (sem), ==, 0);

  call_start (&call, "waiter", sem_acquire_thread, sem, WAIT_MS, cancellable);
  wait_until_sleeping (&call.tid);
  g_cancellable_cancel (cancellable);
  call_join (&call);
  g_assert_false (call.ok);
  g_assert_error (call.error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  call_clear (&call);
  sem_release_ok (sem);
  g_assert_cmpuint (mpg_semaphore_get_value (sem), ==, 1);
}

#define SEM_BOUND 3

typedef struct
{
  MpgSemaphore *sem;
  guint         iterations;
  gint          inside;       /* atomic: threads between acquire and release */
  gint          max_inside;   /* atomic */
  gint          total;        /* atomic */
} SemStress;

static gpointer
sem_stress_thread (gpointer data)
{
  SemStress *s = data;

  for (guint i = 0; i < s->iterations; i++)
    {
      gint inside, max;

      sem_acquire_ok (s->sem);
      inside = g_atomic_int_add (&s->inside, 1) + 1;
      do
        max = g_atomic_int_get (&s->max_inside);
      while (inside > max && !g_atomic_int_compare_and_exchange (&s->max_inside, max, inside));
      g_atomic_int_inc (&s->total);
      if (i % 8 == 0)
        g_thread_yield ();
      g_atomic_int_add (&s->inside, -1);
      sem_release_ok (s->sem);
    }
  return NULL;
}

static void
test_semaphore_threads (Fixture       *f,
                        gconstpointer  data)
{
  g_autoptr(MpgSemaphore) sem = track (f, new_semaphore (SEM_BOUND, TRUE));
  GThread *threads[8];
  SemStress s = { 0 };

  g_test_summary ("8 threads acquiring and releasing a bounded Semaphore of 3 many "
                  "times: never more than 3 inside, no release ever refused");

  s.sem = sem;
  s.iterations = under_valgrind ? 100 : 1000;
  for (guint i = 0; i < G_N_ELEMENTS (threads); i++)
    threads[i] = g_thread_new ("stress", sem_stress_thread, &s);
  for (guint i = 0; i < G_N_ELEMENTS (threads); i++)
    g_thread_join (threads[i]);

  g_assert_cmpint (s.total, ==, (gint) (s.iterations * G_N_ELEMENTS (threads)));
  g_assert_cmpint (s.max_inside, >=, 1);
  g_assert_cmpint (s.max_inside, <=, SEM_BOUND);
  g_assert_cmpint (s.inside, ==, 0);
  g_assert_cmpuint (mpg_semaphore_get_value (sem), ==, SEM_BOUND);
}

/* Event */

static MpgEvent *
new_event (void)
{
  g_autoptr(GError) error = NULL;
  MpgEvent *event = mpg_event_new (&error);

  g_assert_no_error (error);
  g_assert_nonnull (event);
  return event;
}

static gpointer
event_wait_thread (gpointer data)
{
  Call *call = data;

  g_atomic_int_set (&call->tid, current_tid ());
  call->ok = mpg_event_wait (call->object, call->timeout_msec, call->cancellable, &call->error);
  call_returned (call);
  return NULL;
}

static void
test_event_basic (Fixture       *f,
                  gconstpointer  data)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(MpgEvent) event = track (f, new_event ());
  gint64 start, elapsed;

  g_test_summary ("An Event: set, clear, is_set; a wait returns TRUE at once while it "
                  "is set, and times out after its timeout while it is not");

  g_assert_false (mpg_event_is_set (event));

  start = g_get_monotonic_time ();
  g_assert_false (mpg_event_wait (event, 0, NULL, &error));
  g_assert_error (error, MPG_ERROR, MPG_ERROR_TIMEOUT);
  g_assert_cmpint (ms_since (start), <, PROMPT_MS);
  g_clear_error (&error);

  start = g_get_monotonic_time ();
  g_assert_false (mpg_event_wait (event, 100, NULL, &error));
  elapsed = ms_since (start);
  g_assert_error (error, MPG_ERROR, MPG_ERROR_TIMEOUT);
  g_assert_cmpint (elapsed, >=, 100);
  g_assert_cmpint (elapsed, <, 100 + 2 * PROMPT_MS);
  g_clear_error (&error);

  mpg_event_set (event);
  g_assert_true (mpg_event_is_set (event));
  mpg_event_set (event);
  g_assert_true (mpg_event_is_set (event));
  g_assert_true (mpg_event_wait (event, 0, NULL, &error));
  g_assert_no_error (error);
  start = g_get_monotonic_time ();
  g_assert_true (mpg_event_wait (event, WAIT_MS, NULL, &error));
  g_assert_no_error (error);
  g_assert_cmpint (ms_since (start), <, PROMPT_MS);

  mpg_event_clear (event);
  g_assert_false (mpg_event_is_set (event));
  mpg_event_clear (event);
  g_assert_false (mpg_event_is_set (event));
  g_assert_false (mpg_event_wait (event, 0, NULL, &error));
  g_assert_error (error, MPG_ERROR, MPG_ERROR_TIMEOUT);
}

static void
test_event_wakes (Fixture       *f,
                  gconstpointer  data)
{
  g_autoptr(MpgEvent) event = track (f, new_event ());
  g_autoptr(GCancellable) cancellable = g_cancellable_new ();
  gint64 set_at;
  Call call;

  g_test_summary ("A set wakes a waiting thread at once (TRUE); a cancelled wait fails "
                  "with CANCELLED");

  call_start (&call, "waiter", event_wait_thread, event, WAIT_MS, NULL);
  wait_until_sleeping (&call.tid);
  set_at = g_get_monotonic_time ();
  mpg_event_set (event);
  call_join (&call);
  g_assert_no_error (call.error);
  g_assert_true (call.ok);
  g_assert_cmpint ((call.returned_at - set_at) / G_TIME_SPAN_MILLISECOND, <, PROMPT_MS);

  mpg_event_clear (event);
  call_start (&call, "waiter", event_wait_thread, event, WAIT_MS, cancellable);
  wait_until_sleeping (&call.tid);
  g_cancellable_cancel (cancellable);
  call_join (&call);
  g_assert_false (call.ok);
  g_assert_error (call.error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  call_clear (&call);
}

/* Waits for the event at the lowest priority: a thread that is ready to
 * run never gives way to it. */
static gpointer
event_wait_idle_thread (gpointer data)
{
  struct sched_param param = { 0 };

  g_assert_cmpint (pthread_setschedparam (pthread_self (), SCHED_IDLE, &param), ==, 0);
  return event_wait_thread (data);
}

static void
test_event_set_clear (Fixture       *f,
                      gconstpointer  data)
{
  g_autoptr(MpgEvent) event = track (f, new_event ());
  cpu_set_t saved, one;
  Call calls[4];

  g_test_summary ("A set followed at once by a clear still wakes the threads that were "
                  "waiting, with TRUE, as Python documents");

  /* The waiters share the CPU of this thread and never preempt it: woken
   * by the set, they run only after the clear. */
  g_assert_cmpint (sched_getaffinity (0, sizeof saved, &saved), ==, 0);
  CPU_ZERO (&one);
  for (int cpu = 0; cpu < CPU_SETSIZE; cpu++)
    if (CPU_ISSET (cpu, &saved))
      {
        CPU_SET (cpu, &one);
        break;
      }
  g_assert_cmpint (sched_setaffinity (0, sizeof one, &one), ==, 0);

  for (guint i = 0; i < G_N_ELEMENTS (calls); i++)
    call_start (&calls[i], "waiter", event_wait_idle_thread, event, WAIT_MS, NULL);
  for (guint i = 0; i < G_N_ELEMENTS (calls); i++)
    wait_until_sleeping (&calls[i].tid);

  mpg_event_set (event);
  mpg_event_clear (event);
  g_assert_false (mpg_event_is_set (event));

  for (guint i = 0; i < G_N_ELEMENTS (calls); i++)
    {
      call_join (&calls[i]);
      g_assert_no_error (calls[i].error);
      g_assert_true (calls[i].ok);
    }
  g_assert_false (mpg_event_is_set (event));
  g_assert_cmpint (sched_setaffinity (0, sizeof saved, &saved), ==, 0);
}

static void
test_event_many_waiters (Fixture       *f,
                         gconstpointer  data)
{
  g_autoptr(MpgEvent) event = track (f, new_event ());
  Call calls[8];
  gint64 set_at;

  g_test_summary ("One set wakes all of 8 waiting threads at once");

  for (guint i = 0; i < G_N_ELEMENTS (calls); i++)
    call_start (&calls[i], "waiter", event_wait_thread, event, WAIT_MS, NULL);
  for (guint i = 0; i < G_N_ELEMENTS (calls); i++)
    wait_until_sleeping (&calls[i].tid);

  set_at = g_get_monotonic_time ();
  mpg_event_set (event);
  for (guint i = 0; i < G_N_ELEMENTS (calls); i++)
    {
      call_join (&calls[i]);
      g_assert_no_error (calls[i].error);
      g_assert_true (calls[i].ok);
      g_assert_cmpint ((calls[i].returned_at - set_at) / G_TIME_SPAN_MILLISECOND, <,
                       2 * PROMPT_MS);
    }
}

/* Condition */

static MpgCondition *
new_condition (MpgLock *lock)
{
  g_autoptr(GError) error = NULL;
  MpgCondition *cond = mpg_condition_new (lock, &error);

  g_assert_no_error (error);
  g_assert_nonnull (cond);
  return cond;
}

typedef struct
{
  MpgCondition *cond;
  MpgLock      *lock;
  guint         depth;       /* how many times each waiter acquires the lock */
  gint          n_waiting;   /* under the lock */
  gint          woken;       /* atomic */
  gint          order[8];    /* ids of the waiters, in the order they woke */
  gint          value;       /* under the lock */
  guint         n_calls;     /* of the predicate */
} CondShared;

typedef struct
{
  CondShared *c;
  gint        id;
  GThread    *thread;
} CondWaiter;

/* Acquires the lock c->depth times, waits, checks that the lock is held
 * again as deeply, and releases it. */
static gpointer
cond_waiter_thread (gpointer data)
{
  CondWaiter *w = data;
  CondShared *c = w->c;
  g_autoptr(GError) error = NULL;
  gint slot;

  for (guint i = 0; i < c->depth; i++)
    acquire_ok (c->lock);
  c->n_waiting++;

  g_assert_true (mpg_condition_wait (c->cond, WAIT_MS, NULL, &error));
  g_assert_no_error (error);
  g_assert_true (mpg_lock_is_mine (c->lock));
  g_assert_cmpuint (mpg_lock_get_count (c->lock), ==, c->depth);

  slot = g_atomic_int_add (&c->woken, 1);
  c->order[slot] = w->id;
  c->n_waiting--;
  for (guint i = 0; i < c->depth; i++)
    release_ok (c->lock);
  return NULL;
}

static gint
n_waiting_locked (CondShared *c)
{
  gint n;

  acquire_ok (c->lock);
  n = c->n_waiting;
  release_ok (c->lock);
  return n;
}

static void
start_waiter (CondWaiter *w,
              CondShared *c,
              gint        id)
{
  gint before = n_waiting_locked (c);

  w->c = c;
  w->id = id;
  w->thread = g_thread_new ("cond-waiter", cond_waiter_thread, w);
  /* Counted under the lock, which the waiter releases only inside its
   * wait, once registered: a notify from now on finds it. */
  WAIT_UNTIL (n_waiting_locked (c) == before + 1);
}

static void
notify_ok (CondShared *c,
           guint       n)
{
  g_autoptr(GError) error = NULL;

  acquire_ok (c->lock);
  if (n == G_MAXUINT)
    g_assert_true (mpg_condition_notify_all (c->cond, &error));
  else
    g_assert_true (mpg_condition_notify (c->cond, n, &error));
  g_assert_no_error (error);
  release_ok (c->lock);
}

static void
test_condition_default_lock (Fixture       *f,
                             gconstpointer  data)
{
  g_autoptr(MpgCondition) cond = track (f, new_condition (NULL));
  g_autoptr(MpgLock) lock = track (f, new_lock (FALSE));
  g_autoptr(MpgCondition) with_lock = NULL;
  g_autoptr(MpgLock) property = NULL;
  guint before;

  g_test_summary ("A Condition made without a lock has an RLock of its own; one made "
                  "with a lock keeps that lock; each costs file descriptors only for "
                  "what it creates");

  g_assert_true (MPG_IS_RLOCK (mpg_condition_get_lock (cond)));
  g_assert_true (mpg_lock_get_recursive (mpg_condition_get_lock (cond)));
  g_object_get (cond, "lock", &property, NULL);
  g_assert_true (property == mpg_condition_get_lock (cond));
  g_clear_object (&property);

  before = count_fds ();
  with_lock = track (f, new_condition (lock));
  g_assert_cmpuint (count_fds (), ==, before + 1);
  g_assert_true (mpg_condition_get_lock (with_lock) == lock);
  g_object_get (with_lock, "lock", &property, NULL);
  g_assert_true (property == lock);
  g_clear_object (&property);

  g_clear_object (&with_lock);
  g_assert_cmpuint (count_fds (), ==, before);
}

static gboolean
predicate_true (gpointer user_data)
{
  return TRUE;
}

static gboolean
predicate_false (gpointer user_data)
{
  return FALSE;
}

static gboolean
predicate_value (gpointer user_data)
{
  CondShared *c = user_data;

  c->n_calls++;
  return c->value >= 3;
}

static void
test_condition_not_held (Fixture       *f,
                         gconstpointer  data)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(MpgCondition) cond = track (f, new_condition (NULL));
  g_autoptr(MpgLock) plain = track (f, new_lock (FALSE));
  g_autoptr(MpgCondition) cond_plain = track (f, new_condition (plain));
  MpgLock *lock = mpg_condition_get_lock (cond);
  gint64 start;
  Holder holder;

  g_test_summary ("wait, wait_for, notify and notify_all without holding the lock fail "
                  "with INVALID_STATE at once, also while another thread holds it");

  for (guint round = 0; round < 2; round++)
    {
      MpgCondition *c = round == 0 ? cond : cond_plain;

      start = g_get_monotonic_time ();
      g_assert_false (mpg_condition_wait (c, WAIT_MS, NULL, &error));
      g_assert_error (error, MPG_ERROR, MPG_ERROR_INVALID_STATE);
      g_clear_error (&error);
      g_assert_false (mpg_condition_wait_for (c, predicate_false, NULL, WAIT_MS, NULL, &error));
      g_assert_error (error, MPG_ERROR, MPG_ERROR_INVALID_STATE);
      g_clear_error (&error);
      g_assert_false (mpg_condition_notify (c, 1, &error));
      g_assert_error (error, MPG_ERROR, MPG_ERROR_INVALID_STATE);
      g_clear_error (&error);
      g_assert_false (mpg_condition_notify_all (c, &error));
      g_assert_error (error, MPG_ERROR, MPG_ERROR_INVALID_STATE);
      g_clear_error (&error);
      g_assert_cmpint (ms_since (start), <, PROMPT_MS);
    }

  /* Held, but by another thread. */
  holder_start (&holder, lock);
  g_assert_false (mpg_condition_wait (cond, WAIT_MS, NULL, &error));
  g_assert_error (error, MPG_ERROR, MPG_ERROR_INVALID_STATE);
  g_clear_error (&error);
  g_assert_false (mpg_condition_notify (cond, 1, &error));
  g_assert_error (error, MPG_ERROR, MPG_ERROR_INVALID_STATE);
  g_clear_error (&error);
  holder_join (&holder);

  holder_start (&holder, plain);
  g_assert_false (mpg_condition_wait (cond_plain, WAIT_MS, NULL, &error));
  g_assert_error (error, MPG_ERROR, MPG_ERROR_INVALID_STATE);
  g_clear_error (&error);
  g_assert_false (mpg_condition_notify_all (cond_plain, &error));
  g_assert_error (error, MPG_ERROR, MPG_ERROR_INVALID_STATE);
  g_clear_error (&error);
  holder_join (&holder);

  g_assert_cmpuint (mpg_lock_get_count (lock), ==, 0);
  g_assert_cmpuint (mpg_lock_get_count (plain), ==, 0);
}

/* Takes the lock (once the waiter released it inside its wait) and
 * notifies one waiter. */
static gpointer
cond_notifier_thread (gpointer data)
{
  CondShared *c = data;

  notify_ok (c, 1);
  return NULL;
}

static void
test_condition_rlock_depth (Fixture       *f,
                            gconstpointer  data)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(MpgCondition) cond = track (f, new_condition (NULL));
  CondShared c = { 0 };
  GThread *notifier;

  g_test_summary ("A wait releases an RLock held twice all the way (another thread "
                  "gets it and notifies), and holds it twice again when it returns");

  c.cond = cond;
  c.lock = mpg_condition_get_lock (cond);

  acquire_ok (c.lock);
  acquire_ok (c.lock);
  /* The notifier can take the lock only once the wait released it. */
  notifier = g_thread_new ("notifier", cond_notifier_thread, &c);

  g_assert_true (mpg_condition_wait (cond, WAIT_MS, NULL, &error));
  g_assert_no_error (error);
  g_assert_true (mpg_lock_is_mine (c.lock));
  g_assert_cmpuint (mpg_lock_get_count (c.lock), ==, 2);
  g_thread_join (notifier);

  release_ok (c.lock);
  release_ok (c.lock);
  g_assert_cmpuint (mpg_lock_get_count (c.lock), ==, 0);
}

static void
test_condition_given_lock (Fixture       *f,
                           gconstpointer  data)
{
  g_autoptr(MpgLock) lock = track (f, new_lock (FALSE));
  g_autoptr(MpgCondition) cond = track (f, new_condition (lock));
  CondShared c = { 0 };
  CondWaiter waiter;

  g_test_summary ("A Condition with a given Lock releases and retakes that lock: "
                  "another thread can take it during the wait");

  c.cond = cond;
  c.lock = lock;
  c.depth = 1;

  start_waiter (&waiter, &c, 0);
  g_assert_cmpuint (mpg_lock_get_count (lock), ==, 0);
  notify_ok (&c, 1);
  g_thread_join (waiter.thread);
  g_assert_cmpint (c.woken, ==, 1);
  g_assert_cmpuint (mpg_lock_get_count (lock), ==, 0);
}

static void
test_condition_notify_one (Fixture       *f,
                           gconstpointer  data)
{
  g_autoptr(MpgCondition) cond = track (f, new_condition (NULL));
  CondShared c = { 0 };
  CondWaiter waiters[2];

  g_test_summary ("notify(1) wakes the longest waiting of two waiters; the other waits "
                  "on until the next notify; notify(0) wakes nobody");

  c.cond = cond;
  c.lock = mpg_condition_get_lock (cond);
  c.depth = 2;

  start_waiter (&waiters[0], &c, 0);
  start_waiter (&waiters[1], &c, 1);

  notify_ok (&c, 0);
  g_usleep (100 * 1000);
  g_assert_cmpint (g_atomic_int_get (&c.woken), ==, 0);

  notify_ok (&c, 1);
  WAIT_UNTIL (g_atomic_int_get (&c.woken) == 1);
  g_usleep (200 * 1000);
  g_assert_cmpint (g_atomic_int_get (&c.woken), ==, 1);
  g_assert_cmpint (n_waiting_locked (&c), ==, 1);
  g_assert_cmpint (c.order[0], ==, 0);

  notify_ok (&c, 1);
  g_thread_join (waiters[0].thread);
  g_thread_join (waiters[1].thread);
  g_assert_cmpint (c.woken, ==, 2);
  g_assert_cmpint (c.order[1], ==, 1);
  g_assert_cmpuint (mpg_lock_get_count (c.lock), ==, 0);
}

static void
test_condition_notify_all (Fixture       *f,
                           gconstpointer  data)
{
  g_autoptr(MpgCondition) cond = track (f, new_condition (NULL));
  CondShared c = { 0 };
  CondWaiter waiters[4];

  g_test_summary ("notify_all wakes every waiter, each with the lock held again");

  c.cond = cond;
  c.lock = mpg_condition_get_lock (cond);
  c.depth = 1;

  for (guint i = 0; i < G_N_ELEMENTS (waiters); i++)
    start_waiter (&waiters[i], &c, i);

  notify_ok (&c, G_MAXUINT);
  for (guint i = 0; i < G_N_ELEMENTS (waiters); i++)
    g_thread_join (waiters[i].thread);
  g_assert_cmpint (c.woken, ==, (gint) G_N_ELEMENTS (waiters));
  g_assert_cmpint (c.n_waiting, ==, 0);
}

/* Raises the value to 3, one step at a time, notifying each time. */
static gpointer
cond_counter_thread (gpointer data)
{
  CondShared *c = data;
  g_autoptr(GError) error = NULL;

  for (gint i = 1; i <= 3; i++)
    {
      acquire_ok (c->lock);
      c->value = i;
      g_assert_true (mpg_condition_notify_all (c->cond, &error));
      g_assert_no_error (error);
      release_ok (c->lock);
      g_usleep (20 * 1000);
    }
  return NULL;
}

static void
test_condition_wait_for (Fixture       *f,
                         gconstpointer  data)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(MpgCondition) cond = track (f, new_condition (NULL));
  CondShared c = { 0 };
  GThread *counter;
  gint64 start, elapsed;

  g_test_summary ("wait_for returns TRUE once its predicate holds (at once if it holds "
                  "already), and fails with TIMEOUT after its timeout, the lock held "
                  "again in every case");

  c.cond = cond;
  c.lock = mpg_condition_get_lock (cond);

  acquire_ok (c.lock);
  counter = g_thread_new ("counter", cond_counter_thread, &c);
  g_assert_true (mpg_condition_wait_for (cond, predicate_value, &c, WAIT_MS, NULL, &error));
  g_assert_no_error (error);
  g_assert_cmpint (c.value, ==, 3);
  g_assert_cmpuint (c.n_calls, >=, 2);
  g_assert_true (mpg_lock_is_mine (c.lock));
  g_assert_cmpuint (mpg_lock_get_count (c.lock), ==, 1);
  release_ok (c.lock);
  g_thread_join (counter);

  acquire_ok (c.lock);
  start = g_get_monotonic_time ();
  g_assert_true (mpg_condition_wait_for (cond, predicate_true, NULL, 0, NULL, &error));
  g_assert_no_error (error);
  g_assert_true (mpg_condition_wait_for (cond, predicate_true, NULL, WAIT_MS, NULL, &error));
  g_assert_no_error (error);
  g_assert_cmpint (ms_since (start), <, PROMPT_MS);

  acquire_ok (c.lock);
  start = g_get_monotonic_time ();
  g_assert_false (mpg_condition_wait_for (cond, predicate_false, NULL, 100, NULL, &error));
  elapsed = ms_since (start);
  g_assert_error (error, MPG_ERROR, MPG_ERROR_TIMEOUT);
  g_assert_cmpint (elapsed, >=, 100);
  g_assert_cmpint (elapsed, <, 100 + 2 * PROMPT_MS);
  g_assert_true (mpg_lock_is_mine (c.lock));
  g_assert_cmpuint (mpg_lock_get_count (c.lock), ==, 2);
  release_ok (c.lock);
  release_ok (c.lock);
}

static gpointer
cancel_later_thread (gpointer data)
{
  g_usleep (100 * 1000);
  g_cancellable_cancel (data);
  return NULL;
}

static void
test_condition_timeout (Fixture       *f,
                        gconstpointer  data)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(MpgCondition) cond = track (f, new_condition (NULL));
  g_autoptr(GCancellable) cancellable = g_cancellable_new ();
  MpgLock *lock = mpg_condition_get_lock (cond);
  gint64 start, elapsed;
  GThread *canceller;

  g_test_summary ("A wait without a notify fails with TIMEOUT after its timeout (at "
                  "once for 0), or with CANCELLED, and holds the lock again");

  acquire_ok (lock);
  acquire_ok (lock);

  start = g_get_monotonic_time ();
  g_assert_false (mpg_condition_wait (cond, 0, NULL, &error));
  g_assert_error (error, MPG_ERROR, MPG_ERROR_TIMEOUT);
  g_assert_cmpint (ms_since (start), <, PROMPT_MS);
  g_clear_error (&error);
  g_assert_cmpuint (mpg_lock_get_count (lock), ==, 2);

  start = g_get_monotonic_time ();
  g_assert_false (mpg_condition_wait (cond, 100, NULL, &error));
  elapsed = ms_since (start);
  g_assert_error (error, MPG_ERROR, MPG_ERROR_TIMEOUT);
  g_assert_cmpint (elapsed, >=, 100);
  g_assert_cmpint (elapsed, <, 100 + 2 * PROMPT_MS);
  g_clear_error (&error);
  g_assert_true (mpg_lock_is_mine (lock));
  g_assert_cmpuint (mpg_lock_get_count (lock), ==, 2);

  canceller = g_thread_new ("canceller", cancel_later_thread, cancellable);
  start = g_get_monotonic_time ();
  g_assert_false (mpg_condition_wait (cond, WAIT_MS, cancellable, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_assert_cmpint (ms_since (start), <, 100 + 2 * PROMPT_MS);
  g_thread_join (canceller);
  g_assert_true (mpg_lock_is_mine (lock));
  g_assert_cmpuint (mpg_lock_get_count (lock), ==, 2);

  release_ok (lock);
  release_ok (lock);
}

/* Barrier */

#define PARTIES 4
#define ROUNDS  3

static MpgBarrier *
new_barrier (guint parties,
             gint  timeout_msec)
{
  g_autoptr(GError) error = NULL;
  MpgBarrier *barrier = mpg_barrier_new (parties, timeout_msec, &error);

  g_assert_no_error (error);
  g_assert_nonnull (barrier);
  return barrier;
}

static gpointer
barrier_wait_thread (gpointer data)
{
  Call *call = data;

  g_atomic_int_set (&call->tid, current_tid ());
  call->index = mpg_barrier_wait (call->object, call->timeout_msec, call->cancellable,
                                  &call->error);
  call->ok = call->index >= 0;
  call_returned (call);
  return NULL;
}

typedef struct
{
  MpgBarrier *barrier;
  gint        indices[ROUNDS][PARTIES];
  GThread    *threads[PARTIES];
  gint        passed[ROUNDS];             /* atomic: parties out of each round */
  gint        action_runs;                /* atomic */
  gint        passed_at_action[ROUNDS];
  gint        before_at_action[ROUNDS];   /* passed[] of the round before */
  guint       waiting_at_action[ROUNDS];  /* n_waiting while the action runs */
  GThread    *action_thread[ROUNDS];
  gboolean    fail;                       /* the action fails */
  gboolean    fail_silently;              /* ... without setting its error */
} Rounds;

typedef struct
{
  Rounds *r;
  guint   id;
  gint    index;    /* of the single wait of action_fails */
  GError *error;
} Party;

static gpointer
party_thread (gpointer data)
{
  Party *p = data;
  Rounds *r = p->r;
  g_autoptr(GError) error = NULL;

  r->threads[p->id] = g_thread_self ();
  for (guint round = 0; round < ROUNDS; round++)
    {
      gint index = mpg_barrier_wait (r->barrier, WAIT_MS, NULL, &error);

      g_assert_no_error (error);
      r->indices[round][p->id] = index;
      g_atomic_int_inc (&r->passed[round]);
    }
  return NULL;
}

static gboolean
rounds_action (gpointer   user_data,
               GError   **error)
{
  Rounds *r = user_data;
  gint round = g_atomic_int_add (&r->action_runs, 1);

  if (round < ROUNDS)
    {
      r->passed_at_action[round] = g_atomic_int_get (&r->passed[round]);
      r->before_at_action[round] = round > 0 ? g_atomic_int_get (&r->passed[round - 1]) : PARTIES;
      r->waiting_at_action[round] = mpg_barrier_get_n_waiting (r->barrier);
      r->action_thread[round] = g_thread_self ();
    }
  if (r->fail_silently)
    return FALSE;
  if (r->fail)
    {
      g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_PERMISSION_DENIED,
                           "The action failed on purpose");
      return FALSE;
    }
  return TRUE;
}

static void
action_data_free (gpointer data)
{
  g_atomic_int_inc ((gint *) data);
}

static void
test_barrier_rounds (Fixture       *f,
                     gconstpointer  data)
{
  g_autoptr(MpgBarrier) barrier = track (f, new_barrier (PARTIES, -1));
  Rounds r = { 0 };
  Party parties[PARTIES];
  GThread *threads[PARTIES];
  guint parties_prop = 0, n_waiting = 1;
  gint timeout = 0, freed = 0;
  gboolean broken = TRUE;

  g_test_summary ("4 threads pass a Barrier 3 times: each round gives the indices 0..3 "
                  "once each, and the action runs once per round, in the last party "
                  "to arrive (index 3), before any party leaves");

  g_assert_cmpuint (mpg_barrier_get_parties (barrier), ==, PARTIES);
  g_assert_cmpint (mpg_barrier_get_timeout (barrier), ==, -1);
  g_object_get (barrier, "parties", &parties_prop, "timeout", &timeout,
                "n-waiting", &n_waiting, "broken", &broken, NULL);
  g_assert_cmpuint (parties_prop, ==, PARTIES);
  g_assert_cmpint (timeout, ==, -1);
  g_assert_cmpuint (n_waiting, ==, 0);
  g_assert_false (broken);

  r.barrier = barrier;
  mpg_barrier_set_action (barrier, rounds_action, &r, NULL);
  for (guint i = 0; i < PARTIES; i++)
    {
      parties[i] = (Party) { .r = &r, .id = i };
      threads[i] = g_thread_new ("party", party_thread, &parties[i]);
    }
  for (guint i = 0; i < PARTIES; i++)
    g_thread_join (threads[i]);

  g_assert_cmpint (r.action_runs, ==, ROUNDS);
  for (guint round = 0; round < ROUNDS; round++)
    {
      guint seen = 0;

      for (guint i = 0; i < PARTIES; i++)
        {
          gint index = r.indices[round][i];

          g_assert_cmpint (index, >=, 0);
          g_assert_cmpint (index, <, PARTIES);
          g_assert_false (seen & (1u << index));
          seen |= 1u << index;
          if (index == PARTIES - 1)
            g_assert_true (r.action_thread[round] == r.threads[i]);
        }
      g_assert_cmpint (r.passed_at_action[round], ==, 0);
      g_assert_cmpint (r.before_at_action[round], ==, PARTIES);
      /* As Python's n_waiting: every party has arrived. */
      g_assert_cmpuint (r.waiting_at_action[round], ==, PARTIES);
    }

  g_assert_cmpuint (mpg_barrier_get_n_waiting (barrier), ==, 0);
  g_assert_false (mpg_barrier_get_broken (barrier));

  /* A new action frees the data of the one it replaces. */
  mpg_barrier_set_action (barrier, rounds_action, &freed, action_data_free);
  mpg_barrier_set_action (barrier, NULL, NULL, NULL);
  g_assert_cmpint (freed, ==, 1);
}

static gpointer
single_wait_thread (gpointer data)
{
  Party *p = data;

  p->r->threads[p->id] = g_thread_self ();
  p->index = mpg_barrier_wait (p->r->barrier, WAIT_MS, NULL, &p->error);
  return NULL;
}

/* Runs one wait in each of @n threads. */
static void
run_parties (Rounds *r,
             Party  *parties,
             guint   n)
{
  GThread *threads[PARTIES];

  g_assert_cmpuint (n, <=, PARTIES);
  for (guint i = 0; i < n; i++)
    {
      parties[i] = (Party) { .r = r, .id = i, .index = -2 };
      threads[i] = g_thread_new ("party", single_wait_thread, &parties[i]);
    }
  for (guint i = 0; i < n; i++)
    g_thread_join (threads[i]);
}

static void
test_barrier_action_fails (Fixture       *f,
                           gconstpointer  data)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(MpgBarrier) barrier = track (f, new_barrier (PARTIES, -1));
  g_autoptr(MpgBarrier) single = track (f, new_barrier (1, -1));
  Rounds r = { 0 };
  Party parties[PARTIES];
  guint n_action_error = 0, n_broken = 0;
  guint seen = 0;

  g_test_summary ("An action that fails breaks the Barrier: the party that ran it gets "
                  "its error, the others BROKEN_BARRIER; after a reset it is usable");

  r.barrier = barrier;
  r.fail = TRUE;
  mpg_barrier_set_action (barrier, rounds_action, &r, NULL);
  run_parties (&r, parties, PARTIES);

  g_assert_cmpint (r.action_runs, ==, 1);
  for (guint i = 0; i < PARTIES; i++)
    {
      g_assert_cmpint (parties[i].index, ==, -1);
      if (g_error_matches (parties[i].error, G_IO_ERROR, G_IO_ERROR_PERMISSION_DENIED))
        {
          n_action_error++;
          g_assert_true (r.action_thread[0] == r.threads[i]);
        }
      else
        {
          g_assert_error (parties[i].error, MPG_ERROR, MPG_ERROR_BROKEN_BARRIER);
          n_broken++;
        }
      g_clear_error (&parties[i].error);
    }
  g_assert_cmpuint (n_action_error, ==, 1);
  g_assert_cmpuint (n_broken, ==, PARTIES - 1);
  g_assert_true (mpg_barrier_get_broken (barrier));

  /* Broken until reset. */
  g_assert_cmpint (mpg_barrier_wait (barrier, WAIT_MS, NULL, &error), ==, -1);
  g_assert_error (error, MPG_ERROR, MPG_ERROR_BROKEN_BARRIER);
  g_clear_error (&error);

  mpg_barrier_reset (barrier);
  g_assert_false (mpg_barrier_get_broken (barrier));
  mpg_barrier_set_action (barrier, NULL, NULL, NULL);
  run_parties (&r, parties, PARTIES);
  for (guint i = 0; i < PARTIES; i++)
    {
      g_assert_no_error (parties[i].error);
      g_assert_cmpint (parties[i].index, >=, 0);
      seen |= 1u << parties[i].index;
    }
  g_assert_cmpuint (seen, ==, (1u << PARTIES) - 1);
  g_assert_cmpint (r.action_runs, ==, 1);

  /* An action that fails without saying why. */
  r.fail_silently = TRUE;
  mpg_barrier_set_action (single, rounds_action, &r, NULL);
  g_assert_cmpint (mpg_barrier_wait (single, WAIT_MS, NULL, &error), ==, -1);
  g_assert_error (error, MPG_ERROR, MPG_ERROR_FAILED);
  g_assert_true (mpg_barrier_get_broken (single));
}

static void
test_barrier_timeout (Fixture       *f,
                      gconstpointer  data)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(MpgBarrier) barrier = track (f, new_barrier (3, -1));
  g_autoptr(MpgBarrier) by_default = track (f, new_barrier (2, 100));
  gint64 start, elapsed;
  Call a, b;

  g_test_summary ("A wait that times out breaks the Barrier: it and every other waiter "
                  "fail with BROKEN_BARRIER; the barrier's own timeout applies to waits "
                  "that give none");

  start = g_get_monotonic_time ();
  call_start (&b, "party", barrier_wait_thread, barrier, WAIT_MS, NULL);
  call_start (&a, "party", barrier_wait_thread, barrier, 200, NULL);
  call_join (&a);
  call_join (&b);

  g_assert_cmpint (a.index, ==, -1);
  g_assert_error (a.error, MPG_ERROR, MPG_ERROR_BROKEN_BARRIER);
  g_assert_cmpint ((a.returned_at - start) / G_TIME_SPAN_MILLISECOND, >=, 200);
  g_assert_cmpint (b.index, ==, -1);
  g_assert_error (b.error, MPG_ERROR, MPG_ERROR_BROKEN_BARRIER);
  g_assert_cmpint ((b.returned_at - a.returned_at) / G_TIME_SPAN_MILLISECOND, <, PROMPT_MS);
  call_clear (&a);
  call_clear (&b);
  g_assert_true (mpg_barrier_get_broken (barrier));
  g_assert_cmpuint (mpg_barrier_get_n_waiting (barrier), ==, 0);

  g_assert_cmpint (mpg_barrier_get_timeout (by_default), ==, 100);
  start = g_get_monotonic_time ();
  g_assert_cmpint (mpg_barrier_wait (by_default, -1, NULL, &error), ==, -1);
  elapsed = ms_since (start);
  g_assert_error (error, MPG_ERROR, MPG_ERROR_BROKEN_BARRIER);
  g_assert_cmpint (elapsed, >=, 100);
  g_assert_cmpint (elapsed, <, 100 + 2 * PROMPT_MS);
  g_assert_true (mpg_barrier_get_broken (by_default));
}

static void
test_barrier_abort_reset (Fixture       *f,
                          gconstpointer  data)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(MpgBarrier) barrier = track (f, new_barrier (3, -1));
  g_autoptr(GCancellable) cancellable = g_cancellable_new ();
  Rounds r = { 0 };
  Party parties[3];
  guint n_waiting = 0, seen = 0;
  gboolean broken = FALSE;
  gint64 start;
  Call calls[2];

  g_test_summary ("abort() fails the waiters with BROKEN_BARRIER and keeps the Barrier "
                  "broken; reset() fails the waiters and makes it usable again; "
                  "n_waiting counts the waiters; a cancelled wait breaks it");

  for (guint i = 0; i < 2; i++)
    call_start (&calls[i], "party", barrier_wait_thread, barrier, WAIT_MS, NULL);
  WAIT_UNTIL (mpg_barrier_get_n_waiting (barrier) == 2);
  g_object_get (barrier, "n-waiting", &n_waiting, NULL);
  g_assert_cmpuint (n_waiting, ==, 2);

  mpg_barrier_abort (barrier);
  for (guint i = 0; i < 2; i++)
    {
      call_join (&calls[i]);
      g_assert_cmpint (calls[i].index, ==, -1);
      g_assert_error (calls[i].error, MPG_ERROR, MPG_ERROR_BROKEN_BARRIER);
      call_clear (&calls[i]);
    }
  g_assert_true (mpg_barrier_get_broken (barrier));
  g_object_get (barrier, "broken", &broken, NULL);
  g_assert_true (broken);
  g_assert_cmpuint (mpg_barrier_get_n_waiting (barrier), ==, 0);

  start = g_get_monotonic_time ();
  g_assert_cmpint (mpg_barrier_wait (barrier, WAIT_MS, NULL, &error), ==, -1);
  g_assert_error (error, MPG_ERROR, MPG_ERROR_BROKEN_BARRIER);
  g_assert_cmpint (ms_since (start), <, PROMPT_MS);
  g_clear_error (&error);

  mpg_barrier_reset (barrier);
  g_assert_false (mpg_barrier_get_broken (barrier));

  /* A reset with waiters: they fail, and the barrier is usable after. */
  for (guint i = 0; i < 2; i++)
    call_start (&calls[i], "party", barrier_wait_thread, barrier, WAIT_MS, NULL);
  WAIT_UNTIL (mpg_barrier_get_n_waiting (barrier) == 2);
  mpg_barrier_reset (barrier);
  for (guint i = 0; i < 2; i++)
    {
      call_join (&calls[i]);
      g_assert_cmpint (calls[i].index, ==, -1);
      g_assert_error (calls[i].error, MPG_ERROR, MPG_ERROR_BROKEN_BARRIER);
      call_clear (&calls[i]);
    }
  g_assert_false (mpg_barrier_get_broken (barrier));

  r.barrier = barrier;
  run_parties (&r, parties, 3);
  for (guint i = 0; i < 3; i++)
    {
      g_assert_no_error (parties[i].error);
      g_assert_cmpint (parties[i].index, >=, 0);
      g_assert_cmpint (parties[i].index, <, 3);
      seen |= 1u << parties[i].index;
    }
  g_assert_cmpuint (seen, ==, 7);
  g_assert_false (mpg_barrier_get_broken (barrier));

  /* A cancelled wait breaks it too. */
  call_start (&calls[0], "party", barrier_wait_thread, barrier, WAIT_MS, cancellable);
  call_start (&calls[1], "party", barrier_wait_thread, barrier, WAIT_MS, NULL);
  WAIT_UNTIL (mpg_barrier_get_n_waiting (barrier) == 2);
  g_cancellable_cancel (cancellable);
  for (guint i = 0; i < 2; i++)
    {
      call_join (&calls[i]);
      g_assert_cmpint (calls[i].index, ==, -1);
      g_assert_error (calls[i].error, MPG_ERROR, MPG_ERROR_BROKEN_BARRIER);
      call_clear (&calls[i]);
    }
  g_assert_true (mpg_barrier_get_broken (barrier));
}

/* Async calls, in the default main context */

typedef struct
{
  GMainLoop *loop;
  guint      ticks;        /* of a 10 ms timeout, during the wait */
  guint      fire_at;      /* the tick at which to call fire() */
  GSourceFunc fire;
  gpointer   fire_data;
  gint64     fired_at;
  gboolean   done;
  gboolean   ok;
  gint       index;
  GError    *error;
  gboolean   died;
  gboolean   mine;         /* Lock: is_mine in the callback */
  guint      count;        /* Lock: get_count in the callback */
  GThread   *thread;       /* the callback's */
  gint64     done_at;
  gboolean   timed_out;
} Async;

static gboolean
tick_cb (gpointer user_data)
{
  Async *a = user_data;

  a->ticks++;
  if (a->fire != NULL && a->ticks == a->fire_at)
    {
      a->fired_at = g_get_monotonic_time ();
      a->fire (a->fire_data);
    }
  return G_SOURCE_CONTINUE;
}

static gboolean
guard_cb (gpointer user_data)
{
  Async *a = user_data;

  a->timed_out = TRUE;
  g_main_loop_quit (a->loop);
  return G_SOURCE_REMOVE;
}

static void
async_init (Async *a)
{
  memset (a, 0, sizeof *a);
  a->loop = g_main_loop_new (NULL, FALSE);
}

static void
async_clear (Async *a)
{
  g_clear_pointer (&a->loop, g_main_loop_unref);
  g_clear_error (&a->error);
}

/* At the @tick-th tick of the loop, calls @fire: what the async call waits
 * for happens only once the loop turned that many times while it waited. */
static void
async_fire_at (Async       *a,
               guint        tick,
               GSourceFunc  fire,
               gpointer     fire_data)
{
  a->fire_at = tick;
  a->fire = fire;
  a->fire_data = fire_data;
}

/* Runs the loop until the callback ran, with a 10 ms tick that counts the
 * loop's turns and a guard of WAIT_MS. */
static void
async_run (Async *a)
{
  guint tick = g_timeout_add (10, tick_cb, a);
  guint guard = g_timeout_add (WAIT_MS, guard_cb, a);

  if (!a->done)
    g_main_loop_run (a->loop);
  g_source_remove (tick);
  if (!a->timed_out)
    g_source_remove (guard);
  g_assert_false (a->timed_out);
  g_assert_true (a->done);
  g_assert_true (a->thread == g_thread_self ());
}

static void
async_done (Async *a)
{
  a->done = TRUE;
  a->done_at = g_get_monotonic_time ();
  a->thread = g_thread_self ();
  g_main_loop_quit (a->loop);
}

static void
lock_acquired_cb (GObject      *source,
                  GAsyncResult *result,
                  gpointer      user_data)
{
  Async *a = user_data;

  a->died = TRUE;
  a->ok = mpg_lock_acquire_finish (MPG_LOCK (source), result, &a->died, &a->error);
  a->mine = mpg_lock_is_mine (MPG_LOCK (source));
  a->count = mpg_lock_get_count (MPG_LOCK (source));
  async_done (a);
}

static gboolean
release_holder_cb (gpointer user_data)
{
  holder_release (user_data);
  return G_SOURCE_REMOVE;
}

static void
test_lock_acquire_async (Fixture       *f,
                         gconstpointer  data)
{
  g_autoptr(MpgLock) lock = track (f, new_lock (FALSE));
  Holder holder;
  Async a;

  g_test_summary ("acquire_async of a Lock that another thread holds: the main loop "
                  "runs on during the wait, and the callback comes after the release, "
                  "with the lock held by the calling thread");

  async_init (&a);
  holder_start (&holder, lock);
  mpg_lock_acquire_async (lock, NULL, lock_acquired_cb, &a);
  async_fire_at (&a, 10, release_holder_cb, &holder);
  async_run (&a);

  g_assert_no_error (a.error);
  g_assert_true (a.ok);
  g_assert_false (a.died);
  g_assert_true (a.mine);
  g_assert_cmpuint (a.count, ==, 1);
  g_assert_cmpint (a.done_at, >=, holder.released_at);
  g_assert_cmpuint (a.ticks, >=, 10);
  holder_join (&holder);

  g_assert_true (mpg_lock_is_mine (lock));
  release_ok (lock);
  async_clear (&a);
}

static void
test_rlock_acquire_async (Fixture       *f,
                          gconstpointer  data)
{
  g_autoptr(MpgLock) lock = track (f, new_lock (TRUE));
  Holder holder;
  Call call;
  Async a;

  g_test_summary ("acquire_async of an RLock makes the calling thread its owner: "
                  "is_mine in the callback, recursion and release from it, and no "
                  "other thread may release it");

  async_init (&a);
  holder_start (&holder, lock);
  mpg_lock_acquire_async (lock, NULL, lock_acquired_cb, &a);
  async_fire_at (&a, 5, release_holder_cb, &holder);
  async_run (&a);
  holder_join (&holder);

  g_assert_no_error (a.error);
  g_assert_true (a.ok);
  g_assert_true (a.mine);
  g_assert_cmpuint (a.count, ==, 1);

  call_in_thread (&call, lock_release_thread, lock, 0, NULL);
  g_assert_false (call.ok);
  g_assert_error (call.error, MPG_ERROR, MPG_ERROR_INVALID_STATE);
  call_clear (&call);

  acquire_ok (lock);
  g_assert_cmpuint (mpg_lock_get_count (lock), ==, 2);

  /* Held by the caller already: the async call recurses. */
  async_clear (&a);
  async_init (&a);
  mpg_lock_acquire_async (lock, NULL, lock_acquired_cb, &a);
  async_run (&a);
  g_assert_no_error (a.error);
  g_assert_true (a.ok);
  g_assert_true (a.mine);
  g_assert_cmpuint (a.count, ==, 3);

  release_ok (lock);
  release_ok (lock);
  release_ok (lock);
  g_assert_cmpuint (mpg_lock_get_count (lock), ==, 0);
  async_clear (&a);
}

static gboolean
cancel_cb (gpointer user_data)
{
  g_cancellable_cancel (user_data);
  return G_SOURCE_REMOVE;
}

static void
test_lock_acquire_async_cancel (Fixture       *f,
                                gconstpointer  data)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(MpgLock) lock = track (f, new_lock (FALSE));
  g_autoptr(GCancellable) cancellable = g_cancellable_new ();
  Holder holder;
  Async a;

  g_test_summary ("Cancelling acquire_async while another thread holds the lock fails "
                  "it with CANCELLED promptly, and the lock is not taken: free once the "
                  "holder releases it");

  async_init (&a);
  holder_start (&holder, lock);
  mpg_lock_acquire_async (lock, cancellable, lock_acquired_cb, &a);
  async_fire_at (&a, 5, cancel_cb, cancellable);
  async_run (&a);

  g_assert_false (a.ok);
  g_assert_error (a.error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_assert_false (a.mine);
  g_assert_cmpuint (a.count, ==, 1);
  g_assert_cmpint ((a.done_at - a.fired_at) / G_TIME_SPAN_MILLISECOND, <, PROMPT_MS);

  holder_join (&holder);
  g_assert_cmpuint (mpg_lock_get_count (lock), ==, 0);
  g_assert_true (mpg_lock_acquire (lock, 0, NULL, NULL, &error));
  g_assert_no_error (error);
  release_ok (lock);
  async_clear (&a);
}

static void
test_lock_acquire_async_cancel_late (Fixture       *f,
                                     gconstpointer  data)
{
  g_autoptr(MpgLock) lock = track (f, new_lock (FALSE));
  g_autoptr(GCancellable) cancellable = g_cancellable_new ();
  Async a;

  g_test_summary ("acquire_async cancelled after its thread took the lock, before the "
                  "callback: the result and the lock agree, either TRUE with the lock "
                  "held or CANCELLED with the lock free");

  async_init (&a);
  mpg_lock_acquire_async (lock, cancellable, lock_acquired_cb, &a);
  /* The free lock is taken on our behalf at once; the callback waits for
   * the main loop, which runs only after the cancellation. */
  WAIT_UNTIL (mpg_lock_get_count (lock) == 1);
  g_cancellable_cancel (cancellable);
  async_run (&a);

  if (a.ok)
    {
      g_assert_no_error (a.error);
      g_assert_true (a.mine);
      release_ok (lock);
    }
  else
    {
      g_assert_error (a.error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
      /* "Cancelling fails the call with CANCELLED, without the lock". */
      g_assert_cmpuint (mpg_lock_get_count (lock), ==, 0);
    }
  async_clear (&a);
}

static void
sem_acquired_cb (GObject      *source,
                 GAsyncResult *result,
                 gpointer      user_data)
{
  Async *a = user_data;

  a->ok = mpg_semaphore_acquire_finish (MPG_SEMAPHORE (source), result, &a->error);
  a->count = mpg_semaphore_get_value (MPG_SEMAPHORE (source));
  async_done (a);
}

static gboolean
sem_release_cb (gpointer user_data)
{
  sem_release_ok (user_data);
  return G_SOURCE_REMOVE;
}

static void
test_semaphore_acquire_async (Fixture       *f,
                              gconstpointer  data)
{
  g_autoptr(MpgSemaphore) sem = track (f, new_semaphore (0, FALSE));
  g_autoptr(GCancellable) cancellable = g_cancellable_new ();
  Async a;

  g_test_summary ("acquire_async of an empty Semaphore completes once a unit is "
                  "released, the loop running meanwhile; cancelled, it fails with "
                  "CANCELLED and takes no unit");

  async_init (&a);
  mpg_semaphore_acquire_async (sem, NULL, sem_acquired_cb, &a);
  async_fire_at (&a, 10, sem_release_cb, sem);
  async_run (&a);
  g_assert_no_error (a.error);
  g_assert_true (a.ok);
  g_assert_cmpuint (a.count, ==, 0);
  g_assert_cmpuint (a.ticks, >=, 10);
  async_clear (&a);

  async_init (&a);
  mpg_semaphore_acquire_async (sem, cancellable, sem_acquired_cb, &a);
  async_fire_at (&a, 5, cancel_cb, cancellable);
  async_run (&a);
  g_assert_false (a.ok);
  g_assert_error (a.error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_assert_cmpint ((a.done_at - a.fired_at) / G_TIME_SPAN_MILLISECOND, <, PROMPT_MS);
  g_assert_cmpuint (mpg_semaphore_get_value (sem), ==, 0);
  sem_release_ok (sem);
  g_assert_cmpuint (mpg_semaphore_get_value (sem), ==, 1);
  async_clear (&a);
}

static void
test_semaphore_acquire_async_cancel_late (Fixture       *f,
                                          gconstpointer  data)
{
  g_autoptr(MpgSemaphore) sem = track (f, new_semaphore (1, FALSE));
  g_autoptr(GCancellable) cancellable = g_cancellable_new ();
  Async a;

  g_test_summary ("acquire_async cancelled after its thread took the unit, before the "
                  "callback: either TRUE with the unit taken or CANCELLED with the unit "
                  "still there");

  async_init (&a);
  mpg_semaphore_acquire_async (sem, cancellable, sem_acquired_cb, &a);
  WAIT_UNTIL (mpg_semaphore_get_value (sem) == 0);
  g_cancellable_cancel (cancellable);
  async_run (&a);

  if (a.ok)
    {
      g_assert_no_error (a.error);
      sem_release_ok (sem);
    }
  else
    {
      g_assert_error (a.error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
      /* "Cancelling fails the call with CANCELLED, and no unit is taken". */
      g_assert_cmpuint (mpg_semaphore_get_value (sem), ==, 1);
    }
  async_clear (&a);
}

static void
event_waited_cb (GObject      *source,
                 GAsyncResult *result,
                 gpointer      user_data)
{
  Async *a = user_data;

  a->ok = mpg_event_wait_finish (MPG_EVENT (source), result, &a->error);
  async_done (a);
}

static gboolean
event_set_cb (gpointer user_data)
{
  mpg_event_set (user_data);
  return G_SOURCE_REMOVE;
}

static void
test_event_wait_async (Fixture       *f,
                       gconstpointer  data)
{
  g_autoptr(MpgEvent) event = track (f, new_event ());
  g_autoptr(GCancellable) cancellable = g_cancellable_new ();
  Async a;

  g_test_summary ("wait_async of an Event completes once it is set, the loop running "
                  "meanwhile, at once if it is set already; cancelled, it fails with "
                  "CANCELLED");

  async_init (&a);
  mpg_event_wait_async (event, NULL, event_waited_cb, &a);
  async_fire_at (&a, 10, event_set_cb, event);
  async_run (&a);
  g_assert_no_error (a.error);
  g_assert_true (a.ok);
  g_assert_cmpuint (a.ticks, >=, 10);
  async_clear (&a);

  async_init (&a);
  mpg_event_wait_async (event, NULL, event_waited_cb, &a);
  async_run (&a);
  g_assert_no_error (a.error);
  g_assert_true (a.ok);
  async_clear (&a);

  mpg_event_clear (event);
  async_init (&a);
  mpg_event_wait_async (event, cancellable, event_waited_cb, &a);
  async_fire_at (&a, 5, cancel_cb, cancellable);
  async_run (&a);
  g_assert_false (a.ok);
  g_assert_error (a.error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_assert_cmpint ((a.done_at - a.fired_at) / G_TIME_SPAN_MILLISECOND, <, PROMPT_MS);
  g_assert_false (mpg_event_is_set (event));
  async_clear (&a);
}

static void
cond_waited_cb (GObject      *source,
                GAsyncResult *result,
                gpointer      user_data)
{
  Async *a = user_data;
  MpgLock *lock = mpg_condition_get_lock (MPG_CONDITION (source));

  a->ok = mpg_condition_wait_finish (MPG_CONDITION (source), result, &a->error);
  a->mine = mpg_lock_is_mine (lock);
  a->count = mpg_lock_get_count (lock);
  async_done (a);
}

static void
test_condition_wait_async (Fixture       *f,
                           gconstpointer  data)
{
  g_autoptr(MpgCondition) cond = track (f, new_condition (NULL));
  g_autoptr(GCancellable) cancellable = g_cancellable_new ();
  CondShared c = { 0 };
  GThread *notifier;
  Async a;

  g_test_summary ("wait_async of a Condition releases the lock (held twice) at once, "
                  "and the callback runs once notified, with the lock held twice "
                  "again by the calling thread; cancelled, CANCELLED with the lock held "
                  "again; without the lock, INVALID_STATE");

  c.cond = cond;
  c.lock = mpg_condition_get_lock (cond);

  async_init (&a);
  mpg_condition_wait_async (cond, NULL, cond_waited_cb, &a);
  async_run (&a);
  g_assert_false (a.ok);
  g_assert_error (a.error, MPG_ERROR, MPG_ERROR_INVALID_STATE);
  async_clear (&a);

  acquire_ok (c.lock);
  acquire_ok (c.lock);
  async_init (&a);
  mpg_condition_wait_async (cond, NULL, cond_waited_cb, &a);
  g_assert_cmpuint (mpg_lock_get_count (c.lock), ==, 0);
  g_assert_false (mpg_lock_is_mine (c.lock));
  notifier = g_thread_new ("notifier", cond_notifier_thread, &c);
  async_run (&a);
  g_thread_join (notifier);

  g_assert_no_error (a.error);
  g_assert_true (a.ok);
  g_assert_true (a.mine);
  g_assert_cmpuint (a.count, ==, 2);
  release_ok (c.lock);
  release_ok (c.lock);
  async_clear (&a);

  /* Cancelled: CANCELLED, with the lock held again all the same. */
  acquire_ok (c.lock);
  async_init (&a);
  mpg_condition_wait_async (cond, cancellable, cond_waited_cb, &a);
  async_fire_at (&a, 5, cancel_cb, cancellable);
  async_run (&a);
  g_assert_false (a.ok);
  g_assert_error (a.error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_assert_cmpint ((a.done_at - a.fired_at) / G_TIME_SPAN_MILLISECOND, <, PROMPT_MS);
  g_assert_true (a.mine);
  g_assert_cmpuint (a.count, ==, 1);
  release_ok (c.lock);
  async_clear (&a);
}

static void
barrier_waited_cb (GObject      *source,
                   GAsyncResult *result,
                   gpointer      user_data)
{
  Async *a = user_data;

  a->index = mpg_barrier_wait_finish (MPG_BARRIER (source), result, &a->error);
  a->ok = a->index >= 0;
  async_done (a);
}

typedef struct
{
  MpgBarrier *barrier;
  Call        calls[2];
} LateParties;

static gboolean
start_parties_cb (gpointer user_data)
{
  LateParties *p = user_data;

  for (guint i = 0; i < G_N_ELEMENTS (p->calls); i++)
    call_start (&p->calls[i], "party", barrier_wait_thread, p->barrier, WAIT_MS, NULL);
  return G_SOURCE_REMOVE;
}

static void
test_barrier_wait_async (Fixture       *f,
                         gconstpointer  data)
{
  g_autoptr(MpgBarrier) barrier = track (f, new_barrier (3, -1));
  LateParties late = { 0 };
  guint seen = 0;
  Async a;

  g_test_summary ("wait_async at a Barrier completes when two threads arrive later, "
                  "the loop running meanwhile; the three indices differ");

  late.barrier = barrier;
  async_init (&a);
  mpg_barrier_wait_async (barrier, NULL, barrier_waited_cb, &a);
  async_fire_at (&a, 10, start_parties_cb, &late);
  async_run (&a);
  g_assert_no_error (a.error);
  g_assert_cmpint (a.index, >=, 0);
  g_assert_cmpuint (a.ticks, >=, 10);
  seen |= 1u << a.index;

  for (guint i = 0; i < G_N_ELEMENTS (late.calls); i++)
    {
      call_join (&late.calls[i]);
      g_assert_no_error (late.calls[i].error);
      g_assert_cmpint (late.calls[i].index, >=, 0);
      g_assert_cmpint (late.calls[i].index, <, 3);
      seen |= 1u << late.calls[i].index;
    }
  g_assert_cmpuint (seen, ==, 7);
  async_clear (&a);
}

/* Handles */

static void
test_handles_round_trip (Fixture       *f,
                         gconstpointer  data)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GUnixFDList) fds = g_unix_fd_list_new ();
  g_autoptr(MpgLock) lock = track (f, new_lock (FALSE));
  g_autoptr(MpgLock) rlock = track (f, new_lock (TRUE));
  g_autoptr(MpgSemaphore) sem = track (f, new_semaphore (3, TRUE));
  g_autoptr(MpgEvent) event = track (f, new_event ());
  g_autoptr(MpgCondition) cond = track (f, new_condition (NULL));
  g_autoptr(MpgBarrier) barrier = track (f, new_barrier (2, 1234));
  g_autoptr(MpgLock) lock2 = NULL;
  g_autoptr(MpgLock) rlock2 = NULL;
  g_autoptr(MpgSemaphore) sem2 = NULL;
  g_autoptr(MpgEvent) event2 = NULL;
  g_autoptr(MpgCondition) cond2 = NULL;
  g_autoptr(MpgBarrier) barrier2 = NULL;
  g_autoptr(GVariant) h_lock = NULL, h_rlock = NULL, h_sem = NULL;
  g_autoptr(GVariant) h_event = NULL, h_cond = NULL, h_barrier = NULL;
  MpgLock *cond_lock;
  Call call, call2;
  guint before;

  g_test_summary ("to_handle and new_from_handle of each kind, within the process, give "
                  "an object with the same state: what one does, the other sees");

  h_lock = mpg_lock_to_handle (lock, fds, &error);
  g_assert_no_error (error);
  h_rlock = mpg_lock_to_handle (rlock, fds, &error);
  g_assert_no_error (error);
  h_sem = mpg_semaphore_to_handle (sem, fds, &error);
  g_assert_no_error (error);
  h_event = mpg_event_to_handle (event, fds, &error);
  g_assert_no_error (error);
  h_cond = mpg_condition_to_handle (cond, fds, &error);
  g_assert_no_error (error);
  h_barrier = mpg_barrier_to_handle (barrier, fds, &error);
  g_assert_no_error (error);
  /* The condition's handle carries its lock's too. */
  g_assert_cmpint (g_unix_fd_list_get_length (fds), ==, 7);
  g_assert_true (g_variant_is_of_type (h_lock, G_VARIANT_TYPE ("(sh)")));
  g_assert_true (g_variant_is_of_type (h_cond, G_VARIANT_TYPE ("((sh)v)")));

  before = count_fds ();
  lock2 = track (f, mpg_lock_new_from_handle (h_lock, fds, &error));
  g_assert_no_error (error);
  rlock2 = track (f, mpg_lock_new_from_handle (h_rlock, fds, &error));
  g_assert_no_error (error);
  sem2 = track (f, mpg_semaphore_new_from_handle (h_sem, fds, &error));
  g_assert_no_error (error);
  event2 = track (f, mpg_event_new_from_handle (h_event, fds, &error));
  g_assert_no_error (error);
  cond2 = track (f, mpg_condition_new_from_handle (h_cond, fds, &error));
  g_assert_no_error (error);
  barrier2 = track (f, mpg_barrier_new_from_handle (h_barrier, fds, &error));
  g_assert_no_error (error);
  /* Each duplicates the fds it keeps. */
  g_assert_cmpuint (count_fds (), ==, before + 7);
  g_assert_cmpint (g_unix_fd_list_get_length (fds), ==, 7);

  /* Lock: held through one, held through the other. */
  g_assert_false (MPG_IS_RLOCK (lock2));
  acquire_ok (lock);
  g_assert_cmpuint (mpg_lock_get_count (lock2), ==, 1);
  g_assert_true (mpg_lock_is_mine (lock2));
  call_in_thread (&call, lock_acquire_thread, lock2, 0, NULL);
  g_assert_error (call.error, MPG_ERROR, MPG_ERROR_TIMEOUT);
  call_clear (&call);
  release_ok (lock2);
  g_assert_cmpuint (mpg_lock_get_count (lock), ==, 0);

  /* RLock: the same owner, whichever object. */
  g_assert_true (MPG_IS_RLOCK (rlock2));
  acquire_ok (rlock);
  acquire_ok (rlock2);
  g_assert_cmpuint (mpg_lock_get_count (rlock), ==, 2);
  release_ok (rlock);
  release_ok (rlock2);
  g_assert_cmpuint (mpg_lock_get_count (rlock2), ==, 0);

  /* Semaphore: the value and the bound. */
  g_assert_true (mpg_semaphore_get_bounded (sem2));
  g_assert_cmpuint (mpg_semaphore_get_max_value (sem2), ==, 3);
  sem_acquire_ok (sem2);
  g_assert_cmpuint (mpg_semaphore_get_value (sem), ==, 2);
  sem_release_ok (sem);
  g_assert_cmpuint (mpg_semaphore_get_value (sem2), ==, 3);
  g_assert_false (mpg_semaphore_release (sem2, &error));
  g_assert_error (error, MPG_ERROR, MPG_ERROR_INVALID_STATE);
  g_clear_error (&error);

  /* Event: a waiter on the copy, woken through the original. */
  call_start (&call, "waiter", event_wait_thread, event2, WAIT_MS, NULL);
  wait_until_sleeping (&call.tid);
  mpg_event_set (event);
  call_join (&call);
  g_assert_no_error (call.error);
  g_assert_true (call.ok);
  g_assert_true (mpg_event_is_set (event2));
  mpg_event_clear (event2);
  g_assert_false (mpg_event_is_set (event));

  /* Condition: the same lock state, and a waiter on the copy notified
   * through the original. */
  cond_lock = mpg_condition_get_lock (cond2);
  g_assert_true (MPG_IS_RLOCK (cond_lock));
  g_assert_true (cond_lock != mpg_condition_get_lock (cond));
  {
    CondShared c = { .cond = cond2, .lock = cond_lock, .depth = 1 };
    CondShared orig = { .cond = cond, .lock = mpg_condition_get_lock (cond) };
    CondWaiter waiter;

    start_waiter (&waiter, &c, 0);
    notify_ok (&orig, 1);
    g_thread_join (waiter.thread);
    g_assert_cmpint (c.woken, ==, 1);
  }
  acquire_ok (mpg_condition_get_lock (cond));
  g_assert_cmpuint (mpg_lock_get_count (cond_lock), ==, 1);
  g_assert_true (mpg_lock_is_mine (cond_lock));
  release_ok (cond_lock);

  /* Barrier: the parties and the timeout; one party through each. */
  g_assert_cmpuint (mpg_barrier_get_parties (barrier2), ==, 2);
  g_assert_cmpint (mpg_barrier_get_timeout (barrier2), ==, 1234);
  call_start (&call, "party", barrier_wait_thread, barrier, WAIT_MS, NULL);
  call_start (&call2, "party", barrier_wait_thread, barrier2, WAIT_MS, NULL);
  call_join (&call);
  call_join (&call2);
  g_assert_no_error (call.error);
  g_assert_no_error (call2.error);
  g_assert_cmpint (call.index + call2.index, ==, 1);

  g_clear_object (&lock2);
  g_clear_object (&rlock2);
  g_clear_object (&sem2);
  g_clear_object (&event2);
  g_clear_object (&cond2);
  g_clear_object (&barrier2);
  g_assert_cmpuint (count_fds (), ==, before);
}

/* A memfd of @size bytes holding a copy of the first page of @source (the
 * primitive's memory), with @seals added. */
static int
copy_memfd (int      source,
            gsize    size,
            gboolean allow_sealing,
            int      seals)
{
  guint8 page[MPG_SYNC_SIZE];
  int fd;

  g_assert_cmpint (pread (source, page, sizeof page, 0), ==, sizeof page);
  fd = memfd_create ("hostile", MFD_CLOEXEC | (allow_sealing ? MFD_ALLOW_SEALING : 0));
  g_assert_cmpint (fd, >=, 0);
  g_assert_cmpint (ftruncate (fd, size), ==, 0);
  if (size > 0)
    g_assert_cmpint (pwrite (fd, page, MIN (size, sizeof page), 0), ==, MIN (size, sizeof page));
  if (seals != 0)
    g_assert_cmpint (fcntl (fd, F_ADD_SEALS, seals), ==, 0);
  return fd;
}

/* A list holding @fd only (closes @fd). */
static GUnixFDList *
list_of (int fd)
{
  g_assert_cmpint (fd, >=, 0);
  return g_unix_fd_list_new_from_array (&fd, 1);
}

typedef enum
{
  AS_LOCK = 1 << 0,
  AS_SEMAPHORE = 1 << 1,
  AS_EVENT = 1 << 2,
  AS_BARRIER = 1 << 3,
  AS_CONDITION = 1 << 4,
  AS_ALL = 0x1f,
} Kinds;

/* Every new_from_handle in @kinds refuses @handle (a floating value or a
 * reference, consumed) with INVALID_ARGUMENT. */
static void
assert_refused (GVariant    *handle,
                GUnixFDList *fds,
                Kinds        kinds)
{
  g_autoptr(GVariant) sunk = g_variant_take_ref (handle);

  if (kinds & AS_LOCK)
    {
      g_autoptr(GError) error = NULL;
      g_autoptr(MpgLock) o = mpg_lock_new_from_handle (sunk, fds, &error);

      g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
      g_assert_null (o);
    }
  if (kinds & AS_SEMAPHORE)
    {
      g_autoptr(GError) error = NULL;
      g_autoptr(MpgSemaphore) o = mpg_semaphore_new_from_handle (sunk, fds, &error);

      g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
      g_assert_null (o);
    }
  if (kinds & AS_EVENT)
    {
      g_autoptr(GError) error = NULL;
      g_autoptr(MpgEvent) o = mpg_event_new_from_handle (sunk, fds, &error);

      g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
      g_assert_null (o);
    }
  if (kinds & AS_BARRIER)
    {
      g_autoptr(GError) error = NULL;
      g_autoptr(MpgBarrier) o = mpg_barrier_new_from_handle (sunk, fds, &error);

      g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
      g_assert_null (o);
    }
  if (kinds & AS_CONDITION)
    {
      g_autoptr(GError) error = NULL;
      g_autoptr(MpgCondition) o = mpg_condition_new_from_handle (sunk, fds, &error);

      g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
      g_assert_null (o);
    }
}

#define SIMPLE (AS_LOCK | AS_SEMAPHORE | AS_EVENT | AS_BARRIER)

static void
test_handles_hostile (Fixture       *f,
                      gconstpointer  data)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(MpgLock) lock = track (f, new_lock (FALSE));
  g_autoptr(MpgEvent) event = track (f, new_event ());
  g_autoptr(MpgBarrier) barrier = track (f, new_barrier (2, -1));
  g_autoptr(GUnixFDList) lock_fds = g_unix_fd_list_new ();
  g_autoptr(GUnixFDList) event_fds = g_unix_fd_list_new ();
  g_autoptr(GUnixFDList) barrier_fds = g_unix_fd_list_new ();
  g_autoptr(MpgCondition) cond = track (f, new_condition (NULL));
  g_autoptr(GUnixFDList) cond_fds = g_unix_fd_list_new ();
  g_autoptr(GVariant) h_lock = NULL, h_event = NULL, h_barrier = NULL;
  g_autoptr(GVariant) h_cond = NULL, h_cond_own = NULL, h_cond_lock = NULL, h_event2 = NULL;
  int lock_fd, barrier_fd, pipe_fds[2];

  g_test_summary ("new_from_handle refuses hostile handles with INVALID_ARGUMENT: wrong "
                  "type, unknown kind, fd out of range or missing, a pipe, unsealed or "
                  "wrongly sized memory, another kind's handle; no fd is leaked");

  h_lock = mpg_lock_to_handle (lock, lock_fds, &error);
  g_assert_no_error (error);
  h_event = mpg_event_to_handle (event, event_fds, &error);
  g_assert_no_error (error);
  h_barrier = mpg_barrier_to_handle (barrier, barrier_fds, &error);
  g_assert_no_error (error);
  h_cond = mpg_condition_to_handle (cond, cond_fds, &error);
  g_assert_no_error (error);
  lock_fd = g_unix_fd_list_peek_fds (lock_fds, NULL)[0];
  barrier_fd = g_unix_fd_list_peek_fds (barrier_fds, NULL)[0];

  /* Wrong variant types. */
  assert_refused (g_variant_new ("(si)", "lock", 0), lock_fds, AS_ALL);
  assert_refused (g_variant_new_string ("lock"), lock_fds, AS_ALL);
  assert_refused (g_variant_new ("(hs)", 0, "lock"), lock_fds, AS_ALL);
  assert_refused (g_variant_new ("(@(sh)v)", h_lock, g_variant_new_int32 (0)), lock_fds,
                  SIMPLE);
  assert_refused (g_variant_ref (h_lock), lock_fds, AS_CONDITION);
  /* A condition's handle whose lock part is not a lock handle. */
  assert_refused (g_variant_new ("(@(sh)v)", g_variant_new ("(sh)", "condition", 0),
                                 g_variant_new_int32 (0)), lock_fds, AS_CONDITION);

  /* Unknown kinds. */
  assert_refused (g_variant_new ("(sh)", "mutex", 0), lock_fds, SIMPLE);
  assert_refused (g_variant_new ("(sh)", "", 0), lock_fds, SIMPLE);
  assert_refused (g_variant_new ("(sh)", "LOCK", 0), lock_fds, SIMPLE);

  /* Indexes outside the list, and no list at all. */
  assert_refused (g_variant_new ("(sh)", "lock", 1), lock_fds, SIMPLE);
  assert_refused (g_variant_new ("(sh)", "lock", -1), lock_fds, SIMPLE);
  assert_refused (g_variant_new ("(sh)", "lock", G_MAXINT32), lock_fds, SIMPLE);
  assert_refused (g_variant_ref (h_lock), NULL, AS_LOCK);
  assert_refused (g_variant_ref (h_event), NULL, AS_EVENT);

  /* An fd that is not a memfd: a pipe, /dev/null. */
  g_assert_true (g_unix_open_pipe (pipe_fds, FD_CLOEXEC, NULL));
  close (pipe_fds[1]);
  {
    g_autoptr(GUnixFDList) fds = list_of (pipe_fds[0]);

    assert_refused (g_variant_new ("(sh)", "lock", 0), fds, AS_LOCK);
    assert_refused (g_variant_new ("(sh)", "event", 0), fds, AS_EVENT);
  }
  {
    g_autoptr(GUnixFDList) fds = list_of (open ("/dev/null", O_RDWR | O_CLOEXEC));

    assert_refused (g_variant_new ("(sh)", "lock", 0), fds, AS_LOCK);
  }

  /* A lock's very page, in memory that a peer could shrink: unsealed (with
   * sealing allowed, and without), or only partly sealed. */
  {
    g_autoptr(GUnixFDList) fds = list_of (copy_memfd (lock_fd, MPG_SYNC_SIZE, TRUE, 0));

    assert_refused (g_variant_new ("(sh)", "lock", 0), fds, AS_LOCK);
  }
  {
    g_autoptr(GUnixFDList) fds = list_of (copy_memfd (lock_fd, MPG_SYNC_SIZE, FALSE, 0));

    assert_refused (g_variant_new ("(sh)", "lock", 0), fds, AS_LOCK);
  }
  {
    g_autoptr(GUnixFDList) fds = list_of (copy_memfd (lock_fd, MPG_SYNC_SIZE, TRUE,
                                                      F_SEAL_SHRINK));

    assert_refused (g_variant_new ("(sh)", "lock", 0), fds, AS_LOCK);
  }

  /* Sealed, but of the wrong size: larger, smaller, empty. */
  for (guint i = 0; i < 3; i++)
    {
      static const gsize sizes[] = { 2 * MPG_SYNC_SIZE, MPG_SYNC_SIZE / 2, 0 };
      g_autoptr(GUnixFDList) fds = list_of (copy_memfd (lock_fd, sizes[i], TRUE,
                                                        F_SEAL_SHRINK | F_SEAL_GROW));

      assert_refused (g_variant_new ("(sh)", "lock", 0), fds, AS_LOCK);
    }

  /* Sealed and of the right size, but not a primitive's page: zeros. */
  {
    g_autoptr(GUnixFDList) fds = NULL;
    guint8 zeros[MPG_SYNC_SIZE] = { 0 };
    int fd = memfd_create ("hostile", MFD_CLOEXEC | MFD_ALLOW_SEALING);

    g_assert_cmpint (fd, >=, 0);
    g_assert_cmpint (pwrite (fd, zeros, sizeof zeros, 0), ==, sizeof zeros);
    g_assert_cmpint (fcntl (fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW), ==, 0);
    fds = list_of (fd);
    assert_refused (g_variant_new ("(sh)", "lock", 0), fds, AS_LOCK);
  }

  /* A barrier's page without parties. */
  {
    g_autoptr(GUnixFDList) fds = NULL;
    guint32 zero = 0;
    int fd = copy_memfd (barrier_fd, MPG_SYNC_SIZE, TRUE, 0);

    /* The parties are the first field of a barrier's state. */
    g_assert_cmpint (pwrite (fd, &zero, sizeof zero, MPG_SYNC_STATE_OFFSET), ==, sizeof zero);
    g_assert_cmpint (fcntl (fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW), ==, 0);
    fds = list_of (fd);
    assert_refused (g_variant_new ("(sh)", "barrier", 0), fds, AS_BARRIER);
  }

  /* Another kind's handle, given as is or with its kind renamed. */
  assert_refused (g_variant_ref (h_lock), lock_fds, AS_SEMAPHORE | AS_EVENT | AS_BARRIER);
  assert_refused (g_variant_ref (h_event), event_fds, AS_LOCK | AS_SEMAPHORE | AS_BARRIER);
  assert_refused (g_variant_ref (h_barrier), barrier_fds, AS_LOCK | AS_SEMAPHORE | AS_EVENT);
  assert_refused (g_variant_new ("(sh)", "event", 0), lock_fds, SIMPLE);
  assert_refused (g_variant_new ("(sh)", "rlock", 0), lock_fds, SIMPLE);
  assert_refused (g_variant_new ("(sh)", "lock", 0), event_fds, SIMPLE);
  assert_refused (g_variant_new ("(@(sh)v)", h_lock, h_lock), lock_fds, AS_CONDITION);

  /* A condition's handle whose lock is an event, or whose own part is its
   * lock. */
  h_event2 = mpg_event_to_handle (event, cond_fds, &error);
  g_assert_no_error (error);
  g_assert_cmpint (g_unix_fd_list_get_length (cond_fds), ==, 3);
  g_variant_get (h_cond, "(@(sh)v)", &h_cond_own, &h_cond_lock);
  assert_refused (g_variant_new ("(@(sh)v)", h_cond_own, h_event2), cond_fds, AS_CONDITION);
  assert_refused (g_variant_new ("(@(sh)v)", h_cond_own, g_variant_new ("(sh)", "rlock", 2)),
                  cond_fds, AS_CONDITION);
  assert_refused (g_variant_new ("(@(sh)v)", h_cond_lock, h_cond_lock), cond_fds, AS_CONDITION);
  assert_refused (g_variant_ref (h_cond_own), cond_fds, SIMPLE);

  /* Through all of it, the real ones still work. */
  {
    g_autoptr(MpgLock) again = mpg_lock_new_from_handle (h_lock, lock_fds, &error);
    g_autoptr(MpgCondition) cond_again = mpg_condition_new_from_handle (h_cond, cond_fds,
                                                                        &error);

    g_assert_no_error (error);
    acquire_ok (again);
    g_assert_cmpuint (mpg_lock_get_count (lock), ==, 1);
    release_ok (lock);
    g_assert_nonnull (cond_again);
  }
}

static void
test_no_dev_shm (Fixture       *f,
                 gconstpointer  data)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(MpgLock) lock = NULL;
  g_autoptr(MpgRLock) rlock = NULL;
  g_autoptr(MpgSemaphore) sem = NULL;
  g_autoptr(MpgEvent) event = NULL;
  g_autoptr(MpgCondition) cond = NULL;
  g_autoptr(MpgBarrier) barrier = NULL;
  g_autofree char *before = list_dev_shm ();
  g_autofree char *during = NULL;
  guint n_fds = count_fds ();

  g_test_summary ("The primitives leave nothing in /dev/shm, even while they exist, "
                  "and cost one fd each (two for a condition with its own lock)");

  lock = track (f, new_lock (FALSE));
  rlock = track (f, mpg_rlock_new (&error));
  g_assert_no_error (error);
  sem = track (f, new_semaphore (1, FALSE));
  event = track (f, new_event ());
  cond = track (f, new_condition (NULL));
  barrier = track (f, new_barrier (1, -1));
  g_assert_cmpuint (count_fds (), ==, n_fds + 7);

  acquire_ok (lock);
  acquire_ok (MPG_LOCK (rlock));
  sem_acquire_ok (sem);
  mpg_event_set (event);
  g_assert_cmpint (mpg_barrier_wait (barrier, WAIT_MS, NULL, &error), ==, 0);
  g_assert_no_error (error);

  during = list_dev_shm ();
  g_assert_cmpstr (during, ==, before);

  release_ok (lock);
  release_ok (MPG_LOCK (rlock));
  sem_release_ok (sem);
}

int
main (int   argc,
      char *argv[])
{
  static const struct
  {
    const char *path;
    void (*func) (Fixture *, gconstpointer);
  } tests[] = {
    { "/Mpg/Lock/basic", test_lock_basic },
    { "/Mpg/Lock/timeout-zero", test_lock_timeout_zero },
    { "/Mpg/Lock/timeout", test_lock_timeout },
    { "/Mpg/Lock/release-other-thread", test_lock_release_other_thread },
    { "/Mpg/Lock/is-mine", test_lock_is_mine },
    { "/Mpg/Lock/blocks", test_lock_blocks },
    { "/Mpg/Lock/cancel", test_lock_cancel },
    { "/Mpg/Lock/acquire-async", test_lock_acquire_async },
    { "/Mpg/Lock/acquire-async-cancel", test_lock_acquire_async_cancel },
    { "/Mpg/Lock/acquire-async-cancel-late", test_lock_acquire_async_cancel_late },
    { "/Mpg/RLock/recursion", test_rlock_recursion },
    { "/Mpg/RLock/not-owner", test_rlock_not_owner },
    { "/Mpg/RLock/blocks", test_rlock_blocks },
    { "/Mpg/RLock/acquire-async", test_rlock_acquire_async },
    { "/Mpg/Semaphore/values", test_semaphore_values },
    { "/Mpg/Semaphore/bounded", test_semaphore_bounded },
    { "/Mpg/Semaphore/bounded-zero", test_semaphore_bounded_zero },
    { "/Mpg/Semaphore/wakes", test_semaphore_wakes },
    { "/Mpg/Semaphore/threads", test_semaphore_threads },
    { "/Mpg/Semaphore/acquire-async", test_semaphore_acquire_async },
    { "/Mpg/Semaphore/acquire-async-cancel-late", test_semaphore_acquire_async_cancel_late },
    { "/Mpg/Event/basic", test_event_basic },
    { "/Mpg/Event/wakes", test_event_wakes },
    { "/Mpg/Event/set-clear", test_event_set_clear },
    { "/Mpg/Event/many-waiters", test_event_many_waiters },
    { "/Mpg/Event/wait-async", test_event_wait_async },
    { "/Mpg/Condition/default-lock", test_condition_default_lock },
    { "/Mpg/Condition/not-held", test_condition_not_held },
    { "/Mpg/Condition/rlock-depth", test_condition_rlock_depth },
    { "/Mpg/Condition/given-lock", test_condition_given_lock },
    { "/Mpg/Condition/notify-one", test_condition_notify_one },
    { "/Mpg/Condition/notify-all", test_condition_notify_all },
    { "/Mpg/Condition/wait-for", test_condition_wait_for },
    { "/Mpg/Condition/timeout", test_condition_timeout },
    { "/Mpg/Condition/wait-async", test_condition_wait_async },
    { "/Mpg/Barrier/rounds", test_barrier_rounds },
    { "/Mpg/Barrier/action-fails", test_barrier_action_fails },
    { "/Mpg/Barrier/timeout", test_barrier_timeout },
    { "/Mpg/Barrier/abort-reset", test_barrier_abort_reset },
    { "/Mpg/Barrier/wait-async", test_barrier_wait_async },
    { "/Mpg/Sync/handles", test_handles_round_trip },
    { "/Mpg/Sync/hostile-handles", test_handles_hostile },
    { "/Mpg/Sync/no-dev-shm", test_no_dev_shm },
  };

  g_test_init (&argc, &argv, NULL);
  under_valgrind = g_getenv ("MPG_TEST_VALGRIND") != NULL;

  /* Made now, so that their fds are not counted as a test's leak: the
   * default main context's wake-up fd, and GLib's worker context, which
   * GTask's class starts. */
  (void) g_main_context_default ();
  g_type_ensure (G_TYPE_TASK);

  for (guint i = 0; i < G_N_ELEMENTS (tests); i++)
    g_test_add (tests[i].path, Fixture, NULL, fixture_setup, tests[i].func, fixture_teardown);

  return g_test_run ();
}
