/* SPDX-License-Identifier: MIT */
/*
 * NAME
 *   kr-qfile-load.c - queue files: loading and parsing
 *
 * SYNOPSIS
 *   #include <kurir/kurir.h>
 *
 *   KrMsg *kr_msg_load(KrQueueDir dir, const char *id, GError **error);
 *
 * DESCRIPTION
 *   Opens DIR/ID (read-write, or read-only where that is all it may),
 *   checks both header copies and parses the envelope the newest valid
 *   one points at, falling back to the other copy (a rewrite may have
 *   been cut short). The file is untrusted input: every length is
 *   checked against the file size and the bounds in kr-msg-private.h
 *   before use; unknown lower-case record types (optional records of a
 *   later version) are skipped. A recipient whose status slot has
 *   neither copy readable loads as PENDING (at-least-once).
 *
 * DIAGNOSTICS
 *   Anything malformed is G_IO_ERROR_INVALID_DATA "ID: reason"; a file
 *   that cannot be opened has the G_IO_ERROR code of its errno.
 *
 * SEE ALSO
 *   docs/queue-format.md, kr-qfile-format.c, kr-queue.h
 */
#include "kr-qfile-private.h"
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

static gboolean
no_nul(const guint8 *p, gsize n)
{
    return memchr(p, 0, n) == NULL;
}

static gboolean
parse_rcpt(KrMsg *msg, const guint8 *p, gsize len, gsize slot_pos, GError **error)
{
    guint32 notify = qf_get32(p), al = qf_get32(p + 4), ol = qf_get32(p + 8);
    gsize have = len - QF_RCPT_FIXED - QF_SLOT_SIZE;
    gsize olen = ol == QF_NO_ORCPT ? 0 : ol;
    if (notify & ~0xFu || al > KR_MSG_MAX_ADDR || olen > KR_MSG_MAX_ADDR ||
        (gsize)al + olen != have)
        return kr_qfile_bad(error, "kr_qfile_bad recipient record %u", msg->rcpts->len);
    const guint8 *a = p + QF_RCPT_FIXED, *o = a + al;
    if (!no_nul(a, al) || !no_nul(o, olen))
        return kr_qfile_bad(error, "NUL in recipient record %u", msg->rcpts->len);
    KrRcpt *r = kr_msg_push_rcpt(msg, (const char *)a, al);
    KrRcptPriv *rp = (KrRcptPriv *)r;
    r->notify = notify;
    if (ol != QF_NO_ORCPT)
        r->orcpt = g_strndup((const char *)o, olen);
    r->slot_off = msg->env_off + (goffset)slot_pos;
    const guint8 *slot = p + len - QF_SLOT_SIZE;
    KrRcpt c[2];
    guint32 seq[2];
    gboolean ok[2];
    for (int i = 0; i < 2; i++) {
        memset(&c[i], 0, sizeof c[i]);
        ok[i] = kr_qfile_decode_status(slot + i * QF_STATUS_SIZE, &c[i], &seq[i]);
    }
    int live = ok[0] && ok[1] ? (seq[1] > seq[0] ? 1 : 0) : ok[0] ? 0 : ok[1] ? 1 : -1;
    if (live < 0) {
        g_warning("%s: recipient %u <%s>: status slot unreadable, treating it as pending", msg->id,
                  r->index, r->address);
        rp->slot_live = 1; /* the next save writes copy 0 */
        rp->slot_seq = 0;
        return TRUE;
    }
    if (!ok[0] || !ok[1])
        g_message("%s: recipient %u: one copy of the status slot unreadable, using the other",
                  msg->id, r->index);
    r->state = c[live].state;
    r->attempts = c[live].attempts;
    r->next_try = c[live].next_try;
    r->first_fail = c[live].first_fail;
    r->code = c[live].code;
    memcpy(r->ecode, c[live].ecode, sizeof r->ecode);
    memcpy(r->diag, c[live].diag, sizeof r->diag);
    rp->slot_live = live;
    rp->slot_seq = seq[live];
    return TRUE;
}

