/* bench-floor.c: the machine's floor for each workload, with plain
 * fork(), socketpair() and pipe() code and no library: what the same work
 * costs when nothing is checked and nothing is general. A slow floor
 * flatters the ratios, so this program is kept simple and fast; its
 * transport figures are checked against PLATFORM.md by bench/run.
 *
 *   bench-floor map N CHUNKSIZE      2 forked workers, chunks of int32 over
 *                                    socketpairs, up to 64 KiB in flight each
 *   bench-floor apply N sock|pipe    N round trips of one int32 to a worker
 *   bench-floor sock COUNT SIZE      a child writes COUNT length-prefixed
 *   bench-floor fifo COUNT SIZE      messages of SIZE bytes (0: an int32);
 *                                    over a socketpair / a 1 MiB pipe
 *   bench-floor spawn N              N sequential fork + _exit + waitpid
 *   bench-floor cpu N WORKERS MS     N tasks of MS ms CPU, WORKERS children
 *   bench-floor lifecycle            fork 2, one item each, close, wait
 *   bench-floor gui N                1 ms GLib timeout while 2 children square
 *                                    N ints and stream them back (fd watches)
 *   bench-floor memory               RSS/PSS of the parent and an idle child
 *   bench-floor lock N               N uncontended lock + unlock of a
 *                                    process-shared (not robust) pthread mutex
 *   bench-floor lock-counter N       2 forked children each add 1 to a shared
 *                                    counter N times under that mutex
 *
 * Copyright 2026 The libmpg authors
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#define _GNU_SOURCE 1

#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <glib-unix.h>
#include <poll.h>
#include <pthread.h>
#include <sys/mman.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>

#include "bench-common.h"

static double
now (void)
{
  struct timespec t;

  clock_gettime (CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

G_GNUC_NORETURN static void
fail (const char *what)
{
  perror (what);
  exit (1);
}

static void
write_all (int fd, const void *buf, size_t len)
{
  const char *p = buf;

  while (len > 0)
    {
      ssize_t n = write (fd, p, len);
      if (n < 0)
        {
          if (errno == EINTR)
            continue;
          fail ("write");
        }
      p += n;
      len -= n;
    }
}

static int
read_all (int fd, void *buf, size_t len)
{
  char *p = buf;

  while (len > 0)
    {
      ssize_t n = read (fd, p, len);
      if (n == 0)
        return 0;
      if (n < 0)
        {
          if (errno == EINTR)
            continue;
          fail ("read");
        }
      p += n;
      len -= n;
    }
  return 1;
}

/* A frame: u32 length, then the bytes. */
static void
send_frame (int fd, const void *buf, uint32_t len)
{
  struct iovec iov[2] = { { &len, 4 }, { (void *) buf, len } };
  ssize_t n = writev (fd, iov, 2);

  if (n < 0)
    fail ("writev");
  if ((size_t) n < 4 + (size_t) len)
    {
      /* The rest, plainly. */
      size_t done = n;
      if (done < 4)
        {
          write_all (fd, (char *) &len + done, 4 - done);
          done = 4;
        }
      write_all (fd, (const char *) buf + (done - 4), len - (done - 4));
    }
}

/* A buffered reader, as any message library has. */
typedef struct {
  int fd;
  char buf[65536];
  size_t start, end;
} Reader;

static int
reader_read (Reader *r, void *out, size_t len)
{
  char *p = out;

  while (len > 0)
    {
      size_t k;

      if (r->start == r->end)
        {
          ssize_t n;
          if (len >= sizeof r->buf)
            return read_all (r->fd, p, len);
          n = read (r->fd, r->buf, sizeof r->buf);
          if (n == 0)
            return 0;
          if (n < 0)
            {
              if (errno == EINTR)
                continue;
              fail ("read");
            }
          r->start = 0;
          r->end = n;
        }
      k = MIN (len, r->end - r->start);
      memcpy (p, r->buf + r->start, k);
      r->start += k;
      p += k;
      len -= k;
    }
  return 1;
}

/* ---- map: workers square chunks of int32 */

static void
square_worker (int fd)
{
  Reader r = { .fd = fd };
  uint32_t len;
  int32_t *buf = NULL;
  int64_t *out = NULL;
  size_t cap = 0;

  /* int32 in, int64 out: the squares of range(100000) need 64 bits. */
  while (reader_read (&r, &len, 4))
    {
      if (len > cap)
        {
          cap = len;
          buf = realloc (buf, cap);
          out = realloc (out, cap * 2);
        }
      if (!reader_read (&r, buf, len))
        break;
      for (uint32_t i = 0; i < len / 4; i++)
        out[i] = (int64_t) buf[i] * buf[i];
      send_frame (fd, out, len * 2);
    }
  _exit (0);
}

