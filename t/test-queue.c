/* SPDX-License-Identifier: MIT */
/*
 * test-queue.c - KrMsg and the durable queue files (core/kr-msg.c,
 * core/kr-qfile*.c, core/kr-queue-dirs.c): round trips, header edits,
 * status slots, moves, envelope rewrites, copies, async commit, and a
 * parser that must survive truncated, garbled and crafted files.
 */
#include "testlib.h"
#include "../core/kr-internal.h"
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* Format constants, from docs/queue-format.md (the tests craft files). */
#define HDR_SIZE    64
#define CONTENT_OFF 128
#define STATUS_SIZE 464
#define SLOT_SIZE   (2 * STATUS_SIZE)

static char *
setup(void)
{
    char *dir = kr_test_tmpdir();
    kr_core_set_data_dir(dir);
    GError *err = NULL;
    g_assert_true(kr_queue_init_dirs(&err));
    g_assert_no_error(err);
    return dir;
}

static char *
qpath(KrQueueDir dir, const char *name)
{
    g_autofree char *d = kr_queue_dir_path(dir);
    return g_build_filename(d, name, NULL);
}

static GBytes *
read_logical(KrMsg *msg, gsize chunk)
{
    GByteArray *b = g_byte_array_new();
    g_autofree guint8 *buf = g_malloc(chunk);
    GError *err = NULL;
    for (goffset off = 0;;) {
        gssize n = kr_msg_read(msg, off, buf, chunk, &err);
        g_assert_no_error(err);
        g_assert_cmpint(n, >=, 0);
        if (n == 0)
            break;
        g_byte_array_append(b, buf, (guint)n);
        off += n;
    }
    return g_byte_array_free_to_bytes(b);
}

static void
assert_content(KrMsg *msg, const void *data, gsize len)
{
    g_assert_cmpint(kr_msg_size(msg), ==, (goffset)len);
    static const gsize chunks[] = {1, 7, 4096, 65537};
    for (guint i = 0; i < G_N_ELEMENTS(chunks); i++) {
        if (chunks[i] == 1 && len > 100000)
            continue;
        g_autoptr(GBytes) got = read_logical(msg, chunks[i]);
        gsize glen;
        const void *g = g_bytes_get_data(got, &glen);
        g_assert_cmpmem(g, glen, data, len);
    }
}

static char *
file_contents(const char *path, gsize *len)
{
    char *data = NULL;
    GError *err = NULL;
    g_assert_true(g_file_get_contents(path, &data, len, &err));
    g_assert_no_error(err);
    return data;
}

/* Replace a file's contents in place (no fsync: tests only). */
static void
put_file(const char *path, const void *data, gsize len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(write(fd, data, len), ==, (gssize)len);
    close(fd);
}

static KrMsg *
spool_with(KrQueueDir dir, const char *content, gsize len)
{
    GError *err = NULL;
    KrMsg *msg = kr_msg_new_spool(dir, &err);
    g_assert_no_error(err);
    g_assert_nonnull(msg);
    g_assert_true(kr_msg_append(msg, content, len, &err));
    g_assert_no_error(err);
    return msg;
}

static KrMsg *
load_ok(KrQueueDir dir, const char *id)
{
    GError *err = NULL;
    KrMsg *msg = kr_msg_load(dir, id, &err);
    g_assert_no_error(err);
    g_assert_nonnull(msg);
    return msg;
}

static void
assert_load_fails(KrQueueDir dir, const char *id)
{
    GError *err = NULL;
    KrMsg *msg = kr_msg_load(dir, id, &err);
    g_assert_null(msg);
    g_assert_nonnull(err);
    g_clear_error(&err);
}

/* --- dirs and IDs ------------------------------------------------------ */

static void
test_dirs(void)
{
    g_autofree char *top = setup();
    for (int i = 0; i < KR_QUEUE_N_DIRS; i++) {
        const char *name = kr_queue_dir_name((KrQueueDir)i);
        KrQueueDir d = KR_QUEUE_N_DIRS;
        g_assert_true(kr_queue_dir_from_name(name, &d));
        g_assert_cmpint(d, ==, i);
        g_autofree char *path = kr_queue_dir_path((KrQueueDir)i);
        g_autofree char *want = g_build_filename(top, "queue", name, NULL);
        g_assert_cmpstr(path, ==, want);
        struct stat st;
        g_assert_cmpint(stat(path, &st), ==, 0);
        g_assert_true(S_ISDIR(st.st_mode));
        g_assert_cmpint(st.st_mode & 0777, ==, 0700);
    }
    g_assert_cmpstr(kr_queue_dir_name(KR_QUEUE_CORRUPT), ==, "corrupt");
    g_assert_false(kr_queue_dir_from_name("tmp", NULL));
    g_assert_false(kr_queue_dir_from_name("", NULL));
    /* Idempotent. */
    GError *err = NULL;
    g_assert_true(kr_queue_init_dirs(&err));
    g_assert_no_error(err);

    g_assert_true(kr_queue_id_valid("0123456789AbCz"));
    g_assert_false(kr_queue_id_valid("0123456789AbC"));
    g_assert_false(kr_queue_id_valid("0123456789AbCzz"));
    g_assert_false(kr_queue_id_valid("0123456789Ab/z"));
    g_assert_false(kr_queue_id_valid(".tmp-123456789"));
    g_assert_false(kr_queue_id_valid("../../etc/pass"));
    g_assert_false(kr_queue_id_valid(""));
    g_assert_false(kr_queue_id_valid(NULL));
}

static void
test_ids(void)
{
    g_autofree char *top = setup();
    g_autoptr(GHashTable) seen = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    char prev[KR_QUEUE_ID_LEN + 1] = "";
    for (int i = 0; i < 2000; i++) {
        GError *err = NULL;
        KrMsg *msg = kr_msg_new_spool(KR_QUEUE_MAILDROP, &err);
        g_assert_no_error(err);
        const char *id = kr_msg_queue_id(msg);
        g_assert_true(kr_queue_id_valid(id));
        g_assert_false(g_hash_table_contains(seen, id));
        g_hash_table_add(seen, g_strdup(id));
        /* The time prefix (10 chars) never goes backwards. */
        g_assert_cmpint(strncmp(prev, id, 10), <=, 0);
        memcpy(prev, id, sizeof prev);
        /* The spool is DIR/.tmp-ID, mode 0600. */
        g_autofree char *tmp = g_strconcat(".tmp-", id, NULL);
        g_autofree char *path = qpath(KR_QUEUE_MAILDROP, tmp);
        struct stat st;
        g_assert_cmpint(stat(path, &st), ==, 0);
        g_assert_cmpint(st.st_mode & 0777, ==, 0600);
        kr_msg_discard(msg);
        g_assert_cmpint(stat(path, &st), ==, -1);
        kr_msg_unref(msg);
    }
    g_assert_cmpuint(g_hash_table_size(seen), ==, 2000);
}

/* --- round trips --------------------------------------------------------- */

static const char small_content[] = "Received: from client (client [192.0.2.1])\r\n"
                                    "\tby mx.example.org\r\n"
                                    "Subject: Hello\r\n"
                                    "  World\r\n"
                                    "X-Dup: 1\r\n"
                                    "x-dup: 2\r\n"
                                    "To: t@example.org\r\n"
                                    "\r\n"
                                    "Body line\r\n"
                                    "X-Not: a header\r\n";

