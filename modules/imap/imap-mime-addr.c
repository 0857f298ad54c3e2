/* SPDX-License-Identifier: MIT */
/*
 * imap-mime-addr.c - RFC 5322 address lists (with the obsolete forms
 * and common damage) as IMAP ENVELOPE address structures (RFC 3501
 * 7.4.2): display name, source route, local part, domain; groups as a
 * start marker (name in the mailbox slot, NIL host) and an end marker
 * (all NIL).
 *
 *   mime_address_list()   unfolded header value -> ImapAddress array
 *
 * Why not GMime's internet_address_list_parse(): it decodes RFC 2047
 * display names to UTF-8 (IMAP wants them as sent), converts 8-bit
 * names through fallback charsets and drops source routes. The rules
 * here follow Dovecot's: quoted strings are unquoted, words of a phrase
 * keep single blanks where the header had blanks, a comment is the name
 * of an address without a phrase, a missing local part or domain is
 * MISSING_MAILBOX / MISSING_DOMAIN, garbage up to the next comma is
 * skipped. t/test-imap-mime.c checks local part and domain against GMime.
 */
#include "imap-mime-int.h"

#include <string.h>

#define MAX_ADDRESSES 10000

typedef enum {
    T_END,
    T_ATOM,    /* text: the atom */
    T_QUOTED,  /* text: the content, unescaped */
    T_DOMLIT,  /* text: "[...]" as written */
    T_COMMENT, /* text: the content, unescaped, outer parentheses off */
    T_SPECIAL, /* c: one of < > @ , ; : . */
} TokType;

typedef struct {
    TokType type;
    char c;
    gboolean ws; /* blanks or a comment before it */
    const char *text;
    gsize len;
} Tok;

typedef struct {
    MimeArena *a;
    Tok *t;
    guint n, i;
    GArray *out; /* ImapAddress */
    GString *buf;
} AddrParser;

static gboolean
is_special(guchar c)
{
    return c && strchr("()<>[]:;@\\,.\"", c) != NULL;
}

static void
tokenize(AddrParser *A, const char *s)
{
    GArray *toks = g_array_new(FALSE, FALSE, sizeof(Tok));
    GString *tmp = g_string_new(NULL);
    const char *p = s;
    gboolean ws = FALSE;
    for (;;) {
        guchar c = (guchar)*p;
        if (c == '\0')
            break;
        if (c <= ' ' || c == 0x7f) {
            ws = TRUE;
            p++;
            continue;
        }
        Tok t = {.ws = ws};
        ws = FALSE;
        if (c == '"' || c == '(') {
            g_string_truncate(tmp, 0);
            int depth = 0;
            if (c == '"')
                p++;
            while (*p) {
                if (*p == '\\' && p[1]) {
                    g_string_append_c(tmp, p[1]);
                    p += 2;
                    continue;
                }
                if (c == '"' && *p == '"') {
                    p++;
                    break;
                }
                if (c == '(') {
                    if (*p == '(' && depth++ == 0) {
                        p++;
                        continue;
                    }
                    if (*p == ')' && --depth == 0) {
                        p++;
                        break;
                    }
                }
                g_string_append_c(tmp, *p++);
            }
            t.type = c == '"' ? T_QUOTED : T_COMMENT;
            t.text = mime_arena_strndup(A->a, tmp->str, tmp->len);
            t.len = tmp->len;
            if (t.type == T_COMMENT)
                ws = TRUE;
        } else if (c == '[') {
            const char *e = strchr(p, ']');
            gsize len = e ? (gsize)(e - p) + 1 : strlen(p);
            t.type = T_DOMLIT;
            t.text = p;
            t.len = len;
            p += len;
        } else if (is_special(c) && c != '\\' && c != ']' && c != ')') {
            t.type = T_SPECIAL;
            t.c = (char)c;
            t.text = p;
            t.len = 1;
            p++;
        } else {
            const char *b = p;
            while (*p && (guchar)*p > ' ' && (guchar)*p != 0x7f &&
                   (!is_special((guchar)*p) || *p == '\\' || *p == ']' || *p == ')'))
                p++;
            t.type = T_ATOM;
            t.text = b;
            t.len = (gsize)(p - b);
        }
        g_array_append_val(toks, t);
    }
    Tok end = {.type = T_END};
    g_array_append_val(toks, end);
    g_string_free(tmp, TRUE);
    A->n = toks->len - 1;
    A->t = (Tok *)g_array_free(toks, FALSE);
    A->i = 0;
}

static const Tok *
peek(AddrParser *A)
{
    while (A->t[A->i].type == T_COMMENT)
        A->i++;
    return &A->t[A->i];
}

static gboolean
is_word(const Tok *t)
{
    return t->type == T_ATOM || t->type == T_QUOTED || (t->type == T_SPECIAL && t->c == '.');
}

/* Words (atoms, quoted strings, dots) from token i to j (exclusive),
 * comments skipped; with blanks where the header had them (phrase) or
 * none (local part, domain). NULL when empty. */
static const char *
join(AddrParser *A, guint i, guint j, gboolean spaces)
{
    g_string_truncate(A->buf, 0);
    gboolean first = TRUE;
    for (guint k = i; k < j; k++) {
        const Tok *t = &A->t[k];
        if (t->type == T_COMMENT)
            continue;
        if (spaces && !first && t->ws)
            g_string_append_c(A->buf, ' ');
        g_string_append_len(A->buf, t->text, (gssize)t->len);
        first = FALSE;
    }
    if (first)
        return NULL;
    return mime_arena_strndup(A->a, A->buf->str, A->buf->len);
}

/* The first comment among tokens i..j (exclusive), as a display name. */
static const char *
comment_in(AddrParser *A, guint i, guint j)
{
    for (guint k = i; k < j; k++)
        if (A->t[k].type == T_COMMENT && A->t[k].len)
            return A->t[k].text;
    return NULL;
}

