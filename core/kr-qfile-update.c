/* SPDX-License-Identifier: MIT */
/*
 * NAME
 *   kr-qfile-update.c - queue files: changing committed files
 *
 * SYNOPSIS
 *   #include <kurir/kurir.h>
 *
 *   kr_msg_rcpt_save(msg, rcpt, error)  B: pwrite one status slot, fdatasync
 *   kr_msg_rewrite_envelope(msg, err)   B: append a new envelope, switch the
 *                                       headers to it (crash safe)
 *   kr_msg_move / kr_msg_remove         B: link+unlink / unlink, fsync dirs
 *   kr_msg_move_lazy(msg, dir, error)   B: the same, the old name's removal
 *                                       not synced (a crash may keep both)
 *   kr_msg_remove_lazy(msg, error)      B: remove without a directory sync
 *                                       for it (a crash may bring the file
 *                                       back: repeated delivery); the inode
 *                                       is kept as a spare for a new spool
 *   kr_msg_new_copy(msg, dir, error)    B: a spool with msg's logical content
 *
 * DESCRIPTION
 *   On an uncommitted spool, kr_msg_rcpt_save and kr_msg_rewrite_envelope
 *   do nothing (the commit writes it all). A status save writes the older
 *   of the slot's two copies, so a torn write leaves the previous status
 *   readable. The envelope rewrite never overwrites the live envelope:
 *   the new one is appended and the two header copies are switched one
 *   at a time with an fdatasync between, so one header copy always points
 *   at a complete envelope.
 *
 * DIAGNOSTICS
 *   G_IO_ERROR codes: a file opened read-only is G_IO_ERROR_READ_ONLY; a
 *   move onto an existing name fails with G_IO_ERROR_EXISTS; a move of a
 *   message not in the queue is G_IO_ERROR_NOT_FOUND.
 *
 * SEE ALSO
 *   kr-qfile.c, kr-qfile-spare.c, docs/queue-format.md
 */
#include "kr-qfile-private.h"
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

/* --- changing committed files -------------------------------------------- */

static gboolean
check_writable(KrMsg *msg, GError **error)
{
    if (msg->fd < 0 || msg->readonly) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_READ_ONLY, "%s: queue file not writable",
                    msg->id);
        return FALSE;
    }
    return TRUE;
}

gboolean
kr_msg_rcpt_save(KrMsg *msg, KrRcpt *rcpt, GError **error)
{
    g_return_val_if_fail(msg != NULL && rcpt != NULL, FALSE);
    g_return_val_if_fail(rcpt->index < msg->rcpts->len && msg->rcpts->pdata[rcpt->index] == rcpt,
                         FALSE);
    if (!msg->committed)
        return TRUE; /* the commit writes it */
    if (!check_writable(msg, error))
        return FALSE;
    if (rcpt->slot_off <= 0) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND,
                    "%s: recipient %u is not in the queue file yet", msg->id, rcpt->index);
        return FALSE;
    }
    kr_qfile_crc_init();
    KrRcptPriv *rp = (KrRcptPriv *)rcpt;
    int target = 1 - rp->slot_live;
    guint8 buf[QF_STATUS_SIZE];
    kr_qfile_encode_status(buf, rcpt, rp->slot_seq + 1);
    if (!kr_qfile_pwrite_all(msg->fd, buf, sizeof buf, rcpt->slot_off + target * QF_STATUS_SIZE,
                             error))
        return FALSE;
    if (fdatasync(msg->fd) != 0)
        return kr_qfile_errno_error(error, errno, "fdatasync", msg->id);
    rp->slot_live = target;
    rp->slot_seq++;
    return TRUE;
}

gboolean
kr_msg_rewrite_envelope(KrMsg *msg, GError **error)
{
    g_return_val_if_fail(msg != NULL, FALSE);
    if (!msg->committed)
        return TRUE; /* the commit writes the envelope */
    if (!check_writable(msg, error) || !kr_qfile_check_limits(msg, error))
        return FALSE;
    kr_qfile_crc_init();
    /* Never touch the live envelope: append the new one after it (cutting
     * off what a crashed rewrite may have left), then switch the header
     * copies one at a time, the stale one first. */
    goffset env_off = msg->env_off + msg->env_len;
    g_autoptr(GByteArray) env = g_byte_array_new();
    g_autofree gsize *slot_offs = g_new(gsize, msg->rcpts->len + 1);
    guint32 crc = kr_qfile_build_envelope(msg, env, slot_offs);
    guint8 hdr[QF_HDR_SIZE];
    kr_qfile_encode_header(hdr, msg, msg->gen + 1, env_off, env->len, crc);
    int other = 1 - msg->live_hdr;
    if (ftruncate(msg->fd, env_off) != 0)
        return kr_qfile_errno_error(error, errno, "ftruncate", msg->id);
    if (!kr_qfile_pwrite_all(msg->fd, env->data, env->len, env_off, error) ||
        !kr_qfile_pwrite_all(msg->fd, hdr, sizeof hdr, other * QF_HDR_SIZE, error))
        return FALSE;
    if (fdatasync(msg->fd) != 0)
        return kr_qfile_errno_error(error, errno, "fdatasync", msg->id);
    /* Copy `other` now points at the new, durable envelope. */
    msg->gen++;
    msg->live_hdr = other;
    kr_qfile_adopt_envelope(msg, env_off, env->len, crc, slot_offs);
    if (!kr_qfile_pwrite_all(msg->fd, hdr, sizeof hdr, (1 - other) * QF_HDR_SIZE, error))
        return FALSE;
    if (fdatasync(msg->fd) != 0)
        return kr_qfile_errno_error(error, errno, "fdatasync", msg->id);
    return TRUE;
}

