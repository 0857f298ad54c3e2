/* SPDX-License-Identifier: MIT */
/*
 * test-dsn.c - composing delivery status notifications (modules/bounce/
 * dsn.c): the MIME structure and CRLF line ends, the per-message and
 * per-recipient fields, what RET and max_return_size return, bare LFs of
 * the original, one-line field values, the Status check, and the other
 * kinds (delay warning, postmaster's copy, report to postmaster), and
 * success reports (NOTIFY=SUCCESS: delivered, relayed, expanded).
 */
#include "testlib.h"
#include "../core/kr-internal.h"
#include "bounce/dsn.h"

static KrMsg *
spool(const char *sender, const char *content)
{
    GError *err = NULL;
    KrMsg *m = kr_msg_new_spool(KR_QUEUE_INCOMING, &err);
    g_assert_no_error(err);
    kr_msg_set_sender(m, sender);
    g_assert_true(kr_msg_append(m, content, strlen(content), &err));
    return m;
}

static char *
content(KrMsg *m)
{
    GString *s = g_string_new(NULL);
    char buf[4096];
    gssize n;
    goffset off = 0;
    while ((n = kr_msg_read(m, off, buf, sizeof buf, NULL)) > 0) {
        g_string_append_len(s, buf, n);
        off += n;
    }
    g_assert_cmpint(n, ==, 0);
    return g_string_free(s, FALSE);
}

static void
assert_crlf(const char *s)
{
    for (const char *p = s; *p; p++) {
        if (*p == '\n')
            g_assert_true(p > s && p[-1] == '\r');
        if (*p == '\r')
            g_assert_true(p[1] == '\n');
    }
}

static char *
compose(KrMsg *orig, const DsnRcpt *r, guint n, gint64 max_return)
{
    KrMsg *dsn = spool("", "");
    DsnOptions opt = {.reporting_mta = "mx.example.org",
                      .max_return_size = max_return,
                      .now = 1700000000,
                      .boundary = "BOUNDARY"};
    GError *err = NULL;
    g_assert_true(dsn_compose(dsn, orig, r, n, &opt, &err));
    g_assert_no_error(err);
    char *c = content(dsn);
    kr_msg_discard(dsn);
    kr_msg_unref(dsn);
    return c;
}

static void
test_full(void)
{
    KrMsg *orig = spool("alice@example.org", "Subject: hi\nFrom: alice@example.org\n\nline1\n"
                                             "line2 no newline");
    kr_msg_set_attr(orig, "envid", "ENV-1");
    DsnRcpt r[2] = {
        {.address = "bob@example.net",
         .orcpt = "rfc822;Bob.Orig@example.net",
         .action = "failed",
         .status = "5.1.1",
         .code = 550,
         .diag = "user unknown"},
        {.address = "carol@example.net",
         .action = "failed",
         .status = "4.4.7",
         .code = 451,
         .diag = "delivery time expired\r\nInjected: header",
         .remote_mta = "mx.example.net"},
    };
    g_autofree char *c = compose(orig, r, 2, 0);
    assert_crlf(c);
    g_assert_nonnull(strstr(c, "\r\nTo: <alice@example.org>\r\n"));
    g_assert_true(g_str_has_prefix(c, "From: Mail Delivery System <MAILER-DAEMON@mx.example.org>"));
    g_assert_nonnull(strstr(c, "Content-Type: multipart/report; report-type=delivery-status;\r\n"
                               "\tboundary=\"BOUNDARY\"\r\n"));
    g_assert_nonnull(strstr(c, "Auto-Submitted: auto-replied\r\n"));
    /* Three parts, then the close delimiter at the very end. */
    g_autofree char *bd = g_strdup("\r\n--BOUNDARY\r\n");
    guint parts = 0;
    for (const char *p = c; (p = strstr(p, bd)); p += strlen(bd))
        parts++;
    g_assert_cmpuint(parts, ==, 3);
    g_assert_true(g_str_has_suffix(c, "line2 no newline\r\n\r\n--BOUNDARY--\r\n"));
    /* Per-message fields. */
    g_assert_nonnull(strstr(c, "\r\nReporting-MTA: dns; mx.example.org\r\n"
                               "Original-Envelope-Id: ENV-1\r\n"));
    g_assert_nonnull(strstr(c, "\r\nArrival-Date: "));
    /* Per-recipient fields. */
    g_assert_nonnull(strstr(c, "\r\n\r\nOriginal-Recipient: rfc822; Bob.Orig@example.net\r\n"
                               "Final-Recipient: rfc822; bob@example.net\r\n"
                               "Action: failed\r\nStatus: 5.1.1\r\n"
                               "Diagnostic-Code: smtp; 550 5.1.1 user unknown\r\n"));
    g_assert_nonnull(strstr(c, "Final-Recipient: rfc822; carol@example.net\r\n"
                               "Action: failed\r\nStatus: 4.4.7\r\n"
                               "Remote-MTA: dns; mx.example.net\r\n"));
    /* A CR LF in a diagnostic cannot start a new field. */
    g_assert_null(strstr(c, "\r\nInjected: header"));
    g_assert_nonnull(strstr(c, "delivery time expired??Injected: header"));
    /* The whole original, its bare LFs now CRLF. */
    g_assert_nonnull(strstr(c, "Content-Type: message/rfc822\r\n"));
    g_assert_nonnull(strstr(c, "\r\n\r\nSubject: hi\r\nFrom: alice@example.org\r\n\r\nline1\r\n"));
    g_assert_nonnull(strstr(c, "<bob@example.net>: user unknown (5.1.1)\r\n"));
    kr_msg_discard(orig);
    kr_msg_unref(orig);
}

