/* SPDX-License-Identifier: MIT */
/*
 * test-rewrite.c - unit tests for trivial-rewrite's pure parts:
 * address clean-up and resolution (modules/rewrite/rewrite-resolve.c)
 * and the plain-text maps (modules/rewrite/rewrite-map.c).
 *
 *   /rewrite/clean/...      default domain, lowercasing, source routes,
 *                           quoted local parts, refused addresses
 *   /rewrite/resolve/...    local, smtp, relay, error; canonical and
 *                           virtual maps; transport map precedence
 *   /rewrite/map/...        good files, bad files with FILE:LINE,
 *                           reload detection, missing files, huge maps
 */
#include "testlib.h"
#include "rewrite/rewrite-map.h"
#include "rewrite/rewrite-resolve.h"

#include <gio/gio.h>
#include <string.h>
#include <unistd.h>

/* --- helpers ---------------------------------------------------------------- */

static gboolean
test_is_local(const char *domain)
{
    return g_ascii_strcasecmp(domain, "localhost") == 0 ||
           g_ascii_strcasecmp(domain, "example.org") == 0;
}

static RwMap *
parse_ok(const char *text, RwMapKind kind)
{
    g_autoptr(GPtrArray) errors = g_ptr_array_new_with_free_func(g_free);
    RwMap *m = rw_map_parse("map", text, strlen(text), kind, errors);
    for (guint i = 0; i < errors->len; i++)
        g_test_message("unexpected: %s", (char *)errors->pdata[i]);
    g_assert_nonnull(m);
    g_assert_cmpuint(errors->len, ==, 0);
    return m;
}

/* The errors of a bad map, joined by '|'. */
static char *
parse_bad(const char *text, gssize len, RwMapKind kind)
{
    g_autoptr(GPtrArray) errors = g_ptr_array_new_with_free_func(g_free);
    RwMap *m = rw_map_parse("map", text, len < 0 ? strlen(text) : (gsize)len, kind, errors);
    g_assert_null(m);
    g_assert_cmpuint(errors->len, >, 0);
    g_ptr_array_add(errors, NULL);
    return g_strjoinv("|", (char **)errors->pdata);
}

static char *
clean(const char *in)
{
    g_autoptr(GError) err = NULL;
    char *out = rw_addr_clean(in, "localhost", NULL, &err);
    if (!out)
        g_test_message("%s: %s", in, err->message);
    return out;
}

static void
assert_refused(const char *in, const char *why)
{
    g_autoptr(GError) err = NULL;
    g_autofree char *out = rw_addr_clean(in, "localhost", NULL, &err);
    g_assert_null(out);
    g_assert_nonnull(err);
    g_assert_nonnull(strstr(err->message, why));
}

typedef struct {
    char *address, *transport, *nexthop, *reason, *steps;
    int code;
    char ecode[12];
} Res;

static Res
resolve(const RwContext *ctx, const char *address)
{
    KrResolution r = {.struct_size = sizeof r};
    g_autoptr(GString) steps = g_string_new(NULL);
    rw_resolve(ctx, address, &r, steps);
    Res out = {.address = g_strdup(r.address),
               .transport = g_strdup(r.transport),
               .nexthop = g_strdup(r.nexthop),
               .reason = g_strdup(r.reason),
               .steps = g_strdup(steps->str),
               .code = r.code};
    memcpy(out.ecode, r.ecode, sizeof out.ecode);
    kr_resolution_clear(&r);
    g_assert_null(r.address);
    return out;
}

static void
res_clear(Res *r)
{
    g_free(r->address);
    g_free(r->transport);
    g_free(r->nexthop);
    g_free(r->reason);
    g_free(r->steps);
}

/* --- clean-up ------------------------------------------------------------------ */

