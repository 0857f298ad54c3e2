/* SPDX-License-Identifier: MIT */
/*
 * test-store.c - the mailbox API of the maildir store (kr-store.h),
 * through the real module loaded into a temp DATA_DIR.
 *
 * Covers: messages written straight into new/ and cur/ by "another tool"
 * are indexed (UIDs, CRLF sizes, guids, content); UIDs stable across
 * sessions; the index rebuilt when missing, truncated or garbage (new
 * UIDVALIDITY, same guids); files added and removed behind a session's
 * back while it is open; name validation ('..', '/', control
 * characters) and symlinks (never followed); flags (file renames, other
 * sessions told, own changes not reported, CONDSTORE unchanged_since);
 * expunge; append; copy and move (UIDPLUS answers); cached blobs;
 * folder create/list/rename/delete/subscriptions/status; the exclusive
 * (POP3) lock; watches on delivery; deliveries racing sessions in
 * threads and in a second process without loss or index damage; CRLF
 * sizes from ",W=" in file names (trusted only when the file's size
 * agrees; deliveries write it) and views shared between sessions;
 * cached blobs written in batches, read through the read-ahead window,
 * and damaged cache files and records, compaction of the cache file;
 * \Recent across sessions (other
 * tests mask it out of the flags they compare).
 */
#include "testlib.h"
#include "../core/kr-startup.h"
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char *data_dir;
static const KrStore *store;
static const KrMailboxOps *ops;

static char *
home_of(const char *local, const char *folder)
{
    if (folder) {
        g_autofree char *dn = g_strconcat(".", folder, NULL);
        return g_build_filename(data_dir, "mail", "localhost", local, dn, NULL);
    }
    return g_build_filename(data_dir, "mail", "localhost", local, NULL);
}

/* "Another tool" writes a message file. */
static void
put_file(const char *local, const char *folder, const char *sub, const char *name,
         const char *content)
{
    g_autofree char *home = home_of(local, folder);
    for (const char *s = "tmp\0new\0cur\0"; *s; s += strlen(s) + 1) {
        g_autofree char *d = g_build_filename(home, s, NULL);
        g_mkdir_with_parents(d, 0700);
    }
    g_autofree char *path = g_build_filename(home, sub, name, NULL);
    GError *err = NULL;
    g_assert_true(g_file_set_contents(path, content, -1, &err));
    g_assert_no_error(err);
}

static KrMailbox *
open_mb(const char *local, const char *folder, unsigned flags)
{
    g_autofree char *user = g_strconcat(local, "@localhost", NULL);
    GError *err = NULL;
    KrMailbox *mb = ops->open(store->self, user, folder, flags, &err);
    g_assert_no_error(err);
    g_assert_nonnull(mb);
    return mb;
}

static char *
content_of(KrMailbox *mb, guint32 uid)
{
    GError *err = NULL;
    int fd = ops->open_content(mb, uid, &err);
    g_assert_no_error(err);
    g_assert_cmpint(fd, >=, 0);
    GString *s = g_string_new(NULL);
    char buf[4096];
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0)
        g_string_append_len(s, buf, n);
    close(fd);
    return g_string_free(s, FALSE);
}

static gboolean
exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

static void
test_other_tool(void)
{
    put_file("ann", NULL, "new", "1000.A.host", "Subject: a\n\nbody a\n");
    put_file("ann", NULL, "cur", "1001.B.host:2,S", "Subject: b\r\n\r\nbody b\r\n");
    put_file("ann", NULL, "new", "1002.C.host", "Subject: c\n\nc\n");
    KrMailbox *mb = open_mb("ann", NULL, 0);
    g_assert_cmpuint(ops->count(mb), ==, 3);
    const KrMailboxMsg *m1 = ops->msg(mb, 1), *m2 = ops->msg(mb, 2), *m3 = ops->msg(mb, 3);
    /* UIDs in file-name order, guid = name up to ':' */
    g_assert_cmpuint(m1->uid, ==, 1);
    g_assert_cmpuint(m2->uid, ==, 2);
    g_assert_cmpuint(m3->uid, ==, 3);
    g_assert_cmpstr(m1->guid, ==, "1000.A.host");
    g_assert_cmpstr(m2->guid, ==, "1001.B.host");
    /* sizes count line ends as CRLF */
    g_assert_cmpint(m1->size, ==, strlen("Subject: a\r\n\r\nbody a\r\n"));
    g_assert_cmpint(m2->size, ==, strlen("Subject: b\r\n\r\nbody b\r\n"));
    g_assert_cmpuint(m1->flags & KR_FLAG_ALL, ==, 0);
    g_assert_cmpuint(m2->flags & KR_FLAG_ALL, ==, KR_FLAG_SEEN);
    g_assert_null(ops->msg(mb, 4));
    g_assert_cmpuint(ops->seq_of_uid(mb, 3), ==, 3);
    g_assert_cmpuint(ops->seq_of_uid(mb, 9), ==, 0);
    KrMailboxStatus st;
    ops->get_status(mb, &st);
    g_assert_cmpuint(st.uidnext, ==, 4);
    g_assert_cmpuint(st.unseen, ==, 2);
    g_assert_cmpuint(st.uidvalidity, >, 0);
    g_autofree char *c2 = content_of(mb, 2);
    g_assert_cmpstr(c2, ==, "Subject: b\r\n\r\nbody b\r\n");
    guint32 validity = st.uidvalidity;
    ops->close(mb);

    /* The index file is there and a new session sees the same UIDs. */
    g_autofree char *home = home_of("ann", NULL);
    g_autofree char *idx = g_build_filename(home, "kurir-index", NULL);
    g_assert_true(exists(idx));
    mb = open_mb("ann", NULL, KR_MAILBOX_READONLY);
    ops->get_status(mb, &st);
    g_assert_cmpuint(st.uidvalidity, ==, validity);
    g_assert_cmpuint(ops->count(mb), ==, 3);
    g_assert_cmpstr(ops->msg(mb, 3)->guid, ==, "1002.C.host");
    g_assert_cmpuint(ops->msg(mb, 3)->uid, ==, 3);
    GError *err = NULL;
    guint32 uid = 1;
    g_assert_false(ops->set_flags(mb, &uid, 1, KR_FLAGS_ADD, KR_FLAG_SEEN, NULL, 0, NULL, &err));
    g_assert_error(err, KR_STORE_ERROR, KR_STORE_ERROR_READONLY);
    g_clear_error(&err);
    ops->close(mb);
}

/* Index lost, truncated or garbage: rebuilt, guids kept. */
static void
test_index_damage(void)
{
    for (int i = 0; i < 5; i++) {
        g_autofree char *n = g_strdup_printf("20%02d.X.host", i);
        g_autofree char *c = g_strdup_printf("Subject: %d\n\nbody\n", i);
        put_file("dan", NULL, "new", n, c);
    }
    KrMailbox *mb = open_mb("dan", NULL, 0);
    KrMailboxStatus st;
    ops->get_status(mb, &st);
    guint32 v1 = st.uidvalidity;
    guint32 uid = 2;
    GError *err = NULL;
    g_assert_true(ops->set_flags(mb, &uid, 1, KR_FLAGS_ADD, KR_FLAG_FLAGGED, NULL, 0, NULL, &err));
    g_assert_no_error(err);
    ops->close(mb);

    g_autofree char *home = home_of("dan", NULL);
    g_autofree char *idx = g_build_filename(home, "kurir-index", NULL);
    g_autofree char *data = NULL;
    gsize len;
    g_assert_true(g_file_get_contents(idx, &data, &len, NULL));

    /* 1. A torn last line (crash mid-append): the rest is still good. */
    g_autofree char *torn = g_strconcat(data, "M 99 0 0 1 1", NULL);
    g_assert_true(g_file_set_contents(idx, torn, -1, NULL));
    mb = open_mb("dan", NULL, 0);
    ops->get_status(mb, &st);
    g_assert_cmpuint(st.uidvalidity, ==, v1);
    g_assert_cmpuint(ops->count(mb), ==, 5);
    g_assert_cmpuint(ops->msg(mb, 2)->flags & KR_FLAG_ALL, ==,
                     KR_FLAG_FLAGGED); /* from the file name */
    ops->close(mb);

    /* 2. Truncated in the middle: complete lines kept, the files fill in. */
    g_assert_true(g_file_set_contents(idx, data, (gssize)(len * 2 / 3), NULL));
    mb = open_mb("dan", NULL, 0);
    ops->get_status(mb, &st);
    g_assert_cmpuint(ops->count(mb), ==, 5);
    for (guint s = 1; s <= 5; s++) {
        g_autofree char *want = g_strdup_printf("20%02u.X.host", s - 1);
        g_assert_cmpstr(ops->msg(mb, s)->guid, ==, want);
    }
    ops->close(mb);

    /* 3. Garbage: rebuilt with a new, larger UIDVALIDITY; guids kept. */
    g_assert_true(g_file_set_contents(idx, "kurir-index 1 5 5\nM garbage\n\x01\x02", -1, NULL));
    mb = open_mb("dan", NULL, 0);
    ops->get_status(mb, &st);
    g_assert_cmpuint(st.uidvalidity, >, v1);
    g_assert_cmpuint(ops->count(mb), ==, 5);
    g_assert_cmpstr(ops->msg(mb, 1)->guid, ==, "2000.X.host");
    g_assert_cmpuint(ops->msg(mb, 2)->flags & KR_FLAG_ALL, ==, KR_FLAG_FLAGGED);
    guint32 v2 = st.uidvalidity;
    ops->close(mb);

    /* 4. Missing: rebuilt again, UIDVALIDITY grows again. */
    g_assert_cmpint(unlink(idx), ==, 0);
    mb = open_mb("dan", NULL, 0);
    ops->get_status(mb, &st);
    g_assert_cmpuint(st.uidvalidity, >, v2);
    g_assert_cmpuint(ops->count(mb), ==, 5);
    ops->close(mb);

    /* 5. A symlink planted as the index is not followed. */
    g_autofree char *target = g_build_filename(data_dir, "outside", NULL);
    g_assert_true(g_file_set_contents(target, "kurir-index 1 7 7\n", -1, NULL));
    g_assert_cmpint(unlink(idx), ==, 0);
    g_assert_cmpint(symlink(target, idx), ==, 0);
    mb = open_mb("dan", NULL, 0);
    g_assert_cmpuint(ops->count(mb), ==, 5);
    ops->close(mb);
    struct stat lst;
    g_assert_cmpint(lstat(idx, &lst), ==, 0);
    g_assert_true(S_ISREG(lst.st_mode)); /* replaced by a real file */
    g_autofree char *tdata = NULL;
    g_assert_true(g_file_get_contents(target, &tdata, NULL, NULL));
    g_assert_cmpstr(tdata, ==, "kurir-index 1 7 7\n"); /* untouched */
}

