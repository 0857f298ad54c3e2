/* SPDX-License-Identifier: MIT */
/*
 * NAME
 *   imap-cmd-search.c - SEARCH and UID SEARCH (RFC 9051 6.4.4) with every
 *   search key, CHARSET UTF-8 / US-ASCII, ESEARCH results (RFC 4731:
 *   RETURN (MIN MAX COUNT ALL); always for IMAP4rev2), MODSEQ (RFC 7162)
 *   and OLDER / YOUNGER (RFC 5032 WITHIN).
 *
 * SYNOPSIS
 *   imap_cmd_search(s)
 *
 * DESCRIPTION
 *   Keys are evaluated per message in the worker, cheapest first: flags,
 *   sizes, dates, UIDs and sequence numbers come from the store's view.
 *   SUBJECT, FROM, TO, CC, BCC and HEADER of a field the ENVELOPE holds
 *   (Date, Subject, From, To, Cc, Bcc, In-Reply-To, Message-ID) are
 *   answered from the ENVELOPE text in the store's per-message cache
 *   blob; for a message without one only the header is parsed (MIME
 *   layer, no GMime) and an envelope-only blob stored, as FETCH ENVELOPE
 *   does, so the next search opens no file. A plain field (Subject, Date,
 *   Message-ID, In-Reply-To) or address list (From, To, Cc, Bcc) that is
 *   ASCII without escapes or encoded words is matched against an ASCII
 *   needle where it stands in the cached text, without copying or
 *   decoding (no allocation per message; an address list is put together
 *   as the slow path would, in one scratch string per SEARCH).
 *   Other keys on headers and text open the message file, which GMime
 *   parses once per message (then dropped). Needles are case-folded
 *   once per SEARCH. String keys match
 *   case-insensitively (Unicode case folding) as substrings of the
 *   decoded text: header values with RFC 2047 words decoded, text parts
 *   decoded from their transfer encoding and charset. BEFORE / ON / SINCE
 *   use the internal date's day in the server's zone (as INTERNALDATE is
 *   shown); SENTBEFORE / SENTON / SENTSINCE
 *   the Date: header's day in its own zone (the internal date when there
 *   is none). RECENT, NEW (recent and unseen) and OLD (not recent) look
 *   at the view's \Recent (the session that first saw a message has it).
 *
 *   SEARCH without UID sends no expunges (RFC 9051 7.5.1). RETURN (SAVE)
 *   (SEARCHRES) is not offered and refused.
 */
#include "imap-session.h"

#include <gmime/gmime.h>
#include <string.h>
#include <unistd.h>

/* ENVELOPE fields (RFC 9051 7.5.2) */
enum {
    ENV_DATE,
    ENV_SUBJECT,
    ENV_FROM,
    ENV_SENDER,
    ENV_REPLY_TO,
    ENV_TO,
    ENV_CC,
    ENV_BCC,
    ENV_IN_REPLY_TO,
    ENV_MESSAGE_ID,
    ENV_N
};

typedef struct {
    ImapSession *s;
    const KrMailboxMsg *m;
    guint32 seq;
    gint64 now;
    gboolean tried; /* content loaded (or failed) */
    GMimeMessage *gm;
    char *body_text; /* decoded text parts, casefolded */
    gboolean body_done;
    gboolean env_tried, env_ok;
    GString *scratch; /* the fast path's address text (one per SEARCH) */
    const char *nd;   /* the last needle seen, its length, all ASCII? */
    gsize nd_len;
    gboolean nd_ascii;
    GBytes *env_hold; /* holds the ENVELOPE text: */
    const char *env_text;
    gsize env_len;
    guint env_have;   /* bit i: env[i] decoded */
    char *env[ENV_N]; /* decoded ENVELOPE fields (NULL: NIL), not folded */
} Ctx;

static void
ctx_reset(Ctx *c)
{
    for (guint i = 0; i < ENV_N; i++)
        g_clear_pointer(&c->env[i], g_free);
    g_clear_pointer(&c->env_hold, g_bytes_unref);
    c->env_text = NULL;
    c->env_have = 0;
    c->env_tried = c->env_ok = FALSE;
    g_clear_object(&c->gm);
    g_clear_pointer(&c->body_text, g_free);
    c->tried = FALSE;
    c->body_done = FALSE;
}

