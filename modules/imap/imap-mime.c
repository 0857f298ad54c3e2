/* SPDX-License-Identifier: MIT */
/*
 * imap-mime.c - parsing a stored message into its part table, and the
 * handle's getters. See imap-mime.h for the rules; imap-mime-header.c
 * reads header fields, imap-mime-section.c serves sections,
 * imap-mime-cache.c (de)serialises the handle.
 *
 *   imap_mime_parse()            one pass over the lines -> MimeNode table,
 *                                ImapBodyPart tree, envelopes, texts
 *   imap_mime_parse_envelope()   the top-level header only -> ENVELOPE text
 *   imap_mime_message_free()
 *   imap_mime_envelope/body/bodystructure/size()   the texts and RFC822.SIZE
 *   imap_mime_envelope_desc/body_desc()            the C description
 *   imap_mime_error_quark()
 *
 * HOW. A line reader walks the input once (64 KiB window for an fd; a
 * line longer than that is skipped with only its first KiB looked at).
 * entity() reads one header, describes it, then its body: a leaf's lines
 * up to a delimiter of an enclosing multipart, a multipart's parts
 * (recursively, with its boundary pushed), or a message/rfc822's
 * embedded message. Running totals of wire octets and LFs at every line
 * start give each range's size and line count by subtraction; a
 * delimiter that ends a body takes the line end before it (stop_here).
 * The header-only parse reads the same header with the same reader
 * (read_header), starting with a small window (HDR_WINDOW) that becomes
 * the full one when a line does not fit, so it keeps exactly what a full
 * parse keeps and its ENVELOPE is the same.
 */
#include "imap-mime-int.h"
#include "imap-format.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

G_DEFINE_QUARK(imap - mime - error - quark, imap_mime_error)

#define MAX_DEPTH_CAP 60 /* the formatter cuts off at IMAP_BODY_MAX_DEPTH (64) */
#define RD_BUF        65536
#define HDR_WINDOW    8192 /* first read of a header-only parse */
#define RD_KEEP       1024 /* bytes of an over-long line that are looked at */
#define BOUNDARY_MAX  200  /* RFC 2046 says 70; longer ones are not believed */

/* ---- arena ---- */

#define ARENA_BLOCK 16384

struct MimeArena {
    GSList *blocks;
    guchar *cur;
    gsize left;
};

MimeArena *
mime_arena_new(void)
{
    return g_new0(MimeArena, 1);
}

void
mime_arena_free(MimeArena *a)
{
    if (!a)
        return;
    g_slist_free_full(a->blocks, g_free);
    g_free(a);
}

gpointer
mime_arena_alloc(MimeArena *a, gsize size)
{
    size = (size + 7) & ~(gsize)7;
    if (size > ARENA_BLOCK / 4) {
        guchar *big = g_malloc0(size);
        /* keep the current block current: insert after the head */
        if (a->blocks)
            a->blocks->next = g_slist_prepend(a->blocks->next, big);
        else
            a->blocks = g_slist_prepend(NULL, big);
        return big;
    }
    if (size > a->left) {
        a->cur = g_malloc0(ARENA_BLOCK);
        a->left = ARENA_BLOCK;
        a->blocks = g_slist_prepend(a->blocks, a->cur);
    }
    gpointer p = a->cur;
    a->cur += size;
    a->left -= size;
    return p;
}

char *
mime_arena_strndup(MimeArena *a, const char *s, gsize len)
{
    char *d = mime_arena_alloc(a, len + 1);
    memcpy(d, s, len);
    d[len] = '\0';
    return d;
}

/* ---- input ---- */

gboolean
mime_input_size(const ImapMimeInput *in, guint64 *size_r, GError **error)
{
    if (in->data || in->fd < 0) {
        *size_r = in->data ? in->len : 0;
        return TRUE;
    }
    struct stat st;
    if (fstat(in->fd, &st) < 0) {
        int e = errno;
        g_set_error(error, IMAP_MIME_ERROR, IMAP_MIME_ERROR_IO, "fstat: %s", g_strerror(e));
        return FALSE;
    }
    *size_r = (guint64)st.st_size;
    return TRUE;
}

