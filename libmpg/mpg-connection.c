/* mpg-connection.c
 *
 * Copyright 2026 The libmpg authors
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include "mpg-connection.h"

struct _MpgConnection
{
  GObject parent_instance;
};

G_DEFINE_FINAL_TYPE (MpgConnection, mpg_connection, G_TYPE_OBJECT)

static void
mpg_connection_class_init (MpgConnectionClass *klass)
{
}

static void
mpg_connection_init (MpgConnection *self)
{
}
