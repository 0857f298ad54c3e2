/* SPDX-License-Identifier: MIT */
/*
 * test-local.c - the local delivery stage (modules/local) with the real
 * auth-file and maildir modules, loaded by the module loader into a temp
 * DATA_DIR and driven through the pipeline engine (maildrop -> local):
 * per-recipient outcomes (delivered, user unknown, no remote transport,
 * disk full), the Return-Path/Delivered-To prefix in the stored file,
 * the null sender, users added/removed while running (auth-file reload
 * on file change), and many recipients delivered concurrently.
 */
#include "testlib.h"
#include "../core/kr-startup.h"
#include <errno.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

static char *data_dir;
static char *users_path;

typedef struct {
    GMainLoop *loop;
    KrJobResult result;
    gboolean done;
} Wait;

static void
job_done(KrMsg *msg, const KrJobResult *r, gpointer ud)
{
    Wait *w = ud;
    w->result = *r;
    w->done = TRUE;
    g_main_loop_quit(w->loop);
}

static KrMsg *
make_msg(const char *sender, const char *const *rcpts, const char *content)
{
    GError *err = NULL;
    KrMsg *msg = kr_msg_new_spool(KR_QUEUE_INCOMING, &err);
    g_assert_no_error(err);
    kr_msg_set_sender(msg, sender);
    for (const char *const *r = rcpts; *r; r++)
        kr_msg_add_rcpt(msg, *r);
    g_assert_true(kr_msg_append(msg, content, strlen(content), &err));
    g_assert_true(kr_msg_commit(msg, KR_QUEUE_INCOMING, &err));
    g_assert_no_error(err);
    return msg;
}

static void
run(KrMsg *msg)
{
    Wait w = {.loop = g_main_loop_new(NULL, FALSE)};
    GError *err = NULL;
    g_assert_true(kr_pipeline_run("maildrop", msg, NULL, job_done, &w, &err));
    g_assert_no_error(err);
    if (!w.done)
        g_main_loop_run(w.loop);
    g_main_loop_unref(w.loop);
    g_assert_cmpint(w.result.kind, ==, KR_VERDICT_CONTINUE);
}

static void
write_users(const char *text)
{
    /* Replace atomically, as `kurir user` does (new inode). */
    g_autofree char *tmp = g_strconcat(users_path, ".tmp", NULL);
    g_assert_true(g_file_set_contents(tmp, text, -1, NULL));
    g_assert_cmpint(rename(tmp, users_path), ==, 0);
}

static GPtrArray *
new_files(const char *user)
{
    g_autofree char *d = g_build_filename(data_dir, "mail", "localhost", user, "new", NULL);
    GPtrArray *out = g_ptr_array_new_with_free_func(g_free);
    GDir *dir = g_dir_open(d, 0, NULL);
    if (!dir)
        return out;
    for (const char *n; (n = g_dir_read_name(dir));)
        g_ptr_array_add(out, g_build_filename(d, n, NULL));
    g_dir_close(dir);
    g_ptr_array_sort(out, (GCompareFunc)g_strcmp0);
    return out;
}

static char *
only_message(const char *user)
{
    g_autoptr(GPtrArray) files = new_files(user);
    g_assert_cmpuint(files->len, ==, 1);
    char *data = NULL;
    g_assert_true(g_file_get_contents(files->pdata[0], &data, NULL, NULL));
    return data;
}

static void
test_outcomes(void)
{
    write_users("bob@localhost:!\n# comment\nalice@localhost:!\n");
    const char *rcpts[] = {"bob@localhost", "ghost@localhost", "someone@remote.example",
                           "Alice@LOCALHOST", NULL};
    g_autoptr(KrMsg) msg = make_msg("sender@example.net", rcpts,
                                    "Subject: hello\r\nFrom: sender@example.net\r\n\r\nhi\r\n");
    run(msg);

    KrRcpt *bob = kr_msg_rcpt(msg, 0), *ghost = kr_msg_rcpt(msg, 1);
    KrRcpt *remote = kr_msg_rcpt(msg, 2), *alice = kr_msg_rcpt(msg, 3);
    g_assert_cmpint(bob->state, ==, KR_RCPT_DELIVERED);
    g_assert_cmpint(bob->code, ==, 250);
    g_assert_cmpstr(bob->ecode, ==, "2.0.0");
    g_assert_cmpint(ghost->state, ==, KR_RCPT_FAILED);
    g_assert_cmpint(ghost->code, ==, 550);
    g_assert_cmpstr(ghost->ecode, ==, "5.1.1");
    g_assert_cmpstr(ghost->diag, ==, "user unknown");
    g_assert_cmpint(remote->state, ==, KR_RCPT_DEFERRED);
    g_assert_cmpint(remote->code, ==, 451);
    g_assert_cmpstr(remote->ecode, ==, "4.4.0");
    g_assert_cmpint(alice->state, ==, KR_RCPT_DELIVERED);

    g_autofree char *b = only_message("bob");
    g_assert_cmpstr(b, ==,
                    "Return-Path: <sender@example.net>\nDelivered-To: bob@localhost\n"
                    "Subject: hello\nFrom: sender@example.net\n\nhi\n");
    /* Domain lowercased by canonicalisation; mailbox path lowercased. */
    g_autofree char *a = only_message("alice");
    g_assert_true(
        g_str_has_prefix(a, "Return-Path: <sender@example.net>\nDelivered-To: Alice@localhost\n"));
    g_autoptr(GPtrArray) none = new_files("ghost");
    g_assert_cmpuint(none->len, ==, 0);
}