gboolean
mime_input_read(const ImapMimeInput *in, guint64 off, void *buf, gsize len, gsize *got_r,
                GError **error)
{
    if (in->data || in->fd < 0) {
        gsize n = 0;
        if (in->data && off < in->len)
            n = MIN(len, in->len - off);
        if (n)
            memcpy(buf, in->data + off, n);
        *got_r = n;
        return TRUE;
    }
    gsize got = 0;
    while (got < len) {
        ssize_t r = pread(in->fd, (guchar *)buf + got, len - got, (off_t)(off + got));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = errno;
            g_set_error(error, IMAP_MIME_ERROR, IMAP_MIME_ERROR_IO, "read: %s", g_strerror(e));
            return FALSE;
        }
        if (r == 0)
            break;
        got += (gsize)r;
    }
    *got_r = got;
    return TRUE;
}

/* ---- wire form ---- */

void
mime_crlf_append(GByteArray *out, const guchar *in, gsize len, gboolean *last_cr)
{
    gsize start = 0;
    for (gsize i = 0; i < len; i++) {
        if (in[i] != '\n')
            continue;
        gboolean cr = i > 0 ? in[i - 1] == '\r' : *last_cr;
        if (!cr) {
            g_byte_array_append(out, in + start, (guint)(i - start));
            g_byte_array_append(out, (const guchar *)"\r", 1);
            start = i;
        }
    }
    g_byte_array_append(out, in + start, (guint)(len - start));
    if (len > 0)
        *last_cr = in[len - 1] == '\r';
}

/* ---- line reader ---- */

typedef struct {
    guint64 off;     /* where the line starts */
    guint64 len;     /* octets, line end included */
    const guchar *p; /* its first `avail` octets (valid until the next read) */
    gsize avail;
    guint8 term; /* line end: 0 none (end of input), 1 LF, 2 CRLF */
} Line;

typedef struct {
    const ImapMimeInput *in;
    guint64 size;      /* G_MAXUINT64: not known yet (the end is where a read comes up short) */
    gsize cap;         /* octets read at a time: RD_BUF, or less for a header-only parse */
    gboolean one_read; /* an fd: one pread per fill, a short one is the end (header-only) */
    guchar *buf;
    guint64 buf_off;
    gsize buf_len;
    guchar keep[RD_KEEP];
    GError *error;
} Reader;

static gboolean
rd_fill(Reader *r, guint64 off)
{
    gsize got = 0;
    gsize want = (gsize)MIN((guint64)r->cap, r->size - off);
    if (r->one_read && !r->in->data && r->in->fd >= 0) {
        /* a regular file reads short only at its end: no second pread to
         * see the 0 (the header-only parse of a small message is one read) */
        ssize_t n;
        do
            n = pread(r->in->fd, r->buf, want, (off_t)off);
        while (n < 0 && errno == EINTR);
        if (n < 0) {
            int e = errno;
            g_set_error(&r->error, IMAP_MIME_ERROR, IMAP_MIME_ERROR_IO, "read: %s", g_strerror(e));
            return FALSE;
        }
        got = (gsize)n;
    } else if (!mime_input_read(r->in, off, r->buf, want, &got, &r->error)) {
        return FALSE;
    }
    r->buf_off = off;
    r->buf_len = got;
    if (got < want) /* the file got shorter under us: its end is here */
        r->size = off + got;
    return TRUE;
}

static guint8
term_of(const guchar *s, gsize len, gboolean nl, guchar before)
{
    if (!nl)
        return 0;
    guchar prev = len >= 2 ? s[len - 2] : before;
    return prev == '\r' ? 2 : 1;
}

