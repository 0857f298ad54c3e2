/* SPDX-License-Identifier: MIT */
/*
 * test-maildir.c - the maildir store (modules/maildir): loaded by the real
 * module loader into a temp DATA_DIR, deliveries made through the store
 * API (kr_store("maildir")->deliver) with messages spooled and committed
 * by the core. Checks the file layout and content (prefix first, CRLF ->
 * LF, ",S=" equal to the size on disk, ",W=" to the size with CRLF, modes), Maildir++ folders, name
 * validation ('..', '/', control characters, leading dots), symlinks
 * planted below DATA_DIR/mail, unique names under many concurrent
 * deliveries, and ENOSPC -> TEMPFAIL with nothing left behind (a 64 KiB
 * tmpfs; skipped when mounting is not allowed).
 */
#include "testlib.h"
#include "../core/kr-startup.h"
#include "maildir/maildir-path.h"
#include <errno.h>
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

static char *data_dir;
static const KrStore *store;

static KrMsg *
make_msg(const char *content, gsize len)
{
    GError *err = NULL;
    KrMsg *msg = kr_msg_new_spool(KR_QUEUE_INCOMING, &err);
    g_assert_no_error(err);
    kr_msg_set_sender(msg, "sender@example.net");
    kr_msg_add_rcpt(msg, "bob@localhost");
    g_assert_true(kr_msg_append(msg, content, len, &err));
    g_assert_no_error(err);
    g_assert_true(kr_msg_commit(msg, KR_QUEUE_INCOMING, &err));
    g_assert_no_error(err);
    return msg;
}

static char *
mail_path(const char *first, ...)
{
    va_list ap;
    va_start(ap, first);
    g_autoptr(GPtrArray) parts = g_ptr_array_new();
    g_ptr_array_add(parts, data_dir);
    g_ptr_array_add(parts, (char *)"mail");
    for (const char *p = first; p; p = va_arg(ap, const char *))
        g_ptr_array_add(parts, (char *)p);
    va_end(ap);
    g_ptr_array_add(parts, NULL);
    return g_build_filenamev((char **)parts->pdata);
}

/* Names of the files in dir, sorted; empty list if dir does not exist. */
static GPtrArray *
list_dir(const char *dir)
{
    GPtrArray *out = g_ptr_array_new_with_free_func(g_free);
    GDir *d = g_dir_open(dir, 0, NULL);
    if (!d)
        return out;
    for (const char *n; (n = g_dir_read_name(d));)
        g_ptr_array_add(out, g_strdup(n));
    g_dir_close(d);
    g_ptr_array_sort(out, (GCompareFunc)g_strcmp0);
    return out;
}

static KrStoreResult
deliver(const char *user, const char *folder, KrMsg *msg, const char *prefix, GError **error)
{
    return store->deliver(store->self, user, folder, msg, prefix, error);
}

