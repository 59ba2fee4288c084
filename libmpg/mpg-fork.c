/* mpg-fork.c
 *
 * Copyright 2026 The libmpg authors
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include <gio/gio.h>
#include <glib-unix.h>

#include "mpg-fork-private.h"

#ifndef SYS_pidfd_open
# define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_send_signal
# define SYS_pidfd_send_signal 424
#endif

/* fork_lock serialises forks with the creation and closing of the library's
 * fds, so that no child is ever forked holding a half-registered fd, and
 * guards the registry and the fork function. */
static GMutex fork_lock;
/* A plain array: a child empties it with a store, touching nothing else. */
static int *library_fds;
static guint n_library_fds;
static guint library_fds_size;
static MpgForkFunc fork_func;
static gpointer fork_func_data;
static GDestroyNotify fork_func_destroy;

int
_mpg_pidfd_open (pid_t pid)
{
  return (int) syscall (SYS_pidfd_open, pid, 0);
}

int
_mpg_pidfd_send_signal (int pidfd,
                        int sig)
{
  return (int) syscall (SYS_pidfd_send_signal, pidfd, sig, NULL, 0);
}

void
_mpg_write_all (int           fd,
                const guint8 *data,
                gsize         len)
{
  while (len > 0)
    {
      gssize n = write (fd, data, len);

      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0)
        return;
      data += n;
      len -= n;
    }
}

void
_mpg_fork_set_func (MpgForkFunc    func,
                    gpointer       user_data,
                    GDestroyNotify destroy)
{
  GDestroyNotify old_destroy;
  gpointer old_data;

  g_mutex_lock (&fork_lock);
  old_destroy = fork_func_destroy;
  old_data = fork_func_data;
  fork_func = func;
  fork_func_data = user_data;
  fork_func_destroy = destroy;
  g_mutex_unlock (&fork_lock);

  if (old_destroy != NULL)
    old_destroy (old_data);
}

static void
register_fd_locked (int fd)
{
  if (n_library_fds == library_fds_size)
    {
      library_fds_size = MAX (16, library_fds_size * 2);
      library_fds = g_renew (int, library_fds, library_fds_size);
    }
  library_fds[n_library_fds++] = fd;
}

static void
unregister_fd_locked (int fd)
{
  for (guint i = 0; i < n_library_fds; i++)
    {
      if (library_fds[i] == fd)
        {
          library_fds[i] = library_fds[--n_library_fds];
          return;
        }
    }
}

/*
 * _mpg_fork_pipe:
 *
 * Creates a close-on-exec pipe whose ends are registered as library fds:
 * children forked later close them, unless they are the child's own.
 */
gboolean
_mpg_fork_pipe (int      fds[2],
                GError **error)
{
  gboolean ret;

  g_mutex_lock (&fork_lock);
  ret = g_unix_open_pipe (fds, FD_CLOEXEC, error);
  if (ret)
    {
      register_fd_locked (fds[0]);
      register_fd_locked (fds[1]);
    }
  g_mutex_unlock (&fork_lock);

  return ret;
}

/*
 * _mpg_fork_socketpair:
 *
 * Creates a close-on-exec SOCK_SEQPACKET socket pair whose ends are
 * registered as library fds, as _mpg_fork_pipe() does.
 */
gboolean
_mpg_fork_socketpair (int      fds[2],
                      GError **error)
{
  int saved_errno;

  g_mutex_lock (&fork_lock);
  if (socketpair (AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds) == 0)
    {
      register_fd_locked (fds[0]);
      register_fd_locked (fds[1]);
      g_mutex_unlock (&fork_lock);
      return TRUE;
    }
  saved_errno = errno;
  g_mutex_unlock (&fork_lock);

  g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved_errno),
               "Could not create a socket pair: %s", g_strerror (saved_errno));
  return FALSE;
}

static void  start_child    (pid_t parent_pid,
                             int   exitcode);
static pid_t fork_with_func (pid_t parent_pid);

