/* SPDX-License-Identifier: MIT */
/*
 * test-failcount.c - failures per key in windows (core/kr-failcount.c):
 * counting, limits, window expiry, the bound on keys.
 */
#include "testlib.h"
#include <kurir/kr-failcount.h>

static void
test_count_and_limit(void)
{
    g_autoptr(KrFailCount) fc = kr_failcount_new(3600, 100);
    g_assert_false(kr_failcount_exceeded(fc, "192.0.2.1", 3));
    for (int i = 0; i < 3; i++)
        kr_failcount_add(fc, "192.0.2.1");
    g_assert_true(kr_failcount_exceeded(fc, "192.0.2.1", 3));
    g_assert_false(kr_failcount_exceeded(fc, "192.0.2.1", 4));
    g_assert_false(kr_failcount_exceeded(fc, "192.0.2.1", 0)); /* 0: no limit */
    g_assert_false(kr_failcount_exceeded(fc, "192.0.2.2", 1)); /* per key */
    g_assert_false(kr_failcount_exceeded(fc, NULL, 1));
    kr_failcount_add(fc, NULL); /* ignored, no crash */
}

static void
test_window_expires(void)
{
    g_autoptr(KrFailCount) fc = kr_failcount_new(1, 100);
    kr_failcount_add(fc, "a");
    kr_failcount_add(fc, "a");
    g_assert_true(kr_failcount_exceeded(fc, "a", 2));
    g_usleep(2100 * 1000);
    g_assert_false(kr_failcount_exceeded(fc, "a", 1));
    kr_failcount_add(fc, "a"); /* a new window counts from one */
    g_assert_true(kr_failcount_exceeded(fc, "a", 1));
    g_assert_false(kr_failcount_exceeded(fc, "a", 2));
}

static void
test_bounded_keys(void)
{
    g_autoptr(KrFailCount) fc = kr_failcount_new(3600, 10);
    for (int i = 0; i < 50; i++) {
        g_autofree char *k = g_strdup_printf("k%d", i);
        kr_failcount_add(fc, k);
    }
    /* The first ten are counted; later fresh keys are not (table full). */
    g_assert_true(kr_failcount_exceeded(fc, "k0", 1));
    g_assert_true(kr_failcount_exceeded(fc, "k9", 1));
    g_assert_false(kr_failcount_exceeded(fc, "k10", 1));
    /* Known keys still count. */
    kr_failcount_add(fc, "k0");
    g_assert_true(kr_failcount_exceeded(fc, "k0", 2));
}

int
main(int argc, char **argv)
{
    kr_test_init(&argc, &argv);
    g_test_add_func("/failcount/count-and-limit", test_count_and_limit);
    g_test_add_func("/failcount/window", test_window_expires);
    g_test_add_func("/failcount/bounded", test_bounded_keys);
    return g_test_run();
}
