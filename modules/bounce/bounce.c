/* SPDX-License-Identifier: MIT */
/*
 * bounce.c - the bounce module: stage type "bounce", which reports
 * recipients that could not be delivered (or not yet) with RFC 3464
 * delivery status notifications (composed in dsn.c).
 *
 * Stage type "bounce" (KR_STAGE_ENTRY | KR_STAGE_TERMINAL): the queue
 * manager starts a job here at the end of a delivery round with the
 * message's FAILED recipients and, until the message has had its delay
 * warning, its DEFERRED ones; other stages may also route recipients
 * here (a recipient that arrives without a failure gets 550 5.0.0),
 * and its DELIVERED and EXPANDED ones that asked NOTIFY=SUCCESS. It
 * is an entry so it needs no edge in the graph; no per-node settings.
 *
 * For each FAILED recipient of the job:
 *   NOTIFY given without FAILURE (e.g. NOTIFY=NEVER)   no report
 *   sender <> and the message is our own report to     no report, logged:
 *     postmaster (attribute dsn_kind postmaster/copy)  it stops here
 *   sender <> (a bounce, a vacation reply ...)         reported to postmaster
 *                                                      only (never bounce a
 *                                                      bounce)
 *   otherwise                                          reported to the sender
 * and, with postmaster_copy, postmaster gets a copy of each report to a
 * sender (the original's headers only).
 *
 * For each DEFERRED recipient (a delay warning, once per message): if
 * delay_warning is not 0, the message is at least that old, has no
 * "delay_warned" attribute, its sender is not <>, and NOTIFY is not given
 * or includes DELAY, the sender gets a warning (Action: delayed, the
 * headers only). The recipient itself is left alone (still deferred; the
 * queue manager keeps it as it was whatever this stage does), and the
 * message gets the attribute delay_warned (unix time), written to the
 * queue file (kr_msg_rewrite_envelope) before the job ends, so the queue
 * manager stops asking.
 *
 * For each DELIVERED or EXPANDED recipient (a success report, RFC 3461
 * NOTIFY=SUCCESS; the queue manager hands these over at the end of a
 * round until the message's attribute dsn_success lists them): if its
 * NOTIFY includes SUCCESS, the sender is not <>, and the responsibility
 * was not passed on (recipient attribute dsn_passed: set by smtp-client
 * when the next server offered DSN and got the NOTIFY, and by aliases
 * when a single-target expansion kept NOTIFY), the sender gets one report
 * for all of them (Action: delivered, relayed -- recipient attribute
 * remote_mta, set by smtp-client -- or expanded; Status 2.0.0; the
 * headers only unless RET=FULL). The recipients are left alone, and
 * their indexes are added to the message attribute dsn_success (",0,3,"),
 * written to the queue file before the job ends, so the report is not
 * sent again; a report that cannot be queued defers the job (the queue
 * manager keeps the file and asks again). dsn_passed and remote_mta are
 * not persisted: after a crash between the delivery and the report, a
 * relayed recipient may be reported "delivered", or reported although
 * the next server took the NOTIFY (at least once).
 *
 * Every notification (envelope sender <>, From MAILER-DAEMON@hostname)
 * is written as a new spool in a worker thread and run through the
 * pipeline from inject_node, so it is cleaned up and queued like any
 * mail (attributes dsn_for = the original's queue ID, dsn_kind = failure,
 * delay, postmaster or copy). Only when the failure report's job has
 * ended (it is durable) are the failed recipients marked BOUNCED
 * (kr_job_rcpt_done); the job then continues. If that report cannot be
 * written or queued, the job is deferred: the queue manager keeps the
 * recipients FAILED and tries again later. A report the pipeline refuses
 * outright is logged and the recipients are marked BOUNCED (retrying
 * would be refused again). A copy or a warning that cannot be queued is
 * only logged (a warning is tried again next round).
 *
 * Module settings (the `bounce` group of kurir.conf), with defaults:
 *   inject_node      "maildrop"  where notifications enter the pipeline
 *   max_return_size  "512K"      originals larger than this are returned
 *                                as headers only
 *   delay_warning    "4h"        warn the sender about mail still queued
 *                                after this long (0: never)
 *   postmaster_copy  true        postmaster gets a copy of every failure
 *                                report (headers only)
 *   postmaster       ""          where reports to postmaster go ("":
 *                                postmaster@<default domain>)
 *
 * Log (postfix style): "ID: sender non-delivery notification: DSNID",
 * "ID: sender delay notification: DSNID", "ID: postmaster non-delivery
 * notification: DSNID", "ID: postmaster copy: DSNID", "ID: sender
 * delivery status notification: DSNID".
 */
