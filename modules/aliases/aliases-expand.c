/* SPDX-License-Identifier: MIT */
/*
 * aliases-expand.c - expand a local recipient through aliases,
 * :include: files and forward files (rules in aliases-expand.h).
 *
 *   alias_expand, alias_expansion_clear, alias_lookup, alias_known,
 *   alias_priv_clear, alias_priv_copy, aliases_delivered_to
 *
 * Bounded everywhere: recursion depth (ctx->max_depth, for nested
 * aliases and nested includes alike), number of targets
 * (ctx->max_expansion) and one visit per address, so no input can make
 * it loop or grow without limit.
 */
#include "aliases-expand.h"

#include <string.h>

typedef struct {
    const AliasExpandCtx *ctx;
    AliasExpansion *out;
    GHashTable *done;     /* lowercased addresses already expanded */
    GPtrArray *stack;     /* addresses being expanded (loop detection) */
    GPtrArray *inc_stack; /* include files being read */
    GHashTable *leafset;  /* "kind value" of the leaves so far */
} Exp;

void
alias_priv_clear(AliasPriv *p)
{
    g_clear_pointer(&p->user, g_free);
    g_clear_pointer(&p->home, g_free);
    p->valid = FALSE;
}

void
alias_priv_copy(AliasPriv *dst, const AliasPriv *src)
{
    *dst = *src;
    dst->user = g_strdup(src->user);
    dst->home = g_strdup(src->home);
}

static void
leaf_free(gpointer p)
{
    AliasLeaf *l = p;
    g_free(l->value);
    g_free(l->origin);
    alias_priv_clear(&l->priv);
    g_free(l);
}

void
alias_expansion_clear(AliasExpansion *out)
{
    g_clear_pointer(&out->diag, g_free);
    g_clear_pointer(&out->leaves, g_ptr_array_unref);
    g_clear_pointer(&out->owner, g_free);
    g_clear_pointer(&out->how, g_free);
    out->status = ALIAS_OK;
    out->forward_seen = 0;
}

static gboolean fail(Exp *e, AliasStatus st, const char *fmt, ...) G_GNUC_PRINTF(3, 4);

static gboolean
fail(Exp *e, AliasStatus st, const char *fmt, ...)
{
    if (e->out->status != ALIAS_OK)
        return FALSE;
    va_list ap;
    va_start(ap, fmt);
    e->out->diag = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    e->out->status = st;
    return FALSE;
}

static gboolean
add_leaf(Exp *e, AliasLeafKind kind, const char *value, const AliasPriv *priv, const char *origin)
{
    g_autofree char *key = g_strdup_printf("%d %s", (int)kind, value);
    if (kind == ALIAS_LEAF_MAILBOX || kind == ALIAS_LEAF_ADDRESS)
        for (char *p = key; *p; p++)
            *p = g_ascii_tolower(*p);
    if (g_hash_table_contains(e->leafset, key))
        return TRUE;
    if (e->out->leaves->len >= e->ctx->max_expansion)
        return fail(e, ALIAS_TOOBIG, "alias expansion has more than %u recipients",
                    e->ctx->max_expansion);
    g_hash_table_add(e->leafset, g_steal_pointer(&key));
    AliasLeaf *l = g_new0(AliasLeaf, 1);
    l->kind = kind;
    l->value = g_strdup(value);
    if (priv)
        alias_priv_copy(&l->priv, priv);
    l->origin = g_strdup(origin);
    g_ptr_array_add(e->out->leaves, l);
    return TRUE;
}

static const char *
addr_domain(const char *a)
{
    const char *at = strrchr(a, '@');
    return at ? at + 1 : "";
}

