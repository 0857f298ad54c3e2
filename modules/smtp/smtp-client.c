/* SPDX-License-Identifier: MIT */
/*
 * NAME
 *   smtp-client.c - the SMTP client: stage type "smtp-client", which
 *   delivers recipients to remote SMTP servers (RFC 5321).
 *
 * DESCRIPTION
 *   A terminal, delivery-side stage (the queue manager's jobs reach it
 *   through the graph, e.g. qmgr -> resolve -> smtp-out). Each job's
 *   recipients are grouped by destination (their domain, or the
 *   relayhost); each group is one SMTP transaction (a delivery) on a
 *   session to that destination. Per recipient the result is
 *     2xx after the content            DELIVERED
 *     4xx (any step), a connection or
 *     protocol error, a timeout        DEFERRED (the queue manager retries)
 *     5xx (MAIL, RCPT, DATA, content)  FAILED (bounced, for that recipient
 *                                      only), as are permanent resolver
 *                                      failures (no such domain, null MX)
 *   and the job continues when every group is done.
 *
 *   Next hop of a recipient: the node's relayhost if set; else the
 *   recipient attribute "nexthop" set by the resolve stage (the domain for
 *   transport smtp, "[host]:port" for relay and transport map entries);
 *   else the recipient's domain. Mail goes to the attribute "address"
 *   (the rewritten address) if set, else to the queued address.
 *
 *   Destinations: at most max_per_destination sessions each; deliveries
 *   beyond wait in the destination's queue (FIFO) for the next free
 *   session. A finished session takes the next waiting delivery at once
 *   (connection reuse, up to max_reuse transactions) or stays open idle
 *   for cache_time, for the next job to the same place. If a session
 *   cannot be set up with any address (refused, timeouts, bad greeting),
 *   and no other session of that destination is alive, every delivery
 *   waiting for the destination is deferred with that error (no
 *   connection storm on a dead host).
 *
 *   Next hops: see smtp-client-dns.c (resolver_override, MX, A/AAAA, in
 *   worker threads). TLS: STARTTLS when offered (tls = "may", no
 *   certificate checks), required with tls = "encrypt" and always for
 *   AUTH. relayhost with relay_user: AUTH PLAIN (or LOGIN) after
 *   STARTTLS, the password read once at start from relay_password_file
 *   (its first line; keep the file mode 0600).
 *
 * NODE SETTINGS (pipeline nodes with type = "smtp-client"), with defaults
 *   relayhost           = ""      "" delivers to the recipients' MX hosts;
 *                                 "[host]:port" (no MX lookup) or
 *                                 "host[:port]" sends everything there
 *   relay_user          = ""      AUTH user for the relayhost, and for
 *                                 recipients of transport "relay" (the
 *                                 rewrite module's relayhost): "" no AUTH
 *   relay_password_file = "relay-password"  its password (first line)
 *   tls                 = "may"   "none", "may" (STARTTLS if offered),
 *                                 "encrypt" (defer unless TLS)
 *   helo_name           = ""      EHLO name ("": core.hostname)
 *   port                = 25      port of MX hosts and of next hops
 *                                 given without one
 *   resolver_override   = [ ]     "name = 192.0.2.1[:port], [2001:db8::1]:2525"
 *                                 entries used instead of DNS for that
 *                                 name (a domain, an MX host, the relayhost)
 *   dns                 = true    false: names not in resolver_override
 *                                 are deferred (tests: never any DNS)
 *   connect_timeout     = "30s"   TCP connect, per address
 *   greeting_timeout    = "5m"    the 220 greeting
 *   command_timeout     = "5m"    each reply to EHLO, MAIL, RCPT, DATA, ...
 *   data_timeout        = "10m"   sending content (no progress) and the
 *                                 reply after the final dot
 *   max_per_destination = 10      sessions per destination at once
 *   cache_time          = "5s"    idle sessions kept for reuse (0: none)
 *   max_reuse           = 100     transactions per session
 *   max_addresses       = 5       addresses tried per session (MX hosts,
 *                                 A and AAAA records in order)
 *
 * LOG
 *   ID: to=<rcpt>, relay=host[ip]:port, delay=1.2, dsn=2.0.0, status=sent (250 ...)
 *   (status deferred / bounced likewise, with the reason).
 *
 * SEE ALSO
 *   smtp-client.h, smtp-client-session.c, smtp-client-dns.c,
 *   t/smtp-client-e2e.py, t/lib/smtpsink.py
 */
#include "smtp-client.h"
#include <string.h>

