/* SPDX-License-Identifier: MIT */
/*
 * local.c - the local module: stage type "local", the delivery side's
 * local delivery node. Hands each recipient of a job to the mail store
 * (DATA_DIR/mail by default, through the store registry) and finishes
 * it there: this is a terminal stage (no `next`).
 *
 * Stage type "local" (KR_STAGE_TERMINAL), no per-node settings.
 * Module settings (the `local` group of kurir.conf):
 *   store   mail store that receives local deliveries   (default "maildir")
 *
 * PER RECIPIENT
 *   domain not served here      DEFERRED 451 4.4.0 no remote transport
 *                               (remote delivery comes with a later module)
 *   address no longer exists    FAILED 550 5.1.1 user unknown (the queue
 *   (kr_local_address_exists)   manager bounces it)
 *   otherwise                   store->deliver() in a worker thread with
 *                               "Return-Path: <sender>\n" and
 *                               "Delivered-To: <address>\n" prepended:
 *     KR_STORE_OK               DELIVERED 250 2.0.0
 *     KR_STORE_TEMPFAIL         DEFERRED 452 4.3.1 (disk full) or 451 4.3.0
 *     KR_STORE_PERMFAIL         FAILED 550 5.2.0
 *   Recipient attributes (kr_rcpt_attr) set by earlier stages may steer
 *   it: "mailbox" (deliver into that local address instead, e.g. after
 *   alias expansion) and "folder" (a Maildir++ folder instead of INBOX).
 *
 * The prefix lines end in LF: the store writes LF files and
 * kr_msg_write_to_fd writes the prefix as given. All recipients of a job
 * are delivered concurrently in the worker pool; the job is answered
 * (kr_job_continue) on the main loop once the last one is done. The
 * recipient states are set on the message (kr_job_rcpt_done); the queue
 * manager that started the job records them in the queue file.
 *
 * Log, one line per recipient, postfix-style:
 *   ID: to=<a@b>, relay=local, delay=1.2, status=sent (delivered to maildir)
 */
#include <kurir/kurir.h>
#include <gio/gio.h>
#include <string.h>

typedef struct {
    char *store;
} LocalConf;

static const KrSetting local_settings[] = {
    KR_SETTING("store", KR_SET_STRING, LocalConf, store, "maildir", 0, 0,
               "mail store (registered by a module) that receives local deliveries"),
    KR_SETTING_END,
};

static LocalConf *local_conf;

/* One job in progress. */
typedef struct {
    KrJob *job;
    KrMsg *msg;
    const KrStore *store;
    const char *store_name;
    guint pending; /* deliveries still running */
} Batch;

/* One recipient's delivery, handed to a worker thread. */
typedef struct {
    Batch *batch;
    guint index;
    char *mailbox; /* canonical address */
    char *folder;  /* or NULL */
    char *prefix;
    KrStoreResult result;
    GError *error;
} Delivery;

/* The header lines the store writes first. Addresses come from the
 * queue file: a control character would break the header, so it
 * becomes '?'. */