/* Added and removed by another process while a session is open. */
static void
test_behind_back(void)
{
    put_file("bea", NULL, "new", "3000.A.host", "Subject: 1\n\n1\n");
    put_file("bea", NULL, "new", "3001.B.host", "Subject: 2\n\n2\n");
    put_file("bea", NULL, "new", "3002.C.host", "Subject: 3\n\n3\n");
    KrMailbox *pop = open_mb("bea", NULL, KR_MAILBOX_EXCLUSIVE); /* never syncs */
    KrMailbox *imap = open_mb("bea", NULL, 0);
    g_assert_cmpuint(ops->count(pop), ==, 3);

    pid_t pid = fork();
    if (pid == 0) {
        g_autofree char *h = home_of("bea", NULL);
        g_autofree char *gone = g_build_filename(h, "new", "3001.B.host", NULL);
        g_autofree char *add = g_build_filename(h, "new", "3003.D.host", NULL);
        int ok = unlink(gone) == 0 && g_file_set_contents(add, "Subject: 4\n\n4\n", -1, NULL);
        _exit(ok ? 0 : 1);
    }
    int status;
    g_assert_cmpint(waitpid(pid, &status, 0), ==, pid);
    g_assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);

    /* The never-syncing session keeps its view; the gone one is gone. */
    g_assert_cmpuint(ops->count(pop), ==, 3);
    GError *err = NULL;
    g_assert_cmpint(ops->open_content(pop, 2, &err), ==, -1);
    g_assert_error(err, KR_STORE_ERROR, KR_STORE_ERROR_NO_MESSAGE);
    g_clear_error(&err);
    g_autofree char *c3 = content_of(pop, 3);
    g_assert_cmpstr(c3, ==, "Subject: 3\n\n3\n");

    /* The syncing one is told. */
    KrMailboxChanges ch;
    g_assert_true(ops->sync(imap, &ch, &err));
    g_assert_no_error(err);
    g_assert_cmpuint(ch.expunged_seqs->len, ==, 1);
    g_assert_cmpuint(g_array_index(ch.expunged_seqs, guint32, 0), ==, 2);
    g_assert_cmpuint(g_array_index(ch.expunged_uids, guint32, 0), ==, 2);
    g_assert_cmpuint(ch.new_messages, ==, 1);
    g_assert_cmpuint(ch.exists, ==, 3);
    g_assert_cmpuint(ops->msg(imap, 3)->uid, ==, 4);
    g_assert_cmpstr(ops->msg(imap, 3)->guid, ==, "3003.D.host");
    kr_mailbox_changes_clear(&ch);

    /* Another program sets a flag by renaming: adopted, reported. */
    g_autofree char *h = home_of("bea", NULL);
    g_autofree char *from = g_build_filename(h, "new", "3000.A.host", NULL);
    g_autofree char *to = g_build_filename(h, "cur", "3000.A.host:2,RS", NULL);
    g_assert_cmpint(rename(from, to), ==, 0);
    g_assert_true(ops->sync(imap, &ch, &err));
    g_assert_cmpuint(ch.changed_seqs->len, ==, 1);
    g_assert_cmpuint(ops->msg(imap, 1)->flags & KR_FLAG_ALL, ==, KR_FLAG_SEEN | KR_FLAG_ANSWERED);
    kr_mailbox_changes_clear(&ch);
    /* and the content is still found under the new name */
    g_autofree char *c1 = content_of(pop, 1);
    g_assert_cmpstr(c1, ==, "Subject: 1\n\n1\n");
    ops->close(imap);
    ops->close(pop);
}

static void
test_names(void)
{
    static const char *const bad[] = {"..",     "a/b",       "../x",   "a..b", ".hidden",
                                      "x\x01y", "tab\there", "trail.", ""};
    GError *err = NULL;
    for (guint i = 0; i < G_N_ELEMENTS(bad); i++) {
        KrMailbox *mb = ops->open(store->self, "nina@localhost", bad[i], 0, &err);
        g_assert_null(mb);
        g_assert_error(err, KR_STORE_ERROR, KR_STORE_ERROR_INVALID_NAME);
        g_clear_error(&err);
        g_assert_false(ops->create(store->self, "nina@localhost", bad[i], &err));
        g_assert_nonnull(err);
        g_clear_error(&err);
    }
    g_assert_null(ops->open(store->self, "../etc@localhost", NULL, 0, &err));
    g_assert_error(err, KR_STORE_ERROR, KR_STORE_ERROR_INVALID_NAME);
    g_clear_error(&err);
    g_assert_null(ops->open(store->self, "a/b@localhost", NULL, 0, &err));
    g_clear_error(&err);

    /* No such folder */
    g_assert_null(ops->open(store->self, "nina@localhost", "Nope", 0, &err));
    g_assert_error(err, KR_STORE_ERROR, KR_STORE_ERROR_NOT_FOUND);
    g_clear_error(&err);

    /* A folder that is a symlink to elsewhere is refused. */
    g_autofree char *outside = g_build_filename(data_dir, "elsewhere", NULL);
    for (const char *s = "tmp\0new\0cur\0"; *s; s += strlen(s) + 1) {
        g_autofree char *d = g_build_filename(outside, s, NULL);
        g_mkdir_with_parents(d, 0700);
    }
    g_autofree char *secret = g_build_filename(outside, "new", "1.secret", NULL);
    g_assert_true(g_file_set_contents(secret, "Subject: secret\n\n", -1, NULL));
    KrMailbox *mb = open_mb("nina", NULL, 0); /* creates the home */
    ops->close(mb);
    g_autofree char *home = home_of("nina", NULL);
    g_autofree char *link = g_build_filename(home, ".Evil", NULL);
    g_assert_cmpint(symlink(outside, link), ==, 0);
    g_assert_null(ops->open(store->self, "nina@localhost", "Evil", 0, &err));
    g_assert_nonnull(err);
    g_clear_error(&err);
    g_autoptr(GPtrArray) list = ops->list(store->self, "nina@localhost", &err);
    g_assert_no_error(err);
    g_assert_cmpuint(list->len, ==, 1); /* INBOX only, no Evil */

    /* A message file that is a symlink is skipped, not followed. */
    g_autofree char *mlink = g_build_filename(home, "new", "5.link", NULL);
    g_assert_cmpint(symlink(secret, mlink), ==, 0);
    put_file("nina", NULL, "new", "6.real", "Subject: real\n\n");
    /* and files with control characters or spaces in the name too */
    put_file("nina", NULL, "new", "7.bad name", "Subject: x\n\n");
    put_file("nina", NULL, "new", "8.bad\x01name", "Subject: y\n\n");
    mb = open_mb("nina", NULL, 0);
    g_assert_cmpuint(ops->count(mb), ==, 1);
    g_assert_cmpstr(ops->msg(mb, 1)->guid, ==, "6.real");
    ops->close(mb);
}

