/* SPDX-License-Identifier: MIT */
/*
 * aliases.h - private interfaces between the files of the aliases
 * module.
 *
 *   aliases.c       module descriptor, settings, table loading and
 *                   reloading, address verifier, the expansion context
 *   aliases-stage.c the `aliases` stage type: expand, run commands and
 *                   files, queue the expansion as a new message
 *   aliases-cmd.c   `kurir aliases check|expand`
 *   aliases-file.c, aliases-expand.c, aliases-sys.c, aliases-run.c
 *                   parsing, expansion, system access, running (pure or
 *                   nearly; also linked by t/test-aliases.c)
 */
#ifndef ALIASES_H
#define ALIASES_H

#include <kurir/kurir.h>
#include "aliases-expand.h"
#include "aliases-run.h"
#include "aliases-sys.h"

typedef struct {
    char *file;
    char *postmaster;
    gboolean allow_pipe;
    gboolean allow_file;
    char *default_user;
    gint64 command_timeout;
    gboolean forward;
    char *passwd_file;
    char *forward_dir;
    gint64 max_expansion;
    gint64 max_depth;
    char *inject_node;
} AliasesConf;

extern const AliasesConf *aliases_conf;

/* The current table (a reference: aliases_table_unref it). */
AliasTable *aliases_current(void);

/* An expansion context for table (worker threads may use it: it holds
 * only immutable data). qid names the message in log lines (may be
 * NULL). Free with aliases_ctx_free. */
AliasExpandCtx *aliases_ctx_new(AliasTable *table, const char *qid);
void aliases_ctx_free(AliasExpandCtx *ctx);

/* Who runs the commands and files of a file owned by uid: its account,
 * or default_user for root. */
void aliases_file_priv(uid_t uid, AliasPriv *out);

extern const KrStageType aliases_stage_type;
extern const KrCommand aliases_command;

#endif
