/* SPDX-License-Identifier: MIT */
/*
 * kr-msg.c - the KrMsg object: envelope, attributes, headers and the
 * logical content (the stored bytes with header edits applied).
 *
 *   kr_msg_ref/unref                     reference counting
 *   kr_msg_queue_id/arrival/sender/...   envelope getters and setters
 *   kr_msg_add_rcpt/rcpt_count/rcpt      recipients (KrRcpt, in-memory attrs)
 *   kr_rcpt_set_result, kr_rcpt_attr     one recipient's outcome / attrs
 *   kr_msg_attr/set_attr                 message attributes
 *   kr_msg_header/header_count           headers of the logical content
 *   kr_msg_prepend_header/remove_header  header edits (envelope records)
 *   kr_msg_size/read/write_to_fd         the logical content
 *
 * The queue file format, spooling and commit are in kr-qfile.c.
 *
 * Header edits are an ordered list: a removal hides every original header
 * of that name and every header prepended before it; a header prepended
 * after a removal is visible. Visible prepended headers come first in the
 * logical content, the most recently prepended at the top (as if each had
 * been inserted at the top), and they use the line ending of the content
 * (CRLF if its first line ends in CRLF, else LF).
 *
 * Headers of the stored content are parsed once, lazily, from at most
 * KR_MSG_MAX_HEADER_BLOCK bytes and KR_MSG_MAX_HEADERS fields; the block
 * ends at the first empty line or the first line that is not a header
 * field. The parsed index and the content map are built under msg->lock
 * and reference counted, so concurrent kr_msg_read calls are safe.
 *
 * Setters change the message in memory only. Before commit that is all
 * that is needed; after commit, kr_msg_rewrite_envelope persists them
 * (recipient status: kr_msg_rcpt_save).
 */
#include "kr-msg-private.h"
#include <errno.h>
#include <unistd.h>

/* One piece of the logical content: bytes in memory or a range of the
 * stored content. */
typedef struct {
    goffset loff; /* logical offset */
    goffset len;
    goffset roff; /* raw content offset, or -1: memory at mem + moff */
    gsize moff;
} Seg;

struct KrContentMap {
    gint refcount;
    GArray *segs; /* Seg */
    char *mem;
    goffset size;
};

static void
rcpt_free(gpointer p)
{
    KrRcptPriv *r = p;
    g_free(r->pub.address);
    g_free(r->pub.orcpt);
    if (r->pub.attrs)
        g_hash_table_unref(r->pub.attrs);
    g_free(r);
}

static void
edit_free(gpointer p)
{
    KrHdrEdit *e = p;
    g_free(e->name);
    g_free(e->value);
    g_free(e->unfolded);
    g_free(e);
}

static void
hdr_free(gpointer p)
{
    KrHdr *h = p;
    g_free(h->name);
    g_free(h->value);
    g_free(h);
}

static void
map_unref(KrContentMap *map)
{
    if (map && g_atomic_int_dec_and_test(&map->refcount)) {
        g_array_unref(map->segs);
        g_free(map->mem);
        g_free(map);
    }
}

KrMsg *
kr_msg_alloc(void)
{
    KrMsg *msg = g_new0(KrMsg, 1);
    msg->refcount = 1;
    msg->sender = g_strdup("");
    msg->rcpts = g_ptr_array_new_with_free_func(rcpt_free);
    msg->attrs = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
    msg->edits = g_ptr_array_new_with_free_func(edit_free);
    msg->fd = -1;
    msg->crlf = TRUE;
    g_mutex_init(&msg->lock);
    return msg;
}

KrMsg *
kr_msg_ref(KrMsg *msg)
{
    g_return_val_if_fail(msg != NULL, NULL);
    g_atomic_int_inc(&msg->refcount);
    return msg;
}

