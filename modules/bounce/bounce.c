/* SPDX-License-Identifier: MIT */
/*
 * bounce.c - the bounce module: stage type "bounce", which reports
 * recipients that could not be delivered to the message's sender with an
 * RFC 3464 delivery status notification (composed in dsn.c).
 *
 * Stage type "bounce" (KR_STAGE_ENTRY | KR_STAGE_TERMINAL): the queue
 * manager starts a job here with the FAILED recipients of a message (one
 * DSN per message and round); other stages may also route recipients
 * here (a recipient that arrives without a failure gets 550 5.0.0). It
 * is an entry so it needs no edge in the graph; no per-node settings.
 *
 * For each recipient of the job:
 *   NOTIFY given without FAILURE (e.g. NOTIFY=NEVER)   no report
 *   the sender is the null sender <>                   no report, logged
 *                                                      (never bounce a bounce)
 *   otherwise                                          reported
 * The DSN (From MAILER-DAEMON@hostname, envelope sender <>, to the
 * envelope sender) is written as a new spool in a worker thread and run
 * through the pipeline from inject_node (so it is cleaned up and queued
 * like any mail: the enqueue stage commits it). Only when that job ends
 * (the DSN is durable) are the recipients marked BOUNCED
 * (kr_job_rcpt_done); the job then continues. If the DSN cannot be
 * written or queued, the job is deferred: the queue manager keeps the
 * recipients FAILED and tries again later. A DSN the pipeline refuses
 * outright is logged and the recipients are marked BOUNCED (retrying
 * would be refused again).
 *
 * Module settings (the `bounce` group of kurir.conf), with defaults:
 *   inject_node      "maildrop"  where DSNs enter the pipeline
 *   max_return_size  "512K"      originals larger than this are returned
 *                                as headers only
 *
 * Log: "ID: sender non-delivery notification: DSNID" (postfix style).
 * Extension points for later: delay warnings (Action: delayed), success
 * notices (NOTIFY=SUCCESS), postmaster copies — all go through
 * dsn_compose() with a different action per recipient.
 */
#include "dsn.h"
#include <gio/gio.h>

typedef struct {
    char *inject_node;
    gint64 max_return_size;
} BounceConf;

static const KrSetting bounce_settings[] = {
    KR_SETTING("inject_node", KR_SET_STRING, BounceConf, inject_node, "maildrop", 0, 0,
               "pipeline node where DSNs enter"),
    KR_SETTING("max_return_size", KR_SET_SIZE, BounceConf, max_return_size, "512K", 0, 0,
               "larger originals are returned as headers only (0: no limit)"),
    KR_SETTING_END,
};

static BounceConf *conf;

typedef struct {
    KrJob *job;
    KrMsg *msg;
    GArray *report; /* job recipient indexes to report */
    GArray *silent; /* job recipient indexes finished without a report */
    DsnRcpt *rcpts;
    KrMsg *dsn;
    GError *error;
} Bounce;

