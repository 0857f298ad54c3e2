/* SPDX-License-Identifier: MIT */
/*
 * test-sync.c - the group-committed directory fsync (kr-sync.h).
 *
 *   /sync/dir          one caller: TRUE, one fsync, counters move by one
 *   /sync/errors       a bad descriptor, a missing path, a file as a path
 *   /sync/group        16 threads x 50 calls on one directory: all TRUE,
 *                      fewer fsyncs than calls is allowed, more never;
 *                      every name a thread added before its call is there
 *   /sync/path-reuse   a directory removed and made again at the same
 *                      path is synced (the cached descriptor is not stale)
 */
#include "testlib.h"
#include <kurir/kurir.h>
#include <gio/gio.h>
#include <fcntl.h>
#include <glib/gstdio.h>
#include <sys/stat.h>
#include <unistd.h>

static void
test_dir(void)
{
    g_autofree char *d = kr_test_tmpdir();
    int fd = open(d, O_RDONLY | O_DIRECTORY);
    g_assert_cmpint(fd, >=, 0);
    guint64 c0, f0, c1, f1;
    kr_sync_stats(&c0, &f0);
    g_autoptr(GError) err = NULL;
    g_assert_true(kr_sync_dir(fd, &err));
    g_assert_no_error(err);
    kr_sync_stats(&c1, &f1);
    g_assert_cmpuint(c1, ==, c0 + 1);
    g_assert_cmpuint(f1, ==, f0 + 1);
    g_assert_true(kr_sync_dir_path(d, &err));
    g_assert_no_error(err);
    close(fd);
}

static void
test_errors(void)
{
    g_autofree char *d = kr_test_tmpdir();
    g_autoptr(GError) err = NULL;
    g_assert_false(kr_sync_dir(-1, &err));
    g_assert_nonnull(err); /* EBADF */
    g_clear_error(&err);
    g_autofree char *missing = g_build_filename(d, "nope", NULL);
    g_assert_false(kr_sync_dir_path(missing, &err));
    g_assert_error(err, G_IO_ERROR, G_IO_ERROR_NOT_FOUND);
    g_assert_nonnull(strstr(err->message, "nope"));
    g_clear_error(&err);
    g_autofree char *file = g_build_filename(d, "file", NULL);
    g_assert_true(g_file_set_contents(file, "x", 1, NULL));
    g_assert_false(kr_sync_dir_path(file, &err));
    g_assert_error(err, G_IO_ERROR, G_IO_ERROR_NOT_DIRECTORY);
}

#define THREADS 16
#define CALLS   50

typedef struct {
    const char *dir;
    int n;
    gboolean ok;
} Worker;

static gpointer
worker(gpointer p)
{
    Worker *w = p;
    w->ok = TRUE;
    int dfd = open(w->dir, O_RDONLY | O_DIRECTORY);
    for (int i = 0; i < CALLS; i++) {
        g_autofree char *name = g_strdup_printf("%s/t%d-%d", w->dir, w->n, i);
        int fd = open(name, O_WRONLY | O_CREAT | O_EXCL, 0600);
        if (fd < 0 || close(fd) != 0)
            w->ok = FALSE;
        g_autoptr(GError) err = NULL;
        /* Half through a descriptor of their own, half by path. */
        gboolean r = i % 2 ? kr_sync_dir(dfd, &err) : kr_sync_dir_path(w->dir, &err);
        if (!r || err)
            w->ok = FALSE;
    }
    close(dfd);
    return NULL;
}

static void
test_group(void)
{
    g_autofree char *d = kr_test_tmpdir();
    guint64 c0, f0, c1, f1;
    kr_sync_stats(&c0, &f0);
    Worker w[THREADS];
    GThread *t[THREADS];
    for (int i = 0; i < THREADS; i++) {
        w[i] = (Worker){.dir = d, .n = i};
        t[i] = g_thread_new("sync", worker, &w[i]);
    }
    for (int i = 0; i < THREADS; i++) {
        g_thread_join(t[i]);
        g_assert_true(w[i].ok);
    }
    kr_sync_stats(&c1, &f1);
    g_assert_cmpuint(c1 - c0, ==, THREADS * CALLS);
    g_assert_cmpuint(f1 - f0, >=, 1);
    g_assert_cmpuint(f1 - f0, <=, THREADS * CALLS);
    g_test_message("%d calls cost %" G_GUINT64_FORMAT " fsyncs", THREADS * CALLS, f1 - f0);
    for (int i = 0; i < THREADS; i++)
        for (int k = 0; k < CALLS; k++) {
            g_autofree char *name = g_strdup_printf("%s/t%d-%d", d, i, k);
            g_assert_true(g_file_test(name, G_FILE_TEST_IS_REGULAR));
        }
}

static void
test_path_reuse(void)
{
    g_autofree char *d = kr_test_tmpdir();
    g_autofree char *sub = g_build_filename(d, "q", NULL);
    g_assert_cmpint(g_mkdir(sub, 0700), ==, 0);
    g_autoptr(GError) err = NULL;
    g_assert_true(kr_sync_dir_path(sub, &err));
    struct stat st1, st2;
    g_assert_cmpint(stat(sub, &st1), ==, 0);
    g_assert_cmpint(g_rmdir(sub), ==, 0);
    /* Keep the old inode number from coming straight back. */
    g_autofree char *other = g_build_filename(d, "other", NULL);
    g_assert_cmpint(g_mkdir(other, 0700), ==, 0);
    g_assert_cmpint(g_mkdir(sub, 0700), ==, 0);
    g_assert_cmpint(stat(sub, &st2), ==, 0);
    g_assert_true(kr_sync_dir_path(sub, &err));
    g_assert_no_error(err);
    g_assert_cmpint(g_rmdir(sub), ==, 0);
    g_assert_false(kr_sync_dir_path(sub, &err));
    g_assert_error(err, G_IO_ERROR, G_IO_ERROR_NOT_FOUND);
}

int
main(int argc, char **argv)
{
    kr_test_init(&argc, &argv);
    g_test_add_func("/sync/dir", test_dir);
    g_test_add_func("/sync/errors", test_errors);
    g_test_add_func("/sync/group", test_group);
    g_test_add_func("/sync/path-reuse", test_path_reuse);
    return g_test_run();
}
