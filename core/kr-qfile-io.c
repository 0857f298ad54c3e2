/* SPDX-License-Identifier: MIT */
/*
 * NAME
 *   kr-qfile-io.c - queue files: errors, whole reads and writes, names
 *
 * SYNOPSIS
 *   #include "kr-qfile-private.h"
 *
 *   kr_qfile_errno_error(error, e, what, path)   G_IO_ERROR from errno
 *   kr_qfile_bad(error, fmt, ...)                G_IO_ERROR_INVALID_DATA
 *   kr_qfile_pread_all(fd, buf, len, off, error) the whole of len bytes
 *   kr_qfile_pwrite_all(fd, buf, len, off, error)
 *   kr_qfile_rename_noreplace(from, to)          never replaces a file
 *   kr_qfile_path(dir, name), kr_qfile_tmp_path(msg)
 *
 * DESCRIPTION
 *   The small system-call wrappers every queue file source uses. All
 *   return FALSE with error set (or -1 with errno) on failure; a read
 *   that meets the end of the file is G_IO_ERROR_INVALID_DATA.
 *
 * SEE ALSO
 *   kr-qfile-private.h, kr-qfile.c
 */
#include "kr-qfile-private.h"
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

gboolean
kr_qfile_errno_error(GError **error, int e, const char *what, const char *path)
{
    g_set_error(error, G_IO_ERROR, g_io_error_from_errno(e), "%s %s: %s", what, path,
                g_strerror(e));
    return FALSE;
}

gboolean
kr_qfile_bad(GError **error, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    g_autofree char *m = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    g_set_error_literal(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, m);
    return FALSE;
}

gboolean
kr_qfile_pread_all(int fd, void *buf, gsize len, goffset off, GError **error)
{
    char *p = buf;
    while (len > 0) {
        ssize_t r = pread(fd, p, len, off);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return kr_qfile_errno_error(error, errno, "read", "queue file");
        }
        if (r == 0)
            return kr_qfile_bad(error, "unexpected end of queue file");
        p += r;
        len -= (gsize)r;
        off += r;
    }
    return TRUE;
}

gboolean
kr_qfile_pwrite_all(int fd, const void *buf, gsize len, goffset off, GError **error)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t w = pwrite(fd, p, len, off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return kr_qfile_errno_error(error, errno, "write", "queue file");
        }
        p += w;
        len -= (gsize)w;
        off += w;
    }
    return TRUE;
}

/* Rename without ever replacing an existing file. */
int
kr_qfile_rename_noreplace(const char *from, const char *to)
{
    if (renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE) == 0)
        return 0;
    if (errno != EINVAL && errno != ENOSYS)
        return -1;
    if (link(from, to) != 0)
        return -1;
    return unlink(from) == 0 || errno == ENOENT ? 0 : -1;
}

char *
kr_qfile_path(KrQueueDir dir, const char *name)
{
    g_autofree char *d = kr_queue_dir_path(dir);
    return g_build_filename(d, name, NULL);
}

char *
kr_qfile_tmp_path(const KrMsg *msg)
{
    g_autofree char *name = g_strconcat(".tmp-", msg->id, NULL);
    return kr_qfile_path(msg->dir, name);
}