static gboolean
is_content(ImapSearchKeyType t)
{
    switch (t) {
    case IMAP_SK_BCC:
    case IMAP_SK_BODY:
    case IMAP_SK_CC:
    case IMAP_SK_FROM:
    case IMAP_SK_SUBJECT:
    case IMAP_SK_TEXT:
    case IMAP_SK_TO:
    case IMAP_SK_HEADER:
    case IMAP_SK_SENTBEFORE:
    case IMAP_SK_SENTON:
    case IMAP_SK_SENTSINCE:
        return TRUE;
    default:
        return FALSE;
    }
}

/* Does the key (or a child) need the message content? */
static gboolean
needs_content(const ImapSearchKey *k)
{
    if (is_content(k->type))
        return TRUE;
    for (const ImapSearchKey *c = k->child; c; c = c->next)
        if (needs_content(c))
            return TRUE;
    return FALSE;
}

static char *fold(const char *s);

/* Replace the needle of a string key by its case folding (kept in owned). */
static void
fold_needle(ImapSearchKey *k, GPtrArray *owned)
{
    switch (k->type) {
    case IMAP_SK_BCC:
    case IMAP_SK_BODY:
    case IMAP_SK_CC:
    case IMAP_SK_FROM:
    case IMAP_SK_SUBJECT:
    case IMAP_SK_TEXT:
    case IMAP_SK_TO:
    case IMAP_SK_HEADER:
        if (k->str) {
            char *f = fold(k->str);
            g_ptr_array_add(owned, f);
            k->str = f;
        }
        break;
    default:
        break;
    }
}

/* Put cheap children of every AND before the ones that read files, and
 * resolve sets; note MODSEQ keys. */
static void
prepare(ImapSearchKey *k, guint32 count, guint32 maxuid, gboolean *modseq, GPtrArray *owned)
{
    fold_needle(k, owned);
    if (k->type == IMAP_SK_SEQSET)
        imap_seqset_resolve(k->set, count);
    else if (k->type == IMAP_SK_UID)
        imap_seqset_resolve(k->set, maxuid);
    else if (k->type == IMAP_SK_MODSEQ)
        *modseq = TRUE;
    ImapSearchKey *cheap = NULL, **ct = &cheap, *dear = NULL, **dt = &dear;
    for (ImapSearchKey *c = k->child, *next; c; c = next) {
        next = c->next;
        c->next = NULL;
        prepare(c, count, maxuid, modseq, owned);
        if (k->type == IMAP_SK_AND && needs_content(c)) {
            *dt = c;
            dt = &c->next;
        } else {
            *ct = c;
            ct = &c->next;
        }
    }
    *ct = dear;
    k->child = cheap;
}

static gboolean
load(Ctx *c)
{
    if (c->tried)
        return c->gm != NULL;
    c->tried = TRUE;
    g_autoptr(GError) e = NULL;
    int fd = imap_g.ops->open_content(c->s->mb, c->m->uid, &e);
    if (fd < 0)
        return FALSE;
    GMimeStream *st = g_mime_stream_fs_new(fd); /* owns fd */
    GMimeParser *p = g_mime_parser_new_with_stream(st);
    c->gm = g_mime_parser_construct_message(p, NULL);
    g_object_unref(p);
    g_object_unref(st);
    return c->gm != NULL;
}

static char *
fold(const char *s)
{
    if (g_utf8_validate(s, -1, NULL))
        return g_utf8_casefold(s, -1);
    return g_ascii_strdown(s, -1);
}

/* needle (already folded) in ASCII-only hay, ASCII case ignored */
static gboolean
ascii_has(const char *hay, const char *needle)
{
    for (const char *h = hay; *h; h++) {
        const char *a = h, *b = needle;
        while (*b && *a && g_ascii_tolower(*a) == *b)
            a++, b++;
        if (!*b)
            return TRUE;
        if (!*a)
            return FALSE;
    }
    return FALSE;
}

static gboolean
is_ascii(const char *s)
{
    for (; *s; s++)
        if ((guchar)*s >= 0x80)
            return FALSE;
    return TRUE;
}

/* needle is already folded */
static gboolean
has_text(const char *hay, const char *needle)
{
    if (!*needle)
        return TRUE;
    if (!hay)
        return FALSE;
    if (is_ascii(hay))
        return is_ascii(needle) && ascii_has(hay, needle);
    g_autofree char *h = fold(hay);
    return strstr(h, needle) != NULL;
}

/* --- the cached ENVELOPE text ------------------------------------------ */

typedef struct {
    const char *p, *end;
} Env;

static void
env_sp(Env *e)
{
    while (e->p < e->end && *e->p == ' ')
        e->p++;
}

