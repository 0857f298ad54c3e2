/* SPDX-License-Identifier: MIT */
/*
 * imap-lex.h - internal to the IMAP parser files (imap-reader.c,
 * imap-parse*.c): character classes, a bump allocator that an
 * ImapCommand owns, and the tokenizer over one framed command.
 *
 *   imap_is_atom_char(c) ...          RFC 9051 character classes
 *   imap_tag_valid(s, len)            a tag we can echo?
 *   imap_cmd_lookup(word, len)        command word -> ImapCmdName
 *   imap_arena_*                      allocations freed all at once
 *   imap_lex_*                        tokens: SP, atoms, astring, string,
 *                                     nstring, literal, numbers, sequence sets,
 *                                     flags, parentheses with a depth limit
 *
 * Every imap_lex_* function returns FALSE on a syntax error after
 * recording the first error in the lexer (later ones are ignored), so
 * callers just return FALSE upward.
 */
#ifndef KR_IMAP_LEX_H
#define KR_IMAP_LEX_H

#include "imap-parse.h"

#define IMAP_TAG_MAX 256

/* ATOM-CHAR: CHAR except atom-specials "(" ")" "{" SP CTL "%" "*" DQUOTE "\" "]" */
static inline gboolean
imap_is_atom_char(guchar c)
{
    return c > 0x20 && c < 0x7f && c != '(' && c != ')' && c != '{' && c != '%' && c != '*' &&
           c != '"' && c != '\\' && c != ']';
}

static inline gboolean
imap_is_astring_char(guchar c)
{
    return imap_is_atom_char(c) || c == ']';
}

/* list-char: ATOM-CHAR / list-wildcards / resp-specials */
static inline gboolean
imap_is_list_char(guchar c)
{
    return imap_is_astring_char(c) || c == '%' || c == '*';
}

static inline gboolean
imap_is_tag_char(guchar c)
{
    return imap_is_astring_char(c) && c != '+';
}

gboolean imap_tag_valid(const char *s, gsize len);
ImapCmdName imap_cmd_lookup(const char *word, gsize len);

/* ---- arena ---- */

ImapArena *imap_arena_new(void);
void imap_arena_free(ImapArena *a);
gpointer imap_arena_alloc(ImapArena *a, gsize size);
char *imap_arena_strndup(ImapArena *a, const char *s, gsize len);
void imap_arena_own(ImapArena *a, gpointer p, GDestroyNotify destroy);

#define imap_arena_new0(a, type, n) ((type *)imap_arena_alloc((a), sizeof(type) * (n)))

/* ---- lexer ---- */

typedef struct {
    const guchar *buf;
    gsize len;
    gsize pos;
    const ImapRawCommand *raw;
    const ImapParseOpts *opts;
    ImapArena *arena;
    ImapError *err;
    gboolean failed;
    guint depth;
    guint n_literals; /* literals passed so far */
} ImapLex;

/* Literal token, for APPEND. */
typedef struct {
    const guchar *data; /* NULL when streamed */
    guint64 size;
    gboolean binary;
    gboolean streamed;
    guint index;
} ImapLexLiteral;

gboolean imap_lex_fail(ImapLex *lx, const char *code, const char *text);
int imap_lex_peek(const ImapLex *lx);
gboolean imap_lex_at_end(const ImapLex *lx);
gboolean imap_lex_sp(ImapLex *lx);
gboolean imap_lex_try_sp(ImapLex *lx);
gboolean imap_lex_char(ImapLex *lx, char c);
gboolean imap_lex_open(ImapLex *lx);
gboolean imap_lex_close(ImapLex *lx);
gboolean imap_lex_atom(ImapLex *lx, const char **s, gsize *len);
gboolean imap_lex_keyword(ImapLex *lx, char *out, gsize outsz);
/* "(" word *(SP word) ")" where every word is one of names[0..n) (any
 * case, at most 31 octets): bit i of *mask_r set for names[i]. "()" only
 * when allow_empty; an unknown word fails with BAD unknown_text. */
gboolean imap_lex_word_set(ImapLex *lx, const char *const *names, guint n, gboolean allow_empty,
                           const char *unknown_text, guint *mask_r);
gboolean imap_lex_is(const char *word, gsize len, const char *kw);
gboolean imap_lex_astring(ImapLex *lx, char **out);
gboolean imap_lex_string(ImapLex *lx, char **out);
gboolean imap_lex_nstring(ImapLex *lx, char **out);
gboolean imap_lex_mailbox(ImapLex *lx, char **out);
gboolean imap_lex_list_mailbox(ImapLex *lx, char **out);
gboolean imap_lex_literal(ImapLex *lx, ImapLexLiteral *lit);
gboolean imap_lex_number(ImapLex *lx, guint32 *v);
gboolean imap_lex_nz_number(ImapLex *lx, guint32 *v);
gboolean imap_lex_number64(ImapLex *lx, guint64 *v);
gboolean imap_lex_modseq(ImapLex *lx, gboolean zero_ok, guint64 *v);
gboolean imap_lex_seqset(ImapLex *lx, ImapSeqSet **set);
gboolean imap_lex_flag(ImapLex *lx, gboolean allow_recent, char **out);
gboolean imap_lex_flag_list(ImapLex *lx, gboolean allow_recent, char ***out);
gboolean imap_lex_strv(ImapLex *lx, GPtrArray *items, char ***out);
gboolean imap_lex_depth_push(ImapLex *lx);
void imap_lex_depth_pop(ImapLex *lx);

/* imap-parse-search.c, imap-parse-fetch.c */
gboolean imap_parse_search_args(ImapLex *lx, ImapCommand *cmd);
gboolean imap_parse_fetch_args(ImapLex *lx, ImapCommand *cmd);
gboolean imap_parse_store_args(ImapLex *lx, ImapCommand *cmd);

#endif
