/* test-transport.c: the MPI transport module on its own
 *
 * Copyright 2026 The libmpg authors
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

/*
 * Usage: test-transport MODULE [MODE]
 *
 *   mpirun -n 3 test-transport libmpg-mpi.so
 *       a static job: rank 0 pings the other ranks, which echo
 *   test-transport libmpg-mpi.so spawn
 *       spawns 2 relays, then 1 more (two intercommunicators), and pings
 *       them; under mpirun, the static ranks are pinged too
 *   mpirun -n 3 test-transport libmpg-mpi.so kill
 *   test-transport libmpg-mpi.so spawn-kill
 *       peer 1 dies (SIGKILL) after its first echo; the root keeps
 *       pinging everyone for 15 s and reports what it sees
 *   mpirun -n 3 test-transport libmpg-mpi.so linger [SECONDS]
 *   test-transport libmpg-mpi.so spawn-linger [SECONDS]
 *       the relays wait 3 s (or SECONDS) between the root's quit and
 *       their finalize; the root reports how long its own finalize took
 *       (it gives up after 5 s)
 *
 * Relays echo tag PING and leave at tag QUIT. Exit status 0 means pass;
 * in the kill modes the root passes if it finishes at all (the point is
 * what it prints, with times).
 */

#include "config.h"

#include <dlfcn.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <gio/gio.h>

#include "mpg-remote-private.h"

#define PING 4
#define QUIT 8
#define WAIT_MSEC 20000
#define FINALIZE_MSEC 5000
#define OBSERVE_MSEC 15000
/* Above Open MPI's eager limits (4 KiB shared memory, 64 KiB TCP): such a
 * send waits for the receiver to take it. */
#define LARGE_PING (256 * 1024)

static const MpgRemoteTransport *t;
static guint linger_msec = 3000;
static gint64 start_time;
static const char *role = "?";

static void say (const char *format, ...) G_GNUC_PRINTF (1, 2);

static void
say (const char *format,
     ...)
{
  g_autofree char *text = NULL;
  va_list args;

  va_start (args, format);
  text = g_strdup_vprintf (format, args);
  va_end (args);

  /* Unbuffered: a job killed by mpirun must still show how far it got. */
  printf ("[%7.3f s] %s: %s\n",
          (g_get_monotonic_time () - start_time) / (double) G_USEC_PER_SEC, role, text);
  fflush (stdout);
}

G_GNUC_NORETURN static void
fail (const char *what,
      GError     *error)
{
  say ("FAIL: %s: %s", what, error != NULL ? error->message : "(no error)");
  exit (1);
}

/* Waits for a message, polling as libmpg's relay thread does. FALSE on
 * timeout (error unset) or when the transport reports a loss. */
static gboolean
wait_message (guint      timeout_msec,
              guint     *out_peer,
              int       *out_tag,
              GBytes   **out_data,
              GError   **error)
{
  gint64 deadline = g_get_monotonic_time () + (gint64) timeout_msec * 1000;
  gulong sleep_usec = 20;

  while (g_get_monotonic_time () < deadline)
    {
      if (t->try_receive (out_peer, out_tag, out_data, error))
        return TRUE;
      if (error != NULL && *error != NULL)
        return FALSE;

      g_usleep (sleep_usec);
      sleep_usec = MIN (sleep_usec * 2, 1000);
    }

  return FALSE;
}

static GBytes *
ping_bytes (guint peer)
{
  char *text = g_strdup_printf ("ping %u", peer);

  return g_bytes_new_take (text, strlen (text));
}

static int
relay_main (gboolean kill_after_echo,
            gboolean linger)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *where = NULL;
  guint self = 0, n_relays = 0;
  guint n_echoes = 0;

  if (!t->init (TRUE, &self, &n_relays, &error))
    fail ("relay init", error);

  where = t->describe ();
  role = where;
  say ("relay up (peer %u)", self);

  while (TRUE)
    {
      g_autoptr(GBytes) data = NULL;
      guint peer = 0;
      int tag = 0;

      if (!wait_message (60000, &peer, &tag, &data, &error))
        fail ("relay waiting for the root", error);

      if (peer != 0)
        {
          say ("FAIL: message from peer %u, not the root", peer);
          return 1;
        }

      if (tag == QUIT)
        break;

      if (tag != PING)
        {
          say ("FAIL: unexpected tag %d", tag);
          return 1;
        }

      if (!t->send (0, PING, data, &error))
        fail ("relay echo", error);
      n_echoes++;

      if (kill_after_echo && self == 1)
        {
          g_autoptr(GBytes) more = NULL;

          /* Let the echo leave first: the root should see it, then lose us. */
          wait_message (300, &peer, &tag, &more, NULL);
          say ("killing myself with SIGKILL after %u echo", n_echoes);
          raise (SIGKILL);
        }
    }

  if (linger)
    {
      say ("quit after %u echoes; lingering %.1f s before finalizing", n_echoes,
           linger_msec / 1000.0);
      g_usleep (linger_msec * 1000);
    }

  say ("quit after %u echoes; finalizing", n_echoes);
  t->finalize (FINALIZE_MSEC);
  say ("finalized");
  return 0;
}

