/* SPDX-License-Identifier: MIT */
/*
 * test-file.c - kr_file_read_bounded (core/kr-file.c): whole reads, the
 * size bound, missing files, non-regular files.
 */
#include "testlib.h"
#include <kurir/kr-file.h>
#include <gio/gio.h>
#include <glib/gstdio.h>

static void
test_read(void)
{
    g_autofree char *dir = kr_test_tmpdir();
    g_autofree char *p = g_build_filename(dir, "map", NULL);
    g_assert_true(g_file_set_contents(p, "a: b\nc\0d\n", 10, NULL));
    struct stat st;
    gsize len = 0;
    GError *err = NULL;
    g_autofree char *buf = kr_file_read_bounded(p, 10, &st, &len, &err);
    g_assert_no_error(err);
    g_assert_cmpuint(len, ==, 10);
    g_assert_cmpmem(buf, 10, "a: b\nc\0d\n", 10);
    g_assert_cmpint(buf[10], ==, 0);
    g_assert_cmpint(st.st_size, ==, 10);
}

static void
test_errors(void)
{
    g_autofree char *dir = kr_test_tmpdir();
    g_autofree char *p = g_build_filename(dir, "big", NULL);
    g_assert_true(g_file_set_contents(p, "0123456789", -1, NULL));
    GError *err = NULL;
    g_assert_null(kr_file_read_bounded(p, 9, NULL, NULL, &err));
    g_assert_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_DATA);
    g_assert_nonnull(strstr(err->message, "too large"));
    g_clear_error(&err);
    g_autofree char *missing = g_build_filename(dir, "nope", NULL);
    g_assert_null(kr_file_read_bounded(missing, 100, NULL, NULL, &err));
    g_assert_error(err, G_IO_ERROR, G_IO_ERROR_NOT_FOUND);
    g_clear_error(&err);
    g_assert_null(kr_file_read_bounded(dir, 100, NULL, NULL, &err)); /* a directory */
    g_assert_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_DATA);
    g_assert_nonnull(strstr(err->message, "not a regular file"));
    g_clear_error(&err);
}

int
main(int argc, char **argv)
{
    kr_test_init(&argc, &argv);
    g_test_add_func("/file/read", test_read);
    g_test_add_func("/file/errors", test_errors);
    return g_test_run();
}
