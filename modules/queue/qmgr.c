/* SPDX-License-Identifier: MIT */
/*
 * qmgr.c - the queue manager: which message is delivered when.
 *
 * DESCRIPTION
 *   Messages enter from incoming/ (told by the enqueue stage, found by the
 *   recovery scan, released from hold) or come back from deferred/ when
 *   due. At most max_active messages are in active/ at once; the rest
 *   wait, oldest first. An admitted message is loaded and moved to
 *   active/ (worker thread). When nothing waits and a slot is free, the
 *   enqueue stage reserves the slot (qmgr_reserve_active) and commits
 *   the new message straight into active/, saving the move
 *   (qmgr_incoming_active; after a crash the recovery scan takes active/
 *   files back to incoming/ like any other). An active message's
 *   recipients that are due (PENDING, or DEFERRED with next_try passed)
 *   are grouped by destination into items that go to the policy.
 *   Whenever a delivery slot is free (at most max_deliveries), the policy
 *   picks the next item, and the queue manager runs
 *   kr_pipeline_run(<qmgr node>, msg, item's recipients).
 *
 *   When the delivery job ends, each recipient's state is looked at:
 *   DELIVERED (or EXPANDED/BOUNCED) is final; DEFERRED gets its next_try
 *   (min_backoff doubling per attempt up to max_backoff; never past the
 *   message's lifetime), or, past max_lifetime, becomes FAILED (Status
 *   4.4.7); a recipient no stage finished is DEFERRED. The states are
 *   saved in the queue file (kr_msg_rcpt_save, worker) before the slot is
 *   given back and the policy hears the result -- except when the file
 *   is about to go (its last item, every recipient final): then it is
 *   just removed.
 *
 *   When no item of a message is left: FAILED recipients go to the bounce
 *   node as one job (one DSN); the bounce stage marks them BOUNCED once
 *   the DSN is durable, and if it does not, they stay FAILED and the
 *   bounce is retried later. DEFERRED recipients go along in that job
 *   until the message has the attribute delay_warned (the bounce stage
 *   may send a delay warning), and are left exactly as they were. So do
 *   DELIVERED and EXPANDED recipients with NOTIFY=SUCCESS that the
 *   attribute dsn_success (",0,3,", set by the bounce stage once their
 *   success report is queued) does not list yet; while any of them is
 *   not listed after the job, the file is kept (every state saved) and
 *   the bounce is tried again soon. Then
 *   the file is removed when every
 *   recipient is final, else it moves to deferred/ and comes back at the
 *   earliest next_try. Delivery is at-least-once: a crash between a
 *   delivery and its saved status repeats that delivery, never loses it.
 *
 *   hold, delete, release, flush and status are in qmgr-admin.c.
 *
 *   qmgr_start / qmgr_stop            the service
 *   qmgr_incoming(id, msg)            a message is in incoming/
 *   qmgr_recovered(ids, deferred)     the recovery scan's findings
 *   qmgr_knows(id)                    is it being handled
 *
 * All state lives on the event loop; file work is done in worker
 * threads on a message that the loop does not touch meanwhile.
 */
#include "qmgr-private.h"
#include <sys/resource.h>

Qmgr Q;

gint64
qm_now(void)
{
    return g_get_real_time() / G_USEC_PER_SEC;
}

/* --- small pieces ---------------------------------------------------------- */

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

QMsg *
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

void
qm_item_free(QItem *it)
{
    g_free(it->dest);
    g_array_unref(it->rcpts);
    g_free(it);
}

/* The queue manager lets go of a message (removed, held, or left for
 * the next start). */