/* nstring: NIL, "quoted" or {n}CRLF literal. *out NULL for NIL. */
static gboolean
env_nstring(Env *e, char **out)
{
    env_sp(e);
    *out = NULL;
    if (e->end - e->p >= 3 && g_ascii_strncasecmp(e->p, "NIL", 3) == 0) {
        e->p += 3;
        return TRUE;
    }
    if (e->p < e->end && *e->p == '"') {
        GString *g = g_string_new(NULL);
        for (e->p++; e->p < e->end && *e->p != '"'; e->p++) {
            if (*e->p == '\\' && e->p + 1 < e->end)
                e->p++;
            g_string_append_c(g, *e->p);
        }
        if (e->p >= e->end) {
            g_string_free(g, TRUE);
            return FALSE;
        }
        e->p++;
        *out = g_string_free(g, FALSE);
        return TRUE;
    }
    if (e->p < e->end && *e->p == '{') {
        char *q;
        guint64 n = g_ascii_strtoull(e->p + 1, &q, 10);
        if (q >= e->end || *q != '}' || e->end - q < 3 || q[1] != '\r' || q[2] != '\n' ||
            n > (guint64)(e->end - (q + 3)))
            return FALSE;
        *out = g_strndup(q + 3, (gsize)n);
        e->p = q + 3 + n;
        return TRUE;
    }
    return FALSE;
}

/* RFC 2047 words decoded; plain UTF-8 as it is. */
static char *
decode(const char *raw)
{
    if (!raw)
        return NULL;
    if (!strstr(raw, "=?") && g_utf8_validate(raw, -1, NULL))
        return g_strdup(raw);
    return g_mime_utils_header_decode_text(NULL, raw);
}

/* An address list as text like the header's: "name <mbox@host>, ...". */
static gboolean
env_addrs(Env *e, char **out)
{
    env_sp(e);
    *out = NULL;
    if (e->end - e->p >= 3 && g_ascii_strncasecmp(e->p, "NIL", 3) == 0) {
        e->p += 3;
        return TRUE;
    }
    if (e->p >= e->end || *e->p != '(')
        return FALSE;
    e->p++;
    GString *g = g_string_new(NULL);
    for (;;) {
        env_sp(e);
        if (e->p < e->end && *e->p == ')') {
            e->p++;
            break;
        }
        if (e->p >= e->end || *e->p != '(')
            goto bad;
        e->p++;
        char *f[4] = {NULL, NULL, NULL, NULL};
        gboolean ok = TRUE;
        for (guint i = 0; i < 4 && ok; i++)
            ok = env_nstring(e, &f[i]);
        env_sp(e);
        ok = ok && e->p < e->end && *e->p == ')';
        if (ok) {
            e->p++;
            if (!f[3]) { /* group marker */
                if (f[2])
                    g_string_append_printf(g, "%s%s:", g->len ? ", " : "", f[2]);
                else
                    g_string_append_c(g, ';');
            } else {
                if (g->len && g->str[g->len - 1] != ':')
                    g_string_append(g, ", ");
                g_autofree char *name = decode(f[0]);
                const char *mb = f[2] && strcmp(f[2], "MISSING_MAILBOX") ? f[2] : "";
                const char *host = strcmp(f[3], "MISSING_DOMAIN") ? f[3] : "";
                if (name)
                    g_string_append_printf(g, "%s <%s@%s>", name, mb, host);
                else
                    g_string_append_printf(g, "%s@%s", mb, host);
            }
        }
        for (guint i = 0; i < 4; i++)
            g_free(f[i]);
        if (!ok)
            goto bad;
    }
    *out = g_string_free(g, FALSE);
    return TRUE;
bad:
    g_string_free(g, TRUE);
    return FALSE;
}

/* The ENVELOPE text of the message, from the cache (or its header parsed
 * and cached), once per message. */
static gboolean
env_load(Ctx *c)
{
    if (!c->env_tried) {
        c->env_tried = TRUE;
        c->env_ok = imap_msginfo_envelope_ref(c->s, c->m->uid, &c->env_hold, &c->env_text,
                                              &c->env_len, NULL) &&
                    c->env_len > 0 && c->env_text[0] == '(';
    }
    return c->env_ok;
}

/* ENVELOPE field idx of the message, decoded, in *out (NULL: NIL); fields
 * decoded once each. FALSE: no usable ENVELOPE. */