static gboolean
parse_record(KrMsg *msg, guint8 type, const guint8 *p, gsize len, gsize pos, guint nrec,
             gboolean *have_time, gboolean *have_sender, GError **error)
{
    if (nrec == 0 && type != REC_ID)
        return kr_qfile_bad(error, "first record is not the queue ID");
    switch (type) {
    case REC_ID:
        if (nrec != 0 || len != KR_QUEUE_ID_LEN || memcmp(p, msg->id, KR_QUEUE_ID_LEN) != 0)
            return kr_qfile_bad(error, "queue ID record does not match the file name");
        return TRUE;
    case REC_TIME:
        if (len != 8 || *have_time)
            return kr_qfile_bad(error, "kr_qfile_bad arrival time record");
        msg->arrival = (gint64)qf_get64(p);
        *have_time = TRUE;
        return TRUE;
    case REC_SENDER:
        if (len > KR_MSG_MAX_ADDR || *have_sender || !no_nul(p, len))
            return kr_qfile_bad(error, "kr_qfile_bad sender record");
        g_free(msg->sender);
        msg->sender = g_strndup((const char *)p, len);
        *have_sender = TRUE;
        return TRUE;
    case REC_ATTR: {
        const guint8 *z = memchr(p, 0, len);
        gsize kl = z ? (gsize)(z - p) : 0, vl = z ? len - kl - 1 : 0;
        g_autofree char *key = z ? g_strndup((const char *)p, kl) : NULL;
        if (!z || !kr_msg_attr_key_ok(key) || vl > KR_MSG_ATTR_VALUE_MAX || !no_nul(z + 1, vl) ||
            g_hash_table_contains(msg->attrs, key) ||
            g_hash_table_size(msg->attrs) >= KR_MSG_MAX_ATTRS)
            return kr_qfile_bad(error, "kr_qfile_bad attribute record");
        g_hash_table_insert(msg->attrs, g_steal_pointer(&key), g_strndup((const char *)z + 1, vl));
        return TRUE;
    }
    case REC_PREPEND:
    case REC_REMOVE: {
        const guint8 *z = type == REC_PREPEND ? memchr(p, 0, len) : p + len;
        gsize nl = z ? (gsize)(z - p) : 0, vl = z && type == REC_PREPEND ? len - nl - 1 : 0;
        if (!z || !kr_msg_hdr_name_ok((const char *)p, nl) ||
            (type == REC_PREPEND && !kr_msg_hdr_value_ok((const char *)z + 1, vl)))
            return kr_qfile_bad(error, "kr_qfile_bad header edit record");
        g_autofree char *name = g_strndup((const char *)p, nl);
        g_autofree char *value = type == REC_PREPEND ? g_strndup((const char *)z + 1, vl) : NULL;
        if (!kr_msg_push_edit(msg, type == REC_REMOVE, name, value))
            return kr_qfile_bad(error, "too many header edits");
        return TRUE;
    }
    case REC_RCPT:
        if (len < QF_RCPT_FIXED + QF_SLOT_SIZE || msg->rcpts->len >= KR_MSG_MAX_RCPTS)
            return kr_qfile_bad(error, "kr_qfile_bad recipient record");
        return parse_rcpt(msg, p, len, pos + QF_REC_HDR + len - QF_SLOT_SIZE, error);
    default:
        if (type >= 'a' && type <= 'z')
            return TRUE; /* optional record from a later version */
        return kr_qfile_bad(error, "unknown record type 0x%02x", type);
    }
}

static gboolean
parse_envelope(KrMsg *msg, const guint8 *env, gsize env_len, guint32 hdr_crc, GError **error)
{
    gsize p = 0;
    guint nrec = 0;
    guint32 crc = 0;
    gboolean have_time = FALSE, have_sender = FALSE;
    while (p < env_len) {
        if (env_len - p < QF_REC_HDR)
            return kr_qfile_bad(error, "truncated record header");
        guint8 type = env[p];
        guint32 len = qf_get32(env + p + 1);
        if (len > QF_REC_MAX || len > env_len - p - QF_REC_HDR)
            return kr_qfile_bad(error, "record length %u out of range", len);
        const guint8 *payload = env + p + QF_REC_HDR;
        if (type == REC_END) {
            if (len != 8 || p + QF_REC_HDR + 8 != env_len)
                return kr_qfile_bad(error, "misplaced END record");
            if (qf_get32(payload) != nrec || qf_get32(payload + 4) != crc || crc != hdr_crc)
                return kr_qfile_bad(error, "envelope checksum mismatch");
            if (!have_time || !have_sender)
                return kr_qfile_bad(error, "arrival time or sender record missing");
            return TRUE;
        }
        gsize covered = QF_REC_HDR + len;
        if (type == REC_RCPT && len >= QF_RCPT_FIXED + QF_SLOT_SIZE)
            covered -= QF_SLOT_SIZE;
        crc = kr_qfile_crc32(crc, env + p, covered);
        if (!parse_record(msg, type, payload, len, p, nrec, &have_time, &have_sender, error))
            return FALSE;
        nrec++;
        p += QF_REC_HDR + len;
    }
    return kr_qfile_bad(error, "no END record");
}

