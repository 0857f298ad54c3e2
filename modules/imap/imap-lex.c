/* SPDX-License-Identifier: MIT */
/*
 * imap-lex.c - the IMAP tokenizer and the arena that parsed commands
 * live in. Internal to the parser; see imap-lex.h.
 *
 *   imap_tag_valid, imap_arena_*, imap_lex_*
 *
 * Input is one framed command (imap-reader.c): bytes as sent, where a
 * literal is "{n}" or "{n+}" (or "~{n}") followed by CRLF and n octets,
 * except streamed literals, whose octets are absent (ImapRawCommand).
 * The lexer never reads past len and never trusts the announced sizes.
 */
#include "imap-lex.h"

#include <string.h>

gboolean
imap_tag_valid(const char *s, gsize len)
{
    if (len == 0 || len > IMAP_TAG_MAX)
        return FALSE;
    for (gsize i = 0; i < len; i++)
        if (!imap_is_tag_char((guchar)s[i]))
            return FALSE;
    return TRUE;
}

/* ---- arena ---- */

#define ARENA_CHUNK 4096

typedef struct {
    gpointer p;
    GDestroyNotify destroy;
} Owned;

struct ImapArena {
    GPtrArray *chunks;
    guchar *cur;
    gsize left;
    GArray *owned;
};

ImapArena *
imap_arena_new(void)
{
    ImapArena *a = g_new0(ImapArena, 1);
    a->chunks = g_ptr_array_new_with_free_func(g_free);
    a->owned = g_array_new(FALSE, FALSE, sizeof(Owned));
    return a;
}

void
imap_arena_free(ImapArena *a)
{
    if (!a)
        return;
    for (guint i = 0; i < a->owned->len; i++) {
        Owned *o = &g_array_index(a->owned, Owned, i);
        o->destroy(o->p);
    }
    g_array_free(a->owned, TRUE);
    g_ptr_array_free(a->chunks, TRUE);
    g_free(a);
}

gpointer
imap_arena_alloc(ImapArena *a, gsize size)
{
    size = (size + 15) & ~(gsize)15;
    if (size == 0)
        size = 16;
    if (size > ARENA_CHUNK / 4) {
        gpointer p = g_malloc0(size);
        g_ptr_array_add(a->chunks, p);
        return p;
    }
    if (size > a->left) {
        a->cur = g_malloc0(ARENA_CHUNK);
        a->left = ARENA_CHUNK;
        g_ptr_array_add(a->chunks, a->cur);
    }
    gpointer p = a->cur;
    a->cur += size;
    a->left -= size;
    return p;
}

char *
imap_arena_strndup(ImapArena *a, const char *s, gsize len)
{
    char *d = imap_arena_alloc(a, len + 1);
    if (len)
        memcpy(d, s, len);
    d[len] = '\0';
    return d;
}

void
imap_arena_own(ImapArena *a, gpointer p, GDestroyNotify destroy)
{
    Owned o = {p, destroy};
    g_array_append_val(a->owned, o);
}

/* ---- lexer ---- */

gboolean
imap_lex_fail(ImapLex *lx, const char *code, const char *text)
{
    if (!lx->failed) {
        lx->failed = TRUE;
        lx->err->kind = IMAP_ERROR_BAD;
        lx->err->code = code;
        lx->err->text = text;
    }
    return FALSE;
}

int
imap_lex_peek(const ImapLex *lx)
{
    return lx->pos < lx->len ? lx->buf[lx->pos] : -1;
}

gboolean
imap_lex_at_end(const ImapLex *lx)
{
    return lx->pos >= lx->len;
}

gboolean
imap_lex_char(ImapLex *lx, char c)
{
    if (imap_lex_peek(lx) != (guchar)c)
        return imap_lex_fail(lx, NULL,
                             c == ' '   ? "Missing argument"
                             : c == ')' ? "Missing ')'"
                             : c == '(' ? "Missing '('"
                                        : "Invalid syntax");
    lx->pos++;
    return TRUE;
}

gboolean
imap_lex_sp(ImapLex *lx)
{
    return imap_lex_char(lx, ' ');
}

gboolean
imap_lex_try_sp(ImapLex *lx)
{
    if (imap_lex_peek(lx) != ' ')
        return FALSE;
    lx->pos++;
    return TRUE;
}

gboolean
imap_lex_depth_push(ImapLex *lx)
{
    if (++lx->depth > lx->opts->max_depth)
        return imap_lex_fail(lx, "LIMIT", "Too deeply nested");
    return TRUE;
}