static void
test_roundtrip(void)
{
    g_autofree char *top = setup();
    GError *err = NULL;
    KrMsg *msg = spool_with(KR_QUEUE_MAILDROP, small_content, sizeof small_content - 1);
    g_autofree char *id = g_strdup(kr_msg_queue_id(msg));
    gint64 arrival = kr_msg_arrival(msg);
    g_assert_cmpint(llabs(arrival - g_get_real_time() / G_USEC_PER_SEC), <=, 2);
    g_assert_cmpstr(kr_msg_sender(msg), ==, "");
    kr_msg_set_sender(msg, "alice@example.org");
    KrRcpt *r0 = kr_msg_add_rcpt(msg, "bob@example.net");
    r0->orcpt = g_strdup("rfc822;Bob@Example.NET");
    r0->notify = KR_NOTIFY_SUCCESS | KR_NOTIFY_FAILURE;
    KrRcpt *r1 = kr_msg_add_rcpt(msg, "carol@example.com");
    KrRcpt *r2 = kr_msg_add_rcpt(msg, "");
    g_assert_cmpuint(r2->index, ==, 2);
    kr_rcpt_set_attr(r1, "transport", "smtp");
    g_assert_cmpstr(kr_rcpt_attr(r1, "transport"), ==, "smtp");
    g_assert_null(kr_rcpt_attr(r0, "transport"));
    kr_rcpt_set_attr(r1, "transport", NULL);
    g_assert_null(kr_rcpt_attr(r1, "transport"));
    kr_msg_set_attr(msg, "client_addr", "192.0.2.1");
    kr_msg_set_attr(msg, "helo", "client.example");
    kr_msg_set_attr(msg, "empty", "");
    kr_msg_set_attr(msg, "gone", "x");
    kr_msg_set_attr(msg, "gone", NULL);
    g_autofree char *longv = g_strnfill(5000, 'v');
    kr_msg_set_attr(msg, "long", longv);
    g_assert_cmpuint(strlen(kr_msg_attr(msg, "long")), ==, 4096);
    g_assert_cmpuint(kr_msg_rcpt_count(msg), ==, 3);
    g_assert_true(kr_msg_rcpt(msg, 1) == r1);
    g_assert_null(kr_msg_rcpt(msg, 3));
    g_assert_cmpint(kr_msg_queue_dir(msg), ==, KR_QUEUE_MAILDROP);

    g_assert_true(kr_msg_commit(msg, KR_QUEUE_INCOMING, &err));
    g_assert_no_error(err);
    g_assert_cmpint(kr_msg_queue_dir(msg), ==, KR_QUEUE_INCOMING);
    g_assert_cmpint(r0->slot_off, >, CONTENT_OFF);
    /* Visible under its ID, 0600; the temporary name is gone. */
    g_autofree char *path = qpath(KR_QUEUE_INCOMING, id);
    g_autofree char *tmp0 = g_strconcat(".tmp-", id, NULL);
    g_autofree char *tmp = qpath(KR_QUEUE_MAILDROP, tmp0);
    struct stat st;
    g_assert_cmpint(stat(path, &st), ==, 0);
    g_assert_cmpint(st.st_mode & 0777, ==, 0600);
    g_assert_cmpint(stat(tmp, &st), ==, -1);
    g_assert_cmpint(errno, ==, ENOENT);
    /* Appending after commit is refused; so is a second commit. */
    g_assert_false(kr_msg_append(msg, "x", 1, &err));
    g_assert_nonnull(err);
    g_clear_error(&err);
    g_assert_false(kr_msg_commit(msg, KR_QUEUE_INCOMING, &err));
    g_assert_error(err, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED); /* modules/queue relies on it */
    g_clear_error(&err);
    assert_content(msg, small_content, sizeof small_content - 1);
    kr_msg_unref(msg);
    /* Unref of a committed message leaves the file alone. */
    g_assert_cmpint(stat(path, &st), ==, 0);

    g_autoptr(KrMsg) m = load_ok(KR_QUEUE_INCOMING, id);
    g_assert_cmpstr(kr_msg_queue_id(m), ==, id);
    g_assert_cmpint(kr_msg_arrival(m), ==, arrival);
    g_assert_cmpstr(kr_msg_sender(m), ==, "alice@example.org");
    g_assert_cmpuint(kr_msg_rcpt_count(m), ==, 3);
    KrRcpt *l0 = kr_msg_rcpt(m, 0), *l1 = kr_msg_rcpt(m, 1), *l2 = kr_msg_rcpt(m, 2);
    g_assert_cmpstr(l0->address, ==, "bob@example.net");
    g_assert_cmpstr(l0->orcpt, ==, "rfc822;Bob@Example.NET");
    g_assert_cmpuint(l0->notify, ==, KR_NOTIFY_SUCCESS | KR_NOTIFY_FAILURE);
    g_assert_cmpstr(l1->address, ==, "carol@example.com");
    g_assert_null(l1->orcpt);
    g_assert_cmpuint(l1->notify, ==, 0);
    g_assert_cmpstr(l2->address, ==, "");
    for (guint i = 0; i < 3; i++) {
        KrRcpt *r = kr_msg_rcpt(m, i);
        g_assert_cmpuint(r->index, ==, i);
        g_assert_cmpint(r->state, ==, KR_RCPT_PENDING);
        g_assert_cmpuint(r->attempts, ==, 0);
        g_assert_cmpstr(r->diag, ==, "");
        g_assert_null(r->attrs); /* not persisted */
    }
    g_assert_cmpstr(kr_msg_attr(m, "client_addr"), ==, "192.0.2.1");
    g_assert_cmpstr(kr_msg_attr(m, "helo"), ==, "client.example");
    g_assert_cmpstr(kr_msg_attr(m, "empty"), ==, "");
    g_assert_null(kr_msg_attr(m, "gone"));
    g_assert_cmpstr(kr_msg_attr(m, "long"), ==, longv + 904);
    g_assert_cmpint(kr_msg_raw_size(m), ==, (goffset)sizeof small_content - 1);
    assert_content(m, small_content, sizeof small_content - 1);
    /* Reading past the end gives 0; a negative offset is an error. */
    char c;
    g_assert_cmpint(kr_msg_read(m, kr_msg_size(m), &c, 1, &err), ==, 0);
    g_assert_no_error(err);
    g_assert_cmpint(kr_msg_read(m, kr_msg_size(m) + 100, &c, 1, &err), ==, 0);
    g_assert_cmpint(kr_msg_read(m, -1, &c, 1, &err), ==, -1);
    g_assert_nonnull(err);
    g_clear_error(&err);
    g_assert_cmpint(kr_msg_read(m, 5, &c, 1, &err), ==, 1);
    g_assert_cmpint(c, ==, small_content[5]);
}

static void
test_empty(void)
{
    g_autofree char *top = setup();
    GError *err = NULL;
    KrMsg *msg = kr_msg_new_spool(KR_QUEUE_INCOMING, &err);
    g_assert_no_error(err);
    g_autofree char *id = g_strdup(kr_msg_queue_id(msg));
    g_assert_true(kr_msg_commit(msg, KR_QUEUE_INCOMING, &err));
    g_assert_no_error(err);
    kr_msg_unref(msg);
    g_autoptr(KrMsg) m = load_ok(KR_QUEUE_INCOMING, id);
    g_assert_cmpint(kr_msg_size(m), ==, 0);
    g_assert_cmpuint(kr_msg_rcpt_count(m), ==, 0);
    g_assert_cmpstr(kr_msg_sender(m), ==, "");
    g_assert_null(kr_msg_header(m, "subject", 0));
    g_assert_cmpuint(kr_msg_header_count(m, "subject"), ==, 0);
}

static void
test_large(void)
{
    g_autofree char *top = setup();
    const gsize size = 5 * 1024 * 1024 + 12345;
    g_autofree guint8 *data = g_malloc(size);
    GRand *rand = g_rand_new_with_seed(42);
    for (gsize i = 0; i < size; i++)
        data[i] = (guint8)g_rand_int(rand);
    for (int i = 0; i < 256; i++) /* every byte value, NULs included */
        data[1000 + i] = (guint8)i;
    GError *err = NULL;
    KrMsg *msg = kr_msg_new_spool(KR_QUEUE_MAILDROP, &err);
    g_assert_no_error(err);
    for (gsize off = 0; off < size;) {
        gsize n = MIN(size - off, (gsize)g_rand_int_range(rand, 1, 100000));
        g_assert_true(kr_msg_append(msg, data + off, n, &err));
        g_assert_no_error(err);
        off += n;
    }
    g_assert_true(kr_msg_append(msg, data, 0, &err)); /* a no-op */
    g_assert_cmpint(kr_msg_raw_size(msg), ==, (goffset)size);
    kr_msg_set_sender(msg, "big@example.org");
    kr_msg_add_rcpt(msg, "r@example.org");
    g_assert_true(kr_msg_commit(msg, KR_QUEUE_INCOMING, &err));
    g_assert_no_error(err);
    g_autofree char *id = g_strdup(kr_msg_queue_id(msg));
    kr_msg_unref(msg);

    g_autoptr(KrMsg) m = load_ok(KR_QUEUE_INCOMING, id);
    g_assert_cmpint(kr_msg_raw_size(m), ==, (goffset)size);
    assert_content(m, data, size);
    /* Random reads. */
    guint8 buf[5000];
    for (int i = 0; i < 200; i++) {
        goffset off = g_rand_int_range(rand, 0, (gint32)size);
        gsize want = MIN(sizeof buf, size - (gsize)off);
        g_assert_cmpint(kr_msg_read(m, off, buf, sizeof buf, &err), ==, (gssize)want);
        g_assert_cmpmem(buf, want, data + off, want);
    }
    /* write_to_fd, no conversion, with a prefix. */
    g_autofree char *out = g_build_filename(top, "out", NULL);
    int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    g_assert_cmpint(fd, >=, 0);
    g_assert_true(kr_msg_write_to_fd(m, fd, "PREFIX\n", FALSE, &err));
    g_assert_no_error(err);
    close(fd);
    gsize olen;
    g_autofree char *o = file_contents(out, &olen);
    g_assert_cmpuint(olen, ==, size + 7);
    g_assert_cmpmem(o, 7, "PREFIX\n", 7);
    g_assert_cmpmem(o + 7, olen - 7, data, size);
    g_rand_free(rand);
}

/* --- headers ------------------------------------------------------------- */

static void
test_headers(void)
{
    g_autofree char *top = setup();
    GError *err = NULL;
    KrMsg *msg = spool_with(KR_QUEUE_MAILDROP, small_content, sizeof small_content - 1);
    g_assert_cmpstr(kr_msg_header(msg, "subject", 0), ==, "Hello  World");
    g_assert_cmpstr(kr_msg_header(msg, "RECEIVED", 0), ==,
                    "from client (client [192.0.2.1])\tby mx.example.org");
    g_assert_cmpuint(kr_msg_header_count(msg, "x-dup"), ==, 2);
    g_assert_cmpstr(kr_msg_header(msg, "X-DUP", 0), ==, "1");
    g_assert_cmpstr(kr_msg_header(msg, "X-DUP", 1), ==, "2");
    g_assert_null(kr_msg_header(msg, "X-DUP", 2));
    g_assert_null(kr_msg_header(msg, "X-Not", 0)); /* in the body */
    g_assert_cmpuint(kr_msg_header_count(msg, "X-Not"), ==, 0);

    g_assert_true(kr_msg_prepend_header(msg, "X-New", "one", &err));
    g_assert_no_error(err);
    g_assert_true(kr_msg_prepend_header(msg, "X-Dup", "0", &err));
    g_assert_true(kr_msg_prepend_header(msg, "X-Folded", "a\r\n\tb\n c", &err));
    g_assert_no_error(err);
    /* Refused: bad names, bare line breaks. */
    g_assert_false(kr_msg_prepend_header(msg, "Bad:Name", "v", &err));
    g_assert_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
    g_clear_error(&err);
    g_assert_false(kr_msg_prepend_header(msg, "", "v", &err));
    g_clear_error(&err);
    g_assert_false(kr_msg_prepend_header(msg, "Sp ace", "v", &err));
    g_clear_error(&err);
    g_assert_false(kr_msg_prepend_header(msg, "X-Inject", "v\r\nBcc: evil", &err));
    g_clear_error(&err);
    g_assert_false(kr_msg_prepend_header(msg, "X-Inject", "v\n", &err));
    g_clear_error(&err);
    g_assert_false(kr_msg_prepend_header(msg, "X-Inject", "v\rx", &err));
    g_clear_error(&err);

    g_assert_cmpuint(kr_msg_header_count(msg, "x-dup"), ==, 3);
    g_assert_cmpstr(kr_msg_header(msg, "x-dup", 0), ==, "0");
    g_assert_cmpstr(kr_msg_header(msg, "x-dup", 2), ==, "2");
    g_assert_cmpstr(kr_msg_header(msg, "x-folded", 0), ==, "a\tb c");
    g_assert_cmpuint(kr_msg_header_count(msg, "x-inject"), ==, 0);
    const char *body = strstr(small_content, "Received:");
    g_autofree char *want1 =
        g_strconcat("X-Folded: a\r\n\tb\r\n c\r\nX-Dup: 0\r\nX-New: one\r\n", body, NULL);
    assert_content(msg, want1, strlen(want1));

    /* Remove: hides originals and earlier prepends; a later prepend shows. */
    kr_msg_remove_header(msg, "received");
    kr_msg_remove_header(msg, "X-dup");
    kr_msg_remove_header(msg, "Not-There");
    kr_msg_remove_header(msg, "bad:name"); /* ignored */
    g_assert_true(kr_msg_prepend_header(msg, "X-Dup", "again", &err));
    g_assert_cmpuint(kr_msg_header_count(msg, "x-dup"), ==, 1);
    g_assert_cmpstr(kr_msg_header(msg, "x-dup", 0), ==, "again");
    g_assert_null(kr_msg_header(msg, "received", 0));
    g_assert_cmpstr(kr_msg_header(msg, "subject", 0), ==, "Hello  World");
    const char *want2 = "X-Dup: again\r\n"
                        "X-Folded: a\r\n\tb\r\n c\r\n"
                        "X-New: one\r\n"
                        "Subject: Hello\r\n  World\r\n"
                        "To: t@example.org\r\n"
                        "\r\n"
                        "Body line\r\n"
                        "X-Not: a header\r\n";
    assert_content(msg, want2, strlen(want2));
    g_assert_cmpint(kr_msg_raw_size(msg), ==, (goffset)sizeof small_content - 1);

    /* write_to_fd with CRLF -> LF. */
    g_autofree char *out = g_build_filename(top, "out", NULL);
    int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    g_assert_true(kr_msg_write_to_fd(msg, fd, "Return-Path: <a@b>\n", TRUE, &err));
    g_assert_no_error(err);
    close(fd);
    gsize olen;
    g_autofree char *o = file_contents(out, &olen);
    g_autoptr(GString) lf = g_string_new("Return-Path: <a@b>\n");
    for (const char *p = want2; *p; p++)
        if (!(p[0] == '\r' && p[1] == '\n'))
            g_string_append_c(lf, *p);
    g_assert_cmpmem(o, olen, lf->str, lf->len);

    /* Edits persist through commit and load. */
    g_autofree char *id = g_strdup(kr_msg_queue_id(msg));
    g_assert_true(kr_msg_commit(msg, KR_QUEUE_INCOMING, &err));
    g_assert_no_error(err);
    kr_msg_unref(msg);
    g_autoptr(KrMsg) m = load_ok(KR_QUEUE_INCOMING, id);
    assert_content(m, want2, strlen(want2));
    g_assert_cmpstr(kr_msg_header(m, "x-dup", 0), ==, "again");
    g_assert_cmpstr(kr_msg_header(m, "x-folded", 0), ==, "a\tb c");
    g_assert_null(kr_msg_header(m, "received", 0));
}

