/* SPDX-License-Identifier: MIT */
/*
 * NAME
 *   kr-qfile-spare.c - queue files: the pool of spare files
 *
 * SYNOPSIS
 *   #include <kurir/kurir.h>
 *
 *   KrMsg *kr_msg_new_spool_spare(KrQueueDir dir);
 *   guint kr_qfile_spares(void);                      (internal, tests)
 *
 *   #include "kr-qfile-private.h"
 *
 *   kr_qfile_keep_as_spare(msg, path, &gone)
 *                                     B: a removed file becomes a spare
 *   kr_qfile_spare_put(fd, path)      give a reservation back (and the file)
 *   kr_qfile_spare_drain()            empty every spare (file system full)
 *   kr_qfile_check_full(err)          drain if err is G_IO_ERROR_NO_SPACE
 *
 * DESCRIPTION
 *   kr_msg_new_spool_spare is kr_msg_new_spool from a pooled spare only:
 *   NULL if the pool is empty (or no spare could be renamed).
 *   The pool is per process, guarded by a mutex: any thread may take or
 *   give back a spare. See "spare files" below.
 *
 * SEE ALSO
 *   kr-qfile.c (kr_msg_new_spool, kr_qfile_release),
 *   kr-qfile-update.c (kr_msg_remove_lazy), kr-qfile-dirs.c
 *   (kr_queue_sweep_spares)
 */
#include "kr-qfile-private.h"
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

/* --- spare files ---------------------------------------------------------
 *
 * Creating an inode is the dearest thing a queue file costs on some file
 * systems (ext4 without a journal scans past every inode freed in the
 * last hours), so a finished queue file is not unlinked but kept as a
 * spare for the next spool: kr_msg_remove_lazy renames DIR/ID to
 * DIR/.spare-ID, empties it if it is bigger than SPARE_KEEP (a smaller
 * one keeps its blocks, which the next message overwrites in place),
 * fsyncs DIR (group commit, so the old name is durably gone before the
 * inode holds another message), and when the message's last reference
 * goes its descriptor joins the pool. kr_msg_new_spool renames a spare
 * to DIR/.tmp-NEWID and writes into it; the commit truncates the file to
 * its exact size as always. The pool is per process and bounded
 * (SPARE_MAX files of at most SPARE_KEEP bytes); a write that finds the
 * file system full empties every spare. A spare left by a crash is
 * removed by the recovery scan. */

#define SPARE_MAX  64          /* open descriptors: kept well below the fd budget */
#define SPARE_KEEP (64 * 1024) /* a spare up to this size keeps its blocks */

typedef struct {
    int fd;
    char *path;
} Spare;

static GMutex spare_lock;
static GArray *spares;      /* Spare, used last-in first-out */
static guint spare_pending; /* renamed to .spare- but not yet released */

/* Reserve room in the pool; FALSE if it is full. */
static gboolean
spare_reserve(void)
{
    g_mutex_lock(&spare_lock);
    guint have = (spares ? spares->len : 0) + spare_pending;
    gboolean ok = have < SPARE_MAX;
    if (ok)
        spare_pending++;
    g_mutex_unlock(&spare_lock);
    return ok;
}

/* Give a reservation back; with fd >= 0, add that spare to the pool. */
void
kr_qfile_spare_put(int fd, char *path)
{
    g_mutex_lock(&spare_lock);
    spare_pending--;
    if (fd >= 0) {
        if (!spares)
            spares = g_array_new(FALSE, FALSE, sizeof(Spare));
        Spare sp = {fd, path};
        g_array_append_val(spares, sp);
    }
    g_mutex_unlock(&spare_lock);
}

static gboolean
spare_take(Spare *sp)
{
    g_mutex_lock(&spare_lock);
    gboolean ok = spares && spares->len > 0;
    if (ok) {
        *sp = g_array_index(spares, Spare, spares->len - 1);
        g_array_set_size(spares, spares->len - 1);
    }
    g_mutex_unlock(&spare_lock);
    return ok;
}

