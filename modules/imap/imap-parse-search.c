/* SPDX-License-Identifier: MIT */
/*
 * imap-parse-search.c - SEARCH arguments: ESEARCH RETURN options, CHARSET
 * and the search-key tree (RFC 9051 6.4.4, RFC 4731, 5182, 5032, 7162).
 *
 *   imap_parse_search_args()   [RETURN (...)] [CHARSET x] key *(SP key)
 *
 * The top-level keys become the children of one IMAP_SK_AND node;
 * "(k1 k2)" is another AND, "OR a b" an OR with two children, "NOT k"
 * a NOT with one. Parentheses, NOT and OR each count one level against
 * ImapParseOpts.max_depth (a chain "NOT NOT NOT ..." or "OR OR OR ..."
 * nests as deeply as parentheses do). Charsets other than UTF-8 and
 * US-ASCII, and strings that are not UTF-8, give
 * "NO [BADCHARSET (US-ASCII UTF-8)]".
 */
#include "imap-lex.h"
#include "imap-date.h"

#include <string.h>

#define BADCHARSET "BADCHARSET (US-ASCII UTF-8)"

typedef enum {
    ARG_NONE,
    ARG_STRING,
    ARG_KEYWORD,
    ARG_DATE,
    ARG_NUMBER,
    ARG_INTERVAL,
    ARG_SEQSET,
    ARG_HEADER,
    ARG_NOT,
    ARG_OR,
    ARG_MODSEQ,
} ArgKind;

static const struct {
    const char *name;
    ImapSearchKeyType type;
    ArgKind arg;
} keys[] = {
    {"ALL", IMAP_SK_ALL, ARG_NONE},
    {"ANSWERED", IMAP_SK_ANSWERED, ARG_NONE},
    {"BCC", IMAP_SK_BCC, ARG_STRING},
    {"BEFORE", IMAP_SK_BEFORE, ARG_DATE},
    {"BODY", IMAP_SK_BODY, ARG_STRING},
    {"CC", IMAP_SK_CC, ARG_STRING},
    {"DELETED", IMAP_SK_DELETED, ARG_NONE},
    {"DRAFT", IMAP_SK_DRAFT, ARG_NONE},
    {"FLAGGED", IMAP_SK_FLAGGED, ARG_NONE},
    {"FROM", IMAP_SK_FROM, ARG_STRING},
    {"HEADER", IMAP_SK_HEADER, ARG_HEADER},
    {"KEYWORD", IMAP_SK_KEYWORD, ARG_KEYWORD},
    {"LARGER", IMAP_SK_LARGER, ARG_NUMBER},
    {"MODSEQ", IMAP_SK_MODSEQ, ARG_MODSEQ},
    {"NEW", IMAP_SK_NEW, ARG_NONE},
    {"NOT", IMAP_SK_NOT, ARG_NOT},
    {"OLD", IMAP_SK_OLD, ARG_NONE},
    {"OLDER", IMAP_SK_OLDER, ARG_INTERVAL},
    {"ON", IMAP_SK_ON, ARG_DATE},
    {"OR", IMAP_SK_OR, ARG_OR},
    {"RECENT", IMAP_SK_RECENT, ARG_NONE},
    {"SEEN", IMAP_SK_SEEN, ARG_NONE},
    {"SENTBEFORE", IMAP_SK_SENTBEFORE, ARG_DATE},
    {"SENTON", IMAP_SK_SENTON, ARG_DATE},
    {"SENTSINCE", IMAP_SK_SENTSINCE, ARG_DATE},
    {"SINCE", IMAP_SK_SINCE, ARG_DATE},
    {"SMALLER", IMAP_SK_SMALLER, ARG_NUMBER},
    {"SUBJECT", IMAP_SK_SUBJECT, ARG_STRING},
    {"TEXT", IMAP_SK_TEXT, ARG_STRING},
    {"TO", IMAP_SK_TO, ARG_STRING},
    {"UID", IMAP_SK_UID, ARG_SEQSET},
    {"UNANSWERED", IMAP_SK_UNANSWERED, ARG_NONE},
    {"UNDELETED", IMAP_SK_UNDELETED, ARG_NONE},
    {"UNDRAFT", IMAP_SK_UNDRAFT, ARG_NONE},
    {"UNFLAGGED", IMAP_SK_UNFLAGGED, ARG_NONE},
    {"UNKEYWORD", IMAP_SK_UNKEYWORD, ARG_KEYWORD},
    {"UNSEEN", IMAP_SK_UNSEEN, ARG_NONE},
    {"YOUNGER", IMAP_SK_YOUNGER, ARG_INTERVAL},
};