/*
 * _mpg_fork_register_fd:
 * @fd: an fd, or -1
 *
 * Makes @fd close-on-exec and a library fd (closed in children forked
 * later). Returns @fd.
 */
int
_mpg_fork_register_fd (int fd)
{
  if (fd < 0)
    return fd;

  g_mutex_lock (&fork_lock);
  fcntl (fd, F_SETFD, FD_CLOEXEC);
  register_fd_locked (fd);
  g_mutex_unlock (&fork_lock);

  return fd;
}

/*
 * _mpg_fork_plain:
 *
 * fork() for a single-threaded process (the fork server): through the
 * binding's fork function if there is one, with signals reset and death
 * with the parent arranged in the child. Returns as fork() does.
 */
pid_t
_mpg_fork_plain (void)
{
  pid_t parent_pid = getpid ();
  pid_t pid;

  fflush (NULL);
  pid = fork_with_func (parent_pid);
  if (pid == 0)
    start_child (parent_pid, 1);
  return pid;
}

/*
 * _mpg_fork_close_fd:
 * @fd: (inout): a registered fd, or -1
 *
 * Unregisters and closes *@fd, and sets it to -1.
 */
void
_mpg_fork_close_fd (int *fd)
{
  if (*fd < 0)
    return;

  g_mutex_lock (&fork_lock);
  unregister_fd_locked (*fd);
  close (*fd);
  *fd = -1;
  g_mutex_unlock (&fork_lock);
}

static void
reset_signals (void)
{
  struct sigaction sa;
  sigset_t all;

  memset (&sa, 0, sizeof sa);
  sa.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; sig++)
    {
      if (sig == SIGKILL || sig == SIGSTOP)
        continue;
      /* Fails harmlessly for the signals the C library reserves. */
      sigaction (sig, &sa, NULL);
    }

  sigemptyset (&all);
  sigprocmask (SIG_SETMASK, &all, NULL);
}

/* In every new child, first (only async-signal-safe calls): signals reset,
 * and death with the parent. The signal follows the forking thread, which
 * is why forks only happen from long-lived threads (see _mpg_fork()). If
 * the parent died before prctl() took effect, nobody will send it: leave
 * now, with @exitcode. */
static void
start_child (pid_t parent_pid,
             int   exitcode)
{
  reset_signals ();
  if (prctl (PR_SET_PDEATHSIG, SIGKILL) == 0 && getppid () != parent_pid)
    _exit (exitcode);
}

/* fork(), or the binding's fork function when there is one. A binding's
 * fork function that failed may still return 0 (e.g. an exception turned
 * into a default value): only the child is the child. Called with
 * fork_lock held, or in the single-threaded fork server. */
static pid_t
fork_with_func (pid_t parent_pid)
{
  pid_t pid;

  if (fork_func == NULL)
    return fork ();

  pid = fork_func (fork_func_data);
  if (pid == 0 && getpid () == parent_pid)
    pid = -1;
  return pid;
}

static void
child_setup (int   child_fd,
             pid_t parent_pid)
{
  start_child (parent_pid, 1);

  /* Close the parent-side ends of other children's channels, so that their
   * end of file is seen when they exit, and forget them. */
  for (guint i = 0; i < n_library_fds; i++)
    {
      if (library_fds[i] != child_fd)
        close (library_fds[i]);
    }
  n_library_fds = 0;

  /* The child's own end is a library fd that its children must not hold. */
  if (child_fd >= 0)
    register_fd_locked (child_fd);
}

typedef struct
{
  int child_fd;
  MpgChildMain child_main;
  gpointer data;
  /* exec: a plain fork() then execve(), nothing else in the child */
  char **argv;
  char **envp;
  const int *exec_fds;
  guint n_exec_fds;
  pid_t pid;
  int saved_errno;
  gboolean done;
} ForkRequest;

#ifndef SYS_close_range
# define SYS_close_range 436
#endif

/* In the child of an exec fork: only async-signal-safe calls. Moves the
 * kept fds to 3, 4, ..., closes every other fd above 2, execs. */
