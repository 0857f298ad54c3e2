/* SPDX-License-Identifier: MIT */
/*
 * kr-queue-dirs.c - the queue directories and the shape of queue IDs.
 *
 *   kr_queue_dir_name(dir)          "maildrop", "incoming", ...
 *   kr_queue_dir_path(dir)          DATA_DIR/queue/<name> (newly allocated)
 *   kr_queue_dir_from_name(s, &d)   the reverse; FALSE if unknown
 *   kr_queue_id_valid(id)           KR_QUEUE_ID_LEN characters of [0-9A-Za-z]
 *   kr_queue_init_dirs(error)       (internal) create DATA_DIR/queue/{...},
 *                                   mode 0700, at start-up
 *
 * Queue IDs are made in kr-qfile.c; see docs/queue-format.md.
 */
#include "kr-internal.h"
#include <errno.h>
#include <glib/gstdio.h>
#include <sys/stat.h>

static const char *const dir_names[KR_QUEUE_N_DIRS] = {
    [KR_QUEUE_MAILDROP] = "maildrop", [KR_QUEUE_INCOMING] = "incoming",
    [KR_QUEUE_ACTIVE] = "active",     [KR_QUEUE_DEFERRED] = "deferred",
    [KR_QUEUE_HOLD] = "hold",         [KR_QUEUE_CORRUPT] = "corrupt",
};

const char *
kr_queue_dir_name(KrQueueDir dir)
{
    g_return_val_if_fail((unsigned)dir < KR_QUEUE_N_DIRS, NULL);
    return dir_names[dir];
}

char *
kr_queue_dir_path(KrQueueDir dir)
{
    g_return_val_if_fail((unsigned)dir < KR_QUEUE_N_DIRS, NULL);
    return g_build_filename(kr_data_dir(), "queue", dir_names[dir], NULL);
}

gboolean
kr_queue_dir_from_name(const char *name, KrQueueDir *dir_r)
{
    for (int i = 0; name && i < KR_QUEUE_N_DIRS; i++) {
        if (strcmp(name, dir_names[i]) == 0) {
            if (dir_r)
                *dir_r = (KrQueueDir)i;
            return TRUE;
        }
    }
    return FALSE;
}

gboolean
kr_queue_id_valid(const char *id)
{
    if (!id)
        return FALSE;
    int n = 0;
    for (; id[n]; n++) {
        if (n >= KR_QUEUE_ID_LEN || !g_ascii_isalnum(id[n]))
            return FALSE;
    }
    return n == KR_QUEUE_ID_LEN;
}

static gboolean
make_dir(const char *path, GError **error)
{
    if (g_mkdir(path, 0700) == 0 || errno == EEXIST) {
        if (g_file_test(path, G_FILE_TEST_IS_DIR))
            return TRUE;
        errno = ENOTDIR;
    }
    int e = errno;
    g_set_error(error, G_IO_ERROR, g_io_error_from_errno(e), "cannot create %s: %s", path,
                g_strerror(e));
    return FALSE;
}

gboolean
kr_queue_init_dirs(GError **error)
{
    if (g_mkdir_with_parents(kr_data_dir(), 0700) != 0) {
        int e = errno;
        g_set_error(error, G_IO_ERROR, g_io_error_from_errno(e), "cannot create %s: %s",
                    kr_data_dir(), g_strerror(e));
        return FALSE;
    }
    g_autofree char *queue = g_build_filename(kr_data_dir(), "queue", NULL);
    if (!make_dir(queue, error))
        return FALSE;
    for (int i = 0; i < KR_QUEUE_N_DIRS; i++) {
        g_autofree char *path = kr_queue_dir_path((KrQueueDir)i);
        if (!make_dir(path, error))
            return FALSE;
    }
    return TRUE;
}