void
kr_msg_unref(KrMsg *msg)
{
    if (!msg || !g_atomic_int_dec_and_test(&msg->refcount))
        return;
    kr_qfile_release(msg);
    g_free(msg->sender);
    g_ptr_array_unref(msg->rcpts);
    g_hash_table_unref(msg->attrs);
    g_ptr_array_unref(msg->edits);
    if (msg->hdrs)
        g_ptr_array_unref(msg->hdrs);
    map_unref(msg->map);
    g_clear_error(&msg->write_error);
    g_mutex_clear(&msg->lock);
    g_free(msg);
}

/* --- envelope ------------------------------------------------------------ */

const char *
kr_msg_queue_id(const KrMsg *msg)
{
    return msg->id;
}

gint64
kr_msg_arrival(const KrMsg *msg)
{
    return msg->arrival;
}

const char *
kr_msg_sender(const KrMsg *msg)
{
    return msg->sender;
}

void
kr_msg_set_sender(KrMsg *msg, const char *sender)
{
    char *s = g_strdup(sender ? sender : "");
    g_free(msg->sender);
    msg->sender = s;
}

KrRcpt *
kr_msg_push_rcpt(KrMsg *msg, const char *address, gsize len)
{
    KrRcptPriv *r = g_new0(KrRcptPriv, 1);
    r->pub.address = g_strndup(address, len);
    r->pub.state = KR_RCPT_PENDING;
    r->pub.index = msg->rcpts->len;
    g_ptr_array_add(msg->rcpts, r);
    return &r->pub;
}

KrRcpt *
kr_msg_add_rcpt(KrMsg *msg, const char *address)
{
    g_return_val_if_fail(msg != NULL && address != NULL, NULL);
    return kr_msg_push_rcpt(msg, address, strlen(address));
}

guint
kr_msg_rcpt_count(const KrMsg *msg)
{
    return msg->rcpts->len;
}

KrRcpt *
kr_msg_rcpt(const KrMsg *msg, guint i)
{
    return i < msg->rcpts->len ? msg->rcpts->pdata[i] : NULL;
}

/* Copy at most max bytes of s, cut back to a UTF-8 character boundary. */
static gsize
cut_utf8(const char *s, gsize max)
{
    gsize n = strlen(s);
    if (n <= max)
        return n;
    n = max;
    while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
        n--;
    return n;
}

void
kr_rcpt_set_result(KrRcpt *rcpt, KrRcptState state, int code, const char *ecode, const char *diag)
{
    g_return_if_fail(rcpt != NULL);
    rcpt->state = state;
    rcpt->code = code;
    g_strlcpy(rcpt->ecode, ecode ? ecode : "", sizeof rcpt->ecode);
    gsize n = cut_utf8(diag ? diag : "", KR_DIAG_MAX);
    for (gsize i = 0; i < n; i++) {
        unsigned char c = (unsigned char)diag[i];
        rcpt->diag[i] = c < 0x20 || c == 0x7f ? ' ' : (char)c; /* one line */
    }
    rcpt->diag[n] = 0;
    /* An outcome of a delivery attempt counts as an attempt. */
    if (state == KR_RCPT_DELIVERED || state == KR_RCPT_DEFERRED || state == KR_RCPT_FAILED)
        rcpt->attempts++;
    if (state == KR_RCPT_DEFERRED && rcpt->first_fail == 0)
        rcpt->first_fail = g_get_real_time() / G_USEC_PER_SEC;
}

const char *
kr_rcpt_attr(const KrRcpt *rcpt, const char *key)
{
    return rcpt->attrs ? g_hash_table_lookup(rcpt->attrs, key) : NULL;
}

void
kr_rcpt_set_attr(KrRcpt *rcpt, const char *key, const char *value)
{
    g_return_if_fail(rcpt != NULL && key != NULL);
    if (!value) {
        if (rcpt->attrs)
            g_hash_table_remove(rcpt->attrs, key);
        return;
    }
    if (!rcpt->attrs)
        rcpt->attrs = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
    g_hash_table_insert(rcpt->attrs, g_strdup(key), g_strdup(value));
}

/* --- attributes ---------------------------------------------------------- */

