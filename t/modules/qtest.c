/* SPDX-License-Identifier: MIT */
/*
 * qtest.c - a delivery stage for the queue tests (t/queue-*.py): it
 * decides per recipient by regex, so retries, failures and slow
 * deliveries are deterministic, and "delivers" by writing files.
 *
 * Stage type "qtest-deliver" (terminal). Per-node settings:
 *   dir          where deliveries go (default "delivered", under DATA_DIR):
 *                DIR/<address>/<queueid> holds the content as stored
 *                (CRLF), and each delivery appends the line
 *                "<queueid> from=<sender> to=<address>" to DIR/log
 *   defer_match  regex: matching recipients are deferred (451 4.2.0) ...
 *   defer_count  ... while they have had fewer attempts than this
 *                (0: always)                               (default 0)
 *   stuck_match  regex: matching recipients are always deferred (451 4.2.0)
 *   fail_match   regex: matching recipients fail (550 5.1.1)
 *   delay_ms     wait this long before answering           (default 0)
 */
#include <kurir/kurir.h>
#include <errno.h>
#include <fcntl.h>
#include <glib/gstdio.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    char *dir;
    char *defer_match;
    gint64 defer_count;
    char *fail_match;
    char *stuck_match;
    gint64 delay_ms;
} QtConf;

static const KrSetting qt_settings[] = {
    KR_SETTING("dir", KR_SET_PATH, QtConf, dir, "delivered", 0, 0, "delivery directory"),
    KR_SETTING("defer_match", KR_SET_STRING, QtConf, defer_match, NULL, 0, 0, "regex: defer"),
    KR_SETTING("defer_count", KR_SET_INT, QtConf, defer_count, "0", 0, 1000,
               "defer while attempts < this (0: always)"),
    KR_SETTING("fail_match", KR_SET_STRING, QtConf, fail_match, NULL, 0, 0, "regex: fail"),
    KR_SETTING("stuck_match", KR_SET_STRING, QtConf, stuck_match, NULL, 0, 0,
               "regex: always defer"),
    KR_SETTING("delay_ms", KR_SET_INT, QtConf, delay_ms, "0", 0, 600000, "delay"),
    KR_SETTING_END,
};

typedef struct {
    GRegex *defer, *fail, *stuck;
} Qt;

typedef struct {
    KrJob *job;
    KrMsg *msg;
    QtConf *conf;
    GArray *deliver; /* job recipient indexes */
    GPtrArray *addrs;
    gboolean ok;
} Batch;

static gboolean
qt_create(KrStage *stage, GError **error)
{
    QtConf *c = kr_stage_conf(stage);
    Qt *q = g_new0(Qt, 1);
    if ((c->defer_match && !(q->defer = g_regex_new(c->defer_match, 0, 0, error))) ||
        (c->fail_match && !(q->fail = g_regex_new(c->fail_match, 0, 0, error))) ||
        (c->stuck_match && !(q->stuck = g_regex_new(c->stuck_match, 0, 0, error)))) {
        g_free(q);
        return FALSE;
    }
    kr_stage_set_data(stage, q);
    return TRUE;
}

static void
qt_destroy(KrStage *stage)
{
    Qt *q = kr_stage_data(stage);
    if (q && q->defer)
        g_regex_unref(q->defer);
    if (q && q->fail)
        g_regex_unref(q->fail);
    if (q && q->stuck)
        g_regex_unref(q->stuck);
    g_free(q);
}

static void
write_work(gpointer p)
{
    Batch *b = p;
    const char *id = kr_msg_queue_id(b->msg);
    b->ok = TRUE;
    for (guint k = 0; k < b->addrs->len; k++) {
        const char *addr = b->addrs->pdata[k];
        g_autofree char *d = g_build_filename(b->conf->dir, addr, NULL);
        g_mkdir_with_parents(d, 0700);
        g_autofree char *f = g_build_filename(d, id, NULL);
        int fd = open(f, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        g_autoptr(GError) err = NULL;
        if (fd < 0 || !kr_msg_write_to_fd(b->msg, fd, NULL, FALSE, &err)) {
            g_warning("%s: qtest: cannot write %s", id, f);
            b->ok = FALSE;
        }
        if (fd >= 0)
            close(fd);
        g_autofree char *log = g_build_filename(b->conf->dir, "log", NULL);
        g_autofree char *line =
            g_strdup_printf("%s from=<%s> to=<%s>\n", id, kr_msg_sender(b->msg), addr);
        int lfd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        if (lfd >= 0) {
            (void)!write(lfd, line, strlen(line));
            close(lfd);
        }
    }
}

static void
write_done(gpointer p)
{
    Batch *b = p;
    for (guint k = 0; k < b->deliver->len; k++) {
        guint i = g_array_index(b->deliver, guint, k);
        if (b->ok)
            kr_job_rcpt_done(b->job, i, KR_RCPT_DELIVERED, 250, "2.0.0", "delivered (qtest)");
        else
            kr_job_rcpt_done(b->job, i, KR_RCPT_DEFERRED, 451, "4.3.0", "qtest write error");
    }
    kr_job_continue(b->job);
    g_array_unref(b->deliver);
    g_ptr_array_unref(b->addrs);
    kr_msg_unref(b->msg);
    g_free(b);
}

static gboolean
delay_done(gpointer p)
{
    kr_worker_run(write_work, write_done, p);
    return G_SOURCE_REMOVE;
}

static void
qt_process(KrStage *stage, KrJob *job)
{
    QtConf *c = kr_stage_conf(stage);
    Qt *q = kr_stage_data(stage);
    Batch *b = g_new0(Batch, 1);
    b->job = job;
    b->msg = kr_msg_ref(kr_job_msg(job));
    b->conf = c;
    b->deliver = g_array_new(FALSE, FALSE, sizeof(guint));
    b->addrs = g_ptr_array_new_with_free_func(g_free);
    for (guint i = 0; i < kr_job_rcpt_count(job); i++) {
        KrRcpt *r = kr_job_rcpt(job, i);
        if (q->fail && g_regex_match(q->fail, r->address, 0, NULL)) {
            kr_job_rcpt_done(job, i, KR_RCPT_FAILED, 550, "5.1.1", "user unknown (qtest)");
        } else if ((q->stuck && g_regex_match(q->stuck, r->address, 0, NULL)) ||
                   (q->defer && g_regex_match(q->defer, r->address, 0, NULL) &&
                    (c->defer_count == 0 || r->attempts < (unsigned)c->defer_count))) {
            kr_job_rcpt_done(job, i, KR_RCPT_DEFERRED, 451, "4.2.0", "mailbox busy (qtest)");
        } else {
            g_array_append_val(b->deliver, i);
            g_ptr_array_add(b->addrs, g_strdup(r->address));
        }
    }
    if (c->delay_ms > 0)
        g_timeout_add((guint)c->delay_ms, delay_done, b);
    else
        kr_worker_run(write_work, write_done, b);
}

static const KrStageType qt_type = {
    .struct_size = sizeof(KrStageType),
    .name = "qtest-deliver",
    .summary = "test delivery: defer/fail by regex, write files",
    .flags = KR_STAGE_TERMINAL,
    .settings = qt_settings,
    .conf_size = sizeof(QtConf),
    .create = qt_create,
    .destroy = qt_destroy,
    .process = qt_process,
};

static gboolean
qt_init(KrModule *mod, GError **error)
{
    return kr_register_stage(mod, &qt_type, error);
}

KR_MODULE(qtest, "qtest", "1.0", "delivery stage for the queue tests", NULL, 0, qt_init, NULL);
