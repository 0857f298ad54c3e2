/* SPDX-License-Identifier: MIT */
/*
 * imap-mime-cache.c - an ImapMimeMessage as a compact blob for the
 * store's per-message cache slot, and back, so ENVELOPE, BODY,
 * BODYSTRUCTURE and every section are served without parsing the
 * message again.
 *
 *   imap_mime_cache_build()          handle -> blob
 *   imap_mime_cache_build_envelope() ENVELOPE text -> envelope-only blob
 *   imap_mime_cache_load()           blob -> handle (checked; IMAP_MIME_ERROR_CACHE)
 *   imap_mime_cache_text()           one of the three texts straight from the blob
 *
 * FORMAT. "KMC" then the version octet, which names the layout:
 *
 * Version 2, envelope only: the ENVELOPE text as length + octets, nothing
 * else. What a header-only parse gives (FETCH ENVELOPE, SEARCH on
 * envelope fields); imap_mime_cache_text() gives the ENVELOPE from it and
 * FALSE for BODY / BODYSTRUCTURE, imap_mime_cache_load() refuses it, so
 * whoever needs the structure parses the whole message and replaces it
 * with a version 1 blob (the upgrade).
 *
 * Version 1, the full description: unsigned
 * LEB128 varints: file size, wire size; the ENVELOPE, BODY and
 * BODYSTRUCTURE texts, each as length + octets; the node count; per node
 * (in pre-order) hdr_start, body_start - hdr_start, end - body_start,
 * hdr_wire, hdr_lines, body_wire, body_lines, parent + 1, first_child + 1,
 * next + 1 (0: none), kind, cte. A new layout gets a new version: old
 * blobs then fail to load and the message is simply parsed again.
 *
 * Loading trusts nothing: every length is checked against what is left,
 * every range against the file size and its wire size against the
 * range (raw <= wire <= 2 * raw), and links only point forward (a child
 * or a next sibling has a larger index, a parent a smaller one), so a
 * damaged blob can neither read outside the file nor loop.
 */
#include "imap-mime-int.h"

#include <string.h>

#define CACHE_MAGIC     "KMC"
#define CACHE_VERSION   1 /* the full description */
#define CACHE_ENV_ONLY  2 /* the ENVELOPE text only */
#define CACHE_MAX_NODES 100000

static void
put(GByteArray *b, guint64 v)
{
    guchar c[10];
    guint n = 0;
    do {
        c[n] = v & 0x7f;
        v >>= 7;
        if (v)
            c[n] |= 0x80;
        n++;
    } while (v);
    g_byte_array_append(b, c, n);
}

static void
put_text(GByteArray *b, const char *s)
{
    gsize len = strlen(s);
    put(b, len);
    g_byte_array_append(b, (const guchar *)s, (guint)len);
}

static guint64
link_out(guint32 v)
{
    return v == MIME_NONE ? 0 : (guint64)v + 1;
}

GBytes *
imap_mime_cache_build(const ImapMimeMessage *msg)
{
    GByteArray *b = g_byte_array_new();
    g_byte_array_append(b, (const guchar *)CACHE_MAGIC, 3);
    guchar v = CACHE_VERSION;
    g_byte_array_append(b, &v, 1);
    put(b, msg->size);
    put(b, msg->wire_size);
    put_text(b, msg->envelope);
    put_text(b, msg->body);
    put_text(b, msg->bodystructure);
    put(b, msg->n_nodes);
    for (guint32 i = 0; i < msg->n_nodes; i++) {
        const MimeNode *n = &msg->nodes[i];
        put(b, n->hdr_start);
        put(b, n->body_start - n->hdr_start);
        put(b, n->end - n->body_start);
        put(b, n->hdr_wire);
        put(b, n->hdr_lines);
        put(b, n->body_wire);
        put(b, n->body_lines);
        put(b, link_out(n->parent));
        put(b, link_out(n->first_child));
        put(b, link_out(n->next));
        put(b, n->kind);
        put(b, n->cte);
    }
    return g_byte_array_free_to_bytes(b);
}

GBytes *
imap_mime_cache_build_envelope(const char *envelope)
{
    GByteArray *b = g_byte_array_sized_new((guint)strlen(envelope) + 8);
    g_byte_array_append(b, (const guchar *)CACHE_MAGIC, 3);
    guchar v = CACHE_ENV_ONLY;
    g_byte_array_append(b, &v, 1);
    put_text(b, envelope);
    return g_byte_array_free_to_bytes(b);
}

typedef struct {
    const guchar *p, *end;
    gboolean bad;
} Cur;

static guint64
get(Cur *c)
{
    guint64 v = 0;
    for (guint shift = 0; shift < 64; shift += 7) {
        if (c->p >= c->end) {
            c->bad = TRUE;
            return 0;
        }
        guchar b = *c->p++;
        v |= (guint64)(b & 0x7f) << shift;
        if (!(b & 0x80))
            return v;
    }
    c->bad = TRUE;
    return 0;
}

static char *
get_text(Cur *c)
{
    guint64 len = get(c);
    if (c->bad || len > (guint64)(c->end - c->p) || memchr(c->p, '\0', (gsize)len)) {
        c->bad = TRUE;
        return NULL;
    }
    char *s = g_strndup((const char *)c->p, (gsize)len);
    c->p += len;
    return s;
}

static gboolean
get_link(Cur *c, guint32 n, guint32 *v_r)
{
    guint64 v = get(c);
    if (v > n)
        return FALSE;
    *v_r = v == 0 ? MIME_NONE : (guint32)(v - 1);
    return TRUE;
}

