/* consumer.c: a program built against an installed libmpg
 *
 * Copyright 2026 The libmpg authors
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <libmpg.h>

#if !MPG_CHECK_VERSION (0, 1, 0)
# error "MPG_CHECK_VERSION does not accept the version of these headers"
#endif

static GVariant *
square (GVariant  *arg,
        gpointer   user_data,
        GError   **error)
{
  gint32 n = g_variant_get_int32 (arg);

  return g_variant_new_int32 (n * n);
}

int
main (void)
{
  g_autoptr(MpgProcess) process = NULL;
  g_autoptr(GVariant) result = NULL;
  g_autoptr(GError) error = NULL;

  process = mpg_process_new (g_variant_new_int32 (7), square, NULL, NULL);

  if (!mpg_process_start (process, &error) ||
      !mpg_process_join (process, 60000, NULL, &error) ||
      !(result = mpg_process_dup_result (process, &error)))
    {
      g_printerr ("consumer: %s\n", error->message);
      return 1;
    }

  if (mpg_process_get_exitcode (process) != 0)
    {
      g_printerr ("consumer: exit code %d, expected 0\n",
                  mpg_process_get_exitcode (process));
      return 1;
    }

  if (!g_variant_is_of_type (result, G_VARIANT_TYPE_INT32) ||
      g_variant_get_int32 (result) != 49)
    {
      g_autofree char *text = g_variant_print (result, TRUE);

      g_printerr ("consumer: result %s, expected 49\n", text);
      return 1;
    }

  return 0;
}
