/* SPDX-License-Identifier: MIT */
/*
 * NAME
 *   kr-qfile-dirs.c - queue files: listing, spare sweep, quarantine
 *
 * SYNOPSIS
 *   #include <kurir/kurir.h>
 *
 *   kr_queue_list(dir)                  sorted queue IDs in dir
 *   kr_queue_sweep_spares()             B: remove spares left by an earlier run
 *   kr_queue_quarantine(dir, id, why)   B: move a bad file to corrupt/
 *
 * DESCRIPTION
 *   Whole-directory operations for the recovery scan and the queue
 *   manager. kr_queue_list returns only names that are valid queue IDs
 *   (spools, spares and debris are left out); a directory that cannot be
 *   read gives an empty list (logged at debug level). The sweep leaves a
 *   spare alone if it shares its inode with a queue file but its link
 *   count says otherwise (a file system in need of fsck). Quarantine never
 *   replaces a file in corrupt/ (ID.1, ID.2, ... instead) and logs why.
 *
 * SEE ALSO
 *   kr-queue-dirs.c, kr-qfile-spare.c
 */
#include "kr-qfile-private.h"
#include <dirent.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

static gint
cmp_str(gconstpointer a, gconstpointer b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

GPtrArray *
kr_queue_list(KrQueueDir dir)
{
    GPtrArray *ids = g_ptr_array_new_with_free_func(g_free);
    g_return_val_if_fail((unsigned)dir < KR_QUEUE_N_DIRS, ids);
    g_autofree char *path = kr_queue_dir_path(dir);
    DIR *d = opendir(path);
    if (!d) {
        g_debug("cannot list %s: %s", path, g_strerror(errno));
        return ids;
    }
    struct dirent *de;
    while ((de = readdir(d)))
        if (kr_queue_id_valid(de->d_name))
            g_ptr_array_add(ids, g_strdup(de->d_name));
    closedir(d);
    g_ptr_array_sort(ids, cmp_str);
    return ids;
}

guint
kr_queue_sweep_spares(void)
{
    static const KrQueueDir dirs[] = {KR_QUEUE_MAILDROP, KR_QUEUE_INCOMING, KR_QUEUE_ACTIVE,
                                      KR_QUEUE_DEFERRED, KR_QUEUE_HOLD};
    g_autoptr(GPtrArray) found = g_ptr_array_new_with_free_func(g_free);
    for (guint i = 0; i < G_N_ELEMENTS(dirs); i++) {
        g_autofree char *path = kr_queue_dir_path(dirs[i]);
        DIR *d = opendir(path);
        struct dirent *de;
        while (d && (de = readdir(d)))
            if (g_str_has_prefix(de->d_name, ".spare-"))
                g_ptr_array_add(found, g_build_filename(path, de->d_name, NULL));
        if (d)
            closedir(d);
    }
    if (found->len == 0)
        return 0;
    /* The inodes of every queue file: a spare handed out just before a
     * crash may keep its old name on a file system without a journal
     * while its inode holds a new message, and only fsck makes the link
     * count say so. */
    g_autoptr(GHashTable) inodes = g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free, NULL);
    for (guint i = 0; i < G_N_ELEMENTS(dirs); i++) {
        g_autofree char *path = kr_queue_dir_path(dirs[i]);
        g_autoptr(GPtrArray) ids = kr_queue_list(dirs[i]);
        for (guint k = 0; k < ids->len; k++) {
            g_autofree char *file = g_build_filename(path, ids->pdata[k], NULL);
            struct stat st;
            if (lstat(file, &st) == 0) {
                gint64 *ino = g_new(gint64, 1);
                *ino = (gint64)st.st_ino;
                g_hash_table_add(inodes, ino);
            }
        }
    }
    guint removed = 0;
    for (guint i = 0; i < found->len; i++) {
        const char *file = found->pdata[i];
        struct stat st;
        if (lstat(file, &st) != 0 || !S_ISREG(st.st_mode))
            continue;
        gint64 ino = (gint64)st.st_ino;
        if (st.st_nlink < 2 && g_hash_table_contains(inodes, &ino)) {
            g_warning("%s shares its inode with a queue file but its link count is %u: left "
                      "alone (check the file system)",
                      file, (unsigned)st.st_nlink);
            continue;
        }
        if (unlink(file) == 0)
            removed++;
    }
    return removed;
}

void
kr_queue_quarantine(KrQueueDir dir, const char *id, const char *why)
{
    g_return_if_fail((unsigned)dir < KR_QUEUE_N_DIRS && id != NULL);
    if (!*id || strchr(id, '/') || strcmp(id, ".") == 0 || strcmp(id, "..") == 0) {
        g_warning("refusing to quarantine %s/%s", kr_queue_dir_name(dir), id);
        return;
    }
    if (dir == KR_QUEUE_CORRUPT) {
        g_warning("%s: corrupt: %s", id, why ? why : "?");
        return;
    }
    g_autofree char *from = kr_qfile_path(dir, id);
    g_autofree char *to = kr_qfile_path(KR_QUEUE_CORRUPT, id);
    int r = kr_qfile_rename_noreplace(from, to);
    for (int n = 1; r != 0 && errno == EEXIST && n < 100; n++) {
        g_free(to);
        g_autofree char *alt = g_strdup_printf("%s.%d", id, n);
        to = kr_qfile_path(KR_QUEUE_CORRUPT, alt);
        r = kr_qfile_rename_noreplace(from, to);
    }
    if (r != 0) {
        g_warning("%s: cannot move %s to corrupt/ (%s): %s", id, from, g_strerror(errno),
                  why ? why : "?");
        return;
    }
    g_autoptr(GError) err = NULL;
    g_autofree char *cpath = kr_queue_dir_path(KR_QUEUE_CORRUPT);
    g_autofree char *dpath = kr_queue_dir_path(dir);
    if (!kr_sync_dir_path(cpath, &err) || !kr_sync_dir_path(dpath, &err))
        g_warning("%s: %s", id, err->message);
    g_warning("%s: queue file in %s is unreadable, moved to corrupt/: %s", id,
              kr_queue_dir_name(dir), why ? why : "?");
}