static void
test_headers_lf(void)
{
    g_autofree char *top = setup();
    GError *err = NULL;
    const char *c = "From: a@b\nSubject: s\n\nbody\r\nmore\n";
    KrMsg *msg = spool_with(KR_QUEUE_MAILDROP, c, strlen(c));
    g_assert_true(kr_msg_prepend_header(msg, "Received", "by x\r\n\tfor y", &err));
    g_assert_no_error(err);
    const char *want = "Received: by x\n\tfor y\nFrom: a@b\nSubject: s\n\nbody\r\nmore\n";
    assert_content(msg, want, strlen(want));
    kr_msg_remove_header(msg, "from");
    const char *want2 = "Received: by x\n\tfor y\nSubject: s\n\nbody\r\nmore\n";
    assert_content(msg, want2, strlen(want2));
    kr_msg_unref(msg);

    /* No empty line: the body starts at the first non-header line; a
     * message without a line end at all. */
    const char *c2 = "A: 1\nB: 2\nnot a header\nC: 3\n";
    msg = spool_with(KR_QUEUE_MAILDROP, c2, strlen(c2));
    g_assert_cmpstr(kr_msg_header(msg, "b", 0), ==, "2");
    g_assert_null(kr_msg_header(msg, "c", 0));
    kr_msg_unref(msg);
    msg = spool_with(KR_QUEUE_MAILDROP, "Subject: x", 10);
    g_assert_cmpstr(kr_msg_header(msg, "subject", 0), ==, "x");
    g_assert_true(kr_msg_prepend_header(msg, "A", "b", &err));
    assert_content(msg, "A: b\r\nSubject: x", 16); /* no line end seen: CRLF */
    kr_msg_unref(msg);
    /* Obsolete "Name : value" syntax; continuation before any header. */
    msg = spool_with(KR_QUEUE_MAILDROP, "Subject : spaced\r\n\r\n", 20);
    g_assert_cmpstr(kr_msg_header(msg, "subject", 0), ==, "spaced");
    kr_msg_unref(msg);
    msg = spool_with(KR_QUEUE_MAILDROP, " cont\r\nA: b\r\n", 13);
    g_assert_null(kr_msg_header(msg, "a", 0));
    kr_msg_unref(msg);
}

static void
test_headers_incremental(void)
{
    /* Headers read while the spool is still being written are re-parsed
     * once more content arrives. */
    g_autofree char *top = setup();
    GError *err = NULL;
    KrMsg *msg = spool_with(KR_QUEUE_MAILDROP, "A: 1\r\nB: ", 9);
    g_assert_cmpstr(kr_msg_header(msg, "b", 0), ==, "");
    g_assert_null(kr_msg_header(msg, "c", 0));
    g_assert_true(kr_msg_append(msg, "2\r\nC: 3\r\n\r\nbody", 15, &err));
    g_assert_no_error(err);
    g_assert_cmpstr(kr_msg_header(msg, "b", 0), ==, "2");
    g_assert_cmpstr(kr_msg_header(msg, "c", 0), ==, "3");
    g_assert_cmpint(kr_msg_size(msg), ==, 24);
    kr_msg_remove_header(msg, "b");
    assert_content(msg, "A: 1\r\nC: 3\r\n\r\nbody", 18);
    /* After the empty line, more body does not change the headers. */
    g_assert_true(kr_msg_append(msg, "\r\nD: 4\r\n", 8, &err));
    g_assert_null(kr_msg_header(msg, "d", 0));
    assert_content(msg, "A: 1\r\nC: 3\r\n\r\nbody\r\nD: 4\r\n", 26);
    kr_msg_unref(msg);
}

static void
test_headers_limits(void)
{
    g_autofree char *top = setup();
    /* 1200 headers: only the first 1000 are parsed. */
    g_autoptr(GString) s = g_string_new(NULL);
    for (int i = 0; i < 1200; i++)
        g_string_append_printf(s, "X-H: %d\r\n", i);
    g_string_append(s, "\r\nbody\r\n");
    KrMsg *msg = spool_with(KR_QUEUE_MAILDROP, s->str, s->len);
    g_assert_cmpuint(kr_msg_header_count(msg, "x-h"), ==, 1000);
    g_assert_cmpstr(kr_msg_header(msg, "x-h", 999), ==, "999");
    kr_msg_unref(msg);
    /* A 300 KiB header: the block stops at 256 KiB, nothing breaks. */
    g_string_assign(s, "A: 1\r\nB: ");
    for (int i = 0; i < 300 * 1024; i++)
        g_string_append_c(s, 'x');
    g_string_append(s, "\r\n\r\nbody");
    msg = spool_with(KR_QUEUE_MAILDROP, s->str, s->len);
    g_assert_cmpstr(kr_msg_header(msg, "a", 0), ==, "1");
    g_assert_null(kr_msg_header(msg, "b", 0));
    kr_msg_remove_header(msg, "a");
    g_assert_cmpint(kr_msg_size(msg), ==, (goffset)s->len - 6);
    kr_msg_unref(msg);

    /* At most 10000 header edits; they survive commit and load. */
    GError *err = NULL;
    msg = spool_with(KR_QUEUE_MAILDROP, "A: 1\r\n\r\nb", 9);
    for (int i = 0; i < 10000; i++) {
        if (i % 2 == 0)
            g_assert_true(kr_msg_prepend_header(msg, "X-P", "v", &err));
        else
            kr_msg_remove_header(msg, i % 4 == 1 ? "x-p" : "x-none");
    }
    g_assert_false(kr_msg_prepend_header(msg, "X-Q", "v", &err));
    g_assert_error(err, G_IO_ERROR, G_IO_ERROR_NO_SPACE);
    g_clear_error(&err);
    /* The last removal of x-p is edit 9997; only edit 9998 shows. */
    g_assert_cmpuint(kr_msg_header_count(msg, "x-p"), ==, 1);
    assert_content(msg, "X-P: v\r\nA: 1\r\n\r\nb", 17);
    g_assert_true(kr_msg_commit(msg, KR_QUEUE_INCOMING, &err));
    g_assert_no_error(err);
    g_autofree char *id = g_strdup(kr_msg_queue_id(msg));
    kr_msg_unref(msg);
    msg = load_ok(KR_QUEUE_INCOMING, id);
    g_assert_cmpuint(kr_msg_header_count(msg, "x-p"), ==, 1);
    assert_content(msg, "X-P: v\r\nA: 1\r\n\r\nb", 17);
    kr_msg_unref(msg);
}

static void
test_write_lf_boundary(void)
{
    /* CRLF split across kr_msg_write_to_fd's 64 KiB chunks; lone CRs. */
    g_autofree char *top = setup();
    GError *err = NULL;
    g_autoptr(GString) s = g_string_new(NULL);
    for (int i = 0; i < 65535; i++)
        g_string_append_c(s, 'a');
    g_string_append(s, "\r\nx\ry\r\r\nz\r");
    KrMsg *msg = spool_with(KR_QUEUE_MAILDROP, s->str, s->len);
    g_autofree char *out = g_build_filename(top, "out", NULL);
    int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    g_assert_true(kr_msg_write_to_fd(msg, fd, NULL, TRUE, &err));
    g_assert_no_error(err);
    close(fd);
    gsize olen;
    g_autofree char *o = file_contents(out, &olen);
    g_assert_cmpuint(olen, ==, 65535 + 8);
    for (int i = 0; i < 65535; i++)
        g_assert_cmpint(o[i], ==, 'a');
    g_assert_cmpmem(o + 65535, olen - 65535, "\nx\ry\r\nz\r", 8);
    kr_msg_unref(msg);
}

/* --- recipient status ---------------------------------------------------- */

static KrMsg *
commit_three(KrQueueDir dir, char **id_r)
{
    GError *err = NULL;
    KrMsg *msg = spool_with(KR_QUEUE_MAILDROP, small_content, sizeof small_content - 1);
    kr_msg_set_sender(msg, "s@example.org");
    kr_msg_set_attr(msg, "protocol", "ESMTP");
    kr_msg_add_rcpt(msg, "r0@example.org");
    kr_msg_add_rcpt(msg, "r1@example.org")->orcpt = g_strdup("rfc822;r1@example.org");
    kr_msg_add_rcpt(msg, "r2@example.org");
    g_assert_true(kr_msg_prepend_header(msg, "X-Edit", "yes", &err));
    g_assert_true(kr_msg_commit(msg, dir, &err));
    g_assert_no_error(err);
    *id_r = g_strdup(kr_msg_queue_id(msg));
    return msg;
}

