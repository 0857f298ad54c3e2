/* SPDX-License-Identifier: MIT */
/*
 * imap-mime-header.c - reading a raw header block for IMAP: its fields,
 * the Content-* fields that make a BODYSTRUCTURE part (RFC 2045, 2183,
 * 2231, 3282, 2557, 1864) and the fields of an ENVELOPE (RFC 3501 7.4.2).
 * Values stay raw (RFC 2047 words encoded, 8-bit bytes as they are);
 * only line folding, quoting and comments are taken off.
 *
 *   mime_field_next()   next field of a header block (continuation lines joined)
 *   mime_field_is()     field name equals (case-insensitive)
 *   mime_unfold()       raw value -> unfolded, trimmed, NUL-free arena string
 *   mime_describe()     header block -> ImapBodyPart fields + boundary + CTE code
 *   mime_envelope()     header block -> ImapEnvelope (addresses: imap-mime-addr.c)
 */
#include "imap-mime-int.h"

#include <string.h>

#define MAX_PARAMS    64
#define MAX_LANGUAGES 16
#define MAX_SECTION   999 /* RFC 2231 section numbers believed */

/* ---- fields ---- */

static gsize
line_end(const char *h, gsize len, gsize p)
{
    const char *nl = memchr(h + p, '\n', len - p);
    return nl ? (gsize)(nl - h) + 1 : len;
}

/* Length of the line at p without its line end. */
static gsize
content_len(const char *h, gsize p, gsize e)
{
    gsize n = e - p;
    if (n && h[e - 1] == '\n') {
        n--;
        if (n && h[p + n - 1] == '\r')
            n--;
    }
    return n;
}

gboolean
mime_field_next(const char *h, gsize len, gsize *pos, MimeField *f)
{
    gsize p = *pos;
    for (;;) {
        if (p >= len)
            return FALSE;
        gsize e = line_end(h, len, p);
        if (content_len(h, p, e) == 0)
            return FALSE; /* the empty line: end of the header */
        if (h[p] != ' ' && h[p] != '\t')
            break;
        p = e; /* a continuation line without a field: ignore */
    }
    gsize first_end = line_end(h, len, p);
    gsize first_len = content_len(h, p, first_end);
    gsize e = first_end;
    gsize last = p;
    while (e < len && (h[e] == ' ' || h[e] == '\t')) {
        last = e;
        e = line_end(h, len, e);
    }
    f->raw = h + p;
    f->raw_len = e - p;
    const char *colon = memchr(h + p, ':', first_len);
    f->colon = colon != NULL;
    gsize name_len = colon ? (gsize)(colon - (h + p)) : first_len;
    while (name_len && (h[p + name_len - 1] == ' ' || h[p + name_len - 1] == '\t'))
        name_len--;
    f->name = h + p;
    f->name_len = name_len;
    if (colon) {
        f->value = colon + 1;
        gsize vend = last + content_len(h, last, e);
        f->value_len = (gsize)(h + vend - f->value);
    } else {
        f->value = h + p + first_len;
        f->value_len = 0;
    }
    *pos = e;
    return TRUE;
}

gboolean
mime_field_is(const MimeField *f, const char *name)
{
    gsize n = strlen(name);
    return f->colon && f->name_len == n && g_ascii_strncasecmp(f->name, name, n) == 0;
}

char *
mime_unfold(MimeArena *a, const char *v, gsize len)
{
    char *d = mime_arena_alloc(a, len + 1);
    gsize n = 0;
    for (gsize i = 0; i < len; i++) {
        char c = v[i];
        if (c == '\n' || c == '\0' || (c == '\r' && i + 1 < len && v[i + 1] == '\n'))
            continue;
        d[n++] = c;
    }
    gsize s = 0;
    while (s < n && (d[s] == ' ' || d[s] == '\t'))
        s++;
    while (n > s && (d[n - 1] == ' ' || d[n - 1] == '\t'))
        n--;
    memmove(d, d + s, n - s);
    d[n - s] = '\0';
    return d;
}

/* ---- RFC 2045 tokens, comments, quoted strings ---- */

static gboolean
is_tspecial(guchar c)
{
    return strchr("()<>@,;:\\\"/[]?=", c) != NULL && c != '\0';
}

static gboolean
is_token(guchar c)
{
    return c > ' ' && c != 0x7f && !is_tspecial(c);
}

/* Skip blanks and (nested) comments. */
static const char *
skip_cfws(const char *p)
{
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
            p++;
        if (*p != '(')
            return p;
        int depth = 0;
        while (*p) {
            if (*p == '\\' && p[1]) {
                p += 2;
                continue;
            }
            if (*p == '(')
                depth++;
            else if (*p == ')' && --depth == 0) {
                p++;
                break;
            }
            p++;
        }
    }
}