/* Build a message from the file described by fh; NULL on error. */
static KrMsg *
load_with(int fd, KrQueueDir dir, const char *id, const KrQfileHeader *fh, GError **error)
{
    g_autofree guint8 *env = g_try_malloc((gsize)fh->env_len);
    if (!env) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_NO_SPACE, "out of memory");
        return NULL;
    }
    if (!kr_qfile_pread_all(fd, env, (gsize)fh->env_len, fh->env_off, error))
        return NULL;
    KrMsg *msg = kr_msg_alloc();
    g_strlcpy(msg->id, id, sizeof msg->id);
    msg->dir = dir;
    msg->committed = TRUE;
    msg->content_off = fh->content_off;
    msg->raw_size = fh->content_len;
    msg->env_off = fh->env_off;
    msg->env_len = fh->env_len;
    msg->env_crc = fh->env_crc;
    if (!parse_envelope(msg, env, (gsize)fh->env_len, fh->env_crc, error)) {
        kr_msg_unref(msg);
        return NULL;
    }
    return msg;
}

KrMsg *
kr_msg_load(KrQueueDir dir, const char *id, GError **error)
{
    g_return_val_if_fail((unsigned)dir < KR_QUEUE_N_DIRS, NULL);
    kr_qfile_crc_init();
    if (!kr_queue_id_valid(id)) {
        kr_qfile_bad(error, "invalid queue ID");
        return NULL;
    }
    g_autofree char *path = kr_qfile_path(dir, id);
    gboolean ro = FALSE;
    int fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0 && (errno == EACCES || errno == EROFS)) {
        ro = TRUE;
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    }
    if (fd < 0) {
        kr_qfile_errno_error(error, errno, "cannot open", path);
        return NULL;
    }
    struct stat st;
    guint8 h[QF_CONTENT_OFF];
    KrQfileHeader fh[2] = {{0}};
    GError *errs[2] = {NULL, NULL};
    gboolean ok[2] = {FALSE, FALSE};
    KrMsg *msg = NULL;
    if (fstat(fd, &st) != 0) {
        kr_qfile_errno_error(error, errno, "stat", path);
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        kr_qfile_bad(error, "not a regular file");
        goto out;
    }
    if (st.st_size < QF_CONTENT_OFF) {
        kr_qfile_bad(error, "file too short (%" G_GINT64_FORMAT " bytes)", (gint64)st.st_size);
        goto out;
    }
    if (!kr_qfile_pread_all(fd, h, sizeof h, 0, error))
        goto out;
    for (int i = 0; i < 2; i++)
        ok[i] = kr_qfile_decode_header(h + i * QF_HDR_SIZE, st.st_size, &fh[i], &errs[i]);
    /* Try the newest valid header first, then the other one. */
    int first = ok[0] && ok[1] ? (fh[1].gen > fh[0].gen ? 1 : 0) : ok[0] ? 0 : 1;
    for (int k = 0; k < 2 && !msg; k++) {
        int i = k == 0 ? first : 1 - first;
        if (!ok[i])
            continue;
        g_clear_error(&errs[i]);
        msg = load_with(fd, dir, id, &fh[i], &errs[i]);
        if (msg) {
            msg->live_hdr = i;
            msg->gen = MAX(ok[0] ? fh[0].gen : 0, ok[1] ? fh[1].gen : 0);
            if (errs[1 - i])
                g_message("%s: header copy %c unusable (%s), using copy %c", id, i == 0 ? 'B' : 'A',
                          errs[1 - i]->message, i == 0 ? 'A' : 'B');
        }
    }
    if (!msg) {
        GError *e = errs[first] ? errs[first] : errs[1 - first];
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "%s: %s", id,
                    e ? e->message : "unreadable");
    }
out:
    g_clear_error(&errs[0]);
    g_clear_error(&errs[1]);
    if (!msg) {
        close(fd);
        return NULL;
    }
    if (fcntl(fd, F_SETFL, 0) != 0) /* O_NONBLOCK was only for opening */
        g_debug("%s: fcntl: %s", id, g_strerror(errno));
    msg->fd = fd;
    msg->readonly = ro;
    return msg;
}
