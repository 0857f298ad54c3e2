/* SPDX-License-Identifier: MIT */
/*
 * NAME
 *   kr-qfile.c - queue files: queue IDs, spooling and commit
 *
 * SYNOPSIS
 *   #include <kurir/kurir.h>
 *
 *   kr_msg_new_spool(dir, error)        DIR/.tmp-ID: a pooled spare, else created (0600, O_EXCL)
 *   kr_msg_append(msg, data, len, err)  stream content into the spool
 *   kr_msg_commit(msg, dir, error)      B: envelope, headers, fsync,
 *                                       rename to DIR/ID, fsync DIR
 *   kr_msg_commit_async(msg, dir, cb)   the same in a worker; cb on the loop
 *   kr_msg_discard(msg)                 remove an uncommitted spool
 *   kr_msg_queue_dir(msg)               where the file (or spool) is
 *   kr_qfile_release(msg)               (internal) close, unlink a spool
 *
 * DESCRIPTION
 *   The queue file format is documented in docs/queue-format.md; in short:
 *
 *     [file header, copy A (64 bytes)][file header, copy B (64 bytes)]
 *     [content, as received]
 *     [envelope records: I T S A* (H|X)* R* E]    (R holds a status slot)
 *
 *   The rest of the queue file code: kr-qfile-load.c (kr_msg_load),
 *   kr-qfile-update.c (status saves, envelope rewrites, moves, removal,
 *   copies), kr-qfile-spare.c (spare files, kr_msg_new_spool_spare),
 *   kr-qfile-dirs.c (kr_queue_list, kr_queue_sweep_spares,
 *   kr_queue_quarantine), kr-qfile-format.c (the byte layout),
 *   kr-qfile-io.c (I/O helpers), kr-qfile-private.h (what they share).
 *
 *   Ownership: kr_msg_discard does not drop the caller's reference; an
 *   uncommitted spool whose last reference goes is removed as well.
 *
 *   Crash safety: a file only gets its visible name after it was fsync'd
 *   complete. Changes to a committed file never leave it without one
 *   complete envelope and status (kr-qfile-update.c). Status slots have
 *   two copies with sequence numbers; a slot with neither copy readable
 *   loads as PENDING (at-least-once: never lose a delivery).
 *
 * DIAGNOSTICS
 *   G_IO_ERROR codes. kr_msg_commit of a message that is already
 *   committed (or discarded) fails with G_IO_ERROR_NOT_SUPPORTED, before
 *   any I/O (modules/queue relies on it); so does kr_msg_append. A write
 *   error while spooling is sticky: every later append and the commit
 *   fail with it. A full file system empties the spare pool.
 *
 * SEE ALSO
 *   docs/queue-format.md, kurir/kr-queue.h, kr-msg.c
 */
#include "kr-qfile-private.h"
#include <fcntl.h>
#include <stdio.h>
#include <sys/random.h>
#include <unistd.h>

/* --- queue IDs ----------------------------------------------------------- */

