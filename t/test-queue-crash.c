/* SPDX-License-Identifier: MIT */
/*
 * test-queue-crash.c - queue files survive a process killed at any time.
 *
 * A child commits messages in a loop (spool in maildrop/, commit to
 * incoming/ with kr_msg_commit) and, after each commit returns, writes
 * "C <id>" to a pipe: that is the "250 OK". It then updates recipient 0's
 * status UPDATES times (kr_msg_rcpt_save), acknowledging each with
 * "U <id> <k>". The parent SIGKILLs the child after a random 1-40 ms,
 * runs a recovery scan (every file in every queue dir loaded, stale
 * .tmp-* spools removed, bad files quarantined) and checks:
 *
 *   - nothing needed quarantining (a visible file is always complete);
 *   - every acknowledged ID is in incoming/ with exactly the envelope and
 *     content it was committed with (both derived from the ID);
 *   - at most one unacknowledged message (the one in flight) exists;
 *   - recipient 0's status is the last acknowledged one or the one being
 *     written when the child died: never older, never garbled.
 *
 * Repeated ITERATIONS times; the test's random seed picks the delays.
 *
 * /queue-crash/kill-with-spares: the same, with THREADS threads in the
 * child committing at once (so directory fsyncs are group-committed),
 * each message then moved to active/ with kr_msg_move_lazy ("A <id>")
 * and every other one removed with kr_msg_remove_lazy ("D <id>" before,
 * "R <id>" after), whose
 * file becomes a spare that later spools reuse. After the kill: spares
 * are swept (kr_queue_sweep_spares) and every message acknowledged and
 * not removed is found, in incoming/ or active/ (or both: one inode, a
 * move cut between link and unlink), with exactly its content; nothing
 * removed comes back (a process kill loses no page cache) and no file
 * holds another message's bytes.
 */
#include "testlib.h"
#include "../core/kr-internal.h"
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define ITERATIONS 100
#define UPDATES    3

/* --- what a message with a given ID looks like ---------------------------- */

static guint
n_rcpts(const char *id)
{
    return 1 + g_str_hash(id) % 3;
}

static char *
rcpt_addr(const char *id, guint j)
{
    return g_strdup_printf("r%u-%s@example.net", j, id);
}

static char *
sender_for(const char *id)
{
    return g_strdup_printf("s-%s@example.org", id);
}

/* Raw content: a header, then 0..150 KB of bytes from a PRNG seeded by
 * the ID. */
static GBytes *
content_for(const char *id)
{
    GRand *r = g_rand_new_with_seed(g_str_hash(id) ^ 0x5bd1e995u);
    GByteArray *b = g_byte_array_new();
    g_autofree char *head = g_strdup_printf("Subject: %s\r\n\r\n", id);
    g_byte_array_append(b, (const guint8 *)head, (guint)strlen(head));
    guint n = (guint)g_rand_int_range(r, 0, 150000) / 4;
    for (guint i = 0; i < n; i++) {
        guint32 v = g_rand_int(r);
        g_byte_array_append(b, (const guint8 *)&v, 4);
    }
    g_rand_free(r);
    return g_byte_array_free_to_bytes(b);
}

/* --- the child ------------------------------------------------------------ */

static void
ack(int fd, const char *line)
{
    gsize len = strlen(line);
    if (write(fd, line, len) != (gssize)len)
        _exit(3);
}