/* The line at off; FALSE at the end of the input or on a read error. */
static gboolean
rd_line(Reader *r, guint64 off, Line *l)
{
    if (r->error || off >= r->size)
        return FALSE;
    l->off = off;
    if (r->in->data) {
        const guchar *s = r->in->data + off;
        gsize rem = (gsize)(r->size - off);
        const guchar *nl = memchr(s, '\n', rem);
        l->len = nl ? (guint64)(nl - s + 1) : rem;
        l->p = s;
        /* as much as an fd reader would look at */
        l->avail = l->len > RD_BUF ? RD_KEEP : (gsize)l->len;
        l->term = term_of(s, (gsize)l->len, nl != NULL, 0);
        return TRUE;
    }
    if (off < r->buf_off || off >= r->buf_off + r->buf_len) {
        if (!rd_fill(r, off) || r->buf_len == 0)
            return FALSE;
    }
    const guchar *s = r->buf + (off - r->buf_off);
    gsize rem = r->buf_len - (gsize)(off - r->buf_off);
    const guchar *nl = memchr(s, '\n', rem);
    if (!nl && off != r->buf_off && r->buf_off + r->buf_len < r->size) {
        if (!rd_fill(r, off))
            return FALSE;
        s = r->buf;
        rem = r->buf_len;
        nl = memchr(s, '\n', rem);
    }
    if (!nl && r->cap < RD_BUF && r->buf_off + r->buf_len < r->size) {
        /* a small window (header-only parse) that starts at the line does
         * not hold it: twice the window, up to the full one, so long lines
         * are cut as a full parse cuts them */
        r->cap = MIN(r->cap * 2, (gsize)RD_BUF);
        if (!rd_fill(r, off))
            return FALSE;
        return rd_line(r, off, l);
    }
    if (nl || r->buf_off + r->buf_len >= r->size) {
        l->len = nl ? (guint64)(nl - s + 1) : rem;
        l->p = s;
        l->avail = (gsize)l->len;
        l->term = term_of(s, (gsize)l->len, nl != NULL, 0);
        return TRUE;
    }
    /* A line longer than the window: keep its start, find its end. */
    l->avail = MIN(rem, (gsize)RD_KEEP);
    memcpy(r->keep, s, l->avail);
    l->p = r->keep;
    guchar last = s[rem - 1];
    guint64 pos = r->buf_off + r->buf_len;
    for (;;) {
        if (!rd_fill(r, pos))
            return FALSE;
        if (r->buf_len == 0) {
            l->len = pos - off;
            l->term = 0;
            return TRUE;
        }
        nl = memchr(r->buf, '\n', r->buf_len);
        if (nl) {
            gsize i = (gsize)(nl - r->buf);
            l->len = pos + i + 1 - off;
            l->term = (i > 0 ? r->buf[i - 1] : last) == '\r' ? 2 : 1;
            return TRUE;
        }
        last = r->buf[r->buf_len - 1];
        pos += r->buf_len;
    }
}

/* ---- parser ---- */

typedef struct {
    Reader rd;
    ImapMimeLimits lim;
    MimeArena *arena;
    GArray *nodes;    /* MimeNode */
    GPtrArray *parts; /* ImapBodyPart * (arena), per node */
    GPtrArray *envs;  /* ImapEnvelope * or NULL, per node */
    gsize hdr_budget; /* header bytes still to be kept, whole message */
    /* position: the next line starts at pos; running totals up to it */
    guint64 pos, cum_wire, cum_lf;
    guint8 last_term;      /* line end of the line before pos */
    gboolean last_in_body; /* ... and it was a body line, not a header line */
    /* where the entities being closed end (set by stop_here) */
    guint64 stop_off, stop_wire, stop_lf;
    gboolean at_boundary; /* stopped at a delimiter line (at pos), not at the end */
    guint stop_level;     /* ... of the multipart at this stack level */
    const char *bnd[MAX_DEPTH_CAP + 1];
    gsize bnd_len[MAX_DEPTH_CAP + 1];
    guint n_bnd;
} Parser;

static MimeNode *
node(Parser *P, guint32 i)
{
    return &g_array_index(P->nodes, MimeNode, i);
}

static void
consume(Parser *P, const Line *l, gboolean body)
{
    P->pos += l->len;
    P->cum_wire += l->len + (l->term == 1 ? 1 : 0);
    P->cum_lf += l->term ? 1 : 0;
    P->last_term = l->term;
    P->last_in_body = body;
}

/* Is l a delimiter line of one of the innermost `levels` boundaries on
 * the stack (checked from the innermost out)? Returns its level or -1. */
static int
delimiter(const Parser *P, const Line *l, guint levels, gboolean *close_r)
{
    if (levels == 0 || l->len > RD_KEEP || l->avail < 3 || l->p[0] != '-' || l->p[1] != '-')
        return -1;
    gsize n = l->avail - l->term;
    for (int lv = (int)levels - 1; lv >= 0; lv--) {
        gsize bl = P->bnd_len[lv];
        if (n < 2 + bl || memcmp(l->p + 2, P->bnd[lv], bl) != 0)
            continue;
        gsize i = 2 + bl;
        gboolean close = FALSE;
        if (i + 2 <= n && l->p[i] == '-' && l->p[i + 1] == '-') {
            close = TRUE;
            i += 2;
        }
        while (i < n && (l->p[i] == ' ' || l->p[i] == '\t' || l->p[i] == '\r'))
            i++;
        if (i == n) {
            *close_r = close;
            return lv;
        }
    }
    return -1;
}

/* The entities being parsed end here: at the delimiter line at pos
 * (level >= 0), which takes the line end of a body line before it, or
 * at the end of the input (level < 0). */