const AliasEntry *
alias_lookup(const AliasExpandCtx *ctx, const char *address)
{
    const char *at = strrchr(address, '@');
    if (!at || !ctx->table)
        return NULL;
    const AliasEntry *e = aliases_table_lookup(ctx->table, address);
    g_autofree char *local = g_ascii_strdown(address, at - address);
    gsize ll = strlen(local);
    if (ll >= 2 && local[0] == '"' && local[ll - 1] == '"') {
        /* "first last"@domain: the name as the file has it, unquoted */
        GString *u = g_string_new(NULL);
        for (gsize i = 1; i + 1 < ll; i++) {
            if (local[i] == '\\' && i + 2 < ll)
                i++;
            g_string_append_c(u, local[i]);
        }
        g_free(local);
        local = g_string_free(u, FALSE);
        g_autofree char *full = g_strdup_printf("%s@%s", local, at + 1);
        e = aliases_table_lookup(ctx->table, full);
    }
    if (!e)
        e = aliases_table_lookup(ctx->table, local);
    if (e)
        return e;
    /* NAME-request: where owner-NAME goes */
    gsize n = strlen(local);
    if (n > 8 && strcmp(local + n - 8, "-request") == 0) {
        g_autofree char *owner = g_strdup_printf("owner-%.*s", (int)(n - 8), local);
        g_autofree char *owner_full = g_strdup_printf("%s@%s", owner, at + 1);
        e = aliases_table_lookup(ctx->table, owner_full);
        if (!e)
            e = aliases_table_lookup(ctx->table, owner);
    }
    return e;
}

static gboolean
is_builtin(const char *address, const char **which)
{
    const char *at = strrchr(address, '@');
    gsize n = at ? (gsize)(at - address) : strlen(address);
    if (n == 10 && g_ascii_strncasecmp(address, "postmaster", 10) == 0) {
        *which = "postmaster";
        return TRUE;
    }
    if (n == 13 && g_ascii_strncasecmp(address, "mailer-daemon", 13) == 0) {
        *which = "mailer-daemon";
        return TRUE;
    }
    return FALSE;
}

gboolean
alias_known(const AliasExpandCtx *ctx, const char *address)
{
    const char *which;
    if (!ctx->is_local(addr_domain(address)))
        return FALSE;
    return alias_lookup(ctx, address) != NULL || is_builtin(address, &which);
}

static gboolean expand_addr(Exp *e, const char *addr, guint depth);

static gboolean
stack_has(GPtrArray *a, const char *s)
{
    for (guint i = 0; i < a->len; i++)
        if (strcmp(a->pdata[i], s) == 0)
            return TRUE;
    return FALSE;
}

static gboolean
expand_targets(Exp *e, GPtrArray *targets, const AliasPriv *priv, const char *self,
               const char *where, guint depth)
{
    const AliasExpandCtx *ctx = e->ctx;
    for (guint i = 0; i < targets->len; i++) {
        const AliasTarget *t = targets->pdata[i];
        g_autofree char *origin = g_strdup_printf("%s:%u", where, t->line);
        switch (t->kind) {
        case ALIAS_T_ADDRESS: {
            g_autofree char *why = NULL;
            g_autofree char *c = ctx->canon(ctx, t->value, &why);
            if (!c) {
                /* Kept as written: delivering the copy reports it. */
                if (!add_leaf(e, ALIAS_LEAF_ADDRESS, t->value, NULL, origin))
                    return FALSE;
                break;
            }
            if (g_ascii_strcasecmp(c, self) == 0) {
                if (!add_leaf(e, ALIAS_LEAF_MAILBOX, c, NULL, origin))
                    return FALSE;
            } else if (!expand_addr(e, c, depth + 1)) {
                return FALSE;
            }
            break;
        }
        case ALIAS_T_DIRECT: {
            g_autofree char *why = NULL;
            g_autofree char *c = ctx->canon(ctx, t->value, &why);
            if (!c)
                return fail(e, ALIAS_CONFIG, "%s: \\%s: %s", origin, t->value, why);
            AliasLeafKind k =
                ctx->is_local(addr_domain(c)) ? ALIAS_LEAF_MAILBOX : ALIAS_LEAF_ADDRESS;
            if (!add_leaf(e, k, c, NULL, origin))
                return FALSE;
            break;
        }
        case ALIAS_T_INCLUDE: {
            if (stack_has(e->inc_stack, t->value))
                return fail(e, ALIAS_LOOP, "%s: include loop: %s includes itself", origin,
                            t->value);
            if (e->inc_stack->len >= ctx->max_depth)
                return fail(e, ALIAS_LOOP, "%s: includes nested deeper than %u", origin,
                            ctx->max_depth);
            if (!ctx->include)
                return fail(e, ALIAS_CONFIG, "%s: :include: is not available", origin);
            g_autoptr(GPtrArray) inc = g_ptr_array_new_with_free_func(aliases_target_free);
            AliasPriv ipriv = {0};
            g_autofree char *why = NULL;
            AliasStatus st = ctx->include(ctx, t->value, inc, &ipriv, &why);
            if (st != ALIAS_OK) {
                alias_priv_clear(&ipriv);
                return fail(e, st == ALIAS_NONE ? ALIAS_CONFIG : st, "%s: :include:%s: %s", origin,
                            t->value, why ? why : "cannot be read");
            }
            g_ptr_array_add(e->inc_stack, t->value);
            gboolean ok = expand_targets(e, inc, &ipriv, self, t->value, depth);
            g_ptr_array_remove_index(e->inc_stack, e->inc_stack->len - 1);
            alias_priv_clear(&ipriv);
            if (!ok)
                return FALSE;
            break;
        }
        case ALIAS_T_PIPE:
        case ALIAS_T_FILE: {
            gboolean pipe = t->kind == ALIAS_T_PIPE;
            if (pipe ? !ctx->allow_pipe : !ctx->allow_file)
                return fail(e, ALIAS_CONFIG,
                            "%s: delivery to %s%s is disabled (aliases.%s = false)", origin,
                            pipe ? "|" : "", t->value, pipe ? "allow_pipe" : "allow_file");
            if (!priv || !priv->valid)
                return fail(e, ALIAS_CONFIG, "%s: %s%s: no user to run it as", origin,
                            pipe ? "|" : "", t->value);
            if (!add_leaf(e, pipe ? ALIAS_LEAF_PIPE : ALIAS_LEAF_FILE, t->value, priv, origin))
                return FALSE;
            break;
        }
        }
    }
    return TRUE;
}

