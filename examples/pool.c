/* pool.c: map a function over a list with a pool of worker processes
 *
 * The first example of Python's multiprocessing documentation:
 *
 *     from multiprocessing import Pool
 *
 *     def f(x):
 *         return x*x
 *
 *     if __name__ == '__main__':
 *         with Pool(5) as p:
 *             print(p.map(f, [1, 2, 3]))
 *
 * here with a pool of 2 processes. The list is a GVariant array (`ai`), and
 * so is the result, since every result is an `i`: this prints the GVariant
 * text format of it, [1, 4, 9].
 *
 * The same program runs its workers on the ranks of an MPI job when it is
 * started by an MPI launcher: `mpirun -n 3 ./pool` prints the same line,
 * from rank 0, with f run on ranks 1 and 2 (found there by name: f is
 * exported and the program linked with `-rdynamic`).
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <libmpg.h>

G_MODULE_EXPORT GVariant *f (GVariant *x, gpointer user_data, GError **error);

GVariant *
f (GVariant  *x,
   gpointer   user_data,
   GError   **error)
{
  gint32 v = g_variant_get_int32 (x);

  return g_variant_new_int32 (v * v);
}

int
main (int    argc,
      char **argv)
{
  g_autoptr(MpgPool) p = NULL;
  g_autoptr(GVariant) result = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *text = NULL;
  guint f_id;

  /* Spawned workers and MPI ranks other than 0 do their work here. */
  mpg_init (&argc, &argv);

  p = mpg_pool_new (2);
  /* Local workers are forked at the first call: they have f already. */
  f_id = mpg_pool_add_function (p, f, NULL, NULL);

  result = mpg_pool_map (p, f_id, g_variant_new_parsed ("[1, 2, 3]"), 0, NULL, &error);
  if (result == NULL)
    goto failed;
  text = g_variant_print (result, FALSE);
  g_print ("%s\n", text);

  /* What leaving Python's `with Pool(…)` block does. Dropping the last
   * reference to the pool would do it too, and reap the workers. */
  mpg_pool_terminate (p);
  if (!mpg_pool_join (p, -1, &error))
    goto failed;

  return 0;

failed:
  g_printerr ("%s\n", error->message);
  return 1;
}
