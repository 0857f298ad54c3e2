/* SPDX-License-Identifier: MIT */
/*
 * imap-mime-section.c - FETCH sections from the part table: BODY[...]
 * (RFC 3501 / 9051 6.4.5) and BINARY[...] / BINARY.SIZE[...] (RFC 3516),
 * read from the stored file, in wire form, with the partial applied.
 * GMime decodes base64 and quoted-printable for BINARY.
 *
 *   imap_mime_section()        the octets of a section
 *   imap_mime_section_size()   their size, without the partial
 *   imap_mime_stream_open/read/free()   the same octets in chunks
 *   imap_mime_stream_in_memory()        made at open: the input is done with
 *   imap_mime_header_section()          a top-level header section?
 *   imap_mime_header_stream_open()      ... streamed from the header alone
 *
 * A section is planned as a range of the file, read and converted to
 * wire form chunk by chunk (a range without bare LFs is read directly at
 * its partial offset), or as octets made in memory: HEADER.FIELDS(.NOT)
 * and decoded BINARY. The top-level header sections can also be planned
 * without a parsed message (header_scan finds the header's end the way
 * the parser does, from the first read window on).
 *
 * Part numbers resolve as in Dovecot (imap-msgpart.c): in a multipart N
 * is its Nth part; a non-multipart entity has only part 1, itself;
 * numbers after a message/rfc822 part go into the embedded message.
 */
#include "imap-mime-int.h"

#include <errno.h>
#include <gmime/gmime.h>
#include <string.h>
#include <unistd.h>

#define CHUNK          65536
#define HDR_FIRST      8192               /* first read of a header-only section */
#define HDR_KEEP       262144             /* a bigger BODY[HEADER] is read again, in chunks */
#define HDR_FIELDS_MAX (16 * 1024 * 1024) /* HEADER.FIELDS of a bigger header: refused */

static gpointer
gmime_init_once(gpointer unused)
{
    g_mime_init();
    return NULL;
}

static void
gmime_init(void)
{
    static GOnce once = G_ONCE_INIT;
    g_once(&once, gmime_init_once, NULL);
}

static gboolean
no_part(GError **error)
{
    g_set_error_literal(error, IMAP_MIME_ERROR, IMAP_MIME_ERROR_NO_PART, "No such section");
    return FALSE;
}

/* Still the file we parsed? */
static gboolean
check_input(const ImapMimeMessage *msg, const ImapMimeInput *in, GError **error)
{
    guint64 size;
    if (!mime_input_size(in, &size, error))
        return FALSE;
    if (size != msg->size) {
        g_set_error(error, IMAP_MIME_ERROR, IMAP_MIME_ERROR_CHANGED,
                    "Message is %" G_GUINT64_FORMAT " octets, was %" G_GUINT64_FORMAT, size,
                    msg->size);
        return FALSE;
    }
    return TRUE;
}

/* The node that part numbers name, or MIME_NONE. */
static guint32
resolve(const ImapMimeMessage *msg, const guint32 *part, guint n)
{
    guint32 cur = 0;
    for (guint k = 0; k < n; k++) {
        const MimeNode *c = &msg->nodes[cur];
        guint32 num = part[k];
        if (c->kind == MIME_MULTIPART) {
            guint32 ch = c->first_child;
            while (ch != MIME_NONE && num > 1) {
                ch = msg->nodes[ch].next;
                num--;
            }
            if (ch == MIME_NONE)
                return MIME_NONE;
            cur = ch;
        } else if (num != 1 || (k + 1 < n && c->kind != MIME_MESSAGE)) {
            return MIME_NONE;
        }
        if (k + 1 < n && msg->nodes[cur].kind == MIME_MESSAGE)
            cur = msg->nodes[cur].first_child;
    }
    return cur;
}

/* A range of the file and its size in wire form. */
typedef struct {
    guint64 off, end, wire;
} Range;

