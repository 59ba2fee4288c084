/* mpg-forkserver.c
 *
 * Copyright 2026 The libmpg authors
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#include <gio/gio.h>
#include <gio/gunixfdlist.h>
#include <glib-unix.h>

#include "mpg-channel-private.h"
#include "mpg-error.h"
#include "mpg-fork-private.h"
#include "mpg-spawn-private.h"
#include "mpg-wire-private.h"

/*
 * The forkserver start method.
 *
 * The server is a spawned worker (this program, or a binding's
 * interpreter, executed again: nothing locked, one thread) that forks
 * children on request. A request is a message `(s)` — the kind of child,
 * "process" or "pool" — with fds: a status pipe's write end, then the fds
 * the child gets as 3, 4, ... The server writes the child's pid (a
 * native-endian gint32) to the status pipe, and, once it has reaped the
 * child, its exit code in multiprocessing's convention (n, or -signal), then
 * closes it. The children are the server's, not the requester's: the
 * requester learns their end from the status pipe, and signals them
 * through a pidfd. They die with the server, which dies with the
 * requester.
 */

#define REQUEST_TYPE "(s)"
#define MAX_CHILD_FDS 8

typedef struct
{
  pid_t pid;
  int pidfd;
  int status_fd;
} ServerChild;

static int
exit_code_of (const siginfo_t *info)
{
  return info->si_code == CLD_EXITED ? info->si_status : -info->si_status;
}

static void
write_int (int    fd,
           gint32 value)
{
  _mpg_write_all (fd, (const guint8 *) &value, sizeof value);
}

/* In a child of the server: its fds in place, then the worker. */
G_NORETURN static void
server_child (const char *kind,
              const int  *fds,
              guint       n_fds,
              GArray     *children,
              int         control_fd)
{
  int moved[MAX_CHILD_FDS];

  close (control_fd);
  for (guint i = 0; i < children->len; i++)
    {
      ServerChild *c = &g_array_index (children, ServerChild, i);

      close (c->status_fd);
      close (c->pidfd);
    }

  for (guint i = 0; i < n_fds; i++)
    moved[i] = fcntl (fds[i], F_DUPFD_CLOEXEC, 3 + MAX_CHILD_FDS);
  for (guint i = 0; i < n_fds; i++)
    {
      if (moved[i] < 0 || dup2 (moved[i], 3 + (int) i) < 0)
        _exit (127);
      close (moved[i]);
      close (fds[i]);
    }

  if (g_str_equal (kind, "process"))
    _mpg_process_spawned_main ();
  _mpg_pool_spawned_main ();
}

static void
reap_child (GArray *children,
            guint   index)
{
  ServerChild *c = &g_array_index (children, ServerChild, index);
  siginfo_t info;

  memset (&info, 0, sizeof info);
  while (waitid (P_PID, c->pid, &info, WEXITED) < 0 && errno == EINTR)
    ;
  write_int (c->status_fd, exit_code_of (&info));
  close (c->status_fd);
  close (c->pidfd);
  g_array_remove_index_fast (children, index);
}

/* Handles one request. Returns FALSE when the requester is gone. */
static gboolean
serve_request (int     control_fd,
               GArray *children)
{
  g_autoptr(GVariant) request = NULL;
  g_autoptr(GUnixFDList) fd_list = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree int *fds = NULL;
  const char *kind;
  gint n_fds;
  ServerChild child;
  pid_t pid;

  request = _mpg_channel_receive (control_fd, 64 * 1024, -1, NULL, &fd_list, &error);
  if (request == NULL)
    return !g_error_matches (error, MPG_ERROR, MPG_ERROR_END_OF_STREAM) &&
           !g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CONNECTION_CLOSED);
  fds = fd_list != NULL ? g_unix_fd_list_steal_fds (fd_list, &n_fds) : NULL;
  if (!g_variant_is_of_type (request, G_VARIANT_TYPE (REQUEST_TYPE)) ||
      fds == NULL || n_fds < 2 || n_fds > MAX_CHILD_FDS + 1)
    {
      for (gint i = 0; fds != NULL && i < n_fds; i++)
        close (fds[i]);
      return TRUE;   /* a malformed request: ignored, its fds closed */
    }
  g_variant_get (request, "(&s)", &kind);

  pid = _mpg_fork_plain ();
  if (pid == 0)
    server_child (kind, fds + 1, (guint) n_fds - 1, children, control_fd);

  for (gint i = 1; i < n_fds; i++)
    close (fds[i]);
  if (pid < 0)
    {
      write_int (fds[0], -1);
      close (fds[0]);
      return TRUE;
    }

  child.pid = pid;
  child.pidfd = _mpg_pidfd_open (pid);
  child.status_fd = fds[0];
  write_int (child.status_fd, pid);
  g_array_append_val (children, child);

  return TRUE;
}

