/* mpg-array.h
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

#include "mpg-lock.h"
#include "mpg-shared-memory.h"

G_BEGIN_DECLS

#define MPG_TYPE_ARRAY (mpg_array_get_type ())

MPG_AVAILABLE_IN_ALL
G_DECLARE_FINAL_TYPE (MpgArray, mpg_array, MPG, ARRAY, GObject)

MPG_AVAILABLE_IN_ALL
MpgArray        *mpg_array_new               (const char           *typecode,
                                              gsize                 length,
                                              GError              **error) G_GNUC_WARN_UNUSED_RESULT;
MPG_AVAILABLE_IN_ALL
MpgArray        *mpg_array_new_raw           (const char           *typecode,
                                              gsize                 length,
                                              GError              **error) G_GNUC_WARN_UNUSED_RESULT;
MPG_AVAILABLE_IN_ALL
MpgArray        *mpg_array_new_with_lock     (const char           *typecode,
                                              gsize                 length,
                                              MpgLock              *lock,
                                              GError              **error) G_GNUC_WARN_UNUSED_RESULT;
MPG_AVAILABLE_IN_ALL
const char      *mpg_array_get_typecode      (MpgArray             *self);
MPG_AVAILABLE_IN_ALL
gsize            mpg_array_get_length        (MpgArray             *self);
MPG_AVAILABLE_IN_ALL
gsize            mpg_array_get_item_size     (MpgArray             *self);
MPG_AVAILABLE_IN_ALL
const GVariantType *mpg_array_get_item_type  (MpgArray             *self);
MPG_AVAILABLE_IN_ALL
MpgLock         *mpg_array_get_lock          (MpgArray             *self);
MPG_AVAILABLE_IN_ALL
MpgSharedMemory *mpg_array_get_memory        (MpgArray             *self);
MPG_AVAILABLE_IN_ALL
gpointer         mpg_array_get_data          (MpgArray             *self);
MPG_AVAILABLE_IN_ALL
GVariant        *mpg_array_get               (MpgArray             *self,
                                              gsize                 index);
MPG_AVAILABLE_IN_ALL
gboolean         mpg_array_set               (MpgArray             *self,
                                              gsize                 index,
                                              GVariant             *value,
                                              GError              **error);
MPG_AVAILABLE_IN_ALL
GVariant        *mpg_array_to_variant        (MpgArray             *self);
MPG_AVAILABLE_IN_ALL
gboolean         mpg_array_set_from_variant  (MpgArray             *self,
                                              GVariant             *values,
                                              GError              **error);
MPG_AVAILABLE_IN_ALL
GVariant        *mpg_array_to_handle         (MpgArray             *self,
                                              GUnixFDList          *fd_list,
                                              GError              **error) G_GNUC_WARN_UNUSED_RESULT;
MPG_AVAILABLE_IN_ALL
MpgArray        *mpg_array_new_from_handle   (GVariant             *handle,
                                              GUnixFDList          *fd_list,
                                              GError              **error) G_GNUC_WARN_UNUSED_RESULT;

G_END_DECLS