static void
test_flags(void)
{
    put_file("fay", NULL, "new", "4000.A.host", "Subject: 1\n\n1\n");
    put_file("fay", NULL, "new", "4001.B.host", "Subject: 2\n\n2\n");
    KrMailbox *a = open_mb("fay", NULL, 0);
    KrMailbox *b = open_mb("fay", NULL, 0);
    guint64 cc = ops->change_counter(b);
    GError *err = NULL;
    g_assert_cmpuint(ops->first_unseen(a), ==, 1);
    guint32 first = 1;
    g_assert_true(ops->set_flags(a, &first, 1, KR_FLAGS_ADD, KR_FLAG_SEEN, NULL, 0, NULL, &err));
    g_assert_cmpuint(ops->first_unseen(a), ==, 2); /* follows the session's own change */
    g_assert_cmpuint(ops->first_unseen(b), ==, 1); /* b has not synced */
    guint32 uids[] = {1, 2};
    const char *kws[] = {"$Junk", "work", NULL};
    g_assert_true(ops->set_flags(a, uids, 2, KR_FLAGS_ADD, KR_FLAG_SEEN, kws, 0, NULL, &err));
    g_assert_no_error(err);
    g_assert_cmpuint(ops->first_unseen(a), ==, 0);
    g_assert_cmpuint(ops->msg(a, 1)->flags & KR_FLAG_ALL, ==, KR_FLAG_SEEN);
    g_assert_cmpuint(ops->msg(a, 1)->keywords, ==, 3);
    const char *const *k = ops->keywords(a);
    g_assert_cmpstr(k[0], ==, "$Junk");
    g_assert_cmpstr(k[1], ==, "work");
    g_assert_null(k[2]);
    g_assert_cmpuint(ops->change_counter(b), >, cc);
    /* the files moved to cur/ with the letters */
    g_autofree char *home = home_of("fay", NULL);
    g_autofree char *f1 = g_build_filename(home, "cur", "4000.A.host:2,Sab", NULL);
    g_assert_true(exists(f1));

    KrMailboxChanges ch;
    g_assert_true(ops->sync(a, &ch, &err));
    g_assert_cmpuint(ch.changed_seqs->len, ==, 0); /* own change: not reported */
    kr_mailbox_changes_clear(&ch);
    g_assert_true(ops->sync(b, &ch, &err));
    g_assert_cmpuint(ch.changed_seqs->len, ==, 2);
    g_assert_true(ch.keywords_changed);
    g_assert_cmpuint(ops->msg(b, 2)->flags & KR_FLAG_ALL, ==, KR_FLAG_SEEN);
    kr_mailbox_changes_clear(&ch);
    g_assert_cmpuint(ops->first_unseen(b), ==, 0); /* after the sync */
    KrMailbox *c0 = open_mb("fay", NULL, 0);       /* a new session, shared view */
    g_assert_cmpuint(ops->first_unseen(c0), ==, 0);
    ops->close(c0);

    /* CONDSTORE: b's change to 1 raises its modseq; a's conditional
     * store with the old modseq fails for 1 only. */
    guint64 old = ops->msg(a, 1)->modseq;
    KrMailboxStatus st;
    ops->get_status(a, &st);
    g_assert_cmpuint(st.highestmodseq, >=, old);
    guint32 one = 1;
    g_assert_true(ops->set_flags(b, &one, 1, KR_FLAGS_ADD, KR_FLAG_FLAGGED, NULL, 0, NULL, &err));
    g_autoptr(GArray) failed = g_array_new(FALSE, FALSE, sizeof(guint32));
    g_assert_true(
        ops->set_flags(a, uids, 2, KR_FLAGS_REMOVE, KR_FLAG_SEEN, NULL, old, failed, &err));
    g_assert_cmpuint(failed->len, ==, 1);
    g_assert_cmpuint(g_array_index(failed, guint32, 0), ==, 1);
    g_assert_cmpuint(ops->msg(a, 2)->flags & KR_FLAG_ALL, ==, 0);
    g_assert_true(ops->sync(a, &ch, &err));
    g_assert_cmpuint(ops->msg(a, 1)->flags & KR_FLAG_ALL, ==, KR_FLAG_SEEN | KR_FLAG_FLAGGED);
    g_assert_cmpuint(ch.changed_seqs->len, ==, 1);
    kr_mailbox_changes_clear(&ch);

    /* Replace, and keyword limit */
    g_assert_true(ops->set_flags(a, &one, 1, KR_FLAGS_REPLACE, KR_FLAG_DRAFT, NULL, 0, NULL, &err));
    g_assert_cmpuint(ops->msg(a, 1)->flags & KR_FLAG_ALL, ==, KR_FLAG_DRAFT);
    g_assert_cmpuint(ops->msg(a, 1)->keywords, ==, 0);
    for (int i = 0; i < 30; i++) {
        g_autofree char *kw = g_strdup_printf("k%d", i);
        const char *one_kw[] = {kw, NULL};
        gboolean ok = ops->set_flags(a, &one, 1, KR_FLAGS_ADD, 0, one_kw, 0, NULL, &err);
        if (i < KR_STORE_MAX_KEYWORDS - 2) {
            g_assert_true(ok);
        } else {
            g_assert_false(ok);
            g_assert_error(err, KR_STORE_ERROR, KR_STORE_ERROR_LIMIT);
            g_clear_error(&err);
        }
    }
    /* Survives a reload from disk: the file name and the index agree. */
    ops->close(a);
    ops->close(b);
    g_autofree char *idx = g_build_filename(home, "kurir-index", NULL);
    g_assert_cmpint(unlink(idx), ==, 0);
    KrMailbox *c = open_mb("fay", NULL, 0);
    g_assert_cmpuint(ops->msg(c, 1)->flags & KR_FLAG_ALL, ==, KR_FLAG_DRAFT);
    g_assert_cmpuint(ops->msg(c, 1)->keywords, ==, (1u << (KR_STORE_MAX_KEYWORDS)) - 4);
    ops->close(c);
}

static void
test_expunge(void)
{
    for (int i = 0; i < 4; i++) {
        g_autofree char *n = g_strdup_printf("50%02d.E.host", i);
        put_file("eve", NULL, "new", n, "Subject: x\n\nx\n");
    }
    KrMailbox *mb = open_mb("eve", NULL, 0);
    GError *err = NULL;
    guint32 del[] = {2, 4};
    g_assert_true(ops->set_flags(mb, del, 2, KR_FLAGS_ADD, KR_FLAG_DELETED, NULL, 0, NULL, &err));
    g_autoptr(GArray) gone = g_array_new(FALSE, FALSE, sizeof(guint32));
    g_assert_true(ops->expunge(mb, NULL, 0, TRUE, gone, &err));
    g_assert_no_error(err);
    g_assert_cmpuint(gone->len, ==, 2);
    g_assert_cmpuint(ops->count(mb), ==, 4); /* until sync */
    KrMailboxChanges ch;
    g_assert_true(ops->sync(mb, &ch, &err));
    g_assert_cmpuint(ch.expunged_seqs->len, ==, 2);
    g_assert_cmpuint(g_array_index(ch.expunged_seqs, guint32, 0), ==, 4); /* descending */
    g_assert_cmpuint(g_array_index(ch.expunged_seqs, guint32, 1), ==, 2);
    kr_mailbox_changes_clear(&ch);
    g_assert_cmpuint(ops->count(mb), ==, 2);
    /* POP3 style: given UIDs, flags ignored */
    guint32 one = 1;
    g_array_set_size(gone, 0);
    g_assert_true(ops->expunge(mb, &one, 1, FALSE, gone, &err));
    g_assert_cmpuint(gone->len, ==, 1);
    ops->close(mb);
    g_autofree char *home = home_of("eve", NULL);
    g_autofree char *nd = g_build_filename(home, "new", NULL);
    g_autofree char *cd = g_build_filename(home, "cur", NULL);
    GDir *d = g_dir_open(nd, 0, NULL);
    int files = 0;
    while (g_dir_read_name(d))
        files++;
    g_dir_close(d);
    d = g_dir_open(cd, 0, NULL);
    while (g_dir_read_name(d))
        files++;
    g_dir_close(d);
    g_assert_cmpint(files, ==, 1);
    mb = open_mb("eve", NULL, 0);
    g_assert_cmpuint(ops->count(mb), ==, 1);
    g_assert_cmpuint(ops->msg(mb, 1)->uid, ==, 3);
    ops->close(mb);
}