/* The server's loop; fd 3 is its control socket. Never returns. */
void
_mpg_forkserver_main (void)
{
  g_autoptr(GArray) children = g_array_new (FALSE, FALSE, sizeof (ServerChild));
  int control_fd = 3;
  gboolean serving = TRUE;

  /* Ctrl-C is for the requester, which decides what its children do. */
  signal (SIGINT, SIG_IGN);

  while (serving || children->len > 0)
    {
      g_autofree struct pollfd *pfds = g_new0 (struct pollfd, children->len + 1);
      guint n = 0;

      if (serving)
        {
          pfds[n].fd = control_fd;
          pfds[n].events = POLLIN;
          n++;
        }
      for (guint i = 0; i < children->len; i++, n++)
        {
          pfds[n].fd = g_array_index (children, ServerChild, i).pidfd;
          pfds[n].events = POLLIN;
        }

      if (poll (pfds, n, -1) < 0)
        {
          if (errno == EINTR)
            continue;
          break;
        }

      /* Children first: their indices shift as they are removed. */
      for (guint i = children->len; i-- > 0;)
        {
          if (pfds[(serving ? 1 : 0) + i].revents != 0)
            reap_child (children, i);
        }
      if (serving && pfds[0].revents != 0)
        serving = serve_request (control_fd, children);
    }

  _exit (0);
}

/* The requester's side. */
G_LOCK_DEFINE_STATIC (server);
static int server_fd = -1;
static pid_t server_pid;
static pid_t server_owner;

static gboolean
ensure_server_locked (GError **error)
{
  int fds[2];
  int pidfd;
  pid_t pid;
  gboolean ok;

  /* A forked child has its own server, started when it needs one. */
  if (server_fd >= 0 && server_owner == getpid ())
    return TRUE;
  server_fd = -1;

  if (!_mpg_fork_socketpair (fds, error))
    return FALSE;
  ok = _mpg_spawn ("forkserver", &fds[1], 1, &pid, &pidfd, error);
  _mpg_fork_close_fd (&fds[1]);
  if (!ok)
    {
      _mpg_fork_close_fd (&fds[0]);
      return FALSE;
    }
  /* Reaped by nobody until this process exits: the server lives as long. */
  _mpg_fork_close_fd (&pidfd);

  server_fd = fds[0];
  server_pid = pid;
  server_owner = getpid ();
  g_debug ("Fork server started as pid %d", pid);

  return TRUE;
}

/*
 * _mpg_forkserver_start:
 * @kind: "process" or "pool"
 * @fds: the fds the child gets as 3, 4, ...
 * @out_pid: (out): the child's pid
 * @out_pidfd: (out): a pidfd of the child, registered
 * @out_status_fd: (out): a registered fd from which the child's exit code
 *   can be read (a gint32) once it has ended; end of file if the server is
 *   gone
 *
 * Has the fork server (started at the first call) fork a worker.
 */
gboolean
_mpg_forkserver_start (const char  *kind,
                       const int   *fds,
                       guint        n_fds,
                       pid_t       *out_pid,
                       int         *out_pidfd,
                       int         *out_status_fd,
                       GError     **error)
{
  g_autoptr(GUnixFDList) fd_list = g_unix_fd_list_new ();
  int status[2];
  gint32 pid = -1;
  gssize n;
  gboolean ok;

  g_return_val_if_fail (n_fds <= MAX_CHILD_FDS, FALSE);

  _mpg_check_not_a_lost_worker ();

  if (!_mpg_fork_pipe (status, error))
    return FALSE;

  ok = g_unix_fd_list_append (fd_list, status[1], error) >= 0;
  for (guint i = 0; ok && i < n_fds; i++)
    ok = g_unix_fd_list_append (fd_list, fds[i], error) >= 0;
  _mpg_fork_close_fd (&status[1]);

  G_LOCK (server);
  if (ok)
    ok = ensure_server_locked (error);
  if (ok)
    ok = _mpg_channel_send (server_fd, g_variant_new (REQUEST_TYPE, kind), fd_list,
                            64 * 1024, g_get_monotonic_time () + 10 * G_USEC_PER_SEC, NULL,
                            error);
  if (!ok && server_fd >= 0)
    {
      /* A server that cannot take requests is replaced next time. */
      _mpg_fork_close_fd (&server_fd);
    }
  G_UNLOCK (server);

  /* The pid, as soon as the server forked. */
  if (ok)
    ok = _mpg_channel_wait (status[0], G_IO_IN, g_get_monotonic_time () + 10 * G_USEC_PER_SEC,
                            NULL, error);
  if (ok)
    {
      do
        n = read (status[0], &pid, sizeof pid);
      while (n < 0 && errno == EINTR);
      if (n != sizeof pid || pid <= 0)
        {
          g_set_error_literal (error, G_SPAWN_ERROR, G_SPAWN_ERROR_FORK,
                               "The fork server could not start a process");
          ok = FALSE;
        }
    }
  if (!ok)
    {
      _mpg_fork_close_fd (&status[0]);
      return FALSE;
    }

  *out_pid = pid;
  *out_pidfd = _mpg_fork_register_fd (_mpg_pidfd_open (pid));
  *out_status_fd = status[0];
  return TRUE;
}

/*
 * _mpg_forkserver_read_status:
 * @status_fd: from _mpg_forkserver_start()
 * @timeout_msec: how long to wait for it
 *
 * Returns: the child's exit code, or G_MININT if it is not known (yet)
 */
gint
_mpg_forkserver_read_status (int  status_fd,
                             gint timeout_msec)
{
  gint32 code;
  gssize n;

  if (!_mpg_channel_wait (status_fd, G_IO_IN,
                          timeout_msec < 0 ? -1 : g_get_monotonic_time () + (gint64) timeout_msec * 1000,
                          NULL, NULL))
    return G_MININT;
  do
    n = read (status_fd, &code, sizeof code);
  while (n < 0 && errno == EINTR);

  /* The server is gone: nobody knows. */
  if (n != sizeof code)
    return 255;
  return code;
}