static void
test_rcpt_status(void)
{
    g_autofree char *top = setup();
    GError *err = NULL;
    g_autofree char *id = NULL;
    KrMsg *msg = commit_three(KR_QUEUE_INCOMING, &id);
    KrRcpt *r0 = kr_msg_rcpt(msg, 0), *r1 = kr_msg_rcpt(msg, 1);
    gint64 before = g_get_real_time() / G_USEC_PER_SEC;
    kr_rcpt_set_result(r0, KR_RCPT_DEFERRED, 451, "4.4.1", "connection\r\ntimed out");
    g_assert_cmpuint(r0->attempts, ==, 1);
    g_assert_cmpint(r0->first_fail, >=, before);
    g_assert_cmpstr(r0->diag, ==, "connection  timed out"); /* one line */
    r0->next_try = 1234567890123;
    g_assert_true(kr_msg_rcpt_save(msg, r0, &err));
    g_assert_no_error(err);
    g_autofree char *longdiag = g_strnfill(1000, 'd');
    kr_rcpt_set_result(r1, KR_RCPT_FAILED, 550, "5.1.1.toolongcode", longdiag);
    g_assert_cmpuint(strlen(r1->diag), ==, KR_DIAG_MAX);
    g_assert_cmpstr(r1->ecode, ==, "5.1.1.toolo");
    g_assert_true(kr_msg_rcpt_save(msg, r1, &err));
    kr_msg_unref(msg);

    msg = load_ok(KR_QUEUE_INCOMING, id);
    r0 = kr_msg_rcpt(msg, 0);
    r1 = kr_msg_rcpt(msg, 1);
    KrRcpt *r2 = kr_msg_rcpt(msg, 2);
    g_assert_cmpint(r0->state, ==, KR_RCPT_DEFERRED);
    g_assert_cmpint(r0->code, ==, 451);
    g_assert_cmpstr(r0->ecode, ==, "4.4.1");
    g_assert_cmpstr(r0->diag, ==, "connection  timed out");
    g_assert_cmpuint(r0->attempts, ==, 1);
    g_assert_cmpint(r0->next_try, ==, 1234567890123);
    g_assert_cmpint(r0->first_fail, >=, before);
    g_assert_cmpint(r1->state, ==, KR_RCPT_FAILED);
    g_assert_cmpint(r1->code, ==, 550);
    g_assert_cmpstr(r1->diag, ==, longdiag + 600);
    g_assert_cmpint(r2->state, ==, KR_RCPT_PENDING);
    g_assert_cmpstr(r1->orcpt, ==, "rfc822;r1@example.org");
    /* Save repeatedly (alternating copies), reload each time. */
    for (int i = 1; i <= 5; i++) {
        kr_rcpt_set_result(r0, i == 5 ? KR_RCPT_DELIVERED : KR_RCPT_DEFERRED, 250 + i, "2.0.0",
                           "ok");
        r0->first_fail = -i;
        g_assert_true(kr_msg_rcpt_save(msg, r0, &err));
        g_assert_no_error(err);
        KrMsg *m2 = load_ok(KR_QUEUE_INCOMING, id);
        g_assert_cmpint(kr_msg_rcpt(m2, 0)->code, ==, 250 + i);
        g_assert_cmpuint(kr_msg_rcpt(m2, 0)->attempts, ==, 1 + (guint)i);
        g_assert_cmpint(kr_msg_rcpt(m2, 0)->first_fail, ==, -i);
        g_assert_cmpint(kr_msg_rcpt(m2, 1)->state, ==, KR_RCPT_FAILED);
        kr_msg_unref(m2);
    }
    /* A recipient added after commit has no slot until a rewrite. */
    KrRcpt *r3 = kr_msg_add_rcpt(msg, "late@example.org");
    g_assert_false(kr_msg_rcpt_save(msg, r3, &err));
    g_assert_error(err, G_IO_ERROR, G_IO_ERROR_NOT_FOUND);
    g_clear_error(&err);
    kr_msg_unref(msg);
    msg = load_ok(KR_QUEUE_INCOMING, id);
    g_assert_cmpint(kr_msg_rcpt(msg, 0)->state, ==, KR_RCPT_DELIVERED);
    g_assert_cmpuint(kr_msg_rcpt_count(msg), ==, 3);
    kr_msg_unref(msg);

    /* Before commit, a save is a no-op and the commit writes the state. */
    msg = spool_with(KR_QUEUE_MAILDROP, "x", 1);
    KrRcpt *r = kr_msg_add_rcpt(msg, "a@b");
    kr_rcpt_set_result(r, KR_RCPT_BOUNCED, 554, "5.0.0", "nope");
    g_assert_true(kr_msg_rcpt_save(msg, r, &err));
    g_assert_true(kr_msg_commit(msg, KR_QUEUE_HOLD, &err));
    g_free(id);
    id = g_strdup(kr_msg_queue_id(msg));
    kr_msg_unref(msg);
    msg = load_ok(KR_QUEUE_HOLD, id);
    g_assert_cmpint(kr_msg_rcpt(msg, 0)->state, ==, KR_RCPT_BOUNCED);
    g_assert_cmpstr(kr_msg_rcpt(msg, 0)->diag, ==, "nope");
    kr_msg_unref(msg);
}

/* Flip a byte at off in the file. */
static void
flip(const char *path, goffset off)
{
    int fd = open(path, O_RDWR);
    g_assert_cmpint(fd, >=, 0);
    guint8 b;
    g_assert_cmpint(pread(fd, &b, 1, off), ==, 1);
    b ^= 0x5a;
    g_assert_cmpint(pwrite(fd, &b, 1, off), ==, 1);
    close(fd);
}

static void
test_slot_corrupt(void)
{
    g_autofree char *top = setup();
    GError *err = NULL;
    g_autofree char *id = NULL;
    KrMsg *msg = commit_three(KR_QUEUE_INCOMING, &id);
    g_autofree char *path = qpath(KR_QUEUE_INCOMING, id);
    KrRcpt *r0 = kr_msg_rcpt(msg, 0), *r1 = kr_msg_rcpt(msg, 1);
    kr_rcpt_set_result(r0, KR_RCPT_DELIVERED, 250, "2.0.0", "done");
    g_assert_true(kr_msg_rcpt_save(msg, r0, &err));
    kr_rcpt_set_result(r1, KR_RCPT_DEFERRED, 451, "4.0.0", "first");
    g_assert_true(kr_msg_rcpt_save(msg, r1, &err)); /* copy 1 */
    kr_rcpt_set_result(r1, KR_RCPT_DEFERRED, 452, "4.0.0", "second");
    g_assert_true(kr_msg_rcpt_save(msg, r1, &err)); /* copy 0 */
    g_assert_no_error(err);
    gint64 slot1 = r1->slot_off;
    kr_msg_unref(msg);

    /* The live copy (0) garbled: the previous status comes back. */
    flip(path, slot1 + 100);
    g_test_expect_message("core", G_LOG_LEVEL_MESSAGE, "*status slot unreadable*");
    msg = load_ok(KR_QUEUE_INCOMING, id);
    g_test_assert_expected_messages();
    g_assert_cmpint(kr_msg_rcpt(msg, 1)->code, ==, 451);
    g_assert_cmpstr(kr_msg_rcpt(msg, 1)->diag, ==, "first");
    g_assert_cmpint(kr_msg_rcpt(msg, 0)->state, ==, KR_RCPT_DELIVERED);
    kr_msg_unref(msg);

    /* Both copies garbled: pending, with a warning; the rest intact. */
    flip(path, slot1 + STATUS_SIZE + 3);
    g_test_expect_message("core", G_LOG_LEVEL_WARNING, "*r1@example.org*treating it as pending*");
    msg = load_ok(KR_QUEUE_INCOMING, id);
    g_test_assert_expected_messages();
    KrRcpt *l1 = kr_msg_rcpt(msg, 1);
    g_assert_cmpint(l1->state, ==, KR_RCPT_PENDING);
    g_assert_cmpuint(l1->attempts, ==, 0);
    g_assert_cmpstr(l1->address, ==, "r1@example.org");
    g_assert_cmpstr(l1->orcpt, ==, "rfc822;r1@example.org");
    g_assert_cmpint(kr_msg_rcpt(msg, 0)->state, ==, KR_RCPT_DELIVERED);
    g_assert_cmpstr(kr_msg_rcpt(msg, 0)->diag, ==, "done");
    g_assert_cmpint(kr_msg_rcpt(msg, 2)->state, ==, KR_RCPT_PENDING);
    g_assert_cmpstr(kr_msg_sender(msg), ==, "s@example.org");
    g_assert_cmpstr(kr_msg_header(msg, "x-edit", 0), ==, "yes");
    /* Saving it again repairs the slot. */
    kr_rcpt_set_result(l1, KR_RCPT_DELIVERED, 250, "2.0.0", "repaired");
    g_assert_true(kr_msg_rcpt_save(msg, l1, &err));
    kr_msg_unref(msg);
    g_test_expect_message("core", G_LOG_LEVEL_MESSAGE, "*status slot unreadable*");
    msg = load_ok(KR_QUEUE_INCOMING, id);
    g_test_assert_expected_messages();
    g_assert_cmpint(kr_msg_rcpt(msg, 1)->state, ==, KR_RCPT_DELIVERED);
    g_assert_cmpstr(kr_msg_rcpt(msg, 1)->diag, ==, "repaired");
    kr_msg_unref(msg);
}

/* --- moves, removal, listing -------------------------------------------- */

static gboolean
list_has(KrQueueDir dir, const char *id)
{
    g_autoptr(GPtrArray) ids = kr_queue_list(dir);
    for (guint i = 0; i < ids->len; i++)
        if (strcmp(ids->pdata[i], id) == 0)
            return TRUE;
    return FALSE;
}