static const char *const tls_choices[] = {"none", "may", "encrypt", NULL};

static const KrSetting smtpc_settings[] = {
    KR_SETTING("relayhost", KR_SET_STRING, SmtpcConf, relayhost, "", 0, 0,
               "send everything to this next hop (\"[host]:port\"; \"\": MX lookup)"),
    KR_SETTING("relay_user", KR_SET_STRING, SmtpcConf, relay_user, "", 0, 0,
               "AUTH user name for the relayhost (\"\": no AUTH)"),
    KR_SETTING("relay_password_file", KR_SET_PATH, SmtpcConf, relay_password_file, "relay-password",
               0, 0, "file whose first line is the relayhost password"),
    KR_SETTING_ENUM("tls", SmtpcConf, tls, "may", tls_choices,
                    "STARTTLS: none, may (opportunistic), encrypt (required)"),
    KR_SETTING("helo_name", KR_SET_STRING, SmtpcConf, helo_name, "", 0, 0,
               "name sent in EHLO (\"\": core.hostname)"),
    KR_SETTING("port", KR_SET_INT, SmtpcConf, port, "25", 1, 65535, "SMTP port of next hops"),
    KR_SETTING("resolver_override", KR_SET_STRLIST, SmtpcConf, resolver_override, NULL, 0, 0,
               "\"name = address[:port], ...\" used instead of DNS"),
    KR_SETTING("dns", KR_SET_BOOL, SmtpcConf, dns, "true", 0, 0,
               "look up names not in resolver_override in the DNS"),
    KR_SETTING("connect_timeout", KR_SET_DURATION, SmtpcConf, connect_timeout, "30s", 1, 3600,
               "TCP connect timeout per address"),
    KR_SETTING("greeting_timeout", KR_SET_DURATION, SmtpcConf, greeting_timeout, "5m", 1, 3600,
               "wait for the server greeting"),
    KR_SETTING("command_timeout", KR_SET_DURATION, SmtpcConf, command_timeout, "5m", 1, 3600,
               "wait for each reply"),
    KR_SETTING("data_timeout", KR_SET_DURATION, SmtpcConf, data_timeout, "10m", 1, 7200,
               "content sending without progress, and the reply to the final dot"),
    KR_SETTING("max_per_destination", KR_SET_INT, SmtpcConf, max_per_destination, "10", 1, 1000,
               "sessions per destination at once"),
    KR_SETTING("cache_time", KR_SET_DURATION, SmtpcConf, cache_time, "5s", 0, 3600,
               "keep idle sessions this long for reuse (0: close at once)"),
    KR_SETTING("max_reuse", KR_SET_INT, SmtpcConf, max_reuse, "100", 1, 100000,
               "transactions per session"),
    KR_SETTING("max_addresses", KR_SET_INT, SmtpcConf, max_addresses, "5", 1, 100,
               "addresses tried per session"),
    KR_SETTING_END,
};

static GPtrArray *all_nodes; /* SmtpcNode * */
static gboolean stopping;

gboolean
smtpc_stopping(void)
{
    return stopping || kr_shutting_down();
}

/* ---- results ---- */

void
smtpc_rcpt_result(SmtpcDelivery *d, guint k, KrRcptState state, int code, const char *ecode,
                  const char *relay, const char *fmt, ...)
{
    if (g_array_index(d->done, gboolean, k))
        return;
    va_list ap;
    va_start(ap, fmt);
    g_autofree char *diag = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    guint idx = g_array_index(d->rcpts, guint, k);
    KrRcpt *r = kr_job_rcpt(d->sj->job, idx);
    double delay = (double)g_get_real_time() / G_USEC_PER_SEC - (double)kr_msg_arrival(d->sj->msg);
    const char *status = state == KR_RCPT_DELIVERED  ? "sent"
                         : state == KR_RCPT_DEFERRED ? "deferred"
                                                     : "bounced";
    g_message("%s: to=<%s>, relay=%s, delay=%.1f, dsn=%s, status=%s (%s)",
              kr_msg_queue_id(d->sj->msg), smtpc_rcpt_address(r), relay ? relay : "none",
              delay < 0 ? 0.0 : delay, ecode, status, diag);
    kr_job_rcpt_done(d->sj->job, idx, state, code, ecode, diag);
    g_array_index(d->done, gboolean, k) = TRUE;
    d->n_left--;
}

