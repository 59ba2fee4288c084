/* queue.c: exchange objects between processes through a queue
 *
 * The Queue example of Python's multiprocessing documentation:
 *
 *     from multiprocessing import Process, Queue
 *
 *     def f(q):
 *         q.put([42, None, 'hello'])
 *
 *     if __name__ == '__main__':
 *         q = Queue()
 *         p = Process(target=f, args=(q,))
 *         p.start()
 *         print(q.get())    # prints "[42, None, 'hello']"
 *         p.join()
 *
 * Values are GVariants: Python's list of mixed values is an array of
 * variants, and None is an empty maybe. This prints the GVariant text
 * format of the value: [<42>, <@mv nothing>, <'hello'>]
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <libmpg.h>

static GVariant *
f (GVariant  *args,
   gpointer   user_data,
   GError   **error)
{
  MpgQueue *q = user_data;

  mpg_queue_put (q, g_variant_new_parsed ("[<42>, <@mv nothing>, <'hello'>]"),
                 TRUE, -1, NULL, error);
  return NULL;
}

int
main (void)
{
  g_autoptr(MpgQueue) q = NULL;
  g_autoptr(MpgProcess) p = NULL;
  g_autoptr(GVariant) value = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *text = NULL;

  /* With the fork start method the child inherits the queue. */
  if ((q = mpg_queue_new (0, &error)) == NULL)
    goto failed;
  p = mpg_process_new (NULL, f, g_object_ref (q), g_object_unref);
  if (!mpg_process_start (p, &error))
    goto failed;

  if ((value = mpg_queue_get (q, TRUE, -1, NULL, &error)) == NULL)
    goto failed;
  text = g_variant_print (value, FALSE);
  g_print ("%s\n", text);

  if (!mpg_process_join (p, -1, NULL, &error))
    goto failed;

  return 0;

failed:
  g_printerr ("%s\n", error->message);
  return 1;
}