G_NORETURN static void
exec_child (ForkRequest *req,
            pid_t        parent_pid)
{
  int first_free = 3 + (int) req->n_exec_fds;

  start_child (parent_pid, 127);

  /* First out of the way (the targets may be taken), then in place. */
  {
    int moved[16];

    for (guint i = 0; i < req->n_exec_fds && i < G_N_ELEMENTS (moved); i++)
      moved[i] = fcntl (req->exec_fds[i], F_DUPFD, first_free + 16);
    for (guint i = 0; i < req->n_exec_fds && i < G_N_ELEMENTS (moved); i++)
      {
        if (moved[i] < 0 || dup2 (moved[i], 3 + (int) i) < 0)
          _exit (127);
      }
  }
  if (syscall (SYS_close_range, (unsigned int) first_free, ~0U, 0) != 0)
    {
      long max = sysconf (_SC_OPEN_MAX);

      for (long fd = first_free; fd < max; fd++)
        close ((int) fd);
    }

  execve (req->argv[0], req->argv, req->envp);
  _exit (127);
}

/* Called with fork_lock held; returns in the parent only. */
static void
do_fork_locked (ForkRequest *req)
{
  pid_t parent_pid = getpid ();
  pid_t pid;

  /* What the parent buffered must not be written again by the child's
   * flush at its exit. */
  fflush (NULL);

  errno = 0;
  if (req->argv != NULL)
    {
      /* Exec'd children need none of the binding's after-fork work: the
       * runtime they run starts afresh. */
      pid = fork ();
      if (pid == 0)
        exec_child (req, parent_pid);
      req->pid = pid;
      req->saved_errno = pid < 0 ? errno : 0;
      return;
    }
  pid = fork_with_func (parent_pid);
  if (pid == 0)
    {
      g_mutex_unlock (&fork_lock);
      child_setup (req->child_fd, parent_pid);
      req->child_main (req->data);
      _exit (1);
    }

  req->pid = pid;
  req->saved_errno = pid < 0 ? (errno != 0 ? errno : EAGAIN) : 0;
}

static void
do_fork (ForkRequest *req)
{
  g_mutex_lock (&fork_lock);
  do_fork_locked (req);
  g_mutex_unlock (&fork_lock);
}

/* PR_SET_PDEATHSIG fires when the thread that forked exits. Forks from the
 * main thread are safe; other threads (GTask workers, which GLib retires
 * when idle) hand the fork to this one thread, which lives as long as the
 * process. */
static GMutex fork_thread_lock;
static GCond fork_thread_cond;
static GQueue fork_requests = G_QUEUE_INIT;
static GThread *fork_thread;
static pid_t fork_thread_owner;

static gpointer
fork_thread_main (gpointer data)
{
  sigset_t set;

  /* Signals such as Ctrl-C's are for the program's own threads (the
   * children reset their mask). */
  sigemptyset (&set);
  sigaddset (&set, SIGINT);
  sigaddset (&set, SIGTERM);
  sigaddset (&set, SIGHUP);
  sigaddset (&set, SIGQUIT);
  pthread_sigmask (SIG_BLOCK, &set, NULL);

  for (;;)
    {
      ForkRequest *req;

      g_mutex_lock (&fork_thread_lock);
      while (g_queue_is_empty (&fork_requests))
        g_cond_wait (&fork_thread_cond, &fork_thread_lock);
      req = g_queue_pop_head (&fork_requests);
      g_mutex_unlock (&fork_thread_lock);

      do_fork (req);

      g_mutex_lock (&fork_thread_lock);
      req->done = TRUE;
      g_cond_broadcast (&fork_thread_cond);
      g_mutex_unlock (&fork_thread_lock);
    }

  return NULL;
}

static void
fork_on_fork_thread (ForkRequest *req)
{
  g_mutex_lock (&fork_thread_lock);
  /* A child forked from a thread of its parent has no fork thread. */
  if (fork_thread == NULL || fork_thread_owner != getpid ())
    {
      fork_thread = g_thread_new ("mpg-fork", fork_thread_main, NULL);
      fork_thread_owner = getpid ();
    }
  g_queue_push_tail (&fork_requests, req);
  g_cond_broadcast (&fork_thread_cond);
  while (!req->done)
    g_cond_wait (&fork_thread_cond, &fork_thread_lock);
  g_mutex_unlock (&fork_thread_lock);
}