/* Expand the built-in postmaster and mailer-daemon (no entry in the file). */
static gboolean
expand_builtin(Exp *e, const char *which, const char *key, guint depth)
{
    const AliasExpandCtx *ctx = e->ctx;
    if (strcmp(which, "mailer-daemon") == 0) {
        g_autofree char *pm = g_strdup_printf("postmaster@%s", addr_domain(key));
        return expand_addr(e, pm, depth + 1);
    }
    if (!ctx->postmaster || !*ctx->postmaster) {
        g_autofree char *mbox = g_strdup_printf("postmaster@%s", ctx->default_domain);
        return add_leaf(e, ALIAS_LEAF_MAILBOX, mbox, NULL, "built-in postmaster");
    }
    g_autoptr(GPtrArray) targets = g_ptr_array_new_with_free_func(aliases_target_free);
    g_autoptr(GPtrArray) errors = g_ptr_array_new_with_free_func(g_free);
    if (!aliases_parse_list("aliases.postmaster", ctx->postmaster, strlen(ctx->postmaster), targets,
                            errors))
        return fail(e, ALIAS_CONFIG, "%s", (char *)errors->pdata[0]);
    return expand_targets(e, targets, &ctx->table_priv, key, "aliases.postmaster", depth);
}

static gboolean
expand_addr(Exp *e, const char *addr, guint depth)
{
    const AliasExpandCtx *ctx = e->ctx;
    g_autofree char *key = g_ascii_strdown(addr, -1);
    if (stack_has(e->stack, key)) {
        GString *path = g_string_new(NULL);
        gboolean on = FALSE;
        for (guint i = 0; i < e->stack->len; i++) {
            on = on || strcmp(e->stack->pdata[i], key) == 0;
            if (on)
                g_string_append_printf(path, "%s -> ", (char *)e->stack->pdata[i]);
        }
        g_string_append(path, key);
        fail(e, ALIAS_LOOP, "alias loop: %s", path->str);
        g_string_free(path, TRUE);
        return FALSE;
    }
    if (depth > ctx->max_depth)
        return fail(e, ALIAS_LOOP, "aliases nested deeper than %u at %s", ctx->max_depth, key);
    if (g_hash_table_contains(e->done, key))
        return TRUE;
    g_hash_table_add(e->done, g_strdup(key));
    if (!ctx->is_local(addr_domain(addr)))
        return add_leaf(e, ALIAS_LEAF_ADDRESS, addr, NULL, NULL);

    const AliasEntry *entry = alias_lookup(ctx, addr);
    const char *which = NULL;
    gboolean ok;
    g_ptr_array_add(e->stack, key);
    if (entry) {
        const char *file = aliases_table_path(ctx->table);
        if (depth == 0) {
            e->out->how = g_strdup_printf("alias %s (%s:%u)", entry->name, file, entry->line);
            const char *at = strrchr(addr, '@');
            g_autofree char *local = g_ascii_strdown(addr, at - addr);
            g_autofree char *o1 = g_strdup_printf("owner-%s@%s", local, at + 1);
            g_autofree char *o2 = g_strdup_printf("owner-%s", local);
            if (aliases_table_lookup(ctx->table, o1) || aliases_table_lookup(ctx->table, o2))
                e->out->owner = g_steal_pointer(&o1);
        }
        ok = expand_targets(e, entry->targets, &ctx->table_priv, key, file, depth);
    } else if (is_builtin(addr, &which)) {
        if (depth == 0)
            e->out->how = g_strdup_printf("built-in alias %s", which);
        ok = expand_builtin(e, which, key, depth);
    } else {
        g_autoptr(GPtrArray) fwd = g_ptr_array_new_with_free_func(aliases_target_free);
        AliasPriv fpriv = {0};
        g_autofree char *where = NULL, *why = NULL;
        AliasStatus st =
            ctx->forward ? ctx->forward(ctx, addr, fwd, &fpriv, &where, &why) : ALIAS_NONE;
        if (st == ALIAS_OK) {
            e->out->forward_seen++;
            if (depth == 0)
                e->out->how = g_strdup_printf("forward file %s", where);
            ok = expand_targets(e, fwd, &fpriv, key, where, depth);
        } else if (st == ALIAS_NONE) {
            ok = add_leaf(e, ALIAS_LEAF_MAILBOX, addr, NULL, NULL);
        } else {
            ok = fail(e, st, "%s", why ? why : "forward file unreadable");
        }
        alias_priv_clear(&fpriv);
    }
    g_ptr_array_remove_index(e->stack, e->stack->len - 1);
    return ok;
}

