/* SPDX-License-Identifier: MIT */
/*
 * qmgr.c - the queue manager: which message is delivered when.
 *
 * DESCRIPTION
 *   Messages enter from incoming/ (told by the enqueue stage, found by the
 *   recovery scan, released from hold) or come back from deferred/ when
 *   due. At most max_active messages are in active/ at once; the rest
 *   wait, oldest first. An admitted message is loaded and moved to
 *   active/ (worker thread), and its recipients that are due (PENDING, or
 *   DEFERRED with next_try passed) are grouped by destination into items
 *   that go to the policy. Whenever a delivery slot is free (at most
 *   max_deliveries), the policy picks the next item, and the queue
 *   manager runs kr_pipeline_run(<qmgr node>, msg, item's recipients).
 *
 *   When the delivery job ends, each recipient's state is looked at:
 *   DELIVERED (or EXPANDED/BOUNCED) is final; DEFERRED gets its next_try
 *   (min_backoff doubling per attempt up to max_backoff; never past the
 *   message's lifetime), or, past max_lifetime, becomes FAILED (Status
 *   4.4.7); a recipient no stage finished is DEFERRED. The states are
 *   saved in the queue file (kr_msg_rcpt_save, worker) before the slot is
 *   given back and the policy hears the result.
 *
 *   When no item of a message is left: FAILED recipients go to the bounce
 *   node as one job (one DSN); the bounce stage marks them BOUNCED once
 *   the DSN is durable, and if it does not, they stay FAILED and the
 *   bounce is retried later. Then the file is removed when every
 *   recipient is final, else it moves to deferred/ and comes back at the
 *   earliest next_try. Delivery is at-least-once: a crash between a
 *   delivery and its saved status repeats that delivery, never loses it.
 *
 *   hold/delete act at once on a waiting or deferred message, and on an
 *   active one once its running deliveries end (queued items are taken
 *   back from the policy). flush makes every deferred message due now.
 *
 *   qmgr_start / qmgr_stop            the service
 *   qmgr_incoming(id, msg)            a message is in incoming/
 *   qmgr_recovered(ids, deferred)     the recovery scan's findings
 *   qmgr_knows(id)                    is it being handled
 *   qmgr_flush/hold/release/delete    control requests
 *   qmgr_destination(addr)            "local:DOMAIN" / "smtp:DOMAIN"
 *   qmgr_backoff(n, min, max)         retry delay after n failed attempts
 *
 * All state lives on the event loop; file work is done in worker
 * threads on a message that the loop does not touch meanwhile.
 */
#include "queue.h"
#include <sys/resource.h>

typedef enum {
    QM_WAITING,   /* file in `dir` (incoming/ or deferred/), waiting for a slot */
    QM_LOADING,   /* worker: load, move to active/ */
    QM_ACTIVE,    /* items queued in the policy or running */
    QM_FINISHING, /* saving, bouncing, moving or removing */
    QM_DEFERRED,  /* file in `dir`, comes back at `due` */
} QmState;

typedef enum { ACT_NONE, ACT_HOLD, ACT_DELETE } QmAction;

typedef struct QMsg QMsg;

typedef struct {
    KrQueueItem pub; /* first: the policy hands it back */
    QMsg *qm;
    char *dest;
    GArray *rcpts; /* guint indexes into the message */
    gboolean queued;
} QItem;

/* What a recipient looked like before the bounce job (to restore it if
 * the bounce could not be queued). */
typedef struct {
    guint index;
    KrRcptState state;
    unsigned attempts;
    gint64 next_try;
    int code;
    char ecode[12];
    char diag[KR_DIAG_MAX + 1];
} RcptCopy;

struct QMsg {
    char *id;
    QmState state;
    KrQueueDir dir; /* WAITING/DEFERRED: where the file is */
    KrMsg *msg;     /* loaded (may be NULL while WAITING) */
    gint64 due;
    GSequenceIter *due_iter;
    GList *wait_link;
    GPtrArray *items; /* QItem * */
    QmAction action;
    gboolean forced;     /* flush: every deferred recipient is due */
    gboolean counted;    /* holds a slot of max_active */
    gboolean retry_soon; /* a status save or bounce failed */
    GArray *bounced;     /* RcptCopy, during the bounce job */
};

static struct {
    gboolean running, stopping, recovering;
    const KrQueuePolicy *pol;
    gpointer pstate;
    char *node;
    gboolean bounce_ok;
    gint64 max_active;
    GHashTable *msgs; /* id -> QMsg */
    GQueue waiting;   /* QMsg * */
    GSequence *deferred;
    guint timer;
    gint64 timer_due;
    guint kick_src;
    guint n_active;  /* counted messages */
    guint n_running; /* deliveries, until their status is saved */
    guint n_busy;    /* worker ops and bounce jobs */
    void (*stop_done)(gpointer token);
    gpointer stop_token;
} Q;

static void admit(void);
static void kick(void);
static void finish(QMsg *qm);
static void apply_action(QMsg *qm);
static void to_deferred(QMsg *qm, gint64 due);

