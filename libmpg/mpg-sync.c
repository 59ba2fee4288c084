/* mpg-sync.c: the shared page behind every synchronization primitive
 *
 * Copyright 2026 The libmpg authors
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "mpg-error.h"
#include "mpg-sync-private.h"

#define SYNC_SEALS (F_SEAL_SHRINK | F_SEAL_GROW)

/* A sleeper looks at whether the holders it waits for are alive after
 * this long, then twice as long each time, up to SLICE_MAX: a dead holder
 * is noticed within a second, and a long wait costs one wake-up a second. */
#define SLICE_MIN (20 * G_TIME_SPAN_MILLISECOND)
#define SLICE_MAX (1000 * G_TIME_SPAN_MILLISECOND)

/* How many times a waiter looks for a change before it sleeps. */
#define SPIN_COUNT 200

static const char * const kind_names[] = {
  NULL, "lock", "rlock", "semaphore", "event", "condition", "barrier",
};

const char *
_mpg_sync_kind_name (MpgSyncKind kind)
{
  g_return_val_if_fail (kind >= MPG_SYNC_LOCK && kind <= MPG_SYNC_BARRIER, NULL);
  return kind_names[kind];
}

static void
futex_wake_all (guint32 *word)
{
  syscall (SYS_futex, word, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

static MpgSync *
sync_map (int          fd,
          MpgSyncKind  kind,
          GError     **error)
{
  MpgSync *sync;
  gpointer map;

  map = mmap (NULL, MPG_SYNC_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (map == MAP_FAILED)
    {
      int saved_errno = errno;

      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved_errno),
                   "Cannot map a %s's shared memory: %s",
                   kind_names[kind], g_strerror (saved_errno));
      return NULL;
    }

  sync = g_new0 (MpgSync, 1);
  sync->fd = fd;
  sync->kind = kind;
  sync->header = map;
  sync->state = (guint8 *) map + MPG_SYNC_STATE_OFFSET;
  return sync;
}

MpgSync *
_mpg_sync_new (MpgSyncKind   kind,
               GError      **error)
{
  pthread_mutexattr_t attr;
  MpgSync *sync;
  int fd;

  g_return_val_if_fail (kind >= MPG_SYNC_LOCK && kind <= MPG_SYNC_BARRIER, NULL);

  /* A memfd, not a named semaphore or a file in /dev/shm: nothing is left
   * behind when every process that had it is gone, however it ended. */
  fd = memfd_create (kind_names[kind], MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0 ||
      ftruncate (fd, MPG_SYNC_SIZE) < 0 ||
      fcntl (fd, F_ADD_SEALS, SYNC_SEALS | F_SEAL_SEAL) < 0)
    {
      int saved_errno = errno;

      if (fd >= 0)
        close (fd);
      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved_errno),
                   "Cannot create a %s's shared memory: %s",
                   kind_names[kind], g_strerror (saved_errno));
      return NULL;
    }

  sync = sync_map (fd, kind, error);
  if (sync == NULL)
    {
      close (fd);
      return NULL;
    }

  /* Robust: a process killed while it holds the guard makes the next
   * pthread_mutex_lock() return EOWNERDEAD instead of hanging forever. */
  pthread_mutexattr_init (&attr);
  pthread_mutexattr_setpshared (&attr, PTHREAD_PROCESS_SHARED);
  pthread_mutexattr_setrobust (&attr, PTHREAD_MUTEX_ROBUST);
  pthread_mutex_init (&sync->header->guard, &attr);
  pthread_mutexattr_destroy (&attr);

  sync->header->kind = kind;
  sync->header->magic = MPG_SYNC_MAGIC;
  return sync;
}

void
_mpg_sync_free (MpgSync *sync)
{
  if (sync == NULL)
    return;

  munmap (sync->header, MPG_SYNC_SIZE);
  close (sync->fd);
  g_free (sync);
}

