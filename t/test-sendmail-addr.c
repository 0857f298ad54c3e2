/* SPDX-License-Identifier: MIT */
/*
 * test-sendmail-addr.c - the address helpers of `sendmail -t`
 * (modules/queue/sendmail-addr.c): address lists from To/Cc/Bcc values
 * and the check of envelope addresses.
 */
#include "testlib.h"
#include "queue/queue.h"

/* Parse and join the results with '|'; "ERR" on a syntax error. */
static char *
parse(const char *value)
{
    g_autoptr(GPtrArray) out = g_ptr_array_new_with_free_func(g_free);
    if (!sendmail_parse_address_list(value, out))
        return g_strdup("ERR");
    g_ptr_array_add(out, NULL);
    return g_strjoinv("|", (char **)out->pdata);
}

static void
check(const char *value, const char *want)
{
    g_autofree char *got = parse(value);
    if (g_strcmp0(got, want) != 0)
        g_error("parse(%s) = %s, want %s", value, got, want);
}

static void
test_lists(void)
{
    check("a@example.org", "a@example.org");
    check("  a@example.org  ", "a@example.org");
    check("a@x, b@y,c@z", "a@x|b@y|c@z");
    check("John Doe <john@example.org>", "john@example.org");
    check("\"Doe, John\" <john@example.org>, jane@example.org",
          "john@example.org|jane@example.org");
    check("\"a <b@c>\" <real@example.org>", "real@example.org");
    check("john@example.org (John Doe)", "john@example.org");
    check("(comment (nested) \\) ) x@y", "x@y");
    check("<x@y>", "x@y");
    check("Name <@relay.example,@other.example:user@example.org>", "user@example.org");
    check("undisclosed-recipients:;", "");
    check("friends: a@x, B <b@y>; c@z", "a@x|b@y|c@z");
    check("a@x,,b@y", "a@x|b@y");
    check("", "");
    check("user", "user");
    check("\"quoted local\"@example.org", "\"quoted local\"@example.org");
    check("first . last @ example . org", "first.last@example.org");
    check("<>", "");
}

static void
test_list_errors(void)
{
    check("John Doe john@example.org", "ERR"); /* words without brackets */
    check("<a@x", "ERR");
    check("a@x>", "ERR");
    check("\"unterminated@x", "ERR");
    check("(unterminated x@y", "ERR");
    check("<a@x> junk", "ERR");
    check("a@x; b@y", "ERR"); /* ';' outside a group */
    check("<@route-without-colon>", "ERR");
}

static void
test_address_ok(void)
{
    static const char *const good[] = {"a@example.org",
                                       "first.last@example.org",
                                       "user+tag@sub.example.org",
                                       "user",
                                       "\"with space\"@example.org",
                                       "o'brien@example.org",
                                       "x@[192.0.2.1]",
                                       "ü@bücher.example",
                                       "a_b@c-d.example",
                                       NULL};
    static const char *const bad[] = {"",
                                      "@example.org",
                                      "a@",
                                      "a@@b",
                                      "a b@example.org",
                                      "a@exa mple.org",
                                      "a@example..org",
                                      ".a@example.org",
                                      "a.@example.org",
                                      "a..b@example.org",
                                      "<a@example.org>",
                                      "a@example.org>",
                                      "a\r\n@example.org",
                                      "a@exam\tple.org",
                                      "a\x01@example.org",
                                      "a@.example.org",
                                      "a,b@example.org",
                                      "\"unterminated@x",
                                      "a@ex(ample).org",
                                      "\xff\xfe@example.org",
                                      NULL};
    for (const char *const *g = good; *g; g++)
        if (!sendmail_address_ok(*g))
            g_error("good address refused: %s", *g);
    for (const char *const *b = bad; *b; b++)
        if (sendmail_address_ok(*b))
            g_error("bad address accepted: %s", *b);
    /* Length limits: 64 bytes of local part, 255 of domain. */
    g_autofree char *l64 = g_strnfill(64, 'a'), *l65 = g_strnfill(65, 'a');
    g_autofree char *ok = g_strconcat(l64, "@x.org", NULL);
    g_autofree char *too = g_strconcat(l65, "@x.org", NULL);
    g_assert_true(sendmail_address_ok(ok));
    g_assert_false(sendmail_address_ok(too));
    g_autofree char *label64 = g_strnfill(64, 'd');
    g_autofree char *longlabel = g_strconcat("a@", label64, ".org", NULL);
    g_assert_false(sendmail_address_ok(longlabel));
}

int
main(int argc, char **argv)
{
    kr_test_init(&argc, &argv);
    g_test_add_func("/sendmail-addr/lists", test_lists);
    g_test_add_func("/sendmail-addr/list-errors", test_list_errors);
    g_test_add_func("/sendmail-addr/address-ok", test_address_ok);
    return g_test_run();
}