gboolean
kr_msg_attr_key_ok(const char *key)
{
    gsize n = 0;
    for (const char *p = key; *p; p++, n++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_'))
            return FALSE;
    return n > 0 && n <= KR_MSG_ATTR_KEY_MAX;
}

const char *
kr_msg_attr(const KrMsg *msg, const char *key)
{
    return g_hash_table_lookup(msg->attrs, key);
}

void
kr_msg_set_attr(KrMsg *msg, const char *key, const char *value)
{
    g_return_if_fail(msg != NULL && key != NULL);
    g_return_if_fail(kr_msg_attr_key_ok(key));
    if (!value) {
        g_hash_table_remove(msg->attrs, key);
        return;
    }
    gsize n = cut_utf8(value, KR_MSG_ATTR_VALUE_MAX);
    if (n < strlen(value))
        g_debug("%s: attribute %s truncated to %zu bytes", msg->id, key, n);
    g_hash_table_insert(msg->attrs, g_strdup(key), g_strndup(value, n));
}

/* --- headers ------------------------------------------------------------- */

gboolean
kr_msg_hdr_name_ok(const char *name, gsize len)
{
    if (len == 0 || len > KR_MSG_HDR_NAME_MAX)
        return FALSE;
    for (gsize i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c < 33 || c > 126 || c == ':')
            return FALSE;
    }
    return TRUE;
}

static gboolean
is_wsp(char c)
{
    return c == ' ' || c == '\t';
}

gboolean
kr_msg_hdr_value_ok(const char *value, gsize len)
{
    if (len > KR_MSG_HDR_VALUE_MAX)
        return FALSE;
    for (gsize i = 0; i < len; i++) {
        char c = value[i];
        if (c == 0)
            return FALSE;
        if (c == '\r') {
            if (i + 1 >= len || !(value[i + 1] == '\n' || is_wsp(value[i + 1])))
                return FALSE;
        } else if (c == '\n') {
            if (i + 1 >= len || !is_wsp(value[i + 1]))
                return FALSE;
        }
    }
    return TRUE;
}

/* Unfold (drop line breaks) and trim. */
static char *
unfold(const char *s, gsize len)
{
    GString *v = g_string_sized_new(len + 1);
    for (gsize i = 0; i < len; i++) {
        if (s[i] == '\n' || (s[i] == '\r' && i + 1 < len && s[i + 1] == '\n'))
            continue;
        if (s[i] == 0)
            break;
        g_string_append_c(v, s[i]);
    }
    return g_strstrip(g_string_free(v, FALSE));
}

gboolean
kr_msg_push_edit(KrMsg *msg, gboolean remove, const char *name, const char *value)
{
    if (msg->edits->len >= KR_MSG_MAX_EDITS)
        return FALSE;
    KrHdrEdit *e = g_new0(KrHdrEdit, 1);
    e->remove = remove;
    e->name = g_strdup(name);
    if (!remove) {
        e->value = g_strdup(value);
        e->unfolded = unfold(value, strlen(value));
    }
    g_ptr_array_add(msg->edits, e);
    g_mutex_lock(&msg->lock);
    map_unref(msg->map);
    msg->map = NULL;
    g_mutex_unlock(&msg->lock);
    return TRUE;
}

void
kr_msg_content_changed(KrMsg *msg)
{
    g_mutex_lock(&msg->lock);
    if (msg->hdrs_parsed && msg->hdrs_open) {
        g_clear_pointer(&msg->hdrs, g_ptr_array_unref);
        msg->hdrs_parsed = FALSE;
    }
    map_unref(msg->map);
    msg->map = NULL;
    g_mutex_unlock(&msg->lock);
}

static void
hdr_finish(GPtrArray *hdrs, const char *buf, KrHdr *h, gsize colon)
{
    h->value = unfold(buf + colon + 1, (gsize)(h->end - colon - 1));
    g_ptr_array_add(hdrs, h);
}