/*
 * _mpg_fork:
 * @child_fd: a registered fd the child keeps (its end of a channel), or -1
 * @child_main: what the child runs after its set-up; it must not return
 * @data: data for @child_main
 * @out_pid: (out): the child's pid
 * @out_pidfd: (out): a pidfd of the child, registered as a library fd, or
 *   -1 if the kernel has no pidfds
 * @error: return location for a #GError
 *
 * Forks a child. In the child: signal dispositions and mask reset, death
 * with the parent arranged, library fds other than @child_fd closed, then
 * @child_main. Returns in the parent only.
 */
static gboolean fork_common (ForkRequest  *req,
                             pid_t        *out_pid,
                             int          *out_pidfd,
                             GError      **error);

gboolean
_mpg_fork (int            child_fd,
           MpgChildMain   child_main,
           gpointer       data,
           pid_t         *out_pid,
           int           *out_pidfd,
           GError       **error)
{
  ForkRequest req = { child_fd, child_main, data, NULL, NULL, NULL, 0, -1, 0, FALSE };

  return fork_common (&req, out_pid, out_pidfd, error);
}

/*
 * _mpg_fork_exec:
 * @argv: the program and its arguments (argv[0] is a path)
 * @envp: the environment
 * @fds: fds the child gets as 3, 4, ... (at most 16); every other fd
 *   above 2 is closed
 * @n_fds: the number of @fds
 * @out_pid: (out): the child's pid
 * @out_pidfd: (out): a pidfd, registered, or -1 without pidfds
 * @error: return location for a #GError
 *
 * Starts a program in a child that dies with its parent. The fork happens
 * on a long-lived thread, as for _mpg_fork(); the child runs nothing but
 * async-signal-safe calls before execve(), so a multi-threaded parent is
 * safe.
 */
gboolean
_mpg_fork_exec (char        **argv,
                char        **envp,
                const int    *fds,
                guint         n_fds,
                pid_t        *out_pid,
                int          *out_pidfd,
                GError      **error)
{
  ForkRequest req = { -1, NULL, NULL, argv, envp, fds, n_fds, -1, 0, FALSE };

  g_return_val_if_fail (n_fds <= 16, FALSE);

  return fork_common (&req, out_pid, out_pidfd, error);
}

static gboolean
fork_common (ForkRequest  *req_in,
             pid_t        *out_pid,
             int          *out_pidfd,
             GError      **error)
{
  ForkRequest req = *req_in;
  int pidfd;

  if (gettid () == getpid ())
    do_fork (&req);
  else
    fork_on_fork_thread (&req);

  if (req.pid < 0)
    {
      g_set_error (error, G_SPAWN_ERROR, G_SPAWN_ERROR_FORK,
                   "Could not fork: %s", g_strerror (req.saved_errno));
      return FALSE;
    }

  g_mutex_lock (&fork_lock);
  /* pidfd_open() makes its fd close-on-exec. */
  pidfd = _mpg_pidfd_open (req.pid);
  if (pidfd >= 0)
    register_fd_locked (pidfd);
  g_mutex_unlock (&fork_lock);

  /* Without pidfds (an old kernel, or valgrind, which does not know the
   * system call) the caller falls back to the end of file of the child's
   * channel, as Python's sentinels do. */
  if (pidfd < 0 && errno != ENOSYS)
    {
      int saved_errno = errno;

      /* Without a pidfd the child cannot be waited for safely: end it now. */
      kill (req.pid, SIGKILL);
      while (waitpid (req.pid, NULL, 0) < 0 && errno == EINTR)
        ;
      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved_errno),
                   "Could not open a pidfd (Linux 5.4 or later is needed): %s",
                   g_strerror (saved_errno));
      return FALSE;
    }

  *out_pid = req.pid;
  *out_pidfd = pidfd;
  return TRUE;
}