/* Sends a ping to each peer, waits for every echo. */
static void
ping_all (guint first,
          guint n)
{
  g_autoptr(GError) error = NULL;
  gint64 sent_at = g_get_monotonic_time ();
  guint n_echoes = 0;

  for (guint p = first; p < first + n; p++)
    {
      g_autoptr(GBytes) ping = ping_bytes (p);

      if (!t->send (p, PING, ping, &error))
        fail ("send ping", error);
    }

  while (n_echoes < n)
    {
      g_autoptr(GBytes) data = NULL;
      g_autoptr(GBytes) expected = NULL;
      guint peer = 0;
      int tag = 0;

      if (!wait_message (WAIT_MSEC, &peer, &tag, &data, &error))
        fail ("waiting for echoes", error);

      expected = ping_bytes (peer);
      if (tag != PING || peer < first || peer >= first + n || !g_bytes_equal (data, expected))
        {
          say ("FAIL: bad echo from peer %u, tag %d (%.*s)", peer, tag,
               (int) g_bytes_get_size (data), (const char *) g_bytes_get_data (data, NULL));
          exit (1);
        }

      say ("echo from peer %u: \"%.*s\" after %.3f ms", peer,
           (int) g_bytes_get_size (data), (const char *) g_bytes_get_data (data, NULL),
           (g_get_monotonic_time () - sent_at) / 1000.0);
      n_echoes++;
    }
}

static void
quit_all (guint first,
          guint n,
          gboolean tolerate_loss)
{
  g_autoptr(GBytes) empty = g_bytes_new (NULL, 0);

  for (guint p = first; p < first + n; p++)
    {
      g_autoptr(GError) error = NULL;

      if (!t->send (p, QUIT, empty, &error))
        {
          if (!tolerate_loss)
            fail ("send quit", error);
          say ("quit to peer %u: error: %s", p, error->message);
        }
    }
}

/* After peer @first died: keeps pinging every relay (a small and a large
 * message each second) and receiving for a while, and says when each call
 * starts failing. */
static void
observe_loss (guint first,
              guint n)
{
  gint64 deadline = g_get_monotonic_time () + OBSERVE_MSEC * 1000;
  gint64 next_ping = 0;
  g_autofree guint *echoes = g_new0 (guint, first + n);
  g_autofree gboolean *send_failed = g_new0 (gboolean, first + n);
  gboolean receive_failed = FALSE;

  say ("observing for %d s: a small and a large ping to every relay each second", OBSERVE_MSEC / 1000);
  while (g_get_monotonic_time () < deadline)
    {
      g_autoptr(GError) error = NULL;
      g_autoptr(GBytes) data = NULL;
      guint peer = 0;
      int tag = 0;

      if (g_get_monotonic_time () >= next_ping)
        {
          g_autoptr(GString) counts = g_string_new (NULL);

          for (guint p = first; p < first + n; p++)
            g_string_append_printf (counts, " %u from peer %u", echoes[p], p);
          say ("still here; echoes so far:%s", counts->str);

          for (guint p = first; p < first + n; p++)
            {
              g_autoptr(GBytes) ping = ping_bytes (p);
              g_autoptr(GBytes) large = g_bytes_new_take (g_malloc0 (LARGE_PING), LARGE_PING);
              g_autoptr(GError) send_error = NULL;

              if ((!t->send (p, PING, ping, &send_error) || !t->send (p, PING, large, &send_error))
                  && !send_failed[p])
                {
                  send_failed[p] = TRUE;
                  say ("send to peer %u failed: %s", p, send_error->message);
                }
            }
          next_ping = g_get_monotonic_time () + G_USEC_PER_SEC;
        }

      if (t->try_receive (&peer, &tag, &data, &error))
        {
          if (peer < first + n)
            echoes[peer]++;
        }
      else if (error != NULL)
        {
          say ("try_receive failed (peer %d): %s", peer == G_MAXUINT ? -1 : (int) peer,
               error->message);
          receive_failed = TRUE;
        }
      else
        {
          g_usleep (1000);
        }
    }

  for (guint p = first; p < first + n; p++)
    say ("peer %u: %u echoes while observing%s", p, echoes[p],
         send_failed[p] ? ", sends failed" : "");
  if (!receive_failed)
    say ("try_receive never reported an error");
}