static void
test_basic(void)
{
    static const char body[] = "Subject: hi\r\nFrom: a@b\r\n\r\nline one\r\nline two\r\n";
    g_autoptr(KrMsg) msg = make_msg(body, sizeof body - 1);
    GError *err = NULL;
    const char *prefix = "Return-Path: <sender@example.net>\nDelivered-To: bob@localhost\n";
    g_assert_cmpint(deliver("Bob@LocalHost", NULL, msg, prefix, &err), ==, KR_STORE_OK);
    g_assert_no_error(err);

    /* Mailbox path is the ASCII-lowercased address. */
    g_autofree char *home = mail_path("localhost", "bob", NULL);
    g_autofree char *newd = g_build_filename(home, "new", NULL);
    g_autofree char *tmpd = g_build_filename(home, "tmp", NULL);
    g_autofree char *curd = g_build_filename(home, "cur", NULL);
    g_autoptr(GPtrArray) files = list_dir(newd);
    g_assert_cmpuint(files->len, ==, 1);
    g_autoptr(GPtrArray) tmpfiles = list_dir(tmpd);
    g_assert_cmpuint(tmpfiles->len, ==, 0);
    g_assert_true(g_file_test(curd, G_FILE_TEST_IS_DIR));

    /* Name: <sec>.M<usec>P<pid>Q<n>.<host>,S=<size>,W=<size with CRLF
     * line ends>; the host name is
     * "mx/test:1,x" in this config: '/', ':' and ',' escaped. */
    const char *name = files->pdata[0];
    g_autofree char *pat = g_strdup_printf("^[0-9]+\\.M[0-9]{6}P%dQ[0-9]+\\."
                                           "mx\\\\057test\\\\0721\\\\054x,S=([0-9]+),W=([0-9]+)$",
                                           (int)getpid());
    g_autoptr(GMatchInfo) mi = NULL;
    g_autoptr(GRegex) re = g_regex_new(pat, 0, 0, NULL);
    g_assert_true(g_regex_match(re, name, 0, &mi));
    g_autofree char *sz = g_match_info_fetch(mi, 1);

    g_autofree char *path = g_build_filename(newd, name, NULL);
    g_autofree char *data = NULL;
    gsize len;
    g_assert_true(g_file_get_contents(path, &data, &len, NULL));
    g_autofree char *want =
        g_strconcat(prefix, "Subject: hi\nFrom: a@b\n\nline one\nline two\n", NULL);
    g_assert_cmpstr(data, ==, want);
    g_assert_cmpuint(len, ==, g_ascii_strtoull(sz, NULL, 10));
    g_autofree char *wsz = g_match_info_fetch(mi, 2);
    gsize bare = 0;
    for (gsize i = 0; i < len; i++)
        if (data[i] == '\n' && (i == 0 || data[i - 1] != '\r'))
            bare++;
    g_assert_cmpuint(bare, >=, 5);
    g_assert_cmpuint(len + bare, ==, g_ascii_strtoull(wsz, NULL, 10));

    struct stat st;
    g_assert_cmpint(stat(path, &st), ==, 0);
    g_assert_cmpint(st.st_mode & 07777, ==, 0600);
    g_assert_cmpint(st.st_nlink, ==, 1); /* tmp/ link removed */
    g_assert_cmpint(stat(home, &st), ==, 0);
    g_assert_cmpint(st.st_mode & 07777, ==, 0700);
    g_assert_cmpint(stat(newd, &st), ==, 0);
    g_assert_cmpint(st.st_mode & 07777, ==, 0700);

    /* A second delivery gets a second, different file. */
    g_assert_cmpint(deliver("bob@localhost", "INBOX", msg, NULL, &err), ==, KR_STORE_OK);
    g_assert_no_error(err);
    g_autoptr(GPtrArray) files2 = list_dir(newd);
    g_assert_cmpuint(files2->len, ==, 2);
    g_assert_cmpstr(files2->pdata[0], !=, files2->pdata[1]);
}

static void
test_lf_content(void)
{
    /* LF input stays as is; a lone CR is kept; no final newline kept. */
    static const char body[] = "A: b\n\nx\ry\r\nz";
    g_autoptr(KrMsg) msg = make_msg(body, sizeof body - 1);
    GError *err = NULL;
    g_assert_cmpint(deliver("lf@localhost", NULL, msg, NULL, &err), ==, KR_STORE_OK);
    g_assert_no_error(err);
    g_autofree char *newd = mail_path("localhost", "lf", "new", NULL);
    g_autoptr(GPtrArray) files = list_dir(newd);
    g_assert_cmpuint(files->len, ==, 1);
    g_autofree char *path = g_build_filename(newd, files->pdata[0], NULL);
    g_autofree char *data = NULL;
    gsize len;
    g_assert_true(g_file_get_contents(path, &data, &len, NULL));
    g_assert_cmpmem(data, len, "A: b\n\nx\ry\nz", 11);
    /* 3 LFs, none after a CR (the lone CR stays): 11 + 3 with CRLF */
    g_assert_true(g_str_has_suffix(files->pdata[0], ",S=11,W=14"));
}