GVariant *
_mpg_sync_to_handle (MpgSync      *sync,
                     GUnixFDList  *fd_list,
                     GError      **error)
{
  gint index;

  index = g_unix_fd_list_append (fd_list, sync->fd, error);
  if (index < 0)
    return NULL;

  return g_variant_ref_sink (g_variant_new ("(sh)", kind_names[sync->kind], index));
}

static gboolean
invalid_handle (GError     **error,
                const char  *why)
{
  g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
               "Not a synchronization primitive's handle: %s", why);
  return FALSE;
}

MpgSync *
_mpg_sync_new_from_handle (GVariant     *handle,
                           GUnixFDList  *fd_list,
                           GError      **error)
{
  g_autoptr(GVariant) sunk = NULL;
  const char *name;
  MpgSyncKind kind = 0;
  gint32 index;
  MpgSync *sync;
  struct stat st;
  int fd, seals;

  g_return_val_if_fail (handle != NULL, NULL);
  g_return_val_if_fail (fd_list == NULL || G_IS_UNIX_FD_LIST (fd_list), NULL);

  sunk = g_variant_ref_sink (handle);
  if (!g_variant_is_of_type (handle, G_VARIANT_TYPE ("(sh)")))
    {
      invalid_handle (error, "its type is not (sh)");
      return NULL;
    }

  g_variant_get (handle, "(&sh)", &name, &index);
  for (guint i = MPG_SYNC_LOCK; i <= MPG_SYNC_BARRIER; i++)
    if (g_str_equal (name, kind_names[i]))
      kind = i;
  if (kind == 0)
    {
      invalid_handle (error, "unknown kind");
      return NULL;
    }
  if (fd_list == NULL || index < 0 || index >= g_unix_fd_list_get_length (fd_list))
    {
      invalid_handle (error, "its fd is not in the list");
      return NULL;
    }

  fd = g_unix_fd_list_get (fd_list, index, error);
  if (fd < 0)
    return NULL;

  /* Unsealed, a peer could shrink the memory under our mapping and make
   * us fault; any other file is not ours. */
  seals = fcntl (fd, F_GET_SEALS);
  if (fstat (fd, &st) < 0 || !S_ISREG (st.st_mode) || st.st_size != MPG_SYNC_SIZE ||
      seals < 0 || (seals & SYNC_SEALS) != SYNC_SEALS)
    {
      close (fd);
      invalid_handle (error, "its memory is not a primitive's");
      return NULL;
    }

  sync = sync_map (fd, kind, error);
  if (sync == NULL)
    {
      close (fd);
      return NULL;
    }

  if (g_atomic_int_get (&sync->header->magic) != MPG_SYNC_MAGIC ||
      g_atomic_int_get (&sync->header->kind) != kind)
    {
      _mpg_sync_free (sync);
      invalid_handle (error, "its memory is not a primitive's of that kind");
      return NULL;
    }

  return sync;
}

gboolean
_mpg_sync_lock (MpgSync *sync)
{
  int r = pthread_mutex_lock (&sync->header->guard);

  if (r == EOWNERDEAD)
    {
      /* The holder died inside a few instructions that change the state:
       * the caller repairs what it can, and the guard stays usable. */
      pthread_mutex_consistent (&sync->header->guard);
      return TRUE;
    }

  /* ENOTRECOVERABLE cannot happen: every EOWNERDEAD is made consistent. */
  g_assert (r == 0);
  return FALSE;
}

void
_mpg_sync_changed (MpgSync *sync)
{
  __atomic_add_fetch (&sync->header->seq, 1, __ATOMIC_SEQ_CST);
}

void
_mpg_sync_unlock (MpgSync *sync)
{
  guint32 sleepers = sync->header->n_sleepers;

  pthread_mutex_unlock (&sync->header->guard);

  /* A sleeper counted itself and read seq under the guard, so either it
   * sees the new seq before it sleeps, or it is woken here. Waking when
   * nothing changed costs sleepers a look, nothing more. */
  if (sleepers > 0)
    futex_wake_all (&sync->header->seq);
}

