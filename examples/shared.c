/* shared.c: share state between processes in shared memory
 *
 * The Value and Array example of Python's multiprocessing documentation:
 *
 *     from multiprocessing import Process, Value, Array
 *
 *     def f(n, a):
 *         n.value = 3.1415927
 *         for i in range(len(a)):
 *             a[i] = -a[i]
 *
 *     if __name__ == '__main__':
 *         num = Value('d', 0.0)
 *         arr = Array('i', range(10))
 *
 *         p = Process(target=f, args=(num, arr))
 *         p.start()
 *         p.join()
 *
 *         print(num.value)
 *         print(arr[:])
 *
 * A Value is an MpgArray of one item. The child writes straight into the
 * shared memory; this prints the GVariant text of what the parent reads
 * (GVariant prints a double with all its digits):
 *
 *     3.1415926999999999
 *     [0, -1, -2, -3, -4, -5, -6, -7, -8, -9]
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <libmpg.h>

typedef struct
{
  MpgArray *num;
  MpgArray *arr;
} Shared;

static GVariant *
f (GVariant  *args,
   gpointer   user_data,
   GError   **error)
{
  Shared *shared = user_data;
  double *n = mpg_array_get_data (shared->num);
  gint32 *a = mpg_array_get_data (shared->arr);

  *n = 3.1415927;
  for (gsize i = 0; i < mpg_array_get_length (shared->arr); i++)
    a[i] = -a[i];
  return NULL;
}

int
main (void)
{
  g_autoptr(MpgArray) num = NULL;
  g_autoptr(MpgArray) arr = NULL;
  g_autoptr(MpgProcess) p = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(GVariant) num_value = NULL;
  g_autoptr(GVariant) arr_value = NULL;
  g_autofree char *num_text = NULL;
  g_autofree char *arr_text = NULL;
  GVariantBuilder range;
  Shared shared;

  /* New arrays are zero-filled: num is 0.0 already. */
  if ((num = mpg_array_new ("d", 1, &error)) == NULL ||
      (arr = mpg_array_new ("i", 10, &error)) == NULL)
    goto failed;
  g_variant_builder_init (&range, G_VARIANT_TYPE ("ai"));
  for (gint32 i = 0; i < 10; i++)
    g_variant_builder_add (&range, "i", i);
  if (!mpg_array_set_from_variant (arr, g_variant_builder_end (&range), &error))
    goto failed;

  /* With the fork start method the child has the same shared memory. */
  shared.num = num;
  shared.arr = arr;
  p = mpg_process_new (NULL, f, &shared, NULL);
  if (!mpg_process_start (p, &error) ||
      !mpg_process_join (p, -1, NULL, &error))
    goto failed;

  num_value = mpg_array_get (num, 0);
  arr_value = mpg_array_to_variant (arr);
  num_text = g_variant_print (num_value, FALSE);
  arr_text = g_variant_print (arr_value, FALSE);
  g_print ("%s\n%s\n", num_text, arr_text);
  return 0;

failed:
  g_printerr ("%s\n", error->message);
  return 1;
}
