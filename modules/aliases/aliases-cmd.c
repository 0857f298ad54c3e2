/* SPDX-License-Identifier: MIT */
/*
 * aliases-cmd.c - `kurir aliases`: check an aliases file, show what an
 * address expands to.
 *
 *   kurir aliases check [FILE]      every error as FILE:LINE: why (stderr);
 *                                   also :include: files that cannot be
 *                                   read or parsed, alias loops, commands
 *                                   and files that are disabled, names in
 *                                   domains not served here (warnings)
 *   kurir aliases expand ADDRESS... the targets ADDRESS goes to (aliases,
 *                                   :include:, forward files), and why
 *
 * Exit status: 0 fine (warnings allowed), 1 errors, 64 usage.
 */
#include "aliases.h"

#include <stdio.h>
#include <string.h>
#include <sysexits.h>

static const char *const leaf_names[] = {"mailbox", "address", "command", "file"};

static int
check_file(const char *path, gboolean explicit_path)
{
    g_autoptr(GError) err = NULL;
    AliasTable *t = aliases_table_load(path, &err);
    if (!t) {
        fprintf(stderr, "%s\n", err->message);
        fprintf(stderr, "%s: errors found\n", path);
        return 1;
    }
    if (!aliases_table_exists(t)) {
        aliases_table_unref(t);
        if (explicit_path) {
            fprintf(stderr, "%s: no such file\n", path);
            return 1;
        }
        printf("%s: does not exist: only the built-in postmaster and MAILER-DAEMON\n", path);
        return 0;
    }
    guint errors = 0, warnings = 0;
    AliasExpandCtx *ctx = aliases_ctx_new(t, NULL);
    ctx->forward = NULL; /* check the file, not users' forward files */
    for (guint i = 0; i < aliases_table_size(t); i++) {
        const AliasEntry *e = aliases_table_nth(t, i);
        for (guint k = 0; k < e->targets->len; k++) {
            const AliasTarget *tg = e->targets->pdata[k];
            if (tg->kind == ALIAS_T_INCLUDE) {
                g_autoptr(GPtrArray) inc = g_ptr_array_new_with_free_func(aliases_target_free);
                g_autofree char *why = NULL;
                uid_t owner;
                if (alias_read_include(tg->value, inc, &owner, &why) != ALIAS_OK) {
                    fprintf(stderr, "%s:%u: :include:%s: %s\n", path, tg->line, tg->value, why);
                    errors++;
                }
            } else if ((tg->kind == ALIAS_T_PIPE && !aliases_conf->allow_pipe) ||
                       (tg->kind == ALIAS_T_FILE && !aliases_conf->allow_file)) {
                fprintf(stderr,
                        "%s:%u: warning: %s%s: disabled (aliases.%s = false): mail to \"%s\" "
                        "bounces\n",
                        path, tg->line, tg->kind == ALIAS_T_PIPE ? "|" : "", tg->value,
                        tg->kind == ALIAS_T_PIPE ? "allow_pipe" : "allow_file", e->name);
                warnings++;
            }
        }
        const char *at = strrchr(e->name, '@');
        if (at && !kr_domain_is_local(at + 1)) {
            fprintf(stderr, "%s:%u: warning: \"%s\": %s is not a domain served here (unused)\n",
                    path, e->line, e->name, at + 1);
            warnings++;
        }
        g_autofree char *addr =
            at ? g_strdup(e->name) : g_strdup_printf("%s@%s", e->name, kr_default_domain());
        AliasExpansion exp;
        alias_expand(ctx, addr, &exp);
        if (exp.status == ALIAS_LOOP) {
            fprintf(stderr, "%s:%u: %s\n", path, e->line, exp.diag);
            errors++;
        } else if (exp.status == ALIAS_TOOBIG) {
            fprintf(stderr, "%s:%u: warning: \"%s\": %s\n", path, e->line, e->name, exp.diag);
            warnings++;
        }
        alias_expansion_clear(&exp);
    }
    aliases_ctx_free(ctx);
    guint n = aliases_table_size(t);
    aliases_table_unref(t);
    if (errors) {
        fprintf(stderr, "%s: %u error(s)\n", path, errors);
        return 1;
    }
    printf("%s: %u alias(es) ok%s\n", path, n, warnings ? " (with warnings)" : "");
    return 0;
}

static int
expand_cmd(int argc, char **argv)
{
    AliasTable *t = aliases_current();
    AliasExpandCtx *ctx = aliases_ctx_new(t, NULL);
    int rc = 0;
    for (int i = 0; i < argc; i++) {
        g_autofree char *why = NULL;
        g_autofree char *addr = ctx->canon(ctx, argv[i], &why);
        g_autofree char *shown = g_strescape(argv[i], NULL);
        if (!addr) {
            printf("%s: refused: %s\n", shown, why);
            rc = 1;
            continue;
        }
        if (!kr_domain_is_local(kr_addr_domain(addr))) {
            printf("%s: <%s> is not in a domain served here: not expanded\n", shown, addr);
            continue;
        }
        AliasExpansion exp;
        alias_expand(ctx, addr, &exp);
        if (exp.status != ALIAS_OK) {
            printf("%s: <%s> fails: %s\n", shown, addr, exp.diag);
            rc = 1;
        } else {
            printf("%s: <%s> %s\n", shown, addr, exp.how ? exp.how : "is not an alias");
            for (guint k = 0; k < exp.leaves->len; k++) {
                const AliasLeaf *l = exp.leaves->pdata[k];
                printf("  %-8s %s", leaf_names[l->kind], l->value);
                if (l->kind == ALIAS_LEAF_PIPE || l->kind == ALIAS_LEAF_FILE)
                    printf("  (as %s)", l->priv.user ? l->priv.user : "?");
                if (l->origin)
                    printf("  [%s]", l->origin);
                printf("\n");
            }
            if (exp.owner)
                printf("  owner    %s (sender of the expanded copy)\n", exp.owner);
        }
        alias_expansion_clear(&exp);
    }
    aliases_ctx_free(ctx);
    aliases_table_unref(t);
    return rc;
}

static int
aliases_cmd(KrModule *mod, int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "check") == 0 && argc <= 3)
        return check_file(argc == 3 ? argv[2] : aliases_conf->file, argc == 3);
    if (argc >= 3 && strcmp(argv[1], "expand") == 0)
        return expand_cmd(argc - 2, argv + 2);
    fprintf(stderr, "usage: kurir aliases check [FILE]\n"
                    "       kurir aliases expand ADDRESS...\n");
    return EX_USAGE;
}

const KrCommand aliases_command = {
    .struct_size = sizeof(KrCommand),
    .name = "aliases",
    .usage = "aliases check [FILE]     check an aliases file (errors as FILE:LINE)\n"
             "aliases expand ADDRESS.. where mail to ADDRESS goes (aliases, .forward)",
    .run = aliases_cmd,
};