static void
test_move_remove_list(void)
{
    g_autofree char *top = setup();
    GError *err = NULL;
    g_autofree char *id = NULL;
    KrMsg *msg = commit_three(KR_QUEUE_INCOMING, &id);
    /* Spools (.tmp-*) and stray names are not listed. */
    KrMsg *spool = kr_msg_new_spool(KR_QUEUE_INCOMING, &err);
    g_autofree char *stray = qpath(KR_QUEUE_INCOMING, "README");
    put_file(stray, "x", 1);
    g_autoptr(GPtrArray) ids = kr_queue_list(KR_QUEUE_INCOMING);
    g_assert_cmpuint(ids->len, ==, 1);
    g_assert_cmpstr(ids->pdata[0], ==, id);
    kr_msg_unref(spool);

    g_assert_true(kr_msg_move(msg, KR_QUEUE_DEFERRED, &err));
    g_assert_no_error(err);
    g_assert_cmpint(kr_msg_queue_dir(msg), ==, KR_QUEUE_DEFERRED);
    g_assert_false(list_has(KR_QUEUE_INCOMING, id));
    g_assert_true(list_has(KR_QUEUE_DEFERRED, id));
    assert_load_fails(KR_QUEUE_INCOMING, id);
    KrMsg *m = load_ok(KR_QUEUE_DEFERRED, id);
    g_assert_cmpstr(kr_msg_sender(m), ==, "s@example.org");
    kr_msg_unref(m);
    g_assert_true(kr_msg_move(msg, KR_QUEUE_DEFERRED, &err)); /* same dir */
    /* Status saves still reach the moved file. */
    kr_rcpt_set_result(kr_msg_rcpt(msg, 2), KR_RCPT_DELIVERED, 250, "2.0.0", "moved");
    g_assert_true(kr_msg_rcpt_save(msg, kr_msg_rcpt(msg, 2), &err));
    m = load_ok(KR_QUEUE_DEFERRED, id);
    g_assert_cmpstr(kr_msg_rcpt(m, 2)->diag, ==, "moved");
    kr_msg_unref(m);

    /* Never clobber: a file of the same name in the target dir. */
    g_autofree char *clash = qpath(KR_QUEUE_HOLD, id);
    put_file(clash, "other", 5);
    g_assert_false(kr_msg_move(msg, KR_QUEUE_HOLD, &err));
    g_assert_error(err, G_IO_ERROR, G_IO_ERROR_EXISTS);
    g_clear_error(&err);
    g_assert_cmpint(kr_msg_queue_dir(msg), ==, KR_QUEUE_DEFERRED);
    gsize clen;
    g_autofree char *cc = file_contents(clash, &clen);
    g_assert_cmpmem(cc, clen, "other", 5);
    g_assert_true(list_has(KR_QUEUE_DEFERRED, id));

    g_assert_true(kr_msg_remove(msg, &err));
    g_assert_no_error(err);
    g_assert_false(list_has(KR_QUEUE_DEFERRED, id));
    assert_load_fails(KR_QUEUE_DEFERRED, id);
    /* The open message still reads its content. */
    g_autofree char *want = g_strconcat("X-Edit: yes\r\n", small_content, NULL);
    assert_content(msg, want, strlen(want));
    g_assert_false(kr_msg_move(msg, KR_QUEUE_INCOMING, &err));
    g_clear_error(&err);
    kr_msg_unref(msg);

    /* Moving or removing an uncommitted spool. */
    spool = kr_msg_new_spool(KR_QUEUE_MAILDROP, &err);
    g_assert_false(kr_msg_move(spool, KR_QUEUE_INCOMING, &err));
    g_assert_nonnull(err);
    g_clear_error(&err);
    g_autofree char *tn = g_strconcat(".tmp-", kr_msg_queue_id(spool), NULL);
    g_autofree char *tp = qpath(KR_QUEUE_MAILDROP, tn);
    g_assert_true(g_file_test(tp, G_FILE_TEST_EXISTS));
    g_assert_true(kr_msg_remove(spool, &err));
    g_assert_false(g_file_test(tp, G_FILE_TEST_EXISTS));
    kr_msg_unref(spool);

    /* Unref of an uncommitted spool removes it too. */
    spool = spool_with(KR_QUEUE_INCOMING, "abc", 3);
    g_free(tn);
    tn = g_strconcat(".tmp-", kr_msg_queue_id(spool), NULL);
    g_free(tp);
    tp = qpath(KR_QUEUE_INCOMING, tn);
    g_assert_true(g_file_test(tp, G_FILE_TEST_EXISTS));
    kr_msg_unref(spool);
    g_assert_false(g_file_test(tp, G_FILE_TEST_EXISTS));

    /* After discard, append and commit fail. */
    spool = spool_with(KR_QUEUE_INCOMING, "abc", 3);
    kr_msg_discard(spool);
    g_assert_false(kr_msg_append(spool, "x", 1, &err));
    g_clear_error(&err);
    g_assert_false(kr_msg_commit(spool, KR_QUEUE_INCOMING, &err));
    g_clear_error(&err);
    kr_msg_unref(spool);
    g_autoptr(GPtrArray) left = kr_queue_list(KR_QUEUE_INCOMING);
    g_assert_cmpuint(left->len, ==, 0);
}

/* kr_msg_new_spool_spare: NULL with an empty pool; after a lazy removal
 * it renames that file into a new spool that commits like any other. */
static void
test_spare_spool(void)
{
    g_autofree char *top = setup();
    GError *err = NULL;
    KrMsg *m;
    while ((m = kr_msg_new_spool_spare(KR_QUEUE_INCOMING))) /* earlier tests' spares */
        kr_msg_unref(m);
    g_assert_null(kr_msg_new_spool_spare(KR_QUEUE_INCOMING));

    g_autofree char *id = NULL;
    KrMsg *done = commit_three(KR_QUEUE_INCOMING, &id);
    g_assert_true(kr_msg_remove_lazy(done, &err));
    g_assert_no_error(err);
    kr_msg_unref(done);
    g_assert_false(list_has(KR_QUEUE_INCOMING, id));

    KrMsg *spool = kr_msg_new_spool_spare(KR_QUEUE_INCOMING);
    g_assert_nonnull(spool);
    g_assert_cmpstr(kr_msg_queue_id(spool), !=, id);
    g_autofree char *tn = g_strconcat(".tmp-", kr_msg_queue_id(spool), NULL);
    g_autofree char *tp = qpath(KR_QUEUE_INCOMING, tn);
    g_assert_true(g_file_test(tp, G_FILE_TEST_EXISTS));
    g_assert_true(kr_msg_append(spool, "short", 5, &err));
    kr_msg_set_sender(spool, "a@example.org");
    kr_msg_add_rcpt(spool, "b@example.org");
    g_assert_true(kr_msg_commit(spool, KR_QUEUE_INCOMING, &err));
    g_assert_no_error(err);
    g_assert_false(g_file_test(tp, G_FILE_TEST_EXISTS));
    /* The reused file holds exactly the new content, nothing of the old. */
    KrMsg *back = load_ok(KR_QUEUE_INCOMING, kr_msg_queue_id(spool));
    assert_content(back, "short", 5);
    g_assert_cmpstr(kr_msg_sender(back), ==, "a@example.org");
    kr_msg_unref(back);
    kr_msg_unref(spool);
    g_assert_null(kr_msg_new_spool_spare(KR_QUEUE_INCOMING));
}

static void
test_quarantine(void)
{
    g_autofree char *top = setup();
    g_autofree char *id = NULL;
    kr_msg_unref(commit_three(KR_QUEUE_ACTIVE, &id));
    g_autofree char *path = qpath(KR_QUEUE_ACTIVE, id);
    g_autofree char *cpath = qpath(KR_QUEUE_CORRUPT, id);
    g_test_expect_message("core", G_LOG_LEVEL_WARNING, "*moved to corrupt/: test reason*");
    kr_queue_quarantine(KR_QUEUE_ACTIVE, id, "test reason");
    g_test_assert_expected_messages();
    g_assert_false(g_file_test(path, G_FILE_TEST_EXISTS));
    g_assert_true(g_file_test(cpath, G_FILE_TEST_EXISTS));
    /* A second file of the same name gets a suffix. */
    put_file(path, "junk", 4);
    g_test_expect_message("core", G_LOG_LEVEL_WARNING, "*corrupt/*");
    kr_queue_quarantine(KR_QUEUE_ACTIVE, id, "again");
    g_test_assert_expected_messages();
    g_autofree char *n1 = g_strconcat(id, ".1", NULL);
    g_autofree char *c1 = qpath(KR_QUEUE_CORRUPT, n1);
    gsize len;
    g_autofree char *junk = file_contents(c1, &len);
    g_assert_cmpmem(junk, len, "junk", 4);
    /* The first one was not overwritten. */
    g_autoptr(KrMsg) m = load_ok(KR_QUEUE_CORRUPT, id);
    g_assert_cmpuint(kr_msg_rcpt_count(m), ==, 3);
    /* Path tricks are refused. */
    g_test_expect_message("core", G_LOG_LEVEL_WARNING, "*refusing*");
    kr_queue_quarantine(KR_QUEUE_ACTIVE, "../x", "evil");
    g_test_assert_expected_messages();
}

/* --- rewrite and copy ---------------------------------------------------- */