static const char *
token(const char *p, gsize *len_r)
{
    const char *s = p;
    while (*p && is_token((guchar)*p))
        p++;
    *len_r = (gsize)(p - s);
    return p;
}

/* A quoted string at p (on '"'): its unescaped content into out. */
static const char *
quoted(const char *p, GString *out)
{
    p++;
    while (*p && *p != '"') {
        if (*p == '\\' && p[1])
            p++;
        g_string_append_c(out, *p++);
    }
    if (*p == '"')
        p++;
    return p;
}

/* ---- parameters (RFC 2045 5.1, RFC 2231 3) ---- */

typedef struct {
    char *attr;
    char *value;
    gsize base_len; /* attribute name without "*N" / "*N*" / "*" */
    int section;    /* N of "name*N", or -1 */
    gboolean ext;   /* "*" after the section: value is charset'lang'%xx */
    gboolean used;
} RawParam;

/* ";" attribute "=" value pairs after the type. Lenient: a missing ";",
 * a value with blanks left unquoted, a parameter without "=" (skipped). */
static guint
params_read(MimeArena *a, const char *p, RawParam *out, guint max)
{
    guint n = 0;
    GString *v = g_string_new(NULL);
    while (n < max) {
        p = skip_cfws(p);
        while (*p == ';')
            p = skip_cfws(p + 1);
        if (!*p)
            break;
        gsize alen;
        const char *attr = p;
        p = token(p, &alen);
        p = skip_cfws(p);
        if (alen == 0 || *p != '=') {
            /* not a parameter: skip to the next ";" */
            while (*p && *p != ';') {
                if (*p == '"') {
                    g_string_truncate(v, 0);
                    p = quoted(p, v);
                } else {
                    p++;
                }
            }
            continue;
        }
        p = skip_cfws(p + 1);
        g_string_truncate(v, 0);
        if (*p == '"') {
            p = quoted(p, v);
        } else {
            const char *vs = p;
            gsize vlen;
            p = token(p, &vlen);
            const char *after = skip_cfws(p);
            g_string_append_len(v, vs, (gssize)vlen);
            if (*after && *after != ';') {
                /* unquoted value with blanks or specials: up to ";",
                 * comments left out */
                while (*p && *p != ';') {
                    if (*p == '(')
                        p = skip_cfws(p);
                    else
                        g_string_append_c(v, *p++);
                }
                while (v->len && (v->str[v->len - 1] == ' ' || v->str[v->len - 1] == '\t'))
                    g_string_truncate(v, v->len - 1);
            } else {
                p = after;
            }
        }
        RawParam *r = &out[n++];
        r->attr = mime_arena_strndup(a, attr, alen);
        r->value = mime_arena_strndup(a, v->str, v->len);
        r->section = -1;
        r->ext = FALSE;
        r->used = FALSE;
        r->base_len = alen;
        const char *star = memchr(attr, '*', alen);
        if (star && star + 1 < attr + alen) {
            const char *d = star + 1;
            int sec = 0;
            gboolean ok = TRUE;
            gsize nd = 0;
            while (d < attr + alen && g_ascii_isdigit(*d) && nd < 4) {
                sec = sec * 10 + (*d++ - '0');
                nd++;
            }
            gboolean ext = d < attr + alen && *d == '*';
            if (ext)
                d++;
            if (nd == 0 || d != attr + alen || sec > MAX_SECTION)
                ok = FALSE;
            if (ok) {
                r->section = sec;
                r->ext = ext;
                r->base_len = (gsize)(star - attr);
            }
        }
    }
    g_string_free(v, TRUE);
    return n;
}

/* RFC 2231 continuations joined: name*0, name*1, ... -> "name" (or
 * "name*" when the first section is extended), in order from 0 while
 * the numbers follow on; everything else as given, in the order given. */