void
qm_forget(QMsg *qm)
{
    if (qm->due_iter)
        g_sequence_remove(qm->due_iter);
    if (qm->wait_link)
        g_queue_delete_link(&Q.waiting, qm->wait_link);
    for (guint i = 0; i < qm->items->len; i++) {
        QItem *it = qm->items->pdata[i];
        if (it->queued)
            Q.pol->remove(Q.pstate, &it->pub);
        qm_item_free(it);
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
    qm_admit();
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

static gboolean
on_timer(gpointer ud)
{
    Q.timer = 0;
    gint64 now = qm_now();
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
    qm_admit();
    qm_arm_timer();
    return G_SOURCE_REMOVE;
}

void
qm_arm_timer(void)
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
    gint64 wait_ms = (qm->due - qm_now()) * 1000;
    Q.timer_due = qm->due;
    Q.timer = g_timeout_add((guint)CLAMP(wait_ms, 0, 3600 * 1000), on_timer, NULL);
}

void
qm_to_deferred(QMsg *qm, gint64 due)
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
    qm_arm_timer();
    qm_admit();
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
    /* Lazy: after a crash the file is found in incoming/ or active/ (or
     * both), and the recovery scan resumes it either way. */
    kr_msg_move_lazy(op->msg, KR_QUEUE_ACTIVE, &op->error);
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
            qm_finish(qm);
        else
            build_items(qm);
    } else if (op->corrupt || g_error_matches(op->error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND)) {
        if (!op->corrupt)
            g_message("%s: gone from %s/ before delivery", qm->id, kr_queue_dir_name(op->dir));
        qm_forget(qm);
    } else {
        g_warning("%s: cannot activate: %s; retrying in %" G_GINT64_FORMAT "s", qm->id,
                  op->error->message, queue_conf->min_backoff);
        if (qm->action != ACT_NONE) {
            qm_apply_action(qm);
        } else {
            /* The file did not move; remember where it is. */
            if (op->msg)
                qm->dir = kr_msg_queue_dir(op->msg);
            qm_to_deferred(qm, qm_now() + queue_conf->min_backoff);
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

void
qm_admit(void)
{
    while (Q.running && !Q.stopping && !Q.recovering && Q.node &&
           Q.n_active < (guint)Q.max_active && !g_queue_is_empty(&Q.waiting)) {
        QMsg *qm = g_queue_pop_head(&Q.waiting);
        qm->wait_link = NULL;
        activate(qm);
    }
}

void
qm_push_waiting(QMsg *qm, gboolean head)
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
    gint64 now = qm_now();
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
        qm_finish(qm);
        return;
    }
    for (guint i = 0; i < qm->items->len; i++) {
        QItem *it = qm->items->pdata[i];
        it->queued = TRUE;
        Q.pol->enqueue(Q.pstate, &it->pub);
    }
    qm_kick();
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
    qm_item_free(it);
    g_ptr_array_unref(op->save);
    kr_msg_unref(op->msg);
    g_clear_error(&op->error);
    g_free(op);
    if (qm->items->len == 0)
        qm_finish(qm);
    qm_kick();
    qmgr_check_stopped();
}