static gint64
now_s(void)
{
    return g_get_real_time() / G_USEC_PER_SEC;
}

/* --- small pieces ---------------------------------------------------------- */

gint64
qmgr_backoff(unsigned attempts, gint64 min_backoff, gint64 max_backoff)
{
    gint64 d = min_backoff;
    for (unsigned i = 1; i < attempts && d < max_backoff; i++)
        d *= 2;
    return MIN(d, max_backoff);
}

char *
qmgr_destination(const char *address)
{
    const char *d = kr_addr_domain(address);
    if (!d || !*d)
        d = kr_default_domain();
    g_autofree char *lower = g_ascii_strdown(d ? d : "", -1);
    return g_strconcat(kr_domain_is_local(lower) ? "local:" : "smtp:", lower, NULL);
}

static const char *
state_name(KrRcptState s)
{
    switch (s) {
    case KR_RCPT_PENDING:
        return "pending";
    case KR_RCPT_DELIVERED:
        return "sent";
    case KR_RCPT_DEFERRED:
        return "deferred";
    case KR_RCPT_FAILED:
        return "bounced";
    case KR_RCPT_BOUNCED:
        return "bounced";
    case KR_RCPT_EXPANDED:
        return "expanded";
    }
    return "?";
}

static gboolean
rcpt_final(const KrRcpt *r)
{
    return r->state == KR_RCPT_DELIVERED || r->state == KR_RCPT_BOUNCED ||
           r->state == KR_RCPT_EXPANDED;
}

void
qmgr_check_stopped(void)
{
    if (Q.stopping && Q.stop_done && Q.n_running == 0 && Q.n_busy == 0 && qscan_busy() == 0) {
        void (*done)(gpointer) = Q.stop_done;
        Q.stop_done = NULL;
        g_message("queue manager stopped (%u message(s) in active/ resume at the next start)",
                  Q.n_active);
        done(Q.stop_token);
    }
}

static QMsg *
qm_new(const char *id, KrQueueDir dir, KrMsg *msg)
{
    QMsg *qm = g_new0(QMsg, 1);
    qm->id = g_strdup(id);
    qm->dir = dir;
    qm->msg = msg ? kr_msg_ref(msg) : NULL;
    qm->items = g_ptr_array_new();
    g_hash_table_insert(Q.msgs, qm->id, qm);
    return qm;
}

static void
item_free(QItem *it)
{
    g_free(it->dest);
    g_array_unref(it->rcpts);
    g_free(it);
}

/* The queue manager lets go of a message (removed, held, or left for
 * the next start). */
static void
forget(QMsg *qm)
{
    if (qm->due_iter)
        g_sequence_remove(qm->due_iter);
    if (qm->wait_link)
        g_queue_delete_link(&Q.waiting, qm->wait_link);
    for (guint i = 0; i < qm->items->len; i++) {
        QItem *it = qm->items->pdata[i];
        if (it->queued)
            Q.pol->remove(Q.pstate, &it->pub);
        item_free(it);
    }
    g_ptr_array_unref(qm->items);
    if (qm->counted)
        Q.n_active--;
    if (qm->bounced)
        g_array_unref(qm->bounced);
    if (qm->msg)
        kr_msg_unref(qm->msg);
    g_hash_table_remove(Q.msgs, qm->id);
    g_free(qm->id);
    g_free(qm);
    admit();
}

/* --- the deferred timer ------------------------------------------------------- */

static gint
due_cmp(gconstpointer a, gconstpointer b, gpointer ud)
{
    const QMsg *x = a, *y = b;
    if (x->due != y->due)
        return x->due < y->due ? -1 : 1;
    return strcmp(x->id, y->id);
}

static void arm_timer(void);

static gboolean
on_timer(gpointer ud)
{
    Q.timer = 0;
    gint64 now = now_s();
    GSequenceIter *it;
    while (!g_sequence_iter_is_end(it = g_sequence_get_begin_iter(Q.deferred))) {
        QMsg *qm = g_sequence_get(it);
        if (qm->due > now)
            break;
        g_sequence_remove(it);
        qm->due_iter = NULL;
        qm->state = QM_WAITING;
        g_queue_push_tail(&Q.waiting, qm);
        qm->wait_link = Q.waiting.tail;
    }
    admit();
    arm_timer();
    return G_SOURCE_REMOVE;
}

static void
arm_timer(void)
{
    GSequenceIter *it = g_sequence_get_begin_iter(Q.deferred);
    if (g_sequence_iter_is_end(it) || Q.stopping) {
        if (Q.timer)
            g_source_remove(Q.timer);
        Q.timer = 0;
        return;
    }
    QMsg *qm = g_sequence_get(it);
    if (Q.timer && Q.timer_due == qm->due)
        return;
    if (Q.timer)
        g_source_remove(Q.timer);
    gint64 wait_ms = (qm->due - now_s()) * 1000;
    Q.timer_due = qm->due;
    Q.timer = g_timeout_add((guint)CLAMP(wait_ms, 0, 3600 * 1000), on_timer, NULL);
}