static void
test_rewrite(void)
{
    g_autofree char *top = setup();
    GError *err = NULL;
    g_autofree char *id = NULL;
    KrMsg *msg = commit_three(KR_QUEUE_MAILDROP, &id);
    g_autofree char *path = qpath(KR_QUEUE_MAILDROP, id);
    gsize len1;
    g_autofree char *v1 = file_contents(path, &len1);

    kr_msg_set_sender(msg, "new-sender@example.org");
    KrRcpt *r3 = kr_msg_add_rcpt(msg, "added@example.org");
    r3->notify = KR_NOTIFY_NEVER;
    kr_msg_set_attr(msg, "protocol", "ESMTPSA");
    kr_msg_set_attr(msg, "auth_user", "alice");
    kr_msg_remove_header(msg, "x-edit");
    g_assert_true(kr_msg_prepend_header(msg, "X-Rewritten", "1", &err));
    kr_rcpt_set_result(kr_msg_rcpt(msg, 0), KR_RCPT_EXPANDED, 250, "2.0.0", "alias");
    g_assert_true(kr_msg_rewrite_envelope(msg, &err));
    g_assert_no_error(err);
    g_assert_cmpint(r3->slot_off, >, 0);
    /* The new recipient's status can be saved in place now. */
    kr_rcpt_set_result(r3, KR_RCPT_DEFERRED, 421, "4.4.2", "later");
    g_assert_true(kr_msg_rcpt_save(msg, r3, &err));
    g_assert_no_error(err);
    g_autofree char *logical = NULL;
    {
        g_autoptr(GBytes) b = read_logical(msg, 4096);
        logical = g_strndup(g_bytes_get_data(b, NULL), g_bytes_get_size(b));
    }
    g_assert_nonnull(strstr(logical, "X-Rewritten: 1\r\n"));
    g_assert_null(strstr(logical, "X-Edit"));

    KrMsg *m = load_ok(KR_QUEUE_MAILDROP, id);
    g_assert_cmpstr(kr_msg_sender(m), ==, "new-sender@example.org");
    g_assert_cmpuint(kr_msg_rcpt_count(m), ==, 4);
    g_assert_cmpint(kr_msg_rcpt(m, 0)->state, ==, KR_RCPT_EXPANDED);
    g_assert_cmpstr(kr_msg_rcpt(m, 3)->address, ==, "added@example.org");
    g_assert_cmpuint(kr_msg_rcpt(m, 3)->notify, ==, KR_NOTIFY_NEVER);
    g_assert_cmpint(kr_msg_rcpt(m, 3)->code, ==, 421);
    g_assert_cmpstr(kr_msg_attr(m, "protocol"), ==, "ESMTPSA");
    g_assert_cmpstr(kr_msg_attr(m, "auth_user"), ==, "alice");
    assert_content(m, logical, strlen(logical));
    kr_msg_unref(m);
    gsize len2;
    g_autofree char *v2 = file_contents(path, &len2);
    g_assert_cmpuint(len2, >, len1);
    /* The content bytes were not touched. */
    g_assert_cmpmem(v2 + CONTENT_OFF, sizeof small_content - 1, small_content,
                    sizeof small_content - 1);

    /* A crash between the two header writes: copy B (written first) is
     * new, copy A still old. Either way the new envelope wins... */
    g_autofree char *mix = g_memdup2(v2, len2);
    memcpy(mix, v1, HDR_SIZE);
    put_file(path, mix, len2);
    m = load_ok(KR_QUEUE_MAILDROP, id);
    g_assert_cmpstr(kr_msg_sender(m), ==, "new-sender@example.org");
    kr_msg_unref(m);
    /* ...unless it did not reach the disk: then the old one is used. */
    put_file(path, mix, len2 - 10);
    g_test_expect_message("core", G_LOG_LEVEL_MESSAGE, "*header copy * unusable*");
    m = load_ok(KR_QUEUE_MAILDROP, id);
    g_test_assert_expected_messages();
    g_assert_cmpstr(kr_msg_sender(m), ==, "s@example.org");
    g_assert_cmpuint(kr_msg_rcpt_count(m), ==, 3);
    g_assert_cmpstr(kr_msg_header(m, "x-edit", 0), ==, "yes");
    /* A rewrite from there cuts the debris and works. */
    kr_msg_set_sender(m, "third@example.org");
    g_assert_true(kr_msg_rewrite_envelope(m, &err));
    g_assert_no_error(err);
    kr_msg_unref(m);
    m = load_ok(KR_QUEUE_MAILDROP, id);
    g_assert_cmpstr(kr_msg_sender(m), ==, "third@example.org");
    g_assert_cmpuint(kr_msg_rcpt_count(m), ==, 3);
    kr_msg_unref(m);
    /* Garbling one header copy of a healthy file changes nothing. */
    flip(path, 20);
    m = load_ok(KR_QUEUE_MAILDROP, id);
    g_assert_cmpstr(kr_msg_sender(m), ==, "third@example.org");
    kr_msg_unref(m);
    flip(path, HDR_SIZE + 20);
    assert_load_fails(KR_QUEUE_MAILDROP, id);
    kr_msg_unref(msg);

    /* Rewrite before commit is a no-op; commit writes the envelope. */
    msg = spool_with(KR_QUEUE_MAILDROP, "x", 1);
    g_assert_true(kr_msg_rewrite_envelope(msg, &err));
    kr_msg_unref(msg);
}

static void
test_new_copy(void)
{
    g_autofree char *top = setup();
    GError *err = NULL;
    g_autofree char *id = NULL;
    KrMsg *msg = commit_three(KR_QUEUE_INCOMING, &id);
    kr_msg_remove_header(msg, "subject");
    g_autoptr(GBytes) want = read_logical(msg, 4096);
    KrMsg *copy = kr_msg_new_copy(msg, KR_QUEUE_MAILDROP, &err);
    g_assert_no_error(err);
    g_assert_nonnull(copy);
    g_assert_cmpstr(kr_msg_queue_id(copy), !=, id);
    g_assert_cmpuint(kr_msg_rcpt_count(copy), ==, 0);
    g_assert_cmpstr(kr_msg_sender(copy), ==, "s@example.org");
    g_assert_cmpstr(kr_msg_attr(copy, "protocol"), ==, "ESMTP");
    g_assert_cmpint(kr_msg_raw_size(copy), ==, (goffset)g_bytes_get_size(want));
    assert_content(copy, g_bytes_get_data(want, NULL), g_bytes_get_size(want));
    g_assert_null(kr_msg_header(copy, "subject", 0));
    g_assert_cmpstr(kr_msg_header(copy, "x-edit", 0), ==, "yes");
    kr_msg_add_rcpt(copy, "expanded@example.org");
    g_assert_true(kr_msg_commit(copy, KR_QUEUE_INCOMING, &err));
    g_autofree char *cid = g_strdup(kr_msg_queue_id(copy));
    kr_msg_unref(copy);
    kr_msg_unref(msg);
    g_autoptr(KrMsg) m = load_ok(KR_QUEUE_INCOMING, cid);
    assert_content(m, g_bytes_get_data(want, NULL), g_bytes_get_size(want));
    g_assert_cmpstr(kr_msg_rcpt(m, 0)->address, ==, "expanded@example.org");
    /* The original is untouched. */
    g_autoptr(KrMsg) o = load_ok(KR_QUEUE_INCOMING, id);
    g_assert_cmpstr(kr_msg_header(o, "subject", 0), ==, "Hello  World");
}

/* --- async and concurrent commits --------------------------------------- */

typedef struct {
    GMainLoop *loop;
    int calls;
    gboolean had_error;
    GThread *thread;
    KrMsg *msg;
} AsyncState;

static void
async_done(KrMsg *msg, const GError *error, gpointer ud)
{
    AsyncState *s = ud;
    s->calls++;
    s->had_error = error != NULL;
    s->thread = g_thread_self();
    s->msg = msg;
    g_main_loop_quit(s->loop);
}

static void
test_commit_async(void)
{
    g_autofree char *top = setup();
    AsyncState s = {.loop = g_main_loop_new(NULL, FALSE)};
    KrMsg *msg = spool_with(KR_QUEUE_MAILDROP, small_content, sizeof small_content - 1);
    kr_msg_add_rcpt(msg, "a@example.org");
    g_autofree char *id = g_strdup(kr_msg_queue_id(msg));
    kr_msg_commit_async(msg, KR_QUEUE_INCOMING, async_done, &s);
    kr_msg_unref(msg); /* the commit holds its own reference */
    g_main_loop_run(s.loop);
    g_assert_cmpint(s.calls, ==, 1);
    g_assert_false(s.had_error);
    g_assert_true(s.thread == g_thread_self()); /* on the loop */
    g_autoptr(KrMsg) m = load_ok(KR_QUEUE_INCOMING, id);
    assert_content(m, small_content, sizeof small_content - 1);
    /* A failing commit reports its error. */
    kr_msg_commit_async(m, KR_QUEUE_INCOMING, async_done, &s);
    g_main_loop_run(s.loop);
    g_assert_cmpint(s.calls, ==, 2);
    g_assert_true(s.had_error);
    g_assert_true(s.msg == m);
    g_main_loop_unref(s.loop);
}

#define N_THREADS  8
#define PER_THREAD 40

static gpointer
commit_thread(gpointer p)
{
    GPtrArray *ids = p;
    for (int i = 0; i < PER_THREAD; i++) {
        GError *err = NULL;
        KrMsg *msg = kr_msg_new_spool(KR_QUEUE_MAILDROP, &err);
        g_assert_no_error(err);
        g_autofree char *body = g_strdup_printf("Subject: %s\r\n\r\n%s\r\n", kr_msg_queue_id(msg),
                                                kr_msg_queue_id(msg));
        g_assert_true(kr_msg_append(msg, body, strlen(body), &err));
        kr_msg_set_sender(msg, kr_msg_queue_id(msg));
        kr_msg_add_rcpt(msg, "r@example.org");
        g_assert_true(kr_msg_commit(msg, KR_QUEUE_INCOMING, &err));
        g_assert_no_error(err);
        g_ptr_array_add(ids, g_strdup(kr_msg_queue_id(msg)));
        kr_msg_unref(msg);
    }
    return NULL;
}

static void
verify_self_described(const char *id)
{
    g_autoptr(KrMsg) m = load_ok(KR_QUEUE_INCOMING, id);
    g_assert_cmpstr(kr_msg_sender(m), ==, id);
    g_assert_cmpstr(kr_msg_header(m, "subject", 0), ==, id);
    g_autofree char *body = g_strdup_printf("Subject: %s\r\n\r\n%s\r\n", id, id);
    assert_content(m, body, strlen(body));
}

typedef struct {
    KrMsg *msg;
    char *want;
    gint ok;
} ReadJob;

static gpointer
read_thread(gpointer p)
{
    ReadJob *j = p;
    for (int i = 0; i < 50; i++) {
        g_autoptr(GBytes) got = read_logical(j->msg, 3 + (gsize)i);
        gsize len;
        const char *g = g_bytes_get_data(got, &len);
        g_assert_cmpmem(g, len, j->want, strlen(j->want));
        g_assert_cmpstr(kr_msg_header(j->msg, "x-edit", 0), ==, "yes");
        g_atomic_int_inc(&j->ok);
    }
    return NULL;
}

static void
test_concurrent(void)
{
    g_autofree char *top = setup();
    GThread *th[N_THREADS];
    GPtrArray *ids[N_THREADS];
    for (int i = 0; i < N_THREADS; i++) {
        ids[i] = g_ptr_array_new_with_free_func(g_free);
        th[i] = g_thread_new("commit", commit_thread, ids[i]);
    }
    g_autoptr(GHashTable) all = g_hash_table_new(g_str_hash, g_str_equal);
    for (int i = 0; i < N_THREADS; i++) {
        g_thread_join(th[i]);
        g_assert_cmpuint(ids[i]->len, ==, PER_THREAD);
        for (guint j = 0; j < ids[i]->len; j++)
            g_assert_true(g_hash_table_add(all, ids[i]->pdata[j]));
    }
    g_autoptr(GPtrArray) listed = kr_queue_list(KR_QUEUE_INCOMING);
    g_assert_cmpuint(listed->len, ==, N_THREADS * PER_THREAD);
    for (guint j = 0; j < listed->len; j++) {
        g_assert_true(g_hash_table_contains(all, listed->pdata[j]));
        if (j > 0) /* sorted */
            g_assert_cmpstr(listed->pdata[j - 1], <, listed->pdata[j]);
        verify_self_described(listed->pdata[j]);
    }
    g_autoptr(GPtrArray) spools = kr_queue_list(KR_QUEUE_MAILDROP);
    g_assert_cmpuint(spools->len, ==, 0);
    for (int i = 0; i < N_THREADS; i++)
        g_ptr_array_unref(ids[i]);

    /* Concurrent readers of one message with header edits: the lazily
     * built content map is shared. */
    g_autofree char *id = NULL;
    KrMsg *msg = commit_three(KR_QUEUE_INCOMING, &id);
    kr_msg_unref(msg);
    ReadJob job = {.msg = load_ok(KR_QUEUE_INCOMING, id)};
    job.want = g_strconcat("X-Edit: yes\r\n", small_content, NULL);
    GThread *rd[4];
    for (int i = 0; i < 4; i++)
        rd[i] = g_thread_new("read", read_thread, &job);
    for (int i = 0; i < 4; i++)
        g_thread_join(rd[i]);
    g_assert_cmpint(job.ok, ==, 4 * 50);
    kr_msg_unref(job.msg);
    g_free(job.want);
}