static gboolean
env_get(Ctx *c, int idx, const char **out)
{
    if (!env_load(c))
        return FALSE;
    if (c->env_have & (1u << idx)) {
        *out = c->env[idx];
        return TRUE;
    }
    Env e = {c->env_text + 1, c->env_text + c->env_len};
    for (int i = 0; i <= idx; i++) {
        char *v = NULL;
        gboolean ok;
        if (i < idx) { /* skip */
            if (i >= ENV_FROM && i <= ENV_BCC) {
                env_sp(&e);
                ok = e.p < e.end && (*e.p == '(' || *e.p == 'N' || *e.p == 'n') ? env_addrs(&e, &v)
                                                                                : FALSE;
            } else {
                ok = env_nstring(&e, &v);
            }
            g_free(v);
        } else if (i >= ENV_FROM && i <= ENV_BCC) {
            ok = env_addrs(&e, &c->env[i]);
        } else {
            ok = env_nstring(&e, &v);
            c->env[i] = decode(v);
            g_free(v);
        }
        if (!ok) {
            c->env_ok = FALSE;
            return FALSE;
        }
    }
    c->env_have |= 1u << idx;
    *out = c->env[idx];
    return TRUE;
}

/* --- the fast path: a plain field straight from the ENVELOPE text ------- */

/* Skip an nstring without copying it; *p_r and *len_r: its octets as they
 * stand (a quoted string's still escaped, without the quotes), *esc_r:
 * a backslash in it. FALSE: not an nstring. NIL gives *p_r NULL. */
static inline gboolean
is_nil(const Env *e)
{
    return e->end - e->p >= 3 && (e->p[0] | 0x20) == 'n' && (e->p[1] | 0x20) == 'i' &&
           (e->p[2] | 0x20) == 'l';
}

static gboolean
env_skip_nstring(Env *e, const char **p_r, gsize *len_r, gboolean *esc_r)
{
    env_sp(e);
    *p_r = NULL;
    *len_r = 0;
    *esc_r = FALSE;
    if (is_nil(e)) {
        e->p += 3;
        return TRUE;
    }
    if (e->p < e->end && *e->p == '"') {
        const char *start = ++e->p;
        const char *q = memchr(start, '"', (gsize)(e->end - start));
        if (q && !memchr(start, '\\', (gsize)(q - start))) { /* the usual case: no escapes */
            *p_r = start;
            *len_r = (gsize)(q - start);
            e->p = q + 1;
            return TRUE;
        }
        for (; e->p < e->end && *e->p != '"'; e->p++) {
            if (*e->p == '\\' && e->p + 1 < e->end) {
                *esc_r = TRUE;
                e->p++;
            }
        }
        if (e->p >= e->end)
            return FALSE;
        *p_r = start;
        *len_r = (gsize)(e->p - start);
        e->p++;
        return TRUE;
    }
    if (e->p < e->end && *e->p == '{') {
        guint64 n = 0;
        const char *q = e->p + 1;
        while (q < e->end && g_ascii_isdigit(*q) && n < G_MAXUINT32)
            n = n * 10 + (guint64)(*q++ - '0');
        if (q >= e->end || *q != '}' || e->end - q < 3 || q[1] != '\r' || q[2] != '\n' ||
            n > (guint64)(e->end - (q + 3)))
            return FALSE;
        *p_r = q + 3;
        *len_r = (gsize)n;
        e->p = q + 3 + n;
        return TRUE;
    }
    return FALSE;
}

/* Skip an address list (or NIL) without copying. */
static gboolean
env_skip_addrs(Env *e)
{
    env_sp(e);
    if (e->end - e->p >= 3 && g_ascii_strncasecmp(e->p, "NIL", 3) == 0) {
        e->p += 3;
        return TRUE;
    }
    if (e->p >= e->end || *e->p != '(')
        return FALSE;
    e->p++;
    for (;;) {
        env_sp(e);
        if (e->p < e->end && *e->p == ')') {
            e->p++;
            return TRUE;
        }
        if (e->p >= e->end || *e->p != '(')
            return FALSE;
        e->p++;
        const char *v;
        gsize l;
        gboolean esc;
        for (guint i = 0; i < 4; i++)
            if (!env_skip_nstring(e, &v, &l, &esc))
                return FALSE;
        env_sp(e);
        if (e->p >= e->end || *e->p != ')')
            return FALSE;
        e->p++;
    }
}

static const guchar lower[256] = {
#define L(c)   ((c) >= 'A' && (c) <= 'Z' ? (c) + 32 : (c))
#define L4(c)  L(c), L(c + 1), L(c + 2), L(c + 3)
#define L16(c) L4(c), L4(c + 4), L4(c + 8), L4(c + 12)
#define L64(c) L16(c), L16(c + 16), L16(c + 32), L16(c + 48)
    L64(0), L64(64), L64(128), L64(192)
#undef L64
#undef L16
#undef L4
#undef L
};