static void
partial_bounds(const ImapFetchSection *sec, guint64 size, guint64 *o_r, guint64 *l_r)
{
    *o_r = 0;
    *l_r = size;
    if (sec->partial) {
        *o_r = MIN(sec->offset, size);
        *l_r = MIN(sec->length, size - *o_r);
    }
}

/* The section in wire form when it is a plain range of the file. */
static gboolean
section_range(const ImapMimeMessage *msg, const ImapFetchSection *sec, guint32 idx, Range *r_r,
              GError **error)
{
    const MimeNode *p = &msg->nodes[idx];
    switch (sec->text) {
    case IMAP_SECTION_ALL:
        if (sec->n_part == 0)
            *r_r = (Range){0, msg->size, msg->wire_size};
        else
            *r_r = (Range){p->body_start, p->end, p->body_wire};
        return TRUE;
    case IMAP_SECTION_MIME:
        if (sec->n_part == 0)
            return no_part(error);
        *r_r = (Range){p->hdr_start, p->body_start, p->hdr_wire};
        return TRUE;
    default:
        break;
    }
    /* HEADER, HEADER.FIELDS(.NOT), TEXT: of the message that is the part */
    if (sec->n_part > 0) {
        if (p->kind != MIME_MESSAGE || p->first_child == MIME_NONE)
            return no_part(error);
        p = &msg->nodes[p->first_child];
    }
    if (sec->text == IMAP_SECTION_TEXT)
        *r_r = (Range){p->body_start, p->end, p->body_wire};
    else
        *r_r = (Range){p->hdr_start, p->body_start, p->hdr_wire};
    return TRUE;
}

static gboolean
field_listed(const MimeField *f, char *const *names)
{
    for (guint i = 0; names && names[i]; i++)
        if (mime_field_is(f, names[i]))
            return TRUE;
    return FALSE;
}

/* The fields of header block h chosen by HEADER.FIELDS(.NOT) as they
 * are, each ending in CRLF, then CRLF. */
static void
fields_of(const char *h, gsize len, const ImapFetchSection *sec, GByteArray *out)
{
    gboolean not = sec->text == IMAP_SECTION_HEADER_FIELDS_NOT;
    gsize pos = 0;
    MimeField f;
    while (mime_field_next(h, len, &pos, &f)) {
        if (field_listed(&f, sec->fields) == not )
            continue;
        gboolean last_cr = FALSE;
        mime_crlf_append(out, (const guchar *)f.raw, f.raw_len, &last_cr);
        if (f.raw_len == 0 || f.raw[f.raw_len - 1] != '\n')
            g_byte_array_append(out, (const guchar *)"\r\n", 2);
    }
    g_byte_array_append(out, (const guchar *)"\r\n", 2);
}

/* HEADER.FIELDS / HEADER.FIELDS.NOT of the header in range r. */
static gboolean
header_fields(const ImapMimeInput *in, const Range *r, const ImapFetchSection *sec, GByteArray *out,
              GError **error)
{
    gsize len = (gsize)(r->end - r->off), got;
    char *h = g_malloc(len + 1);
    if (!mime_input_read(in, r->off, h, len, &got, error)) {
        g_free(h);
        return FALSE;
    }
    fields_of(h, got, sec, out);
    g_free(h);
    return TRUE;
}

/* Decode [r->off, r->end) of the file: base64 from the stored octets,
 * quoted-printable from the wire form (so hard line breaks are CRLF). */