static const char b62[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

static void
put_b62(char *out, guint64 v, int width)
{
    for (int i = width - 1; i >= 0; i--) {
        out[i] = b62[v % 62];
        v /= 62;
    }
}

/* 6 chars of seconds, 4 of microseconds (so IDs sort by time), 4 random
 * (getrandom: differs across processes, also after fork). */
void
kr_qfile_make_id(char out[KR_QUEUE_ID_LEN + 1])
{
    gint64 now = g_get_real_time();
    guint8 rnd[4];
    if (getrandom(rnd, sizeof rnd, GRND_NONBLOCK) != (ssize_t)sizeof rnd)
        qf_put32(rnd, g_random_int() ^ (guint32)getpid());
    put_b62(out, (guint64)(now / G_USEC_PER_SEC), 6);
    put_b62(out + 6, (guint64)(now % G_USEC_PER_SEC), 4);
    for (int i = 0; i < 4; i++)
        out[10 + i] = b62[rnd[i] % 62];
    out[KR_QUEUE_ID_LEN] = 0;
}

/* --- spooling ------------------------------------------------------------ */

KrQueueDir
kr_msg_queue_dir(const KrMsg *msg)
{
    return msg->dir;
}

KrMsg *
kr_msg_new_spool(KrQueueDir dir, GError **error)
{
    g_return_val_if_fail((unsigned)dir < KR_QUEUE_N_DIRS, NULL);
    KrMsg *msg = kr_msg_new_spool_spare(dir);
    if (msg)
        return msg;
    msg = kr_msg_alloc();
    msg->dir = dir;
    msg->content_off = QF_CONTENT_OFF;
    for (int tries = 0; msg->fd < 0; tries++) {
        kr_qfile_make_id(msg->id);
        g_autofree char *path = kr_qfile_tmp_path(msg);
        msg->fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (msg->fd < 0 && (errno != EEXIST || tries >= 100)) {
            kr_qfile_errno_error(error, errno, "cannot create", path);
            msg->gone = TRUE;
            kr_msg_unref(msg);
            return NULL;
        }
    }
    msg->arrival = g_get_real_time() / G_USEC_PER_SEC;
    return msg;
}

gboolean
kr_msg_append(KrMsg *msg, const void *data, gsize len, GError **error)
{
    g_return_val_if_fail(msg != NULL && (data != NULL || len == 0), FALSE);
    if (msg->committed || msg->gone || msg->fd < 0) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                    "%s: append to a committed or discarded message", msg->id);
        return FALSE;
    }
    if (msg->write_error) {
        g_propagate_error(error, g_error_copy(msg->write_error));
        return FALSE;
    }
    if (len == 0)
        return TRUE;
    GError *err = NULL;
    if (!kr_qfile_pwrite_all(msg->fd, data, len, msg->content_off + msg->raw_size, &err)) {
        kr_qfile_check_full(err);
        msg->write_error = g_error_copy(err);
        g_propagate_error(error, err);
        return FALSE;
    }
    msg->raw_size += (goffset)len;
    kr_msg_content_changed(msg);
    return TRUE;
}

/* --- writing the envelope ------------------------------------------------ */

/* Point every recipient at its slot in a freshly written envelope. */
void
kr_qfile_adopt_envelope(KrMsg *msg, goffset env_off, gsize env_len, guint32 crc,
                        const gsize *slot_offs)
{
    msg->env_off = env_off;
    msg->env_len = (goffset)env_len;
    msg->env_crc = crc;
    for (guint i = 0; i < msg->rcpts->len; i++) {
        KrRcptPriv *r = msg->rcpts->pdata[i];
        r->pub.index = i;
        r->pub.slot_off = env_off + (goffset)slot_offs[i];
        r->slot_live = 0;
        r->slot_seq = 1;
    }
}