static void
to_deferred(QMsg *qm, gint64 due)
{
    if (qm->msg) {
        kr_msg_unref(qm->msg); /* not kept open while it waits */
        qm->msg = NULL;
    }
    if (qm->counted) {
        qm->counted = FALSE;
        Q.n_active--;
    }
    qm->state = QM_DEFERRED;
    qm->due = due;
    qm->due_iter = g_sequence_insert_sorted(Q.deferred, qm, due_cmp, NULL);
    arm_timer();
    admit();
}

/* --- admission: waiting -> active ------------------------------------------ */

typedef struct {
    QMsg *qm;
    char *id;
    KrQueueDir dir;
    KrMsg *msg;
    GError *error;
    gboolean corrupt;
} LoadOp;

static void
load_work(gpointer p)
{
    LoadOp *op = p;
    if (!op->msg) {
        op->msg = kr_msg_load(op->dir, op->id, &op->error);
        if (!op->msg) {
            if (g_error_matches(op->error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA)) {
                op->corrupt = TRUE;
                kr_queue_quarantine(op->dir, op->id, op->error->message);
            }
            return;
        }
    }
    kr_msg_move(op->msg, KR_QUEUE_ACTIVE, &op->error);
}

static void build_items(QMsg *qm);

static void
load_done(gpointer p)
{
    LoadOp *op = p;
    QMsg *qm = op->qm;
    Q.n_busy--;
    if (op->msg && !op->error) {
        if (!qm->msg)
            qm->msg = kr_msg_ref(op->msg);
        qm->state = QM_ACTIVE;
        queue_crash_point("active");
        if (qm->action != ACT_NONE)
            finish(qm);
        else
            build_items(qm);
    } else if (op->corrupt || g_error_matches(op->error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND)) {
        if (!op->corrupt)
            g_message("%s: gone from %s/ before delivery", qm->id, kr_queue_dir_name(op->dir));
        forget(qm);
    } else {
        g_warning("%s: cannot activate: %s; retrying in %" G_GINT64_FORMAT "s", qm->id,
                  op->error->message, queue_conf->min_backoff);
        if (qm->action != ACT_NONE) {
            apply_action(qm);
        } else {
            /* The file did not move; remember where it is. */
            if (op->msg)
                qm->dir = kr_msg_queue_dir(op->msg);
            to_deferred(qm, now_s() + queue_conf->min_backoff);
        }
    }
    if (op->msg)
        kr_msg_unref(op->msg);
    g_clear_error(&op->error);
    g_free(op->id);
    g_free(op);
    qmgr_check_stopped();
}

static void
activate(QMsg *qm)
{
    qm->state = QM_LOADING;
    qm->counted = TRUE;
    Q.n_active++;
    LoadOp *op = g_new0(LoadOp, 1);
    op->qm = qm;
    op->id = g_strdup(qm->id);
    op->dir = qm->dir;
    op->msg = qm->msg ? kr_msg_ref(qm->msg) : NULL;
    Q.n_busy++;
    kr_worker_run(load_work, load_done, op);
}

static void
admit(void)
{
    while (Q.running && !Q.stopping && !Q.recovering && Q.node &&
           Q.n_active < (guint)Q.max_active && !g_queue_is_empty(&Q.waiting)) {
        QMsg *qm = g_queue_pop_head(&Q.waiting);
        qm->wait_link = NULL;
        activate(qm);
    }
}

static void
push_waiting(QMsg *qm, gboolean head)
{
    qm->state = QM_WAITING;
    if (qm->msg && Q.n_active >= (guint)Q.max_active) {
        kr_msg_unref(qm->msg); /* it will wait: do not hold its file open */
        qm->msg = NULL;
    }
    if (head) {
        g_queue_push_head(&Q.waiting, qm);
        qm->wait_link = Q.waiting.head;
    } else {
        g_queue_push_tail(&Q.waiting, qm);
        qm->wait_link = Q.waiting.tail;
    }
}

/* --- items and deliveries --------------------------------------------------- */

static void
build_items(QMsg *qm)
{
    KrMsg *msg = qm->msg;
    gint64 now = now_s();
    g_autoptr(GHashTable) by_dest = g_hash_table_new(g_str_hash, g_str_equal);
    for (guint i = 0; i < kr_msg_rcpt_count(msg); i++) {
        KrRcpt *r = kr_msg_rcpt(msg, i);
        gboolean due = r->state == KR_RCPT_PENDING ||
                       (r->state == KR_RCPT_DEFERRED && (qm->forced || r->next_try <= now));
        if (!due)
            continue;
        g_autofree char *dest = qmgr_destination(r->address);
        QItem *it = g_hash_table_lookup(by_dest, dest);
        if (!it) {
            it = g_new0(QItem, 1);
            it->qm = qm;
            it->dest = g_steal_pointer(&dest);
            it->rcpts = g_array_new(FALSE, FALSE, sizeof(guint));
            it->pub.queue_id = qm->id;
            it->pub.destination = it->dest;
            it->pub.arrival = kr_msg_arrival(msg);
            g_hash_table_insert(by_dest, it->dest, it);
            g_ptr_array_add(qm->items, it);
        }
        g_array_append_val(it->rcpts, i);
        it->pub.attempts = MAX(it->pub.attempts, r->attempts);
    }
    qm->forced = FALSE;
    if (qm->items->len == 0) {
        finish(qm);
        return;
    }
    for (guint i = 0; i < qm->items->len; i++) {
        QItem *it = qm->items->pdata[i];
        it->queued = TRUE;
        Q.pol->enqueue(Q.pstate, &it->pub);
    }
    kick();
}