/* Give the file the name TO (never replacing one) and make that name
 * durable BEFORE the old name goes: link, fsync TO's directory, unlink.
 * A plain rename would not do on a file system without a journal
 * (ext4 "^has_journal"): the two directory blocks are written back
 * independently, so a concurrent fsync of the source directory (any
 * commit into incoming/) could make the removal durable before the new
 * entry, and a crash in between would lose the file. With link + sync +
 * unlink a crash leaves the file under the new name, the old one, or
 * both (the recovery scan keeps one). Where hard links are not supported,
 * a rename and a sync of both directories. */
static gboolean
move_file(KrMsg *msg, KrQueueDir dir, gboolean sync_source, GError **error)
{
    g_return_val_if_fail(msg != NULL && (unsigned)dir < KR_QUEUE_N_DIRS, FALSE);
    if (!msg->committed || msg->gone) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND, "%s: not in the queue", msg->id);
        return FALSE;
    }
    if (dir == msg->dir)
        return TRUE;
    g_autofree char *from = kr_qfile_path(msg->dir, msg->id);
    g_autofree char *to = kr_qfile_path(dir, msg->id);
    g_autofree char *dpath = kr_queue_dir_path(dir);
    g_autofree char *opath = kr_queue_dir_path(msg->dir);
    if (link(from, to) != 0) {
        int e = errno;
        if (e != EPERM && e != ENOTSUP && e != EOPNOTSUPP && e != EMLINK && e != ENOSYS)
            return kr_qfile_errno_error(error, e, "cannot link to", to);
        if (kr_qfile_rename_noreplace(from, to) != 0)
            return kr_qfile_errno_error(error, errno, "cannot rename to", to);
        msg->dir = dir;
        return kr_sync_dir_path(dpath, error) && kr_sync_dir_path(opath, error);
    }
    if (!kr_sync_dir_path(dpath, error)) {
        /* The new name may not be durable: keep the old one. */
        if (unlink(to) != 0)
            g_warning("%s: cannot remove %s: %s", msg->id, to, g_strerror(errno));
        return FALSE;
    }
    if (unlink(from) != 0 && errno != ENOENT) {
        /* Two names: the recovery scan sorts that out, the file is
         * where the caller wanted it. */
        g_warning("%s: cannot remove %s: %s", msg->id, from, g_strerror(errno));
    }
    msg->dir = dir;
    if (!sync_source)
        return TRUE;
    return kr_sync_dir_path(opath, error);
}

gboolean
kr_msg_move(KrMsg *msg, KrQueueDir dir, GError **error)
{
    return move_file(msg, dir, TRUE, error);
}

gboolean
kr_msg_move_lazy(KrMsg *msg, KrQueueDir dir, GError **error)
{
    return move_file(msg, dir, FALSE, error);
}

static gboolean
remove_file(KrMsg *msg, gboolean sync, GError **error)
{
    g_return_val_if_fail(msg != NULL, FALSE);
    if (!msg->committed) {
        kr_msg_discard(msg);
        return TRUE;
    }
    if (msg->gone)
        return TRUE;
    g_autofree char *path = kr_qfile_path(msg->dir, msg->id);
    gboolean gone = FALSE;
    if (!sync && kr_qfile_keep_as_spare(msg, path, &gone)) {
        msg->gone = TRUE;
        return TRUE;
    }
    if (!gone && unlink(path) != 0)
        return kr_qfile_errno_error(error, errno, "cannot remove", path);
    msg->gone = TRUE; /* the open descriptor still reads the content */
    if (!sync)
        return TRUE;
    g_autofree char *dpath = kr_queue_dir_path(msg->dir);
    return kr_sync_dir_path(dpath, error);
}

gboolean
kr_msg_remove(KrMsg *msg, GError **error)
{
    return remove_file(msg, TRUE, error);
}

gboolean
kr_msg_remove_lazy(KrMsg *msg, GError **error)
{
    return remove_file(msg, FALSE, error);
}

KrMsg *
kr_msg_new_copy(KrMsg *msg, KrQueueDir dir, GError **error)
{
    g_return_val_if_fail(msg != NULL, NULL);
    KrMsg *copy = kr_msg_new_spool(dir, error);
    if (!copy)
        return NULL;
    kr_msg_set_sender(copy, msg->sender);
    GHashTableIter it;
    gpointer k, v;
    g_hash_table_iter_init(&it, msg->attrs);
    while (g_hash_table_iter_next(&it, &k, &v))
        g_hash_table_insert(copy->attrs, g_strdup(k), g_strdup(v));
    enum { CHUNK = 64 * 1024 };
    g_autofree char *buf = g_malloc(CHUNK);
    for (goffset off = 0;;) {
        gssize n = kr_msg_read(msg, off, buf, CHUNK, error);
        if (n == 0)
            break;
        if (n < 0 || !kr_msg_append(copy, buf, (gsize)n, error)) {
            kr_msg_discard(copy);
            kr_msg_unref(copy);
            return NULL;
        }
        off += n;
    }
    return copy;
}