static void
test_folder(void)
{
    static const char body[] = "Subject: f\r\n\r\nbody\r\n";
    g_autoptr(KrMsg) msg = make_msg(body, sizeof body - 1);
    GError *err = NULL;
    g_assert_cmpint(deliver("carol@example.org", "Work.Projects", msg, NULL, &err), ==,
                    KR_STORE_OK);
    g_assert_no_error(err);
    g_autofree char *fdir = mail_path("example.org", "carol", ".Work.Projects", NULL);
    g_autofree char *newd = g_build_filename(fdir, "new", NULL);
    g_autofree char *marker = g_build_filename(fdir, "maildirfolder", NULL);
    g_autoptr(GPtrArray) files = list_dir(newd);
    g_assert_cmpuint(files->len, ==, 1);
    g_assert_true(g_file_test(marker, G_FILE_TEST_IS_REGULAR));
    /* The INBOX of the user has its own tmp/new/cur, and stays empty. */
    g_autofree char *inbox_new = mail_path("example.org", "carol", "new", NULL);
    g_autoptr(GPtrArray) inbox = list_dir(inbox_new);
    g_assert_cmpuint(inbox->len, ==, 0);
}

static void
test_bad_names(void)
{
    static const char body[] = "Subject: x\r\n\r\nx\r\n";
    g_autoptr(KrMsg) msg = make_msg(body, sizeof body - 1);
    static const struct {
        const char *user, *folder;
    } bad[] = {
        {"../evil@localhost", NULL},
        {"..@localhost", NULL},
        {"a/b@localhost", NULL},
        {"a/../../b@localhost", NULL},
        {".hidden@localhost", NULL},
        {"x@..", NULL},
        {"x@../../etc", NULL},
        {"x@.", NULL},
        {"x@local/host", NULL},
        {"@localhost", NULL},
        {"x@", NULL},
        {"noatsign", NULL},
        {"", NULL},
        {"a\nb@localhost", NULL},
        {"a\tb@localhost", NULL},
        {"a\x7f"
         "b@localhost",
         NULL},
        {"x@local\rhost", NULL},
        {"\xff\xfe@localhost", NULL},
        {"ok@localhost", "../../x"},
        {"ok@localhost", ".."},
        {"ok@localhost", ".Trash"},
        {"ok@localhost", "a/b"},
        {"ok@localhost", "a..b"},
        {"ok@localhost", "a."},
        {"ok@localhost", ""},
        {"ok@localhost", "x\ny"},
    };
    for (guint i = 0; i < G_N_ELEMENTS(bad); i++) {
        GError *err = NULL;
        KrStoreResult r = deliver(bad[i].user, bad[i].folder, msg, NULL, &err);
        g_autofree char *u = g_strescape(bad[i].user, NULL);
        g_autofree char *f = bad[i].folder ? g_strescape(bad[i].folder, NULL) : NULL;
        g_test_message("user \"%s\" folder \"%s\": %s", u, f ? f : "(null)",
                       err ? err->message : "ok");
        g_assert_cmpint(r, ==, KR_STORE_PERMFAIL);
        g_assert_error(err, G_FILE_ERROR, G_FILE_ERROR_INVAL);
        g_clear_error(&err);
    }
    /* Nothing was created for any of them: only the domains the other
     * tests use exist below mail/, and no "ok" mailbox. */
    g_autofree char *mail = mail_path(NULL);
    g_autoptr(GPtrArray) doms = list_dir(mail);
    for (guint i = 0; i < doms->len; i++)
        g_assert_true(g_str_equal(doms->pdata[i], "localhost") ||
                      g_str_equal(doms->pdata[i], "example.org"));
    g_autofree char *ok = mail_path("localhost", "ok", NULL);
    g_assert_false(g_file_test(ok, G_FILE_TEST_EXISTS));
    g_autofree char *parent = g_build_filename(data_dir, "evil", NULL);
    g_assert_false(g_file_test(parent, G_FILE_TEST_EXISTS));

    /* The pure checks agree, and accept what they should. */
    g_assert_true(maildir_name_ok("j.doe+tag", "local part", NULL));
    g_assert_true(maildir_name_ok("jörg", "local part", NULL));
    g_assert_true(maildir_folder_ok("Work.Projects", NULL));
    g_assert_false(maildir_folder_ok("Work.", NULL));
    g_assert_false(maildir_name_ok("a/b", "x", NULL));
}