typedef struct {
    QItem *it;
    KrMsg *msg;
    GPtrArray *save; /* KrRcpt * */
    KrDeliveryResult result;
    GError *error;
} SaveOp;

static void
save_work(gpointer p)
{
    SaveOp *op = p;
    for (guint i = 0; i < op->save->len; i++) {
        GError *err = NULL;
        if (!kr_msg_rcpt_save(op->msg, op->save->pdata[i], &err)) {
            if (!op->error)
                op->error = err;
            else
                g_error_free(err);
        }
    }
}

static void
item_saved(gpointer p)
{
    SaveOp *op = p;
    QItem *it = op->it;
    QMsg *qm = it->qm;
    if (op->error) {
        g_warning("%s: cannot record delivery status: %s (delivery may be repeated)", qm->id,
                  op->error->message);
        qm->retry_soon = TRUE;
    }
    queue_crash_point("saved");
    Q.pol->result(Q.pstate, it->dest, op->result);
    Q.n_running--;
    g_ptr_array_remove(qm->items, it);
    item_free(it);
    g_ptr_array_unref(op->save);
    kr_msg_unref(op->msg);
    g_clear_error(&op->error);
    g_free(op);
    if (qm->items->len == 0)
        finish(qm);
    kick();
    qmgr_check_stopped();
}

/* After a delivery attempt: decide each recipient's next step. */
static void
item_results(QItem *it)
{
    QMsg *qm = it->qm;
    KrMsg *msg = qm->msg;
    gint64 now = now_s();
    gint64 expires = kr_msg_arrival(msg) + queue_conf->max_lifetime;
    double delay = (double)g_get_real_time() / G_USEC_PER_SEC - (double)kr_msg_arrival(msg);
    gboolean any_deferred = FALSE, any_failed = FALSE;
    SaveOp *op = g_new0(SaveOp, 1);
    op->it = it;
    op->msg = kr_msg_ref(msg);
    op->save = g_ptr_array_new();
    queue_crash_point("delivered");
    for (guint k = 0; k < it->rcpts->len; k++) {
        KrRcpt *r = kr_msg_rcpt(msg, g_array_index(it->rcpts, guint, k));
        if (r->state == KR_RCPT_PENDING)
            kr_rcpt_set_result(r, KR_RCPT_DEFERRED, 451, "4.3.5",
                               "no pipeline stage delivered this recipient");
        const char *status = state_name(r->state);
        if (r->state == KR_RCPT_DEFERRED) {
            if (now >= expires) {
                char diag[KR_DIAG_MAX + 1];
                g_snprintf(diag, sizeof diag, "delivery time expired; last error: %s", r->diag);
                r->state = KR_RCPT_FAILED; /* not kr_rcpt_set_result: no new attempt */
                g_strlcpy(r->ecode, "4.4.7", sizeof r->ecode);
                g_strlcpy(r->diag, diag, sizeof r->diag);
                status = "expired";
                any_failed = TRUE;
            } else {
                if (r->next_try <= now) /* a stage may have set its own */
                    r->next_try = now + qmgr_backoff(MAX(r->attempts, 1u), queue_conf->min_backoff,
                                                     queue_conf->max_backoff);
                r->next_try = MIN(r->next_try, MAX(expires, now + 1));
                any_deferred = TRUE;
            }
        } else if (r->state == KR_RCPT_FAILED) {
            any_failed = TRUE;
        }
        if (r->state == KR_RCPT_DEFERRED)
            g_message("%s: to=<%s>, delay=%.1f, attempts=%u, dsn=%s, status=deferred (%d %s), "
                      "retry in %" G_GINT64_FORMAT "s",
                      qm->id, r->address, delay, r->attempts, r->ecode, r->code, r->diag,
                      r->next_try - now);
        else
            g_message("%s: to=<%s>, delay=%.1f, attempts=%u, dsn=%s, status=%s (%d %s)", qm->id,
                      r->address, delay, r->attempts, r->ecode, status, r->code, r->diag);
        g_ptr_array_add(op->save, r);
    }
    op->result = any_deferred ? KR_RESULT_DEFERRED
                 : any_failed ? KR_RESULT_FAILED
                              : KR_RESULT_DELIVERED;
    kr_worker_run(save_work, item_saved, op);
}

static void
delivery_done(KrMsg *msg, const KrJobResult *result, gpointer ud)
{
    item_results(ud);
}