/* needle (folded, ASCII, nlen > 0) in hay[0..len), ASCII case ignored */
static gboolean
ascii_has_n(const char *hay, gsize len, const char *needle, gsize nlen)
{
    if (nlen > len)
        return FALSE;
    guchar first = (guchar)needle[0];
    for (gsize i = 0; i + nlen <= len; i++) {
        if (lower[(guchar)hay[i]] != first)
            continue;
        gsize k = 1;
        while (k < nlen && lower[(guchar)hay[i + k]] == (guchar)needle[k])
            k++;
        if (k == nlen)
            return TRUE;
    }
    return FALSE;
}

/* Is the span plain ASCII as far as matching goes: no 8-bit octets, no
 * NUL, no escapes, no encoded word ("=?" only if words may be decoded)? */
static gboolean
plain(const char *v, gsize l, gboolean esc, gboolean words)
{
    if (esc)
        return FALSE;
    for (gsize i = 0; i < l; i++) {
        guchar ch = (guchar)v[i];
        if (ch >= 0x80 || ch == '\0' || (words && ch == '=' && i + 1 < l && v[i + 1] == '?'))
            return FALSE;
    }
    return TRUE;
}

static gboolean
span_is(const char *v, gsize l, const char *lit)
{
    gsize n = strlen(lit);
    return v && l == n && memcmp(v, lit, n) == 0;
}

/* An address list as env_addrs() writes it ("name <mbox@host>, ...", group
 * markers "group:" and ";"), into out, from plain ASCII fields only (no
 * copy of any field, no decoding). FALSE: not plain, take the slow path. */
static gboolean
fast_addrs(Env *e, GString *out)
{
    g_string_truncate(out, 0);
    env_sp(e);
    if (e->end - e->p >= 3 && g_ascii_strncasecmp(e->p, "NIL", 3) == 0)
        return TRUE;
    if (e->p >= e->end || *e->p != '(')
        return FALSE;
    e->p++;
    for (;;) {
        env_sp(e);
        if (e->p < e->end && *e->p == ')')
            return TRUE;
        if (e->p >= e->end || *e->p != '(')
            return FALSE;
        e->p++;
        const char *f[4];
        gsize fl[4];
        for (guint i = 0; i < 4; i++) {
            gboolean esc;
            if (!env_skip_nstring(e, &f[i], &fl[i], &esc) ||
                (f[i] && !plain(f[i], fl[i], esc, i == 0)))
                return FALSE;
        }
        env_sp(e);
        if (e->p >= e->end || *e->p != ')')
            return FALSE;
        e->p++;
        if (!f[3]) { /* group marker */
            if (f[2]) {
                if (out->len)
                    g_string_append_len(out, ", ", 2);
                g_string_append_len(out, f[2], (gssize)fl[2]);
                g_string_append_c(out, ':');
            } else {
                g_string_append_c(out, ';');
            }
            continue;
        }
        if (out->len && out->str[out->len - 1] != ':')
            g_string_append_len(out, ", ", 2);
        if (f[0]) {
            g_string_append_len(out, f[0], (gssize)fl[0]);
            g_string_append_len(out, " <", 2);
        }
        if (f[2] && !span_is(f[2], fl[2], "MISSING_MAILBOX"))
            g_string_append_len(out, f[2], (gssize)fl[2]);
        g_string_append_c(out, '@');
        if (!span_is(f[3], fl[3], "MISSING_DOMAIN"))
            g_string_append_len(out, f[3], (gssize)fl[3]);
        if (f[0])
            g_string_append_c(out, '>');
    }
}

/* Can field idx be matched against the ASCII needle as it stands in the
 * ENVELOPE text (plain ASCII: no escapes, no encoded words, no 8-bit
 * octets)? Then *hit_r is the answer and TRUE; FALSE: take the decoding
 * path. No allocation per message (address lists are put together in the
 * search's scratch string). */
static gboolean
env_fast(Ctx *c, int idx, const char *needle, gsize nlen, gboolean *hit_r)
{
    if (!env_load(c))
        return FALSE;
    Env e = {c->env_text + 1, c->env_text + c->env_len};
    const char *v = NULL;
    gsize l = 0;
    gboolean esc = FALSE;
    for (int i = 0; i < idx; i++) {
        gboolean ok =
            i >= ENV_FROM && i <= ENV_BCC ? env_skip_addrs(&e) : env_skip_nstring(&e, &v, &l, &esc);
        if (!ok)
            return FALSE;
    }
    if (idx >= ENV_FROM && idx <= ENV_BCC) {
        env_sp(&e);
        if (e.end - e.p >= 3 && g_ascii_strncasecmp(e.p, "NIL", 3) == 0) {
            *hit_r = FALSE;
            return TRUE;
        }
        if (!fast_addrs(&e, c->scratch))
            return FALSE;
        *hit_r = ascii_has_n(c->scratch->str, c->scratch->len, needle, nlen);
        return TRUE;
    }
    if (!env_skip_nstring(&e, &v, &l, &esc))
        return FALSE;
    if (!v) { /* NIL */
        *hit_r = FALSE;
        return TRUE;
    }
    if (!plain(v, l, esc, TRUE))
        return FALSE;
    *hit_r = ascii_has_n(v, l, needle, nlen);
    return TRUE;
}