static void
test_headers_only(void)
{
    DsnRcpt r = {
        .address = "bob@example.net", .status = "5.2.2", .code = 552, .diag = "mailbox full"};
    /* RET=HDRS */
    KrMsg *orig = spool("a@example.org", "Subject: hdrs\r\nX-A: 1\r\n\r\nsecret body\r\n");
    kr_msg_set_attr(orig, "ret", "hdrs");
    g_autofree char *c = compose(orig, &r, 1, 0);
    assert_crlf(c);
    g_assert_nonnull(strstr(c, "Content-Type: text/rfc822-headers\r\n"));
    g_assert_null(strstr(c, "secret body"));
    g_assert_true(g_str_has_suffix(c, "Subject: hdrs\r\nX-A: 1\r\n\r\n\r\n--BOUNDARY--\r\n"));
    g_assert_null(strstr(c, "larger than"));
    kr_msg_discard(orig);
    kr_msg_unref(orig);

    /* RET=FULL but bigger than max_return_size: headers, and a note. */
    g_autofree char *body = g_strnfill(5000, 'z');
    g_autofree char *text = g_strconcat("Subject: big\r\n\r\n", body, "\r\n", NULL);
    orig = spool("a@example.org", text);
    kr_msg_set_attr(orig, "ret", "FULL");
    g_autofree char *c2 = compose(orig, &r, 1, 1000);
    g_assert_nonnull(strstr(c2, "Content-Type: text/rfc822-headers\r\n"));
    g_assert_null(strstr(c2, "zzzz"));
    g_assert_nonnull(strstr(c2, "larger than 1000 bytes: only its headers are returned"));
    g_autofree char *c3 = compose(orig, &r, 1, 100000);
    g_assert_nonnull(strstr(c3, "Content-Type: message/rfc822\r\n"));
    g_assert_nonnull(strstr(c3, body));
    kr_msg_discard(orig);
    kr_msg_unref(orig);
}

static char *
compose_kind(KrMsg *orig, const DsnRcpt *r, guint n, DsnKind kind, const char *to)
{
    KrMsg *dsn = spool("", "");
    DsnOptions opt = {.reporting_mta = "mx.example.org",
                      .now = 1700000000,
                      .boundary = "BOUNDARY",
                      .kind = kind,
                      .to = to};
    GError *err = NULL;
    g_assert_true(dsn_compose(dsn, orig, r, n, &opt, &err));
    g_assert_no_error(err);
    char *c = content(dsn);
    kr_msg_discard(dsn);
    kr_msg_unref(dsn);
    return c;
}

/* Delay warnings and everything to postmaster: their own subject and
 * text, the headers only even with RET=FULL, To: as given. A permanent
 * reply from a remote host is quoted as such in the text. */