static void
start_delivery(QItem *it)
{
    g_autoptr(GError) err = NULL;
    if (!kr_pipeline_run(Q.node, it->qm->msg, it->rcpts, delivery_done, it, &err)) {
        for (guint k = 0; k < it->rcpts->len; k++)
            kr_rcpt_set_result(kr_msg_rcpt(it->qm->msg, g_array_index(it->rcpts, guint, k)),
                               KR_RCPT_DEFERRED, 451, "4.3.5", err->message);
        item_results(it);
    }
}

static gboolean
run_deliveries(gpointer ud)
{
    Q.kick_src = 0;
    while (Q.running && !Q.stopping && Q.n_running < (guint)queue_conf->max_deliveries) {
        KrQueueItem *pi = Q.pol->pick(Q.pstate);
        if (!pi)
            break;
        QItem *it = (QItem *)pi;
        it->queued = FALSE;
        Q.n_running++;
        start_delivery(it);
    }
    return G_SOURCE_REMOVE;
}

static void
kick(void)
{
    if (!Q.kick_src && Q.running && !Q.stopping)
        Q.kick_src = g_idle_add(run_deliveries, NULL);
}

/* --- the end of a round: bounce, then remove or defer ------------------------ */

typedef struct {
    QMsg *qm;
    KrMsg *msg;
    GPtrArray *save;
    gint64 due;
    gboolean removed, moved;
    GError *error;
} FinalOp;

static void
final_work(gpointer p)
{
    FinalOp *op = p;
    for (guint i = 0; i < op->save->len; i++) {
        GError *err = NULL;
        if (!kr_msg_rcpt_save(op->msg, op->save->pdata[i], &err)) {
            g_warning("%s: cannot record status: %s", kr_msg_queue_id(op->msg), err->message);
            g_error_free(err);
            op->due = 0; /* keep the file; try again soon */
        }
    }
    gboolean all_final = TRUE;
    for (guint i = 0; i < kr_msg_rcpt_count(op->msg); i++)
        if (!rcpt_final(kr_msg_rcpt(op->msg, i)))
            all_final = FALSE;
    if (all_final && op->due != 0) {
        op->removed = kr_msg_remove(op->msg, &op->error);
        return;
    }
    if (kr_msg_queue_dir(op->msg) != KR_QUEUE_DEFERRED)
        op->moved = kr_msg_move(op->msg, KR_QUEUE_DEFERRED, &op->error);
}

static void
final_done(gpointer p)
{
    FinalOp *op = p;
    QMsg *qm = op->qm;
    Q.n_busy--;
    if (op->error)
        g_warning("%s: %s", qm->id, op->error->message);
    if (op->removed) {
        g_message("%s: removed", qm->id);
        forget(qm);
    } else if (qm->action != ACT_NONE) {
        apply_action(qm);
    } else {
        gint64 now = now_s();
        gint64 due = qscan_due(op->msg, now, queue_conf->min_backoff);
        if (op->due == 0 || op->error || qm->retry_soon)
            due = MIN(due, now + queue_conf->min_backoff);
        qm->retry_soon = FALSE;
        qm->dir = kr_msg_queue_dir(op->msg);
        to_deferred(qm, MAX(due, now));
    }
    g_ptr_array_unref(op->save);
    kr_msg_unref(op->msg);
    g_clear_error(&op->error);
    g_free(op);
    qmgr_check_stopped();
}

static void
finish_final(QMsg *qm, GPtrArray *save)
{
    FinalOp *op = g_new0(FinalOp, 1);
    op->qm = qm;
    op->msg = kr_msg_ref(qm->msg);
    op->save = save;
    op->due = 1;
    Q.n_busy++;
    kr_worker_run(final_work, final_done, op);
}

static void
bounce_done(KrMsg *msg, const KrJobResult *result, gpointer ud)
{
    QMsg *qm = ud;
    Q.n_busy--;
    queue_crash_point("bounce-queued");
    GPtrArray *save = g_ptr_array_new();
    gboolean failed = FALSE;
    for (guint i = 0; i < qm->bounced->len; i++) {
        RcptCopy *c = &g_array_index(qm->bounced, RcptCopy, i);
        KrRcpt *r = kr_msg_rcpt(msg, c->index);
        if (r->state == KR_RCPT_BOUNCED) {
            g_ptr_array_add(save, r);
            continue;
        }
        /* Not reported: stays FAILED, as it was, and is tried again. */
        failed = TRUE;
        r->state = c->state;
        r->attempts = c->attempts;
        r->next_try = c->next_try;
        r->code = c->code;
        memcpy(r->ecode, c->ecode, sizeof r->ecode);
        memcpy(r->diag, c->diag, sizeof r->diag);
    }
    if (failed) {
        g_warning("%s: could not queue the non-delivery notification (%s); retrying later", qm->id,
                  result->text ? result->text : "no reason given");
        qm->retry_soon = TRUE;
    }
    g_clear_pointer(&qm->bounced, g_array_unref);
    finish_final(qm, save);
}