/* Parse the header block of the stored content. Called under lock. */
static void
parse_headers(KrMsg *msg)
{
    msg->hdrs = g_ptr_array_new_with_free_func(hdr_free);
    msg->hdrs_parsed = TRUE;
    msg->hdrs_open = FALSE;
    gsize n = (gsize)MIN(msg->raw_size, (goffset)KR_MSG_MAX_HEADER_BLOCK);
    gboolean whole = (goffset)n == msg->raw_size;
    g_autofree char *buf = g_malloc(n + 1);
    g_autoptr(GError) err = NULL;
    if (msg->fd < 0 || !kr_qfile_pread_all(msg->fd, buf, n, msg->content_off, &err)) {
        g_warning("%s: cannot read the headers: %s", msg->id, err ? err->message : "no file");
        return;
    }
    buf[n] = 0;
    const char *nl = memchr(buf, '\n', n);
    msg->crlf = nl ? (nl > buf && nl[-1] == '\r') : TRUE;

    KrHdr *cur = NULL;
    gsize cur_colon = 0, p = 0;
    gboolean ended = FALSE;
    while (p < n) {
        const char *q = memchr(buf + p, '\n', n - p);
        gsize lend;
        if (q)
            lend = (gsize)(q - buf) + 1;
        else if (whole)
            lend = n; /* last line of the content, no line end */
        else {
            /* A line cut by the block limit: drop the field it belongs to. */
            if (cur && is_wsp(buf[p]))
                hdr_free(g_steal_pointer(&cur));
            ended = TRUE;
            break;
        }
        gsize llen = lend - p;
        if (llen && buf[p + llen - 1] == '\n')
            llen--;
        if (llen && buf[p + llen - 1] == '\r')
            llen--;
        if (llen == 0) {
            ended = TRUE; /* the empty line before the body */
            break;
        }
        if (is_wsp(buf[p])) {
            if (!cur) {
                ended = TRUE;
                break;
            }
            cur->end = (goffset)lend;
            p = lend;
            continue;
        }
        gsize i = p;
        while (i < p + llen && buf[i] > 32 && buf[i] < 127 && buf[i] != ':')
            i++;
        gsize name_end = i;
        while (i < p + llen && is_wsp(buf[i]))
            i++;
        if (name_end == p || i >= p + llen || buf[i] != ':' ||
            msg->hdrs->len + (cur ? 1 : 0) >= KR_MSG_MAX_HEADERS) {
            ended = TRUE; /* the body starts without an empty line */
            break;
        }
        if (cur)
            hdr_finish(msg->hdrs, buf, g_steal_pointer(&cur), cur_colon);
        cur = g_new0(KrHdr, 1);
        cur->name = g_strndup(buf + p, name_end - p);
        cur->start = (goffset)p;
        cur->end = (goffset)lend;
        cur_colon = i;
        p = lend;
    }
    if (cur)
        hdr_finish(msg->hdrs, buf, cur, cur_colon);
    /* Ran into the end of the content: more may still be appended. */
    msg->hdrs_open = !ended && whole;
}

static void
ensure_headers(KrMsg *msg)
{
    if (!msg->hdrs_parsed)
        parse_headers(msg);
}

/* One pass over the edits, newest first: which prepends are visible (not
 * hidden by a later removal), and the set of removed names (lowercase),
 * which hides stored headers. */
static gboolean *
edit_visibility(const KrMsg *msg, GHashTable **removed_r)
{
    GHashTable *removed = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    gboolean *visible = g_new0(gboolean, msg->edits->len + 1);
    for (guint i = msg->edits->len; i-- > 0;) {
        const KrHdrEdit *e = msg->edits->pdata[i];
        char *low = g_ascii_strdown(e->name, -1);
        if (e->remove) {
            g_hash_table_add(removed, low);
        } else {
            visible[i] = !g_hash_table_contains(removed, low);
            g_free(low);
        }
    }
    *removed_r = removed;
    return visible;
}