static void
test_symlinks(void)
{
    static const char body[] = "Subject: x\r\n\r\nx\r\n";
    g_autoptr(KrMsg) msg = make_msg(body, sizeof body - 1);
    g_autofree char *outside = kr_test_tmpdir();
    GError *err = NULL;

    /* Make sure the domain dir exists, then plant links. */
    g_assert_cmpint(deliver("real@localhost", NULL, msg, NULL, &err), ==, KR_STORE_OK);
    g_assert_no_error(err);

    /* 1. the user's directory is a symlink to outside. */
    g_autofree char *link1 = mail_path("localhost", "mallory", NULL);
    g_assert_cmpint(symlink(outside, link1), ==, 0);
    g_assert_cmpint(deliver("mallory@localhost", NULL, msg, NULL, &err), ==, KR_STORE_TEMPFAIL);
    g_assert_error(err, G_FILE_ERROR, G_FILE_ERROR_NOTDIR);
    g_clear_error(&err);

    /* 2. a domain directory is a symlink. */
    g_autofree char *link2 = mail_path("evil.example", NULL);
    g_assert_cmpint(symlink(outside, link2), ==, 0);
    g_assert_cmpint(deliver("x@evil.example", NULL, msg, NULL, &err), ==, KR_STORE_TEMPFAIL);
    g_assert_error(err, G_FILE_ERROR, G_FILE_ERROR_NOTDIR);
    g_clear_error(&err);

    /* 3. new/ inside a real Maildir is a symlink. */
    g_autofree char *home = mail_path("localhost", "trudy", NULL);
    g_autofree char *tmpd = g_build_filename(home, "tmp", NULL);
    g_autofree char *newd = g_build_filename(home, "new", NULL);
    g_assert_cmpint(g_mkdir_with_parents(tmpd, 0700), ==, 0);
    g_assert_cmpint(symlink(outside, newd), ==, 0);
    g_assert_cmpint(deliver("trudy@localhost", NULL, msg, NULL, &err), ==, KR_STORE_TEMPFAIL);
    g_assert_error(err, G_FILE_ERROR, G_FILE_ERROR_NOTDIR);
    g_clear_error(&err);
    g_autoptr(GPtrArray) left = list_dir(tmpd);
    g_assert_cmpuint(left->len, ==, 0);

    /* 4. the folder directory is a symlink. */
    g_autofree char *link4 = mail_path("localhost", "real", ".Spam", NULL);
    g_assert_cmpint(symlink(outside, link4), ==, 0);
    g_assert_cmpint(deliver("real@localhost", "Spam", msg, NULL, &err), ==, KR_STORE_TEMPFAIL);
    g_assert_error(err, G_FILE_ERROR, G_FILE_ERROR_NOTDIR);
    g_clear_error(&err);

    /* Nothing ever landed outside. */
    g_autoptr(GPtrArray) out = list_dir(outside);
    g_assert_cmpuint(out->len, ==, 0);
}

/* --- concurrency ------------------------------------------------------- */

enum { N_THREADS = 8, PER_THREAD = 150 };

static gpointer
deliver_many(gpointer msg)
{
    for (int i = 0; i < PER_THREAD; i++) {
        GError *err = NULL;
        /* Half the threads to one mailbox (name uniqueness), half to
         * mailboxes created concurrently (mkdir races). */
        g_autofree char *user = g_strdup_printf("many%d@localhost", i % 5);
        KrStoreResult r = deliver(user, NULL, msg, NULL, &err);
        if (r != KR_STORE_OK)
            g_error("concurrent delivery failed: %s", err ? err->message : "?");
    }
    return NULL;
}

static void
test_concurrent(void)
{
    static const char body[] = "Subject: many\r\n\r\nbody\r\n";
    g_autoptr(KrMsg) msg = make_msg(body, sizeof body - 1);
    GThread *th[N_THREADS];
    for (int i = 0; i < N_THREADS; i++)
        th[i] = g_thread_new("deliver", deliver_many, msg);
    for (int i = 0; i < N_THREADS; i++)
        g_thread_join(th[i]);
    GHashTable *seen = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    guint total = 0;
    for (int u = 0; u < 5; u++) {
        g_autofree char *user = g_strdup_printf("many%d", u);
        g_autofree char *newd = mail_path("localhost", user, "new", NULL);
        g_autofree char *tmpd = mail_path("localhost", user, "tmp", NULL);
        g_autoptr(GPtrArray) files = list_dir(newd);
        g_autoptr(GPtrArray) tmps = list_dir(tmpd);
        g_assert_cmpuint(tmps->len, ==, 0);
        for (guint i = 0; i < files->len; i++) {
            /* The unique part (before ",S=") must never repeat, even
             * across mailboxes. */
            char *base = g_strndup(files->pdata[i], strcspn(files->pdata[i], ","));
            g_assert_false(g_hash_table_contains(seen, base));
            g_hash_table_add(seen, base);
            g_assert_true(g_str_has_suffix(files->pdata[i], ",S=20,W=23"));
        }
        total += files->len;
    }
    g_assert_cmpuint(total, ==, N_THREADS * PER_THREAD);
    g_hash_table_destroy(seen);
}

