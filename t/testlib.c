/* SPDX-License-Identifier: MIT */
/*
 * testlib.c - shared helpers for kurir's GLib test programs: TAP output,
 * temp directories (removed at exit unless KURIR_KEEP_TMP is set), and
 * the location of the build directory under test.
 */
#include "testlib.h"
#include <glib/gstdio.h>
#include <ftw.h>
#include <stdlib.h>
#include <unistd.h>

static GPtrArray *tmpdirs;

static int
rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

void
kr_test_rm_rf(const char *path)
{
    nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void
cleanup_tmpdirs(void)
{
    if (!tmpdirs || g_getenv("KURIR_KEEP_TMP"))
        return;
    for (guint i = 0; i < tmpdirs->len; i++)
        kr_test_rm_rf(tmpdirs->pdata[i]);
}

void
kr_test_init(int *argc, char ***argv)
{
    static char **nargv; /* lives until exit, like argv */
    nargv = g_new0(char *, *argc + 2);
    nargv[0] = (*argv)[0];
    nargv[1] = (char *)"--tap";
    for (int i = 1; i < *argc; i++)
        nargv[i + 1] = (*argv)[i];
    *argc += 1;
    *argv = nargv;
    g_test_init(argc, argv, NULL);
    /* A failed check marks its test failed and goes on, instead of a TAP
     * "Bail out!" that would stop prove's whole run. */
    g_test_set_nonfatal_assertions();
}

char *
kr_test_tmpdir(void)
{
    GError *err = NULL;
    char *d = g_dir_make_tmp("kurir-test-XXXXXX", &err);
    g_assert_no_error(err);
    if (!tmpdirs) {
        tmpdirs = g_ptr_array_new();
        atexit(cleanup_tmpdirs);
    }
    g_ptr_array_add(tmpdirs, g_strdup(d));
    return d;
}

const char *
kr_test_build_dir(void)
{
    static char *dir;
    if (!dir) {
        const char *b = g_getenv("KURIR_BUILD");
        if (!b)
            b = "build";
        g_autofree char *cwd = g_get_current_dir();
        dir = g_path_is_absolute(b) ? g_strdup(b) : g_build_filename(cwd, b, NULL);
    }
    return dir;
}
