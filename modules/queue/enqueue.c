/* SPDX-License-Identifier: MIT */
/*
 * enqueue.c - the stage types where the two halves of the pipeline meet
 * the queue.
 *
 * `enqueue` (terminal) ends the receive side. A message still being
 * received (an uncommitted spool, as the SMTP server makes) is committed
 * into incoming/ -- or straight into active/ when the queue manager has
 * a free slot and nothing waiting (qmgr_reserve_active), which saves a
 * move per message; a committed maildrop file (sendmail, picked up) gets
 * its envelope rewritten (what the receive stages changed) and is moved
 * the same way. Both in a worker thread. Only once the file is durable
 * does the stage answer continue, so the SMTP server's "250" (with the
 * queue ID) means the message is safe; on an error it answers defer
 * (451 4.3.0) and the client keeps the message. Then the queue manager
 * is told, in-process, and the log line
 *   "ID: from=<sender>, size=N, nrcpt=N (queue active)"
 * is written. If a split job reaches `enqueue` in several branches, the
 * first commits and the others wait for it (their recipients are in the
 * same file).
 *
 * `qmgr` (entry) starts the delivery side: the queue manager runs each
 * delivery from its node; the stage itself just continues. Its create()
 * checks that the configured queue policy exists, so `kurird
 * --check-config` reports an unknown policy.
 *
 *   queue_enqueue_type, queue_qmgr_type   the stage types
 *   enqueue_busy()                        commits in flight
 */
#include "queue.h"

typedef struct {
    KrMsg *msg;
    KrQueueDir dir;  /* incoming/, or active/ with a reserved slot */
    GPtrArray *jobs; /* KrJob * answered when the commit ends */
    GError *error;
} EnqOp;

static GHashTable *ops; /* KrMsg * -> EnqOp */

guint
enqueue_busy(void)
{
    return ops ? g_hash_table_size(ops) : 0;
}

static void
enq_work(gpointer p)
{
    EnqOp *op = p;
    KrMsg *msg = op->msg;
    KrQueueDir from = kr_msg_queue_dir(msg);
    GError *err = NULL;
    if (kr_msg_commit(msg, op->dir, &err))
        return;
    if (g_error_matches(err, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED)) {
        /* Already committed (a maildrop file): persist the receive
         * side's changes, then move it. */
        g_clear_error(&err);
        if (kr_msg_rewrite_envelope(msg, &err) && from != op->dir)
            kr_msg_move_lazy(msg, op->dir, &err);
    }
    op->error = err;
}

static void
enq_done(gpointer p)
{
    EnqOp *op = p;
    KrMsg *msg = op->msg;
    const char *id = kr_msg_queue_id(msg);
    g_hash_table_remove(ops, msg);
    if (op->error) {
        if (op->dir == KR_QUEUE_ACTIVE)
            qmgr_release_active();
        g_warning("%s: cannot queue message: %s", id, op->error->message);
        for (guint i = 0; i < op->jobs->len; i++)
            kr_job_defer(op->jobs->pdata[i], "4.3.0", "cannot queue message: %s",
                         op->error->message);
    } else {
        queue_crash_point("enqueue-durable");
        const char *sender = kr_msg_sender(msg);
        g_message("%s: from=<%s>, size=%" G_GINT64_FORMAT ", nrcpt=%u (queue active)", id, sender,
                  (gint64)kr_msg_size(msg), kr_msg_rcpt_count(msg));
        for (guint i = 0; i < op->jobs->len; i++)
            kr_job_continue(op->jobs->pdata[i]);
        if (op->dir == KR_QUEUE_ACTIVE)
            qmgr_incoming_active(id, msg);
        else
            qmgr_incoming(id, msg);
    }
    g_ptr_array_unref(op->jobs);
    g_clear_error(&op->error);
    kr_msg_unref(msg);
    g_free(op);
}

static void
enqueue_process(KrStage *stage, KrJob *job)
{
    KrMsg *msg = kr_job_msg(job);
    if (!ops)
        ops = g_hash_table_new(g_direct_hash, g_direct_equal);
    EnqOp *op = g_hash_table_lookup(ops, msg);
    if (op) {
        g_ptr_array_add(op->jobs, job); /* another branch of the same message */
        return;
    }
    if (qmgr_knows(kr_msg_queue_id(msg))) {
        kr_job_continue(job); /* already queued by an earlier branch */
        return;
    }
    op = g_new0(EnqOp, 1);
    op->msg = kr_msg_ref(msg);
    op->dir = qmgr_reserve_active() ? KR_QUEUE_ACTIVE : KR_QUEUE_INCOMING;
    op->jobs = g_ptr_array_new();
    g_ptr_array_add(op->jobs, job);
    g_hash_table_insert(ops, msg, op);
    kr_worker_run(enq_work, enq_done, op);
}

const KrStageType queue_enqueue_type = {
    .struct_size = sizeof(KrStageType),
    .name = "enqueue",
    .summary = "end of the receive side: make the message durable in the queue",
    .flags = KR_STAGE_TERMINAL,
    .process = enqueue_process,
};

static gboolean
qmgr_stage_create(KrStage *stage, GError **error)
{
    if (!kr_queue_policy(queue_conf->policy)) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND,
                    "queue.policy: no queue policy named '%s' (built in: fifo, fair; others "
                    "come from modules)",
                    queue_conf->policy);
        return FALSE;
    }
    return TRUE;
}

static void
qmgr_stage_process(KrStage *stage, KrJob *job)
{
    kr_job_continue(job);
}

const KrStageType queue_qmgr_type = {
    .struct_size = sizeof(KrStageType),
    .name = "qmgr",
    .summary = "start of the delivery side: the queue manager runs deliveries from here",
    .flags = KR_STAGE_ENTRY,
    .create = qmgr_stage_create,
    .process = qmgr_stage_process,
};