static void
wait_cancelled_cb (GCancellable *cancellable,
                   gpointer      user_data)
{
  MpgSync *sync = user_data;

  /* Bump seq so that a waiter about to sleep does not, then wake all. */
  __atomic_add_fetch (&sync->header->seq, 1, __ATOMIC_SEQ_CST);
  futex_wake_all (&sync->header->seq);
}

void
_mpg_sync_wait_init (MpgSyncWait  *w,
                     MpgSync      *sync,
                     gint          timeout_msec,
                     GCancellable *cancellable)
{
  /* The clock is read at the first wait: most calls do not wait, and
   * reading it costs as much as the rest of an uncontended acquire. */
  memset (w, 0, sizeof *w);
  w->sync = sync;
  w->timeout_msec = timeout_msec;
  w->slice = SLICE_MIN;
  if (cancellable != NULL)
    {
      w->cancellable = g_object_ref (cancellable);
      w->cancel_id = g_cancellable_connect (cancellable, G_CALLBACK (wait_cancelled_cb),
                                            sync, NULL);
    }
}

void
_mpg_sync_wait_clear (MpgSyncWait *w)
{
  if (w->cancellable != NULL)
    {
      g_cancellable_disconnect (w->cancellable, w->cancel_id);
      g_clear_object (&w->cancellable);
    }
}

/* The bookkeeping of a wait: FALSE with an error when it must end, TRUE
 * with w->check_due set when it is time to look at the holders, else TRUE
 * with *until, when the sleep must end at the latest. */
static gboolean
wait_begin (MpgSyncWait  *w,
            gint64       *until,
            GError      **error)
{
  gint64 now;

  w->check_due = FALSE;
  *until = 0;

  if (g_cancellable_set_error_if_cancelled (w->cancellable, error))
    return FALSE;

  now = g_get_monotonic_time ();
  if (w->deadline == 0)
    {
      w->deadline = w->timeout_msec < 0 ? -1 : now + (gint64) w->timeout_msec * G_TIME_SPAN_MILLISECOND;
      w->next_check = now + w->slice;
    }
  if (w->deadline >= 0 && now >= w->deadline)
    {
      g_set_error_literal (error, MPG_ERROR, MPG_ERROR_TIMEOUT, "Timed out");
      return FALSE;
    }
  if (now >= w->next_check)
    {
      w->slice = MIN (w->slice * 2, SLICE_MAX);
      w->next_check = now + w->slice;
      w->check_due = TRUE;
      return TRUE;
    }

  *until = w->next_check;
  if (w->deadline >= 0)
    *until = MIN (*until, w->deadline);
  return TRUE;
}

/* A holder on another CPU often releases within a few microseconds: spin
 * a little before paying for a sleep and a wake-up. TRUE if seq moved. */
static gboolean
spin_on (guint32 *word,
         guint32  seq)
{
  for (guint i = 0; i < SPIN_COUNT; i++)
    {
      if (__atomic_load_n (word, __ATOMIC_RELAXED) != seq)
        return TRUE;
#if defined(__x86_64__) || defined(__i386__)
      __builtin_ia32_pause ();
#endif
    }
  return FALSE;
}

static void
futex_sleep (guint32 *word,
             guint32  seq,
             gint64   until)
{
  gint64 left = until - g_get_monotonic_time ();
  struct timespec ts;

  if (left <= 0)
    return;
  ts.tv_sec = left / G_USEC_PER_SEC;
  ts.tv_nsec = (left % G_USEC_PER_SEC) * 1000;
  /* EINTR, EAGAIN (seq moved on) and ETIMEDOUT all mean: look again. */
  syscall (SYS_futex, word, FUTEX_WAIT, seq, &ts, NULL, 0);
}

