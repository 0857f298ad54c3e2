/* SPDX-License-Identifier: MIT */
/*
 * test-pipeline.c - the pipeline engine: jobs through a graph of test
 * stages (t/modules/testmod.c) and the example filter: continue, async
 * answers, reject, defer, route by label, per-recipient split and
 * per-recipient results, discard, many jobs in flight at once, and the
 * module commands and services registries.
 */
#include "testlib.h"
#include "../core/kr-startup.h"
#include "../core/kr-registry-private.h"
#include "../core/kr-pipeline-private.h"
#include <glib/gstdio.h>
#include <unistd.h>

static const char *graph =
    "modules = [ \"testgood\", \"example-filter\" ];\n"
    "pipeline = {\n"
    "  in1   = { type = \"test-entry\"; next = \"slow\"; };\n"
    "  slow  = { type = \"test-async\"; delay_ms = 5; next = \"gate\"; };\n"
    "  gate  = { type = \"test-reject\"; next = \"route\"; };\n"
    "  route = { type = \"test-route\"; routes = { left = \"tagL\"; right = \"tagR\"; }; };\n"
    "  tagL  = { type = \"test-tag\"; };\n"
    "  tagR  = { type = \"test-tag\"; };\n"
    "  in2   = { type = \"test-entry\"; next = \"split\"; };\n"
    "  split = { type = \"test-split\"; routes = { left = \"tagL\"; right = \"tagR\"; }; next = \"tagN\"; };\n"
    "  tagN  = { type = \"test-tag\"; };\n"
    "  in3   = { type = \"test-entry\"; next = \"filter\"; };\n"
    "  filter = { type = \"example-filter\"; header = \"X-Checked\"; value = \"yes\";\n"
    "             reject_subject = \"^buy now\"; next = \"tagN\"; };\n"
    "  in4   = { type = \"test-entry\"; next = \"drop\"; };\n"
    "  drop  = { type = \"discard\"; };\n"
    "};\n";

typedef struct {
    gboolean done;
    KrJobResult res;
    char *ecode, *text, *stage;
    int count;
} Outcome;

static void
on_done(KrMsg *msg, const KrJobResult *r, gpointer ud)
{
    Outcome *o = ud;
    o->done = TRUE;
    o->count++;
    o->res = *r;
    o->ecode = g_strdup(r->ecode);
    o->text = g_strdup(r->text);
    o->stage = g_strdup(r->stage);
}

static void
outcome_clear(Outcome *o)
{
    g_free(o->ecode);
    g_free(o->text);
    g_free(o->stage);
    memset(o, 0, sizeof *o);
}

static KrMsg *
make_msg(const char *sender, const char *const *rcpts, const char *body)
{
    GError *err = NULL;
    KrMsg *m = kr_msg_new_spool(KR_QUEUE_INCOMING, &err);
    g_assert_no_error(err);
    kr_msg_set_sender(m, sender);
    for (; *rcpts; rcpts++)
        kr_msg_add_rcpt(m, *rcpts);
    g_assert_true(kr_msg_append(m, body, strlen(body), &err));
    g_assert_no_error(err);
    return m;
}

static void
run(const char *entry, KrMsg *m, Outcome *o)
{
    GError *err = NULL;
    g_assert_true(kr_pipeline_run(entry, m, NULL, on_done, o, &err));
    g_assert_no_error(err);
    /* done never runs synchronously from kr_pipeline_run. */
    g_assert_false(o->done);
    gint64 deadline = g_get_monotonic_time() + 5 * G_USEC_PER_SEC;
    while (!o->done && g_get_monotonic_time() < deadline)
        g_main_context_iteration(NULL, TRUE);
    g_assert_true(o->done);
}

static void
test_continue_async_route(void)
{
    const char *rc[] = {"a@x", "b@x", NULL};
    g_autoptr(KrMsg) m = make_msg("good@x", rc, "Subject: t\r\n\r\nbody\r\n");
    kr_msg_set_attr(m, "route", "right");
    Outcome o = {0};
    run("in1", m, &o);
    g_assert_cmpint(o.res.kind, ==, KR_VERDICT_CONTINUE);
    g_assert_cmpint(o.count, ==, 1);
    /* The async stage ran (it sets an attribute) and the route went right. */
    g_assert_cmpstr(kr_msg_attr(m, "async_seen"), ==, "yes");
    for (guint i = 0; i < 2; i++) {
        g_assert_cmpint(kr_msg_rcpt(m, i)->state, ==, KR_RCPT_DELIVERED);
        g_assert_cmpstr(kr_msg_rcpt(m, i)->diag, ==, "tagR");
    }
    outcome_clear(&o);
    kr_msg_discard(m);
}

