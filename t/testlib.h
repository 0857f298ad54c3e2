/* SPDX-License-Identifier: MIT */
/*
 * testlib.h - shared helpers for kurir's GLib test programs.
 *
 *   kr_test_init(&argc, &argv)   g_test_init with TAP output forced on
 *   kr_test_tmpdir()             a fresh temp directory, removed at exit
 *   kr_test_build_dir()          $KURIR_BUILD or "build" (absolute)
 */
#ifndef KR_TESTLIB_H
#define KR_TESTLIB_H
#include <glib.h>

void kr_test_init(int *argc, char ***argv);
char *kr_test_tmpdir(void);
const char *kr_test_build_dir(void);
void kr_test_rm_rf(const char *path);

#endif
