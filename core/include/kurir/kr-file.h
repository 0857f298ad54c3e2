/* SPDX-License-Identifier: MIT */
/*
 * kr-file.h - reading a whole small file (a map, an aliases file, a
 * users list) safely: regular files only, bounded size, no partial reads.
 *
 *   kr_file_read_bounded(path, max, st_r, len_r, error)
 *       the file's bytes, NUL-terminated (len_r: length without the NUL),
 *       and its stat in st_r (may be NULL). NULL with error set when it
 *       cannot be read: G_IO_ERROR_NOT_FOUND if it does not exist,
 *       G_IO_ERROR_INVALID_DATA if it is not a regular file or is larger
 *       than max bytes, else the errno's G_IO_ERROR code. Messages start
 *       with the path. Blocking: call from a worker or at start-up.
 */
#ifndef KURIR_KR_FILE_H
#define KURIR_KR_FILE_H

#include <glib.h>
#include <sys/stat.h>

G_BEGIN_DECLS

__attribute__((visibility("default"))) char *kr_file_read_bounded(const char *path, gsize max,
                                                                  struct stat *st_r,
                                                                  gsize *len_r, GError **error);

G_END_DECLS
#endif