/* After a delivery attempt: decide each recipient's next step. */
static void
item_results(QItem *it)
{
    QMsg *qm = it->qm;
    KrMsg *msg = qm->msg;
    gint64 now = qm_now();
    /* Whole seconds, rounded up: a retry is never early. */
    gint64 now_up = (g_get_real_time() + G_USEC_PER_SEC - 1) / G_USEC_PER_SEC;
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
                if (r->next_try <= now) /* else a stage set its own */
                    r->next_try =
                        now_up + qmgr_backoff(MAX(r->attempts, 1u), queue_conf->min_backoff,
                                              queue_conf->max_backoff);
                r->next_try = MIN(r->next_try, MAX(expires, now + 1));
                any_deferred = TRUE;
            }
        } else if (r->state == KR_RCPT_FAILED) {
            any_failed = TRUE;
        }
        /* The delivery stage logs its own outcome; these lines add what
         * only the queue manager knows. */
        if (r->state == KR_RCPT_DEFERRED)
            g_message("%s: to=<%s>, delay=%.1f, attempts=%u, dsn=%s, status=deferred (%d %s), "
                      "retry in %" G_GINT64_FORMAT "s",
                      qm->id, r->address, delay, r->attempts, r->ecode, r->code, r->diag,
                      r->next_try - now_up);
        else if (strcmp(status, "expired") == 0)
            g_message("%s: to=<%s>, delay=%.1f, attempts=%u, dsn=%s, status=%s (%d %s)", qm->id,
                      r->address, delay, r->attempts, r->ecode, status, r->code, r->diag);
        else
            g_debug("%s: to=<%s>, delay=%.1f, attempts=%u, dsn=%s, status=%s (%d %s)", qm->id,
                    r->address, delay, r->attempts, r->ecode, status, r->code, r->diag);
        g_ptr_array_add(op->save, r);
    }
    op->result = any_deferred ? KR_RESULT_DEFERRED
                 : any_failed ? KR_RESULT_FAILED
                              : KR_RESULT_DELIVERED;
    /* The last item, and every recipient is final: the file is about to
     * be removed, so saving the states first would buy nothing (a crash
     * before the removal repeats these deliveries either way). */
    gboolean all_final = qm->items->len == 1 && qm->action == ACT_NONE;
    for (guint i = 0; all_final && i < kr_msg_rcpt_count(msg); i++)
        all_final = rcpt_final(kr_msg_rcpt(msg, i));
    if (all_final) {
        g_ptr_array_set_size(op->save, 0);
        item_saved(op);
        return;
    }
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
    /* A stage may set next_try itself (a server's retry hint); any value
     * found afterwards is one it set. */
    for (guint k = 0; k < it->rcpts->len; k++)
        kr_msg_rcpt(it->qm->msg, g_array_index(it->rcpts, guint, k))->next_try = 0;
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

void
qm_kick(void)
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
    gboolean keep; /* a success report is still owed: never remove */
    gboolean removed, moved;
    GError *error;
} FinalOp;

static void
final_work(gpointer p)
{
    FinalOp *op = p;
    gboolean all_final = TRUE;
    for (guint i = 0; i < kr_msg_rcpt_count(op->msg); i++)
        if (!rcpt_final(kr_msg_rcpt(op->msg, i)))
            all_final = FALSE;
    if (op->keep) {
        /* The last item may have skipped saving: save every state. */
        g_ptr_array_set_size(op->save, 0);
        for (guint i = 0; i < kr_msg_rcpt_count(op->msg); i++)
            g_ptr_array_add(op->save, kr_msg_rcpt(op->msg, i));
        op->due = 0;
    } else if (all_final) {
        /* Every recipient is final: if a crash brings the file back, its
         * deliveries are repeated (at-least-once), never lost. No need to
         * save the states of a file that goes. */
        op->removed = kr_msg_remove_lazy(op->msg, &op->error);
        if (op->removed)
            return;
        /* It stays after all: every state must be in the file. */
        g_warning("%s: %s", kr_msg_queue_id(op->msg), op->error->message);
        g_clear_error(&op->error);
        g_ptr_array_set_size(op->save, 0);
        for (guint i = 0; i < kr_msg_rcpt_count(op->msg); i++)
            g_ptr_array_add(op->save, kr_msg_rcpt(op->msg, i));
        op->due = 0;
    }
    for (guint i = 0; i < op->save->len; i++) {
        GError *err = NULL;
        if (!kr_msg_rcpt_save(op->msg, op->save->pdata[i], &err)) {
            g_warning("%s: cannot record status: %s", kr_msg_queue_id(op->msg), err->message);
            g_error_free(err);
            op->due = 0; /* keep the file; try again soon */
        }
    }
    if (kr_msg_queue_dir(op->msg) != KR_QUEUE_DEFERRED)
        op->moved = kr_msg_move_lazy(op->msg, KR_QUEUE_DEFERRED, &op->error);
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
        qm_forget(qm);
    } else if (qm->action != ACT_NONE) {
        qm_apply_action(qm);
    } else {
        gint64 now = qm_now();
        gint64 due = qscan_due(op->msg, now, queue_conf->min_backoff);
        if (op->due == 0 || op->error || qm->retry_soon)
            due = MIN(due, now + queue_conf->min_backoff);
        qm->retry_soon = FALSE;
        qm->dir = kr_msg_queue_dir(op->msg);
        qm_to_deferred(qm, MAX(due, now));
    }
    g_ptr_array_unref(op->save);
    kr_msg_unref(op->msg);
    g_clear_error(&op->error);
    g_free(op);
    qmgr_check_stopped();
}