static void
test_folders_append_copy(void)
{
    const char *u = "fred@localhost";
    GError *err = NULL;
    g_assert_true(ops->create(store->self, u, "Work", &err));
    g_assert_true(ops->create(store->self, u, "Work.Old", &err));
    g_assert_true(ops->create(store->self, u, "Zeta", &err));
    g_assert_no_error(err);
    g_assert_false(ops->create(store->self, u, "Work", &err));
    g_assert_error(err, KR_STORE_ERROR, KR_STORE_ERROR_EXISTS);
    g_clear_error(&err);
    g_assert_false(ops->create(store->self, u, "inbox", &err));
    g_clear_error(&err);
    g_autoptr(GPtrArray) l = ops->list(store->self, u, &err);
    g_assert_cmpuint(l->len, ==, 4);
    g_assert_cmpstr(l->pdata[0], ==, "INBOX");
    g_assert_cmpstr(l->pdata[1], ==, "Work");
    g_assert_cmpstr(l->pdata[2], ==, "Work.Old");
    g_assert_cmpstr(l->pdata[3], ==, "Zeta");

    /* append (CRLF in, LF on disk, CRLF size), with flags, keyword, date */
    static const char msg[] = "Subject: ap\r\nX: y\r\n\r\nhello\r\n";
    const char *kw[] = {"$Label1", NULL};
    KrMailboxAppend ap = {.data = msg,
                          .len = strlen(msg),
                          .fd = -1,
                          .flags = KR_FLAG_SEEN,
                          .keywords = kw,
                          .internal_date = 1000000000};
    guint32 v = 0, uid = 0;
    g_assert_true(ops->append(store->self, u, "Work", &ap, &v, &uid, &err));
    g_assert_no_error(err);
    g_assert_cmpuint(uid, ==, 1);
    g_assert_cmpuint(v, >, 0);
    KrMailbox *w = open_mb("fred", "Work", 0);
    g_assert_cmpuint(ops->count(w), ==, 1);
    const KrMailboxMsg *m = ops->msg(w, 1);
    g_assert_cmpint(m->size, ==, strlen(msg));
    g_assert_cmpint(m->internal_date, ==, 1000000000);
    g_assert_cmpuint(m->flags & KR_FLAG_ALL, ==, KR_FLAG_SEEN);
    g_assert_cmpuint(m->keywords, ==, 1);
    g_autofree char *c = content_of(w, 1);
    g_assert_cmpstr(c, ==, "Subject: ap\nX: y\n\nhello\n");
    /* cached blob */
    g_autoptr(GBytes) blob = g_bytes_new_static("ENVELOPE(...)", 13);
    g_assert_true(ops->cache_set(w, 1, blob, &err));
    GBytes *got = NULL;
    g_assert_true(ops->cache_get(w, 1, &got, &err));
    g_assert_nonnull(got);
    g_assert_true(g_bytes_equal(got, blob));
    g_bytes_unref(got);

    /* copy to Zeta, then move back to INBOX */
    guint32 one = 1, dv = 0;
    g_autoptr(GArray) su = g_array_new(FALSE, FALSE, sizeof(guint32));
    g_autoptr(GArray) du = g_array_new(FALSE, FALSE, sizeof(guint32));
    g_assert_true(ops->copy(w, &one, 1, "Zeta", FALSE, &dv, su, du, &err));
    g_assert_no_error(err);
    g_assert_cmpuint(su->len, ==, 1);
    g_assert_cmpuint(g_array_index(du, guint32, 0), ==, 1);
    KrMailbox *z = open_mb("fred", "Zeta", 0);
    KrMailboxStatus st;
    ops->get_status(z, &st);
    g_assert_cmpuint(st.uidvalidity, ==, dv);
    g_assert_cmpuint(ops->count(z), ==, 1);
    g_assert_cmpuint(ops->msg(z, 1)->flags & KR_FLAG_ALL, ==, KR_FLAG_SEEN);
    g_assert_cmpuint(ops->msg(z, 1)->keywords, ==, 1);
    g_assert_cmpstr(ops->keywords(z)[0], ==, "$Label1");
    g_assert_cmpint(ops->msg(z, 1)->internal_date, ==, 1000000000);
    g_assert_cmpstr(ops->msg(z, 1)->guid, !=, ops->msg(w, 1)->guid);
    g_assert_true(ops->cache_get(z, 1, &got, &err));
    g_assert_nonnull(got);
    g_assert_true(g_bytes_equal(got, blob));
    g_bytes_unref(got);
    g_array_set_size(du, 0);
    g_assert_true(ops->copy(z, &one, 1, "INBOX", TRUE, &dv, NULL, du, &err));
    g_assert_cmpuint(du->len, ==, 1);
    KrMailboxChanges ch;
    g_assert_true(ops->sync(z, &ch, &err));
    g_assert_cmpuint(ch.exists, ==, 0);
    kr_mailbox_changes_clear(&ch);
    KrMailbox *in = open_mb("fred", NULL, 0);
    g_assert_cmpuint(ops->count(in), ==, 1);
    g_autofree char *c2 = content_of(in, ops->msg(in, 1)->uid);
    g_assert_cmpstr(c2, ==, "Subject: ap\nX: y\n\nhello\n");
    g_assert_false(ops->copy(in, &one, 1, "Nope", FALSE, NULL, NULL, NULL, &err));
    g_assert_error(err, KR_STORE_ERROR, KR_STORE_ERROR_NOT_FOUND);
    g_clear_error(&err);
    ops->close(in);
    ops->close(z);
    ops->close(w);

    /* status without a session */
    g_assert_true(ops->status(store->self, u, "Work", &st, &err));
    g_assert_cmpuint(st.messages, ==, 1);
    g_assert_cmpuint(st.unseen, ==, 0);
    g_assert_cmpuint(st.uidnext, ==, 2);

    /* rename with children, delete */
    g_assert_true(ops->rename(store->self, u, "Work", "Job", &err));
    g_assert_no_error(err);
    g_ptr_array_unref(l);
    l = ops->list(store->self, u, &err);
    g_assert_cmpuint(l->len, ==, 4);
    g_assert_cmpstr(l->pdata[1], ==, "Job");
    g_assert_cmpstr(l->pdata[2], ==, "Job.Old");
    g_assert_true(ops->status(store->self, u, "Job", &st, &err));
    g_assert_cmpuint(st.messages, ==, 1);
    g_assert_false(ops->rename(store->self, u, "Job", "Zeta", &err));
    g_assert_error(err, KR_STORE_ERROR, KR_STORE_ERROR_EXISTS);
    g_clear_error(&err);
    g_assert_false(ops->rename(store->self, u, "INBOX", "X", &err));
    g_clear_error(&err);
    g_assert_true(ops->remove(store->self, u, "Job", &err));
    g_assert_false(ops->remove(store->self, u, "Job", &err));
    g_assert_error(err, KR_STORE_ERROR, KR_STORE_ERROR_NOT_FOUND);
    g_clear_error(&err);
    g_ptr_array_unref(l);
    l = ops->list(store->self, u, &err);
    g_assert_cmpuint(l->len, ==, 3); /* INBOX, Job.Old, Zeta */
    g_assert_cmpstr(l->pdata[1], ==, "Job.Old");
    /* re-created: a fresh folder, not the old state */
    g_assert_true(ops->create(store->self, u, "Job", &err));
    g_assert_true(ops->status(store->self, u, "Job", &st, &err));
    g_assert_cmpuint(st.messages, ==, 0);

    /* subscriptions */
    g_assert_true(ops->subscribe(store->self, u, "Zeta", TRUE, &err));
    g_assert_true(ops->subscribe(store->self, u, "inbox", TRUE, &err));
    g_assert_true(ops->subscribe(store->self, u, "Zeta", TRUE, &err));
    g_autoptr(GPtrArray) subs = ops->subscriptions(store->self, u, &err);
    g_assert_cmpuint(subs->len, ==, 2);
    g_assert_true(ops->subscribe(store->self, u, "Zeta", FALSE, &err));
    g_ptr_array_unref(subs);
    subs = ops->subscriptions(store->self, u, &err);
    g_assert_cmpuint(subs->len, ==, 1);
    g_assert_cmpstr(subs->pdata[0], ==, "INBOX");
}

static void
test_exclusive(void)
{
    KrMailbox *a = open_mb("ike", NULL, KR_MAILBOX_EXCLUSIVE);
    GError *err = NULL;
    g_assert_null(ops->open(store->self, "ike@localhost", NULL, KR_MAILBOX_EXCLUSIVE, &err));
    g_assert_error(err, KR_STORE_ERROR, KR_STORE_ERROR_IN_USE);
    g_clear_error(&err);
    /* another process sees it locked too */
    pid_t pid = fork();
    if (pid == 0) {
        KrMailbox *b = ops->open(store->self, "ike@localhost", NULL, KR_MAILBOX_EXCLUSIVE, &err);
        _exit(!b && g_error_matches(err, KR_STORE_ERROR, KR_STORE_ERROR_IN_USE) ? 0 : 1);
    }
    int status;
    waitpid(pid, &status, 0);
    g_assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    KrMailbox *shared = open_mb("ike", NULL, 0); /* non-exclusive is fine */
    ops->close(shared);
    ops->close(a);
    a = open_mb("ike", NULL, KR_MAILBOX_EXCLUSIVE);
    ops->close(a);
}

