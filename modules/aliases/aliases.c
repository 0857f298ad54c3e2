/* SPDX-License-Identifier: MIT */
/*
 * aliases.c - the aliases module: /etc/aliases-style aliases, :include:
 * lists, ~/.forward files and per-user forward files of virtual users.
 *
 * Provides:
 *   stage type "aliases"     delivery side, between resolve's `local`
 *                            route and local delivery (aliases-stage.c)
 *   address verifier         alias names (and postmaster, MAILER-DAEMON
 *     "aliases"              in every served domain) exist: SMTP RCPT
 *                            accepts them without a user account
 *   command "aliases"        kurir aliases check [FILE], expand ADDRESS...
 *   service "aliases"        the file is re-read when it changes
 *                            (checked every second, in a worker) and on
 *                            SIGHUP (kurir/kr-watch.h)
 *
 * Module settings (the `aliases` group of kurir.conf), with defaults:
 *   file             "aliases"   aliases file, relative to DATA_DIR; a
 *                                missing file means only the built-ins
 *   postmaster       ""          where postmaster (and MAILER-DAEMON)
 *                                mail goes when the file does not say:
 *                                "" = the mailbox postmaster@DEFAULT-DOMAIN
 *                                (no user account needed), or targets
 *                                as in the file ("alice, bob@example.org")
 *   allow_pipe       false       "|command" targets run (else they bounce)
 *   allow_file       false       "/path" targets are appended to
 *   default_user     "nobody"    runs the commands and files of the
 *                                aliases file and of :include: files
 *                                owned by root (never root itself)
 *   command_timeout  "1m"        time limit of a command or file delivery
 *   forward          true        read forward files
 *   passwd_file      ""          system accounts (for ~/.forward and for
 *                                file owners): "" = the system's user
 *                                database, else a passwd(5) file
 *   forward_dir      "mail"      virtual users' forward files:
 *                                FORWARD_DIR/<domain>/<user>/.forward
 *   max_expansion    10000       most targets one recipient expands to
 *   max_depth        20          deepest nesting of aliases and includes
 *   inject_node      "maildrop"  where expanded copies enter the pipeline
 *
 * THE TABLE
 *   Loaded at start-up: a file with errors stops start-up (each error as
 *   FILE:LINE). While running, a changed file is re-read in a worker; a
 *   broken one is reported once and the previous table kept. The table
 *   is shared by reference with the worker threads that expand.
 */
#include "aliases.h"

#include <gio/gio.h>
#include <kurir/kr-watch.h>
#include <string.h>
#include <unistd.h>

const AliasesConf *aliases_conf;

static const KrSetting aliases_settings[] = {
    KR_SETTING("file", KR_SET_PATH, AliasesConf, file, "aliases", 0, 0,
               "aliases file (relative to DATA_DIR)"),
    KR_SETTING("postmaster", KR_SET_STRING, AliasesConf, postmaster, "", 0, 0,
               "postmaster's targets when the file has none (\"\": the postmaster mailbox)"),
    KR_SETTING("allow_pipe", KR_SET_BOOL, AliasesConf, allow_pipe, "false", 0, 0,
               "deliver to |command targets"),
    KR_SETTING("allow_file", KR_SET_BOOL, AliasesConf, allow_file, "false", 0, 0,
               "deliver to /path/file targets"),
    KR_SETTING("default_user", KR_SET_STRING, AliasesConf, default_user, "nobody", 0, 0,
               "account for commands and files of root-owned alias files"),
    KR_SETTING("command_timeout", KR_SET_DURATION, AliasesConf, command_timeout, "1m", 1, 86400,
               "time limit of a command or file delivery"),
    KR_SETTING("forward", KR_SET_BOOL, AliasesConf, forward, "true", 0, 0,
               "read ~/.forward and virtual users' forward files"),
    KR_SETTING("passwd_file", KR_SET_PATH, AliasesConf, passwd_file, "", 0, 0,
               "passwd(5) file of system accounts (\"\": the system's)"),
    KR_SETTING("forward_dir", KR_SET_PATH, AliasesConf, forward_dir, "mail", 0, 0,
               "virtual users' forward files: DIR/<domain>/<user>/.forward"),
    KR_SETTING("max_expansion", KR_SET_INT, AliasesConf, max_expansion, "10000", 1, 1000000,
               "most targets one recipient expands to"),
    KR_SETTING("max_depth", KR_SET_INT, AliasesConf, max_depth, "20", 1, 100,
               "deepest nesting of aliases and :include: files"),
    KR_SETTING("inject_node", KR_SET_STRING, AliasesConf, inject_node, "maildrop", 0, 0,
               "pipeline node where expanded copies enter"),
    KR_SETTING_END,
};