static G_GNUC_NORETURN void
child_main(int wfd)
{
    for (;;) {
        GError *err = NULL;
        KrMsg *msg = kr_msg_new_spool(KR_QUEUE_MAILDROP, &err);
        if (!msg)
            _exit(2);
        const char *id = kr_msg_queue_id(msg);
        g_autoptr(GBytes) content = content_for(id);
        gsize len;
        const guint8 *data = g_bytes_get_data(content, &len);
        for (gsize off = 0; off < len; off += 8192)
            if (!kr_msg_append(msg, data + off, MIN(8192, len - off), &err))
                _exit(2);
        g_autofree char *sender = sender_for(id);
        kr_msg_set_sender(msg, sender);
        for (guint j = 0; j < n_rcpts(id); j++) {
            g_autofree char *a = rcpt_addr(id, j);
            kr_msg_add_rcpt(msg, a);
        }
        kr_msg_set_attr(msg, "tag", id);
        if (!kr_msg_prepend_header(msg, "X-Id", id, &err) ||
            !kr_msg_commit(msg, KR_QUEUE_INCOMING, &err))
            _exit(2);
        g_autofree char *c = g_strdup_printf("C %s\n", id);
        ack(wfd, c);
        KrRcpt *r0 = kr_msg_rcpt(msg, 0);
        for (int k = 1; k <= UPDATES; k++) {
            g_autofree char *diag = g_strdup_printf("try %d", k);
            g_autofree char *ecode = g_strdup_printf("4.0.%d", k);
            kr_rcpt_set_result(r0, k == UPDATES ? KR_RCPT_DELIVERED : KR_RCPT_DEFERRED, 400 + k,
                               ecode, diag);
            r0->next_try = k * 1000;
            if (!kr_msg_rcpt_save(msg, r0, &err))
                _exit(2);
            g_autofree char *u = g_strdup_printf("U %s %d\n", id, k);
            ack(wfd, u);
        }
        kr_msg_unref(msg);
    }
}

/* One message of the spares test: spool (maybe a spare), content,
 * envelope, commit, move to active/, maybe remove. */
static void
churn_one(int wfd, guint n)
{
    GError *err = NULL;
    KrMsg *msg = kr_msg_new_spool(KR_QUEUE_INCOMING, &err);
    if (!msg)
        _exit(2);
    const char *id = kr_msg_queue_id(msg);
    g_autoptr(GBytes) content = content_for(id);
    gsize len;
    const guint8 *data = g_bytes_get_data(content, &len);
    for (gsize off = 0; off < len; off += 8192)
        if (!kr_msg_append(msg, data + off, MIN(8192, len - off), &err))
            _exit(2);
    g_autofree char *sender = sender_for(id);
    kr_msg_set_sender(msg, sender);
    for (guint j = 0; j < n_rcpts(id); j++) {
        g_autofree char *a = rcpt_addr(id, j);
        kr_msg_add_rcpt(msg, a);
    }
    kr_msg_set_attr(msg, "tag", id);
    if (!kr_msg_prepend_header(msg, "X-Id", id, &err) ||
        !kr_msg_commit(msg, KR_QUEUE_INCOMING, &err))
        _exit(2);
    g_autofree char *c = g_strdup_printf("C %s\n", id);
    ack(wfd, c);
    if (!kr_msg_move_lazy(msg, KR_QUEUE_ACTIVE, &err))
        _exit(2);
    g_autofree char *a = g_strdup_printf("A %s\n", id);
    ack(wfd, a);
    if (n % 2 == 0) {
        /* From here on it may be gone: every recipient is final. */
        g_autofree char *d = g_strdup_printf("D %s\n", id);
        ack(wfd, d);
        if (!kr_msg_remove_lazy(msg, &err))
            _exit(2);
        g_autofree char *r = g_strdup_printf("R %s\n", id);
        ack(wfd, r);
    }
    kr_msg_unref(msg);
}

#define THREADS 4

static gpointer
churn_thread(gpointer p)
{
    int wfd = GPOINTER_TO_INT(p);
    for (guint n = 0;; n++)
        churn_one(wfd, n);
    return NULL;
}

static G_GNUC_NORETURN void
churn_main(int wfd)
{
    for (int i = 0; i < THREADS; i++)
        g_thread_new("churn", churn_thread, GINT_TO_POINTER(wfd));
    for (;;)
        pause();
}