static void
test_clean_basic(void)
{
    g_autofree char *a = clean("alice");
    g_assert_cmpstr(a, ==, "alice@localhost");
    g_autofree char *b = clean("Alice@EXAMPLE.Org");
    g_assert_cmpstr(b, ==, "Alice@example.org"); /* local part keeps its case */
    g_autofree char *c = clean("  <bob@example.org.>  ");
    g_assert_cmpstr(c, ==, "bob@example.org");
    g_autofree char *d = clean("@relay1.test,@relay2.test:carol@Example.NET");
    g_assert_cmpstr(d, ==, "carol@example.net");
    g_autofree char *e = clean("<@relay.test:dave@x.test>");
    g_assert_cmpstr(e, ==, "dave@x.test");
    g_autofree char *f = clean("\"john doe\"@localhost");
    g_assert_cmpstr(f, ==, "\"john doe\"@localhost");
    g_autofree char *g = clean("\"a@b\"@Example.org");
    g_assert_cmpstr(g, ==, "\"a@b\"@example.org");
    g_autofree char *h = clean("user@[192.0.2.1]");
    g_assert_cmpstr(h, ==, "user@[192.0.2.1]");
    g_autofree char *i = clean("jörg@Bücher.example");
    g_assert_cmpstr(i, ==, "jörg@bücher.example");

    g_autoptr(GString) steps = g_string_new(NULL);
    g_autofree char *j = rw_addr_clean("@r.test:x@EX.test.", "localhost", steps, NULL);
    g_assert_cmpstr(j, ==, "x@ex.test");
    g_assert_nonnull(strstr(steps->str, "source route @r.test: removed"));
    g_assert_nonnull(strstr(steps->str, "trailing dot"));
    g_assert_nonnull(strstr(steps->str, "domain lowercased"));
}

static void
test_clean_refused(void)
{
    assert_refused("", "empty address");
    assert_refused("<>", "empty address");
    assert_refused("@x.test", "source route without ':'");
    assert_refused("@x.test:", "empty address");
    assert_refused("a\tb@x.test", "control character");
    assert_refused("a\r\nRCPT TO:<b@x.test>", "control character");
    assert_refused("a\x7f@x.test", "control character");
    assert_refused("a b@x.test", "not allowed");
    assert_refused("a,b@x.test", "not allowed");
    assert_refused("a@b@x.test", "not allowed");
    assert_refused("a@", "empty domain");
    assert_refused("@", "source route");
    assert_refused("a@x..test", "bad domain");
    assert_refused("a@-x.test", "bad domain");
    assert_refused("a@x_y.test", "not allowed in a domain");
    assert_refused("a@[1.2.3.4", "address literal");
    assert_refused(".a@x.test", "misplaced dot");
    assert_refused("a..b@x.test", "misplaced dot");
    assert_refused("\"abc@x.test", "unterminated");
    assert_refused("\xff\xfe@x.test", "UTF-8");
    g_autofree char *long_local = g_strnfill(65, 'a');
    g_autofree char *l1 = g_strconcat(long_local, "@x.test", NULL);
    assert_refused(l1, "longer than 64");
    g_autofree char *label = g_strnfill(64, 'b');
    g_autofree char *l2 = g_strconcat("a@", label, ".test", NULL);
    assert_refused(l2, "label longer than 63");
    g_autofree char *huge = g_strnfill(5000, 'c');
    assert_refused(huge, "too long");
}

/* --- resolution ------------------------------------------------------------------- */

