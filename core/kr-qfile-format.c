/* SPDX-License-Identifier: MIT */
/*
 * NAME
 *   kr-qfile-format.c - queue files: the byte layout of headers, status
 *   slots and envelopes
 *
 * SYNOPSIS
 *   #include "kr-qfile-private.h"
 *
 *   kr_qfile_crc_init(), kr_qfile_crc32(crc, data, len)
 *   kr_qfile_encode_status(p, rcpt, seq), kr_qfile_decode_status(p, rcpt, &seq)
 *   kr_qfile_encode_header(h, msg, gen, env_off, env_len, env_crc)
 *   kr_qfile_decode_header(h, size, &fh, error)
 *   kr_qfile_check_limits(msg, error)
 *   kr_qfile_build_envelope(msg, buf, slot_offs)
 *
 * DESCRIPTION
 *   Pure functions over buffers, no I/O: the writer (kr-qfile.c,
 *   kr-qfile-update.c) and the reader (kr-qfile-load.c) share them. A
 *   status copy is QF_STATUS_SIZE bytes with a sequence number and a CRC;
 *   a header copy is QF_HDR_SIZE bytes with a generation and a CRC. The
 *   decoders treat their input as untrusted: every length is checked.
 *   The envelope parser is in kr-qfile-load.c.
 *
 * SEE ALSO
 *   docs/queue-format.md, kr-qfile-private.h
 */
#include "kr-qfile-private.h"

static guint32 crc_table[256];

void
kr_qfile_crc_init(void)
{
    static gsize done;
    if (g_once_init_enter(&done)) {
        for (guint32 i = 0; i < 256; i++) {
            guint32 c = i;
            for (int k = 0; k < 8; k++)
                c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            crc_table[i] = c;
        }
        g_once_init_leave(&done, 1);
    }
}

/* CRC-32 (IEEE 802.3, as zlib's crc32): start with 0. */
guint32
kr_qfile_crc32(guint32 crc, const void *data, gsize len)
{
    const guint8 *p = data;
    crc = ~crc;
    while (len--)
        crc = crc_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return ~crc;
}

static void
rec_begin(GByteArray *b, guint8 type, gsize *start_r)
{
    guint8 h[QF_REC_HDR] = {type, 0, 0, 0, 0};
    *start_r = b->len;
    g_byte_array_append(b, h, sizeof h);
}

static void
rec_end(GByteArray *b, gsize start)
{
    qf_put32(b->data + start + 1, (guint32)(b->len - start - QF_REC_HDR));
}

static void
rec_bytes(GByteArray *b, guint8 type, const void *a, gsize alen, const void *c, gsize clen)
{
    gsize s;
    rec_begin(b, type, &s);
    g_byte_array_append(b, a, (guint)alen);
    if (c)
        g_byte_array_append(b, c, (guint)clen);
    rec_end(b, s);
}

void
kr_qfile_encode_status(guint8 *p, const KrRcpt *r, guint32 seq)
{
    memset(p, 0, QF_STATUS_SIZE);
    qf_put32(p, seq);
    p[4] = (guint8)((unsigned)r->state <= KR_RCPT_EXPANDED ? r->state : KR_RCPT_PENDING);
    qf_put32(p + 8, r->attempts);
    qf_put32(p + 12, (guint32)r->code);
    qf_put64(p + 16, (guint64)r->next_try);
    qf_put64(p + 24, (guint64)r->first_fail);
    memcpy(p + 32, r->ecode, strnlen(r->ecode, sizeof r->ecode - 1));
    gsize dl = strnlen(r->diag, KR_DIAG_MAX);
    qf_put16(p + 44, (guint16)dl);
    memcpy(p + 46, r->diag, dl);
    qf_put32(p + QF_STATUS_SIZE - 4, kr_qfile_crc32(0, p, QF_STATUS_SIZE - 4));
}

/* FALSE if the copy is unreadable. */
gboolean
kr_qfile_decode_status(const guint8 *p, KrRcpt *r, guint32 *seq_r)
{
    if (qf_get32(p + QF_STATUS_SIZE - 4) != kr_qfile_crc32(0, p, QF_STATUS_SIZE - 4))
        return FALSE;
    guint16 dl = qf_get16(p + 44);
    if (p[4] > KR_RCPT_EXPANDED || dl > KR_DIAG_MAX || memchr(p + 46, 0, dl) ||
        !memchr(p + 32, 0, sizeof r->ecode))
        return FALSE;
    *seq_r = qf_get32(p);
    r->state = p[4];
    r->attempts = qf_get32(p + 8);
    r->code = (int)qf_get32(p + 12);
    r->next_try = (gint64)qf_get64(p + 16);
    r->first_fail = (gint64)qf_get64(p + 24);
    memcpy(r->ecode, p + 32, sizeof r->ecode);
    memcpy(r->diag, p + 46, dl);
    r->diag[dl] = 0;
    return TRUE;
}

gboolean
kr_qfile_check_limits(KrMsg *msg, GError **error)
{
    if (msg->rcpts->len > KR_MSG_MAX_RCPTS)
        return kr_qfile_bad(error, "%s: too many recipients (%u)", msg->id, msg->rcpts->len);
    if (strlen(msg->sender) > KR_MSG_MAX_ADDR)
        return kr_qfile_bad(error, "%s: sender address too long", msg->id);
    for (guint i = 0; i < msg->rcpts->len; i++) {
        const KrRcpt *r = msg->rcpts->pdata[i];
        if (!r->address || strlen(r->address) > KR_MSG_MAX_ADDR ||
            (r->orcpt && strlen(r->orcpt) > KR_MSG_MAX_ADDR))
            return kr_qfile_bad(error, "%s: recipient %u: address missing or too long", msg->id, i);
    }
    if (g_hash_table_size(msg->attrs) > KR_MSG_MAX_ATTRS)
        return kr_qfile_bad(error, "%s: too many attributes", msg->id);
    return TRUE;
}