static void
test_multiprocess(void)
{
    /* Several processes (think sendmail) committing at once. */
    g_autofree char *top = setup();
    const int nproc = 4, per = 50;
    for (int p = 0; p < nproc; p++) {
        pid_t pid = fork();
        g_assert_cmpint(pid, >=, 0);
        if (pid == 0) {
            for (int i = 0; i < per; i++) {
                KrMsg *msg = kr_msg_new_spool(KR_QUEUE_MAILDROP, NULL);
                if (!msg)
                    _exit(1);
                g_autofree char *body = g_strdup_printf("Subject: %s\r\n\r\n%s\r\n",
                                                        kr_msg_queue_id(msg), kr_msg_queue_id(msg));
                kr_msg_set_sender(msg, kr_msg_queue_id(msg));
                if (!kr_msg_append(msg, body, strlen(body), NULL) ||
                    !kr_msg_commit(msg, KR_QUEUE_INCOMING, NULL))
                    _exit(1);
                kr_msg_unref(msg);
            }
            _exit(0);
        }
    }
    for (int p = 0; p < nproc; p++) {
        int status;
        g_assert_cmpint(wait(&status), >, 0);
        g_assert_true(WIFEXITED(status));
        g_assert_cmpint(WEXITSTATUS(status), ==, 0);
    }
    g_autoptr(GPtrArray) listed = kr_queue_list(KR_QUEUE_INCOMING);
    g_assert_cmpuint(listed->len, ==, (guint)(nproc * per));
    for (guint j = 0; j < listed->len; j++)
        verify_self_described(listed->pdata[j]);
}

/* --- untrusted files ----------------------------------------------------- */

static void
test_truncated(void)
{
    g_autofree char *top = setup();
    g_autofree char *id = NULL;
    KrMsg *msg = commit_three(KR_QUEUE_INCOMING, &id);
    kr_msg_unref(msg);
    g_autofree char *path = qpath(KR_QUEUE_INCOMING, id);
    gsize len;
    g_autofree char *data = file_contents(path, &len);
    g_autofree char *hpath = qpath(KR_QUEUE_HOLD, id);
    for (gsize cut = 0; cut < len; cut++) {
        put_file(hpath, data, cut);
        assert_load_fails(KR_QUEUE_HOLD, id);
    }
    put_file(hpath, data, len);
    kr_msg_unref(load_ok(KR_QUEUE_HOLD, id));
    /* Trailing bytes after the envelope (a crashed rewrite) are ignored. */
    g_autofree char *longer = g_malloc0(len + 100);
    memcpy(longer, data, len);
    put_file(hpath, longer, len + 100);
    kr_msg_unref(load_ok(KR_QUEUE_HOLD, id));

    /* A truncated file, found by a scan, goes to corrupt/. */
    put_file(path, data, len / 2);
    GError *err = NULL;
    g_assert_null(kr_msg_load(KR_QUEUE_INCOMING, id, &err));
    g_assert_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_DATA);
    g_test_expect_message("core", G_LOG_LEVEL_WARNING, "*moved to corrupt/*");
    kr_queue_quarantine(KR_QUEUE_INCOMING, id, err->message);
    g_test_assert_expected_messages();
    g_clear_error(&err);
    g_assert_false(list_has(KR_QUEUE_INCOMING, id));
    g_autofree char *cpath = qpath(KR_QUEUE_CORRUPT, id);
    gsize clen;
    g_autofree char *c = file_contents(cpath, &clen);
    g_assert_cmpuint(clen, ==, len / 2);

    /* Not a regular file; a missing file; an invalid ID. */
    g_autofree char *dpath = qpath(KR_QUEUE_ACTIVE, "AAAAAAAAAAAAAA");
    g_assert_cmpint(mkdir(dpath, 0700), ==, 0);
    assert_load_fails(KR_QUEUE_ACTIVE, "AAAAAAAAAAAAAA");
    assert_load_fails(KR_QUEUE_ACTIVE, "BBBBBBBBBBBBBB");
    assert_load_fails(KR_QUEUE_ACTIVE, "../incoming/xx");
    g_autofree char *fifo = qpath(KR_QUEUE_ACTIVE, "FFFFFFFFFFFFFF");
    g_assert_cmpint(mkfifo(fifo, 0600), ==, 0);
    assert_load_fails(KR_QUEUE_ACTIVE, "FFFFFFFFFFFFFF"); /* without blocking */
}

static void
count_message(const char *domain, GLogLevelFlags level, const char *message, gpointer ud)
{
    (*(int *)ud)++;
}

static void
test_garbage(void)
{
    int messages = 0;
    g_autofree char *top = setup();
    GRand *rand = g_rand_new_with_seed(7);
    const char *gid = "GGGGGGGGGGGGGG";
    g_autofree char *gpath = qpath(KR_QUEUE_HOLD, gid);
    guint8 buf[8192];
    for (int i = 0; i < 2000; i++) {
        gsize n = (gsize)g_rand_int_range(rand, 0, sizeof buf);
        for (gsize j = 0; j < n; j++)
            buf[j] = (guint8)g_rand_int(rand);
        if (i % 2 && n >= 4)
            memcpy(buf, "KRQ1", 4);
        if (i % 4 == 3 && n >= HDR_SIZE + 4)
            memcpy(buf + HDR_SIZE, "KRQ1", 4);
        put_file(gpath, buf, n);
        assert_load_fails(KR_QUEUE_HOLD, gid);
    }

    /* Single-byte damage to a valid file: header copy -> other copy is
     * used; content -> loads (content is not checksummed); envelope
     * outside the slots -> refused; inside a slot -> loads. */
    g_autofree char *id = NULL;
    KrMsg *msg = commit_three(KR_QUEUE_INCOMING, &id);
    goffset env_off = CONTENT_OFF + kr_msg_raw_size(msg);
    gint64 slots[3];
    for (int i = 0; i < 3; i++)
        slots[i] = kr_msg_rcpt(msg, (guint)i)->slot_off;
    kr_msg_unref(msg);
    g_autofree char *path = qpath(KR_QUEUE_INCOMING, id);
    gsize len;
    g_autofree char *data = file_contents(path, &len);
    g_autofree char *hpath = qpath(KR_QUEUE_HOLD, id);
    int refused = 0, loaded = 0;
    guint h = g_log_set_handler("core", G_LOG_LEVEL_MESSAGE, count_message, &messages);
    for (gsize off = 0; off < len; off++) {
        g_autofree char *copy = g_memdup2(data, len);
        copy[off] ^= (char)(1 + g_rand_int_range(rand, 0, 255));
        put_file(hpath, copy, len);
        gboolean in_slot = FALSE;
        for (int i = 0; i < 3; i++)
            in_slot |= (gint64)off >= slots[i] && (gint64)off < slots[i] + SLOT_SIZE;
        GError *err = NULL;
        KrMsg *m = kr_msg_load(KR_QUEUE_HOLD, id, &err);
        if ((goffset)off < env_off || in_slot) {
            g_assert_no_error(err);
            g_assert_nonnull(m);
            g_assert_cmpuint(kr_msg_rcpt_count(m), ==, 3);
            loaded++;
        } else {
            g_assert_null(m);
            g_assert_nonnull(err);
            refused++;
        }
        g_clear_error(&err);
        if (m)
            kr_msg_unref(m);
    }
    g_log_remove_handler("core", h);
    g_assert_cmpint(refused, >, 0);
    g_assert_cmpint(loaded, >, 0);
    /* Every damaged header copy or slot copy was reported. */
    g_assert_cmpint(messages, ==, 2 * HDR_SIZE + 3 * SLOT_SIZE);
    g_rand_free(rand);
}

/* Crafted envelopes with correct checksums: the parser's own checks. */
static guint32
crc32(guint32 crc, const void *data, gsize len)
{
    const guint8 *p = data;
    crc = ~crc;
    while (len--) {
        crc ^= *p++;
        for (int k = 0; k < 8; k++)
            crc = crc & 1 ? 0xEDB88320u ^ (crc >> 1) : crc >> 1;
    }
    return ~crc;
}

static void
le32(guint8 *p, guint32 v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (guint8)(v >> (8 * i));
}

static void
le64(guint8 *p, guint64 v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (guint8)(v >> (8 * i));
}

static void
rec(GByteArray *b, char type, const void *p, gsize len)
{
    guint8 h[5] = {(guint8)type};
    le32(h + 1, (guint32)len);
    g_byte_array_append(b, h, 5);
    g_byte_array_append(b, p, (guint)len);
}

static void
rec_str(GByteArray *b, char type, const char *s)
{
    rec(b, type, s, strlen(s));
}

/* A status copy with a valid checksum. */
static void
status_copy(guint8 *p, guint32 seq, guint8 state, int code, const char *diag)
{
    memset(p, 0, STATUS_SIZE);
    le32(p, seq);
    p[4] = state;
    le32(p + 12, (guint32)code);
    p[44] = (guint8)strlen(diag);
    memcpy(p + 46, diag, strlen(diag));
    le32(p + STATUS_SIZE - 4, crc32(0, p, STATUS_SIZE - 4));
}

static void
rcpt_rec(GByteArray *b, const char *addr, guint32 notify, guint8 state)
{
    GByteArray *r = g_byte_array_new();
    guint8 fixed[12];
    le32(fixed, notify);
    le32(fixed + 4, (guint32)strlen(addr));
    le32(fixed + 8, 0xFFFFFFFFu);
    g_byte_array_append(r, fixed, 12);
    g_byte_array_append(r, (const guint8 *)addr, (guint)strlen(addr));
    guint8 slot[SLOT_SIZE];
    status_copy(slot, 1, state, 250, "crafted");
    status_copy(slot + STATUS_SIZE, 0, state, 250, "crafted");
    g_byte_array_append(r, slot, SLOT_SIZE);
    rec(b, 'R', r->data, r->len);
    g_byte_array_unref(r);
}