static void
test_resolve_transports(void)
{
    RwContext ctx = {.default_domain = "localhost", .is_local = test_is_local};
    Res r = resolve(&ctx, "Alice");
    g_assert_cmpstr(r.address, ==, "Alice@localhost");
    g_assert_cmpstr(r.transport, ==, "local");
    g_assert_cmpstr(r.nexthop, ==, "localhost");
    g_assert_nonnull(strstr(r.steps, "default domain localhost appended"));
    g_assert_nonnull(strstr(r.steps, "served here"));
    res_clear(&r);

    r = resolve(&ctx, "bob@Example.ORG");
    g_assert_cmpstr(r.transport, ==, "local");
    g_assert_cmpstr(r.nexthop, ==, "example.org");
    res_clear(&r);

    r = resolve(&ctx, "carol@Remote.TEST");
    g_assert_cmpstr(r.address, ==, "carol@remote.test");
    g_assert_cmpstr(r.transport, ==, "smtp");
    g_assert_cmpstr(r.nexthop, ==, "remote.test");
    g_assert_nonnull(strstr(r.steps, "MX"));
    res_clear(&r);

    ctx.relayhost = "[Smarthost.test]:587";
    r = resolve(&ctx, "carol@remote.test");
    g_assert_cmpstr(r.transport, ==, "relay");
    g_assert_cmpstr(r.nexthop, ==, "[smarthost.test]:587");
    res_clear(&r);
    r = resolve(&ctx, "dave@localhost"); /* the relay host is for remote mail only */
    g_assert_cmpstr(r.transport, ==, "local");
    res_clear(&r);

    r = resolve(&ctx, "bad\naddress@x.test");
    g_assert_cmpstr(r.transport, ==, "error");
    g_assert_cmpint(r.code, ==, 550);
    g_assert_cmpstr(r.ecode, ==, "5.1.3");
    g_assert_nonnull(strstr(r.reason, "control character"));
    g_assert_cmpstr(r.nexthop, ==, "");
    res_clear(&r);
}

static void
test_resolve_maps(void)
{
    g_autoptr(GString) steps = NULL;
    RwMap *canon = parse_ok("# canonical\n"
                            "Bob@Example.ORG   robert@example.org\n"
                            "info              sales\n"
                            "@old.test         @new.test\n"
                            "@gone.test        catchall@example.org\n",
                            RW_MAP_ADDRESS);
    RwMap *virt = parse_ok("robert@example.org  bob.smith@remote.test\n"
                           "sales@localhost     team@example.org\n",
                           RW_MAP_ADDRESS);
    RwContext ctx = {.default_domain = "localhost",
                     .is_local = test_is_local,
                     .canonical = canon,
                     .virtual_ = virt};
    /* canonical, then virtual: each once */
    Res r = resolve(&ctx, "BOB@example.org");
    g_assert_cmpstr(r.address, ==, "bob.smith@remote.test");
    g_assert_cmpstr(r.transport, ==, "smtp");
    g_assert_nonnull(strstr(r.steps, "canonical map map:2: bob@example.org -> robert@example.org"));
    g_assert_nonnull(strstr(r.steps, "virtual map map:1:"));
    res_clear(&r);
    /* bare key: any served domain; bare value: the default domain */
    r = resolve(&ctx, "info@example.org");
    g_assert_cmpstr(r.address, ==, "team@example.org");
    g_assert_cmpstr(r.transport, ==, "local");
    res_clear(&r);
    r = resolve(&ctx, "info@remote.test"); /* not served: bare key does not apply */
    g_assert_cmpstr(r.address, ==, "info@remote.test");
    res_clear(&r);
    /* @domain -> @domain keeps the local part; @domain -> address */
    r = resolve(&ctx, "Zed@OLD.test");
    g_assert_cmpstr(r.address, ==, "Zed@new.test");
    res_clear(&r);
    r = resolve(&ctx, "anyone@gone.test");
    g_assert_cmpstr(r.address, ==, "catchall@example.org");
    g_assert_cmpstr(r.transport, ==, "local");
    res_clear(&r);
    /* the full address wins over the domain */
    RwMap *c2 = parse_ok("@x.test @y.test\nvip@x.test boss@z.test\n", RW_MAP_ADDRESS);
    ctx.canonical = c2;
    r = resolve(&ctx, "vip@x.test");
    g_assert_cmpstr(r.address, ==, "boss@z.test");
    res_clear(&r);
    r = resolve(&ctx, "other@x.test");
    g_assert_cmpstr(r.address, ==, "other@y.test");
    res_clear(&r);
    rw_map_unref(c2);
    rw_map_unref(canon);
    rw_map_unref(virt);
}