void
imap_lex_depth_pop(ImapLex *lx)
{
    lx->depth--;
}

gboolean
imap_lex_open(ImapLex *lx)
{
    return imap_lex_char(lx, '(') && imap_lex_depth_push(lx);
}

gboolean
imap_lex_close(ImapLex *lx)
{
    if (!imap_lex_char(lx, ')'))
        return FALSE;
    imap_lex_depth_pop(lx);
    return TRUE;
}

gboolean
imap_lex_atom(ImapLex *lx, const char **s, gsize *len)
{
    gsize start = lx->pos;
    while (lx->pos < lx->len && imap_is_atom_char(lx->buf[lx->pos]))
        lx->pos++;
    if (lx->pos == start)
        return imap_lex_fail(lx, NULL, "Missing argument");
    *s = (const char *)lx->buf + start;
    *len = lx->pos - start;
    return TRUE;
}

gboolean
imap_lex_keyword(ImapLex *lx, char *out, gsize outsz)
{
    const char *s;
    gsize len;
    if (!imap_lex_atom(lx, &s, &len))
        return FALSE;
    if (len >= outsz) {
        out[0] = '\0'; /* matches no keyword */
        return TRUE;
    }
    for (gsize i = 0; i < len; i++)
        out[i] = g_ascii_toupper(s[i]);
    out[len] = '\0';
    return TRUE;
}

gboolean
imap_lex_word_set(ImapLex *lx, const char *const *names, guint n, gboolean allow_empty,
                  const char *unknown_text, guint *mask_r)
{
    if (!imap_lex_open(lx))
        return FALSE;
    if (allow_empty && imap_lex_peek(lx) == ')')
        return imap_lex_close(lx);
    do {
        char kw[32];
        if (!imap_lex_keyword(lx, kw, sizeof kw))
            return FALSE;
        guint i = 0;
        while (i < n && strcmp(kw, names[i]) != 0)
            i++;
        if (i == n)
            return imap_lex_fail(lx, NULL, unknown_text);
        *mask_r |= 1u << i;
    } while (imap_lex_try_sp(lx));
    return imap_lex_close(lx);
}

gboolean
imap_lex_is(const char *word, gsize len, const char *kw)
{
    return strlen(kw) == len && g_ascii_strncasecmp(word, kw, len) == 0;
}

static gboolean
is_streamed(const ImapLex *lx, gsize offset, guint *index)
{
    if (!lx->raw)
        return FALSE;
    for (guint i = 0; i < lx->raw->n_streamed; i++)
        if (lx->raw->streamed[i].offset == offset) {
            *index = lx->raw->streamed[i].index;
            return TRUE;
        }
    return FALSE;
}

gboolean
imap_lex_literal(ImapLex *lx, ImapLexLiteral *lit)
{
    memset(lit, 0, sizeof(*lit));
    if (imap_lex_peek(lx) == '~') {
        lit->binary = TRUE;
        lx->pos++;
    }
    if (!imap_lex_char(lx, '{'))
        return FALSE;
    guint64 v = 0;
    gsize start = lx->pos;
    while (lx->pos < lx->len && g_ascii_isdigit(lx->buf[lx->pos])) {
        guint d = lx->buf[lx->pos++] - '0';
        if (v > (G_MAXUINT64 - d) / 10)
            return imap_lex_fail(lx, NULL, "Invalid literal size");
        v = v * 10 + d;
    }
    if (lx->pos == start)
        return imap_lex_fail(lx, NULL, "Invalid literal size");
    if (imap_lex_peek(lx) == '+')
        lx->pos++;
    if (!imap_lex_char(lx, '}'))
        return FALSE;
    if (lx->len - lx->pos < 2 || lx->buf[lx->pos] != '\r' || lx->buf[lx->pos + 1] != '\n')
        return imap_lex_fail(lx, NULL, "Literal must end the line");
    lx->pos += 2;
    lit->size = v;
    lit->index = lx->n_literals++;
    if (is_streamed(lx, lx->pos, &lit->index)) {
        lit->streamed = TRUE;
        return TRUE;
    }
    if (v > lx->len - lx->pos)
        return imap_lex_fail(lx, NULL, "Literal data missing");
    lit->data = lx->buf + lx->pos;
    lx->pos += v;
    return TRUE;
}