static gboolean
decode(const ImapMimeInput *in, const Range *r, guint8 cte, GByteArray *out, guint64 *size_r,
       GError **error)
{
    gmime_init();
    GMimeEncoding st;
    g_mime_encoding_init_decode(&st, cte == MIME_CTE_BASE64
                                         ? GMIME_CONTENT_ENCODING_BASE64
                                         : GMIME_CONTENT_ENCODING_QUOTEDPRINTABLE);
    guchar *buf = g_malloc(CHUNK);
    GByteArray *wire = g_byte_array_new();
    GByteArray *dec = g_byte_array_new();
    gboolean last_cr = FALSE, ok = TRUE;
    guint64 pos = r->off, total = 0;
    for (;;) {
        gsize got = 0;
        if (pos < r->end &&
            !(ok = mime_input_read(in, pos, buf, (gsize)MIN((guint64)CHUNK, r->end - pos), &got,
                                   error)))
            break;
        pos += got;
        const guchar *src = buf;
        gsize n = got;
        if (cte == MIME_CTE_QP) {
            g_byte_array_set_size(wire, 0);
            mime_crlf_append(wire, buf, got, &last_cr);
            src = wire->data;
            n = wire->len;
        }
        g_byte_array_set_size(dec, (guint)g_mime_encoding_outlen(&st, n) + 16);
        gsize d = got ? g_mime_encoding_step(&st, (const char *)src, n, (char *)dec->data)
                      : g_mime_encoding_flush(&st, NULL, 0, (char *)dec->data);
        total += d;
        if (out)
            g_byte_array_append(out, dec->data, (guint)d);
        if (got == 0)
            break;
    }
    g_byte_array_free(wire, TRUE);
    g_byte_array_free(dec, TRUE);
    g_free(buf);
    if (size_r)
        *size_r = total;
    return ok;
}

/* BINARY: what to decode, or a plain range. */
static gboolean
binary_plan(const ImapMimeMessage *msg, const ImapFetchSection *sec, Range *r_r, guint8 *cte_r,
            GError **error)
{
    *cte_r = MIME_CTE_IDENTITY;
    if (sec->n_part == 0) {
        *r_r = (Range){0, msg->size, msg->wire_size};
        return TRUE;
    }
    guint32 idx = resolve(msg, sec->part, sec->n_part);
    if (idx == MIME_NONE)
        return no_part(error);
    const MimeNode *p = &msg->nodes[idx];
    *r_r = (Range){p->body_start, p->end, p->body_wire};
    if (p->kind == MIME_LEAF)
        *cte_r = p->cte;
    if (*cte_r == MIME_CTE_UNKNOWN) {
        g_set_error_literal(error, IMAP_MIME_ERROR, IMAP_MIME_ERROR_UNKNOWN_CTE,
                            "Unknown Content-Transfer-Encoding");
        return FALSE;
    }
    return TRUE;
}

/* What a section is: a range of the file (in wire form), or octets
 * made in memory (HEADER.FIELDS, decoded BINARY); and the partial window. */
typedef struct {
    Range r;
    GByteArray *mem;
    guint64 o, l;
} Plan;

static gboolean
plan(const ImapMimeMessage *msg, const ImapMimeInput *in, const ImapFetchSection *sec, Plan *p,
     GError **error)
{
    memset(p, 0, sizeof *p);
    if (!check_input(msg, in, error))
        return FALSE;
    if (sec->kind != IMAP_SECTION_BODY) {
        guint8 cte;
        if (!binary_plan(msg, sec, &p->r, &cte, error))
            return FALSE;
        if (cte != MIME_CTE_IDENTITY) {
            p->mem = g_byte_array_new();
            if (!decode(in, &p->r, cte, p->mem, NULL, error)) {
                g_byte_array_free(p->mem, TRUE);
                p->mem = NULL;
                return FALSE;
            }
        }
    } else {
        guint32 idx = resolve(msg, sec->part, sec->n_part);
        if (idx == MIME_NONE)
            return no_part(error);
        if (!section_range(msg, sec, idx, &p->r, error))
            return FALSE;
        if (sec->text == IMAP_SECTION_HEADER_FIELDS ||
            sec->text == IMAP_SECTION_HEADER_FIELDS_NOT) {
            p->mem = g_byte_array_new();
            if (!header_fields(in, &p->r, sec, p->mem, error)) {
                g_byte_array_free(p->mem, TRUE);
                p->mem = NULL;
                return FALSE;
            }
        }
    }
    partial_bounds(sec, p->mem ? p->mem->len : p->r.wire, &p->o, &p->l);
    return TRUE;
}