/* --- the parent ----------------------------------------------------------- */

typedef struct {
    guint files_checked;
    guint acked;
    guint unacked_present;
    guint update_in_flight; /* status newer than its last ack */
    guint tmp_removed;
} Stats;

/* Every file in every queue dir: spools removed, the rest loaded; a file
 * that does not load is quarantined (which logs a warning: fatal here). */
static void
recovery_scan(Stats *st)
{
    for (int d = 0; d < KR_QUEUE_N_DIRS; d++) {
        if (d == KR_QUEUE_CORRUPT)
            continue;
        g_autofree char *path = kr_queue_dir_path((KrQueueDir)d);
        DIR *dir = opendir(path);
        g_assert_nonnull(dir);
        struct dirent *de;
        g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func(g_free);
        while ((de = readdir(dir)))
            g_ptr_array_add(names, g_strdup(de->d_name));
        closedir(dir);
        for (guint i = 0; i < names->len; i++) {
            const char *name = names->pdata[i];
            if (g_str_has_prefix(name, ".tmp-")) {
                g_autofree char *p = g_build_filename(path, name, NULL);
                g_assert_cmpint(unlink(p), ==, 0);
                st->tmp_removed++;
            } else if (kr_queue_id_valid(name)) {
                GError *err = NULL;
                KrMsg *m = kr_msg_load((KrQueueDir)d, name, &err);
                if (!m) {
                    kr_queue_quarantine((KrQueueDir)d, name, err->message);
                    g_error_free(err);
                } else {
                    kr_msg_unref(m);
                }
            }
        }
    }
    g_autoptr(GPtrArray) bad = kr_queue_list(KR_QUEUE_CORRUPT);
    g_assert_cmpuint(bad->len, ==, 0);
}

/* Check one message against what its ID says; kack = last acknowledged
 * status update (-1: commit not acknowledged). */
static void
verify(KrMsg *m, int kack, Stats *st)
{
    const char *id = kr_msg_queue_id(m);
    g_autofree char *sender = sender_for(id);
    g_assert_cmpstr(kr_msg_sender(m), ==, sender);
    g_assert_cmpstr(kr_msg_attr(m, "tag"), ==, id);
    g_assert_cmpuint(kr_msg_rcpt_count(m), ==, n_rcpts(id));
    for (guint j = 0; j < n_rcpts(id); j++) {
        g_autofree char *a = rcpt_addr(id, j);
        g_assert_cmpstr(kr_msg_rcpt(m, j)->address, ==, a);
        if (j > 0)
            g_assert_cmpint(kr_msg_rcpt(m, j)->state, ==, KR_RCPT_PENDING);
    }
    g_assert_cmpstr(kr_msg_header(m, "x-id", 0), ==, id);
    g_autoptr(GBytes) raw = content_for(id);
    gsize rlen;
    const guint8 *rdata = g_bytes_get_data(raw, &rlen);
    g_autofree char *prefix = g_strdup_printf("X-Id: %s\r\n", id);
    gsize plen = strlen(prefix);
    g_assert_cmpint(kr_msg_raw_size(m), ==, (goffset)rlen);
    g_assert_cmpint(kr_msg_size(m), ==, (goffset)(rlen + plen));
    g_autofree guint8 *got = g_malloc(rlen + plen + 1);
    GError *err = NULL;
    g_assert_cmpint(kr_msg_read(m, 0, got, rlen + plen + 1, &err), ==, (gssize)(rlen + plen));
    g_assert_no_error(err);
    g_assert_cmpmem(got, plen, prefix, plen);
    g_assert_cmpmem(got + plen, rlen, rdata, rlen);

    /* Recipient 0: the acknowledged status or the one in flight. */
    KrRcpt *r = kr_msg_rcpt(m, 0);
    int k = (int)r->attempts;
    int lo = MAX(kack, 0), hi = kack < 0 ? 0 : MIN(kack + 1, UPDATES);
    g_assert_cmpint(k, >=, lo);
    g_assert_cmpint(k, <=, hi);
    if (k > lo)
        st->update_in_flight++;
    if (k == 0) {
        g_assert_cmpint(r->state, ==, KR_RCPT_PENDING);
        g_assert_cmpint(r->code, ==, 0);
        g_assert_cmpstr(r->diag, ==, "");
    } else {
        g_autofree char *diag = g_strdup_printf("try %d", k);
        g_autofree char *ecode = g_strdup_printf("4.0.%d", k);
        g_assert_cmpint(r->state, ==, k == UPDATES ? KR_RCPT_DELIVERED : KR_RCPT_DEFERRED);
        g_assert_cmpint(r->code, ==, 400 + k);
        g_assert_cmpstr(r->ecode, ==, ecode);
        g_assert_cmpstr(r->diag, ==, diag);
        g_assert_cmpint(r->next_try, ==, k * 1000);
        g_assert_cmpint(r->first_fail, >, 0);
    }
    st->files_checked++;
}

