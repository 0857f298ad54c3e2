/* SPDX-License-Identifier: MIT */
/*
 * rewrite.c - the rewrite module (trivial-rewrite): canonical addresses
 * and where each recipient goes.
 *
 * Provides:
 *   resolver "rewrite"      kr_resolver(): the queue manager asks it for
 *                           every recipient's destination
 *                           ("transport:nexthop") - fast, thread-safe
 *   stage type "resolve"    delivery side, after qmgr: resolves each
 *                           recipient of the job and routes it by its
 *                           transport: label local, smtp, relay or error
 *   address verifier        an address of a served domain that a map
 *     "rewrite"             sends elsewhere counts as existing (SMTP RCPT
 *                           accepts it) when its target exists or is remote
 *   command "resolve"       kurir resolve ADDRESS... : what happens and why
 *   service "rewrite"       maps re-read when their files change (checked
 *                           every second in a worker thread) and on SIGHUP
 *                           (kurir/kr-watch.h)
 *
 * Module settings (the `rewrite` group of kurir.conf), with defaults:
 *   canonical_map  ""   address map applied first (path, relative to DATA_DIR)
 *   virtual_map    ""   address map applied second
 *   transport_map  ""   transport per address/domain (local, smtp[:hop],
 *                       relay:hop, error[:5.X.Y text])
 *   relayhost      ""   next hop for all remote mail ("[host]:port");
 *                       "" = deliver to the MX hosts of each domain
 * "" means no map. Formats: rewrite-map.h; rules: rewrite-resolve.h.
 *
 * THE STAGE
 *   Per recipient it sets the recipient attributes "transport",
 *   "nexthop" and "address" (the rewritten address; delivery stages send
 *   there, not to the queued one), and for local mail "mailbox" (what the
 *   local stage delivers into). A recipient resolved to "error" is set
 *   FAILED with the map's reply (550 5.1.3 for a bad address) and routed
 *   to "error" (the default pipeline sends it to the bounce node, which
 *   reports it with that reply). Nothing is changed in the queue file:
 *   a retry resolves again, with the maps as they are then.
 *
 * MAPS
 *   Loaded at start-up (a map with errors stops start-up, listing every
 *   FILE:LINE). While running, a map whose file changed is re-read in a
 *   worker thread; one that fails to parse is reported and the previous
 *   map kept; a map file that disappears becomes empty. Lookups take a
 *   reference to the current maps under a mutex: worker threads may
 *   resolve too (the aliases module does).
 */
#include <kurir/kurir.h>
#include "rewrite-resolve.h"

#include <gio/gio.h>
#include <kurir/kr-watch.h>
#include <stdio.h>
#include <string.h>
#include <sysexits.h>

typedef struct {
    char *canonical_map;
    char *virtual_map;
    char *transport_map;
    char *relayhost;
} RewriteConf;

static const KrSetting rewrite_settings[] = {
    KR_SETTING("canonical_map", KR_SET_PATH, RewriteConf, canonical_map, "", 0, 0,
               "address map applied first (\"\": none)"),
    KR_SETTING("virtual_map", KR_SET_PATH, RewriteConf, virtual_map, "", 0, 0,
               "address map applied second (\"\": none)"),
    KR_SETTING("transport_map", KR_SET_PATH, RewriteConf, transport_map, "", 0, 0,
               "transport per address or domain (\"\": none)"),
    KR_SETTING("relayhost", KR_SET_STRING, RewriteConf, relayhost, "", 0, 0,
               "next hop for all remote mail, e.g. \"[smtp.example.net]:587\" (\"\": by MX)"),
    KR_SETTING_END,
};

enum { M_CANONICAL, M_VIRTUAL, M_TRANSPORT, M_N };
static const char *const map_names[M_N] = {"canonical_map", "virtual_map", "transport_map"};
static const RwMapKind map_kinds[M_N] = {RW_MAP_ADDRESS, RW_MAP_ADDRESS, RW_MAP_TRANSPORT};

static struct {
    RewriteConf *conf;
    const char *paths[M_N];
    KrWatch *watch; /* the configured maps */
    int slot[M_N];  /* map i is watch file slot[i]; -1: not configured */
} rw;

/* --- resolving ------------------------------------------------------------ */

static gboolean
is_local(const char *domain)
{
    return kr_domain_is_local(domain);
}

static void
resolve_steps(const char *address, KrResolution *out, GString *steps)
{
    RwMap *m[M_N];
    for (int i = 0; i < M_N; i++)
        m[i] = rw.slot[i] < 0 ? NULL : kr_watch_get(rw.watch, (guint)rw.slot[i]);
    RwContext ctx = {
        .default_domain = kr_default_domain(),
        .is_local = is_local,
        .relayhost = rw.conf->relayhost,
        .canonical = m[M_CANONICAL],
        .virtual_ = m[M_VIRTUAL],
        .transport = m[M_TRANSPORT],
    };
    rw_resolve(&ctx, address, out, steps);
    for (int i = 0; i < M_N; i++)
        rw_map_unref(m[i]);
}