static void
bounce_free(Bounce *b)
{
    for (guint i = 0; i < b->report->len; i++) {
        g_free((char *)b->rcpts[i].address);
        g_free((char *)b->rcpts[i].orcpt);
        g_free((char *)b->rcpts[i].diag);
        g_free((char *)b->rcpts[i].status);
        g_free((char *)b->rcpts[i].remote_mta);
    }
    g_free(b->rcpts);
    g_array_unref(b->report);
    g_array_unref(b->silent);
    if (b->dsn)
        kr_msg_unref(b->dsn);
    kr_msg_unref(b->msg);
    g_clear_error(&b->error);
    g_free(b);
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

static void
injected(KrMsg *dsn, const KrJobResult *res, gpointer ud)
{
    Bounce *b = ud;
    const char *id = kr_msg_queue_id(b->msg);
    if (res->kind == KR_VERDICT_DEFER) {
        g_warning("%s: non-delivery notification %s not queued: %s %s (will retry)", id,
                  kr_msg_queue_id(dsn), res->ecode ? res->ecode : "", res->text ? res->text : "");
        kr_job_defer(b->job, "4.3.0", "non-delivery notification not queued: %s",
                     res->text ? res->text : "deferred");
    } else {
        if (res->kind == KR_VERDICT_REJECT)
            g_warning("%s: non-delivery notification refused by %s: %d %s %s; the sender <%s> "
                      "is not told",
                      id, res->stage ? res->stage : "?", res->code, res->ecode ? res->ecode : "",
                      res->text ? res->text : "", kr_msg_sender(b->msg));
        else
            g_message("%s: sender non-delivery notification: %s", id, kr_msg_queue_id(dsn));
        mark_bounced(b, b->report);
        mark_bounced(b, b->silent);
        kr_job_continue(b->job);
    }
    bounce_free(b);
}

static void
compose_work(gpointer p)
{
    Bounce *b = p;
    b->dsn = kr_msg_new_spool(KR_QUEUE_INCOMING, &b->error);
    if (!b->dsn)
        return;
    DsnOptions opt = {.reporting_mta = kr_hostname(), .max_return_size = conf->max_return_size};
    if (!dsn_compose(b->dsn, b->msg, b->rcpts, b->report->len, &opt, &b->error)) {
        kr_msg_discard(b->dsn);
        g_clear_pointer(&b->dsn, kr_msg_unref);
        return;
    }
    kr_msg_set_sender(b->dsn, "");
    kr_msg_add_rcpt(b->dsn, kr_msg_sender(b->msg));
    kr_msg_set_attr(b->dsn, "dsn_for", kr_msg_queue_id(b->msg));
}

static void
compose_done(gpointer p)
{
    Bounce *b = p;
    g_autoptr(GError) err = NULL;
    if (b->error) {
        g_warning("%s: cannot write the non-delivery notification: %s", kr_msg_queue_id(b->msg),
                  b->error->message);
        kr_job_defer(b->job, "4.3.0", "cannot write the non-delivery notification: %s",
                     b->error->message);
        bounce_free(b);
        return;
    }
    if (!kr_pipeline_run(conf->inject_node, b->dsn, NULL, injected, b, &err)) {
        g_warning("%s: cannot queue the non-delivery notification: %s", kr_msg_queue_id(b->msg),
                  err->message);
        kr_job_defer(b->job, "4.3.0", "cannot queue the non-delivery notification: %s",
                     err->message);
        bounce_free(b);
    }
}

static void
bounce_process(KrStage *stage, KrJob *job)
{
    Bounce *b = g_new0(Bounce, 1);
    b->job = job;
    b->msg = kr_msg_ref(kr_job_msg(job));
    b->report = g_array_new(FALSE, FALSE, sizeof(guint));
    b->silent = g_array_new(FALSE, FALSE, sizeof(guint));
    const char *id = kr_msg_queue_id(b->msg);
    const char *sender = kr_msg_sender(b->msg);
    for (guint i = 0; i < kr_job_rcpt_count(job); i++) {
        KrRcpt *r = kr_job_rcpt(job, i);
        if (r->state != KR_RCPT_FAILED && r->code < 500) {
            /* Routed here without a failure of its own. */
            kr_rcpt_set_result(r, KR_RCPT_FAILED, 550, "5.0.0",
                               r->diag[0] ? r->diag : "undeliverable");
        }
        if (r->notify && !(r->notify & KR_NOTIFY_FAILURE)) {
            g_message("%s: to=<%s>: undeliverable; no notification (NOTIFY%s)", id, r->address,
                      r->notify & KR_NOTIFY_NEVER ? "=NEVER" : " without FAILURE");
            g_array_append_val(b->silent, i);
        } else if (!*sender) {
            g_message("%s: to=<%s>: undeliverable mail from <>: dropped (a bounce is never "
                      "sent to the null sender)",
                      id, r->address);
            g_array_append_val(b->silent, i);
        } else {
            g_array_append_val(b->report, i);
        }
    }
    if (b->report->len == 0) {
        mark_bounced(b, b->silent);
        kr_job_continue(job);
        bounce_free(b);
        return;
    }
    /* Copy what the worker needs: it must not read the job. */
    b->rcpts = g_new0(DsnRcpt, b->report->len);
    for (guint k = 0; k < b->report->len; k++) {
        KrRcpt *r = kr_job_rcpt(job, g_array_index(b->report, guint, k));
        DsnRcpt *d = &b->rcpts[k];
        d->address = g_strdup(r->address);
        d->orcpt = g_strdup(r->orcpt);
        d->action = "failed";
        d->status = g_strdup(r->ecode);
        d->code = r->code;
        d->diag = g_strdup(r->diag);
        d->remote_mta = g_strdup(kr_rcpt_attr(r, "remote_mta"));
    }
    kr_worker_run(compose_work, compose_done, b);
}

static const KrStageType bounce_type = {
    .struct_size = sizeof(KrStageType),
    .name = "bounce",
    .summary = "report undeliverable recipients to the sender (RFC 3464 DSN)",
    .flags = KR_STAGE_ENTRY | KR_STAGE_TERMINAL,
    .process = bounce_process,
};

static gboolean
bounce_init(KrModule *mod, GError **error)
{
    conf = kr_module_conf(mod);
    return kr_register_stage(mod, &bounce_type, error);
}

KR_MODULE(bounce, "bounce", "1.0", "non-delivery notifications (RFC 3464 DSNs)", bounce_settings,
          sizeof(BounceConf), bounce_init, NULL);