static void
one_round(Stats *st)
{
    int fds[2];
    g_assert_cmpint(pipe(fds), ==, 0);
    pid_t pid = fork();
    g_assert_cmpint(pid, >=, 0);
    if (pid == 0) {
        close(fds[0]);
        child_main(fds[1]);
    }
    close(fds[1]);
    g_usleep((gulong)g_test_rand_int_range(1000, 40000));
    g_assert_cmpint(kill(pid, SIGKILL), ==, 0);
    int status;
    g_assert_cmpint(waitpid(pid, &status, 0), ==, pid);
    /* Killed, not failed on its own. */
    g_assert_true(WIFSIGNALED(status));
    g_assert_cmpint(WTERMSIG(status), ==, SIGKILL);

    g_autoptr(GString) acks = g_string_new(NULL);
    char buf[4096];
    for (;;) {
        ssize_t n = read(fds[0], buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        g_assert_cmpint(n, >=, 0);
        if (n == 0)
            break;
        g_string_append_len(acks, buf, n);
    }
    close(fds[0]);
    /* id -> last acknowledged update (0: commit only). */
    g_autoptr(GHashTable) acked = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    g_auto(GStrv) lines = g_strsplit(acks->str, "\n", -1);
    for (char **l = lines; *l && **l; l++) {
        char id[KR_QUEUE_ID_LEN + 1];
        int k;
        if ((*l)[0] == 'C' && sscanf(*l, "C %14s", id) == 1) {
            g_assert_true(kr_queue_id_valid(id));
            g_hash_table_insert(acked, g_strdup(id), GINT_TO_POINTER(0));
        } else {
            g_assert_cmpint(sscanf(*l, "U %14s %d", id, &k), ==, 2);
            g_assert_true(g_hash_table_contains(acked, id));
            g_hash_table_insert(acked, g_strdup(id), GINT_TO_POINTER(k));
        }
    }

    recovery_scan(st);
    /* Nothing is left in maildrop: commits go to incoming. */
    g_autoptr(GPtrArray) md = kr_queue_list(KR_QUEUE_MAILDROP);
    g_assert_cmpuint(md->len, ==, 0);
    g_autoptr(GPtrArray) ids = kr_queue_list(KR_QUEUE_INCOMING);
    guint unacked = 0, found = 0;
    for (guint i = 0; i < ids->len; i++) {
        const char *id = ids->pdata[i];
        gpointer v;
        gboolean was_acked = g_hash_table_lookup_extended(acked, id, NULL, &v);
        GError *err = NULL;
        KrMsg *m = kr_msg_load(KR_QUEUE_INCOMING, id, &err);
        g_assert_no_error(err);
        verify(m, was_acked ? GPOINTER_TO_INT(v) : -1, st);
        if (was_acked)
            found++;
        else
            unacked++;
        g_assert_true(kr_msg_remove(m, &err));
        g_assert_no_error(err);
        kr_msg_unref(m);
    }
    /* Every acknowledged message is there; at most one more. */
    g_assert_cmpuint(found, ==, g_hash_table_size(acked));
    g_assert_cmpuint(unacked, <=, 1);
    st->acked += found;
    st->unacked_present += unacked;
}

static void
test_crash(void)
{
    g_autofree char *top = kr_test_tmpdir();
    kr_core_set_data_dir(top);
    GError *err = NULL;
    g_assert_true(kr_queue_init_dirs(&err));
    g_assert_no_error(err);
    Stats st = {0};
    for (int i = 0; i < ITERATIONS; i++)
        one_round(&st);
    g_test_message("%u messages acknowledged and verified, %u committed but not acknowledged, "
                   "%u status updates found newer than their ack, %u stale spools removed",
                   st.acked, st.unacked_present, st.update_in_flight, st.tmp_removed);
    /* The test must have tested something (kills are timed at random, so a
     * loaded machine acknowledges fewer per round: ask for a tenth). */
    g_assert_cmpuint(st.acked, >=, ITERATIONS / 10);
    g_assert_cmpuint(st.files_checked, ==, st.acked + st.unacked_present);
}

static pid_t
start_child(void (*fn)(int), int *rfd_r)
{
    int fds[2];
    g_assert_cmpint(pipe(fds), ==, 0);
    pid_t pid = fork();
    g_assert_cmpint(pid, >=, 0);
    if (pid == 0) {
        close(fds[0]);
        fn(fds[1]);
        _exit(4);
    }
    close(fds[1]);
    *rfd_r = fds[0];
    return pid;
}

static char *
read_all(int fd)
{
    GString *s = g_string_new(NULL);
    char buf[4096];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        g_assert_cmpint(n, >=, 0);
        if (n == 0)
            break;
        g_string_append_len(s, buf, n);
    }
    close(fd);
    return g_string_free(s, FALSE);
}