/* Write DIR/id = headers + content + env (+ END unless end == FALSE). */
static void
craft(const char *id, GByteArray *env, guint nrec, gboolean end)
{
    const char *content = "Subject: crafted\r\n\r\nhi\r\n";
    gsize clen = strlen(content);
    /* CRC over the records, slots of R records excluded. */
    guint32 crc = 0;
    for (gsize p = 0; p + 5 <= env->len;) {
        guint32 len = env->data[p + 1] | env->data[p + 2] << 8 | env->data[p + 3] << 16 |
                      (guint32)env->data[p + 4] << 24;
        if (len > env->len - p - 5)
            break;
        gsize covered = 5 + len - (env->data[p] == 'R' && len >= 12 + SLOT_SIZE ? SLOT_SIZE : 0);
        crc = crc32(crc, env->data + p, covered);
        p += 5 + len;
    }
    if (end) {
        guint8 e[8];
        le32(e, nrec);
        le32(e + 4, crc);
        rec(env, 'E', e, 8);
    }
    guint8 h[HDR_SIZE] = {0};
    memcpy(h, "KRQ1", 4);
    h[4] = 1;
    h[6] = HDR_SIZE;
    h[8] = 1;
    le64(h + 16, CONTENT_OFF);
    le64(h + 24, clen);
    le64(h + 32, CONTENT_OFF + clen);
    le64(h + 40, env->len);
    le32(h + 48, crc);
    le32(h + 60, crc32(0, h, 60));
    GByteArray *f = g_byte_array_new();
    g_byte_array_append(f, h, HDR_SIZE);
    g_byte_array_append(f, h, HDR_SIZE);
    g_byte_array_append(f, (const guint8 *)content, (guint)clen);
    g_byte_array_append(f, env->data, env->len);
    g_autofree char *path = qpath(KR_QUEUE_HOLD, id);
    put_file(path, f->data, f->len);
    g_byte_array_unref(f);
}

static GByteArray *
base_env(const char *id, guint *nrec)
{
    GByteArray *b = g_byte_array_new();
    guint8 t[8];
    le64(t, 1700000000);
    rec_str(b, 'I', id);
    rec(b, 'T', t, 8);
    rec_str(b, 'S', "crafted@example.org");
    *nrec = 3;
    return b;
}

static void
test_crafted(void)
{
    g_autofree char *top = setup();
    const char *id = "CCCCCCCCCCCCCC";
    guint n;
    /* The baseline crafted file loads: the format is as documented. */
    GByteArray *b = base_env(id, &n);
    rec(b, 'A', "helo\0x.example", 14);
    rec(b, 'H', "X-Crafted\0yes", 13);
    rcpt_rec(b, "r@example.org", KR_NOTIFY_DELAY, KR_RCPT_DEFERRED);
    rec_str(b, 'z', "an optional record from the future");
    craft(id, b, n + 4, TRUE);
    g_byte_array_unref(b);
    KrMsg *m = load_ok(KR_QUEUE_HOLD, id);
    g_assert_cmpstr(kr_msg_sender(m), ==, "crafted@example.org");
    g_assert_cmpint(kr_msg_arrival(m), ==, 1700000000);
    g_assert_cmpstr(kr_msg_attr(m, "helo"), ==, "x.example");
    g_assert_cmpstr(kr_msg_header(m, "x-crafted", 0), ==, "yes");
    g_assert_cmpstr(kr_msg_header(m, "subject", 0), ==, "crafted");
    g_assert_cmpuint(kr_msg_rcpt_count(m), ==, 1);
    g_assert_cmpint(kr_msg_rcpt(m, 0)->state, ==, KR_RCPT_DEFERRED);
    g_assert_cmpuint(kr_msg_rcpt(m, 0)->notify, ==, KR_NOTIFY_DELAY);
    g_assert_cmpstr(kr_msg_rcpt(m, 0)->diag, ==, "crafted");
    const char *c = "X-Crafted: yes\r\nSubject: crafted\r\n\r\nhi\r\n";
    assert_content(m, c, strlen(c));
    kr_msg_unref(m);

    /* Each of these is refused. */
    static const struct {
        const char *what;
        char type;
        const char *payload;
        gsize len;
    } bad[] = {
        {"unknown critical record", 'Q', "x", 1},
        {"second sender", 'S', "again", 5},
        {"second time", 'T', "12345678", 8},
        {"short time", 'T', "1234", 4},
        {"NUL in sender", 'S', "a\0b", 3},
        {"bad attr key", 'A', "Bad-Key\0v", 9},
        {"attr without NUL", 'A', "key", 3},
        {"empty attr key", 'A', "\0v", 2},
        {"NUL in attr value", 'A', "k\0v\0w", 5},
        {"bad header name", 'H', "a b\0v", 5},
        {"bare LF in header value", 'H', "A\0v\nx", 5},
        {"empty remove", 'X', "", 0},
        {"short rcpt", 'R', "12345678", 8},
        {"second ID", 'I', "CCCCCCCCCCCCCC", 14},
    };
    for (guint i = 0; i < G_N_ELEMENTS(bad); i++) {
        b = base_env(id, &n);
        rec(b, bad[i].type, bad[i].payload, bad[i].len);
        craft(id, b, n + 1, TRUE);
        g_byte_array_unref(b);
        g_test_message("crafted: %s", bad[i].what);
        assert_load_fails(KR_QUEUE_HOLD, id);
    }
    /* Structural damage. */
    b = base_env(id, &n);
    craft(id, b, n + 1, TRUE); /* wrong record count */
    g_byte_array_unref(b);
    assert_load_fails(KR_QUEUE_HOLD, id);
    b = base_env(id, &n);
    craft(id, b, n, FALSE); /* no END */
    g_byte_array_unref(b);
    assert_load_fails(KR_QUEUE_HOLD, id);
    b = base_env("DDDDDDDDDDDDDD", &n);
    craft(id, b, n, TRUE); /* ID does not match the name */
    g_byte_array_unref(b);
    assert_load_fails(KR_QUEUE_HOLD, id);
    b = g_byte_array_new();
    rec_str(b, 'S', "x");
    craft(id, b, 1, TRUE); /* ID not first */
    g_byte_array_unref(b);
    assert_load_fails(KR_QUEUE_HOLD, id);
    b = base_env(id, &n);
    g_byte_array_set_size(b, b->len - 5 - strlen("crafted@example.org")); /* no sender */
    craft(id, b, n - 1, TRUE);
    g_byte_array_unref(b);
    assert_load_fails(KR_QUEUE_HOLD, id);
    /* Huge lengths: a record claiming 2 GiB; a rcpt address length that
     * runs past its record; 17 MiB record. */
    b = base_env(id, &n);
    guint8 h[5] = {'S', 0xff, 0xff, 0xff, 0x7f};
    g_byte_array_append(b, h, 5);
    craft(id, b, n + 1, TRUE);
    g_byte_array_unref(b);
    assert_load_fails(KR_QUEUE_HOLD, id);
    b = base_env(id, &n);
    {
        guint8 r[12 + SLOT_SIZE] = {0};
        le32(r + 4, 0x7fffffff);
        le32(r + 8, 0xFFFFFFFFu);
        rec(b, 'R', r, sizeof r);
    }
    craft(id, b, n + 1, TRUE);
    g_byte_array_unref(b);
    assert_load_fails(KR_QUEUE_HOLD, id);
    b = base_env(id, &n);
    {
        gsize big = 17 * 1024 * 1024;
        g_autofree char *z = g_malloc0(big);
        memcpy(z, "key", 3);
        rec(b, 'A', z, big);
    }
    craft(id, b, n + 1, TRUE);
    g_byte_array_unref(b);
    assert_load_fails(KR_QUEUE_HOLD, id);
    /* Too many attributes (limit 10000). */
    b = base_env(id, &n);
    for (int i = 0; i < 10001; i++) {
        char kv[32];
        int l = g_snprintf(kv, sizeof kv, "k%d", i);
        rec(b, 'A', kv, (gsize)l + 1);
    }
    craft(id, b, n + 10001, TRUE);
    g_byte_array_unref(b);
    assert_load_fails(KR_QUEUE_HOLD, id);
    /* Invalid NOTIFY bits, invalid state in both slot copies. */
    b = base_env(id, &n);
    rcpt_rec(b, "r@x", 0x100, KR_RCPT_PENDING);
    craft(id, b, n + 1, TRUE);
    g_byte_array_unref(b);
    assert_load_fails(KR_QUEUE_HOLD, id);
    b = base_env(id, &n);
    rcpt_rec(b, "r@x", 0, 99);
    craft(id, b, n + 1, TRUE);
    g_byte_array_unref(b);
    g_test_expect_message("core", G_LOG_LEVEL_WARNING, "*treating it as pending*");
    m = load_ok(KR_QUEUE_HOLD, id);
    g_test_assert_expected_messages();
    g_assert_cmpint(kr_msg_rcpt(m, 0)->state, ==, KR_RCPT_PENDING);
    kr_msg_unref(m);
}

int
main(int argc, char **argv)
{
    kr_test_init(&argc, &argv);
    g_test_add_func("/queue/dirs", test_dirs);
    g_test_add_func("/queue/ids", test_ids);
    g_test_add_func("/queue/roundtrip", test_roundtrip);
    g_test_add_func("/queue/empty", test_empty);
    g_test_add_func("/queue/large", test_large);
    g_test_add_func("/queue/headers", test_headers);
    g_test_add_func("/queue/headers-lf", test_headers_lf);
    g_test_add_func("/queue/headers-incremental", test_headers_incremental);
    g_test_add_func("/queue/headers-limits", test_headers_limits);
    g_test_add_func("/queue/write-lf-boundary", test_write_lf_boundary);
    g_test_add_func("/queue/rcpt-status", test_rcpt_status);
    g_test_add_func("/queue/slot-corrupt", test_slot_corrupt);
    g_test_add_func("/queue/move-remove-list", test_move_remove_list);
    g_test_add_func("/queue/spare-spool", test_spare_spool);
    g_test_add_func("/queue/quarantine", test_quarantine);
    g_test_add_func("/queue/rewrite", test_rewrite);
    g_test_add_func("/queue/new-copy", test_new_copy);
    /* Before any thread exists (it forks). */
    g_test_add_func("/queue/multiprocess", test_multiprocess);
    g_test_add_func("/queue/commit-async", test_commit_async);
    g_test_add_func("/queue/concurrent", test_concurrent);
    g_test_add_func("/queue/truncated", test_truncated);
    g_test_add_func("/queue/garbage", test_garbage);
    g_test_add_func("/queue/crafted", test_crafted);
    return g_test_run();
}