void
smtpc_delivery_fail(SmtpcDelivery *d, KrRcptState state, int code, const char *ecode,
                    const char *relay, const char *diag)
{
    for (guint k = 0; k < d->rcpts->len; k++)
        smtpc_rcpt_result(d, k, state, code, ecode, relay, "%s", diag);
    smtpc_delivery_end(d);
}

static void
job_unref_delivery(SmtpcJob *sj)
{
    if (--sj->pending > 0)
        return;
    KrJob *job = sj->job;
    kr_msg_unref(sj->msg);
    g_free(sj);
    kr_job_continue(job);
}

void
smtpc_delivery_end(SmtpcDelivery *d)
{
    for (guint k = 0; k < d->rcpts->len; k++)
        if (!g_array_index(d->done, gboolean, k))
            smtpc_rcpt_result(d, k, KR_RCPT_DEFERRED, 451, "4.3.0", NULL,
                              "delivery ended without a result");
    SmtpcJob *sj = d->sj;
    g_array_unref(d->rcpts);
    g_array_unref(d->done);
    g_free(d);
    job_unref_delivery(sj);
}

/* ---- destinations ---- */

static void
dest_free(SmtpcDest *dest)
{
    smtpc_target_clear(&dest->target);
    g_free(dest->key);
    g_free(dest);
}

static void
dest_maybe_free(SmtpcDest *dest)
{
    if (dest->n_sessions == 0 && g_queue_is_empty(&dest->waiting) &&
        g_queue_is_empty(&dest->idle)) {
        g_hash_table_remove(dest->node->dests, dest->key);
        dest_free(dest);
    }
}

/* Give waiting deliveries to idle sessions, and open sessions while
 * more deliveries wait than sessions are being set up. */
static void
dest_dispatch(SmtpcDest *dest)
{
    while (!g_queue_is_empty(&dest->waiting) && !g_queue_is_empty(&dest->idle)) {
        SmtpcSession *s = g_queue_pop_head(&dest->idle);
        smtpc_session_deliver(s, g_queue_pop_head(&dest->waiting));
    }
    while (g_queue_get_length(&dest->waiting) > dest->n_setup &&
           dest->n_sessions < (guint)dest->node->conf->max_per_destination && !smtpc_stopping())
        smtpc_session_open(dest);
}

SmtpcDelivery *
smtpc_dest_next(SmtpcDest *dest)
{
    return g_queue_pop_head(&dest->waiting);
}

void
smtpc_dest_session_gone(SmtpcDest *dest, SmtpcSession *s, gboolean was_setup)
{
    g_queue_remove(&dest->idle, s);
    dest->n_sessions--;
    if (was_setup)
        dest->n_setup--;
    dest_dispatch(dest);
    dest_maybe_free(dest);
}

void
smtpc_dest_setup_failed(SmtpcDest *dest, int code, const char *ecode, const char *relay,
                        const char *diag)
{
    /* Also when other sessions are being set up: they would most likely
     * fail the same way, and replacing each failed session with a new
     * one would never end. Ready sessions find nothing waiting. */
    KrRcptState st = code >= 500 ? KR_RCPT_FAILED : KR_RCPT_DEFERRED;
    SmtpcDelivery *d;
    while ((d = g_queue_pop_head(&dest->waiting)))
        smtpc_delivery_fail(d, st, code, ecode, relay, diag);
}

/* The destination for next hop `spec` ("domain", "[host]:port", ...);
 * relay: AUTH is wanted there (relay_user). NULL if spec is no next hop. */
static SmtpcDest *
dest_get(SmtpcNode *node, const char *spec, gboolean relay)
{
    SmtpcTarget t;
    if (!smtpc_target_parse(spec, (guint16)node->conf->port, &t, NULL))
        return NULL;
    g_autofree char *key = g_strdup_printf("%s%s%s%s:%u", relay ? "relay:" : "", t.no_mx ? "[" : "",
                                           t.host, t.no_mx ? "]" : "", t.port);
    SmtpcDest *dest = g_hash_table_lookup(node->dests, key);
    if (dest) {
        smtpc_target_clear(&t);
        return dest;
    }
    dest = g_new0(SmtpcDest, 1);
    dest->node = node;
    dest->target = t;
    dest->relay = relay;
    g_queue_init(&dest->waiting);
    g_queue_init(&dest->idle);
    dest->key = g_steal_pointer(&key);
    g_hash_table_insert(node->dests, dest->key, dest);
    return dest;
}

const char *
smtpc_rcpt_address(const KrRcpt *r)
{
    const char *a = kr_rcpt_attr(r, "address");
    return a && *a ? a : r->address;
}

/* ---- jobs ---- */

