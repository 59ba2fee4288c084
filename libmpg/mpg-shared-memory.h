/* mpg-shared-memory.h
 *
 * Copyright 2026 The libmpg authors
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#if !defined(MPG_INSIDE) && !defined(MPG_COMPILATION)
# error "Only <libmpg.h> can be included directly."
#endif

#include <gio/gio.h>
#include <gio/gunixfdlist.h>

#include "mpg-version-macros.h"

G_BEGIN_DECLS

#define MPG_TYPE_SHARED_MEMORY (mpg_shared_memory_get_type ())

MPG_AVAILABLE_IN_ALL
G_DECLARE_FINAL_TYPE (MpgSharedMemory, mpg_shared_memory, MPG, SHARED_MEMORY, GObject)

MPG_AVAILABLE_IN_ALL
MpgSharedMemory *mpg_shared_memory_new             (const char           *name,
                                                    gsize                 size,
                                                    GError              **error) G_GNUC_WARN_UNUSED_RESULT;
MPG_AVAILABLE_IN_ALL
const char      *mpg_shared_memory_get_name        (MpgSharedMemory      *self);
MPG_AVAILABLE_IN_ALL
gsize            mpg_shared_memory_get_size        (MpgSharedMemory      *self);
MPG_AVAILABLE_IN_ALL
guint8          *mpg_shared_memory_get_data        (MpgSharedMemory      *self,
                                                    gsize                *out_size);
MPG_AVAILABLE_IN_ALL
GBytes          *mpg_shared_memory_get_bytes       (MpgSharedMemory      *self) G_GNUC_WARN_UNUSED_RESULT;
MPG_AVAILABLE_IN_ALL
int              mpg_shared_memory_get_fd          (MpgSharedMemory      *self);
MPG_AVAILABLE_IN_ALL
GVariant        *mpg_shared_memory_to_handle       (MpgSharedMemory      *self,
                                                    GUnixFDList          *fd_list,
                                                    GError              **error) G_GNUC_WARN_UNUSED_RESULT;
MPG_AVAILABLE_IN_ALL
MpgSharedMemory *mpg_shared_memory_new_from_handle (GVariant             *handle,
                                                    GUnixFDList          *fd_list,
                                                    GError              **error) G_GNUC_WARN_UNUSED_RESULT;

G_END_DECLS