#include "dsn.h"
#include <gio/gio.h>

typedef struct {
    char *inject_node;
    gint64 max_return_size;
    gint64 delay_warning;
    gboolean postmaster_copy;
    char *postmaster;
} BounceConf;

static const KrSetting bounce_settings[] = {
    KR_SETTING("inject_node", KR_SET_STRING, BounceConf, inject_node, "maildrop", 0, 0,
               "pipeline node where DSNs enter"),
    KR_SETTING("max_return_size", KR_SET_SIZE, BounceConf, max_return_size, "512K", 0, 0,
               "larger originals are returned as headers only (0: no limit)"),
    KR_SETTING("delay_warning", KR_SET_DURATION, BounceConf, delay_warning, "4h", 0,
               G_GINT64_CONSTANT(366) * 86400,
               "warn the sender about mail still queued after this long (0: never)"),
    KR_SETTING("postmaster_copy", KR_SET_BOOL, BounceConf, postmaster_copy, "true", 0, 0,
               "send postmaster a copy of every failure report (headers only)"),
    KR_SETTING("postmaster", KR_SET_STRING, BounceConf, postmaster, "", 0, 0,
               "address of postmaster (\"\": postmaster@ the default domain)"),
    KR_SETTING_END,
};

static BounceConf *conf;

/* The notifications of one job. */
enum { N_SENDER, N_POSTMASTER, N_COPY, N_DELAY, N_SUCCESS, N_KINDS };

static const DsnKind kind_of[N_KINDS] = {
    [N_SENDER] = DSN_KIND_FAILURE, [N_POSTMASTER] = DSN_KIND_POSTMASTER, [N_COPY] = DSN_KIND_COPY,
    [N_DELAY] = DSN_KIND_DELAY,    [N_SUCCESS] = DSN_KIND_SUCCESS,
};
static const char *const kind_attr[N_KINDS] = {"failure", "postmaster", "copy", "delay", "success"};
static const char *const kind_log[N_KINDS] = {
    "sender non-delivery notification", "postmaster non-delivery notification", "postmaster copy",
    "sender delay notification", "sender delivery status notification"};

typedef struct {
    GArray *which; /* job recipient indexes it reports (for COPY: those of N_SENDER) */
    DsnRcpt *rcpts;
    char *to;   /* envelope recipient */
    KrMsg *dsn; /* composed spool */
    gboolean wanted;
    KrVerdictKind result;
    char *why; /* text of a DEFER/REJECT */
} Notice;

typedef struct {
    KrJob *job;
    KrMsg *msg;
    GArray *silent; /* job recipient indexes finished without a report */
    Notice n[N_KINDS];
    guint pending;     /* injections running */
    GArray *succ_seen; /* message recipient indexes to add to dsn_success */
    gboolean mark_warned;
    GError *error;
} Bounce;

static void
dsn_rcpts_free(DsnRcpt *r, guint n)
{
    for (guint i = 0; i < n; i++) {
        g_free((char *)r[i].address);
        g_free((char *)r[i].orcpt);
        g_free((char *)r[i].diag);
        g_free((char *)r[i].status);
        g_free((char *)r[i].remote_mta);
    }
    g_free(r);
}

static void
bounce_free(Bounce *b)
{
    for (int k = 0; k < N_KINDS; k++) {
        Notice *n = &b->n[k];
        if (k != N_COPY && n->rcpts)
            dsn_rcpts_free(n->rcpts, n->which->len);
        g_array_unref(n->which);
        g_free(n->to);
        g_free(n->why);
        if (n->dsn)
            kr_msg_unref(n->dsn);
    }
    g_array_unref(b->silent);
    g_array_unref(b->succ_seen);
    kr_msg_unref(b->msg);
    g_clear_error(&b->error);
    g_free(b);
}

static const char *
postmaster_address(void)
{
    static char *pm;
    if (conf->postmaster && *conf->postmaster)
        return conf->postmaster;
    if (!pm)
        pm = g_strdup_printf("postmaster@%s", kr_default_domain());
    return pm;
}

/* Finish the recipients in `which` as BOUNCED, keeping their reply. */
static void
mark_bounced(Bounce *b, GArray *which)
{
    for (guint k = 0; k < which->len; k++) {
        guint i = g_array_index(which, guint, k);
        KrRcpt *r = kr_job_rcpt(b->job, i);
        char ecode[sizeof r->ecode], diag[sizeof r->diag];
        memcpy(ecode, r->ecode, sizeof ecode);
        memcpy(diag, r->diag, sizeof diag);
        kr_job_rcpt_done(b->job, i, KR_RCPT_BOUNCED, r->code, ecode, diag);
    }
}

