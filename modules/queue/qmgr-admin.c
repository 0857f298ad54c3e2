/* SPDX-License-Identifier: MIT */
/*
 * qmgr-admin.c - the queue manager's answers to the admin: hold, delete,
 * release, flush and status (control requests from `kurir queue`).
 *
 *   qmgr_hold(id, out) / qmgr_delete(id, out)   a waiting or deferred
 *        message at once; an active one once its running deliveries end
 *        (its queued items are taken back from the policy)
 *   qmgr_release(id, out)    hold/ -> incoming/, then delivered as new
 *   qmgr_flush(out)          every deferred message due now (and pickup)
 *   qmgr_status(out)         counters
 *   qm_apply_action(qm)      do a pending hold/delete (worker thread)
 *
 * Requests answer at once ("... requested"); the file moves in a worker
 * thread, and `kurir queue` waits until it sees the result.
 */
#include "qmgr-private.h"

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
            qm_to_deferred(qm, qm_now() + queue_conf->min_backoff);
        } else {
            qm_forget(qm);
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
void
qm_apply_action(QMsg *qm)
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
        qm_apply_action(qm);
        break;
    case QM_ACTIVE: {
        /* Take back what has not started; running deliveries finish. */
        gboolean running = FALSE;
        for (guint i = qm->items->len; i-- > 0;) {
            QItem *it = qm->items->pdata[i];
            if (it->queued) {
                Q.pol->remove(Q.pstate, &it->pub);
                g_ptr_array_remove_index(qm->items, i);
                qm_item_free(it);
            } else {
                running = TRUE;
            }
        }
        if (!running)
            qm_finish(qm);
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
        qm_forget(qm);
    if (op->error) {
        g_warning("%s: cannot release: %s", op->id, op->error->message);
    } else {
        g_message("%s: released from hold", op->id);
        qmgr_incoming(op->id, op->msg);
        QMsg *nq = g_hash_table_lookup(Q.msgs, op->id);
        if (nq)
            nq->forced = TRUE; /* released: try every recipient now */
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
        qm_push_waiting(qm, FALSE);
        n++;
    }
    for (GList *l = Q.waiting.head; l; l = l->next)
        ((QMsg *)l->data)->forced = TRUE;
    qm_arm_timer();
    qm_admit();
    qscan_pickup();
    g_string_append_printf(out, "flushed: %u deferred message(s) due now\n", n);
    return TRUE;
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