/* The ENVELOPE field that holds header `field` as it is, or -1. (Sender and
 * Reply-To default to From in the ENVELOPE, so they are not taken.) */
static int
env_field(const char *field)
{
    static const struct {
        const char *name;
        int idx;
    } map[] = {{"Subject", ENV_SUBJECT},
               {"From", ENV_FROM},
               {"To", ENV_TO},
               {"Cc", ENV_CC},
               {"Bcc", ENV_BCC},
               {"Date", ENV_DATE},
               {"In-Reply-To", ENV_IN_REPLY_TO},
               {"Message-ID", ENV_MESSAGE_ID}};
    if (!field)
        return -1;
    for (guint i = 0; i < G_N_ELEMENTS(map); i++)
        if (g_ascii_strcasecmp(field, map[i].name) == 0)
            return map[i].idx;
    return -1;
}

static char *
header_text(GMimeHeader *h)
{
    const char *raw = g_mime_header_get_raw_value(h);
    if (!raw)
        return g_strdup("");
    g_autofree char *unfolded = g_mime_utils_header_unfold(raw);
    g_strstrip(unfolded);
    return g_mime_utils_header_decode_text(NULL, unfolded);
}

/* Any header named field (all of them with field NULL) contains str? */
static gboolean
header_has(Ctx *c, int ef, const char *field, const char *str)
{
    const char *ev;
    gboolean hit;
    if (str != c->nd) { /* the same needle for every message: measured once */
        c->nd = str;
        c->nd_len = strlen(str);
        c->nd_ascii = is_ascii(str);
    }
    if (ef >= 0 && c->nd_len && c->nd_ascii && env_fast(c, ef, str, c->nd_len, &hit))
        return hit;
    if (ef >= 0 && env_get(c, ef, &ev))
        return ev && has_text(ev, str);
    if (!load(c))
        return FALSE;
    GMimeHeaderList *hl = g_mime_object_get_header_list(GMIME_OBJECT(c->gm));
    int n = g_mime_header_list_get_count(hl);
    for (int i = 0; i < n; i++) {
        GMimeHeader *h = g_mime_header_list_get_header_at(hl, i);
        if (field && g_ascii_strcasecmp(g_mime_header_get_name(h), field) != 0)
            continue;
        g_autofree char *v = header_text(h);
        if (has_text(v, str))
            return TRUE;
    }
    return FALSE;
}

static void
collect_text(GMimeObject *parent, GMimeObject *part, gpointer ud)
{
    GString *out = ud;
    if (!GMIME_IS_TEXT_PART(part) || out->len > 64 * 1024 * 1024)
        return;
    g_autofree char *t = g_mime_text_part_get_text(GMIME_TEXT_PART(part));
    if (t) {
        g_string_append(out, t);
        g_string_append_c(out, '\n');
    }
}

static gboolean
body_has(Ctx *c, const char *str)
{
    if (!load(c))
        return FALSE;
    if (!c->body_done) {
        c->body_done = TRUE;
        GString *all = g_string_new(NULL);
        g_mime_message_foreach(c->gm, collect_text, all);
        c->body_text = fold(all->str);
        g_string_free(all, TRUE);
    }
    if (!*str)
        return TRUE;
    return strstr(c->body_text, str) != NULL;
}

/* The internal date's day in the server's zone (as FETCH INTERNALDATE shows it). */
static gint32
internal_day(const KrMailboxMsg *m)
{
    gint64 t = m->internal_date + (gint64)imap_local_tz(m->internal_date) * 60;
    return (gint32)(t >= 0 ? t / 86400 : (t - 86399) / 86400);
}

/* Days since 1970-01-01 of the Date: header (its own zone); or of the
 * internal date (the server's zone). */
static gint32
sent_day(Ctx *c)
{
    if (load(c)) {
        GDateTime *d = g_mime_message_get_date(c->gm);
        if (d) {
            int y, m, dd;
            g_date_time_get_ymd(d, &y, &m, &dd);
            return imap_days_from_civil(y, m, dd);
        }
    }
    return internal_day(c->m);
}