struct ImapMimeStream {
    ImapMimeInput in;
    Plan p;
    guint64 done;   /* octets given out */
    guint64 pos, w; /* next file offset to read; wire offset of pend's start */
    gboolean last_cr;
    GByteArray *pend; /* converted octets not given out yet, from pend_off */
    gsize pend_off;
};

ImapMimeStream *
imap_mime_stream_open(const ImapMimeMessage *msg, const ImapMimeInput *in,
                      const ImapFetchSection *sec, guint64 *size_r, GError **error)
{
    g_return_val_if_fail(msg && in && sec && size_r, NULL);
    ImapMimeStream *st = g_new0(ImapMimeStream, 1);
    if (!plan(msg, in, sec, &st->p, error)) {
        g_free(st);
        return NULL;
    }
    st->in = *in;
    st->pos = st->p.r.off;
    *size_r = st->p.l;
    return st;
}

static gboolean
changed(GError **error)
{
    g_set_error_literal(error, IMAP_MIME_ERROR, IMAP_MIME_ERROR_CHANGED,
                        "Message changed while read");
    return FALSE;
}

gssize
imap_mime_stream_read(ImapMimeStream *st, void *buf, gsize len, GError **error)
{
    const Plan *p = &st->p;
    len = (gsize)MIN((guint64)len, p->l - st->done);
    if (len == 0)
        return 0;
    if (p->mem) {
        memcpy(buf, p->mem->data + p->o + st->done, len);
        st->done += len;
        return (gssize)len;
    }
    if (p->r.wire == p->r.end - p->r.off) {
        /* no bare LF in the range: wire offsets are file offsets */
        gsize got;
        if (!mime_input_read(&st->in, p->r.off + p->o + st->done, buf, len, &got, error))
            return -1;
        if (got < len) {
            changed(error);
            return -1;
        }
        st->done += len;
        return (gssize)len;
    }
    if (!st->pend)
        st->pend = g_byte_array_new();
    gsize out = 0;
    guchar *raw = NULL;
    while (out < len) {
        if (st->pend_off < st->pend->len) {
            gsize n = MIN(len - out, st->pend->len - st->pend_off);
            memcpy((guchar *)buf + out, st->pend->data + st->pend_off, n);
            st->pend_off += n;
            out += n;
            continue;
        }
        gsize got = 0;
        if (!raw)
            raw = g_malloc(CHUNK);
        if (st->pos >= p->r.end ||
            !mime_input_read(&st->in, st->pos, raw, (gsize)MIN((guint64)CHUNK, p->r.end - st->pos),
                             &got, error) ||
            got == 0) {
            g_free(raw);
            if (error && !*error)
                changed(error);
            return -1;
        }
        st->pos += got;
        g_byte_array_set_size(st->pend, 0);
        mime_crlf_append(st->pend, raw, got, &st->last_cr);
        st->pend_off = st->w < p->o ? (gsize)MIN(p->o - st->w, (guint64)st->pend->len) : 0;
        st->w += st->pend->len;
    }
    g_free(raw);
    st->done += out;
    return (gssize)out;
}

gboolean
imap_mime_stream_in_memory(const ImapMimeStream *st)
{
    return st->p.mem != NULL;
}

void
imap_mime_stream_free(ImapMimeStream *st)
{
    if (!st)
        return;
    if (st->p.mem)
        g_byte_array_free(st->p.mem, TRUE);
    if (st->pend)
        g_byte_array_free(st->pend, TRUE);
    g_free(st);
}

/* ---- top-level header sections from the header alone ---- */

gboolean
imap_mime_header_section(const ImapFetchSection *sec)
{
    return sec->kind == IMAP_SECTION_BODY && sec->n_part == 0 &&
           (sec->text == IMAP_SECTION_HEADER || sec->text == IMAP_SECTION_HEADER_FIELDS ||
            sec->text == IMAP_SECTION_HEADER_FIELDS_NOT);
}