static void
test_resolve_transport_map(void)
{
    RwMap *t = parse_ok("spam.test        error:5.7.1 we do not talk to spam.test\n"
                        "nope@localhost   error\n"
                        ".corp.test       relay:[gw.corp.test]:2525\n"
                        "corp.test        smtp:[mail.corp.test]\n"
                        "special@remote.test smtp\n"
                        "example.org      local\n"
                        "*                smtp:Fallback.TEST:26\n",
                        RW_MAP_TRANSPORT);
    RwContext ctx = {.default_domain = "localhost",
                     .is_local = test_is_local,
                     .relayhost = "[relay.test]",
                     .transport = t};
    Res r = resolve(&ctx, "x@Spam.test");
    g_assert_cmpstr(r.transport, ==, "error");
    g_assert_cmpint(r.code, ==, 550);
    g_assert_cmpstr(r.ecode, ==, "5.7.1");
    g_assert_cmpstr(r.reason, ==, "we do not talk to spam.test");
    g_assert_nonnull(strstr(r.steps, "transport map map:1: spam.test ->"));
    res_clear(&r);
    r = resolve(&ctx, "nope");
    g_assert_cmpstr(r.transport, ==, "error");
    g_assert_cmpstr(r.ecode, ==, "5.1.1");
    g_assert_cmpstr(r.reason, ==, "address refused");
    res_clear(&r);
    r = resolve(&ctx, "a@deep.sub.corp.test");
    g_assert_cmpstr(r.transport, ==, "relay");
    g_assert_cmpstr(r.nexthop, ==, "[gw.corp.test]:2525");
    res_clear(&r);
    r = resolve(&ctx, "a@corp.test"); /* .corp.test is for subdomains only */
    g_assert_cmpstr(r.transport, ==, "smtp");
    g_assert_cmpstr(r.nexthop, ==, "[mail.corp.test]");
    res_clear(&r);
    r = resolve(&ctx, "special@remote.test"); /* smtp without a hop: the domain */
    g_assert_cmpstr(r.transport, ==, "smtp");
    g_assert_cmpstr(r.nexthop, ==, "remote.test");
    res_clear(&r);
    r = resolve(&ctx, "other@remote.test"); /* "*" before the relay host */
    g_assert_cmpstr(r.transport, ==, "smtp");
    g_assert_cmpstr(r.nexthop, ==, "fallback.test:26");
    res_clear(&r);
    r = resolve(&ctx, "someone@example.org");
    g_assert_cmpstr(r.transport, ==, "local");
    g_assert_cmpstr(r.nexthop, ==, "example.org");
    res_clear(&r);
    rw_map_unref(t);
}

/* --- maps --------------------------------------------------------------------------- */

static void
test_map_good(void)
{
    RwMap *m = parse_ok("\n   \n# comment\n  # indented comment\r\n"
                        "Key@Example.ORG\t  value@x.test   \n"
                        "bare\tother\n"
                        "@dom.test @other.test\n",
                        RW_MAP_ADDRESS);
    g_assert_cmpuint(rw_map_size(m), ==, 3);
    guint line = 0;
    g_assert_cmpstr(rw_map_lookup(m, "key@example.org", &line), ==, "value@x.test");
    g_assert_cmpuint(line, ==, 5);
    g_assert_cmpstr(rw_map_lookup(m, "KEY@EXAMPLE.ORG", NULL), ==, "value@x.test");
    g_assert_null(rw_map_lookup(m, "missing", NULL));
    rw_map_unref(m);
}