static guint
params_join(MimeArena *a, RawParam *raw, guint n, ImapParam **out_r)
{
    if (n == 0) {
        *out_r = NULL;
        return 0;
    }
    ImapParam *out = mime_arena_alloc(a, n * sizeof *out);
    guint k = 0;
    GString *v = g_string_new(NULL);
    for (guint i = 0; i < n; i++) {
        RawParam *r = &raw[i];
        if (r->used)
            continue;
        if (r->section < 0) {
            r->used = TRUE;
            out[k].name = r->attr;
            out[k++].value = r->value;
            continue;
        }
        /* gather sections 0, 1, 2, ... of this base name */
        g_string_truncate(v, 0);
        gboolean ext0 = FALSE;
        int want = 0;
        for (;;) {
            RawParam *s = NULL;
            for (guint j = i; j < n; j++)
                if (!raw[j].used && raw[j].section == want && raw[j].base_len == r->base_len &&
                    g_ascii_strncasecmp(raw[j].attr, r->attr, r->base_len) == 0) {
                    s = &raw[j];
                    break;
                }
            if (!s)
                break;
            s->used = TRUE;
            if (want == 0)
                ext0 = s->ext;
            g_string_append(v, s->value);
            want++;
        }
        if (want == 0) {
            /* no section 0: leave this one as it was given */
            r->used = TRUE;
            out[k].name = r->attr;
            out[k++].value = r->value;
            continue;
        }
        char *name = mime_arena_alloc(a, r->base_len + 2);
        memcpy(name, r->attr, r->base_len);
        name[r->base_len] = ext0 ? '*' : '\0';
        name[r->base_len + 1] = '\0';
        out[k].name = name;
        out[k++].value = mime_arena_strndup(a, v->str, v->len);
        i--; /* raw[i] may still have unused duplicates: look again */
    }
    g_string_free(v, TRUE);
    *out_r = out;
    return k;
}

static guint
params_parse(MimeArena *a, const char *p, ImapParam **out_r)
{
    RawParam raw[MAX_PARAMS];
    guint n = params_read(a, p, raw, MAX_PARAMS);
    return params_join(a, raw, n, out_r);
}

/* ---- the Content-* fields ---- */

typedef struct {
    const char *name;
    MimeField f;
    gboolean found;
} Want;

static void
find_fields(const char *h, gsize len, Want *w, guint nw)
{
    gsize pos = 0;
    MimeField f;
    while (mime_field_next(h, len, &pos, &f)) {
        if (!f.colon || f.name_len < 2)
            continue;
        for (guint i = 0; i < nw; i++)
            if (!w[i].found && mime_field_is(&f, w[i].name)) {
                w[i].f = f;
                w[i].found = TRUE;
                break;
            }
    }
}

static char *
want_value(MimeArena *a, const Want *w)
{
    return w->found ? mime_unfold(a, w->f.value, w->f.value_len) : NULL;
}

static char *
want_value_nonempty(MimeArena *a, const Want *w)
{
    char *v = want_value(a, w);
    return v && *v ? v : NULL;
}

static const ImapParam param_us_ascii[] = {{"charset", "us-ascii"}};

static void
content_type(MimeArena *a, const char *v, gboolean digest, ImapBodyPart *part)
{
    if (v) {
        const char *p = skip_cfws(v);
        gsize tl, sl = 0;
        const char *t = p;
        p = token(p, &tl);
        p = skip_cfws(p);
        const char *s = NULL;
        if (tl && *p == '/') {
            p = skip_cfws(p + 1);
            s = p;
            p = token(p, &sl);
        }
        if (tl && sl) {
            part->type = mime_arena_strndup(a, t, tl);
            part->subtype = mime_arena_strndup(a, s, sl);
            ImapParam *params;
            part->n_params = params_parse(a, p, &params);
            part->params = params;
            if (g_ascii_strcasecmp(part->type, "text") == 0) {
                for (guint i = 0; i < part->n_params; i++)
                    if (g_ascii_strcasecmp(part->params[i].name, "charset") == 0)
                        return;
                /* RFC 2045 5.2: text without a charset is us-ascii */
                ImapParam *more = mime_arena_alloc(a, (part->n_params + 1) * sizeof *more);
                if (part->n_params)
                    memcpy(more, part->params, part->n_params * sizeof *more);
                more[part->n_params++] = param_us_ascii[0];
                part->params = more;
            }
            return;
        }
    }
    if (digest) {
        part->type = "message";
        part->subtype = "rfc822";
    } else {
        part->type = "text";
        part->subtype = "plain";
        part->params = param_us_ascii;
        part->n_params = 1;
    }
}

static guint8
cte_code(const char *enc)
{
    if (!enc)
        return MIME_CTE_IDENTITY;
    if (g_ascii_strcasecmp(enc, "7bit") == 0 || g_ascii_strcasecmp(enc, "8bit") == 0 ||
        g_ascii_strcasecmp(enc, "binary") == 0)
        return MIME_CTE_IDENTITY;
    if (g_ascii_strcasecmp(enc, "base64") == 0)
        return MIME_CTE_BASE64;
    if (g_ascii_strcasecmp(enc, "quoted-printable") == 0)
        return MIME_CTE_QP;
    return MIME_CTE_UNKNOWN;
}