static void
emit(AddrParser *A, const char *name, const char *adl, const char *mailbox, const char *host)
{
    if (A->out->len >= MAX_ADDRESSES)
        return;
    ImapAddress ad = {name, adl, mailbox, host};
    g_array_append_val(A->out, ad);
}

static void
emit_mailbox(AddrParser *A, const char *name, const char *adl, const char *local,
             const char *domain)
{
    emit(A, name && *name ? name : NULL, adl, local && *local ? local : "MISSING_MAILBOX",
         domain && *domain ? domain : "MISSING_DOMAIN");
}

static gboolean
at_special(AddrParser *A, char c)
{
    const Tok *t = peek(A);
    return t->type == T_SPECIAL && t->c == c;
}

/* Skip what is left of an entry: up to "," (or ";" in a group). */
static void
skip_rest(AddrParser *A, gboolean in_group)
{
    for (;;) {
        const Tok *t = peek(A);
        if (t->type == T_END)
            return;
        if (t->type == T_SPECIAL && (t->c == ',' || (in_group && t->c == ';')))
            return;
        A->i++;
    }
}

/* local "@" domain from the current token; stops before anything else. */
static void
addr_spec(AddrParser *A, const char **local_r, const char **domain_r)
{
    guint s = A->i;
    while (is_word(peek(A)))
        A->i++;
    *local_r = join(A, s, A->i, FALSE);
    *domain_r = NULL;
    if (!at_special(A, '@'))
        return;
    A->i++;
    s = A->i;
    for (;;) {
        const Tok *t = peek(A);
        if (t->type == T_ATOM || t->type == T_DOMLIT || (t->type == T_SPECIAL && t->c == '.'))
            A->i++;
        else
            break;
    }
    *domain_r = join(A, s, A->i, FALSE);
}

/* "<" [route ":"] addr-spec ">" with the "<" already taken. */
static void
angle_addr(AddrParser *A, const char *name, guint entry_start, gboolean in_group)
{
    const char *adl = NULL;
    if (at_special(A, '@')) {
        guint s = A->i;
        for (;;) {
            const Tok *t = peek(A);
            if (t->type == T_END || (t->type == T_SPECIAL && (t->c == ':' || t->c == '>')))
                break;
            A->i++;
        }
        if (at_special(A, ':')) {
            adl = join(A, s, A->i, FALSE);
            A->i++;
        } else {
            A->i = s; /* not a route after all */
        }
    }
    const char *local, *domain;
    addr_spec(A, &local, &domain);
    while (!at_special(A, '>') && peek(A)->type != T_END && !at_special(A, ',') &&
           !(in_group && at_special(A, ';')))
        A->i++;
    if (at_special(A, '>'))
        A->i++;
    guint end = A->i;
    skip_rest(A, in_group);
    if (!name)
        name = comment_in(A, entry_start, MAX(end, A->i));
    emit_mailbox(A, name, adl, local, domain);
}

static void entry(AddrParser *A, gboolean in_group);

static void
group(AddrParser *A, const char *name)
{
    emit(A, NULL, NULL, name ? name : "", NULL);
    for (;;) {
        const Tok *t = peek(A);
        if (t->type == T_END)
            break;
        if (t->type == T_SPECIAL && t->c == ',') {
            A->i++;
            continue;
        }
        if (t->type == T_SPECIAL && t->c == ';') {
            A->i++;
            break;
        }
        entry(A, TRUE);
    }
    emit(A, NULL, NULL, NULL, NULL);
}

/* One mailbox, or (outside a group) a group. Takes at least one token. */
static void
entry(AddrParser *A, gboolean in_group)
{
    guint start = A->i;
    guint s = A->i;
    while (is_word(peek(A)))
        A->i++;
    guint phrase_end = A->i;
    const Tok *t = peek(A);
    if (t->type == T_SPECIAL && t->c == ':' && !in_group) {
        const char *name = join(A, s, phrase_end, TRUE);
        A->i++;
        group(A, name);
        return;
    }
    if (t->type == T_SPECIAL && t->c == '<') {
        const char *name = join(A, s, phrase_end, TRUE);
        A->i++;
        angle_addr(A, name, start, in_group);
        return;
    }
    if (phrase_end == s && !(t->type == T_SPECIAL && t->c == '@')) {
        /* nothing an address can start with: skip it */
        if (t->type != T_END)
            A->i++;
        return;
    }
    A->i = s;
    const char *local, *domain;
    addr_spec(A, &local, &domain);
    if (A->i == s)
        A->i++; /* progress, whatever this was */
    guint end = A->i;
    skip_rest(A, in_group);
    emit_mailbox(A, comment_in(A, start, MAX(end, A->i)), NULL, local, domain);
}

guint
mime_address_list(MimeArena *a, const char *s, ImapAddress **out_r)
{
    AddrParser A = {.a = a};
    A.out = g_array_new(FALSE, FALSE, sizeof(ImapAddress));
    A.buf = g_string_new(NULL);
    tokenize(&A, s);
    for (;;) {
        const Tok *t = peek(&A);
        if (t->type == T_END)
            break;
        if (t->type == T_SPECIAL && (t->c == ',' || t->c == ';')) {
            A.i++;
            continue;
        }
        entry(&A, FALSE);
    }
    guint n = A.out->len;
    ImapAddress *list = NULL;
    if (n) {
        list = mime_arena_alloc(a, n * sizeof *list);
        memcpy(list, A.out->data, n * sizeof *list);
    }
    g_array_free(A.out, TRUE);
    g_string_free(A.buf, TRUE);
    g_free(A.t);
    *out_r = list;
    return n;
}