static int
root_main (const char *module_path,
           const char *mode,
           gboolean    spawn,
           gboolean    kill_one)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *where = NULL;
  guint self = 0, n_relays = 0, first = 0, n;
  gint64 finalize_start;

  if (!t->init (FALSE, &self, &n_relays, &error))
    fail ("root init", error);

  where = t->describe ();
  role = where;
  say ("root up (peer %u), %u static relays", self, n_relays);

  /* Static relays are peers 1 to n_relays; spawned ones are numbered on. */
  n = n_relays;

  if (spawn)
    {
      g_autofree char *exe = g_file_read_link ("/proc/self/exe", &error);
      g_autofree char *relay_mode = g_strconcat ("relay", mode + strlen ("spawn"), NULL);
      g_autofree char *linger = g_strdup_printf ("%g", linger_msec / 1000.0);
      const char *argv[] = { exe, module_path, relay_mode, linger, NULL };
      /* Two spawns: two intercommunicators, one with two ranks. */
      const guint batches[] = { 2, 1 };

      if (exe == NULL)
        fail ("finding this program", error);

      for (guint i = 0; i < G_N_ELEMENTS (batches); i++)
        {
          gint64 spawn_start = g_get_monotonic_time ();

          if (!t->spawn (argv, batches[i], &first, &error))
            fail ("spawn", error);
          if (first != n + 1)
            {
              say ("FAIL: spawned relays numbered from %u, not %u", first, n + 1);
              return 1;
            }
          n += batches[i];
          say ("spawned peers %u..%u in %.3f s", first, n,
               (g_get_monotonic_time () - spawn_start) / (double) G_USEC_PER_SEC);
        }
    }
  else if (n_relays == 0)
    {
      say ("FAIL: no static relays: run this under mpirun -n 3");
      return 1;
    }

  if (kill_one && n < 2)
    {
      say ("FAIL: the kill modes need two relays (one dies, one lives)");
      return 1;
    }

  ping_all (1, n);

  if (kill_one)
    observe_loss (1, n);

  quit_all (1, n, kill_one);

  finalize_start = g_get_monotonic_time ();
  t->finalize (FINALIZE_MSEC);
  say ("finalized in %.3f s", (g_get_monotonic_time () - finalize_start) / (double) G_USEC_PER_SEC);
  say ("PASS");
  return 0;
}

/* This process's rank in a static job, from the launcher's environment. */
static int
launched_rank (void)
{
  const char *vars[] = { "OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK" };

  for (guint i = 0; i < G_N_ELEMENTS (vars); i++)
    {
      const char *value = g_getenv (vars[i]);

      if (value != NULL)
        return atoi (value);
    }

  return 0;
}

int
main (int   argc,
      char *argv[])
{
  g_autoptr(GError) error = NULL;
  MpgRemoteTransportGetFunc get;
  gboolean spawn, relay, kill_one, linger;
  const char *mode;
  void *module;

  start_time = g_get_monotonic_time ();

  if (argc < 2)
    {
      fprintf (stderr, "Usage: %s MODULE [static|kill|linger|spawn|spawn-kill|spawn-linger] [SECONDS]\n", argv[0]);
      return 2;
    }
  mode = argc > 2 ? argv[2] : "static";
  if (argc > 3)
    linger_msec = (guint) (g_ascii_strtod (argv[3], NULL) * 1000);

  module = dlopen (argv[1], RTLD_NOW | RTLD_LOCAL);
  if (module == NULL)
    {
      fprintf (stderr, "%s\n", dlerror ());
      return 1;
    }

  get = (MpgRemoteTransportGetFunc) dlsym (module, MPG_REMOTE_TRANSPORT_SYMBOL);
  if (get == NULL)
    {
      fprintf (stderr, "%s\n", dlerror ());
      return 1;
    }

  if (get (MPG_REMOTE_TRANSPORT_ABI + 1, NULL) != NULL)
    {
      fprintf (stderr, "FAIL: the module accepted a future ABI\n");
      return 1;
    }

  t = get (MPG_REMOTE_TRANSPORT_ABI, &error);
  if (t == NULL)
    fail ("getting the transport", error);

  /* The mode's parts: spawn-, relay- or none (a static job), then what
   * the relays do: kill, linger or nothing special. */
  spawn = g_str_has_prefix (mode, "spawn");
  relay = g_str_has_prefix (mode, "relay");
  kill_one = g_str_has_suffix (mode, "kill");
  linger = g_str_has_suffix (mode, "linger");

  if (relay || launched_rank () > 0)
    return relay_main (kill_one, linger);
  if (spawn)
    return root_main (argv[1], mode, TRUE, kill_one);
  if (g_str_equal (mode, "static") || kill_one || linger)
    return root_main (argv[1], mode, FALSE, kill_one);

  fprintf (stderr, "Unknown mode %s\n", mode);
  return 2;
}