static gboolean
fail_charset(ImapLex *lx)
{
    imap_lex_fail(lx, BADCHARSET, "Unsupported charset or invalid text");
    lx->err->kind = IMAP_ERROR_NO;
    return FALSE;
}

static gboolean
search_string(ImapLex *lx, char **out)
{
    if (!imap_lex_astring(lx, out))
        return FALSE;
    if (!g_utf8_validate(*out, -1, NULL))
        return fail_charset(lx);
    return TRUE;
}

static gboolean
field_name_ok(const char *s)
{
    if (!*s)
        return FALSE;
    for (; *s; s++)
        if ((guchar)*s < 33 || (guchar)*s > 126 || *s == ':')
            return FALSE;
    return TRUE;
}

static gboolean
search_date(ImapLex *lx, gint32 *days)
{
    const char *s;
    gsize len;
    char *q;
    if (imap_lex_peek(lx) == '"') {
        if (!imap_lex_string(lx, &q))
            return FALSE;
        s = q;
        len = strlen(q);
    } else if (!imap_lex_atom(lx, &s, &len)) {
        return FALSE;
    }
    if (!imap_date_parse(s, len, days))
        return imap_lex_fail(lx, NULL, "Invalid date");
    return TRUE;
}

static ImapSearchKey *search_key(ImapLex *lx);

/* key *(SP key) into the children of parent */
static gboolean
key_list(ImapLex *lx, ImapSearchKey *parent, gboolean until_close)
{
    ImapSearchKey **tail = &parent->child;
    for (;;) {
        ImapSearchKey *k = search_key(lx);
        if (!k)
            return FALSE;
        *tail = k;
        tail = &k->next;
        if (until_close && imap_lex_peek(lx) == ')')
            return TRUE;
        if (!until_close && imap_lex_at_end(lx))
            return TRUE;
        if (!imap_lex_sp(lx))
            return FALSE;
    }
}

static gboolean
key_modseq(ImapLex *lx, ImapSearchKey *k)
{
    if (imap_lex_peek(lx) == '"') {
        char kw[8];
        if (!imap_lex_string(lx, &k->field) || !imap_lex_sp(lx) ||
            !imap_lex_keyword(lx, kw, sizeof kw) || !imap_lex_sp(lx))
            return FALSE;
        if (g_ascii_strncasecmp(k->field, "/flags/", 7) != 0 || !k->field[7])
            return imap_lex_fail(lx, NULL, "Invalid MODSEQ entry name");
        if (strcmp(kw, "PRIV") && strcmp(kw, "SHARED") && strcmp(kw, "ALL"))
            return imap_lex_fail(lx, NULL, "Invalid MODSEQ entry type");
        k->str = imap_arena_strndup(lx->arena, kw, strlen(kw));
    }
    return imap_lex_modseq(lx, TRUE, &k->number);
}