static void
finish(QMsg *qm)
{
    qm->state = QM_FINISHING;
    if (qm->action != ACT_NONE) {
        apply_action(qm);
        return;
    }
    KrMsg *msg = qm->msg;
    GPtrArray *save = g_ptr_array_new();
    g_autoptr(GArray) failed = g_array_new(FALSE, FALSE, sizeof(guint));
    for (guint i = 0; i < kr_msg_rcpt_count(msg); i++)
        if (kr_msg_rcpt(msg, i)->state == KR_RCPT_FAILED)
            g_array_append_val(failed, i);
    if (failed->len > 0 && Q.bounce_ok && !Q.stopping) {
        qm->bounced = g_array_sized_new(FALSE, TRUE, sizeof(RcptCopy), failed->len);
        for (guint k = 0; k < failed->len; k++) {
            guint i = g_array_index(failed, guint, k);
            KrRcpt *r = kr_msg_rcpt(msg, i);
            RcptCopy c = {.index = i,
                          .state = r->state,
                          .attempts = r->attempts,
                          .next_try = r->next_try,
                          .code = r->code};
            memcpy(c.ecode, r->ecode, sizeof c.ecode);
            memcpy(c.diag, r->diag, sizeof c.diag);
            g_array_append_val(qm->bounced, c);
        }
        g_autoptr(GError) err = NULL;
        Q.n_busy++;
        if (kr_pipeline_run(queue_conf->bounce_node, msg, failed, bounce_done, qm, &err)) {
            g_ptr_array_unref(save);
            return;
        }
        Q.n_busy--;
        g_warning("%s: cannot start the bounce: %s", qm->id, err->message);
        g_clear_pointer(&qm->bounced, g_array_unref);
        qm->retry_soon = TRUE;
    } else if (failed->len > 0 && !Q.bounce_ok) {
        for (guint k = 0; k < failed->len; k++) {
            KrRcpt *r = kr_msg_rcpt(msg, g_array_index(failed, guint, k));
            g_warning("%s: to=<%s>: undeliverable and no bounce node configured: not reported "
                      "to <%s>",
                      qm->id, r->address, kr_msg_sender(msg));
            r->state = KR_RCPT_BOUNCED;
            g_ptr_array_add(save, r);
        }
    }
    finish_final(qm, save);
}

/* --- hold and delete ------------------------------------------------------------ */

typedef struct {
    QMsg *qm;
    char *id;
    KrQueueDir dir;
    KrMsg *msg;
    QmAction action;
    GError *error;
} ActOp;

static void
act_work(gpointer p)
{
    ActOp *op = p;
    if (!op->msg && !(op->msg = kr_msg_load(op->dir, op->id, &op->error)))
        return;
    if (op->action == ACT_DELETE)
        kr_msg_remove(op->msg, &op->error);
    else
        kr_msg_move(op->msg, KR_QUEUE_HOLD, &op->error);
}

static void
act_done(gpointer p)
{
    ActOp *op = p;
    Q.n_busy--;
    if (op->error) {
        g_warning("%s: cannot %s: %s", op->id, op->action == ACT_DELETE ? "delete" : "hold",
                  op->error->message);
    } else {
        g_message("%s: %s", op->id,
                  op->action == ACT_DELETE ? "removed (queue delete)" : "held (queue hold)");
    }
    if (op->qm) {
        QMsg *qm = op->qm;
        if (op->error && !g_error_matches(op->error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND)) {
            qm->action = ACT_NONE;
            if (op->msg)
                qm->dir = kr_msg_queue_dir(op->msg);
            to_deferred(qm, now_s() + queue_conf->min_backoff);
        } else {
            forget(qm);
        }
    }
    if (op->msg)
        kr_msg_unref(op->msg);
    g_clear_error(&op->error);
    g_free(op->id);
    g_free(op);
    qmgr_check_stopped();
}

static void
start_act(QMsg *qm, const char *id, KrQueueDir dir, KrMsg *msg, QmAction action)
{
    ActOp *op = g_new0(ActOp, 1);
    op->qm = qm;
    op->id = g_strdup(id);
    op->dir = dir;
    op->msg = msg ? kr_msg_ref(msg) : NULL;
    op->action = action;
    Q.n_busy++;
    kr_worker_run(act_work, act_done, op);
}

/* The message is idle (not loading, no item running): do its action. */
static void
apply_action(QMsg *qm)
{
    if (qm->due_iter) {
        g_sequence_remove(qm->due_iter);
        qm->due_iter = NULL;
    }
    if (qm->wait_link) {
        g_queue_delete_link(&Q.waiting, qm->wait_link);
        qm->wait_link = NULL;
    }
    qm->state = QM_FINISHING;
    start_act(qm, qm->id, qm->msg ? kr_msg_queue_dir(qm->msg) : qm->dir, qm->msg, qm->action);
}