typedef struct {
    guint acked, removed, two_names, spares_swept, unacked, rounds_with_reuse;
} ChurnStats;

static void
churn_round(ChurnStats *st)
{
    int rfd;
    pid_t pid = start_child(churn_main, &rfd);
    g_usleep((gulong)g_test_rand_int_range(5000, 80000));
    g_assert_cmpint(kill(pid, SIGKILL), ==, 0);
    int status;
    g_assert_cmpint(waitpid(pid, &status, 0), ==, pid);
    g_assert_true(WIFSIGNALED(status));
    g_autofree char *acks = read_all(rfd);
    /* id -> 'C' (committed), 'A' (moved to active/), 'D' (done: being
     * removed, may be gone), 'R' (removed) */
    g_autoptr(GHashTable) state = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    g_auto(GStrv) lines = g_strsplit(acks, "\n", -1);
    for (char **l = lines; *l && **l; l++) {
        char id[KR_QUEUE_ID_LEN + 1];
        char what;
        g_assert_cmpint(sscanf(*l, "%c %14s", &what, id), ==, 2);
        g_assert_true(kr_queue_id_valid(id));
        g_assert_true(what == 'C' || g_hash_table_contains(state, id));
        g_hash_table_insert(state, g_strdup(id), GINT_TO_POINTER((int)what));
    }

    /* Recovery: spares go, then every queue file is checked. */
    st->spares_swept += kr_queue_sweep_spares();
    g_autoptr(GPtrArray) inc = kr_queue_list(KR_QUEUE_INCOMING);
    g_autoptr(GPtrArray) act = kr_queue_list(KR_QUEUE_ACTIVE);
    g_autoptr(GHashTable) seen = g_hash_table_new(g_str_hash, g_str_equal);
    GPtrArray *lists[2] = {inc, act};
    KrQueueDir dirs[2] = {KR_QUEUE_INCOMING, KR_QUEUE_ACTIVE};
    Stats vs = {0};
    for (int d = 0; d < 2; d++) {
        for (guint i = 0; i < lists[d]->len; i++) {
            const char *id = lists[d]->pdata[i];
            int what = GPOINTER_TO_INT(g_hash_table_lookup(state, id));
            /* Removed means gone: a killed process loses no page cache. */
            g_assert_cmpint(what, !=, 'R');
            GError *err = NULL;
            KrMsg *m = kr_msg_load(dirs[d], id, &err);
            g_assert_no_error(err);
            verify(m, what ? 0 : -1, &vs);
            if (g_hash_table_contains(seen, id)) {
                st->two_names++; /* incoming/ and active/: the same file? */
                g_autofree char *da = kr_queue_dir_path(KR_QUEUE_INCOMING);
                g_autofree char *db = kr_queue_dir_path(KR_QUEUE_ACTIVE);
                g_autofree char *a = g_build_filename(da, id, NULL);
                g_autofree char *b = g_build_filename(db, id, NULL);
                struct stat sa, sb;
                g_assert_cmpint(stat(a, &sa), ==, 0);
                g_assert_cmpint(stat(b, &sb), ==, 0);
                g_assert_cmpuint(sa.st_ino, ==, sb.st_ino);
            } else if (what) {
                st->acked++;
            } else {
                st->unacked++;
            }
            g_hash_table_add(seen, (gpointer)id);
            kr_msg_unref(m);
        }
    }
    /* Every message acknowledged and not removed is there. */
    GHashTableIter it;
    gpointer k, v;
    g_hash_table_iter_init(&it, state);
    while (g_hash_table_iter_next(&it, &k, &v)) {
        if (GPOINTER_TO_INT(v) == 'R')
            st->removed++;
        if (GPOINTER_TO_INT(v) == 'R' || GPOINTER_TO_INT(v) == 'D')
            continue;
        if (!g_hash_table_contains(seen, k))
            g_error("acknowledged message %s is lost", (const char *)k);
    }
    /* Clean up for the next round (durable removal: it is a test). */
    for (int d = 0; d < 2; d++) {
        g_autofree char *dp = kr_queue_dir_path(dirs[d]);
        for (guint i = 0; i < lists[d]->len; i++) {
            g_autofree char *p = g_build_filename(dp, (const char *)lists[d]->pdata[i], NULL);
            g_assert_cmpint(unlink(p), ==, 0);
        }
    }
    /* Unacknowledged spools (the ones in flight) and spares are debris. */
    Stats rs = {0};
    recovery_scan(&rs);
    g_assert_cmpuint(rs.tmp_removed, <=, THREADS);
}

static void
test_spares(void)
{
    g_autofree char *top = kr_test_tmpdir();
    kr_core_set_data_dir(top);
    GError *err = NULL;
    g_assert_true(kr_queue_init_dirs(&err));
    g_assert_no_error(err);
    ChurnStats st = {0};
    for (int i = 0; i < ITERATIONS / 2; i++)
        churn_round(&st);
    g_test_message("%u messages acknowledged and verified (%u under two names), %u removed, "
                   "%u unacknowledged found, %u spares swept",
                   st.acked, st.two_names, st.removed, st.unacked, st.spares_swept);
    g_assert_cmpuint(st.acked, >=, ITERATIONS / 20);
    /* Removed files became spares that later spools reused or that the
     * sweep found: the test exercised both. */
    g_assert_cmpuint(st.removed, >=, ITERATIONS / 20);
    g_assert_cmpuint(st.spares_swept, >, 0);
}

int
main(int argc, char **argv)
{
    kr_test_init(&argc, &argv);
    g_test_add_func("/queue-crash/kill-during-commit-and-update", test_crash);
    g_test_add_func("/queue-crash/kill-with-spares", test_spares);
    return g_test_run();
}
