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

/* The worker is not linked with -rdynamic: its tasks are found by name in
 * this table, through a dispatcher of its own, when they run spawned or
 * in a forkserver's child. */
static const struct
{
  const char *name;
  MpgTaskFunc func;
} tasks[] = {
  { "sleep_forever", sleep_forever },
  { "sleep_then_print", sleep_then_print },
  { "print_partial", print_partial },
};

static GVariant *
dispatch (const char   *name,
          GVariant     *arg,
          GUnixFDList  *fd_list,
          gpointer      user_data,
          GError      **error)
{
  for (guint i = 0; i < G_N_ELEMENTS (tasks); i++)
    if (g_str_equal (name, tasks[i].name))
      return tasks[i].func (arg, fd_list, error);

  g_set_error (error, MPG_ERROR, MPG_ERROR_UNKNOWN_TASK, "No task '%s' in the worker", name);
  return NULL;
}

/* The start method of the children: argv[2] (fork when absent). */
static MpgStartMethod method = MPG_START_METHOD_FORK;

static MpgProcess *
start_or_die (MpgTaskFunc func,
              gboolean    daemon)
{
  g_autoptr(GError) error = NULL;
  MpgProcess *p = mpg_process_new (NULL, func, NULL, NULL);

  mpg_process_set_start_method (p, method);
  for (guint i = 0; i < G_N_ELEMENTS (tasks); i++)
    if (tasks[i].func == func)
      mpg_process_set_target_name (p, tasks[i].name);
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
  const char *mode;
  const char *method_name;

  /* stdout carries the results; debug messages go to stderr, the spawned
   * children's too. */
  g_log_writer_default_set_use_stderr (TRUE);

  /* A spawned child, or the forkserver, is this program run again with the
   * same arguments: it runs its task here and never returns. */
  mpg_set_task_dispatcher (dispatch, NULL, NULL);
  mpg_init (&argc, &argv);

  mode = argc > 1 ? argv[1] : "";
  method_name = argc > 2 ? argv[2] : "fork";
  if (g_str_equal (method_name, "spawn"))
    method = MPG_START_METHOD_SPAWN;
  else if (g_str_equal (method_name, "forkserver"))
    method = MPG_START_METHOD_FORKSERVER;
  else if (!g_str_equal (method_name, "fork"))
    mode = "";


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

  fprintf (stderr, "usage: %s parent-killed|exit-handler|flush [fork|spawn|forkserver]\n", argv[0]);
  return 2;
}