static void
finish_final(QMsg *qm, GPtrArray *save, gboolean keep)
{
    FinalOp *op = g_new0(FinalOp, 1);
    op->qm = qm;
    op->msg = kr_msg_ref(qm->msg);
    op->save = save;
    op->due = 1;
    op->keep = keep;
    Q.n_busy++;
    kr_worker_run(final_work, final_done, op);
}

/* A success report is owed for r (NOTIFY=SUCCESS, not yet in dsn_success). */
static gboolean
success_owed(KrMsg *msg, const KrRcpt *r)
{
    if ((r->state != KR_RCPT_DELIVERED && r->state != KR_RCPT_EXPANDED) ||
        !(r->notify & KR_NOTIFY_SUCCESS))
        return FALSE;
    const char *v = kr_msg_attr(msg, "dsn_success");
    char key[16];
    g_snprintf(key, sizeof key, ",%u,", r->index);
    return !v || !strstr(v, key);
}

static void
bounce_done(KrMsg *msg, const KrJobResult *result, gpointer ud)
{
    QMsg *qm = ud;
    Q.n_busy--;
    queue_crash_point("bounce-queued");
    GPtrArray *save = g_ptr_array_new();
    gboolean failed = FALSE, owed = FALSE;
    for (guint i = 0; i < qm->bounced->len; i++) {
        RcptCopy *c = &g_array_index(qm->bounced, RcptCopy, i);
        KrRcpt *r = kr_msg_rcpt(msg, c->index);
        /* A deferred one came along for a delay warning, a delivered or
         * expanded one for a success report: it stays exactly as it was,
         * whatever the node did. */
        gboolean delayed = c->state == KR_RCPT_DEFERRED || c->state == KR_RCPT_DELIVERED ||
                           c->state == KR_RCPT_EXPANDED;
        if (!delayed && rcpt_final(r)) { /* BOUNCED (or whatever the node finished it as) */
            g_ptr_array_add(save, r);
            continue;
        }
        /* Not reported: stays FAILED, as it was, and is tried again. */
        if (!delayed)
            failed = TRUE;
        r->state = c->state;
        r->attempts = c->attempts;
        r->next_try = c->next_try;
        r->code = c->code;
        memcpy(r->ecode, c->ecode, sizeof r->ecode);
        memcpy(r->diag, c->diag, sizeof r->diag);
        if (success_owed(msg, r))
            owed = TRUE;
    }
    if (owed) {
        g_warning("%s: could not queue the delivery status notification (%s); retrying later",
                  qm->id, result->text ? result->text : "no reason given");
        qm->retry_soon = TRUE;
    }
    if (failed) {
        g_warning("%s: could not queue the non-delivery notification (%s); retrying later", qm->id,
                  result->text ? result->text : "no reason given");
        qm->retry_soon = TRUE;
    }
    g_clear_pointer(&qm->bounced, g_array_unref);
    finish_final(qm, save, owed);
}