static void
test_map_bad(void)
{
    struct {
        const char *text;
        RwMapKind kind;
        const char *want;
    } cases[] = {
        {"a@x.test b@y.test\nnovalue\n", RW_MAP_ADDRESS, "map:2: \"novalue\" has no value"},
        {"a b\nA c\n", RW_MAP_ADDRESS, "map:2: key \"a\" already given on line 1"},
        {"a b, c\n", RW_MAP_ADDRESS, "map:1: value \"b, c\": one address only"},
        {"a <b>\n", RW_MAP_ADDRESS, "map:1: value \"<b>\""},
        {"a@b@c d\n", RW_MAP_ADDRESS, "more than one '@'"},
        {"@ x\n", RW_MAP_ADDRESS, "names no domain"},
        {"a x@\n", RW_MAP_ADDRESS, "names no domain"},
        {"a x@y..z\n", RW_MAP_ADDRESS, "bad domain"},
        {"a b\n\nc d\x01\n", RW_MAP_ADDRESS, "map:3: contains a control character"},
        {"x.test bogus:thing\n", RW_MAP_TRANSPORT, "map:1: unknown transport \"bogus\""},
        {"x.test relay\n", RW_MAP_TRANSPORT, "relay needs a next hop"},
        {"x.test local:foo\n", RW_MAP_TRANSPORT, "takes no next hop"},
        {"x.test smtp:[bad host]\n", RW_MAP_TRANSPORT, "bad next hop"},
        {"x.test smtp:host:99999\n", RW_MAP_TRANSPORT, "bad next hop"},
        {"x.test error:4.1.1 later\n", RW_MAP_TRANSPORT, "not a permanent enhanced status code"},
        {"a@ smtp\n", RW_MAP_TRANSPORT, "is not an address, domain"},
    };
    for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autofree char *errs = parse_bad(cases[i].text, -1, cases[i].kind);
        if (!strstr(errs, cases[i].want))
            g_test_message("case %zu: got \"%s\", want \"%s\"", i, errs, cases[i].want);
        g_assert_nonnull(strstr(errs, cases[i].want));
    }
    /* every error is reported, each with its line */
    g_autofree char *many = parse_bad("a\nb\nc d\ne\n", -1, RW_MAP_ADDRESS);
    g_assert_nonnull(strstr(many, "map:1:"));
    g_assert_nonnull(strstr(many, "map:2:"));
    g_assert_nonnull(strstr(many, "map:4:"));
    g_assert_null(strstr(many, "map:3:"));
    /* NUL bytes, invalid UTF-8, over-long lines */
    g_autofree char *nul = parse_bad("a b\nc\0d e\n", 10, RW_MAP_ADDRESS);
    g_assert_nonnull(strstr(nul, "map:2: contains a NUL byte"));
    g_autofree char *utf = parse_bad("a b\nc \xc3\x28\n", -1, RW_MAP_ADDRESS);
    g_assert_nonnull(strstr(utf, "map:2: not valid UTF-8"));
    g_autofree char *big = g_strnfill(RW_MAP_MAX_LINE + 10, 'x');
    g_autofree char *longline = g_strconcat("a b\n", big, " y\n", NULL);
    g_autofree char *ll = parse_bad(longline, -1, RW_MAP_ADDRESS);
    g_assert_nonnull(strstr(ll, "map:2: line too long"));
    /* a flood of bad lines stops after a bounded number of errors */
    GString *flood = g_string_new(NULL);
    for (int i = 0; i < 10000; i++)
        g_string_append(flood, "novalue\n");
    g_autoptr(GPtrArray) errors = g_ptr_array_new_with_free_func(g_free);
    g_assert_null(rw_map_parse("map", flood->str, flood->len, RW_MAP_ADDRESS, errors));
    g_assert_cmpuint(errors->len, <=, 51);
    g_string_free(flood, TRUE);
}