gboolean
_mpg_sync_wait (MpgSyncWait  *w,
                GError      **error)
{
  MpgSyncHeader *header = w->sync->header;
  gint64 until;
  guint32 seq;

  if (!wait_begin (w, &until, error))
    return FALSE;
  if (w->check_due)
    return TRUE;

  seq = __atomic_load_n (&header->seq, __ATOMIC_SEQ_CST);
  pthread_mutex_unlock (&header->guard);

  if (spin_on (&header->seq, seq))
    {
      _mpg_sync_lock (w->sync);
      return TRUE;
    }

  _mpg_sync_lock (w->sync);
  if (__atomic_load_n (&header->seq, __ATOMIC_SEQ_CST) != seq)
    return TRUE;
  header->n_sleepers++;
  pthread_mutex_unlock (&header->guard);

  futex_sleep (&header->seq, seq, until);

  _mpg_sync_lock (w->sync);
  header->n_sleepers--;
  return TRUE;
}

gboolean
_mpg_sync_sleep (MpgSyncWait  *w,
                 guint32       seq,
                 GError      **error)
{
  MpgSyncHeader *header = w->sync->header;
  gint64 until;

  if (!wait_begin (w, &until, error))
    return FALSE;
  if (w->check_due || spin_on (&header->seq, seq))
    return TRUE;

  futex_sleep (&header->seq, seq, until);
  return TRUE;
}

guint32
_mpg_sync_seq (MpgSync *sync)
{
  return __atomic_load_n (&sync->header->seq, __ATOMIC_SEQ_CST);
}

void
_mpg_sync_bump (MpgSync *sync)
{
  __atomic_add_fetch (&sync->header->seq, 1, __ATOMIC_SEQ_CST);
  futex_wake_all (&sync->header->seq);
}

/* The start time of a process in clock ticks after boot (field 22 of
 * /proc/PID/stat), and whether it is a zombie; FALSE if it is gone or
 * /proc cannot tell. */