/* --- full disk --------------------------------------------------------- */

static void
test_enospc(void)
{
    g_autofree char *dom = mail_path("localhost", NULL);
    g_autofree char *home = mail_path("localhost", "full", NULL);
    g_assert_cmpint(g_mkdir_with_parents(home, 0700), ==, 0);
    if (mount("kurir-test", home, "tmpfs", MS_NOSUID | MS_NODEV, "size=64k,mode=0700") != 0) {
        g_autofree char *why =
            g_strdup_printf("cannot mount a tmpfs (%s): needs root", g_strerror(errno));
        g_test_skip(why);
        return;
    }
    /* A message bigger than the file system. */
    GString *big = g_string_new("Subject: big\r\n\r\n");
    while (big->len < 200 * 1024)
        g_string_append(big, "0123456789012345678901234567890123456789012345678901234567890\r\n");
    g_autoptr(KrMsg) msg = make_msg(big->str, big->len);
    g_string_free(big, TRUE);
    GError *err = NULL;
    KrStoreResult r = deliver("full@localhost", NULL, msg, "Delivered-To: full@localhost\n", &err);
    g_test_message("full disk: %s", err ? err->message : "ok");
    g_assert_cmpint(r, ==, KR_STORE_TEMPFAIL);
    g_assert_nonnull(err);
    g_assert_nonnull(strstr(err->message, g_strerror(ENOSPC)));
    g_clear_error(&err);
    g_autofree char *tmpd = g_build_filename(home, "tmp", NULL);
    g_autofree char *newd = g_build_filename(home, "new", NULL);
    g_autoptr(GPtrArray) t1 = list_dir(tmpd);
    g_autoptr(GPtrArray) n1 = list_dir(newd);
    g_assert_cmpuint(t1->len, ==, 0); /* the partial file is gone */
    g_assert_cmpuint(n1->len, ==, 0);

    /* A small one still fits: the failure left no space behind. */
    static const char small[] = "Subject: small\r\n\r\nx\r\n";
    g_autoptr(KrMsg) msg2 = make_msg(small, sizeof small - 1);
    g_assert_cmpint(deliver("full@localhost", NULL, msg2, NULL, &err), ==, KR_STORE_OK);
    g_assert_no_error(err);
    g_autoptr(GPtrArray) n2 = list_dir(newd);
    g_assert_cmpuint(n2->len, ==, 1);
    g_assert_cmpint(umount2(home, MNT_DETACH), ==, 0);
    (void)dom;
}

int
main(int argc, char **argv)
{
    kr_test_init(&argc, &argv);
    data_dir = kr_test_tmpdir();
    g_autofree char *mpath = g_build_filename(kr_test_build_dir(), "modules", NULL);
    KrStartupOpts o = {
        .config_text = "core = { hostname = \"mx/test:1,x\"; domains = [ \"localhost\" ]; };\n"
                       "modules = [ \"maildir\" ];\n"
                       "pipeline = { maildrop = { type = \"maildrop\"; }; };\n",
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
    store = kr_store("maildir");
    g_assert_nonnull(store);

    g_test_add_func("/maildir/basic", test_basic);
    g_test_add_func("/maildir/lf-content", test_lf_content);
    g_test_add_func("/maildir/folder", test_folder);
    g_test_add_func("/maildir/bad-names", test_bad_names);
    g_test_add_func("/maildir/symlinks", test_symlinks);
    g_test_add_func("/maildir/concurrent", test_concurrent);
    g_test_add_func("/maildir/enospc", test_enospc);
    int rc = g_test_run();
    kr_shutdown_modules();
    return rc;
}