static void
test_null_sender_and_reload(void)
{
    /* carol is added after start-up: the table reloads on change. */
    write_users("bob@localhost:!\ncarol@localhost:!\n");
    const char *rcpts[] = {"carol@localhost", NULL};
    g_autoptr(KrMsg) msg = make_msg("", rcpts, "Subject: bounce\r\n\r\nx\r\n");
    run(msg);
    g_assert_cmpint(kr_msg_rcpt(msg, 0)->state, ==, KR_RCPT_DELIVERED);
    g_autofree char *c = only_message("carol");
    g_assert_true(g_str_has_prefix(c, "Return-Path: <>\nDelivered-To: carol@localhost\n"));

    /* carol removed: user unknown (vanished between RCPT and delivery). */
    write_users("bob@localhost:!\n");
    g_autoptr(KrMsg) msg2 = make_msg("a@b.example", rcpts, "Subject: late\r\n\r\nx\r\n");
    run(msg2);
    g_assert_cmpint(kr_msg_rcpt(msg2, 0)->state, ==, KR_RCPT_FAILED);
    g_assert_cmpstr(kr_msg_rcpt(msg2, 0)->ecode, ==, "5.1.1");
    g_autoptr(GPtrArray) files = new_files("carol");
    g_assert_cmpuint(files->len, ==, 1);
}

static void
test_many_recipients(void)
{
    GString *users = g_string_new(NULL);
    g_autoptr(GPtrArray) rcpts = g_ptr_array_new_with_free_func(g_free);
    for (int i = 0; i < 64; i++) {
        g_string_append_printf(users, "u%d@localhost:!\n", i);
        g_ptr_array_add(rcpts, g_strdup_printf("u%d@localhost", i));
    }
    g_ptr_array_add(rcpts, NULL);
    write_users(users->str);
    g_string_free(users, TRUE);
    g_autoptr(KrMsg) msg =
        make_msg("s@example.net", (const char *const *)rcpts->pdata, "Subject: m\r\n\r\nx\r\n");
    run(msg);
    for (int i = 0; i < 64; i++) {
        g_assert_cmpint(kr_msg_rcpt(msg, i)->state, ==, KR_RCPT_DELIVERED);
        g_autofree char *u = g_strdup_printf("u%d", i);
        g_autofree char *m = only_message(u);
        g_autofree char *want = g_strdup_printf("Delivered-To: u%d@localhost\n", i);
        g_assert_nonnull(strstr(m, want));
    }
}

static void
test_disk_full(void)
{
    write_users("full@localhost:!\n");
    g_autofree char *home = g_build_filename(data_dir, "mail", "localhost", "full", NULL);
    g_assert_cmpint(g_mkdir_with_parents(home, 0700), ==, 0);
    if (mount("kurir-test", home, "tmpfs", MS_NOSUID | MS_NODEV, "size=64k,mode=0700") != 0) {
        g_autofree char *why = g_strdup_printf("cannot mount a tmpfs (%s)", g_strerror(errno));
        g_test_skip(why);
        return;
    }
    GString *big = g_string_new("Subject: big\r\n\r\n");
    while (big->len < 200 * 1024)
        g_string_append(big, "0123456789012345678901234567890123456789012345678901234567890\r\n");
    const char *rcpts[] = {"full@localhost", NULL};
    g_autoptr(KrMsg) msg = make_msg("s@example.net", rcpts, big->str);
    g_string_free(big, TRUE);
    run(msg);
    KrRcpt *r = kr_msg_rcpt(msg, 0);
    g_assert_cmpint(r->state, ==, KR_RCPT_DEFERRED);
    g_assert_cmpint(r->code, ==, 452);
    g_assert_cmpstr(r->ecode, ==, "4.3.1");
    g_assert_nonnull(strstr(r->diag, g_strerror(ENOSPC)));
    g_assert_cmpint(umount2(home, MNT_DETACH), ==, 0);

    /* Space is back: the retry delivers. */
    r->state = KR_RCPT_PENDING;
    run(msg);
    g_assert_cmpint(r->state, ==, KR_RCPT_DELIVERED);
    g_autoptr(GPtrArray) files = new_files("full");
    g_assert_cmpuint(files->len, ==, 1);
}

int
main(int argc, char **argv)
{
    kr_test_init(&argc, &argv);
    data_dir = kr_test_tmpdir();
    users_path = g_build_filename(data_dir, "users", NULL);
    g_autofree char *mpath = g_build_filename(kr_test_build_dir(), "modules", NULL);
    KrStartupOpts o = {
        .config_text = "core = { domains = [ \"localhost\" ]; };\n"
                       "modules = [ \"auth-file\", \"maildir\", \"local\" ];\n"
                       "pipeline = { maildrop = { type = \"maildrop\"; next = \"local\"; };\n"
                       "             local = { type = \"local\"; }; };\n",
        .data_dir = data_dir,
        .module_path = mpath,
    };
    g_autoptr(GPtrArray) errors = g_ptr_array_new_with_free_func(g_free);
    if (!kr_startup(&o, errors)) {
        for (guint i = 0; i < errors->len; i++)
            g_printerr("%s\n", (char *)errors->pdata[i]);
        g_error("start-up failed");
    }
    GError *err = NULL;
    if (!kr_queue_init_dirs(&err))
        g_error("%s", err->message);

    g_test_add_func("/local/outcomes", test_outcomes);
    g_test_add_func("/local/null-sender-and-reload", test_null_sender_and_reload);
    g_test_add_func("/local/many-recipients", test_many_recipients);
    g_test_add_func("/local/disk-full", test_disk_full);
    int rc = g_test_run();
    kr_worker_drain();
    kr_shutdown_modules();
    return rc;
}
