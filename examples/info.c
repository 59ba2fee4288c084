/* info.c: show the processes involved
 *
 * The second example of Python's multiprocessing documentation:
 *
 *     from multiprocessing import Process
 *     import os
 *
 *     def info(title):
 *         print(title)
 *         print('module name:', __name__)
 *         print('parent process:', os.getppid())
 *         print('process id:', os.getpid())
 *
 *     def f(name):
 *         info('function f')
 *         print('hello', name)
 *
 *     if __name__ == '__main__':
 *         info('main line')
 *         p = Process(target=f, args=('bob',))
 *         p.start()
 *         p.join()
 *
 * C has no module name: the program name stands in for it.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <unistd.h>

#include <libmpg.h>

static void
info (const char *title)
{
  g_print ("%s\n", title);
  g_print ("module name: %s\n", g_get_prgname ());
  g_print ("parent process: %d\n", (int) getppid ());
  g_print ("process id: %d\n", (int) getpid ());
}

static GVariant *
f (GVariant  *args,
   gpointer   user_data,
   GError   **error)
{
  const char *name;

  g_variant_get (args, "(&s)", &name);
  info ("function f");
  g_print ("hello %s\n", name);

  return NULL;
}

int
main (int   argc,
      char *argv[])
{
  g_autofree char *prgname = g_path_get_basename (argv[0]);
  g_autoptr(MpgProcess) p = NULL;
  g_autoptr(GError) error = NULL;

  g_set_prgname (prgname);
  info ("main line");

  p = mpg_process_new (g_variant_new ("(s)", "bob"), f, NULL, NULL);
  if (!mpg_process_start (p, &error) ||
      !mpg_process_join (p, -1, NULL, &error))
    {
      g_printerr ("%s\n", error->message);
      return 1;
    }

  return 0;
}