static gboolean
key_arg(ImapLex *lx, ImapSearchKey *k, ArgKind arg)
{
    const char *s;
    gsize len;
    guint32 n32;
    if (arg == ARG_NONE)
        return TRUE;
    if (!imap_lex_sp(lx))
        return FALSE;
    switch (arg) {
    case ARG_STRING:
        return search_string(lx, &k->str);
    case ARG_KEYWORD:
        if (!imap_lex_atom(lx, &s, &len))
            return FALSE;
        k->str = imap_arena_strndup(lx->arena, s, len);
        return TRUE;
    case ARG_DATE:
        return search_date(lx, &k->date);
    case ARG_NUMBER:
        return imap_lex_number64(lx, &k->number);
    case ARG_INTERVAL:
        if (!imap_lex_nz_number(lx, &n32))
            return FALSE;
        k->number = n32;
        return TRUE;
    case ARG_SEQSET:
        return imap_lex_seqset(lx, &k->set);
    case ARG_HEADER:
        if (!imap_lex_astring(lx, &k->field) || !imap_lex_sp(lx) || !search_string(lx, &k->str))
            return FALSE;
        if (!field_name_ok(k->field))
            return imap_lex_fail(lx, NULL, "Invalid header field name");
        return TRUE;
    case ARG_NOT:
    case ARG_OR:
        if (!imap_lex_depth_push(lx) || !(k->child = search_key(lx)))
            return FALSE;
        if (arg == ARG_OR && (!imap_lex_sp(lx) || !(k->child->next = search_key(lx))))
            return FALSE;
        imap_lex_depth_pop(lx);
        return TRUE;
    case ARG_MODSEQ:
        return key_modseq(lx, k);
    case ARG_NONE:
        break;
    }
    return TRUE;
}

static ImapSearchKey *
search_key(ImapLex *lx)
{
    ImapSearchKey *k = imap_arena_new0(lx->arena, ImapSearchKey, 1);
    int c = imap_lex_peek(lx);
    if (c == '(') {
        k->type = IMAP_SK_AND;
        if (!imap_lex_open(lx) || !key_list(lx, k, TRUE) || !imap_lex_close(lx))
            return NULL;
        return k;
    }
    if (g_ascii_isdigit(c) || c == '*' || c == '$') {
        k->type = IMAP_SK_SEQSET;
        return imap_lex_seqset(lx, &k->set) ? k : NULL;
    }
    char kw[16];
    if (!imap_lex_keyword(lx, kw, sizeof kw))
        return NULL;
    for (guint i = 0; i < G_N_ELEMENTS(keys); i++) {
        if (strcmp(kw, keys[i].name) != 0)
            continue;
        k->type = keys[i].type;
        return key_arg(lx, k, keys[i].arg) ? k : NULL;
    }
    imap_lex_fail(lx, NULL, "Unknown search key");
    return NULL;
}

/* Is the next atom kw (case-insensitive)? Consumes it only if so. */
static gboolean
next_is(ImapLex *lx, const char *kw)
{
    gsize save = lx->pos;
    const char *s;
    gsize len;
    if (imap_is_atom_char((guchar)imap_lex_peek(lx)) && imap_lex_atom(lx, &s, &len) &&
        imap_lex_is(s, len, kw) && imap_lex_peek(lx) == ' ')
        return TRUE;
    lx->pos = save;
    return FALSE;
}

static gboolean
return_opts(ImapLex *lx, ImapSearchArgs *a)
{
    static const char *const opts[] = {"MIN", "MAX", "ALL", "COUNT", "SAVE"};
    a->esearch = TRUE;
    if (!imap_lex_sp(lx) || !imap_lex_word_set(lx, opts, G_N_ELEMENTS(opts), TRUE,
                                               "Unknown SEARCH return option", &a->ret))
        return FALSE;
    if (a->ret == 0)
        a->ret = IMAP_SEARCH_RET_ALL; /* RFC 4731 3.1 */
    return imap_lex_sp(lx);
}

gboolean
imap_parse_search_args(ImapLex *lx, ImapCommand *cmd)
{
    ImapSearchArgs *a = &cmd->u.search;
    if (!imap_lex_sp(lx))
        return FALSE;
    if (next_is(lx, "RETURN") && !return_opts(lx, a))
        return FALSE;
    if (next_is(lx, "CHARSET")) {
        if (!imap_lex_sp(lx) || !imap_lex_astring(lx, &a->charset) || !imap_lex_sp(lx))
            return FALSE;
        if (g_ascii_strcasecmp(a->charset, "UTF-8") != 0 &&
            g_ascii_strcasecmp(a->charset, "US-ASCII") != 0)
            return fail_charset(lx);
    }
    a->key = imap_arena_new0(lx->arena, ImapSearchKey, 1);
    a->key->type = IMAP_SK_AND;
    return key_list(lx, a->key, FALSE);
}