static void
disposition(MimeArena *a, const char *v, ImapBodyPart *part)
{
    if (!v)
        return;
    const char *p = skip_cfws(v);
    gsize tl;
    const char *t = p;
    p = token(p, &tl);
    if (!tl)
        return;
    part->disposition = mime_arena_strndup(a, t, tl);
    ImapParam *params;
    part->n_disp_params = params_parse(a, p, &params);
    part->disp_params = params;
}

/* Content-Language: language tags separated by commas (RFC 3282). */
static void
languages(MimeArena *a, const char *v, ImapBodyPart *part)
{
    if (!v)
        return;
    const char *tags[MAX_LANGUAGES];
    guint n = 0;
    const char *p = v;
    while (*p && n < MAX_LANGUAGES) {
        p = skip_cfws(p);
        if (*p == ',') {
            p++;
            continue;
        }
        const char *s = p;
        gsize len;
        p = token(p, &len);
        if (len)
            tags[n++] = mime_arena_strndup(a, s, len);
        else if (*p)
            p++; /* a stray special */
    }
    if (n == 0)
        return;
    const char **list = mime_arena_alloc(a, (n + 1) * sizeof *list);
    memcpy(list, tags, n * sizeof *list);
    list[n] = NULL;
    part->language = list;
}

void
mime_describe(MimeArena *a, const char *h, gsize len, gboolean digest, ImapBodyPart *part,
              const char **boundary_r, guint8 *cte_r)
{
    enum { CT, CTE, ID, DESC, DISP, LANG, LOC, MD5, N_ };
    Want w[N_] = {{.name = "Content-Type"},        {.name = "Content-Transfer-Encoding"},
                  {.name = "Content-ID"},          {.name = "Content-Description"},
                  {.name = "Content-Disposition"}, {.name = "Content-Language"},
                  {.name = "Content-Location"},    {.name = "Content-MD5"}};
    memset(part, 0, sizeof *part);
    find_fields(h, len, w, N_);
    content_type(a, want_value(a, &w[CT]), digest, part);
    *boundary_r = NULL;
    for (guint i = 0; i < part->n_params; i++)
        if (g_ascii_strcasecmp(part->params[i].name, "boundary") == 0) {
            *boundary_r = part->params[i].value;
            break;
        }
    char *enc = want_value(a, &w[CTE]);
    if (enc) {
        gsize el;
        const char *p = skip_cfws(enc);
        token(p, &el);
        enc = el ? mime_arena_strndup(a, p, el) : NULL;
    }
    part->encoding = enc;
    *cte_r = cte_code(enc);
    part->id = want_value_nonempty(a, &w[ID]);
    part->description = want_value_nonempty(a, &w[DESC]);
    disposition(a, want_value(a, &w[DISP]), part);
    languages(a, want_value(a, &w[LANG]), part);
    part->location = want_value_nonempty(a, &w[LOC]);
    part->md5 = want_value_nonempty(a, &w[MD5]);
}

ImapEnvelope *
mime_envelope(MimeArena *a, const char *h, gsize len)
{
    enum { DATE, SUBJECT, FROM, SENDER, REPLY_TO, TO, CC, BCC, IN_REPLY_TO, MESSAGE_ID, N_ };
    Want w[N_] = {{.name = "Date"},      {.name = "Subject"},  {.name = "From"},
                  {.name = "Sender"},    {.name = "Reply-To"}, {.name = "To"},
                  {.name = "Cc"},        {.name = "Bcc"},      {.name = "In-Reply-To"},
                  {.name = "Message-ID"}};
    find_fields(h, len, w, N_);
    ImapEnvelope *e = mime_arena_alloc(a, sizeof *e);
    e->date = want_value(a, &w[DATE]);
    e->subject = want_value(a, &w[SUBJECT]);
    e->in_reply_to = want_value(a, &w[IN_REPLY_TO]);
    e->message_id = want_value(a, &w[MESSAGE_ID]);
    struct {
        int i;
        const ImapAddress **list;
        guint *n;
    } addr[] = {
        {FROM, &e->from, &e->n_from},
        {SENDER, &e->sender, &e->n_sender},
        {REPLY_TO, &e->reply_to, &e->n_reply_to},
        {TO, &e->to, &e->n_to},
        {CC, &e->cc, &e->n_cc},
        {BCC, &e->bcc, &e->n_bcc},
    };
    for (guint i = 0; i < G_N_ELEMENTS(addr); i++) {
        char *v = want_value(a, &w[addr[i].i]);
        ImapAddress *list = NULL;
        *addr[i].n = v ? mime_address_list(a, v, &list) : 0;
        *addr[i].list = list;
    }
    return e;
}