/* --- deliveries racing sessions ------------------------------------------ */

static KrMsg *
make_msg(const char *content)
{
    GError *err = NULL;
    KrMsg *msg = kr_msg_new_spool(KR_QUEUE_INCOMING, &err);
    g_assert_no_error(err);
    kr_msg_set_sender(msg, "s@example.net");
    kr_msg_add_rcpt(msg, "race@localhost");
    g_assert_true(kr_msg_append(msg, content, strlen(content), &err));
    g_assert_true(kr_msg_commit(msg, KR_QUEUE_INCOMING, &err));
    g_assert_no_error(err);
    return msg;
}

static gint watch_hits;
static void
on_watch(gpointer ud)
{
    g_atomic_int_inc(&watch_hits);
}

#define RACE_N 200

static gpointer
deliverer(gpointer p)
{
    KrMsg *msg = p;
    for (int i = 0; i < RACE_N; i++) {
        GError *err = NULL;
        KrStoreResult r = store->deliver(store->self, "race@localhost", NULL, msg, NULL, &err);
        g_assert_cmpint(r, ==, KR_STORE_OK);
    }
    return NULL;
}

static gpointer
reader(gpointer p)
{
    for (int i = 0; i < 60; i++) {
        GError *err = NULL;
        KrMailbox *mb = ops->open(store->self, "race@localhost", NULL, 0, &err);
        g_assert_no_error(err);
        for (guint s = 1; s <= ops->count(mb); s += 17) {
            int fd = ops->open_content(mb, ops->msg(mb, s)->uid, &err);
            g_assert_no_error(err);
            close(fd);
        }
        /* flag changes race deliveries and the other process */
        if (ops->count(mb) > 0) {
            guint32 uid = ops->msg(mb, 1 + (i % ops->count(mb)))->uid;
            g_assert_true(
                ops->set_flags(mb, &uid, 1, KR_FLAGS_ADD, KR_FLAG_SEEN, NULL, 0, NULL, &err));
            g_assert_no_error(err);
        }
        ops->close(mb);
    }
    return NULL;
}

static void
test_concurrent(void)
{
    g_autoptr(KrMsg) msg = make_msg("Subject: race\r\n\r\nbody\r\n");
    KrMailbox *w = open_mb("race", NULL, 0);
    ops->watch(w, on_watch, NULL);

    /* A second process syncs and flags all along (the cross-process path). */
    pid_t pid = fork();
    if (pid == 0) {
        int bad = 0;
        for (int i = 0; i < 150; i++) {
            GError *err = NULL;
            KrMailbox *mb = ops->open(store->self, "race@localhost", NULL, 0, &err);
            if (!mb) {
                bad++;
                continue;
            }
            if (ops->count(mb) > 0) {
                guint32 uid = ops->msg(mb, ops->count(mb))->uid;
                if (!ops->set_flags(mb, &uid, 1, KR_FLAGS_ADD, KR_FLAG_FLAGGED, NULL, 0, NULL,
                                    &err))
                    bad++;
            }
            ops->close(mb);
            g_usleep(2000);
        }
        _exit(bad ? 1 : 0);
    }
    GThread *t[4];
    t[0] = g_thread_new("d1", deliverer, msg);
    t[1] = g_thread_new("d2", deliverer, msg);
    t[2] = g_thread_new("r1", reader, NULL);
    t[3] = g_thread_new("r2", reader, NULL);
    for (int i = 0; i < 4; i++)
        g_thread_join(t[i]);
    int status;
    g_assert_cmpint(waitpid(pid, &status, 0), ==, pid);
    g_assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    g_assert_cmpint(g_atomic_int_get(&watch_hits), >=, 2 * RACE_N);

    KrMailboxChanges ch;
    GError *err = NULL;
    g_assert_true(ops->sync(w, &ch, &err));
    g_assert_no_error(err);
    g_assert_cmpuint(ops->count(w), ==, 2 * RACE_N);
    kr_mailbox_changes_clear(&ch);
    /* UIDs strictly ascending, guids unique */
    g_autoptr(GHashTable) seen = g_hash_table_new(g_str_hash, g_str_equal);
    for (guint s = 1; s <= ops->count(w); s++) {
        if (s > 1)
            g_assert_cmpuint(ops->msg(w, s)->uid, >, ops->msg(w, s - 1)->uid);
        g_assert_true(g_hash_table_add(seen, (gpointer)ops->msg(w, s)->guid));
    }
    KrMailboxStatus st;
    ops->get_status(w, &st);
    guint32 validity = st.uidvalidity;
    g_autoptr(GArray) uids = g_array_new(FALSE, FALSE, sizeof(guint32));
    for (guint s = 1; s <= ops->count(w); s++)
        g_array_append_val(uids, ops->msg(w, s)->uid);
    ops->watch(w, NULL, NULL);
    ops->close(w);

    /* A fresh process reads the same index from disk: no rebuild. */
    int pfd[2];
    g_assert_cmpint(pipe(pfd), ==, 0);
    pid = fork();
    if (pid == 0) {
        close(pfd[0]);
        KrMailbox *mb = ops->open(store->self, "race@localhost", NULL, 0, &err);
        GString *s = g_string_new(NULL);
        KrMailboxStatus cst;
        ops->get_status(mb, &cst);
        g_string_append_printf(s, "%u", cst.uidvalidity);
        for (guint i = 1; i <= ops->count(mb); i++)
            g_string_append_printf(s, " %u", ops->msg(mb, i)->uid);
        if (write(pfd[1], s->str, s->len) < 0)
            _exit(1);
        _exit(0);
    }
    close(pfd[1]);
    GString *got = g_string_new(NULL);
    char buf[4096];
    ssize_t n;
    while ((n = read(pfd[0], buf, sizeof buf)) > 0)
        g_string_append_len(got, buf, n);
    close(pfd[0]);
    waitpid(pid, &status, 0);
    GString *want = g_string_new(NULL);
    g_string_append_printf(want, "%u", validity);
    for (guint i = 0; i < uids->len; i++)
        g_string_append_printf(want, " %u", g_array_index(uids, guint32, i));
    g_assert_cmpstr(got->str, ==, want->str);
    g_string_free(got, TRUE);
    g_string_free(want, TRUE);
}

/* --- sizes from ",W=" in file names --------------------------------------- */

static gint64
size_of_guid(KrMailbox *mb, const char *guid)
{
    for (guint32 s = 1; s <= ops->count(mb); s++)
        if (strcmp(ops->msg(mb, s)->guid, guid) == 0)
            return ops->msg(mb, s)->size;
    g_assert_not_reached();
    return -1;
}

