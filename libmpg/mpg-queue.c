/* mpg-queue.c
 *
 * Copyright 2026 The libmpg authors
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include "mpg-queue.h"

struct _MpgQueue
{
  GObject parent_instance;
};

G_DEFINE_FINAL_TYPE (MpgQueue, mpg_queue, G_TYPE_OBJECT)

static void
mpg_queue_class_init (MpgQueueClass *klass)
{
}

static void
mpg_queue_init (MpgQueue *self)
{
}