static gboolean
rw_resolver_resolve(gpointer self, const char *address, KrResolution *out)
{
    resolve_steps(address, out, NULL);
    return TRUE;
}

static const KrResolver rewrite_resolver = {
    .struct_size = sizeof(KrResolver),
    .name = "rewrite",
    .resolve = rw_resolver_resolve,
};

/* --- the address verifier -------------------------------------------------- */

static __thread int verify_depth;

static gboolean
rw_exists(gpointer self, const char *address)
{
    if (verify_depth > 0)
        return FALSE; /* asked again through kr_local_address_exists below */
    KrResolution r = {.struct_size = sizeof r};
    resolve_steps(address, &r, NULL);
    gboolean found = FALSE;
    if (strcmp(r.transport, "error") == 0) {
        found = FALSE;
    } else if (strcmp(r.transport, "local") != 0) {
        found = TRUE; /* a map sends this served address elsewhere */
    } else if (g_ascii_strcasecmp(r.address, address) != 0) {
        verify_depth++;
        found = kr_local_address_exists(r.address);
        verify_depth--;
    }
    kr_resolution_clear(&r);
    return found;
}

static const KrAddressVerifier rewrite_verifier = {
    .struct_size = sizeof(KrAddressVerifier),
    .name = "rewrite",
    .exists = rw_exists,
};

/* --- the stage ---------------------------------------------------------------- */

static void
resolve_process(KrStage *stage, KrJob *job)
{
    KrMsg *msg = kr_job_msg(job);
    const char *id = kr_msg_queue_id(msg);
    for (guint i = 0; i < kr_job_rcpt_count(job); i++) {
        KrRcpt *r = kr_job_rcpt(job, i);
        KrResolution res = {.struct_size = sizeof res};
        resolve_steps(r->address, &res, NULL);
        kr_rcpt_set_attr(r, "transport", res.transport);
        kr_rcpt_set_attr(r, "nexthop", res.nexthop);
        kr_rcpt_set_attr(r, "address", res.address);
        if (strcmp(res.transport, "local") == 0)
            kr_rcpt_set_attr(r, "mailbox", res.address);
        if (strcmp(res.transport, "error") == 0) {
            g_message("%s: to=<%s>, relay=none, status=bounced (%d %s %s)", id, r->address,
                      res.code, res.ecode, res.reason);
            kr_rcpt_set_result(r, KR_RCPT_FAILED, res.code, res.ecode, res.reason);
        } else if (strcmp(res.address, r->address) != 0) {
            g_message("%s: to=<%s>, rewritten to <%s>, transport=%s:%s", id, r->address,
                      res.address, res.transport, res.nexthop);
        } else {
            g_debug("%s: to=<%s>, transport=%s:%s (%s)", id, r->address, res.transport, res.nexthop,
                    res.reason);
        }
        kr_job_rcpt_route(job, i, res.transport);
        kr_resolution_clear(&res);
    }
    kr_job_continue(job);
}

static const char *const resolve_labels[] = {"local", "smtp", "relay", "error", NULL};

static const KrStageType resolve_type = {
    .struct_size = sizeof(KrStageType),
    .name = "resolve",
    .summary = "resolve each recipient (trivial-rewrite) and route it by transport",
    .labels = resolve_labels,
    .process = resolve_process,
};

/* --- `kurir resolve` ----------------------------------------------------------- */

static int
resolve_cmd(KrModule *mod, int argc, char **argv)
{
    if (argc < 2 || argv[1][0] == '-') {
        fprintf(stderr, "usage: kurir resolve ADDRESS...\n");
        return EX_USAGE;
    }
    for (int i = 1; i < argc; i++) {
        KrResolution r = {.struct_size = sizeof r};
        g_autoptr(GString) steps = g_string_new(NULL);
        resolve_steps(argv[i], &r, steps);
        g_autofree char *shown = g_strescape(argv[i], NULL);
        printf("%s\n", shown);
        g_autofree char *addr = g_strescape(r.address, NULL);
        printf("  address:   %s\n", addr);
        printf("  transport: %s\n", r.transport);
        if (strcmp(r.transport, "error") == 0) {
            printf("  reply:     %d %s %s\n", r.code, r.ecode, r.reason);
        } else {
            printf("  nexthop:   %s\n", r.nexthop);
        }
        printf("  why:       %s\n", steps->len ? steps->str : "nothing to change");
        if (strcmp(r.transport, "local") == 0)
            printf("  exists:    %s\n", kr_local_address_exists(r.address)
                                            ? "yes (a user, an alias or a mapped address)"
                                            : "no (delivery would bounce: user unknown)");
        kr_resolution_clear(&r);
    }
    return 0;
}