static struct {
    KrWatch *watch; /* file 0: the table */
    AliasPriv default_priv;
} al;

AliasTable *
aliases_current(void)
{
    return kr_watch_get(al.watch, 0);
}

/* --- the expansion context ------------------------------------------------------ */

typedef struct {
    AliasExpandCtx ctx; /* first */
    AliasSys sys;
    AliasTable *table;
    const KrResolver *resolver;
    char *qid;
} Ctx;

static gboolean
is_local(const char *domain)
{
    return kr_domain_is_local(domain);
}

void
aliases_file_priv(uid_t uid, AliasPriv *out)
{
    memset(out, 0, sizeof *out);
    if (uid == 0) {
        alias_priv_copy(out, &al.default_priv);
        return;
    }
    if (alias_pw_by_uid(aliases_conf->passwd_file, uid, out) || alias_pw_by_uid(NULL, uid, out))
        return;
    out->valid = TRUE;
    out->uid = uid;
    out->gid = (gid_t)uid;
    out->home = g_strdup("/");
}

static char *
ctx_canon(const AliasExpandCtx *c, const char *address, char **why_r)
{
    const Ctx *x = (const Ctx *)c;
    for (const unsigned char *p = (const unsigned char *)address; *p; p++)
        if (*p < 0x20 || *p == 0x7f) {
            *why_r = g_strdup("control character in address");
            return NULL;
        }
    if (!x->resolver)
        return kr_addr_canon(address);
    KrResolution r = {.struct_size = sizeof r};
    char *out = NULL;
    if (x->resolver->resolve(x->resolver->self, address, &r) && r.transport) {
        if (strcmp(r.transport, "error") == 0)
            *why_r = g_strdup(r.reason ? r.reason : "address refused");
        else
            out = g_strdup(r.address);
    } else {
        out = kr_addr_canon(address);
    }
    kr_resolution_clear(&r);
    return out;
}

static AliasStatus
ctx_forward(const AliasExpandCtx *c, const char *address, GPtrArray *targets, AliasPriv *priv,
            char **where_r, char **why_r)
{
    const Ctx *x = (const Ctx *)c;
    g_autofree char *ignored = NULL;
    AliasStatus st = alias_read_forward(&x->sys, address, targets, priv, where_r, why_r, &ignored);
    if (ignored)
        g_warning("%s%sto=<%s>: %s", x->qid ? x->qid : "", x->qid ? ": " : "", address, ignored);
    return st;
}

static AliasStatus
ctx_include(const AliasExpandCtx *c, const char *path, GPtrArray *targets, AliasPriv *priv,
            char **why_r)
{
    uid_t owner = 0;
    AliasStatus st = alias_read_include(path, targets, &owner, why_r);
    if (st == ALIAS_OK)
        aliases_file_priv(owner, priv);
    return st;
}

AliasExpandCtx *
aliases_ctx_new(AliasTable *table, const char *qid)
{
    Ctx *x = g_new0(Ctx, 1);
    x->table = aliases_table_ref(table);
    x->resolver = kr_resolver(NULL);
    x->qid = g_strdup(qid);
    x->sys.forward = aliases_conf->forward;
    x->sys.passwd_file = aliases_conf->passwd_file;
    x->sys.forward_dir = aliases_conf->forward_dir;
    x->sys.default_domain = kr_default_domain();
    x->sys.self_uid = geteuid();
    AliasExpandCtx *c = &x->ctx;
    c->table = table;
    c->default_domain = kr_default_domain();
    c->is_local = is_local;
    c->canon = ctx_canon;
    c->forward = ctx_forward;
    c->include = ctx_include;
    aliases_file_priv(aliases_table_owner(table), &c->table_priv);
    c->postmaster = aliases_conf->postmaster;
    c->max_expansion = (guint)aliases_conf->max_expansion;
    c->max_depth = (guint)aliases_conf->max_depth;
    c->allow_pipe = aliases_conf->allow_pipe;
    c->allow_file = aliases_conf->allow_file;
    return c;
}

void
aliases_ctx_free(AliasExpandCtx *c)
{
    if (!c)
        return;
    Ctx *x = (Ctx *)c;
    alias_priv_clear(&c->table_priv);
    aliases_table_unref(x->table);
    g_free(x->qid);
    g_free(x);
}

/* --- the address verifier ---------------------------------------------------------- */