static void
test_vsize_names(void)
{
    /* 17 bytes on disk, 3 bare LFs: 20 with CRLF line ends. */
    const char *lf = "Subject: w\n\nbody\n";
    g_assert_cmpint(strlen(lf), ==, 17);
    /* A plausible W= that is not the real count: taken from the name,
     * which shows the file is not read. */
    put_file("wyn", NULL, "new", "2000.A.host,S=17,W=25", lf);
    /* A correct W= on an unreadable file: still sized from the name. */
    put_file("wyn", NULL, "cur", "2001.B.host,S=17,W=20:2,S", lf);
    g_autofree char *home = home_of("wyn", NULL);
    g_autofree char *locked = g_build_filename(home, "cur", "2001.B.host,S=17,W=20:2,S", NULL);
    g_assert_cmpint(chmod(locked, 0), ==, 0);
    /* Lying or broken names: caught, the file is read (20). */
    put_file("wyn", NULL, "new", "2002.C.host,S=17,W=5", lf);              /* W < size */
    put_file("wyn", NULL, "new", "2003.D.host,W=99999", lf);               /* W > 2 * size */
    put_file("wyn", NULL, "new", "2004.E.host,S=99,W=30", lf);             /* S is not the size */
    put_file("wyn", NULL, "new", "2005.F.host,S=17,W=25x", lf);            /* not a number */
    put_file("wyn", NULL, "new", "2006.G.host,W=-25", lf);                 /* signed */
    put_file("wyn", NULL, "new", "2007.H.host,W=1234567890123456789", lf); /* too long */
    /* No W=: read; mixed line ends (one CRLF, two bare LFs): 18 + 2. */
    put_file("wyn", NULL, "new", "2008.I.host,S=18", "Subject: m\r\n\nbody\n");
    put_file("wyn", NULL, "new", "2009.J.host", "x\r");

    KrMailbox *mb = open_mb("wyn", NULL, 0);
    g_assert_cmpuint(ops->count(mb), ==, 10);
    g_assert_cmpint(size_of_guid(mb, "2000.A.host,S=17,W=25"), ==, 25);
    g_assert_cmpint(size_of_guid(mb, "2001.B.host,S=17,W=20"), ==, 20);
    g_assert_cmpint(size_of_guid(mb, "2002.C.host,S=17,W=5"), ==, 20);
    g_assert_cmpint(size_of_guid(mb, "2003.D.host,W=99999"), ==, 20);
    g_assert_cmpint(size_of_guid(mb, "2004.E.host,S=99,W=30"), ==, 20);
    g_assert_cmpint(size_of_guid(mb, "2005.F.host,S=17,W=25x"), ==, 20);
    g_assert_cmpint(size_of_guid(mb, "2006.G.host,W=-25"), ==, 20);
    g_assert_cmpint(size_of_guid(mb, "2007.H.host,W=1234567890123456789"), ==, 20);
    g_assert_cmpint(size_of_guid(mb, "2008.I.host,S=18"), ==, 20);
    g_assert_cmpint(size_of_guid(mb, "2009.J.host"), ==, 2);
    KrMailboxStatus st;
    ops->get_status(mb, &st);
    g_assert_cmpint(st.size, ==, 25 + 20 * 8 + 2);
    ops->close(mb);
    g_assert_cmpint(chmod(locked, 0600), ==, 0);

    /* A delivery names its file ",S=<disk size>,W=<CRLF size>". */
    g_autoptr(KrMsg) msg = make_msg("Subject: d\r\n\r\nbody\r\nlast\n");
    GError *err = NULL;
    g_assert_cmpint(store->deliver(store->self, "wyd@localhost", NULL, msg, NULL, &err), ==,
                    KR_STORE_OK);
    g_assert_no_error(err);
    g_autofree char *dhome = home_of("wyd", NULL);
    g_autofree char *dnew = g_build_filename(dhome, "new", NULL);
    GDir *d = g_dir_open(dnew, 0, &err);
    g_assert_no_error(err);
    const char *name = g_dir_read_name(d);
    g_assert_nonnull(name);
    g_autofree char *fname = g_strdup(name);
    g_assert_null(g_dir_read_name(d));
    g_dir_close(d);
    /* on disk with LF ends: "Subject: d\n\nbody\nlast\n" */
    g_assert_true(g_str_has_suffix(fname, ",S=22,W=26"));
    /* Sized from the name even when unreadable, index or not. */
    g_autofree char *dpath = g_build_filename(dnew, fname, NULL);
    g_assert_cmpint(chmod(dpath, 0), ==, 0);
    mb = open_mb("wyd", NULL, 0);
    g_assert_cmpuint(ops->count(mb), ==, 1);
    g_assert_cmpint(ops->msg(mb, 1)->size, ==, 26);
    ops->close(mb);
    g_assert_cmpint(chmod(dpath, 0600), ==, 0);
    mb = open_mb("wyd", NULL, 0);
    g_autofree char *c = content_of(mb, 1);
    /* stored with LF ends: 22 bytes, 4 of them bare LFs */
    g_assert_cmpstr(c, ==, "Subject: d\n\nbody\nlast\n");
    g_assert_cmpint(ops->msg(mb, 1)->size, ==, 26);
    ops->close(mb);
}

/* Sessions opened on an unchanged folder share one view: a session's
 * own changes stay its own until the others sync. */
static void
test_shared_view(void)
{
    put_file("shv", NULL, "cur", "3000.A.host:2,", "Subject: a\n\na\n");
    put_file("shv", NULL, "cur", "3001.B.host:2,", "Subject: b\n\nb\n");
    KrMailbox *a = open_mb("shv", NULL, 0);
    KrMailbox *b = open_mb("shv", NULL, 0);
    const KrMailboxMsg *bm = ops->msg(b, 2);
    g_assert_cmpuint(bm->flags & KR_FLAG_ALL, ==, 0);
    GError *err = NULL;
    guint32 uid = 2;
    g_assert_true(ops->set_flags(a, &uid, 1, KR_FLAGS_ADD, KR_FLAG_FLAGGED, NULL, 0, NULL, &err));
    g_assert_no_error(err);
    g_assert_cmpuint(ops->msg(a, 2)->flags & KR_FLAG_ALL, ==, KR_FLAG_FLAGGED);
    /* b's view (and the pointer it got) did not change under it */
    g_assert_cmpuint(bm->flags & KR_FLAG_ALL, ==, 0);
    g_assert_cmpuint(ops->msg(b, 2)->flags & KR_FLAG_ALL, ==, 0);
    /* a new session sees the change */
    KrMailbox *c = open_mb("shv", NULL, 0);
    g_assert_cmpuint(ops->msg(c, 2)->flags & KR_FLAG_ALL, ==, KR_FLAG_FLAGGED);
    g_assert_cmpstr(ops->msg(c, 1)->guid, ==, "3000.A.host");
    ops->close(a);
    KrMailboxChanges ch;
    g_assert_true(ops->sync(b, &ch, &err));
    g_assert_no_error(err);
    g_assert_cmpuint(ch.changed_seqs->len, ==, 1);
    g_assert_cmpuint(g_array_index(ch.changed_seqs, guint32, 0), ==, 2);
    kr_mailbox_changes_clear(&ch);
    g_assert_cmpuint(ops->msg(b, 2)->flags & KR_FLAG_ALL, ==, KR_FLAG_FLAGGED);
    g_assert_cmpstr(ops->msg(b, 2)->guid, ==, "3001.B.host");
    /* expunge in b: c still has both until it syncs */
    g_assert_true(ops->expunge(b, &uid, 1, FALSE, NULL, &err));
    g_assert_no_error(err);
    ops->close(b);
    g_assert_cmpuint(ops->count(c), ==, 2);
    g_assert_cmpstr(ops->msg(c, 2)->guid, ==, "3001.B.host");
    g_assert_true(ops->sync(c, &ch, &err));
    g_assert_cmpuint(ch.expunged_uids->len, ==, 1);
    kr_mailbox_changes_clear(&ch);
    g_assert_cmpuint(ops->count(c), ==, 1);
    ops->close(c);
}

static char *
blob_text(guint32 uid, guint round)
{
    /* different lengths, so offsets matter */
    return g_strdup_printf("blob %u round %u %.*s", uid, round, (int)(uid % 97),
                           "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                           "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
}

static void
assert_blob(KrMailbox *mb, guint32 uid, const char *want)
{
    GError *err = NULL;
    GBytes *got = NULL;
    g_assert_true(ops->cache_get(mb, uid, &got, &err));
    g_assert_no_error(err);
    if (!want) {
        g_assert_null(got);
        return;
    }
    g_assert_nonnull(got);
    gsize len;
    const char *d = g_bytes_get_data(got, &len);
    g_assert_cmpmem(d, len, want, strlen(want));
    g_bytes_unref(got);
}

static void
append_to(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_APPEND);
    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(write(fd, text, strlen(text)), ==, (ssize_t)strlen(text));
    close(fd);
}

/* Cached blobs: set in batches (the session sees its unwritten ones,
 * other sessions see them once written), read back in and out of order,
 * replaced, removed; a truncated cache file and absurd C records are
 * misses, not crashes; blobs over the limit are refused. */