static gboolean
request_action(const char *id, QmAction action, GString *out)
{
    const char *what = action == ACT_DELETE ? "delete" : "hold";
    if (!kr_queue_id_valid(id)) {
        g_string_append_printf(out, "not a queue ID: %s\n", id);
        return FALSE;
    }
    QMsg *qm = g_hash_table_lookup(Q.msgs, id);
    if (!qm) {
        g_autofree char *hold = kr_queue_dir_path(KR_QUEUE_HOLD);
        g_autofree char *path = g_build_filename(hold, id, NULL);
        if (g_file_test(path, G_FILE_TEST_EXISTS)) {
            if (action == ACT_HOLD) {
                g_string_append_printf(out, "%s: already on hold\n", id);
                return TRUE;
            }
            start_act(NULL, id, KR_QUEUE_HOLD, NULL, ACT_DELETE);
            g_string_append_printf(out, "%s: delete requested\n", id);
            return TRUE;
        }
        g_string_append_printf(out, "%s: no such message in the queue\n", id);
        return FALSE;
    }
    if (qm->action == ACT_DELETE || qm->action == action) {
        g_string_append_printf(out, "%s: %s already requested\n", id, what);
        return TRUE;
    }
    qm->action = action;
    switch (qm->state) {
    case QM_WAITING:
    case QM_DEFERRED:
        apply_action(qm);
        break;
    case QM_ACTIVE: {
        /* Take back what has not started; running deliveries finish. */
        gboolean running = FALSE;
        for (guint i = qm->items->len; i-- > 0;) {
            QItem *it = qm->items->pdata[i];
            if (it->queued) {
                Q.pol->remove(Q.pstate, &it->pub);
                g_ptr_array_remove_index(qm->items, i);
                item_free(it);
            } else {
                running = TRUE;
            }
        }
        if (!running)
            finish(qm);
        break;
    }
    case QM_LOADING:
    case QM_FINISHING:
        break; /* done when that step ends */
    }
    g_string_append_printf(out, "%s: %s requested\n", id, what);
    return TRUE;
}

gboolean
qmgr_hold(const char *id, GString *out)
{
    return request_action(id, ACT_HOLD, out);
}

gboolean
qmgr_delete(const char *id, GString *out)
{
    return request_action(id, ACT_DELETE, out);
}

typedef struct {
    char *id;
    KrMsg *msg;
    GError *error;
} RelOp;

static void
release_work(gpointer p)
{
    RelOp *op = p;
    op->msg = kr_msg_load(KR_QUEUE_HOLD, op->id, &op->error);
    if (op->msg && !kr_msg_move(op->msg, KR_QUEUE_INCOMING, &op->error))
        g_clear_pointer(&op->msg, kr_msg_unref);
}

static void
release_done(gpointer p)
{
    RelOp *op = p;
    Q.n_busy--;
    QMsg *qm = g_hash_table_lookup(Q.msgs, op->id);
    if (qm) /* the placeholder that refused a second request */
        forget(qm);
    if (op->error) {
        g_warning("%s: cannot release: %s", op->id, op->error->message);
    } else {
        g_message("%s: released from hold", op->id);
        qmgr_incoming(op->id, op->msg);
    }
    if (op->msg)
        kr_msg_unref(op->msg);
    g_clear_error(&op->error);
    g_free(op->id);
    g_free(op);
    qmgr_check_stopped();
}

gboolean
qmgr_release(const char *id, GString *out)
{
    if (!kr_queue_id_valid(id)) {
        g_string_append_printf(out, "not a queue ID: %s\n", id);
        return FALSE;
    }
    if (g_hash_table_contains(Q.msgs, id)) {
        g_string_append_printf(out, "%s: not on hold\n", id);
        return FALSE;
    }
    g_autofree char *hold = kr_queue_dir_path(KR_QUEUE_HOLD);
    g_autofree char *path = g_build_filename(hold, id, NULL);
    if (!g_file_test(path, G_FILE_TEST_EXISTS)) {
        g_string_append_printf(out, "%s: not on hold\n", id);
        return FALSE;
    }
    QMsg *qm = qm_new(id, KR_QUEUE_HOLD, NULL);
    qm->state = QM_FINISHING; /* placeholder while the file moves */
    RelOp *op = g_new0(RelOp, 1);
    op->id = g_strdup(id);
    Q.n_busy++;
    kr_worker_run(release_work, release_done, op);
    g_string_append_printf(out, "%s: release requested\n", id);
    return TRUE;
}

gboolean
qmgr_flush(GString *out)
{
    guint n = 0;
    GSequenceIter *it;
    while (!g_sequence_iter_is_end(it = g_sequence_get_begin_iter(Q.deferred))) {
        QMsg *qm = g_sequence_get(it);
        g_sequence_remove(it);
        qm->due_iter = NULL;
        qm->forced = TRUE;
        push_waiting(qm, FALSE);
        n++;
    }
    for (GList *l = Q.waiting.head; l; l = l->next)
        ((QMsg *)l->data)->forced = TRUE;
    arm_timer();
    admit();
    qscan_pickup();
    g_string_append_printf(out, "flushed: %u deferred message(s) due now\n", n);
    return TRUE;
}

/* --- entry points ----------------------------------------------------------------- */

gboolean
qmgr_running(void)
{
    return Q.running;
}