static pid_t
fork_worker (int *parent_fd, void (*body) (int fd))
{
  int sv[2];
  pid_t pid;

  if (socketpair (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
    fail ("socketpair");
  pid = fork ();
  if (pid < 0)
    fail ("fork");
  if (pid == 0)
    {
      /* Only its own end: the ends of earlier workers would keep them
       * from seeing EOF. */
      if (sv[1] > 3)
        close_range (3, sv[1] - 1, 0);
      close_range (sv[1] + 1, ~0U, 0);
      body (sv[1]);
      _exit (0);
    }
  close (sv[1]);
  *parent_fd = sv[0];
  return pid;
}

#define NW 2

static void
floor_map (const int32_t *items, int64_t *out, unsigned n, unsigned chunk, int *fds)
{
  unsigned nchunks = (n + chunk - 1) / chunk;
  unsigned next = 0, done = 0;
  unsigned window = CLAMP (16384 / chunk, 1, 64);
  /* Per worker, the chunks in flight, in order. */
  unsigned *inflight[NW];
  unsigned head[NW] = { 0 }, count[NW] = { 0 };
  Reader *readers[NW];

  for (int w = 0; w < NW; w++)
    {
      inflight[w] = g_new (unsigned, window);
      readers[w] = g_new0 (Reader, 1);
      readers[w]->fd = fds[w];
    }

  while (done < nchunks)
    {
      struct pollfd pfd[NW];
      gboolean buffered = FALSE;

      for (int w = 0; w < NW; w++)
        while (count[w] < window && next < nchunks)
          {
            unsigned len = MIN (chunk, n - next * chunk);
            send_frame (fds[w], items + next * chunk, len * 4);
            inflight[w][(head[w] + count[w]) % window] = next;
            count[w]++;
            next++;
          }
      for (int w = 0; w < NW; w++)
        pfd[w] = (struct pollfd) { fds[w], POLLIN, 0 };
      /* Data already buffered counts as readable. */
      for (int w = 0; w < NW; w++)
        buffered |= readers[w]->start < readers[w]->end && count[w] > 0;
      if (!buffered && poll (pfd, NW, -1) < 0)
        fail ("poll");
      for (int w = 0; w < NW; w++)
        {
          uint32_t len;
          unsigned c = inflight[w][head[w]];

          if (count[w] == 0)
            continue;
          if (!(pfd[w].revents & POLLIN) && !(readers[w]->start < readers[w]->end))
            continue;
          if (!reader_read (readers[w], &len, 4) || !reader_read (readers[w], out + c * chunk, len))
            fail ("worker died");
          head[w] = (head[w] + 1) % window;
          count[w]--;
          done++;
        }
    }
  for (int w = 0; w < NW; w++)
    {
      g_free (inflight[w]);
      g_free (readers[w]);
    }
}

static int
w_map (unsigned n, unsigned chunk)
{
  int fds[NW];
  pid_t pids[NW];
  int32_t *items = g_new (int32_t, n);
  int64_t *out = g_new0 (int64_t, n);
  int32_t warm[4] = { 1, 2, 3, 4 };
  int64_t wout[4];
  double t0;

  for (unsigned i = 0; i < n; i++)
    items[i] = i;
  if (chunk == 0)
    chunk = MAX (1, (n + NW * 4 - 1) / (NW * 4));   /* multiprocessing's default */
  for (int w = 0; w < NW; w++)
    pids[w] = fork_worker (&fds[w], square_worker);
  floor_map (warm, wout, 4, 1, fds);
  t0 = now ();
  floor_map (items, out, n, chunk, fds);
  printf ("{\"seconds\": %.6f}\n", now () - t0);
  if (n > 7 && out[7] != 49)
    fail ("wrong result");
  for (int w = 0; w < NW; w++)
    {
      close (fds[w]);
      waitpid (pids[w], NULL, 0);
    }
  return 0;
}

/* ---- apply: round trips */

static void
rt_worker_pipe (int rfd, int wfd)
{
  int32_t v;

  while (read_all (rfd, &v, 4))
    {
      v *= v;
      write_all (wfd, &v, 4);
    }
  _exit (0);
}

static void
rt_worker_sock (int fd)
{
  rt_worker_pipe (fd, fd);
}

static int
w_apply (unsigned n, const char *kind)
{
  int rfd, wfd;
  pid_t pid;
  double t0;

  if (g_str_equal (kind, "pipe"))
    {
      int a[2], b[2];
      if (pipe2 (a, O_CLOEXEC) < 0 || pipe2 (b, O_CLOEXEC) < 0)
        fail ("pipe");
      pid = fork ();
      if (pid == 0)
        {
          close (a[1]);
          close (b[0]);
          rt_worker_pipe (a[0], b[1]);
        }
      close (a[0]);
      close (b[1]);
      wfd = a[1];
      rfd = b[0];
    }
  else
    {
      pid = fork_worker (&rfd, rt_worker_sock);
      wfd = rfd;
    }
  for (int32_t i = 0; i < 100; i++)
    {
      int32_t v = i;
      write_all (wfd, &v, 4);
      read_all (rfd, &v, 4);
    }
  t0 = now ();
  for (unsigned i = 0; i < n; i++)
    {
      int32_t v = i % 1000;
      write_all (wfd, &v, 4);
      if (!read_all (rfd, &v, 4) || v != (int32_t) ((i % 1000) * (i % 1000)))
        fail ("round trip");
    }
  printf ("{\"seconds\": %.6f}\n", now () - t0);
  close (wfd);
  if (rfd != wfd)
    close (rfd);
  waitpid (pid, NULL, 0);
  return 0;
}

/* ---- transports */

static int
w_transport (gboolean sock, unsigned count, size_t size)
{
  int rfd, wfd;
  pid_t pid;
  double t0, s;
  size_t total = 0;
  char *buf = g_malloc0 (MAX (size, 4));
  Reader *r = g_new0 (Reader, 1);

  if (sock)
    {
      int sv[2];
      int big = 4 << 20;

      if (socketpair (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        fail ("socketpair");
      rfd = sv[0];
      wfd = sv[1];
      /* The machine's best: large socket buffers, fewer switches per MiB
       * (beyond net.core.wmem_max only for root, hence both calls). */
      for (int i = 0; i < 2; i++)
        {
          if (setsockopt (sv[i], SOL_SOCKET, SO_SNDBUFFORCE, &big, sizeof big) < 0)
            setsockopt (sv[i], SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
          if (setsockopt (sv[i], SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof big) < 0)
            setsockopt (sv[i], SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
        }
    }
  else
    {
      int p[2];
      if (pipe2 (p, O_CLOEXEC) < 0)
        fail ("pipe");
      fcntl (p[1], F_SETPIPE_SZ, 1 << 20);
      rfd = p[0];
      wfd = p[1];
    }
  t0 = now ();
  pid = fork ();
  if (pid < 0)
    fail ("fork");
  if (pid == 0)
    {
      close (rfd);
      for (unsigned i = 0; i < count; i++)
        {
          if (size == 0)
            {
              int32_t v = i;
              send_frame (wfd, &v, 4);
            }
          else
            send_frame (wfd, buf, size);
        }
      _exit (0);
    }
  close (wfd);
  r->fd = rfd;
  for (unsigned i = 0; i < count; i++)
    {
      uint32_t len;
      if (!reader_read (r, &len, 4) || !reader_read (r, buf, len))
        fail ("short read");
      total += size ? len : 0;
    }
  s = now () - t0;
  waitpid (pid, NULL, 0);
  if (total != (size_t) count * size)
    fail ("lost bytes");
  printf ("{\"seconds\": %.6f}\n", s);
  close (rfd);
  g_free (buf);
  g_free (r);
  return 0;
}

static int
w_spawn (unsigned n)
{
  double t0 = now ();

  for (unsigned i = 0; i < n; i++)
    {
      pid_t pid = fork ();
      if (pid < 0)
        fail ("fork");
      if (pid == 0)
        _exit (0);
      if (waitpid (pid, NULL, 0) != pid)
        fail ("waitpid");
    }
  printf ("{\"seconds\": %.6f}\n", now () - t0);
  return 0;
}

/* ---- cpu */

static unsigned burn_ms;

static void
burn_worker (int fd)
{
  int32_t v;

  while (read_all (fd, &v, 4))
    {
      bench_burn_cpu (burn_ms);
      write_all (fd, &v, 4);
    }
  _exit (0);
}

static int
w_cpu (unsigned n, unsigned workers, unsigned ms)
{
  int fds[16];
  pid_t pids[16];
  unsigned next = 0, done = 0;
  gboolean busy[16] = { 0 };
  double t0;

  burn_ms = ms;
  workers = CLAMP (workers, 1, 16);
  for (unsigned w = 0; w < workers; w++)
    pids[w] = fork_worker (&fds[w], burn_worker);
  t0 = now ();
  while (done < n)
    {
      struct pollfd pfd[16];
      for (unsigned w = 0; w < workers; w++)
        {
          if (!busy[w] && next < n)
            {
              int32_t v = next++;
              write_all (fds[w], &v, 4);
              busy[w] = TRUE;
            }
          pfd[w] = (struct pollfd) { fds[w], POLLIN, 0 };
        }
      if (poll (pfd, workers, -1) < 0)
        fail ("poll");
      for (unsigned w = 0; w < workers; w++)
        if (pfd[w].revents & POLLIN)
          {
            int32_t v;
            read_all (fds[w], &v, 4);
            busy[w] = FALSE;
            done++;
          }
    }
  printf ("{\"seconds\": %.6f}\n", now () - t0);
  for (unsigned w = 0; w < workers; w++)
    {
      close (fds[w]);
      waitpid (pids[w], NULL, 0);
    }
  return 0;
}

static int
w_lifecycle (void)
{
  double t0 = now ();
  int fds[NW];
  pid_t pids[NW];

  for (int w = 0; w < NW; w++)
    pids[w] = fork_worker (&fds[w], rt_worker_sock);
  for (int w = 0; w < NW; w++)
    {
      int32_t v = w + 2;
      write_all (fds[w], &v, 4);
    }
  for (int w = 0; w < NW; w++)
    {
      int32_t v;
      if (!read_all (fds[w], &v, 4) || v != (w + 2) * (w + 2))
        fail ("lifecycle");
      close (fds[w]);
    }
  for (int w = 0; w < NW; w++)
    waitpid (pids[w], NULL, 0);
  printf ("{\"seconds\": %.6f}\n", now () - t0);
  return 0;
}

/* ---- gui */

typedef struct {
  GMainLoop *loop;
  GArray *delays;
  gint64 last;
  int open;
  char *out;
  size_t got[NW], want[NW];
  size_t offset[NW];
} Gui;

static Gui gui;

static gboolean
tick (gpointer data)
{
  gint64 t = g_get_monotonic_time ();

  if (gui.last)
    {
      double d = (t - gui.last) / 1000.0 - 1.0;
      g_array_append_val (gui.delays, d);
    }
  gui.last = t;
  return G_SOURCE_CONTINUE;
}

static gboolean
readable (int fd, GIOCondition cond, gpointer data)
{
  int w = GPOINTER_TO_INT (data);
  ssize_t n = read (fd, gui.out + gui.offset[w] + gui.got[w], gui.want[w] - gui.got[w]);

  if (n > 0)
    gui.got[w] += n;
  if (n == 0 || gui.got[w] == gui.want[w])
    {
      close (fd);
      if (--gui.open == 0)
        g_main_loop_quit (gui.loop);
      return G_SOURCE_REMOVE;
    }
  return G_SOURCE_CONTINUE;
}

static int
w_gui (unsigned n)
{
  int32_t *items = g_new (int32_t, n);
  guint id;
  double t0;
  unsigned chunk = MAX (1, (n + NW * 4 - 1) / (NW * 4));

  for (unsigned i = 0; i < n; i++)
    items[i] = i;
  gui.loop = g_main_loop_new (NULL, FALSE);
  gui.delays = g_array_new (FALSE, FALSE, sizeof (double));
  gui.out = g_malloc ((size_t) n * 8);
  id = g_timeout_add (1, tick, NULL);
  t0 = now ();
  for (int w = 0; w < NW; w++)
    {
      int p[2];
      unsigned lo = n * w / NW, hi = n * (w + 1) / NW;
      pid_t pid;

      if (pipe2 (p, O_CLOEXEC) < 0)
        fail ("pipe");
      pid = fork ();
      if (pid == 0)
        {
          /* Squares its half, written back chunk by chunk. */
          for (unsigned c = lo; c < hi; c += chunk)
            {
              unsigned e = MIN (hi, c + chunk);
              int64_t *sq = g_new (int64_t, e - c);
              for (unsigned i = c; i < e; i++)
                sq[i - c] = (int64_t) items[i] * items[i];
              write_all (p[1], sq, (e - c) * 8);
              g_free (sq);
            }
          _exit (0);
        }
      close (p[1]);
      gui.offset[w] = (size_t) lo * 8;
      gui.want[w] = (size_t) (hi - lo) * 8;
      g_unix_set_fd_nonblocking (p[0], TRUE, NULL);
      g_unix_fd_add (p[0], G_IO_IN | G_IO_HUP, readable, GINT_TO_POINTER (w));
      gui.open++;
    }
  g_main_loop_run (gui.loop);
  while (waitpid (-1, NULL, 0) > 0)
    ;
  g_source_remove (id);
  bench_print_delays ((double *) (void *) gui.delays->data, gui.delays->len, now () - t0, 0.0);
  return 0;
}

static int
w_memory (void)
{
  int p[2];
  pid_t pid;

  if (pipe (p) < 0)
    fail ("pipe");
  pid = fork ();
  if (pid == 0)
    {
      char c;
      close (p[1]);
      (void) !read (p[0], &c, 1);
      _exit (0);
    }
  close (p[0]);
  g_usleep (200000);
  bench_print_memory (pid);
  close (p[1]);
  waitpid (pid, NULL, 0);
  return 0;
}

typedef struct {
  pthread_mutex_t mutex;
  volatile long counter;
  volatile int go;
} Shared;

static Shared *
shared_new (void)
{
  Shared *sh = mmap (NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  pthread_mutexattr_t attr;

  pthread_mutexattr_init (&attr);
  pthread_mutexattr_setpshared (&attr, PTHREAD_PROCESS_SHARED);
  pthread_mutex_init (&sh->mutex, &attr);
  pthread_mutexattr_destroy (&attr);
  return sh;
}

static int
w_lock (unsigned n)
{
  Shared *sh = shared_new ();
  double t0 = now ();

  for (unsigned i = 0; i < n; i++)
    {
      pthread_mutex_lock (&sh->mutex);
      pthread_mutex_unlock (&sh->mutex);
    }
  printf ("{\"seconds\": %.6f}\n", now () - t0);
  return 0;
}

static int
w_lock_counter (unsigned n)
{
  Shared *sh = shared_new ();
  double t0 = now ();
  pid_t pids[2];

  for (int c = 0; c < 2; c++)
    {
      pids[c] = fork ();
      if (pids[c] == 0)
        {
          /* Both start together, so that they contend. */
          while (!__atomic_load_n (&sh->go, __ATOMIC_ACQUIRE))
            ;
          for (unsigned i = 0; i < n; i++)
            {
              pthread_mutex_lock (&sh->mutex);
              sh->counter++;
              pthread_mutex_unlock (&sh->mutex);
            }
          _exit (0);
        }
    }
  __atomic_store_n (&sh->go, 1, __ATOMIC_RELEASE);
  for (int c = 0; c < 2; c++)
    waitpid (pids[c], NULL, 0);
  printf ("{\"seconds\": %.6f}\n", now () - t0);
  return sh->counter == 2 * (long) n ? 0 : 1;
}

int
main (int argc, char **argv)
{
  const char *w = argc > 1 ? argv[1] : "";
#define ARG(i, d) (argc > (i) ? (unsigned) strtoul (argv[i], NULL, 10) : (d))

  if (g_str_equal (w, "map"))
    return w_map (ARG (2, 100000), ARG (3, 0));
  if (g_str_equal (w, "apply"))
    return w_apply (ARG (2, 5000), argc > 3 ? argv[3] : "sock");
  if (g_str_equal (w, "sock") || g_str_equal (w, "fifo"))
    return w_transport (g_str_equal (w, "sock"), ARG (2, 256), ARG (3, 1 << 20));
  if (g_str_equal (w, "spawn"))
    return w_spawn (ARG (2, 500));
  if (g_str_equal (w, "cpu"))
    return w_cpu (ARG (2, 100), ARG (3, 2), ARG (4, 10));
  if (g_str_equal (w, "lifecycle"))
    return w_lifecycle ();
  if (g_str_equal (w, "gui"))
    return w_gui (ARG (2, 100000));
  if (g_str_equal (w, "memory"))
    return w_memory ();
  if (g_str_equal (w, "lock"))
    return w_lock (ARG (2, 1000000));
  if (g_str_equal (w, "lock-counter"))
    return w_lock_counter (ARG (2, 100000));
  fprintf (stderr, "usage: bench-floor map|apply|sock|fifo|spawn|cpu|lifecycle|gui|memory|lock|lock-counter ARGS\n");
  return 2;
}