void
qm_finish(QMsg *qm)
{
    qm->state = QM_FINISHING;
    if (qm->action != ACT_NONE) {
        qm_apply_action(qm);
        return;
    }
    KrMsg *msg = qm->msg;
    GPtrArray *save = g_ptr_array_new();
    g_autoptr(GArray) failed = g_array_new(FALSE, FALSE, sizeof(guint));
    /* The bounce node also gets the deferred recipients until the
     * message has had its delay warning (attribute delay_warned, set by
     * the bounce stage; see modules/bounce/bounce.c); they stay as they
     * are (bounce_done). */
    g_autoptr(GArray) report = g_array_new(FALSE, FALSE, sizeof(guint));
    gboolean warn = kr_msg_attr(msg, "delay_warned") == NULL;
    gboolean owed = FALSE; /* a success report is due */
    for (guint i = 0; i < kr_msg_rcpt_count(msg); i++) {
        KrRcpt *ri = kr_msg_rcpt(msg, i);
        KrRcptState st = ri->state;
        gboolean succ = success_owed(msg, ri);
        owed = owed || succ;
        if (st == KR_RCPT_FAILED)
            g_array_append_val(failed, i);
        if (st == KR_RCPT_FAILED || (warn && st == KR_RCPT_DEFERRED) || succ)
            g_array_append_val(report, i);
    }
    if (report->len > 0 && Q.bounce_ok && !Q.stopping) {
        qm->bounced = g_array_sized_new(FALSE, TRUE, sizeof(RcptCopy), report->len);
        for (guint k = 0; k < report->len; k++) {
            guint i = g_array_index(report, guint, k);
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
        if (kr_pipeline_run(queue_conf->bounce_node, msg, report, bounce_done, qm, &err)) {
            g_ptr_array_unref(save);
            return;
        }
        Q.n_busy--;
        g_warning("%s: cannot start the bounce: %s", qm->id, err->message);
        g_clear_pointer(&qm->bounced, g_array_unref);
        qm->retry_soon = TRUE;
        finish_final(qm, save, owed);
        return;
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
    /* Stopping: the file stays for the success report at the next start.
     * No bounce node: no report can be sent; nothing is kept for it. */
    finish_final(qm, save, owed && Q.bounce_ok);
}

/* --- entry points ----------------------------------------------------------------- */

gboolean
qmgr_running(void)
{
    return Q.running;
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
    qm_push_waiting(qm, FALSE);
    qm_admit();
}

gboolean
qmgr_reserve_active(void)
{
    if (!Q.running || Q.stopping || Q.recovering || !Q.node || Q.n_active >= (guint)Q.max_active ||
        !g_queue_is_empty(&Q.waiting))
        return FALSE;
    Q.n_active++;
    return TRUE;
}

void
qmgr_release_active(void)
{
    Q.n_active--;
    qm_admit();
}

void
qmgr_incoming_active(const char *id, KrMsg *msg)
{
    if (!Q.running || Q.stopping || g_hash_table_contains(Q.msgs, id)) {
        qmgr_release_active(); /* the recovery scan resumes it from active/ */
        return;
    }
    QMsg *qm = qm_new(id, KR_QUEUE_ACTIVE, msg);
    qm->counted = TRUE; /* the reservation's slot */
    qm->state = QM_ACTIVE;
    queue_crash_point("active");
    build_items(qm);
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
        qm_push_waiting(qm_new(id, KR_QUEUE_INCOMING, NULL), TRUE);
        n_in++;
    }
    for (guint i = 0; i < deferred->len; i++) {
        QmgrFound *f = &g_array_index(deferred, QmgrFound, i);
        if (g_hash_table_contains(Q.msgs, f->id))
            continue;
        QMsg *qm = qm_new(f->id, KR_QUEUE_DEFERRED, NULL);
        qm_to_deferred(qm, f->due);
        n_def++;
    }
    Q.recovering = FALSE;
    Q.n_busy--;
    g_message("queue recovery: %u message(s) to deliver, %u deferred", n_in, n_def);
    if (Q.stopping) {
        qmgr_check_stopped();
        return;
    }
    qm_admit();
    qm_arm_timer();
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
    qm_arm_timer(); /* removes it */
    qscan_stop();
    qmgr_check_stopped();
}