/* One pread (a regular file reads short only at its end), or a copy. */
static gboolean
read_once(const ImapMimeInput *in, guint64 off, guchar *buf, gsize len, gsize *got_r,
          GError **error)
{
    if (in->data || in->fd < 0)
        return mime_input_read(in, off, buf, len, got_r, error);
    ssize_t n;
    do
        n = pread(in->fd, buf, len, (off_t)off);
    while (n < 0 && errno == EINTR);
    if (n < 0) {
        int e = errno;
        g_set_error(error, IMAP_MIME_ERROR, IMAP_MIME_ERROR_IO, "read: %s", g_strerror(e));
        return FALSE;
    }
    *got_r = (gsize)n;
    return TRUE;
}

/* Where the top-level header ends, as the full parse finds it: after the
 * first empty line ("\n" or "\r\n" at a line start), or at the end of
 * the input. r_r->wire counts bare LFs as CRLF. The bytes read are kept
 * in *keep_r while the header is at most keep_max octets (else *keep_r
 * is NULL and the caller reads the range again). Windows of HDR_FIRST
 * octets, doubling up to CHUNK: a small message is one read. */
static gboolean
header_scan(const ImapMimeInput *in, gsize keep_max, Range *r_r, GByteArray **keep_r,
            GError **error)
{
    GByteArray *keep = g_byte_array_new();
    guchar *buf = NULL;
    gsize win = HDR_FIRST;
    guint64 off = 0, bare = 0;
    gboolean at_start = TRUE;  /* off is a line start */
    gboolean cr_start = FALSE; /* the line so far is "\r" */
    gboolean prev_cr = FALSE;  /* the byte before off is CR */
    gboolean done = FALSE;
    while (!done) {
        gsize got = 0;
        const guchar *p;
        if (keep && off + win <= keep_max) { /* read straight into keep */
            guint have = keep->len;
            g_byte_array_set_size(keep, have + (guint)win);
            if (!read_once(in, off, keep->data + have, win, &got, error))
                break;
            g_byte_array_set_size(keep, have + (guint)got);
            p = keep->data + have;
        } else {
            if (keep) {
                g_byte_array_free(keep, TRUE);
                keep = NULL;
            }
            if (!buf)
                buf = g_malloc(CHUNK);
            if (!read_once(in, off, buf, win, &got, error))
                break;
            p = buf;
        }
        if (got == 0) { /* the end: all of it is header */
            done = TRUE;
            break;
        }
        gsize i = 0, end = got;
        if (cr_start) {
            cr_start = FALSE;
            if (p[0] == '\n')
                end = 1, done = TRUE;
            else
                at_start = FALSE;
        }
        while (!done && i < got) {
            if (at_start) {
                if (p[i] == '\n') {
                    end = i + 1, done = TRUE;
                    break;
                }
                if (p[i] == '\r' && i + 1 == got) {
                    cr_start = TRUE;
                    break;
                }
                if (p[i] == '\r' && p[i + 1] == '\n') {
                    end = i + 2, done = TRUE;
                    break;
                }
            }
            const guchar *nl = memchr(p + i, '\n', got - i);
            if (!nl) {
                at_start = FALSE;
                break;
            }
            i = (gsize)(nl - p) + 1;
            at_start = TRUE;
        }
        for (gsize k = 0; k < end; k++) {
            if (p[k] == '\n' && !(k > 0 ? p[k - 1] == '\r' : prev_cr))
                bare++;
        }
        prev_cr = p[end - 1] == '\r';
        off += end;
        if (got < win) /* a short read is the end: all of it is header */
            done = TRUE;
        if (keep && done)
            g_byte_array_set_size(keep, (guint)off);
        win = MIN(win * 2, (gsize)CHUNK);
    }
    g_free(buf);
    if (!done) {
        if (keep)
            g_byte_array_free(keep, TRUE);
        return FALSE;
    }
    *r_r = (Range){0, off, off + bare};
    *keep_r = keep;
    return TRUE;
}

