/* lock.c: synchronize processes with a lock
 *
 * The Lock example of Python's multiprocessing documentation:
 *
 *     from multiprocessing import Process, Lock
 *
 *     def f(l, i):
 *         l.acquire()
 *         try:
 *             print('hello world', i)
 *         finally:
 *             l.release()
 *
 *     if __name__ == '__main__':
 *         lock = Lock()
 *
 *         for num in range(10):
 *             Process(target=f, args=(lock, num)).start()
 *
 * Without the lock, the output of the ten processes could be mixed up.
 * This prints "hello world 0" … "hello world 9", one line each, in any
 * order. Python joins its non-daemon children at exit; a C program joins
 * them itself.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <libmpg.h>

static GVariant *
f (GVariant  *args,
   gpointer   user_data,
   GError   **error)
{
  MpgLock *l = user_data;
  gint32 i = g_variant_get_int32 (args);

  if (!mpg_lock_acquire (l, -1, NULL, NULL, error))
    return NULL;
  g_print ("hello world %d\n", i);
  if (!mpg_lock_release (l, error))
    return NULL;
  return NULL;
}

int
main (void)
{
  g_autoptr(MpgLock) lock = NULL;
  g_autoptr(GPtrArray) children = g_ptr_array_new_with_free_func (g_object_unref);
  g_autoptr(GError) error = NULL;

  /* With the fork start method the children inherit the lock. */
  if ((lock = mpg_lock_new (&error)) == NULL)
    goto failed;

  for (gint32 num = 0; num < 10; num++)
    {
      MpgProcess *p = mpg_process_new (g_variant_new_int32 (num), f,
                                       g_object_ref (lock), g_object_unref);

      g_ptr_array_add (children, p);
      if (!mpg_process_start (p, &error))
        goto failed;
    }

  for (guint i = 0; i < children->len; i++)
    if (!mpg_process_join (g_ptr_array_index (children, i), -1, NULL, &error))
      goto failed;

  return 0;

failed:
  g_printerr ("%s\n", error->message);
  return 1;
}