static void
test_map_file(void)
{
    g_autofree char *dir = kr_test_tmpdir();
    g_autofree char *path = g_build_filename(dir, "canonical", NULL);
    g_autoptr(GError) err = NULL;
    /* missing: an empty map that notices the file appearing */
    RwMap *m = rw_map_load(path, RW_MAP_ADDRESS, &err);
    g_assert_no_error(err);
    g_assert_nonnull(m);
    g_assert_false(rw_map_exists(m));
    g_assert_cmpuint(rw_map_size(m), ==, 0);
    g_assert_false(rw_map_changed(m));
    g_assert_true(g_file_set_contents(path, "a b\n", -1, NULL));
    g_assert_true(rw_map_changed(m));
    rw_map_unref(m);
    m = rw_map_load(path, RW_MAP_ADDRESS, &err);
    g_assert_no_error(err);
    g_assert_true(rw_map_exists(m));
    g_assert_cmpstr(rw_map_lookup(m, "a", NULL), ==, "b");
    g_assert_false(rw_map_changed(m));
    usleep(10000);
    g_assert_true(g_file_set_contents(path, "a c\n", -1, NULL));
    g_assert_true(rw_map_changed(m));
    rw_map_unref(m);
    /* a bad file: every error as FILE:LINE in one message */
    g_assert_true(g_file_set_contents(path, "a b\nbad\nc d\nworse\n", -1, NULL));
    m = rw_map_load(path, RW_MAP_ADDRESS, &err);
    g_assert_null(m);
    g_assert_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_DATA);
    g_autofree char *l2 = g_strdup_printf("%s:2:", path);
    g_autofree char *l4 = g_strdup_printf("%s:4:", path);
    g_assert_nonnull(strstr(err->message, l2));
    g_assert_nonnull(strstr(err->message, l4));
    g_clear_error(&err);
    /* a directory is not a map */
    m = rw_map_load(dir, RW_MAP_ADDRESS, &err);
    g_assert_null(m);
    g_assert_nonnull(err);
}

static void
test_map_huge(void)
{
    GString *s = g_string_new(NULL);
    for (int i = 0; i < 200000; i++)
        g_string_append_printf(s, "user%d@example.org u%d@remote.test\n", i, i);
    g_autoptr(GPtrArray) errors = g_ptr_array_new_with_free_func(g_free);
    RwMap *m = rw_map_parse("big", s->str, s->len, RW_MAP_ADDRESS, errors);
    g_assert_nonnull(m);
    g_assert_cmpuint(rw_map_size(m), ==, 200000);
    g_autofree char *out =
        rw_addr_map_apply(m, "user199999@example.org", test_is_local, "localhost", NULL);
    g_assert_cmpstr(out, ==, "u199999@remote.test");
    rw_map_unref(m);
    g_string_free(s, TRUE);
}

static void
test_transport_parse(void)
{
    RwTransport t;
    g_assert_true(rw_transport_parse("relay:[Gw.Test]:587", &t, NULL));
    g_assert_cmpstr(t.transport, ==, "relay");
    g_assert_cmpstr(t.nexthop, ==, "[gw.test]:587");
    rw_transport_clear(&t);
    g_assert_true(rw_transport_parse("smtp:[::1]:2525", &t, NULL));
    g_assert_cmpstr(t.nexthop, ==, "[::1]:2525");
    rw_transport_clear(&t);
    g_assert_true(rw_transport_parse("error:5.2.1   mailbox disabled ", &t, NULL));
    g_assert_cmpstr(t.ecode, ==, "5.2.1");
    g_assert_cmpstr(t.text, ==, "mailbox disabled ");
    rw_transport_clear(&t);
    g_assert_false(rw_transport_parse("relay:", &t, NULL));
    g_assert_false(rw_transport_parse("smtp:host:", &t, NULL));
    g_assert_false(rw_transport_parse("error:5.1 x", &t, NULL));
}

int
main(int argc, char **argv)
{
    kr_test_init(&argc, &argv);
    g_test_add_func("/rewrite/clean/basic", test_clean_basic);
    g_test_add_func("/rewrite/clean/refused", test_clean_refused);
    g_test_add_func("/rewrite/resolve/transports", test_resolve_transports);
    g_test_add_func("/rewrite/resolve/maps", test_resolve_maps);
    g_test_add_func("/rewrite/resolve/transport-map", test_resolve_transport_map);
    g_test_add_func("/rewrite/map/good", test_map_good);
    g_test_add_func("/rewrite/map/bad", test_map_bad);
    g_test_add_func("/rewrite/map/file", test_map_file);
    g_test_add_func("/rewrite/map/huge", test_map_huge);
    g_test_add_func("/rewrite/map/transport-parse", test_transport_parse);
    return g_test_run();
}