static void
test_reject_and_defer(void)
{
    const char *rc[] = {"a@x", NULL};
    g_autoptr(KrMsg) m = make_msg("bad@x", rc, "Subject: t\r\n\r\nbody\r\n");
    Outcome o = {0};
    run("in1", m, &o);
    g_assert_cmpint(o.res.kind, ==, KR_VERDICT_REJECT);
    g_assert_cmpint(o.res.code, ==, 550);
    g_assert_cmpstr(o.ecode, ==, "5.7.1");
    g_assert_cmpstr(o.text, ==, "sender bad@x refused");
    g_assert_cmpstr(o.stage, ==, "gate");
    g_assert_cmpint(kr_msg_rcpt(m, 0)->state, ==, KR_RCPT_FAILED);
    outcome_clear(&o);
    kr_msg_discard(m);

    g_autoptr(KrMsg) m2 = make_msg("later@x", rc, "Subject: t\r\n\r\nbody\r\n");
    run("in1", m2, &o);
    g_assert_cmpint(o.res.kind, ==, KR_VERDICT_DEFER);
    g_assert_cmpint(o.res.code, ==, 451);
    g_assert_cmpstr(o.ecode, ==, "4.7.1");
    g_assert_cmpint(kr_msg_rcpt(m2, 0)->state, ==, KR_RCPT_DEFERRED);
    outcome_clear(&o);
    kr_msg_discard(m2);
}

static void
test_split_per_recipient(void)
{
    const char *rc[] = {"left1@x", "right1@x", "other@x", "fail@x", "left2@x", NULL};
    g_autoptr(KrMsg) m = make_msg("s@x", rc, "Subject: t\r\n\r\nbody\r\n");
    Outcome o = {0};
    run("in2", m, &o);
    /* One done() for the whole run, after every branch ended. */
    g_assert_cmpint(o.count, ==, 1);
    g_assert_cmpint(o.res.kind, ==, KR_VERDICT_CONTINUE);
    g_assert_cmpstr(kr_msg_rcpt(m, 0)->diag, ==, "tagL");
    g_assert_cmpstr(kr_msg_rcpt(m, 1)->diag, ==, "tagR");
    g_assert_cmpstr(kr_msg_rcpt(m, 2)->diag, ==, "tagN");
    g_assert_cmpint(kr_msg_rcpt(m, 3)->state, ==, KR_RCPT_FAILED);
    g_assert_cmpint(kr_msg_rcpt(m, 3)->code, ==, 550);
    g_assert_cmpstr(kr_msg_rcpt(m, 3)->ecode, ==, "5.1.1");
    g_assert_cmpstr(kr_msg_rcpt(m, 4)->diag, ==, "tagL");
    outcome_clear(&o);
    kr_msg_discard(m);
}

static void
test_subset_of_recipients(void)
{
    const char *rc[] = {"left1@x", "right1@x", NULL};
    g_autoptr(KrMsg) m = make_msg("s@x", rc, "Subject: t\r\n\r\nbody\r\n");
    g_autoptr(GArray) only = g_array_new(FALSE, FALSE, sizeof(guint));
    guint one = 1;
    g_array_append_val(only, one);
    Outcome o = {0};
    g_assert_true(kr_pipeline_run("in2", m, only, on_done, &o, NULL));
    while (!o.done)
        g_main_context_iteration(NULL, TRUE);
    g_assert_cmpint(kr_msg_rcpt(m, 0)->state, ==, KR_RCPT_PENDING);
    g_assert_cmpint(kr_msg_rcpt(m, 1)->state, ==, KR_RCPT_DELIVERED);
    outcome_clear(&o);
    kr_msg_discard(m);
}

static void
test_example_filter(void)
{
    const char *rc[] = {"a@x", NULL};
    g_autoptr(KrMsg) m = make_msg("s@x", rc, "Subject: hello\r\nFrom: s@x\r\n\r\nbody\r\n");
    Outcome o = {0};
    run("in3", m, &o);
    g_assert_cmpint(o.res.kind, ==, KR_VERDICT_CONTINUE);
    g_assert_cmpstr(kr_msg_header(m, "X-Checked", 0), ==, "yes");
    /* The header is in the content as read, before the original ones. */
    char buf[256] = {0};
    gssize n = kr_msg_read(m, 0, buf, sizeof buf - 1, NULL);
    g_assert_cmpint(n, >, 0);
    g_assert_true(g_str_has_prefix(buf, "X-Checked: yes\r\nSubject: hello\r\n"));
    outcome_clear(&o);
    kr_msg_discard(m);

    g_autoptr(KrMsg) m2 = make_msg("s@x", rc, "Subject: Buy now cheap\r\n\r\nbody\r\n");
    run("in3", m2, &o);
    g_assert_cmpint(o.res.kind, ==, KR_VERDICT_REJECT);
    g_assert_cmpint(o.res.code, ==, 550);
    g_assert_cmpstr(o.text, ==, "message refused by filter");
    g_assert_null(kr_msg_header(m2, "X-Checked", 0));
    outcome_clear(&o);
    kr_msg_discard(m2);
}

static void
test_discard(void)
{
    const char *rc[] = {"a@x", NULL};
    g_autoptr(KrMsg) m = make_msg("s@x", rc, "Subject: t\r\n\r\nbody\r\n");
    Outcome o = {0};
    run("in4", m, &o);
    g_assert_cmpint(o.res.kind, ==, KR_VERDICT_DISCARD);
    g_assert_cmpint(kr_msg_rcpt(m, 0)->state, ==, KR_RCPT_DELIVERED);
    outcome_clear(&o);
    kr_msg_discard(m);
}