/* Serialise the envelope; slot_offs[i] gets recipient i's slot offset
 * within it. Returns the CRC (slots excluded). */
guint32
kr_qfile_build_envelope(KrMsg *msg, GByteArray *b, gsize *slot_offs)
{
    guint8 t[8];
    rec_bytes(b, REC_ID, msg->id, KR_QUEUE_ID_LEN, NULL, 0);
    qf_put64(t, (guint64)msg->arrival);
    rec_bytes(b, REC_TIME, t, 8, NULL, 0);
    rec_bytes(b, REC_SENDER, msg->sender, strlen(msg->sender), NULL, 0);
    g_autoptr(GList) keys = g_list_sort(g_hash_table_get_keys(msg->attrs), (GCompareFunc)strcmp);
    for (GList *l = keys; l; l = l->next) {
        const char *v = g_hash_table_lookup(msg->attrs, l->data);
        rec_bytes(b, REC_ATTR, l->data, strlen(l->data) + 1, v, strlen(v));
    }
    for (guint i = 0; i < msg->edits->len; i++) {
        const KrHdrEdit *e = msg->edits->pdata[i];
        if (e->remove)
            rec_bytes(b, REC_REMOVE, e->name, strlen(e->name), NULL, 0);
        else
            rec_bytes(b, REC_PREPEND, e->name, strlen(e->name) + 1, e->value, strlen(e->value));
    }
    for (guint i = 0; i < msg->rcpts->len; i++) {
        const KrRcpt *r = msg->rcpts->pdata[i];
        gsize s, al = strlen(r->address), ol = r->orcpt ? strlen(r->orcpt) : 0;
        guint8 fixed[QF_RCPT_FIXED];
        qf_put32(fixed, r->notify & 0xF);
        qf_put32(fixed + 4, (guint32)al);
        qf_put32(fixed + 8, r->orcpt ? (guint32)ol : QF_NO_ORCPT);
        rec_begin(b, REC_RCPT, &s);
        g_byte_array_append(b, fixed, sizeof fixed);
        g_byte_array_append(b, (const guint8 *)r->address, (guint)al);
        if (r->orcpt)
            g_byte_array_append(b, (const guint8 *)r->orcpt, (guint)ol);
        slot_offs[i] = b->len;
        guint8 slot[QF_SLOT_SIZE];
        kr_qfile_encode_status(slot, r, 1);
        kr_qfile_encode_status(slot + QF_STATUS_SIZE, r, 0);
        g_byte_array_append(b, slot, sizeof slot);
        rec_end(b, s);
    }
    /* CRC over everything so far except the slots. */
    guint32 crc = 0;
    gsize from = 0;
    for (guint i = 0; i < msg->rcpts->len; i++) {
        crc = kr_qfile_crc32(crc, b->data + from, slot_offs[i] - from);
        from = slot_offs[i] + QF_SLOT_SIZE;
    }
    crc = kr_qfile_crc32(crc, b->data + from, b->len - from);
    guint8 end[8];
    qf_put32(end, msg->rcpts->len + g_hash_table_size(msg->attrs) + msg->edits->len + 3);
    qf_put32(end + 4, crc);
    rec_bytes(b, REC_END, end, sizeof end, NULL, 0);
    return crc;
}

void
kr_qfile_encode_header(guint8 *h, const KrMsg *msg, guint32 gen, goffset env_off, goffset env_len,
                       guint32 env_crc)
{
    memset(h, 0, QF_HDR_SIZE);
    memcpy(h, QF_MAGIC, 4);
    qf_put16(h + 4, QF_VERSION);
    qf_put16(h + 6, QF_HDR_SIZE);
    qf_put32(h + 8, gen);
    qf_put64(h + 16, (guint64)msg->content_off);
    qf_put64(h + 24, (guint64)msg->raw_size);
    qf_put64(h + 32, (guint64)env_off);
    qf_put64(h + 40, (guint64)env_len);
    qf_put32(h + 48, env_crc);
    qf_put32(h + 60, kr_qfile_crc32(0, h, 60));
}

gboolean
kr_qfile_decode_header(const guint8 *h, goffset size, KrQfileHeader *fh, GError **error)
{
    if (memcmp(h, QF_MAGIC, 4) != 0)
        return kr_qfile_bad(error, "not a queue file (kr_qfile_bad magic)");
    if (qf_get32(h + 60) != kr_qfile_crc32(0, h, 60))
        return kr_qfile_bad(error, "file header checksum mismatch");
    if (qf_get16(h + 4) != QF_VERSION || qf_get16(h + 6) != QF_HDR_SIZE)
        return kr_qfile_bad(error, "unsupported queue file version %u", qf_get16(h + 4));
    guint64 co = qf_get64(h + 16), cl = qf_get64(h + 24), eo = qf_get64(h + 32),
            el = qf_get64(h + 40);
    guint64 sz = (guint64)size;
    if (co < QF_CONTENT_OFF || co > sz || cl > sz - co || eo < co + cl || eo > sz || el > sz - eo ||
        el < QF_REC_HDR + 8 || el > (guint64)QF_ENV_MAX)
        return kr_qfile_bad(error, "file header offsets out of range (file truncated?)");
    fh->gen = qf_get32(h + 8);
    fh->content_off = (goffset)co;
    fh->content_len = (goffset)cl;
    fh->env_off = (goffset)eo;
    fh->env_len = (goffset)el;
    fh->env_crc = qf_get32(h + 48);
    return TRUE;
}