/* A string literal: no literal8, no streaming, no NUL. */
static gboolean
string_literal(ImapLex *lx, char **out)
{
    ImapLexLiteral lit;
    if (!imap_lex_literal(lx, &lit))
        return FALSE;
    if (lit.binary)
        return imap_lex_fail(lx, NULL, "Binary literal not allowed here");
    if (lit.streamed)
        return imap_lex_fail(lx, "TOOBIG", "Literal too large here");
    if (memchr(lit.data, '\0', lit.size))
        return imap_lex_fail(lx, NULL, "NUL in string");
    *out = imap_arena_strndup(lx->arena, (const char *)lit.data, lit.size);
    return TRUE;
}

static gboolean
quoted(ImapLex *lx, char **out)
{
    lx->pos++; /* '"' */
    gsize start = lx->pos, n = 0;
    gboolean simple = TRUE;
    for (;;) {
        if (lx->pos >= lx->len)
            return imap_lex_fail(lx, NULL, "Unterminated quoted string");
        guchar c = lx->buf[lx->pos];
        if (c == '"')
            break;
        if (c == '\r' || c == '\n' || c == '\0')
            return imap_lex_fail(lx, NULL, "Invalid character in quoted string");
        if (c == '\\') {
            simple = FALSE;
            lx->pos++;
            if (lx->pos >= lx->len || (lx->buf[lx->pos] != '"' && lx->buf[lx->pos] != '\\'))
                return imap_lex_fail(lx, NULL, "Invalid escape in quoted string");
        }
        lx->pos++;
        n++;
    }
    gsize end = lx->pos;
    lx->pos++; /* closing '"' */
    if (simple) {
        *out = imap_arena_strndup(lx->arena, (const char *)lx->buf + start, end - start);
        return TRUE;
    }
    char *d = imap_arena_alloc(lx->arena, n + 1);
    gsize w = 0;
    for (gsize i = start; i < end; i++) {
        if (lx->buf[i] == '\\')
            i++;
        d[w++] = (char)lx->buf[i];
    }
    d[w] = '\0';
    *out = d;
    return TRUE;
}

/* At "{" or "~{"? */
static gboolean
at_literal(const ImapLex *lx)
{
    int c = imap_lex_peek(lx);
    return c == '{' || (c == '~' && lx->pos + 1 < lx->len && lx->buf[lx->pos + 1] == '{');
}

gboolean
imap_lex_string(ImapLex *lx, char **out)
{
    int c = imap_lex_peek(lx);
    if (c == '"')
        return quoted(lx, out);
    if (at_literal(lx))
        return string_literal(lx, out);
    return imap_lex_fail(lx, NULL, "Expected a string");
}

gboolean
imap_lex_astring(ImapLex *lx, char **out)
{
    if (imap_lex_peek(lx) == '"' || at_literal(lx))
        return imap_lex_string(lx, out);
    gsize start = lx->pos;
    while (lx->pos < lx->len && imap_is_astring_char(lx->buf[lx->pos]))
        lx->pos++;
    if (lx->pos == start)
        return imap_lex_fail(lx, NULL, "Missing argument");
    *out = imap_arena_strndup(lx->arena, (const char *)lx->buf + start, lx->pos - start);
    return TRUE;
}

gboolean
imap_lex_nstring(ImapLex *lx, char **out)
{
    int c = imap_lex_peek(lx);
    if (c == 'N' || c == 'n') {
        const char *s;
        gsize len;
        if (!imap_lex_atom(lx, &s, &len))
            return FALSE;
        if (!imap_lex_is(s, len, "NIL"))
            return imap_lex_fail(lx, NULL, "Expected a string or NIL");
        *out = NULL;
        return TRUE;
    }
    return imap_lex_string(lx, out);
}

gboolean
imap_lex_mailbox(ImapLex *lx, char **out)
{
    return imap_lex_astring(lx, out);
}

gboolean
imap_lex_list_mailbox(ImapLex *lx, char **out)
{
    if (imap_lex_peek(lx) == '"' || at_literal(lx))
        return imap_lex_string(lx, out);
    gsize start = lx->pos;
    while (lx->pos < lx->len && imap_is_list_char(lx->buf[lx->pos]))
        lx->pos++;
    if (lx->pos == start)
        return imap_lex_fail(lx, NULL, "Missing mailbox pattern");
    *out = imap_arena_strndup(lx->arena, (const char *)lx->buf + start, lx->pos - start);
    return TRUE;
}