static void
test_cache_blobs(void)
{
    enum { N = 1300 };
    for (guint i = 0; i < N; i++) {
        g_autofree char *name = g_strdup_printf("%u.M%u.host:2,", 4000 + i, i);
        put_file("cb", NULL, "cur", name, "Subject: c\n\nc\n");
    }
    KrMailbox *a = open_mb("cb", NULL, 0);
    KrMailbox *b = open_mb("cb", NULL, 0);
    g_assert_cmpuint(ops->count(a), ==, N);
    GError *err = NULL;
    for (guint32 uid = 1; uid <= N; uid++) {
        g_autofree char *t = blob_text(uid, 1);
        g_autoptr(GBytes) bl = g_bytes_new(t, strlen(t));
        g_assert_true(ops->cache_set(a, uid, bl, &err));
        g_assert_no_error(err);
        if (uid == 3) {
            /* replaced before it is written */
            g_autofree char *t2 = blob_text(uid, 2);
            g_autoptr(GBytes) b2 = g_bytes_new(t2, strlen(t2));
            g_assert_true(ops->cache_set(a, uid, b2, &err));
            assert_blob(a, 3, t2);
        }
    }
    g_assert_true(ops->cache_set(a, 7, NULL, &err));
    assert_blob(a, 7, NULL);
    g_autofree char *tlast = blob_text(N, 1);
    assert_blob(a, N, tlast);
    /* a sync writes the rest: everything visible to b now */
    g_assert_true(ops->sync(a, NULL, &err));
    g_assert_no_error(err);
    for (guint32 uid = 1; uid <= N; uid++) {
        g_autofree char *t = blob_text(uid, uid == 3 ? 2 : 1);
        assert_blob(b, uid, uid == 7 ? NULL : t);
    }
    for (guint32 uid = N; uid >= 1; uid -= 13) {
        g_autofree char *t = blob_text(uid, uid == 3 ? 2 : 1);
        assert_blob(a, uid, uid == 7 ? NULL : t);
    }
    /* a new blob for a message read before: the new one wins in both */
    g_autofree char *t5 = blob_text(5, 9);
    g_autoptr(GBytes) b5 = g_bytes_new(t5, strlen(t5));
    g_assert_true(ops->cache_set(b, 5, b5, &err));
    ops->close(b); /* close writes it */
    assert_blob(a, 5, t5);

    /* over the limit: refused, nothing stored */
    g_autoptr(GBytes) huge =
        g_bytes_new_take(g_malloc0(16 * 1024 * 1024 + 1), 16 * 1024 * 1024 + 1);
    g_assert_false(ops->cache_set(a, 6, huge, &err));
    g_assert_error(err, KR_STORE_ERROR, KR_STORE_ERROR_LIMIT);
    g_clear_error(&err);
    g_autofree char *t6 = blob_text(6, 1);
    assert_blob(a, 6, t6);
    /* release(): queued blobs written (another session sees them), the
     * session stays usable and reads them back */
    g_autofree char *r6 = blob_text(6, 7);
    g_autoptr(GBytes) rb6 = g_bytes_new(r6, strlen(r6));
    g_assert_true(ops->cache_set(a, 6, rb6, &err));
    KrMailbox *rd = open_mb("cb", NULL, 0);
    g_autofree char *r6old = blob_text(6, 1);
    assert_blob(rd, 6, r6old);
    ops->release(a);
    g_assert_true(ops->sync(rd, NULL, &err));
    assert_blob(rd, 6, r6);
    assert_blob(a, 6, r6);
    ops->close(rd);

    /* damage: the cache file cut in half, absurd records in the index */
    g_autofree char *home = home_of("cb", NULL);
    g_autoptr(GDir) d = g_dir_open(home, 0, NULL);
    g_autofree char *cache = NULL;
    for (const char *n; (n = g_dir_read_name(d));)
        if (g_str_has_prefix(n, "kurir-cache."))
            cache = g_build_filename(home, n, NULL);
    g_assert_nonnull(cache);
    struct stat st;
    g_assert_cmpint(stat(cache, &st), ==, 0);
    g_assert_cmpint(st.st_size, >, 50 * N);
    g_assert_cmpint(truncate(cache, st.st_size / 2), ==, 0);
    g_autofree char *index = g_build_filename(home, "kurir-index", NULL);
    append_to(index, "C 1 0 4294967295\nC 2 9223372036854775000 100\nC 4 1 16777217\n");
    KrMailbox *c = open_mb("cb", NULL, 0);
    g_autofree char *t10 = blob_text(10, 1);
    assert_blob(c, 10, t10); /* in the first half */
    assert_blob(c, 1, NULL);
    assert_blob(c, 2, NULL);
    assert_blob(c, 4, NULL);
    guint misses = 0;
    for (guint32 uid = 8; uid <= N; uid++) {
        GBytes *got = NULL;
        g_assert_true(ops->cache_get(c, uid, &got, &err));
        if (!got) {
            misses++;
            continue;
        }
        g_autofree char *t = blob_text(uid, uid == 5 ? 9 : 1);
        g_assert_cmpmem(g_bytes_get_data(got, NULL), g_bytes_get_size(got), t, strlen(t));
        g_bytes_unref(got);
    }
    g_assert_cmpuint(misses, >, N / 3);
    g_assert_cmpuint(misses, <, N);
    /* a after a sync (file reopened) too; and it can cache again */
    g_assert_true(ops->sync(a, NULL, &err));
    assert_blob(a, 1, NULL);
    assert_blob(a, N, NULL);
    g_autofree char *tn = blob_text(N, 5);
    g_autoptr(GBytes) bn = g_bytes_new(tn, strlen(tn));
    g_assert_true(ops->cache_set(a, N, bn, &err));
    g_assert_true(ops->sync(a, NULL, &err));
    assert_blob(c, N, tn);
    /* expunged with a blob queued: no trouble, gone */
    guint32 x = 20;
    g_assert_true(ops->cache_set(a, x, bn, &err));
    g_assert_true(ops->expunge(a, &x, 1, FALSE, NULL, &err));
    g_assert_no_error(err);
    assert_blob(c, x, NULL);
    /* the index lost with a batch queued: rebuilt, the batch dropped */
    g_assert_true(ops->cache_set(a, 30, bn, &err));
    g_assert_cmpint(unlink(index), ==, 0);
    ops->close(a);
    g_assert_true(g_file_test(index, G_FILE_TEST_EXISTS));
    KrMailbox *d2 = open_mb("cb", NULL, 0);
    g_assert_cmpuint(ops->count(d2), ==, N - 1);
    assert_blob(d2, 30, NULL);
    assert_blob(d2, 31, NULL);
    ops->close(d2);
    g_assert_false(g_file_test(cache, G_FILE_TEST_EXISTS)); /* the old generation's */
    ops->close(c);
}

static guint
count_recent(KrMailbox *mb)
{
    guint n = 0;
    for (guint32 s = 1; s <= ops->count(mb); s++)
        n += (ops->msg(mb, s)->flags & KR_FLAG_RECENT) != 0;
    return n;
}

/* \Recent: the first session that may write claims new messages; the
 * others (and the shared view) never see its bits; read-only sessions
 * see unclaimed ones without claiming; the claim survives the index
 * being read afresh; set_flags neither stores nor clears it. */