static void
stop_here(Parser *P, int level)
{
    P->stop_off = P->pos;
    P->stop_wire = P->cum_wire;
    P->stop_lf = P->cum_lf;
    P->at_boundary = level >= 0;
    P->stop_level = level >= 0 ? (guint)level : 0;
    if (level >= 0 && P->last_in_body && P->last_term) {
        P->stop_off -= P->last_term;
        P->stop_wire -= 2;
        P->stop_lf -= 1;
    }
}

/* Body lines up to a delimiter of the innermost `levels` boundaries or
 * the end of the input. */
static void
skip_body(Parser *P, guint levels)
{
    Line l;
    gboolean close;
    while (rd_line(&P->rd, P->pos, &l)) {
        int lv = delimiter(P, &l, levels, &close);
        if (lv >= 0) {
            stop_here(P, lv);
            return;
        }
        consume(P, &l, TRUE);
    }
    stop_here(P, -1);
}

static const ImapParam param_us_ascii[] = {{"charset", "us-ascii"}};

static void
as_text_plain(ImapBodyPart *part)
{
    part->type = "text";
    part->subtype = "plain";
    part->params = param_us_ascii;
    part->n_params = 1;
}

static void
as_opaque(ImapBodyPart *part)
{
    part->type = "application";
    part->subtype = "octet-stream";
    part->params = NULL;
    part->n_params = 0;
}

static gboolean
is_ci(const char *s, const char *want)
{
    return s && g_ascii_strcasecmp(s, want) == 0;
}

static guint32 entity(Parser *P, guint32 parent, guint depth, gboolean digest, gboolean message);

/* The header block at pos, up to and including its empty line (or up to
 * a delimiter line: *interrupted), as much of it as the limits keep. */
static GString *
read_header(Parser *P, gboolean *interrupted)
{
    gsize room = MIN(P->lim.max_header, P->hdr_budget);
    GString *hdr = g_string_sized_new(MIN(room, (gsize)4096));
    Line l;
    gboolean close;
    while (rd_line(&P->rd, P->pos, &l)) {
        int lv = delimiter(P, &l, P->n_bnd, &close);
        if (lv >= 0) {
            stop_here(P, lv);
            *interrupted = TRUE;
            break;
        }
        consume(P, &l, FALSE);
        if (hdr->len < room) {
            g_string_append_len(hdr, (const char *)l.p, (gssize)MIN(l.avail, room - hdr->len));
            if (l.avail < l.len && l.term) /* only the start of a long line: keep it a line */
                g_string_append_c(hdr, '\n');
        }
        if (l.len == l.term)
            break; /* the empty line */
    }
    P->hdr_budget -= hdr->len;
    return hdr;
}

/* The parts of multipart node idx, whose boundary is on top of the stack.
 * FALSE if no delimiter line was found at all. */
static gboolean
multipart_body(Parser *P, guint32 idx, guint depth, gboolean digest)
{
    guint own = P->n_bnd - 1;
    guint32 last = MIME_NONE;
    gboolean seen = FALSE;
    Line l;
    gboolean close;
    for (;;) {
        if (!rd_line(&P->rd, P->pos, &l)) {
            stop_here(P, -1);
            return seen;
        }
        int lv = delimiter(P, &l, P->n_bnd, &close);
        if (lv < 0) { /* preamble */
            consume(P, &l, TRUE);
            continue;
        }
        if ((guint)lv != own) { /* an enclosing multipart's: we end too */
            stop_here(P, lv);
            return seen;
        }
        consume(P, &l, TRUE);
        seen = TRUE;
        if (close || P->nodes->len >= P->lim.max_parts) {
            /* epilogue, or parts past the limit: opaque to the end */
            skip_body(P, own);
            return seen;
        }
        guint32 c = entity(P, idx, depth + 1, digest, FALSE);
        if (last == MIME_NONE)
            node(P, idx)->first_child = c;
        else
            node(P, last)->next = c;
        last = c;
        if (!P->at_boundary || P->stop_level != own)
            return seen;
        /* our own delimiter: the loop reads it again and goes on */
    }
}