/* ---- the end: mark, persist, answer ---- */

static void
warned_work(gpointer p)
{
    Bounce *b = p;
    kr_msg_rewrite_envelope(b->msg, &b->error);
}

static void
finish(Bounce *b)
{
    const char *id = kr_msg_queue_id(b->msg);
    Notice *fail = b->n[N_SENDER].wanted ? &b->n[N_SENDER] : &b->n[N_POSTMASTER];
    if (b->error)
        g_warning("%s: cannot record that the delay warning or delivery status notification "
                  "was sent: %s (it may be sent again)",
                  id, b->error->message);
    Notice *succ = &b->n[N_SUCCESS];
    if (fail->wanted && fail->result == KR_VERDICT_DEFER) {
        kr_job_defer(b->job, "4.3.0", "non-delivery notification not queued: %s",
                     fail->why ? fail->why : "deferred");
    } else if (b->succ_seen->len > 0 &&
               (b->error || (succ->wanted && succ->result == KR_VERDICT_DEFER))) {
        /* The queue manager sees dsn_success without them and asks again. */
        mark_bounced(b, b->n[N_SENDER].which);
        mark_bounced(b, b->n[N_POSTMASTER].which);
        mark_bounced(b, b->silent);
        kr_job_defer(b->job, "4.3.0", "delivery status notification not queued: %s",
                     b->error    ? b->error->message
                     : succ->why ? succ->why
                                 : "deferred");
    } else {
        mark_bounced(b, b->n[N_SENDER].which);
        mark_bounced(b, b->n[N_POSTMASTER].which);
        mark_bounced(b, b->silent);
        kr_job_continue(b->job);
    }
    bounce_free(b);
}

static void
warned_done(gpointer p)
{
    finish(p);
}

static void
all_injected(Bounce *b)
{
    Notice *d = &b->n[N_DELAY], *sc = &b->n[N_SUCCESS];
    gboolean rewrite = FALSE;
    if (d->wanted && d->result != KR_VERDICT_DEFER) {
        g_autofree char *now =
            g_strdup_printf("%" G_GINT64_FORMAT, g_get_real_time() / G_USEC_PER_SEC);
        kr_msg_set_attr(b->msg, "delay_warned", now);
        rewrite = TRUE;
    }
    if (b->succ_seen->len > 0 && !(sc->wanted && sc->result == KR_VERDICT_DEFER)) {
        const char *old = kr_msg_attr(b->msg, "dsn_success");
        GString *v = g_string_new(old && *old ? old : ",");
        for (guint k = 0; k < b->succ_seen->len; k++)
            g_string_append_printf(v, "%u,", g_array_index(b->succ_seen, guint, k));
        kr_msg_set_attr(b->msg, "dsn_success", v->str);
        g_string_free(v, TRUE);
        rewrite = TRUE;
    }
    if (rewrite) {
        kr_worker_run(warned_work, warned_done, b);
        return;
    }
    finish(b);
}

static void
injected(KrMsg *dsn, const KrJobResult *res, gpointer ud)
{
    Bounce *b = ud;
    const char *id = kr_msg_queue_id(b->msg);
    int k;
    for (k = 0; k < N_KINDS; k++)
        if (b->n[k].dsn == dsn)
            break;
    g_assert(k < N_KINDS);
    Notice *n = &b->n[k];
    n->result = res->kind;
    if (res->kind == KR_VERDICT_DEFER) {
        n->why = g_strdup(res->text ? res->text : "deferred");
        g_warning("%s: %s %s not queued: %s %s (will retry)", id, kind_log[k], kr_msg_queue_id(dsn),
                  res->ecode ? res->ecode : "", n->why);
    } else if (res->kind == KR_VERDICT_REJECT) {
        n->why = g_strdup(res->text ? res->text : "refused");
        g_warning("%s: %s refused by %s: %d %s %s; <%s> is not told", id, kind_log[k],
                  res->stage ? res->stage : "?", res->code, res->ecode ? res->ecode : "", n->why,
                  n->to);
    } else {
        g_message("%s: %s: %s", id, kind_log[k], kr_msg_queue_id(dsn));
    }
    if (--b->pending == 0)
        all_injected(b);
}

/* ---- composing (worker) ---- */