void
alias_expand(const AliasExpandCtx *ctx, const char *address, AliasExpansion *out)
{
    memset(out, 0, sizeof *out);
    out->leaves = g_ptr_array_new_with_free_func(leaf_free);
    Exp e = {
        .ctx = ctx,
        .out = out,
        .done = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL),
        .stack = g_ptr_array_new(),
        .inc_stack = g_ptr_array_new(),
        .leafset = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL),
    };
    if (expand_addr(&e, address, 0) && out->leaves->len == 0)
        fail(&e, ALIAS_CONFIG, "%s expands to nothing", out->how ? out->how : address);
    if (out->status != ALIAS_OK)
        g_ptr_array_set_size(out->leaves, 0);
    g_hash_table_destroy(e.done);
    g_ptr_array_unref(e.stack);
    g_ptr_array_unref(e.inc_stack);
    g_hash_table_destroy(e.leafset);
}

/* --- Delivered-To ---------------------------------------------------------- */

static gboolean
value_is(const char *v, gsize n, const char *address)
{
    while (n && (*v == ' ' || *v == '\t'))
        v++, n--;
    while (n && (v[n - 1] == ' ' || v[n - 1] == '\t' || v[n - 1] == '\r'))
        n--;
    if (n >= 2 && v[0] == '<' && v[n - 1] == '>')
        v++, n -= 2;
    return n == strlen(address) && g_ascii_strncasecmp(v, address, n) == 0;
}

gboolean
aliases_delivered_to(const char *block, gsize len, const char *address)
{
    const char *p = block, *end = block + len;
    GString *cur = NULL; /* the Delivered-To value being unfolded */
    gboolean found = FALSE;
    while (p < end && !found) {
        const char *nl = memchr(p, '\n', end - p);
        const char *le = nl ? nl : end;
        gsize n = le - p;
        if (n > 0 && p[n - 1] == '\r')
            n--;
        if (n == 0)
            break; /* end of the header block */
        if ((p[0] == ' ' || p[0] == '\t') && cur) {
            g_string_append_len(cur, p, n);
        } else {
            if (cur) {
                found = value_is(cur->str, cur->len, address);
                g_string_free(cur, TRUE);
                cur = NULL;
            }
            if (n >= 13 && g_ascii_strncasecmp(p, "Delivered-To:", 13) == 0)
                cur = g_string_new_len(p + 13, n - 13);
        }
        p = nl ? nl + 1 : end;
    }
    if (cur) {
        found = found || value_is(cur->str, cur->len, address);
        g_string_free(cur, TRUE);
    }
    return found;
}
