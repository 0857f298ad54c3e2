/* SPDX-License-Identifier: MIT */
/*
 * kr-file.c - read a whole small file safely (see kr-file.h).
 */
#include "kr-internal.h"
#include <kurir/kr-file.h>
#include <fcntl.h>
#include <unistd.h>

char *
kr_file_read_bounded(const char *path, gsize max, struct stat *st_r, gsize *len_r, GError **error)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        int e = errno;
        g_set_error(error, G_IO_ERROR, g_io_error_from_errno(e), "%s: %s", path, g_strerror(e));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (guint64)st.st_size > max) {
        int e = errno;
        gboolean reg = S_ISREG(st.st_mode);
        close(fd);
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "%s: %s", path,
                    !reg ? "not a regular file" : e && (guint64)st.st_size <= max ? g_strerror(e)
                                                                                 : "too large");
        return NULL;
    }
    gsize size = (gsize)st.st_size, got = 0;
    char *buf = g_malloc(size + 1);
    while (got < size) {
        ssize_t n = read(fd, buf + got, size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            int e = n < 0 ? errno : EIO;
            close(fd);
            g_free(buf);
            g_set_error(error, G_IO_ERROR, g_io_error_from_errno(e), "%s: %s", path,
                        n < 0 ? g_strerror(e) : "file shrank while being read");
            return NULL;
        }
        got += (gsize)n;
    }
    close(fd);
    buf[size] = 0;
    if (st_r)
        *st_r = st;
    if (len_r)
        *len_r = size;
    return buf;
}