static void
compose_work(gpointer p)
{
    Bounce *b = p;
    for (int k = 0; k < N_KINDS && !b->error; k++) {
        Notice *n = &b->n[k];
        if (!n->wanted)
            continue;
        n->dsn = kr_msg_new_spool(KR_QUEUE_INCOMING, &b->error);
        if (!n->dsn)
            break;
        DsnOptions opt = {.reporting_mta = kr_hostname(),
                          .max_return_size = conf->max_return_size,
                          .kind = kind_of[k],
                          .to = n->to};
        if (!dsn_compose(n->dsn, b->msg, n->rcpts, n->which->len, &opt, &b->error))
            break;
        kr_msg_set_sender(n->dsn, "");
        kr_msg_add_rcpt(n->dsn, n->to);
        kr_msg_set_attr(n->dsn, "dsn_for", kr_msg_queue_id(b->msg));
        kr_msg_set_attr(n->dsn, "dsn_kind", kind_attr[k]);
    }
    if (b->error) {
        for (int k = 0; k < N_KINDS; k++)
            if (b->n[k].dsn) {
                kr_msg_discard(b->n[k].dsn);
                g_clear_pointer(&b->n[k].dsn, kr_msg_unref);
            }
    }
}

static void
compose_done(gpointer p)
{
    Bounce *b = p;
    const char *id = kr_msg_queue_id(b->msg);
    if (b->error) {
        g_warning("%s: cannot write the delivery status notification: %s", id, b->error->message);
        kr_job_defer(b->job, "4.3.0", "cannot write the delivery status notification: %s",
                     b->error->message);
        bounce_free(b);
        return;
    }
    b->pending = 1; /* held while starting */
    for (int k = 0; k < N_KINDS; k++) {
        Notice *n = &b->n[k];
        if (!n->wanted)
            continue;
        g_autoptr(GError) err = NULL;
        b->pending++;
        if (!kr_pipeline_run(conf->inject_node, n->dsn, NULL, injected, b, &err)) {
            b->pending--;
            g_warning("%s: cannot queue the %s: %s", id, kind_log[k], err->message);
            n->result = KR_VERDICT_DEFER;
            n->why = g_strdup(err->message);
        }
    }
    if (--b->pending == 0)
        all_injected(b);
}

/* ---- deciding ---- */

/* action NULL: each recipient's success action (delivered, relayed or
 * expanded). */
static DsnRcpt *
dsn_rcpts(KrJob *job, GArray *which, const char *action)
{
    gboolean success = action == NULL;
    DsnRcpt *out = g_new0(DsnRcpt, MAX(which->len, 1));
    for (guint k = 0; k < which->len; k++) {
        KrRcpt *r = kr_job_rcpt(job, g_array_index(which, guint, k));
        DsnRcpt *d = &out[k];
        d->address = g_strdup(r->address);
        d->orcpt = g_strdup(r->orcpt);
        d->action = success ? dsn_success_action(r->state == KR_RCPT_EXPANDED,
                                                 kr_rcpt_attr(r, "remote_mta") != NULL)
                            : action;
        d->status = g_strdup(r->ecode);
        d->code = r->code;
        d->diag = g_strdup(r->diag);
        d->remote_mta = g_strdup(kr_rcpt_attr(r, "remote_mta"));
    }
    return out;
}

/* Our own reports to postmaster are never reported again. */
static gboolean
is_postmaster_report(KrMsg *msg)
{
    const char *k = kr_msg_attr(msg, "dsn_kind");
    return k && (!strcmp(k, "postmaster") || !strcmp(k, "copy"));
}

static gboolean
delay_due(KrMsg *msg, const KrRcpt *r)
{
    if (conf->delay_warning <= 0 || !*kr_msg_sender(msg) || kr_msg_attr(msg, "delay_warned"))
        return FALSE;
    if (r->notify && !(r->notify & KR_NOTIFY_DELAY))
        return FALSE;
    gint64 now = g_get_real_time() / G_USEC_PER_SEC;
    return now - kr_msg_arrival(msg) >= conf->delay_warning;
}

/* Has this recipient's success been dealt with (attribute dsn_success)? */
static gboolean
success_seen(KrMsg *msg, const KrRcpt *r)
{
    const char *v = kr_msg_attr(msg, "dsn_success");
    char key[16];
    g_snprintf(key, sizeof key, ",%u,", r->index);
    return v && strstr(v, key) != NULL;
}