static guint32
entity(Parser *P, guint32 parent, guint depth, gboolean digest, gboolean message)
{
    guint32 idx = P->nodes->len;
    MimeNode n0 = {.hdr_start = P->pos,
                   .parent = parent,
                   .first_child = MIME_NONE,
                   .next = MIME_NONE,
                   .kind = MIME_LEAF};
    g_array_append_val(P->nodes, n0);
    guint64 wire0 = P->cum_wire, lf0 = P->cum_lf;

    gboolean interrupted = FALSE;
    GString *hdr = read_header(P, &interrupted);
    MimeNode *n = node(P, idx);
    n->body_start = P->pos;
    n->hdr_wire = P->cum_wire - wire0;
    n->hdr_lines = P->cum_lf - lf0;
    guint64 bwire0 = P->cum_wire, blf0 = P->cum_lf;

    ImapBodyPart *part = mime_arena_alloc(P->arena, sizeof *part);
    const char *boundary = NULL;
    guint8 cte = MIME_CTE_IDENTITY;
    mime_describe(P->arena, hdr->str, hdr->len, digest, part, &boundary, &cte);
    ImapEnvelope *env = message ? mime_envelope(P->arena, hdr->str, hdr->len) : NULL;
    g_string_free(hdr, TRUE);
    g_ptr_array_add(P->parts, part);
    g_ptr_array_add(P->envs, env);
    n->cte = cte;

    gboolean multipart = is_ci(part->type, "multipart");
    gboolean msg = is_ci(part->type, "message") &&
                   (is_ci(part->subtype, "rfc822") || is_ci(part->subtype, "global")) &&
                   (cte == MIME_CTE_IDENTITY);
    gboolean nest_ok = depth < P->lim.max_depth && P->nodes->len < P->lim.max_parts;

    if (interrupted) {
        /* no body at all */
        if (multipart || msg)
            as_text_plain(part);
    } else if (multipart && (!boundary || !*boundary || strlen(boundary) > BOUNDARY_MAX)) {
        as_text_plain(part);
        skip_body(P, P->n_bnd);
    } else if ((multipart || msg) && !nest_ok) {
        as_opaque(part);
        skip_body(P, P->n_bnd);
    } else if (multipart) {
        P->bnd[P->n_bnd] = boundary;
        P->bnd_len[P->n_bnd] = strlen(boundary);
        P->n_bnd++;
        node(P, idx)->kind = MIME_MULTIPART;
        gboolean digest_child = is_ci(part->subtype, "digest");
        if (!multipart_body(P, idx, depth, digest_child)) {
            node(P, idx)->kind = MIME_LEAF;
            as_text_plain(part);
        }
        P->n_bnd--;
    } else if (msg) {
        node(P, idx)->kind = MIME_MESSAGE;
        guint32 c = entity(P, idx, depth + 1, FALSE, TRUE);
        node(P, idx)->first_child = c;
    } else {
        skip_body(P, P->n_bnd);
    }

    n = node(P, idx);
    n->end = MAX(P->stop_off, n->body_start);
    n->body_wire = P->stop_wire > bwire0 ? P->stop_wire - bwire0 : 0;
    n->body_lines = P->stop_lf > blf0 ? P->stop_lf - blf0 : 0;
    part->size = n->body_wire;
    part->lines = n->body_lines;
    return idx;
}

/* ---- building the handle ---- */

static void
link_parts(ImapMimeMessage *msg)
{
    for (guint32 i = 0; i < msg->n_nodes; i++) {
        const MimeNode *n = &msg->nodes[i];
        ImapBodyPart *p = &msg->parts[i];
        p->children = n->first_child != MIME_NONE ? &msg->parts[n->first_child] : NULL;
        p->next = n->next != MIME_NONE ? &msg->parts[n->next] : NULL;
        p->envelope = NULL;
        if (n->kind == MIME_MESSAGE && n->first_child != MIME_NONE)
            p->envelope = msg->envelope_of[n->first_child];
    }
}

static const ImapEnvelope empty_envelope;

static void
texts_build(ImapMimeMessage *msg)
{
    GString *s = g_string_new(NULL);
    const ImapEnvelope *env = msg->envelope_of[0] ? msg->envelope_of[0] : &empty_envelope;
    imap_fmt_envelope(s, env, 0);
    msg->envelope = g_strdup(s->str);
    g_string_truncate(s, 0);
    imap_fmt_bodystructure(s, &msg->parts[0], FALSE, 0);
    msg->body = g_strdup(s->str);
    g_string_truncate(s, 0);
    imap_fmt_bodystructure(s, &msg->parts[0], TRUE, 0);
    msg->bodystructure = g_string_free(s, FALSE);
}