static void
test_many_in_flight(void)
{
    enum { N = 200 };
    Outcome o[N];
    KrMsg *m[N];
    memset(o, 0, sizeof o);
    for (int i = 0; i < N; i++) {
        const char *rc[] = {"a@x", NULL};
        m[i] = make_msg(i % 3 == 0 ? "bad@x" : "good@x", rc, "Subject: t\r\n\r\nx\r\n");
        kr_msg_set_attr(m[i], "route", i % 2 ? "left" : "right");
        g_assert_true(kr_pipeline_run("in1", m[i], NULL, on_done, &o[i], NULL));
    }
    /* All started before any finished: the async stage holds them. */
    g_assert_cmpuint(kr_pipeline_jobs_in_flight(), ==, N);
    gint64 deadline = g_get_monotonic_time() + 10 * G_USEC_PER_SEC;
    while (kr_pipeline_jobs_in_flight() > 0 && g_get_monotonic_time() < deadline)
        g_main_context_iteration(NULL, TRUE);
    for (int i = 0; i < N; i++) {
        g_assert_cmpint(o[i].count, ==, 1);
        if (i % 3 == 0) {
            g_assert_cmpint(o[i].res.kind, ==, KR_VERDICT_REJECT);
        } else {
            g_assert_cmpint(o[i].res.kind, ==, KR_VERDICT_CONTINUE);
            g_assert_cmpstr(kr_msg_rcpt(m[i], 0)->diag, ==, i % 2 ? "tagL" : "tagR");
        }
        outcome_clear(&o[i]);
        kr_msg_discard(m[i]);
        kr_msg_unref(m[i]);
    }
}

static void
test_unknown_entry(void)
{
    const char *rc[] = {"a@x", NULL};
    g_autoptr(KrMsg) m = make_msg("s@x", rc, "x\r\n");
    GError *err = NULL;
    Outcome o = {0};
    g_assert_false(kr_pipeline_run("nosuch", m, NULL, on_done, &o, &err));
    g_assert_nonnull(err);
    g_assert_nonnull(strstr(err->message, "nosuch"));
    g_clear_error(&err);
    kr_msg_discard(m);
}

static void
test_command_registry(void)
{
    KrModule *mod = NULL;
    const KrCommand *c = kr_registry_command("testcmd", &mod);
    g_assert_nonnull(c);
    g_assert_cmpstr(kr_module_name(mod), ==, "testgood");
    g_assert_null(kr_registry_command("nosuch", NULL));
    /* Registration outside init() is refused. */
    static const KrStageType late = {.struct_size = sizeof(KrStageType), .name = "late",
                                     .process = NULL};
    GError *err = NULL;
    g_assert_false(kr_register_stage(mod, &late, &err));
    g_assert_nonnull(err);
    g_clear_error(&err);
}

int
main(int argc, char **argv)
{
    kr_test_init(&argc, &argv);
    /* Both the test modules and example-filter in one module dir. */
    char *dir = kr_test_tmpdir();
    char *mdir = g_build_filename(dir, "modules", NULL);
    g_mkdir(mdir, 0700);
    const char *b = kr_test_build_dir();
    g_autofree char *s1 = g_build_filename(b, "t", "modules", "testgood.so", NULL);
    g_autofree char *s2 = g_build_filename(b, "modules", "example-filter.so", NULL);
    g_autofree char *d1 = g_build_filename(mdir, "testgood.so", NULL);
    g_autofree char *d2 = g_build_filename(mdir, "example-filter.so", NULL);
    g_assert_cmpint(symlink(s1, d1), ==, 0);
    g_assert_cmpint(symlink(s2, d2), ==, 0);
    KrStartupOpts o = {.config_text = graph, .data_dir = dir, .module_path = mdir};
    g_autoptr(GPtrArray) errors = g_ptr_array_new_with_free_func(g_free);
    gboolean ok = kr_startup(&o, errors);
    for (guint i = 0; i < errors->len; i++)
        g_printerr("%s\n", (char *)errors->pdata[i]);
    g_assert_true(ok);
    GError *err = NULL;
    g_assert_true(kr_queue_init_dirs(&err));
    g_test_add_func("/pipeline/continue-async-route", test_continue_async_route);
    g_test_add_func("/pipeline/reject-defer", test_reject_and_defer);
    g_test_add_func("/pipeline/split-per-recipient", test_split_per_recipient);
    g_test_add_func("/pipeline/subset", test_subset_of_recipients);
    g_test_add_func("/pipeline/example-filter", test_example_filter);
    g_test_add_func("/pipeline/discard", test_discard);
    g_test_add_func("/pipeline/many-in-flight", test_many_in_flight);
    g_test_add_func("/pipeline/unknown-entry", test_unknown_entry);
    g_test_add_func("/pipeline/registry", test_command_registry);
    int rc = g_test_run();
    kr_shutdown_modules();
    g_free(mdir);
    g_free(dir);
    return rc;
}