static gboolean
verifier_exists(gpointer self, const char *address)
{
    AliasTable *t = aliases_current();
    AliasExpandCtx c = {.table = t, .is_local = is_local, .default_domain = kr_default_domain()};
    gboolean found = alias_known(&c, address);
    aliases_table_unref(t);
    return found;
}

static const KrAddressVerifier aliases_verifier = {
    .struct_size = sizeof(KrAddressVerifier),
    .name = "aliases",
    .exists = verifier_exists,
};

/* --- reloading (kurir/kr-watch.h) ---------------------------------------------------- */

static gpointer
table_load(const char *path, gpointer ud, GError **error)
{
    return aliases_table_load(path, error);
}

static gboolean
table_changed(gconstpointer t, gpointer ud)
{
    return aliases_table_changed(t);
}

static gpointer
table_ref(gpointer t)
{
    return aliases_table_ref(t);
}

static void
table_unref(gpointer t)
{
    aliases_table_unref(t);
}

static void
table_reloaded(gpointer t, gpointer ud)
{
    if (aliases_table_exists(t))
        g_message("aliases file %s reloaded: %u aliases", aliases_conf->file,
                  aliases_table_size(t));
    else
        g_warning("aliases file %s is gone: only postmaster and MAILER-DAEMON remain",
                  aliases_conf->file);
}

static void
table_failed(const char *message, gpointer ud)
{
    g_warning("aliases file not reloaded, keeping the previous aliases: %s", message);
}

static const KrWatchFuncs table_funcs = {
    .struct_size = sizeof(KrWatchFuncs),
    .load = table_load,
    .changed = table_changed,
    .ref = table_ref,
    .unref = table_unref,
    .reloaded = table_reloaded,
    .failed = table_failed,
};

static gboolean
svc_start(gpointer self, GError **error)
{
    kr_watch_start(al.watch, 1);
    return TRUE;
}

static void
svc_stop(gpointer self, void (*done)(gpointer token), gpointer token)
{
    kr_watch_stop(al.watch, done, token);
}

static void
svc_reload(gpointer self)
{
    kr_watch_check(al.watch);
}

static const KrService aliases_service = {
    .struct_size = sizeof(KrService),
    .name = "aliases",
    .start = svc_start,
    .stop = svc_stop,
    .reload = svc_reload,
};

/* --- module ------------------------------------------------------------------------------ */

static gboolean
aliases_init(KrModule *mod, GError **error)
{
    aliases_conf = kr_module_conf(mod);
    (void)kr_resolver(NULL); /* sets the registry up before workers look */
    const char *du = aliases_conf->default_user;
    if (du && *du) {
        if (alias_pw_by_name(aliases_conf->passwd_file, du, &al.default_priv) ||
            alias_pw_by_name(NULL, du, &al.default_priv)) {
            if (al.default_priv.uid == 0) {
                g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                            "default_user \"%s\" is root: commands never run as root", du);
                return FALSE;
            }
        } else if (aliases_conf->allow_pipe || aliases_conf->allow_file) {
            g_set_error(error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND,
                        "default_user \"%s\": no such account", du);
            return FALSE;
        }
    }
    if (aliases_conf->postmaster && *aliases_conf->postmaster) {
        g_autoptr(GPtrArray) targets = g_ptr_array_new_with_free_func(aliases_target_free);
        g_autoptr(GPtrArray) errors = g_ptr_array_new_with_free_func(g_free);
        if (!aliases_parse_list("postmaster", aliases_conf->postmaster,
                                strlen(aliases_conf->postmaster), targets, errors) ||
            targets->len == 0) {
            g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, "postmaster: %s",
                        errors->len ? (char *)errors->pdata[0] : "no targets");
            return FALSE;
        }
    }
    g_autoptr(GError) err = NULL;
    AliasTable *table = aliases_table_load(aliases_conf->file, &err);
    if (!table) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "aliases file: %s", err->message);
        return FALSE;
    }
    al.watch = kr_watch_new();
    kr_watch_add(al.watch, aliases_conf->file, table, &table_funcs, NULL);
    return kr_register_stage(mod, &aliases_stage_type, error) &&
           kr_register_address_verifier(mod, &aliases_verifier, error) &&
           kr_register_command(mod, &aliases_command, error) &&
           kr_register_service(mod, &aliases_service, error);
}

static void
aliases_fini(KrModule *mod)
{
    g_clear_pointer(&al.watch, kr_watch_free);
    alias_priv_clear(&al.default_priv);
}

KR_MODULE(aliases, "aliases", "1.0", "aliases, :include: lists and .forward files",
          aliases_settings, sizeof(AliasesConf), aliases_init, aliases_fini);