typedef struct {
    SmtpcJob *sj;
} SizeOp;

static void
size_work(gpointer p)
{
    SizeOp *op = p;
    op->sj->size = kr_msg_size(op->sj->msg); /* reads the header block once */
}

static void
size_done(gpointer p)
{
    SizeOp *op = p;
    SmtpcJob *sj = op->sj;
    SmtpcNode *node = sj->node;
    KrJob *job = sj->job;
    g_free(op);
    GHashTable *by_dest = g_hash_table_new(g_direct_hash, g_direct_equal);
    GPtrArray *order = g_ptr_array_new();
    sj->pending = 1; /* held until every delivery is submitted */
    for (guint i = 0; i < kr_job_rcpt_count(job); i++) {
        KrRcpt *r = kr_job_rcpt(job, i);
        const char *addr = smtpc_rcpt_address(r);
        const char *domain = kr_addr_domain(addr);
        if (!smtpc_address_ok(addr, FALSE, NULL) || !domain || !*domain) {
            g_message("%s: to=<%s>, relay=none, dsn=5.1.3, status=bounced (bad recipient "
                      "address syntax)",
                      kr_msg_queue_id(sj->msg), r->address);
            kr_job_rcpt_done(job, i, KR_RCPT_FAILED, 553, "5.1.3", "bad recipient address syntax");
            continue;
        }
        /* The next hop: the node's relayhost, else what the resolve stage
         * chose (transport smtp: the domain; relay or a transport map
         * entry: "[host]:port"), else the recipient's domain. */
        const char *transport = kr_rcpt_attr(r, "transport");
        const char *nexthop = kr_rcpt_attr(r, "nexthop");
        gboolean relay = node->have_relay || g_strcmp0(transport, "relay") == 0;
        const char *spec = node->have_relay      ? node->conf->relayhost
                           : nexthop && *nexthop ? nexthop
                                                 : domain;
        SmtpcDest *dest = dest_get(node, spec, relay);
        if (!dest) {
            g_warning("%s: to=<%s>: next hop '%s' is not a host name or [address]; deferred",
                      kr_msg_queue_id(sj->msg), r->address, spec);
            kr_job_rcpt_done(job, i, KR_RCPT_DEFERRED, 451, "4.3.5", "bad next hop");
            continue;
        }
        SmtpcDelivery *d = g_hash_table_lookup(by_dest, dest);
        if (!d) {
            d = g_new0(SmtpcDelivery, 1);
            d->sj = sj;
            d->dest = dest;
            d->rcpts = g_array_new(FALSE, FALSE, sizeof(guint));
            d->done = g_array_new(FALSE, TRUE, sizeof(gboolean));
            g_hash_table_insert(by_dest, dest, d);
            g_ptr_array_add(order, d);
            sj->pending++;
        }
        gboolean no = FALSE;
        g_array_append_val(d->rcpts, i);
        g_array_append_val(d->done, no);
        d->n_left++;
    }
    g_hash_table_destroy(by_dest);
    for (guint i = 0; i < order->len; i++) {
        SmtpcDelivery *d = order->pdata[i];
        if (smtpc_stopping()) {
            smtpc_delivery_fail(d, KR_RCPT_DEFERRED, 451, "4.3.2", NULL,
                                "mail system is shutting down");
            continue;
        }
        g_queue_push_tail(&d->dest->waiting, d);
        dest_dispatch(d->dest);
    }
    g_ptr_array_unref(order);
    job_unref_delivery(sj);
}

static void
smtpc_process(KrStage *stage, KrJob *job)
{
    SmtpcJob *sj = g_new0(SmtpcJob, 1);
    sj->job = job;
    sj->msg = kr_msg_ref(kr_job_msg(job));
    sj->node = kr_stage_data(stage);
    sj->started = g_get_monotonic_time();
    SizeOp *op = g_new0(SizeOp, 1);
    op->sj = sj;
    kr_worker_run(size_work, size_done, op);
}

/* ---- nodes ---- */

static void
node_free(SmtpcNode *node)
{
    if (node->override)
        g_hash_table_destroy(node->override);
    if (node->dests)
        g_hash_table_destroy(node->dests);
    smtpc_target_clear(&node->relay);
    if (node->password) {
        memset(node->password, 0, strlen(node->password));
        g_free(node->password);
    }
    g_free(node);
}