static void
test_kinds(void)
{
    KrMsg *orig = spool("alice@example.org", "Subject: k\r\n\r\nprivate body\r\n");
    kr_msg_set_attr(orig, "ret", "FULL");
    DsnRcpt d = {.address = "bob@example.net",
                 .action = "delayed",
                 .status = "4.4.1",
                 .code = 451,
                 .diag = "connect to mx: Connection refused",
                 .remote_mta = "mx.example.net"};
    g_autofree char *c = compose_kind(orig, &d, 1, DSN_KIND_DELAY, NULL);
    assert_crlf(c);
    g_assert_nonnull(strstr(c, "\r\nSubject: Delayed Mail (still being retried)\r\n"));
    g_assert_nonnull(strstr(c, "\r\nTo: <alice@example.org>\r\n"));
    g_assert_nonnull(strstr(c, "THIS IS A WARNING ONLY"));
    g_assert_nonnull(strstr(c, "\r\nAction: delayed\r\nStatus: 4.4.1\r\n"));
    g_assert_nonnull(strstr(c, "Content-Type: text/rfc822-headers\r\n"));
    g_assert_null(strstr(c, "private body"));
    /* not "host ... said" for a temporary failure */
    g_assert_nonnull(strstr(c, "<bob@example.net>: connect to mx: Connection refused (4.4.1)"));

    DsnRcpt f = {.address = "bob@example.net",
                 .action = "failed",
                 .status = "5.1.1",
                 .code = 550,
                 .diag = "no such user (in reply to RCPT TO command)",
                 .remote_mta = "mx.example.net"};
    g_autofree char *cp = compose_kind(orig, &f, 1, DSN_KIND_COPY, "postmaster@example.org");
    g_assert_nonnull(strstr(cp, "\r\nSubject: Postmaster Copy: Undelivered Mail\r\n"));
    g_assert_nonnull(strstr(cp, "\r\nTo: <postmaster@example.org>\r\n"));
    g_assert_nonnull(strstr(cp, "sent to\r\n<alice@example.org>"));
    g_assert_nonnull(strstr(cp, "Content-Type: text/rfc822-headers\r\n"));
    g_assert_null(strstr(cp, "private body"));
    g_assert_nonnull(strstr(cp, "<bob@example.net>: host mx.example.net said: 550 5.1.1 no such "
                                "user (in reply to RCPT TO command)\r\n"));

    g_autofree char *pm = compose_kind(orig, &f, 1, DSN_KIND_POSTMASTER, "postmaster@example.org");
    g_assert_nonnull(strstr(pm, "\r\nSubject: Undeliverable mail from the null sender\r\n"));
    g_assert_nonnull(strstr(pm, "never returned"));
    g_assert_null(strstr(pm, "private body"));

    /* The sender's failure report still returns the whole message. */
    g_autofree char *full = compose_kind(orig, &f, 1, DSN_KIND_FAILURE, NULL);
    g_assert_nonnull(strstr(full, "\r\nSubject: Undelivered Mail Returned to Sender\r\n"));
    g_assert_nonnull(strstr(full, "private body"));
    kr_msg_discard(orig);
    kr_msg_unref(orig);
}

/* Success reports: the Action names, Status 2.0.0 whatever the stored
 * code says, a 250 Diagnostic-Code, the headers only unless RET=FULL. */