static void
bounce_process(KrStage *stage, KrJob *job)
{
    Bounce *b = g_new0(Bounce, 1);
    b->job = job;
    b->msg = kr_msg_ref(kr_job_msg(job));
    b->silent = g_array_new(FALSE, FALSE, sizeof(guint));
    b->succ_seen = g_array_new(FALSE, FALSE, sizeof(guint));
    for (int k = 0; k < N_KINDS; k++)
        b->n[k].which = g_array_new(FALSE, FALSE, sizeof(guint));
    const char *id = kr_msg_queue_id(b->msg);
    const char *sender = kr_msg_sender(b->msg);
    for (guint i = 0; i < kr_job_rcpt_count(job); i++) {
        KrRcpt *r = kr_job_rcpt(job, i);
        if (r->state == KR_RCPT_DEFERRED) {
            /* Still being tried: at most a warning; never finished here. */
            if (delay_due(b->msg, r))
                g_array_append_val(b->n[N_DELAY].which, i);
            continue;
        }
        if (r->state == KR_RCPT_DELIVERED || r->state == KR_RCPT_EXPANDED) {
            /* A success: at most a report; never changed here. */
            if (!(r->notify & KR_NOTIFY_SUCCESS) || success_seen(b->msg, r))
                continue;
            g_array_append_val(b->succ_seen, r->index);
            if (!*sender)
                g_message("%s: to=<%s>: NOTIFY=SUCCESS from <>: no notification", id, r->address);
            else if (kr_rcpt_attr(r, "dsn_passed"))
                g_message("%s: to=<%s>: NOTIFY=SUCCESS passed on: no notification from here", id,
                          r->address);
            else
                g_array_append_val(b->n[N_SUCCESS].which, i);
            continue;
        }
        if (r->state != KR_RCPT_FAILED && r->code < 500) {
            /* Routed here without a failure of its own. */
            kr_rcpt_set_result(r, KR_RCPT_FAILED, 550, "5.0.0",
                               r->diag[0] ? r->diag : "undeliverable");
        }
        if (r->notify && !(r->notify & KR_NOTIFY_FAILURE)) {
            g_message("%s: to=<%s>: undeliverable; no notification (NOTIFY%s)", id, r->address,
                      r->notify & KR_NOTIFY_NEVER ? "=NEVER" : " without FAILURE");
            g_array_append_val(b->silent, i);
        } else if (!*sender && is_postmaster_report(b->msg)) {
            g_message("%s: to=<%s>: undeliverable report to postmaster: dropped (a report about "
                      "a report is never sent)",
                      id, r->address);
            g_array_append_val(b->silent, i);
        } else if (!*sender) {
            g_message("%s: to=<%s>: undeliverable mail from <>: not returned (a bounce is never "
                      "sent to the null sender); reported to postmaster",
                      id, r->address);
            g_array_append_val(b->n[N_POSTMASTER].which, i);
        } else {
            g_array_append_val(b->n[N_SENDER].which, i);
        }
    }
    gboolean any = FALSE;
    for (int k = 0; k < N_KINDS; k++) {
        Notice *n = &b->n[k];
        if (k == N_COPY) {
            if (!conf->postmaster_copy || b->n[N_SENDER].which->len == 0)
                continue;
            g_array_append_vals(n->which, b->n[N_SENDER].which->data, b->n[N_SENDER].which->len);
            n->rcpts = b->n[N_SENDER].rcpts; /* shared, freed with N_SENDER */
        } else if (n->which->len > 0) {
            n->rcpts = dsn_rcpts(job, n->which,
                                 k == N_SUCCESS ? NULL
                                 : k == N_DELAY ? "delayed"
                                                : "failed");
        } else {
            continue;
        }
        n->wanted = TRUE;
        n->to = g_strdup(k == N_SENDER || k == N_DELAY || k == N_SUCCESS ? sender
                                                                         : postmaster_address());
        any = TRUE;
    }
    if (!any) {
        if (b->succ_seen->len > 0) {
            all_injected(b); /* only records dsn_success */
            return;
        }
        mark_bounced(b, b->silent);
        kr_job_continue(job);
        bounce_free(b);
        return;
    }
    kr_worker_run(compose_work, compose_done, b);
}

static const KrStageType bounce_type = {
    .struct_size = sizeof(KrStageType),
    .name = "bounce",
    .summary = "report undeliverable and delayed recipients (RFC 3464 DSNs)",
    .flags = KR_STAGE_ENTRY | KR_STAGE_TERMINAL,
    .process = bounce_process,
};

static gboolean
bounce_init(KrModule *mod, GError **error)
{
    conf = kr_module_conf(mod);
    return kr_register_stage(mod, &bounce_type, error);
}

KR_MODULE(bounce, "bounce", "1.2", "delivery status notifications (RFC 3464 DSNs)", bounce_settings,
          sizeof(BounceConf), bounce_init, NULL);