static void
test_recent(void)
{
    put_file("rcn", NULL, "cur", "5000.A.host:2,", "Subject: a\n\na\n");
    put_file("rcn", NULL, "cur", "5001.B.host:2,S", "Subject: b\n\nb\n");
    KrMailbox *ro = open_mb("rcn", NULL, KR_MAILBOX_READONLY);
    g_assert_cmpuint(count_recent(ro), ==, 2);                   /* seen, not claimed */
    KrMailbox *pop = open_mb("rcn", NULL, KR_MAILBOX_NO_RECENT); /* POP3: the same */
    g_assert_cmpuint(count_recent(pop), ==, 2);
    g_assert_false(ops->readonly(pop));
    ops->close(pop);
    KrMailbox *a = open_mb("rcn", NULL, 0);
    g_assert_cmpuint(count_recent(a), ==, 2);
    g_assert_cmpuint(ops->msg(a, 2)->flags, ==, KR_FLAG_SEEN | KR_FLAG_RECENT);
    KrMailbox *b = open_mb("rcn", NULL, 0);
    g_assert_cmpuint(count_recent(b), ==, 0);
    KrMailbox *ro2 = open_mb("rcn", NULL, KR_MAILBOX_READONLY);
    g_assert_cmpuint(count_recent(ro2), ==, 0);
    KrMailboxStatus st;
    ops->get_status(b, &st);
    g_assert_cmpuint(st.unseen, ==, 1);

    /* a delivery: ro2 sees it recent first, b claims it, a does not get it */
    put_file("rcn", NULL, "new", "5002.C.host", "Subject: c\n\nc\n");
    GError *err = NULL;
    KrMailboxChanges ch;
    g_assert_true(ops->sync(ro2, &ch, &err));
    g_assert_no_error(err);
    g_assert_cmpuint(ch.new_messages, ==, 1);
    kr_mailbox_changes_clear(&ch);
    g_assert_cmpuint(count_recent(ro2), ==, 1);
    g_assert_cmpuint(ops->msg(ro2, 3)->flags, ==, KR_FLAG_RECENT);
    g_assert_true(ops->sync(b, &ch, &err));
    g_assert_cmpuint(ch.new_messages, ==, 1);
    kr_mailbox_changes_clear(&ch);
    g_assert_cmpuint(count_recent(b), ==, 1);
    g_assert_cmpuint(ops->msg(b, 3)->flags, ==, KR_FLAG_RECENT);
    g_assert_true(ops->sync(a, &ch, &err));
    g_assert_cmpuint(ch.new_messages, ==, 1);
    g_assert_cmpuint(ch.changed_seqs->len, ==, 0);
    kr_mailbox_changes_clear(&ch);
    g_assert_cmpuint(count_recent(a), ==, 2); /* its own two, kept */
    g_assert_cmpuint(ops->msg(a, 3)->flags, ==, 0);

    /* set_flags: \Recent neither stored nor cleared */
    guint32 one = 1;
    g_assert_true(ops->set_flags(a, &one, 1, KR_FLAGS_REPLACE, KR_FLAG_SEEN | KR_FLAG_RECENT, NULL,
                                 0, NULL, &err));
    g_assert_no_error(err);
    g_assert_cmpuint(ops->msg(a, 1)->flags, ==, KR_FLAG_SEEN | KR_FLAG_RECENT);
    ops->get_status(a, &st);
    g_assert_cmpuint(st.unseen, ==, 1);
    g_assert_true(ops->set_flags(b, &one, 1, KR_FLAGS_REMOVE, KR_FLAG_SEEN, NULL, 0, NULL, &err));
    g_assert_true(ops->sync(a, &ch, &err));
    g_assert_cmpuint(ch.changed_seqs->len, ==, 1);
    kr_mailbox_changes_clear(&ch);
    g_assert_cmpuint(ops->msg(a, 1)->flags, ==, KR_FLAG_RECENT);
    ops->get_status(a, &st);
    g_assert_cmpuint(st.unseen, ==, 2);
    KrMailbox *c = open_mb("rcn", NULL, 0);
    g_assert_cmpuint(count_recent(c), ==, 0);
    g_assert_cmpuint(ops->msg(c, 1)->flags, ==, 0);
    ops->get_status(c, &st);
    g_assert_cmpuint(st.unseen, ==, 2);
    g_assert_cmpuint(st.messages, ==, 3);
    /* STATUS: from the shared view's counts, then (changed) the index */
    KrMailboxStatus fs;
    g_assert_true(ops->status(store->self, "rcn@localhost", "INBOX", &fs, &err));
    g_assert_cmpuint(fs.unseen, ==, 2);
    g_assert_cmpint(fs.size, ==, st.size);
    guint32 three = 3;
    g_assert_true(ops->set_flags(c, &three, 1, KR_FLAGS_ADD, KR_FLAG_SEEN | KR_FLAG_DELETED, NULL,
                                 0, NULL, &err));
    ops->get_status(c, &st);
    g_assert_cmpuint(st.unseen, ==, 1);
    g_assert_cmpuint(st.deleted, ==, 1);
    g_assert_true(ops->status(store->self, "rcn@localhost", "INBOX", &fs, &err));
    g_assert_cmpuint(fs.unseen, ==, 1);
    g_assert_cmpuint(fs.deleted, ==, 1);
    g_assert_true(ops->set_flags(c, &three, 1, KR_FLAGS_REMOVE, KR_FLAG_SEEN | KR_FLAG_DELETED,
                                 NULL, 0, NULL, &err));
    ops->close(c);

    /* the claim is in the index file: read afresh (new inode), still claimed */
    g_autofree char *home = home_of("rcn", NULL);
    g_autofree char *index = g_build_filename(home, "kurir-index", NULL);
    g_autofree char *copy = g_build_filename(home, "kurir-index.copy", NULL);
    g_autofree char *text = NULL;
    g_assert_true(g_file_get_contents(index, &text, NULL, NULL));
    g_assert_nonnull(strstr(text, "\nR 4\n"));
    g_assert_true(g_file_set_contents(copy, text, -1, NULL));
    g_assert_cmpint(rename(copy, index), ==, 0);
    c = open_mb("rcn", NULL, 0);
    g_assert_cmpuint(count_recent(c), ==, 0);
    ops->close(c);
    /* a rebuilt index: every message is recent again (documented) */
    g_assert_cmpint(unlink(index), ==, 0);
    c = open_mb("rcn", NULL, 0);
    g_assert_cmpuint(count_recent(c), ==, 3);
    ops->close(c);
    ops->close(a);
    ops->close(b);
    ops->close(ro);
    ops->close(ro2);
}

/* The cache file, once mostly garbage (blobs replaced), is compacted
 * when the index is rewritten: a new generation holding the live blobs
 * only, the old file gone; every session reads the right blobs after,
 * also one whose window was on the old file. */
static void
test_cache_compact(void)
{
    enum { N = 1100 };
    for (guint i = 0; i < N; i++) {
        g_autofree char *name = g_strdup_printf("%u.M%u.host:2,", 6000 + i, i);
        put_file("cmp", NULL, "cur", name, "Subject: c\n\nc\n");
    }
    KrMailbox *a = open_mb("cmp", NULL, 0);
    KrMailbox *b = open_mb("cmp", NULL, 0);
    GError *err = NULL;
    char pad[1024];
    memset(pad, 'p', sizeof pad);
    g_autofree char *home = home_of("cmp", NULL);
    g_autoptr(GDir) d = g_dir_open(home, 0, NULL);
    g_autofree char *first = NULL;
    for (guint round = 1; round <= 3; round++) {
        for (guint32 uid = 1; uid <= N; uid++) {
            g_autofree char *t = g_strdup_printf("%u/%u/%.*s", uid, round, 900 + uid % 100, pad);
            g_autoptr(GBytes) bl = g_bytes_new(t, strlen(t));
            g_assert_true(ops->cache_set(a, uid, bl, &err));
        }
        g_assert_true(ops->sync(a, NULL, &err));
        g_assert_no_error(err);
        if (round == 1) {
            g_autofree char *want1 = g_strdup_printf("1/1/%.*s", 901, pad);
            assert_blob(b, 1, want1); /* b's window is on this file */
            g_dir_rewind(d);
            for (const char *n; (n = g_dir_read_name(d));)
                if (g_str_has_prefix(n, "kurir-cache."))
                    first = g_build_filename(home, n, NULL);
        }
    }
    g_assert_nonnull(first);
    /* a flag change: the index is rewritten if its records outnumber the
     * messages, and the cache with it (a sync's rescan may have done it
     * already) */
    guint32 one = 1;
    g_assert_true(ops->set_flags(a, &one, 1, KR_FLAGS_ADD, KR_FLAG_SEEN, NULL, 0, NULL, &err));
    g_assert_no_error(err);
    g_assert_false(g_file_test(first, G_FILE_TEST_EXISTS));
    g_autofree char *after = NULL;
    guint files = 0;
    g_dir_rewind(d);
    for (const char *n; (n = g_dir_read_name(d));)
        if (g_str_has_prefix(n, "kurir-cache.")) {
            files++;
            g_free(after);
            after = g_build_filename(home, n, NULL);
        }
    g_assert_cmpuint(files, ==, 1);
    struct stat st;
    g_assert_cmpint(stat(after, &st), ==, 0);
    g_assert_cmpint(st.st_size, <, 2 * N * 1010); /* 3 rounds written */
    g_assert_cmpint(st.st_size, >, N * 900);
    KrMailbox *c = open_mb("cmp", NULL, 0);
    for (guint32 uid = 1; uid <= N; uid++) {
        g_autofree char *t = g_strdup_printf("%u/3/%.*s", uid, 900 + uid % 100, pad);
        assert_blob(b, uid, t);
        assert_blob(c, uid, t);
    }
    g_assert_true(ops->sync(a, NULL, &err));
    g_assert_no_error(err);
    g_autofree char *wantn = g_strdup_printf("%u/3/%.*s", N, 900 + N % 100, pad);
    assert_blob(a, N, wantn);
    ops->close(a);
    ops->close(b);
    ops->close(c);
}

int
main(int argc, char **argv)
{
    kr_test_init(&argc, &argv);
    /* The store warns about the damage these tests do on purpose. */
    g_log_set_always_fatal(G_LOG_LEVEL_ERROR | G_LOG_LEVEL_CRITICAL);
    data_dir = kr_test_tmpdir();
    g_autofree char *mpath = g_build_filename(kr_test_build_dir(), "modules", NULL);
    KrStartupOpts o = {
        .config_text = "core = { hostname = \"mx.test\"; domains = [ \"localhost\" ]; };\n"
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
    ops = kr_store_mailbox_ops(store);
    g_assert_nonnull(ops);
    g_assert_true(KR_STORE_HAS_OP(ops, watch));

    g_test_add_func("/store/other-tool", test_other_tool);
    g_test_add_func("/store/index-damage", test_index_damage);
    g_test_add_func("/store/behind-back", test_behind_back);
    g_test_add_func("/store/names", test_names);
    g_test_add_func("/store/flags", test_flags);
    g_test_add_func("/store/expunge", test_expunge);
    g_test_add_func("/store/folders-append-copy", test_folders_append_copy);
    g_test_add_func("/store/exclusive", test_exclusive);
    g_test_add_func("/store/concurrent", test_concurrent);
    g_test_add_func("/store/vsize-names", test_vsize_names);
    g_test_add_func("/store/shared-view", test_shared_view);
    g_test_add_func("/store/cache-blobs", test_cache_blobs);
    g_test_add_func("/store/recent", test_recent);
    g_test_add_func("/store/cache-compact", test_cache_compact);
    int rc = g_test_run();
    kr_shutdown_modules();
    return rc;
}