static gboolean
keyword_set(Ctx *c, const char *kw)
{
    if (g_ascii_strcasecmp(kw, "$Forwarded") == 0)
        return (c->m->flags & KR_FLAG_FORWARDED) != 0;
    const char *const *kws = imap_g.ops->keywords(c->s->mb);
    for (guint i = 0; kws && kws[i] && i < KR_STORE_MAX_KEYWORDS; i++)
        if (g_ascii_strcasecmp(kws[i], kw) == 0)
            return (c->m->keywords & (1u << i)) != 0;
    return FALSE;
}

static gboolean
match(Ctx *c, const ImapSearchKey *k)
{
    const KrMailboxMsg *m = c->m;
    switch (k->type) {
    case IMAP_SK_AND:
        for (const ImapSearchKey *x = k->child; x; x = x->next)
            if (!match(c, x))
                return FALSE;
        return TRUE;
    case IMAP_SK_OR:
        return match(c, k->child) || (k->child->next && match(c, k->child->next));
    case IMAP_SK_NOT:
        return !match(c, k->child);
    case IMAP_SK_ALL:
        return TRUE;
    case IMAP_SK_OLD:
        return !(m->flags & KR_FLAG_RECENT);
    case IMAP_SK_NEW:
        return (m->flags & (KR_FLAG_RECENT | KR_FLAG_SEEN)) == KR_FLAG_RECENT;
    case IMAP_SK_RECENT:
        return (m->flags & KR_FLAG_RECENT) != 0;
    case IMAP_SK_ANSWERED:
        return (m->flags & KR_FLAG_ANSWERED) != 0;
    case IMAP_SK_DELETED:
        return (m->flags & KR_FLAG_DELETED) != 0;
    case IMAP_SK_DRAFT:
        return (m->flags & KR_FLAG_DRAFT) != 0;
    case IMAP_SK_FLAGGED:
        return (m->flags & KR_FLAG_FLAGGED) != 0;
    case IMAP_SK_SEEN:
        return (m->flags & KR_FLAG_SEEN) != 0;
    case IMAP_SK_UNANSWERED:
        return !(m->flags & KR_FLAG_ANSWERED);
    case IMAP_SK_UNDELETED:
        return !(m->flags & KR_FLAG_DELETED);
    case IMAP_SK_UNDRAFT:
        return !(m->flags & KR_FLAG_DRAFT);
    case IMAP_SK_UNFLAGGED:
        return !(m->flags & KR_FLAG_FLAGGED);
    case IMAP_SK_UNSEEN:
        return !(m->flags & KR_FLAG_SEEN);
    case IMAP_SK_KEYWORD:
        return keyword_set(c, k->str);
    case IMAP_SK_UNKEYWORD:
        return !keyword_set(c, k->str);
    case IMAP_SK_BCC:
        return header_has(c, ENV_BCC, "Bcc", k->str);
    case IMAP_SK_CC:
        return header_has(c, ENV_CC, "Cc", k->str);
    case IMAP_SK_FROM:
        return header_has(c, ENV_FROM, "From", k->str);
    case IMAP_SK_TO:
        return header_has(c, ENV_TO, "To", k->str);
    case IMAP_SK_SUBJECT:
        return header_has(c, ENV_SUBJECT, "Subject", k->str);
    case IMAP_SK_HEADER:
        return header_has(c, env_field(k->field), k->field, k->str);
    case IMAP_SK_BODY:
        return body_has(c, k->str);
    case IMAP_SK_TEXT:
        return header_has(c, -1, NULL, k->str) || body_has(c, k->str);
    case IMAP_SK_BEFORE:
        return internal_day(m) < k->date;
    case IMAP_SK_ON:
        return internal_day(m) == k->date;
    case IMAP_SK_SINCE:
        return internal_day(m) >= k->date;
    case IMAP_SK_SENTBEFORE:
        return sent_day(c) < k->date;
    case IMAP_SK_SENTON:
        return sent_day(c) == k->date;
    case IMAP_SK_SENTSINCE:
        return sent_day(c) >= k->date;
    case IMAP_SK_LARGER:
        return (guint64)m->size > k->number;
    case IMAP_SK_SMALLER:
        return (guint64)m->size < k->number;
    case IMAP_SK_UID:
        return imap_seqset_contains(k->set, m->uid);
    case IMAP_SK_SEQSET:
        return imap_seqset_contains(k->set, c->seq);
    case IMAP_SK_MODSEQ:
        return m->modseq >= k->number;
    case IMAP_SK_OLDER:
        return c->now - m->internal_date >= (gint64)k->number;
    case IMAP_SK_YOUNGER:
        return c->now - m->internal_date <= (gint64)k->number;
    }
    return FALSE;
}

