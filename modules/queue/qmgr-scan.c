/* SPDX-License-Identifier: MIT */
/*
 * qmgr-scan.c - what the queue manager finds on disk: the recovery scan
 * at start and the maildrop pickup.
 *
 * Recovery (once, at start, in a worker thread, before any message is
 * admitted to active/):
 *   - temporary spool files (.tmp-ID) in incoming/ are removed: nothing
 *     was acknowledged for them; in maildrop/ only those older than an
 *     hour (a sendmail may be writing one right now);
 *   - files in incoming/, active/, deferred/ and maildrop/ whose names
 *     are not queue IDs are moved to corrupt/ (logged); spares
 *     (.spare-ID, emptied files kept for reuse) are removed;
 *   - a file found under two names (kr_msg_move links the new name, syncs
 *     it, then unlinks the old one: a crash in between leaves both, one
 *     inode) keeps the newer name: hold/ wins, then deferred/, incoming/,
 *     active/, maildrop/ (the order the queue moves files in);
 *   - active/ files (a crash mid-delivery) go back to incoming/; one that
 *     does not parse goes to corrupt/ with a log line;
 *   - incoming/ is listed (parsed when admitted; a bad file then goes to
 *     corrupt/ and never blocks the rest);
 *   - deferred/ files are parsed to learn when each is due.
 *   The findings go to qmgr_recovered(), which then starts a pickup.
 *
 * Pickup: maildrop/ holds committed files written by sendmail. Each is
 * run through the pipeline from the pickup node (`maildrop`), like SMTP
 * mail; the enqueue stage moves it to incoming/. If the receive side
 * refuses it (or discards it) the file is still in maildrop/: its
 * recipients' states are saved and it goes to incoming/ anyway, so the
 * queue manager bounces what was refused. A deferred pickup stays and is
 * tried at the next scan. Scans run on request (`kurir queue pickup`,
 * sent by sendmail), after recovery, and every pickup_interval.
 *
 *   qscan_recover()             start the recovery scan
 *   qscan_pickup()              scan maildrop/ now
 *   qscan_start_timer()/stop()  the periodic pickup
 *   qscan_busy()                pickups in flight
 *   qscan_due(msg, now, fail)   when a deferred file is due
 */
#include "queue.h"
#include <errno.h>
#include <glib/gstdio.h>
#include <sys/stat.h>

#define STALE_MAILDROP_TMP 3600 /* seconds */
#define PICKUP_BATCH       1000

static gboolean scanning, rescan, stopped;
static GHashTable *inflight; /* queue IDs being picked up */
static guint timer, n_moving;

gint64
qscan_due(KrMsg *msg, gint64 now, gint64 failed_delay)
{
    gint64 due = G_MAXINT64;
    for (guint i = 0; i < kr_msg_rcpt_count(msg); i++) {
        KrRcpt *r = kr_msg_rcpt(msg, i);
        switch (r->state) {
        case KR_RCPT_PENDING:
            due = MIN(due, now);
            break;
        case KR_RCPT_DEFERRED:
            due = MIN(due, r->next_try > 0 ? r->next_try : now);
            break;
        case KR_RCPT_FAILED:
            due = MIN(due, now + failed_delay);
            break;
        default:
            break;
        }
    }
    return due == G_MAXINT64 ? now : due; /* all final: come back to be removed */
}

/* --- recovery ------------------------------------------------------------------- */

typedef struct {
    GPtrArray *incoming; /* char * */
    GArray *deferred;    /* QmgrFound */
    guint resumed, stale, corrupt;
} Recovery;

static void
found_clear(gpointer p)
{
    g_free(((QmgrFound *)p)->id);
}