/* The n-th visible header called name; with count_r, count them instead. */
static const char *
find_header(KrMsg *msg, const char *name, guint n, guint *count_r)
{
    guint seen = 0;
    g_mutex_lock(&msg->lock);
    ensure_headers(msg);
    g_mutex_unlock(&msg->lock);
    gboolean removed = FALSE; /* by an edit newer than the one at hand */
    for (guint i = msg->edits->len; i-- > 0;) {
        const KrHdrEdit *e = msg->edits->pdata[i];
        if (g_ascii_strcasecmp(e->name, name) != 0)
            continue;
        if (e->remove) {
            removed = TRUE;
            continue;
        }
        if (removed)
            continue;
        if (!count_r && seen == n)
            return e->unfolded;
        seen++;
    }
    for (guint i = 0; !removed && i < msg->hdrs->len; i++) {
        const KrHdr *h = msg->hdrs->pdata[i];
        if (g_ascii_strcasecmp(h->name, name) != 0)
            continue;
        if (!count_r && seen == n)
            return h->value;
        seen++;
    }
    if (count_r)
        *count_r = seen;
    return NULL;
}

guint
kr_msg_header_count(KrMsg *msg, const char *name)
{
    guint n = 0;
    g_return_val_if_fail(msg != NULL && name != NULL, 0);
    find_header(msg, name, 0, &n);
    return n;
}

const char *
kr_msg_header(KrMsg *msg, const char *name, guint n)
{
    g_return_val_if_fail(msg != NULL && name != NULL, NULL);
    return find_header(msg, name, n, NULL);
}

gboolean
kr_msg_prepend_header(KrMsg *msg, const char *name, const char *value, GError **error)
{
    g_return_val_if_fail(msg != NULL && name != NULL && value != NULL, FALSE);
    if (!kr_msg_hdr_name_ok(name, strlen(name))) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, "invalid header name");
        return FALSE;
    }
    if (!kr_msg_hdr_value_ok(value, strlen(value))) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "invalid value for header %s (bare line break or too long)", name);
        return FALSE;
    }
    if (!kr_msg_push_edit(msg, FALSE, name, value)) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_NO_SPACE, "too many header edits");
        return FALSE;
    }
    return TRUE;
}

void
kr_msg_remove_header(KrMsg *msg, const char *name)
{
    g_return_if_fail(msg != NULL && name != NULL);
    if (!kr_msg_hdr_name_ok(name, strlen(name)))
        return; /* no such header can exist */
    if (!kr_msg_push_edit(msg, TRUE, name, NULL))
        g_warning("%s: too many header edits, cannot remove %s", msg->id, name);
}

/* --- logical content ----------------------------------------------------- */

static void
append_seg(GArray *segs, goffset *loff, goffset len, goffset roff, gsize moff)
{
    if (len <= 0)
        return;
    Seg s = {.loff = *loff, .len = len, .roff = roff, .moff = moff};
    g_array_append_val(segs, s);
    *loff += len;
}

/* Called under lock. */
static KrContentMap *
build_map(KrMsg *msg)
{
    ensure_headers(msg);
    const char *eol = msg->crlf ? "\r\n" : "\n";
    GHashTable *removed;
    g_autofree gboolean *visible = edit_visibility(msg, &removed);
    GString *mem = g_string_new(NULL);
    for (guint i = msg->edits->len; i-- > 0;) {
        const KrHdrEdit *e = msg->edits->pdata[i];
        if (!visible[i])
            continue;
        g_string_append(mem, e->name);
        g_string_append(mem, ": ");
        for (const char *p = e->value; *p; p++) {
            if (*p == '\r' && p[1] == '\n')
                continue;
            if (*p == '\r' || *p == '\n')
                g_string_append(mem, eol);
            else
                g_string_append_c(mem, *p);
        }
        g_string_append(mem, eol);
    }
    KrContentMap *map = g_new0(KrContentMap, 1);
    map->refcount = 1;
    map->segs = g_array_new(FALSE, FALSE, sizeof(Seg));
    goffset loff = 0, raw = 0;
    append_seg(map->segs, &loff, (goffset)mem->len, -1, 0);
    for (guint i = 0; i < msg->hdrs->len; i++) {
        const KrHdr *h = msg->hdrs->pdata[i];
        g_autofree char *low = g_ascii_strdown(h->name, -1);
        if (!g_hash_table_contains(removed, low))
            continue;
        append_seg(map->segs, &loff, h->start - raw, raw, 0);
        raw = h->end;
    }
    append_seg(map->segs, &loff, msg->raw_size - raw, raw, 0);
    g_hash_table_unref(removed);
    map->size = loff;
    map->mem = g_string_free(mem, FALSE);
    return map;
}