ImapMimeMessage *
imap_mime_parse(const ImapMimeInput *in, const ImapMimeLimits *limits, GError **error)
{
    static const ImapMimeLimits defaults = IMAP_MIME_LIMITS_INIT;
    Parser P = {0};
    P.lim = limits ? *limits : defaults;
    P.lim.max_depth = MIN(P.lim.max_depth, MAX_DEPTH_CAP);
    P.lim.max_parts = MAX(P.lim.max_parts, 1);
    P.hdr_budget = P.lim.max_header_total;
    P.rd.in = in;
    P.rd.cap = RD_BUF;
    if (!mime_input_size(in, &P.rd.size, error))
        return NULL;
    if (!in->data)
        P.rd.buf = g_malloc(RD_BUF);
    P.arena = mime_arena_new();
    P.nodes = g_array_new(FALSE, FALSE, sizeof(MimeNode));
    P.parts = g_ptr_array_new();
    P.envs = g_ptr_array_new();

    entity(&P, MIME_NONE, 0, FALSE, TRUE);
    g_free(P.rd.buf);
    if (P.rd.error) {
        g_propagate_error(error, P.rd.error);
        mime_arena_free(P.arena);
        g_array_free(P.nodes, TRUE);
        g_ptr_array_free(P.parts, TRUE);
        g_ptr_array_free(P.envs, TRUE);
        return NULL;
    }

    ImapMimeMessage *msg = g_new0(ImapMimeMessage, 1);
    msg->n_nodes = P.nodes->len;
    msg->nodes = (MimeNode *)g_array_free(P.nodes, FALSE);
    msg->size = P.rd.size;
    msg->wire_size = msg->nodes[0].hdr_wire + msg->nodes[0].body_wire;
    msg->arena = P.arena;
    msg->parts = g_new(ImapBodyPart, msg->n_nodes);
    for (guint32 i = 0; i < msg->n_nodes; i++)
        msg->parts[i] = *(ImapBodyPart *)P.parts->pdata[i];
    msg->envelope_of = (ImapEnvelope **)g_ptr_array_free(P.envs, FALSE);
    g_ptr_array_free(P.parts, TRUE);
    link_parts(msg);
    texts_build(msg);
    return msg;
}

char *
imap_mime_parse_envelope(const ImapMimeInput *in, const ImapMimeLimits *limits, GError **error)
{
    static const ImapMimeLimits defaults = IMAP_MIME_LIMITS_INIT;
    Parser P = {0};
    P.lim = limits ? *limits : defaults;
    P.hdr_budget = P.lim.max_header_total;
    P.rd.in = in;
    P.rd.cap = HDR_WINDOW;
    P.rd.one_read = TRUE;
    /* an fd's size is not needed: its end is where a read comes up short */
    P.rd.size = in->data || in->fd < 0 ? (in->data ? in->len : 0) : G_MAXUINT64;
    guchar *big = in->data ? NULL : g_malloc(RD_BUF);
    P.rd.buf = big;
    gboolean interrupted = FALSE;
    GString *hdr = read_header(&P, &interrupted);
    g_free(big);
    if (P.rd.error) {
        g_propagate_error(error, P.rd.error);
        g_string_free(hdr, TRUE);
        return NULL;
    }
    MimeArena *a = mime_arena_new();
    ImapEnvelope *env = mime_envelope(a, hdr->str, hdr->len);
    g_string_free(hdr, TRUE);
    GString *s = g_string_sized_new(512);
    imap_fmt_envelope(s, env ? env : &empty_envelope, 0);
    mime_arena_free(a);
    return g_string_free(s, FALSE);
}

void
imap_mime_message_free(ImapMimeMessage *msg)
{
    if (!msg)
        return;
    g_free(msg->nodes);
    g_free(msg->envelope);
    g_free(msg->body);
    g_free(msg->bodystructure);
    g_free(msg->parts);
    g_free(msg->envelope_of);
    mime_arena_free(msg->arena);
    g_free(msg);
}

const char *
imap_mime_envelope(const ImapMimeMessage *msg)
{
    return msg->envelope;
}

const char *
imap_mime_body(const ImapMimeMessage *msg)
{
    return msg->body;
}

const char *
imap_mime_bodystructure(const ImapMimeMessage *msg)
{
    return msg->bodystructure;
}

guint64
imap_mime_size(const ImapMimeMessage *msg)
{
    return msg->wire_size;
}

const ImapEnvelope *
imap_mime_envelope_desc(const ImapMimeMessage *msg)
{
    if (!msg->parts)
        return NULL;
    return msg->envelope_of[0] ? msg->envelope_of[0] : &empty_envelope;
}

const ImapBodyPart *
imap_mime_body_desc(const ImapMimeMessage *msg)
{
    return msg->parts ? &msg->parts[0] : NULL;
}