/* Remove stale spools and quarantine stray names in one directory. */
static void
sweep_dir(Recovery *rc, KrQueueDir dir, gint64 tmp_min_age)
{
    g_autofree char *path = kr_queue_dir_path(dir);
    GDir *d = g_dir_open(path, 0, NULL);
    if (!d)
        return;
    gint64 now = g_get_real_time() / G_USEC_PER_SEC;
    const char *name;
    GPtrArray *stray = g_ptr_array_new_with_free_func(g_free);
    while ((name = g_dir_read_name(d))) {
        if (kr_queue_id_valid(name))
            continue;
        g_autofree char *file = g_build_filename(path, name, NULL);
        struct stat st;
        if (lstat(file, &st) != 0 || S_ISDIR(st.st_mode))
            continue;
        if (g_str_has_prefix(name, ".spare-"))
            continue; /* kr_queue_sweep_spares() */
        if (g_str_has_prefix(name, ".tmp-")) {
            if (tmp_min_age < 0 || now - (gint64)st.st_mtime < tmp_min_age)
                continue;
            if (g_unlink(file) == 0) {
                g_message("recovery: removed unfinished spool %s/%s (never acknowledged)",
                          kr_queue_dir_name(dir), name);
                rc->stale++;
            }
            continue;
        }
        g_ptr_array_add(stray, g_strdup(name));
    }
    g_dir_close(d);
    for (guint i = 0; i < stray->len; i++) {
        kr_queue_quarantine(dir, stray->pdata[i], "file name is not a queue ID");
        rc->corrupt++;
    }
    g_ptr_array_unref(stray);
}

/* A move is link(new) + unlink(old): a crash in between leaves one file
 * under two names. Keep the name the file was moving to (hold/ wins,
 * then deferred/, incoming/, active/, maildrop/: the order the queue
 * moves files in) and drop the other. Two different files with one ID
 * cannot happen; if it does, the second goes to corrupt/. */
static void
drop_second_names(Recovery *rc)
{
    static const KrQueueDir order[] = {KR_QUEUE_HOLD, KR_QUEUE_DEFERRED, KR_QUEUE_INCOMING,
                                       KR_QUEUE_ACTIVE, KR_QUEUE_MAILDROP};
    g_autoptr(GHashTable) seen = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    for (gsize d = 0; d < G_N_ELEMENTS(order); d++) {
        g_autoptr(GPtrArray) ids = kr_queue_list(order[d]);
        g_autofree char *dpath = kr_queue_dir_path(order[d]);
        for (guint i = 0; i < ids->len; i++) {
            const char *id = ids->pdata[i];
            gpointer kept;
            if (!g_hash_table_lookup_extended(seen, id, NULL, &kept)) {
                g_hash_table_insert(seen, g_strdup(id), GINT_TO_POINTER(order[d]));
                continue;
            }
            KrQueueDir kd = (KrQueueDir)GPOINTER_TO_INT(kept);
            g_autofree char *kdpath = kr_queue_dir_path(kd);
            g_autofree char *a = g_build_filename(kdpath, id, NULL);
            g_autofree char *b = g_build_filename(dpath, id, NULL);
            struct stat sa, sb;
            if (lstat(a, &sa) == 0 && lstat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
                sa.st_ino == sb.st_ino) {
                if (g_unlink(b) == 0)
                    g_message("recovery: %s: in %s/ and %s/ (an interrupted move): kept %s/", id,
                              kr_queue_dir_name(kd), kr_queue_dir_name(order[d]),
                              kr_queue_dir_name(kd));
            } else {
                kr_queue_quarantine(order[d], id, "a different file with this ID is queued");
                rc->corrupt++;
            }
        }
    }
}