static void
test_success(void)
{
    g_assert_cmpstr(dsn_success_action(FALSE, FALSE), ==, "delivered");
    g_assert_cmpstr(dsn_success_action(FALSE, TRUE), ==, "relayed");
    g_assert_cmpstr(dsn_success_action(TRUE, FALSE), ==, "expanded");
    g_assert_cmpstr(dsn_success_action(TRUE, TRUE), ==, "expanded");
    g_assert_true(dsn_is_success("delivered") && dsn_is_success("relayed") &&
                  dsn_is_success("expanded"));
    g_assert_false(dsn_is_success("failed") || dsn_is_success("delayed") || dsn_is_success(NULL));

    KrMsg *orig = spool("alice@example.org", "Subject: s\r\n\r\nprivate body\r\n");
    kr_msg_set_attr(orig, "envid", "env-1");
    DsnRcpt r[2] = {{.address = "bob@example.net",
                     .orcpt = "rfc822;Bob@example.net",
                     .action = dsn_success_action(FALSE, FALSE),
                     .status = "",
                     .code = 250,
                     .diag = "delivered to maildir"},
                    {.address = "team@example.net",
                     .action = dsn_success_action(TRUE, FALSE),
                     .status = "2.0.0",
                     .code = 0,
                     .diag = "alias team: 3 recipient(s)"}};
    g_autofree char *c = compose_kind(orig, r, 2, DSN_KIND_SUCCESS, NULL);
    assert_crlf(c);
    g_assert_nonnull(strstr(c, "\r\nSubject: Successful Mail Delivery Report\r\n"));
    g_assert_nonnull(strstr(c, "\r\nTo: <alice@example.org>\r\n"));
    g_assert_nonnull(strstr(c, "successfully delivered"));
    g_assert_nonnull(strstr(c, "Original-Envelope-Id: env-1\r\n"));
    g_assert_nonnull(strstr(c, "Original-Recipient: rfc822; Bob@example.net\r\n"
                               "Final-Recipient: rfc822; bob@example.net\r\n"
                               "Action: delivered\r\nStatus: 2.0.0\r\n"));
    g_assert_nonnull(strstr(c, "Diagnostic-Code: smtp; 250 2.0.0 delivered to maildir\r\n"));
    g_assert_nonnull(strstr(c, "Final-Recipient: rfc822; team@example.net\r\n"
                               "Action: expanded\r\nStatus: 2.0.0\r\n"));
    g_assert_nonnull(strstr(c, "<team@example.net>: expanded (alias team: 3 recipient(s))\r\n"));
    g_assert_nonnull(strstr(c, "Content-Type: text/rfc822-headers\r\n"));
    g_assert_null(strstr(c, "private body"));
    g_assert_null(strstr(c, "Undelivered"));

    /* RET=FULL applies to success reports too. */
    kr_msg_set_attr(orig, "ret", "FULL");
    g_autofree char *full = compose_kind(orig, r, 1, DSN_KIND_SUCCESS, NULL);
    g_assert_nonnull(strstr(full, "Content-Type: message/rfc822\r\n"));
    g_assert_nonnull(strstr(full, "private body"));
    kr_msg_discard(orig);
    kr_msg_unref(orig);
}

static void
test_status(void)
{
    g_assert_cmpstr(dsn_status("5.1.1"), ==, "5.1.1");
    g_assert_cmpstr(dsn_status("4.4.7"), ==, "4.4.7");
    g_assert_cmpstr(dsn_status("5.123.456"), ==, "5.123.456");
    g_assert_cmpstr(dsn_status("2.0.0"), ==, "5.0.0");
    g_assert_cmpstr(dsn_status(""), ==, "5.0.0");
    g_assert_cmpstr(dsn_status(NULL), ==, "5.0.0");
    g_assert_cmpstr(dsn_status("5.1"), ==, "5.0.0");
    g_assert_cmpstr(dsn_status("5.1.1x"), ==, "5.0.0");
    g_assert_cmpstr(dsn_status("5.1234.1"), ==, "5.0.0");
    g_assert_cmpstr(dsn_status("5..1"), ==, "5.0.0");
    g_assert_cmpint(dsn_return_wanted(NULL), ==, DSN_RETURN_DEFAULT);
    g_assert_cmpint(dsn_return_wanted("hdrs"), ==, DSN_RETURN_HEADERS);
    g_assert_cmpint(dsn_return_wanted("FULL"), ==, DSN_RETURN_FULL);
    g_assert_cmpint(dsn_return_wanted("bogus"), ==, DSN_RETURN_DEFAULT);
}

int
main(int argc, char **argv)
{
    kr_test_init(&argc, &argv);
    g_autofree char *tmp = kr_test_tmpdir();
    kr_core_set_data_dir(tmp);
    GError *err = NULL;
    if (!kr_queue_init_dirs(&err))
        g_error("%s", err->message);
    g_test_add_func("/dsn/full", test_full);
    g_test_add_func("/dsn/headers-only", test_headers_only);
    g_test_add_func("/dsn/status", test_status);
    g_test_add_func("/dsn/kinds", test_kinds);
    g_test_add_func("/dsn/success", test_success);
    return g_test_run();
}