static const KrCommand resolve_command = {
    .struct_size = sizeof(KrCommand),
    .name = "resolve",
    .usage = "resolve ADDRESS...       how an address is rewritten and delivered, and why",
    .run = resolve_cmd,
};

/* --- maps: load, watch, reload (kurir/kr-watch.h) ------------------------------------ */

/* ud: the map's index (M_*). */
static gpointer
map_load(const char *path, gpointer ud, GError **error)
{
    return rw_map_load(path, map_kinds[GPOINTER_TO_INT(ud)], error);
}

static gboolean
map_changed(gconstpointer m, gpointer ud)
{
    return rw_map_changed(m);
}

static gpointer
map_ref(gpointer m)
{
    return rw_map_ref(m);
}

static void
map_unref(gpointer m)
{
    rw_map_unref(m);
}

static void
map_reloaded(gpointer m, gpointer ud)
{
    int i = GPOINTER_TO_INT(ud);
    if (rw_map_exists(m))
        g_message("%s %s reloaded: %u entries", map_names[i], rw.paths[i], rw_map_size(m));
    else
        g_warning("%s %s is gone: the map is empty now", map_names[i], rw.paths[i]);
}

static void
map_failed(const char *message, gpointer ud)
{
    g_warning("%s not reloaded, keeping the previous map: %s", map_names[GPOINTER_TO_INT(ud)],
              message);
}

static const KrWatchFuncs map_funcs = {
    .struct_size = sizeof(KrWatchFuncs),
    .load = map_load,
    .changed = map_changed,
    .ref = map_ref,
    .unref = map_unref,
    .reloaded = map_reloaded,
    .failed = map_failed,
};

static gboolean
svc_start(gpointer self, GError **error)
{
    kr_watch_start(rw.watch, 1);
    return TRUE;
}

static void
svc_stop(gpointer self, void (*done)(gpointer token), gpointer token)
{
    kr_watch_stop(rw.watch, done, token);
}

static void
svc_reload(gpointer self)
{
    kr_watch_check(rw.watch);
}

static const KrService rewrite_service = {
    .struct_size = sizeof(KrService),
    .name = "rewrite",
    .start = svc_start,
    .stop = svc_stop,
    .reload = svc_reload,
};

/* --- module ------------------------------------------------------------------------ */

static gboolean
rewrite_init(KrModule *mod, GError **error)
{
    rw.conf = kr_module_conf(mod);
    if (rw.conf->relayhost && *rw.conf->relayhost) {
        g_autofree char *v = g_strconcat("relay:", rw.conf->relayhost, NULL);
        RwTransport t;
        g_autoptr(GError) err = NULL;
        if (!rw_transport_parse(v, &t, &err)) {
            g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, "relayhost: %s",
                        err->message);
            return FALSE;
        }
        rw_transport_clear(&t);
    }
    rw.paths[M_CANONICAL] = rw.conf->canonical_map;
    rw.paths[M_VIRTUAL] = rw.conf->virtual_map;
    rw.paths[M_TRANSPORT] = rw.conf->transport_map;
    rw.watch = kr_watch_new();
    for (int i = 0; i < M_N; i++)
        rw.slot[i] = -1;
    for (int i = 0; i < M_N; i++) {
        if (!rw.paths[i] || !*rw.paths[i])
            continue;
        g_autoptr(GError) err = NULL;
        RwMap *m = rw_map_load(rw.paths[i], map_kinds[i], &err);
        if (!m) {
            g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "%s: %s", map_names[i],
                        err->message);
            return FALSE;
        }
        rw.slot[i] = (int)kr_watch_add(rw.watch, rw.paths[i], m, &map_funcs, GINT_TO_POINTER(i));
        if (!rw_map_exists(m))
            g_warning("%s %s does not exist (yet): the map is empty", map_names[i], rw.paths[i]);
    }
    return kr_register_resolver(mod, &rewrite_resolver, error) &&
           kr_register_stage(mod, &resolve_type, error) &&
           kr_register_address_verifier(mod, &rewrite_verifier, error) &&
           kr_register_command(mod, &resolve_command, error) &&
           kr_register_service(mod, &rewrite_service, error);
}

static void
rewrite_fini(KrModule *mod)
{
    g_clear_pointer(&rw.watch, kr_watch_free);
}

KR_MODULE(rewrite, "rewrite", "1.0", "trivial-rewrite: canonical addresses, maps, transports",
          rewrite_settings, sizeof(RewriteConf), rewrite_init, rewrite_fini);
