/* SPDX-License-Identifier: MIT */
/*
 * test-smtp-relay.c - unit tests for modules/smtp/smtp-relay.c: parsing
 * trusted_networks (IPv4, IPv6, bare hosts, bad entries) and matching
 * client addresses against them (prefix edges, IPv4-mapped IPv6).
 *
 * Paths: /smtp-relay/<case>.
 */
#include "testlib.h"
#include "smtp/smtp.h"

static GArray *
nets(const char *const *list, GError **error)
{
    GArray *a = g_array_new(FALSE, FALSE, sizeof(SmtpNet));
    if (!smtp_nets_parse((char **)list, a, error)) {
        g_array_unref(a);
        return NULL;
    }
    return a;
}

static void
test_ipv4(void)
{
    const char *list[] = {"10.0.0.0/8", "192.168.1.0/24", "203.0.113.7", "172.16.0.0/12", NULL};
    g_autoptr(GError) err = NULL;
    g_autoptr(GArray) n = nets(list, &err);
    g_assert_no_error(err);
    g_assert_cmpuint(n->len, ==, 4);
    g_assert_true(smtp_nets_match(n, "10.0.0.1"));
    g_assert_true(smtp_nets_match(n, "10.255.255.255"));
    g_assert_false(smtp_nets_match(n, "11.0.0.0"));
    g_assert_false(smtp_nets_match(n, "9.255.255.255"));
    g_assert_true(smtp_nets_match(n, "192.168.1.200"));
    g_assert_false(smtp_nets_match(n, "192.168.2.1"));
    g_assert_true(smtp_nets_match(n, "203.0.113.7"));
    g_assert_false(smtp_nets_match(n, "203.0.113.8"));
    /* /12 ends mid-byte: 172.16.0.0 - 172.31.255.255 */
    g_assert_true(smtp_nets_match(n, "172.16.0.1"));
    g_assert_true(smtp_nets_match(n, "172.31.255.254"));
    g_assert_false(smtp_nets_match(n, "172.32.0.1"));
    g_assert_false(smtp_nets_match(n, "172.15.255.255"));
    /* an IPv4 client seen through an IPv6 socket */
    g_assert_true(smtp_nets_match(n, "::ffff:10.1.2.3"));
    g_assert_false(smtp_nets_match(n, "::ffff:11.1.2.3"));
    /* garbage never matches */
    g_assert_false(smtp_nets_match(n, "local"));
    g_assert_false(smtp_nets_match(n, ""));
    g_assert_false(smtp_nets_match(n, NULL));
}

static void
test_ipv6(void)
{
    const char *list[] = {"::1/128", "2001:db8::/32", "fe80::/10", NULL};
    g_autoptr(GError) err = NULL;
    g_autoptr(GArray) n = nets(list, &err);
    g_assert_no_error(err);
    g_assert_true(smtp_nets_match(n, "::1"));
    g_assert_false(smtp_nets_match(n, "::2"));
    g_assert_true(smtp_nets_match(n, "2001:db8:1234::5"));
    g_assert_false(smtp_nets_match(n, "2001:db9::1"));
    g_assert_true(smtp_nets_match(n, "febf::1"));
    g_assert_false(smtp_nets_match(n, "fec0::1"));
    /* families never cross */
    g_assert_false(smtp_nets_match(n, "127.0.0.1"));
}

static void
test_all_and_none(void)
{
    const char *all[] = {"0.0.0.0/0", "::/0", NULL};
    g_autoptr(GError) err = NULL;
    g_autoptr(GArray) n = nets(all, &err);
    g_assert_no_error(err);
    g_assert_true(smtp_nets_match(n, "198.51.100.1"));
    g_assert_true(smtp_nets_match(n, "2001:db8::1"));
    const char *none[] = {NULL};
    g_autoptr(GArray) e = nets(none, &err);
    g_assert_no_error(err);
    g_assert_cmpuint(e->len, ==, 0);
    g_assert_false(smtp_nets_match(e, "127.0.0.1"));
}

static void
test_bad(void)
{
    static const char *const bad[] = {
        "10.0.0.0/33", "::/129", "10.0.0.1/8", "10.0.0.0/", "10.0.0.0/x", "10.0.0",
        "example.com", "10.0.0.0/8/8", "2001:db8::1/32", "", "10.0.0.0/-1",
    };
    for (gsize i = 0; i < G_N_ELEMENTS(bad); i++) {
        const char *list[] = {"127.0.0.0/8", bad[i], NULL};
        GError *err = NULL;
        g_test_message("%s", bad[i]);
        GArray *n = nets(list, &err);
        g_assert_null(n);
        g_assert_nonnull(err);
        g_assert_nonnull(strstr(err->message, "trusted_networks"));
        g_error_free(err);
    }
}

int
main(int argc, char **argv)
{
    kr_test_init(&argc, &argv);
    g_test_add_func("/smtp-relay/ipv4", test_ipv4);
    g_test_add_func("/smtp-relay/ipv6", test_ipv6);
    g_test_add_func("/smtp-relay/all-and-none", test_all_and_none);
    g_test_add_func("/smtp-relay/bad", test_bad);
    return g_test_run();
}