gboolean
kr_msg_commit(KrMsg *msg, KrQueueDir dir, GError **error)
{
    g_return_val_if_fail(msg != NULL && (unsigned)dir < KR_QUEUE_N_DIRS, FALSE);
    kr_qfile_crc_init();
    if (msg->committed || msg->gone || msg->fd < 0) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                    "%s: already committed or discarded", msg->id);
        return FALSE;
    }
    if (msg->write_error) {
        g_propagate_error(error, g_error_copy(msg->write_error));
        return FALSE;
    }
    if (!kr_qfile_check_limits(msg, error))
        return FALSE;
    goffset env_off = msg->content_off + msg->raw_size;
    g_autoptr(GByteArray) env = g_byte_array_new();
    g_autofree gsize *slot_offs = g_new(gsize, msg->rcpts->len + 1);
    guint32 crc = kr_qfile_build_envelope(msg, env, slot_offs);
    guint8 hdr[QF_CONTENT_OFF];
    kr_qfile_encode_header(hdr, msg, 1, env_off, env->len, crc);
    memcpy(hdr + QF_HDR_SIZE, hdr, QF_HDR_SIZE);
    GError *werr = NULL;
    if (!kr_qfile_pwrite_all(msg->fd, env->data, env->len, env_off, &werr) ||
        !kr_qfile_pwrite_all(msg->fd, hdr, sizeof hdr, 0, &werr)) {
        kr_qfile_check_full(werr);
        g_propagate_error(error, werr);
        return FALSE;
    }
    if (ftruncate(msg->fd, env_off + env->len) != 0 || fsync(msg->fd) != 0) {
        int e = errno;
        if (e == ENOSPC || e == EDQUOT)
            kr_qfile_spare_drain();
        return kr_qfile_errno_error(error, e, "sync", msg->id);
    }

    g_autofree char *from = kr_qfile_tmp_path(msg);
    g_autofree char *to = kr_qfile_path(dir, msg->id);
    if (kr_qfile_rename_noreplace(from, to) != 0)
        return kr_qfile_errno_error(error, errno, "cannot rename to", to);
    msg->committed = TRUE;
    msg->dir = dir;
    msg->gen = 1;
    msg->live_hdr = 0;
    kr_qfile_adopt_envelope(msg, env_off, env->len, crc, slot_offs);
    /* Only the new name must be durable: should the spool's .tmp- name
     * come back after a crash, it is debris for the recovery scan. If this
     * fails the file is visible anyway: the caller must not acknowledge,
     * so the message may be delivered and sent again (at-least-once).
     * Concurrent commits into this directory share the fsync (group
     * commit, kr-sync.c). */
    g_autofree char *dpath = kr_queue_dir_path(dir);
    if (!kr_sync_dir_path(dpath, error))
        return FALSE;
    g_debug("%s: committed to %s, size=%" G_GINT64_FORMAT ", nrcpt=%u", msg->id,
            kr_queue_dir_name(dir), (gint64)msg->raw_size, msg->rcpts->len);
    return TRUE;
}

typedef struct {
    KrMsg *msg;
    KrQueueDir dir;
    KrCommitFunc done;
    gpointer user_data;
    GError *error;
} CommitJob;

static void
commit_work(gpointer p)
{
    CommitJob *j = p;
    kr_msg_commit(j->msg, j->dir, &j->error);
}

static void
commit_done(gpointer p)
{
    CommitJob *j = p;
    if (j->done)
        j->done(j->msg, j->error, j->user_data);
    g_clear_error(&j->error);
    kr_msg_unref(j->msg);
    g_free(j);
}

void
kr_msg_commit_async(KrMsg *msg, KrQueueDir dir, KrCommitFunc done, gpointer user_data)
{
    g_return_if_fail(msg != NULL);
    CommitJob *j = g_new0(CommitJob, 1);
    j->msg = kr_msg_ref(msg);
    j->dir = dir;
    j->done = done;
    j->user_data = user_data;
    kr_worker_run(commit_work, commit_done, j);
}

void
kr_msg_discard(KrMsg *msg)
{
    g_return_if_fail(msg != NULL);
    if (msg->committed) {
        g_critical("%s: kr_msg_discard on a committed message", msg->id);
        return;
    }
    kr_qfile_release(msg);
}

void
kr_qfile_release(KrMsg *msg)
{
    if (msg->spare_path && g_atomic_int_get(&msg->refcount) == 0) {
        /* The last reference: nobody reads this content any more. */
        kr_qfile_spare_put(msg->fd, g_steal_pointer(&msg->spare_path));
        msg->fd = -1;
    }
    if (!msg->committed && !msg->gone && msg->id[0]) {
        g_autofree char *path = kr_qfile_tmp_path(msg);
        if (unlink(path) != 0 && errno != ENOENT)
            g_warning("%s: cannot remove %s: %s", msg->id, path, g_strerror(errno));
    }
    if (!msg->committed)
        msg->gone = TRUE;
    if (msg->fd >= 0 && (!msg->committed || msg->refcount == 0)) {
        close(msg->fd);
        msg->fd = -1;
    }
}