static void
recover_work(gpointer p)
{
    Recovery *rc = p;
    gint64 now = g_get_real_time() / G_USEC_PER_SEC;
    sweep_dir(rc, KR_QUEUE_INCOMING, 0);
    sweep_dir(rc, KR_QUEUE_MAILDROP, STALE_MAILDROP_TMP);
    sweep_dir(rc, KR_QUEUE_ACTIVE, -1);
    sweep_dir(rc, KR_QUEUE_DEFERRED, -1);
    kr_queue_sweep_spares();
    drop_second_names(rc);

    g_autoptr(GPtrArray) active = kr_queue_list(KR_QUEUE_ACTIVE);
    for (guint i = 0; i < active->len; i++) {
        const char *id = active->pdata[i];
        g_autoptr(GError) err = NULL;
        g_autoptr(KrMsg) msg = kr_msg_load(KR_QUEUE_ACTIVE, id, &err);
        if (!msg) {
            if (g_error_matches(err, G_IO_ERROR, G_IO_ERROR_INVALID_DATA)) {
                kr_queue_quarantine(KR_QUEUE_ACTIVE, id, err->message);
                rc->corrupt++;
            } else {
                g_warning("recovery: %s: %s", id, err->message);
            }
            continue;
        }
        if (kr_msg_move_lazy(msg, KR_QUEUE_INCOMING, &err))
            rc->resumed++;
        else
            g_warning("recovery: %s: %s", id, err->message);
    }

    rc->incoming = kr_queue_list(KR_QUEUE_INCOMING);

    g_autoptr(GPtrArray) deferred = kr_queue_list(KR_QUEUE_DEFERRED);
    for (guint i = 0; i < deferred->len; i++) {
        const char *id = deferred->pdata[i];
        g_autoptr(GError) err = NULL;
        g_autoptr(KrMsg) msg = kr_msg_load(KR_QUEUE_DEFERRED, id, &err);
        if (!msg) {
            if (g_error_matches(err, G_IO_ERROR, G_IO_ERROR_INVALID_DATA)) {
                kr_queue_quarantine(KR_QUEUE_DEFERRED, id, err->message);
                rc->corrupt++;
            } else {
                g_warning("recovery: %s: %s", id, err->message);
            }
            continue;
        }
        QmgrFound f = {.id = g_strdup(id), .due = qscan_due(msg, now, 0)};
        g_array_append_val(rc->deferred, f);
    }
}

static void
recover_done(gpointer p)
{
    Recovery *rc = p;
    if (rc->resumed || rc->stale || rc->corrupt)
        g_message("recovery: %u interrupted delivery(ies) resumed, %u unfinished spool(s) "
                  "removed, %u bad file(s) moved to corrupt/",
                  rc->resumed, rc->stale, rc->corrupt);
    qmgr_recovered(rc->incoming, rc->deferred);
    g_ptr_array_unref(rc->incoming);
    g_array_unref(rc->deferred);
    g_free(rc);
}

void
qscan_recover(void)
{
    Recovery *rc = g_new0(Recovery, 1);
    rc->deferred = g_array_new(FALSE, FALSE, sizeof(QmgrFound));
    g_array_set_clear_func(rc->deferred, found_clear);
    kr_worker_run(recover_work, recover_done, rc);
}

/* --- pickup ------------------------------------------------------------------------ */

typedef struct {
    GHashTable *skip; /* IDs in flight when the scan started */
    GPtrArray *msgs;  /* KrMsg * loaded */
    gboolean more;    /* the batch was full */
} Scan;

static void
pickup_work(gpointer p)
{
    Scan *sc = p;
    g_autoptr(GPtrArray) ids = kr_queue_list(KR_QUEUE_MAILDROP);
    for (guint i = 0; i < ids->len; i++) {
        const char *id = ids->pdata[i];
        if (g_hash_table_contains(sc->skip, id))
            continue;
        if (sc->msgs->len >= PICKUP_BATCH) {
            sc->more = TRUE;
            break;
        }
        g_autoptr(GError) err = NULL;
        KrMsg *msg = kr_msg_load(KR_QUEUE_MAILDROP, id, &err);
        if (msg)
            g_ptr_array_add(sc->msgs, msg);
        else if (g_error_matches(err, G_IO_ERROR, G_IO_ERROR_INVALID_DATA))
            kr_queue_quarantine(KR_QUEUE_MAILDROP, id, err->message);
        else if (!g_error_matches(err, G_IO_ERROR, G_IO_ERROR_NOT_FOUND))
            g_warning("pickup: %s: %s", id, err->message);
    }
}

typedef struct {
    KrMsg *msg;
    GError *error;
} MoveOp;

static void
move_work(gpointer p)
{
    MoveOp *op = p;
    if (kr_msg_rewrite_envelope(op->msg, &op->error))
        kr_msg_move_lazy(op->msg, KR_QUEUE_INCOMING, &op->error);
}