static void
search_work(ImapJob *j)
{
    ImapSession *s = j->s;
    ImapSearchArgs *a = &j->cmd->u.search;
    const KrMailboxOps *ops = imap_g.ops;
    gboolean uid = j->cmd->uid;
    guint32 n = ops->count(s->mb);
    gboolean modseq = FALSE;
    g_autoptr(GPtrArray) owned = g_ptr_array_new_with_free_func(g_free);
    prepare(a->key, n, n ? ops->msg(s->mb, n)->uid : 0, &modseq, owned);
    g_autoptr(GArray) hits = g_array_new(FALSE, FALSE, sizeof(guint32));
    guint64 maxmod = 0;
    g_autoptr(GString) scratch = g_string_sized_new(256);
    Ctx c = {.s = s, .now = g_get_real_time() / G_USEC_PER_SEC, .scratch = scratch};
    for (guint32 seq = 1; seq <= n; seq++) {
        c.m = ops->msg(s->mb, seq);
        c.seq = seq;
        if (match(&c, a->key)) {
            guint32 v = uid ? c.m->uid : seq;
            g_array_append_val(hits, v);
            maxmod = MAX(maxmod, c.m->modseq);
        }
        ctx_reset(&c);
    }
    GString *out = j->out;
    gboolean esearch = a->esearch || s->rev2;
    guint ret = a->esearch ? a->ret : IMAP_SEARCH_RET_ALL;
    if (ret == 0)
        ret = IMAP_SEARCH_RET_ALL;
    if (!esearch) {
        g_string_append(out, "* SEARCH");
        for (guint i = 0; i < hits->len; i++)
            g_string_append_printf(out, " %u", g_array_index(hits, guint32, i));
        if (modseq && hits->len)
            g_string_append_printf(out, " (MODSEQ %" G_GUINT64_FORMAT ")", maxmod);
        g_string_append(out, "\r\n");
    } else {
        g_string_append(out, "* ESEARCH (TAG ");
        imap_fmt_string(out, j->cmd->tag, strlen(j->cmd->tag), 0);
        g_string_append_c(out, ')');
        if (uid)
            g_string_append(out, " UID");
        if (hits->len) {
            guint32 *h = (guint32 *)hits->data;
            if (ret & IMAP_SEARCH_RET_MIN)
                g_string_append_printf(out, " MIN %u", h[0]);
            if (ret & IMAP_SEARCH_RET_MAX)
                g_string_append_printf(out, " MAX %u", h[hits->len - 1]);
        }
        if (ret & IMAP_SEARCH_RET_COUNT)
            g_string_append_printf(out, " COUNT %u", hits->len);
        if ((ret & IMAP_SEARCH_RET_ALL) && hits->len) {
            g_string_append(out, " ALL ");
            imap_seqset_compress((const guint32 *)hits->data, hits->len, out);
        }
        if (modseq && hits->len)
            g_string_append_printf(out, " MODSEQ %" G_GUINT64_FORMAT, maxmod);
        g_string_append(out, "\r\n");
    }
    imap_job_tagged(j, "OK", NULL, "SEARCH completed.");
}

static gboolean
uses_modseq(const ImapSearchKey *k)
{
    if (k->type == IMAP_SK_MODSEQ)
        return TRUE;
    for (const ImapSearchKey *c = k->child; c; c = c->next)
        if (uses_modseq(c))
            return TRUE;
    return FALSE;
}

void
imap_cmd_search(ImapSession *s)
{
    ImapSearchArgs *a = &s->cmd->u.search;
    if (a->charset && g_ascii_strcasecmp(a->charset, "UTF-8") != 0 &&
        g_ascii_strcasecmp(a->charset, "US-ASCII") != 0) {
        imap_tagged_done(s, "NO", "BADCHARSET (UTF-8 US-ASCII)", "Unsupported charset.");
        return;
    }
    if (a->ret & IMAP_SEARCH_RET_SAVE) {
        imap_tagged_done(s, "BAD", NULL, "SEARCHRES is not supported.");
        return;
    }
    if (uses_modseq(a->key))
        s->condstore = TRUE;
    imap_job_start(
        imap_job_new(s, search_work, s->cmd->uid ? IMAP_SYNC_IF_CHANGED : IMAP_SYNC_NONE));
}