void
qmgr_status(GString *out)
{
    guint loading = 0, active = 0, finishing = 0;
    GHashTableIter it;
    gpointer v;
    g_hash_table_iter_init(&it, Q.msgs);
    while (g_hash_table_iter_next(&it, NULL, &v)) {
        QmState s = ((QMsg *)v)->state;
        loading += s == QM_LOADING;
        active += s == QM_ACTIVE;
        finishing += s == QM_FINISHING;
    }
    g_string_append_printf(out,
                           "policy %s\nwaiting %u\nloading %u\nactive %u\nfinishing %u\n"
                           "deferred %d\ndeliveries %u\nrecovering %d\n",
                           Q.pol->name, Q.waiting.length, loading, active, finishing,
                           g_sequence_get_length(Q.deferred), Q.n_running, Q.recovering);
}

gboolean
qmgr_knows(const char *id)
{
    return Q.msgs && id && g_hash_table_contains(Q.msgs, id);
}

void
qmgr_incoming(const char *id, KrMsg *msg)
{
    if (!Q.running || Q.stopping || g_hash_table_contains(Q.msgs, id))
        return; /* found again by the scan at the next start */
    QMsg *qm = qm_new(id, KR_QUEUE_INCOMING, msg);
    push_waiting(qm, FALSE);
    admit();
}

void
qmgr_recovered(GPtrArray *incoming_ids, GArray *deferred)
{
    guint n_in = 0, n_def = 0;
    /* Older than anything that arrived during the scan: to the front. */
    for (guint i = incoming_ids->len; i-- > 0;) {
        const char *id = incoming_ids->pdata[i];
        if (g_hash_table_contains(Q.msgs, id))
            continue;
        push_waiting(qm_new(id, KR_QUEUE_INCOMING, NULL), TRUE);
        n_in++;
    }
    for (guint i = 0; i < deferred->len; i++) {
        QmgrFound *f = &g_array_index(deferred, QmgrFound, i);
        if (g_hash_table_contains(Q.msgs, f->id))
            continue;
        QMsg *qm = qm_new(f->id, KR_QUEUE_DEFERRED, NULL);
        to_deferred(qm, f->due);
        n_def++;
    }
    Q.recovering = FALSE;
    Q.n_busy--;
    g_message("queue recovery: %u message(s) to deliver, %u deferred", n_in, n_def);
    if (Q.stopping) {
        qmgr_check_stopped();
        return;
    }
    admit();
    arm_timer();
    qscan_pickup();
}

static void
raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            getrlimit(RLIMIT_NOFILE, &rl);
    }
    Q.max_active = queue_conf->max_active;
    if (rl.rlim_cur != RLIM_INFINITY) {
        /* Every active message holds its queue file open. */
        gint64 cap = MAX((gint64)rl.rlim_cur - 512, 16);
        if (Q.max_active > cap) {
            g_warning("max_active %" G_GINT64_FORMAT " exceeds what %llu open files allow; "
                      "using %" G_GINT64_FORMAT,
                      Q.max_active, (unsigned long long)rl.rlim_cur, cap);
            Q.max_active = cap;
        }
    }
}

gboolean
qmgr_start(GError **error)
{
    Q.pol = kr_queue_policy(queue_conf->policy);
    if (!Q.pol) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND, "queue.policy: no queue policy '%s'",
                    queue_conf->policy);
        return FALSE;
    }
    g_autoptr(GPtrArray) nodes = kr_pipeline_nodes_of_type("qmgr");
    if (nodes->len > 1) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "the pipeline has %u nodes of type qmgr; the queue manager needs exactly one",
                    nodes->len);
        return FALSE;
    }
    Q.node = nodes->len ? g_strdup(nodes->pdata[0]) : NULL;
    if (!Q.node)
        g_warning("the pipeline has no qmgr node: mail is queued but not delivered");
    const char *b = queue_conf->bounce_node;
    Q.bounce_ok = b && *b && kr_pipeline_has_node(b);
    if (b && *b && !Q.bounce_ok)
        g_warning("queue.bounce_node '%s' is not a pipeline node: undeliverable mail is only "
                  "logged, senders get no notification",
                  b);
    raise_nofile();
    Q.msgs = g_hash_table_new(g_str_hash, g_str_equal);
    g_queue_init(&Q.waiting);
    Q.deferred = g_sequence_new(NULL);
    Q.pstate = Q.pol->create ? Q.pol->create() : NULL;
    Q.running = TRUE;
    Q.recovering = TRUE;
    g_message("queue manager: policy %s, max_active %" G_GINT64_FORMAT ", max_deliveries "
              "%" G_GINT64_FORMAT ", delivery from node %s",
              Q.pol->name, Q.max_active, queue_conf->max_deliveries, Q.node ? Q.node : "(none)");
    Q.n_busy++; /* the recovery scan */
    qscan_recover();
    qscan_start_timer();
    return TRUE;
}

void
qmgr_stop(void (*done)(gpointer token), gpointer token)
{
    if (!Q.running) {
        done(token);
        return;
    }
    Q.stopping = TRUE;
    Q.stop_done = done;
    Q.stop_token = token;
    if (Q.kick_src) {
        g_source_remove(Q.kick_src);
        Q.kick_src = 0;
    }
    arm_timer(); /* removes it */
    qscan_stop();
    qmgr_check_stopped();
}