static gboolean
read_password(const char *path, char **out, GError **error)
{
    g_autofree char *text = NULL;
    gsize len = 0;
    if (!g_file_get_contents(path, &text, &len, error)) {
        g_prefix_error(error, "relay_password_file: ");
        return FALSE;
    }
    char *nl = strpbrk(text, "\r\n");
    if (nl)
        *nl = 0;
    if (!*text || strlen(text) > 255) {
        g_set_error(error, SMTPC_ERROR, 0, "relay_password_file %s: no password on its first line",
                    path);
        memset(text, 0, len);
        return FALSE;
    }
    *out = g_strdup(text);
    memset(text, 0, len);
    return TRUE;
}

static gboolean
smtpc_create(KrStage *stage, GError **error)
{
    SmtpcConf *c = kr_stage_conf(stage);
    SmtpcNode *node = g_new0(SmtpcNode, 1);
    node->stage = stage;
    node->name = kr_stage_name(stage);
    node->conf = c;
    node->override = smtpc_override_parse(c->resolver_override, (guint16)c->port, error);
    if (!node->override)
        goto fail;
    if (c->relayhost && *c->relayhost) {
        if (!smtpc_target_parse(c->relayhost, (guint16)c->port, &node->relay, error)) {
            g_prefix_error(error, "relayhost: ");
            goto fail;
        }
        node->have_relay = TRUE;
    }
    if (c->relay_user && *c->relay_user) {
        if (c->tls == SMTPC_TLS_NONE) {
            g_set_error(error, SMTPC_ERROR, 0,
                        "relay_user: AUTH is only ever sent over TLS; tls = \"none\" forbids it");
            goto fail;
        }
        if (!read_password(c->relay_password_file, &node->password, error))
            goto fail;
    }
    if (c->tls != SMTPC_TLS_NONE && !(node->tls_ctx = kr_tls_client_ctx(error)))
        goto fail;
    node->dests = g_hash_table_new(g_str_hash, g_str_equal);
    kr_stage_set_data(stage, node);
    if (!all_nodes)
        all_nodes = g_ptr_array_new();
    g_ptr_array_add(all_nodes, node);
    return TRUE;
fail:
    g_prefix_error(error, "pipeline node '%s': ", node->name);
    node_free(node);
    return FALSE;
}

static void
smtpc_destroy(KrStage *stage)
{
    SmtpcNode *node = kr_stage_data(stage);
    if (!node)
        return;
    if (all_nodes)
        g_ptr_array_remove(all_nodes, node);
    /* Sessions still alive at this point (none after a normal stop)
     * keep their destination: leak them rather than free under them. */
    if (g_hash_table_size(node->dests) == 0)
        node_free(node);
    kr_stage_set_data(stage, NULL);
}

const KrStageType smtp_client_stage = {
    .struct_size = sizeof(KrStageType),
    .name = "smtp-client",
    .summary = "deliver to remote SMTP servers (MX, relayhost, STARTTLS, AUTH, PIPELINING)",
    .flags = KR_STAGE_TERMINAL,
    .settings = smtpc_settings,
    .conf_size = sizeof(SmtpcConf),
    .create = smtpc_create,
    .destroy = smtpc_destroy,
    .process = smtpc_process,
};

/* ---- the service: shutdown ---- */

static gboolean
svc_start(gpointer self, GError **error)
{
    stopping = FALSE;
    return TRUE;
}

/* Defer what waits, QUIT idle sessions, abort busy ones: the jobs end
 * and the queue manager records the recipients as deferred. */
static void
svc_stop(gpointer self, void (*done)(gpointer token), gpointer token)
{
    stopping = TRUE;
    GPtrArray *dests = g_ptr_array_new();
    for (guint n = 0; all_nodes && n < all_nodes->len; n++) {
        SmtpcNode *node = all_nodes->pdata[n];
        GHashTableIter it;
        gpointer v;
        g_hash_table_iter_init(&it, node->dests);
        while (g_hash_table_iter_next(&it, NULL, &v))
            g_ptr_array_add(dests, v);
    }
    for (guint i = 0; i < dests->len; i++) {
        SmtpcDest *dest = dests->pdata[i];
        SmtpcDelivery *d;
        while ((d = g_queue_pop_head(&dest->waiting)))
            smtpc_delivery_fail(d, KR_RCPT_DEFERRED, 451, "4.3.2", NULL,
                                "mail system is shutting down");
    }
    g_ptr_array_unref(dests);
    smtpc_sessions_shutdown_all();
    done(token);
}

const KrService smtp_client_service = {
    .struct_size = sizeof(KrService),
    .name = "smtp-client",
    .start = svc_start,
    .stop = svc_stop,
};