static char *
local_prefix(const char *sender, const char *mailbox)
{
    g_autofree char *s = g_strdup(sender), *m = g_strdup(mailbox);
    for (char *p = s; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = '?';
    for (char *p = m; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = '?';
    return g_strdup_printf("Return-Path: <%s>\nDelivered-To: %s\n", s, m);
}

static void
local_log(KrMsg *msg, const char *to, const char *status, const char *detail)
{
    double delay = (double)g_get_real_time() / G_USEC_PER_SEC - (double)kr_msg_arrival(msg);
    g_message("%s: to=<%s>, relay=local, delay=%.1f, status=%s (%s)", kr_msg_queue_id(msg), to,
              delay < 0 ? 0.0 : delay, status, detail);
}

static void
local_finish(Batch *b, guint i, KrRcptState state, int code, const char *ecode, const char *diag)
{
    KrRcpt *r = kr_job_rcpt(b->job, i);
    const char *status = state == KR_RCPT_DELIVERED  ? "sent"
                         : state == KR_RCPT_DEFERRED ? "deferred"
                                                     : "bounced";
    local_log(b->msg, r->address, status, diag);
    kr_job_rcpt_done(b->job, i, state, code, ecode, diag);
}

static void
local_batch_end(Batch *b)
{
    KrJob *job = b->job;
    kr_msg_unref(b->msg);
    g_free(b);
    kr_job_continue(job);
}

static void
delivery_work(gpointer p)
{
    Delivery *d = p;
    Batch *b = d->batch;
    d->result =
        b->store->deliver(b->store->self, d->mailbox, d->folder, b->msg, d->prefix, &d->error);
    if (d->result != KR_STORE_OK && !d->error)
        g_set_error(&d->error, G_IO_ERROR, G_IO_ERROR_FAILED, "the store gave no reason");
}

static gboolean
error_is_no_space(const GError *e)
{
    return g_error_matches(e, G_IO_ERROR, G_IO_ERROR_NO_SPACE) ||
           g_error_matches(e, G_FILE_ERROR, G_FILE_ERROR_NOSPC);
}

static void
delivery_done(gpointer p)
{
    Delivery *d = p;
    Batch *b = d->batch;
    switch (d->result) {
    case KR_STORE_OK: {
        g_autofree char *diag = g_strdup_printf("delivered to %s", b->store_name);
        local_finish(b, d->index, KR_RCPT_DELIVERED, 250, "2.0.0", diag);
        break;
    }
    case KR_STORE_TEMPFAIL: {
        g_autofree char *diag = g_strdup_printf("%s: %s", b->store_name, d->error->message);
        if (error_is_no_space(d->error))
            local_finish(b, d->index, KR_RCPT_DEFERRED, 452, "4.3.1", diag);
        else
            local_finish(b, d->index, KR_RCPT_DEFERRED, 451, "4.3.0", diag);
        break;
    }
    case KR_STORE_PERMFAIL:
    default: {
        g_autofree char *diag = g_strdup_printf("%s: %s", b->store_name, d->error->message);
        local_finish(b, d->index, KR_RCPT_FAILED, 550, "5.2.0", diag);
        break;
    }
    }
    g_clear_error(&d->error);
    g_free(d->mailbox);
    g_free(d->folder);
    g_free(d->prefix);
    g_free(d);
    if (--b->pending == 0)
        local_batch_end(b);
}

static void
local_process(KrStage *stage, KrJob *job)
{
    Batch *b = g_new0(Batch, 1);
    b->job = job;
    b->msg = kr_msg_ref(kr_job_msg(job));
    b->store = kr_stage_data(stage);
    b->store_name = local_conf->store;
    const char *sender = kr_msg_sender(b->msg);
    guint n = kr_job_rcpt_count(job);
    /* Count first: a delivery must not finish the batch before all are
     * started (done callbacks run on this loop, so they cannot run while
     * we are here; the +1 only keeps that reasoning local). */
    b->pending = 1;
    for (guint i = 0; i < n; i++) {
        KrRcpt *r = kr_job_rcpt(job, i);
        const char *target = kr_rcpt_attr(r, "mailbox");
        if (!target)
            target = r->address;
        g_autofree char *mailbox = kr_addr_canon(target);
        if (!kr_domain_is_local(kr_addr_domain(mailbox))) {
            local_finish(b, i, KR_RCPT_DEFERRED, 451, "4.4.0", "no remote transport");
            continue;
        }
        if (!kr_local_address_exists(mailbox)) {
            local_finish(b, i, KR_RCPT_FAILED, 550, "5.1.1", "user unknown");
            continue;
        }
        Delivery *d = g_new0(Delivery, 1);
        d->batch = b;
        d->index = i;
        d->folder = g_strdup(kr_rcpt_attr(r, "folder"));
        d->prefix = local_prefix(sender, mailbox);
        d->mailbox = g_steal_pointer(&mailbox);
        b->pending++;
        kr_worker_run(delivery_work, delivery_done, d);
    }
    if (--b->pending == 0)
        local_batch_end(b);
}

static gboolean
local_create(KrStage *stage, GError **error)
{
    const KrStore *store = kr_store(local_conf->store);
    if (!store) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND,
                    "mail store '%s' (local.store) is not registered: load the module that "
                    "provides it",
                    local_conf->store);
        return FALSE;
    }
    kr_stage_set_data(stage, (gpointer)store);
    return TRUE;
}

static const KrStageType local_type = {
    .struct_size = sizeof(KrStageType),
    .name = "local",
    .summary = "deliver to local mailboxes through the mail store",
    .flags = KR_STAGE_TERMINAL,
    .create = local_create,
    .process = local_process,
};

static gboolean
local_init(KrModule *mod, GError **error)
{
    local_conf = kr_module_conf(mod);
    return kr_register_stage(mod, &local_type, error);
}

KR_MODULE(local, "local", "0.1", "local delivery stage (into the mail store)", local_settings,
          sizeof(LocalConf), local_init, NULL);
