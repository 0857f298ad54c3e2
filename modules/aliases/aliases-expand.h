/* SPDX-License-Identifier: MIT */
/*
 * aliases-expand.h - expanding one local recipient through aliases,
 * :include: files and forward files into its final targets (see
 * aliases-expand.c). The algorithm is pure; everything that touches the
 * system (canonical addresses, reading include and forward files) comes
 * through callbacks, so the tests drive it with fakes.
 *
 *   alias_expand(ctx, address, out)           expand, filling out
 *   alias_expansion_clear(out)
 *   alias_lookup(ctx, address, &name)         the file's entry that applies
 *   alias_known(ctx, address)                 an alias, built in or not?
 *   alias_priv_clear(priv), alias_priv_copy(dst, src)
 *   aliases_delivered_to(block, len, address) is "Delivered-To: address"
 *                                             in this header block?
 *
 * LOOKUP (alias_lookup)
 *   For local@domain (domain served here): the name "local@domain",
 *   then "local". Built in when the file lacks them: "postmaster" (to
 *   ctx->postmaster if set, else the mailbox postmaster@DEFAULT-DOMAIN)
 *   and "mailer-daemon" (to postmaster). "NAME-request" with no entry
 *   of its own goes where "owner-NAME" goes, if that exists.
 *
 * EXPANSION
 *   Depth first, each address at most once (a second path to it adds
 *   nothing). An alias naming itself ("alice: alice, bob") delivers to
 *   its own mailbox; so does "\alice". An address met again while it is
 *   being expanded (a: b, b: a) is a loop; so is nesting deeper than
 *   ctx->max_depth and an :include: file including itself. A local
 *   address with no alias is looked up as a forward file; without one
 *   it is a mailbox. Addresses of other domains are kept as they are.
 *   More than ctx->max_expansion targets is an error.
 *   Pipes and files need ctx->allow_pipe / allow_file; each carries
 *   who runs it: for the aliases file and :include: files their owner
 *   (ctx->file_priv() maps it), for forward files the user.
 */
#ifndef ALIASES_EXPAND_H
#define ALIASES_EXPAND_H

#include "aliases-file.h"

typedef enum {
    ALIAS_OK = 0,
    ALIAS_NONE,   /* callbacks: nothing there (no forward file) */
    ALIAS_TEMP,   /* try again later: 4.3.0 */
    ALIAS_LOOP,   /* 5.4.6 */
    ALIAS_TOOBIG, /* 5.5.3 */
    ALIAS_CONFIG, /* a broken include file, pipes not allowed: 5.3.5 */
    ALIAS_PERM,   /* a command or file delivery failed for good: 5.3.0 */
} AliasStatus;

/* Who a pipe or file target runs as. */
typedef struct {
    gboolean valid;
    uid_t uid;
    gid_t gid;
    char *user;
    char *home;
} AliasPriv;

typedef enum {
    ALIAS_LEAF_MAILBOX, /* value: a local address, delivered to its mailbox */
    ALIAS_LEAF_ADDRESS, /* value: any other address (remote, or refused) */
    ALIAS_LEAF_PIPE,    /* value: a command */
    ALIAS_LEAF_FILE,    /* value: a path */
} AliasLeafKind;

typedef struct {
    AliasLeafKind kind;
    char *value;
    AliasPriv priv; /* PIPE, FILE */
    char *origin;   /* "FILE:LINE" it came from */
} AliasLeaf;

typedef struct {
    AliasStatus status;
    char *diag;         /* status != OK: why */
    GPtrArray *leaves;  /* AliasLeaf * */
    char *owner;        /* "owner-NAME@domain" if the top alias has an owner */
    char *how;          /* what expanded it ("alias team (FILE:LINE)"), NULL: nothing */
    guint forward_seen; /* forward files read */
} AliasExpansion;

typedef struct AliasExpandCtx AliasExpandCtx;
struct AliasExpandCtx {
    const AliasTable *table; /* may be NULL: only the built-in names */
    const char *default_domain;
    gboolean (*is_local)(const char *domain);
    /* Canonical form of a target address ("local@domain", domain
     * lowercased, maps applied), or NULL with *why_r if refused. */
    char *(*canon)(const AliasExpandCtx *ctx, const char *address, char **why_r);
    /* The forward file of a local address: ALIAS_OK (targets appended,
     * *priv set, *where_r names the file), ALIAS_NONE, or ALIAS_TEMP
     * (*why_r). May be NULL (no forward files). */
    AliasStatus (*forward)(const AliasExpandCtx *ctx, const char *address, GPtrArray *targets,
                           AliasPriv *priv, char **where_r, char **why_r);
    /* An :include: file: ALIAS_OK (targets appended, *priv = who owns
     * it), ALIAS_TEMP or ALIAS_CONFIG (*why_r). */
    AliasStatus (*include)(const AliasExpandCtx *ctx, const char *path, GPtrArray *targets,
                           AliasPriv *priv, char **why_r);
    AliasPriv table_priv;   /* who runs the aliases file's pipes and files */
    const char *postmaster; /* "" or NULL: the postmaster mailbox */
    guint max_expansion;
    guint max_depth;
    gboolean allow_pipe, allow_file;
    gpointer data;
};

void alias_expand(const AliasExpandCtx *ctx, const char *address, AliasExpansion *out);
void alias_expansion_clear(AliasExpansion *out);
/* The file's entry for address (canonical: "local@domain"), with the
 * NAME-request -> owner-NAME fallback; NULL if none. */
const AliasEntry *alias_lookup(const AliasExpandCtx *ctx, const char *address);
/* alias_lookup, or one of the built-in names (postmaster, mailer-daemon)
 * in a served domain. */
gboolean alias_known(const AliasExpandCtx *ctx, const char *address);
void alias_priv_clear(AliasPriv *p);
void alias_priv_copy(AliasPriv *dst, const AliasPriv *src);
gboolean aliases_delivered_to(const char *block, gsize len, const char *address);

#endif