static KrContentMap *
map_get(KrMsg *msg)
{
    g_mutex_lock(&msg->lock);
    if (!msg->map)
        msg->map = build_map(msg);
    KrContentMap *map = msg->map;
    g_atomic_int_inc(&map->refcount);
    g_mutex_unlock(&msg->lock);
    return map;
}

goffset
kr_msg_size(KrMsg *msg)
{
    KrContentMap *map = map_get(msg);
    goffset size = map->size;
    map_unref(map);
    return size;
}

goffset
kr_msg_raw_size(const KrMsg *msg)
{
    return msg->raw_size;
}

gssize
kr_msg_read(KrMsg *msg, goffset offset, void *buf, gsize len, GError **error)
{
    g_return_val_if_fail(msg != NULL && buf != NULL, -1);
    if (offset < 0) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, "negative offset");
        return -1;
    }
    if (msg->fd < 0) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_CLOSED, "%s: queue file closed", msg->id);
        return -1;
    }
    len = MIN(len, (gsize)G_MAXSSIZE);
    KrContentMap *map = map_get(msg);
    const Seg *segs = (const Seg *)(void *)map->segs->data;
    guint lo = 0, hi = map->segs->len;
    while (lo < hi) { /* first segment ending after offset */
        guint mid = lo + (hi - lo) / 2;
        if (segs[mid].loff + segs[mid].len <= offset)
            lo = mid + 1;
        else
            hi = mid;
    }
    gsize done = 0;
    for (guint i = lo; i < map->segs->len && done < len; i++) {
        const Seg *s = &segs[i];
        goffset within = offset + (goffset)done - s->loff;
        gsize n = (gsize)MIN((goffset)(len - done), s->len - within);
        if (s->roff < 0) {
            memcpy((char *)buf + done, map->mem + s->moff + within, n);
        } else if (!kr_qfile_pread_all(msg->fd, (char *)buf + done, n,
                                       msg->content_off + s->roff + within, error)) {
            map_unref(map);
            return -1;
        }
        done += n;
    }
    map_unref(map);
    return (gssize)done;
}

static gboolean
write_all(int fd, const char *p, gsize len, GError **error)
{
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            int e = errno;
            g_set_error(error, G_IO_ERROR, g_io_error_from_errno(e), "write: %s", g_strerror(e));
            return FALSE;
        }
        p += w;
        len -= (gsize)w;
    }
    return TRUE;
}

gboolean
kr_msg_write_to_fd(KrMsg *msg, int fd, const char *prefix, gboolean lf, GError **error)
{
    enum { CHUNK = 64 * 1024 };
    if (prefix && !write_all(fd, prefix, strlen(prefix), error))
        return FALSE;
    g_autofree char *in = g_malloc(CHUNK);
    g_autofree char *out = lf ? g_malloc(CHUNK + 1) : NULL;
    gboolean cr = FALSE; /* a CR held back from the previous chunk */
    for (goffset off = 0;;) {
        gssize n = kr_msg_read(msg, off, in, CHUNK, error);
        if (n < 0)
            return FALSE;
        if (n == 0)
            break;
        off += n;
        if (!lf) {
            if (!write_all(fd, in, (gsize)n, error))
                return FALSE;
            continue;
        }
        gsize o = 0;
        for (gssize i = 0; i < n; i++) {
            char c = in[i];
            if (cr && c != '\n')
                out[o++] = '\r';
            cr = c == '\r';
            if (!cr)
                out[o++] = c;
        }
        if (!write_all(fd, out, o, error))
            return FALSE;
    }
    if (cr && !write_all(fd, "\r", 1, error))
        return FALSE;
    return TRUE;
}