ImapMimeStream *
imap_mime_header_stream_open(const ImapMimeInput *in, const ImapFetchSection *sec, guint64 *size_r,
                             GError **error)
{
    g_return_val_if_fail(in && sec && size_r && imap_mime_header_section(sec), NULL);
    gboolean fields = sec->text != IMAP_SECTION_HEADER;
    GByteArray *keep = NULL;
    Range r;
    if (!header_scan(in, fields ? HDR_FIELDS_MAX : HDR_KEEP, &r, &keep, error))
        return NULL;
    ImapMimeStream *st = g_new0(ImapMimeStream, 1);
    st->in = *in;
    st->p.r = r;
    if (keep && fields) {
        st->p.mem = g_byte_array_new();
        fields_of((const char *)keep->data, keep->len, sec, st->p.mem);
    } else if (keep) {
        st->p.mem = g_byte_array_sized_new((guint)r.wire);
        gboolean last_cr = FALSE;
        mime_crlf_append(st->p.mem, keep->data, keep->len, &last_cr);
    } else if (fields) { /* the header is over HDR_FIELDS_MAX: not filtered in memory */
        g_set_error_literal(error, IMAP_MIME_ERROR, IMAP_MIME_ERROR_IO, "Header too large");
        g_free(st);
        return NULL;
    }
    if (keep)
        g_byte_array_free(keep, TRUE);
    partial_bounds(sec, st->p.mem ? st->p.mem->len : r.wire, &st->p.o, &st->p.l);
    st->pos = r.off;
    *size_r = st->p.l;
    return st;
}

gboolean
imap_mime_section(const ImapMimeMessage *msg, const ImapMimeInput *in, const ImapFetchSection *sec,
                  GBytes **out_r, GError **error)
{
    g_return_val_if_fail(msg && in && sec && out_r, FALSE);
    *out_r = NULL;
    guint64 size;
    ImapMimeStream *st = imap_mime_stream_open(msg, in, sec, &size, error);
    if (!st)
        return FALSE;
    if (size > G_MAXUINT32) {
        imap_mime_stream_free(st);
        g_set_error_literal(error, IMAP_MIME_ERROR, IMAP_MIME_ERROR_IO,
                            "Section too large for memory; stream it");
        return FALSE;
    }
    guchar *data = g_malloc(size ? (gsize)size : 1);
    gsize have = 0;
    while (have < size) {
        gssize n = imap_mime_stream_read(st, data + have, (gsize)(size - have), error);
        if (n <= 0) {
            g_free(data);
            imap_mime_stream_free(st);
            if (n == 0)
                return changed(error);
            return FALSE;
        }
        have += (gsize)n;
    }
    imap_mime_stream_free(st);
    *out_r = g_bytes_new_take(data, (gsize)size);
    return TRUE;
}

gboolean
imap_mime_section_size(const ImapMimeMessage *msg, const ImapMimeInput *in,
                       const ImapFetchSection *sec, guint64 *size_r, GError **error)
{
    g_return_val_if_fail(msg && in && sec && size_r, FALSE);
    if (!check_input(msg, in, error))
        return FALSE;
    Range r;
    if (sec->kind != IMAP_SECTION_BODY) {
        guint8 cte;
        if (!binary_plan(msg, sec, &r, &cte, error))
            return FALSE;
        if (cte == MIME_CTE_IDENTITY) {
            *size_r = r.wire;
            return TRUE;
        }
        return decode(in, &r, cte, NULL, size_r, error);
    }
    guint32 idx = resolve(msg, sec->part, sec->n_part);
    if (idx == MIME_NONE)
        return no_part(error);
    if (!section_range(msg, sec, idx, &r, error))
        return FALSE;
    if (sec->text == IMAP_SECTION_HEADER_FIELDS || sec->text == IMAP_SECTION_HEADER_FIELDS_NOT) {
        GByteArray *res = g_byte_array_new();
        gboolean ok = header_fields(in, &r, sec, res, error);
        *size_r = res->len;
        g_byte_array_free(res, TRUE);
        return ok;
    }
    *size_r = r.wire;
    return TRUE;
}
