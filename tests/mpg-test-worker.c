/* mpg-test-worker.c: a helper program for the tests, selected by mode
 *
 * Copyright 2026 The libmpg authors
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libmpg.h>

static GVariant *
sleep_forever (GVariant  *arg,
               gpointer   user_data,
               GError   **error)
{
  for (;;)
    pause ();
  return NULL;
}

static GVariant *
sleep_then_print (GVariant  *arg,
                  gpointer   user_data,
                  GError   **error)
{
  g_usleep (200 * 1000);
  /* No newline: only the child's flush at exit makes it appear. */
  printf ("non-daemon child done");
  return NULL;
}

static GVariant *
print_partial (GVariant  *arg,
               gpointer   user_data,
               GError   **error)
{
  printf ("partial line from the child");
  return NULL;
}

static MpgProcess *
start_or_die (MpgTaskFunc func,
              gboolean    daemon)
{
  g_autoptr(GError) error = NULL;
  MpgProcess *p = mpg_process_new (NULL, func, NULL, NULL);

  mpg_process_set_daemon (p, daemon);
  if (!mpg_process_start (p, &error))
    {
      fprintf (stderr, "start failed: %s\n", error->message);
      exit (2);
    }
  return p;
}

int
main (int   argc,
      char *argv[])
{
  const char *mode = argc > 1 ? argv[1] : "";

  /* stdout carries the results; debug messages go to stderr. */
  g_log_writer_default_set_use_stderr (TRUE);

  if (g_str_equal (mode, "parent-killed"))
    {
      /* Prints the child's pid, then waits to be killed. */
      MpgProcess *p = start_or_die (sleep_forever, FALSE);

      printf ("%d\n", mpg_process_get_pid (p));
      fflush (stdout);
      for (;;)
        pause ();
    }
  else if (g_str_equal (mode, "exit-handler"))
    {
      /* Returns from main with a daemon and a non-daemon child running:
       * the exit handler must terminate the first and wait for the second. */
      MpgProcess *daemon = start_or_die (sleep_forever, TRUE);
      MpgProcess *worker = start_or_die (sleep_then_print, FALSE);

      printf ("%d %d\n", mpg_process_get_pid (daemon), mpg_process_get_pid (worker));
      fflush (stdout);
      return 0;
    }
  else if (g_str_equal (mode, "flush"))
    {
      g_autoptr(MpgProcess) p = start_or_die (print_partial, FALSE);
      g_autoptr(GError) error = NULL;

      if (!mpg_process_join (p, 10000, NULL, &error))
        return 2;
      return 0;
    }

  fprintf (stderr, "usage: %s parent-killed|exit-handler|flush\n", argv[0]);
  return 2;
}
