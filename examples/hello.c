/* hello.c: run a function in a child process
 *
 * The first example of Python's multiprocessing documentation:
 *
 *     from multiprocessing import Process
 *
 *     def f(name):
 *         print('hello', name)
 *
 *     if __name__ == '__main__':
 *         p = Process(target=f, args=('bob',))
 *         p.start()
 *         p.join()
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <libmpg.h>

static GVariant *
f (GVariant  *args,
   gpointer   user_data,
   GError   **error)
{
  const char *name;

  g_variant_get (args, "(&s)", &name);
  g_print ("hello %s\n", name);

  return NULL;
}

int
main (void)
{
  g_autoptr(MpgProcess) p = NULL;
  g_autoptr(GError) error = NULL;

  p = mpg_process_new (g_variant_new ("(s)", "bob"), f, NULL, NULL);
  if (!mpg_process_start (p, &error) ||
      !mpg_process_join (p, -1, NULL, &error))
    {
      g_printerr ("%s\n", error->message);
      return 1;
    }

  return 0;
}