static gboolean
read_proc_stat (gint32   pid,
                guint64 *out_start,
                gboolean *out_zombie,
                gboolean *out_gone)
{
  char path[64], buf[1024];
  const char *p;
  ssize_t n;
  int fd;

  *out_gone = FALSE;
  g_snprintf (path, sizeof path, "/proc/%d/stat", pid);
  fd = open (path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    {
      *out_gone = (errno == ENOENT);
      return FALSE;
    }
  n = read (fd, buf, sizeof buf - 1);
  close (fd);
  if (n <= 0)
    {
      *out_gone = (n == 0 || errno == ESRCH);
      return FALSE;
    }
  buf[n] = '\0';

  /* The command name may hold spaces and parentheses: skip to the last ')'. */
  p = strrchr (buf, ')');
  if (p == NULL || p[1] != ' ')
    return FALSE;
  p += 2;
  *out_zombie = (*p == 'Z' || *p == 'X' || *p == 'x');

  /* The state is field 3; the start time is field 22. */
  for (int field = 3; field < 22; field++)
    {
      p = strchr (p, ' ');
      if (p == NULL)
        return FALSE;
      p++;
    }
  *out_start = g_ascii_strtoull (p, NULL, 10);
  return TRUE;
}

static gint32 self_pid;
static guint64 self_start;
G_LOCK_DEFINE_STATIC (self);

/* Who the calling thread is: its process's pid and start time, cached
 * (getpid() is a system call, which would cost more than the rest of an
 * uncontended acquire), and pthread_self(). A fork child has a new pid: the
 * generation, bumped after every fork() in the child, makes it look again. */
static gint fork_generation = 1;
static gint self_generation;

static void
sync_after_fork_in_child (void)
{
  fork_generation++;
}

void
_mpg_sync_self (MpgSyncOwner *out)
{
  static gsize registered = 0;
  gint generation = g_atomic_int_get (&fork_generation);

  out->padding = 0;
  out->thread = (guint64) pthread_self ();

  if (G_LIKELY (g_atomic_int_get (&self_generation) == generation))
    {
      out->pid = self_pid;
      out->start = self_start;
      return;
    }

  if (g_once_init_enter (&registered))
    {
      pthread_atfork (NULL, NULL, sync_after_fork_in_child);
      g_once_init_leave (&registered, 1);
    }

  G_LOCK (self);
  if (self_generation != generation)
    {
      gboolean zombie, gone;
      guint64 start = 0;
      gint32 pid = getpid ();

      /* Once per process. */
      if (!read_proc_stat (pid, &start, &zombie, &gone))
        start = 0;
      self_start = start;
      self_pid = pid;
      /* Published last: a thread that sees it sees the values. */
      g_atomic_int_set (&self_generation, generation);
    }
  out->pid = self_pid;
  out->start = self_start;
  G_UNLOCK (self);
}

gboolean
_mpg_sync_same_process (const MpgSyncOwner *a,
                        const MpgSyncOwner *b)
{
  return a->pid == b->pid && a->start == b->start;
}

gboolean
_mpg_sync_owner_alive (const MpgSyncOwner *owner)
{
  gboolean zombie = FALSE, gone = FALSE;
  guint64 start = 0;

  if (owner->pid <= 0)
    return FALSE;

  if (read_proc_stat (owner->pid, &start, &zombie, &gone))
    {
      /* A zombie holds nothing; a different start time is a new process
       * that was given the dead holder's pid. */
      if (zombie)
        return FALSE;
      return owner->start == 0 || start == owner->start;
    }

  /* No /proc, or one that hides other users' processes: only whether the
   * pid exists at all (EPERM: it does). */
  return !(kill (owner->pid, 0) < 0 && errno == ESRCH);
}

/* Async waits run their blocking call in a thread of their own: they may
 * wait for as long as the user likes, which would starve GTask's pool. */

typedef struct
{
  GTask               *task;
  MpgSyncBlockingFunc  func;
  gpointer             data;
  GDestroyNotify       data_free;
} RunData;

static gpointer
run_thread (gpointer user_data)
{
  RunData *run = user_data;
  GError *error = NULL;
  gpointer source = g_task_get_source_object (run->task);
  gssize value;

  value = run->func (source, run->data, g_task_get_cancellable (run->task), &error);
  if (value < 0)
    g_task_return_error (run->task, error);
  else
    g_task_return_int (run->task, value);

  if (run->data_free != NULL)
    run->data_free (run->data);
  g_object_unref (run->task);
  g_free (run);
  return NULL;
}

void
_mpg_sync_run_async (gpointer             source,
                     gpointer             source_tag,
                     const char          *name,
                     MpgSyncBlockingFunc  func,
                     gpointer             data,
                     GDestroyNotify       data_free,
                     GCancellable        *cancellable,
                     GAsyncReadyCallback  callback,
                     gpointer             user_data)
{
  g_autoptr(GError) error = NULL;
  GThread *thread;
  RunData *run;
  GTask *task;

  task = g_task_new (source, cancellable, callback, user_data);
  g_task_set_source_tag (task, source_tag);
  g_task_set_name (task, name);
  /* The thread returns what happened: a cancellation that comes after it
   * took the lock or the unit must not hide that it did. */
  g_task_set_check_cancellable (task, FALSE);

  run = g_new0 (RunData, 1);
  run->task = task;
  run->func = func;
  run->data = data;
  run->data_free = data_free;

  thread = g_thread_try_new (name, run_thread, run, &error);
  if (thread == NULL)
    {
      g_task_return_error (task, g_steal_pointer (&error));
      if (data_free != NULL)
        data_free (data);
      g_object_unref (task);
      g_free (run);
      return;
    }
  g_thread_unref (thread);
}

gssize
_mpg_sync_run_finish (gpointer       source,
                      GAsyncResult  *result,
                      gpointer       source_tag,
                      GError       **error)
{
  g_return_val_if_fail (g_task_is_valid (result, source), -1);
  g_return_val_if_fail (g_task_get_source_tag (G_TASK (result)) == source_tag, -1);

  return g_task_propagate_int (G_TASK (result), error);
}