/* Digits at pos, with an upper bound. */
static gboolean
number(ImapLex *lx, guint64 max, guint64 *v)
{
    gsize start = lx->pos;
    guint64 r = 0;
    while (lx->pos < lx->len && g_ascii_isdigit(lx->buf[lx->pos])) {
        guint d = lx->buf[lx->pos++] - '0';
        if (r > (max - d) / 10)
            return imap_lex_fail(lx, NULL, "Number too large");
        r = r * 10 + d;
    }
    if (lx->pos == start)
        return imap_lex_fail(lx, NULL, "Expected a number");
    if (lx->pos < lx->len && imap_is_atom_char(lx->buf[lx->pos]))
        return imap_lex_fail(lx, NULL, "Expected a number");
    *v = r;
    return TRUE;
}

gboolean
imap_lex_number(ImapLex *lx, guint32 *v)
{
    guint64 r;
    if (!number(lx, G_MAXUINT32, &r))
        return FALSE;
    *v = (guint32)r;
    return TRUE;
}

gboolean
imap_lex_nz_number(ImapLex *lx, guint32 *v)
{
    if (!imap_lex_number(lx, v))
        return FALSE;
    if (*v == 0)
        return imap_lex_fail(lx, NULL, "Number must not be zero");
    return TRUE;
}

gboolean
imap_lex_number64(ImapLex *lx, guint64 *v)
{
    return number(lx, G_MAXINT64, v);
}

gboolean
imap_lex_modseq(ImapLex *lx, gboolean zero_ok, guint64 *v)
{
    if (!number(lx, G_MAXINT64, v))
        return FALSE;
    if (!zero_ok && *v == 0)
        return imap_lex_fail(lx, NULL, "Invalid mod-sequence");
    return TRUE;
}

gboolean
imap_lex_seqset(ImapLex *lx, ImapSeqSet **set)
{
    gsize start = lx->pos;
    while (lx->pos < lx->len) {
        guchar c = lx->buf[lx->pos];
        if (!g_ascii_isdigit(c) && c != ':' && c != ',' && c != '*' && c != '$')
            break;
        lx->pos++;
    }
    if (lx->pos < lx->len && imap_is_atom_char(lx->buf[lx->pos]))
        return imap_lex_fail(lx, NULL, "Invalid sequence set");
    ImapSeqSet *s =
        imap_seqset_parse((const char *)lx->buf + start, lx->pos - start, lx->opts->searchres);
    if (!s)
        return imap_lex_fail(lx, NULL, "Invalid sequence set");
    imap_arena_own(lx->arena, s, (GDestroyNotify)imap_seqset_free);
    *set = s;
    return TRUE;
}

static const char *const system_flags[] = {"\\Answered", "\\Flagged", "\\Deleted",
                                           "\\Seen",     "\\Draft",   "\\Recent"};

gboolean
imap_lex_flag(ImapLex *lx, gboolean allow_recent, char **out)
{
    gboolean sys = imap_lex_peek(lx) == '\\';
    gsize start = lx->pos;
    if (sys)
        lx->pos++;
    const char *s;
    gsize len;
    if (!imap_lex_atom(lx, &s, &len))
        return imap_lex_fail(lx, NULL, "Invalid flag");
    len = lx->pos - start;
    s = (const char *)lx->buf + start;
    if (sys) {
        for (guint i = 0; i < G_N_ELEMENTS(system_flags); i++)
            if (imap_lex_is(s, len, system_flags[i])) {
                if (i == 5 && !allow_recent)
                    return imap_lex_fail(lx, NULL, "\\Recent cannot be set");
                *out = (char *)system_flags[i];
                return TRUE;
            }
    }
    *out = imap_arena_strndup(lx->arena, s, len);
    return TRUE;
}

gboolean
imap_lex_strv(ImapLex *lx, GPtrArray *items, char ***out)
{
    char **v = imap_arena_new0(lx->arena, char *, items->len + 1);
    for (guint i = 0; i < items->len; i++)
        v[i] = items->pdata[i];
    *out = v;
    return TRUE;
}

gboolean
imap_lex_flag_list(ImapLex *lx, gboolean allow_recent, char ***out)
{
    if (!imap_lex_open(lx))
        return FALSE;
    g_autoptr(GPtrArray) flags = g_ptr_array_new();
    if (imap_lex_peek(lx) != ')') {
        do {
            char *f;
            if (!imap_lex_flag(lx, allow_recent, &f))
                return FALSE;
            g_ptr_array_add(flags, f);
        } while (imap_lex_try_sp(lx));
    }
    if (!imap_lex_close(lx))
        return FALSE;
    return imap_lex_strv(lx, flags, out);
}