/* raw octets -> plausible wire size and line count */
static gboolean
sizes_ok(guint64 raw, guint64 wire, guint64 lines)
{
    return wire >= raw && wire - raw <= raw && lines <= raw;
}

static gboolean
node_ok(const ImapMimeMessage *m, guint32 i, const MimeNode *n)
{
    if (n->body_start < n->hdr_start || n->end < n->body_start || n->end > m->size)
        return FALSE;
    if (!sizes_ok(n->body_start - n->hdr_start, n->hdr_wire, n->hdr_lines) ||
        !sizes_ok(n->end - n->body_start, n->body_wire, n->body_lines))
        return FALSE;
    if (n->kind > MIME_MESSAGE || n->cte > MIME_CTE_UNKNOWN)
        return FALSE;
    if (i == 0 ? n->parent != MIME_NONE || n->hdr_start != 0 || n->end != m->size : n->parent >= i)
        return FALSE;
    if (n->first_child != MIME_NONE && (n->first_child <= i || n->kind == MIME_LEAF))
        return FALSE;
    if (n->kind == MIME_MESSAGE && n->first_child == MIME_NONE)
        return FALSE;
    if (n->next != MIME_NONE && (n->next <= i || i == 0))
        return FALSE;
    return TRUE;
}

ImapMimeMessage *
imap_mime_cache_load(GBytes *blob, GError **error)
{
    gsize len;
    const guchar *data = blob ? g_bytes_get_data(blob, &len) : NULL;
    if (!data || len < 4 || memcmp(data, CACHE_MAGIC, 3) != 0 || data[3] != CACHE_VERSION) {
        g_set_error_literal(error, IMAP_MIME_ERROR, IMAP_MIME_ERROR_CACHE,
                            data && len >= 4 && data[3] == CACHE_ENV_ONLY
                                ? "Envelope-only MIME cache blob"
                                : "Not a MIME cache blob of this version");
        return NULL;
    }
    Cur c = {data + 4, data + len, FALSE};
    ImapMimeMessage *m = g_new0(ImapMimeMessage, 1);
    m->size = get(&c);
    m->wire_size = get(&c);
    m->envelope = get_text(&c);
    m->body = get_text(&c);
    m->bodystructure = get_text(&c);
    guint64 n = get(&c);
    /* a node takes at least 12 octets */
    if (c.bad || n == 0 || n > CACHE_MAX_NODES || n > (guint64)(c.end - c.p) / 12)
        goto bad;
    m->n_nodes = (guint32)n;
    m->nodes = g_new0(MimeNode, m->n_nodes);
    for (guint32 i = 0; i < m->n_nodes; i++) {
        MimeNode *nd = &m->nodes[i];
        nd->hdr_start = get(&c);
        guint64 hl = get(&c), bl = get(&c);
        if (c.bad || hl > m->size || bl > m->size || nd->hdr_start > m->size - hl ||
            nd->hdr_start + hl > m->size - bl)
            goto bad;
        nd->body_start = nd->hdr_start + hl;
        nd->end = nd->body_start + bl;
        nd->hdr_wire = get(&c);
        nd->hdr_lines = get(&c);
        nd->body_wire = get(&c);
        nd->body_lines = get(&c);
        if (!get_link(&c, m->n_nodes, &nd->parent) || !get_link(&c, m->n_nodes, &nd->first_child) ||
            !get_link(&c, m->n_nodes, &nd->next))
            goto bad;
        guint64 kind = get(&c), cte = get(&c);
        if (c.bad || kind > 255 || cte > 255)
            goto bad;
        nd->kind = (guint8)kind;
        nd->cte = (guint8)cte;
        if (!node_ok(m, i, nd))
            goto bad;
    }
    if (c.p != c.end || m->wire_size != m->nodes[0].hdr_wire + m->nodes[0].body_wire)
        goto bad;
    return m;
bad:
    imap_mime_message_free(m);
    g_set_error_literal(error, IMAP_MIME_ERROR, IMAP_MIME_ERROR_CACHE, "Damaged MIME cache blob");
    return NULL;
}

gboolean
imap_mime_cache_text(GBytes *blob, ImapMimeCacheText which, const char **text, gsize *len)
{
    gsize blen;
    const guchar *data = blob ? g_bytes_get_data(blob, &blen) : NULL;
    if (!data || blen < 4 || memcmp(data, CACHE_MAGIC, 3) != 0 ||
        which > IMAP_MIME_CACHE_BODYSTRUCTURE)
        return FALSE;
    Cur c = {data + 4, data + blen, FALSE};
    if (data[3] == CACHE_ENV_ONLY) {
        if (which != IMAP_MIME_CACHE_ENVELOPE)
            return FALSE;
    } else if (data[3] == CACHE_VERSION) {
        get(&c); /* file size */
        get(&c); /* wire size */
    } else {
        return FALSE;
    }
    for (guint i = 0;; i++) {
        guint64 l = get(&c);
        if (c.bad || l > (guint64)(c.end - c.p))
            return FALSE;
        if (i == which) {
            if (l == 0 || memchr(c.p, '\0', (gsize)l))
                return FALSE;
            *text = (const char *)c.p;
            *len = (gsize)l;
            return TRUE;
        }
        c.p += l;
    }
}

gboolean
imap_mime_cache_is_full(GBytes *blob)
{
    gsize blen;
    const guchar *data = blob ? g_bytes_get_data(blob, &blen) : NULL;
    return data && blen >= 4 && memcmp(data, CACHE_MAGIC, 3) == 0 && data[3] == CACHE_VERSION;
}