/* Turn a spare into msg's spool (DIR/.tmp-ID); FALSE if none worked. */
static gboolean
spool_from_spare(KrMsg *msg)
{
    Spare sp;
    while (spare_take(&sp)) {
        kr_qfile_make_id(msg->id);
        g_autofree char *path = kr_qfile_tmp_path(msg);
        gboolean ok = renameat2(AT_FDCWD, sp.path, AT_FDCWD, path, RENAME_NOREPLACE) == 0;
        if (!ok)
            g_debug("spare %s: rename to %s: %s", sp.path, path, g_strerror(errno));
        g_free(sp.path);
        if (ok) {
            msg->fd = sp.fd;
            return TRUE;
        }
        close(sp.fd);
    }
    return FALSE;
}

/* Give the disk space spares hold back (the file system is full). */
void
kr_qfile_spare_drain(void)
{
    g_mutex_lock(&spare_lock);
    for (guint i = 0; spares && i < spares->len; i++)
        if (ftruncate(g_array_index(spares, Spare, i).fd, 0) != 0)
            g_debug("spare %s: ftruncate: %s", g_array_index(spares, Spare, i).path,
                    g_strerror(errno));
    g_mutex_unlock(&spare_lock);
}

void
kr_qfile_check_full(const GError *err)
{
    if (g_error_matches(err, G_IO_ERROR, G_IO_ERROR_NO_SPACE))
        kr_qfile_spare_drain();
}

guint
kr_qfile_spares(void)
{
    g_mutex_lock(&spare_lock);
    guint n = spares ? spares->len : 0;
    g_mutex_unlock(&spare_lock);
    return n;
}

KrMsg *
kr_msg_new_spool_spare(KrQueueDir dir)
{
    g_return_val_if_fail((unsigned)dir < KR_QUEUE_N_DIRS, NULL);
    if (kr_qfile_spares() == 0)
        return NULL;
    KrMsg *msg = kr_msg_alloc();
    msg->dir = dir;
    msg->content_off = QF_CONTENT_OFF;
    if (!spool_from_spare(msg)) {
        msg->gone = TRUE;
        kr_msg_unref(msg);
        return NULL;
    }
    msg->arrival = g_get_real_time() / G_USEC_PER_SEC;
    return msg;
}

/* Keep a removed file as a spare (see "spare files"): TRUE if it was,
 * FALSE if the caller should unlink it instead (nothing changed then,
 * or the file is already gone from path). */
gboolean
kr_qfile_keep_as_spare(KrMsg *msg, const char *path, gboolean *gone_r)
{
    *gone_r = FALSE;
    if (msg->fd < 0 || msg->readonly || !spare_reserve())
        return FALSE;
    g_autofree char *name = g_strconcat(".spare-", msg->id, NULL);
    g_autofree char *spare = kr_qfile_path(msg->dir, name);
    g_autofree char *dpath = kr_queue_dir_path(msg->dir);
    g_autoptr(GError) err = NULL;
    if (kr_qfile_rename_noreplace(path, spare) != 0) {
        g_debug("%s: no spare: %s", msg->id, g_strerror(errno));
        kr_qfile_spare_put(-1, NULL);
        return FALSE;
    }
    *gone_r = TRUE;
    /* A small file keeps its blocks: the next message overwrites them in
     * place, with no block to allocate or free. A big one is emptied (only
     * under its new name: a queue file is never seen short). */
    struct stat st;
    if (fstat(msg->fd, &st) != 0 || (st.st_size > SPARE_KEEP && ftruncate(msg->fd, 0) != 0)) {
        g_debug("%s: no spare: %s", msg->id, g_strerror(errno));
        unlink(spare);
        kr_qfile_spare_put(-1, NULL);
        return FALSE;
    }
    if (!kr_sync_dir_path(dpath, &err)) {
        /* The old name may still be on disk: never reuse this inode. */
        g_debug("%s: no spare: %s", msg->id, err->message);
        unlink(spare);
        kr_qfile_spare_put(-1, NULL);
        return FALSE;
    }
    msg->spare_path = g_steal_pointer(&spare);
    return TRUE;
}