static void
move_done(gpointer p)
{
    MoveOp *op = p;
    n_moving--;
    const char *id = kr_msg_queue_id(op->msg);
    if (op->error)
        g_warning("%s: pickup: %s (retrying at the next scan)", id, op->error->message);
    else
        qmgr_incoming(id, op->msg);
    kr_msg_unref(op->msg);
    g_clear_error(&op->error);
    g_free(op);
    qmgr_check_stopped();
}

static void
picked(KrMsg *msg, const KrJobResult *result, gpointer ud)
{
    const char *id = kr_msg_queue_id(msg);
    g_hash_table_remove(inflight, id);
    if (kr_msg_queue_dir(msg) != KR_QUEUE_MAILDROP) {
        qmgr_check_stopped();
        return; /* the enqueue stage took it */
    }
    if (result->kind == KR_VERDICT_DEFER) {
        g_warning("%s: pickup deferred by %s: %s (retrying at the next scan)", id,
                  result->stage ? result->stage : "?", result->text ? result->text : "");
        qmgr_check_stopped();
        return;
    }
    if (result->kind == KR_VERDICT_REJECT)
        g_message("%s: refused by %s: %d %s %s (returned to the sender)", id,
                  result->stage ? result->stage : "?", result->code,
                  result->ecode ? result->ecode : "", result->text ? result->text : "");
    /* Refused, discarded or never enqueued: the queue manager sorts out
     * the recipients (bounce what failed, remove what is done). */
    MoveOp *op = g_new0(MoveOp, 1);
    op->msg = kr_msg_ref(msg);
    n_moving++;
    kr_worker_run(move_work, move_done, op);
}

static void
pickup_done(gpointer p)
{
    Scan *sc = p;
    scanning = FALSE;
    for (guint i = 0; i < sc->msgs->len; i++) {
        KrMsg *msg = sc->msgs->pdata[i];
        const char *id = kr_msg_queue_id(msg);
        if (stopped || g_hash_table_contains(inflight, id) || qmgr_knows(id))
            continue;
        g_autoptr(GError) err = NULL;
        g_hash_table_add(inflight, g_strdup(id));
        if (!kr_pipeline_run(queue_conf->pickup_node, msg, NULL, picked, NULL, &err)) {
            g_warning("%s: pickup: %s", id, err->message);
            g_hash_table_remove(inflight, id);
        }
    }
    g_ptr_array_unref(sc->msgs);
    g_hash_table_unref(sc->skip);
    if (sc->more)
        rescan = TRUE;
    g_free(sc);
    if (rescan) {
        rescan = FALSE;
        qscan_pickup();
    }
    qmgr_check_stopped();
}

void
qscan_pickup(void)
{
    if (stopped || !qmgr_running())
        return;
    if (!kr_pipeline_has_node(queue_conf->pickup_node)) {
        static gboolean warned;
        if (!warned)
            g_warning("queue.pickup_node '%s' is not a pipeline node: mail in maildrop/ "
                      "(sendmail) is not picked up",
                      queue_conf->pickup_node);
        warned = TRUE;
        return;
    }
    if (scanning) {
        rescan = TRUE;
        return;
    }
    if (!inflight)
        inflight = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    scanning = TRUE;
    Scan *sc = g_new0(Scan, 1);
    sc->skip = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    GHashTableIter it;
    gpointer k;
    g_hash_table_iter_init(&it, inflight);
    while (g_hash_table_iter_next(&it, &k, NULL))
        g_hash_table_add(sc->skip, g_strdup(k));
    sc->msgs = g_ptr_array_new_with_free_func((GDestroyNotify)kr_msg_unref);
    kr_worker_run(pickup_work, pickup_done, sc);
}

static gboolean
on_pickup_timer(gpointer ud)
{
    qscan_pickup();
    return G_SOURCE_CONTINUE;
}

void
qscan_start_timer(void)
{
    if (!timer)
        timer = g_timeout_add_seconds((guint)queue_conf->pickup_interval, on_pickup_timer, NULL);
}

void
qscan_stop(void)
{
    stopped = TRUE;
    if (timer)
        g_source_remove(timer);
    timer = 0;
}

guint
qscan_busy(void)
{
    return (scanning ? 1 : 0) + (inflight ? g_hash_table_size(inflight) : 0) + n_moving;
}
