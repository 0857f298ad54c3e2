/* SPDX-License-Identifier: MIT */
/*
 * test-aliases.c - unit tests for the aliases module's parts that need
 * no daemon: the file parser (modules/aliases/aliases-file.c), the
 * expansion (aliases-expand.c), forward and include files with their
 * permission checks (aliases-sys.c) and running commands and file
 * deliveries (aliases-run.c).
 *
 *   /aliases/parse/...      good files, bad files with FILE:LINE, lists,
 *                           limits (huge lists, floods, control chars)
 *   /aliases/expand/...     lists, self references, owners, -request,
 *                           loops, depth, includes, limits, pipes,
 *                           postmaster, forward files
 *   /aliases/delivered-to   the loop header check
 *   /aliases/sys/...        forward files (virtual, system), includes
 *   /aliases/run/...        commands (output, exit codes, time limit,
 *                           environment) and mbox files
 */
#include "testlib.h"
#include "aliases/aliases-expand.h"
#include "aliases/aliases-file.h"
#include "aliases/aliases-run.h"
#include "aliases/aliases-sys.h"

#include <gio/gio.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* --- helpers ------------------------------------------------------------------ */

static AliasTable *
parse_ok(const char *text)
{
    g_autoptr(GPtrArray) errors = g_ptr_array_new_with_free_func(g_free);
    AliasTable *t = aliases_table_parse("aliases", text, strlen(text), errors);
    for (guint i = 0; i < errors->len; i++)
        g_test_message("unexpected: %s", (char *)errors->pdata[i]);
    g_assert_nonnull(t);
    return t;
}

static char *
parse_bad(const char *text, gssize len)
{
    g_autoptr(GPtrArray) errors = g_ptr_array_new_with_free_func(g_free);
    AliasTable *t =
        aliases_table_parse("aliases", text, len < 0 ? strlen(text) : (gsize)len, errors);
    g_assert_null(t);
    g_assert_cmpuint(errors->len, >, 0);
    g_ptr_array_add(errors, NULL);
    return g_strjoinv("|", (char **)errors->pdata);
}

static const AliasTarget *
target(const AliasEntry *e, guint i)
{
    g_assert_nonnull(e);
    g_assert_cmpuint(i, <, e->targets->len);
    return e->targets->pdata[i];
}

static gboolean
t_is_local(const char *domain)
{
    return g_ascii_strcasecmp(domain, "localhost") == 0 ||
           g_ascii_strcasecmp(domain, "example.org") == 0;
}

static char *
t_canon(const AliasExpandCtx *ctx, const char *address, char **why_r)
{
    if (strchr(address, ' ') && address[0] != '"') {
        *why_r = g_strdup("bad address");
        return NULL;
    }
    const char *at = strrchr(address, '@');
    if (!at)
        return g_strdup_printf("%s@localhost", address);
    g_autofree char *d = g_ascii_strdown(at + 1, -1);
    return g_strdup_printf("%.*s@%s", (int)(at - address), address, d);
}

/* Include files and forward files from tables given by the tests. */
static GHashTable *files;    /* path -> text */
static GHashTable *forwards; /* address -> text */

static AliasStatus
t_include(const AliasExpandCtx *ctx, const char *path, GPtrArray *targets, AliasPriv *priv,
          char **why_r)
{
    const char *text = files ? g_hash_table_lookup(files, path) : NULL;
    if (!text) {
        *why_r = g_strdup("No such file or directory");
        return ALIAS_TEMP;
    }
    g_autoptr(GPtrArray) errors = g_ptr_array_new_with_free_func(g_free);
    if (!aliases_parse_list(path, text, strlen(text), targets, errors)) {
        *why_r = g_strdup(errors->pdata[0]);
        return ALIAS_CONFIG;
    }
    priv->valid = TRUE;
    priv->uid = 4321;
    priv->user = g_strdup("incowner");
    return ALIAS_OK;
}

static AliasStatus
t_forward(const AliasExpandCtx *ctx, const char *address, GPtrArray *targets, AliasPriv *priv,
          char **where_r, char **why_r)
{
    const char *text = forwards ? g_hash_table_lookup(forwards, address) : NULL;
    if (!text)
        return ALIAS_NONE;
    if (strcmp(text, "TEMP") == 0) {
        *why_r = g_strdup("home directory unavailable");
        return ALIAS_TEMP;
    }
    g_autoptr(GPtrArray) errors = g_ptr_array_new_with_free_func(g_free);
    g_assert_true(aliases_parse_list("fwd", text, strlen(text), targets, errors));
    priv->valid = TRUE;
    priv->uid = 1000;
    priv->user = g_strdup("fwduser");
    *where_r = g_strdup_printf("/home/%s/.forward", address);
    return ALIAS_OK;
}

static AliasExpandCtx
mkctx(AliasTable *t)
{
    AliasExpandCtx c = {
        .table = t,
        .default_domain = "localhost",
        .is_local = t_is_local,
        .canon = t_canon,
        .forward = t_forward,
        .include = t_include,
        .table_priv = {.valid = TRUE, .uid = 65534, .gid = 65534, .user = (char *)"nobody"},
        .max_expansion = 1000,
        .max_depth = 20,
    };
    return c;
}

/* The leaves as "kind:value" joined by ", ". */
static char *
leaves(const AliasExpansion *x)
{
    static const char *const k[] = {"mbox", "addr", "pipe", "file"};
    GString *s = g_string_new(NULL);
    for (guint i = 0; i < x->leaves->len; i++) {
        const AliasLeaf *l = x->leaves->pdata[i];
        g_string_append_printf(s, "%s%s:%s", i ? ", " : "", k[l->kind], l->value);
    }
    return g_string_free(s, FALSE);
}

static char *
expand(const AliasExpandCtx *c, const char *address, AliasExpansion *x)
{
    alias_expand(c, address, x);
    if (x->status != ALIAS_OK)
        g_test_message("%s: status %d: %s", address, x->status, x->diag);
    return leaves(x);
}

/* --- parsing ------------------------------------------------------------------ */

static void
test_parse_good(void)
{
    AliasTable *t = parse_ok("# a comment\n"
                             "\n"
                             "Team: alice, Bob@Example.ORG,\n"
                             "\tcarol\n"
                             "  # a comment between continuation lines\n"
                             "   <dave@remote.test>, \\eve\r\n"
                             "\"first last\": frank\n"
                             "staff: :include:/etc/kurir/staff, \"|/usr/bin/vacation -a x\",\n"
                             "   /var/spool/archive, \"/path with blanks/file\"\n"
                             "pipe2: |/bin/cat\n"
                             "full@example.org: grace, \"john doe\"@example.org,\n"
                             "trailing: heidi,\n"
                             "x: \"a,b\"@example.org , \"|echo a, b\"\n");
    g_assert_cmpuint(aliases_table_size(t), ==, 7);
    const AliasEntry *e = aliases_table_lookup(t, "TEAM");
    g_assert_cmpstr(e->name, ==, "team");
    g_assert_cmpuint(e->line, ==, 3);
    g_assert_cmpuint(e->targets->len, ==, 5);
    g_assert_cmpstr(target(e, 1)->value, ==, "Bob@Example.ORG");
    g_assert_cmpuint(target(e, 2)->line, ==, 4);
    g_assert_cmpint(target(e, 3)->kind, ==, ALIAS_T_ADDRESS);
    g_assert_cmpstr(target(e, 3)->value, ==, "dave@remote.test");
    g_assert_cmpuint(target(e, 3)->line, ==, 6);
    g_assert_cmpint(target(e, 4)->kind, ==, ALIAS_T_DIRECT);
    g_assert_cmpstr(target(e, 4)->value, ==, "eve");
    e = aliases_table_lookup(t, "first last");
    g_assert_cmpstr(target(e, 0)->value, ==, "frank");
    e = aliases_table_lookup(t, "staff");
    g_assert_cmpint(target(e, 0)->kind, ==, ALIAS_T_INCLUDE);
    g_assert_cmpstr(target(e, 0)->value, ==, "/etc/kurir/staff");
    g_assert_cmpint(target(e, 1)->kind, ==, ALIAS_T_PIPE);
    g_assert_cmpstr(target(e, 1)->value, ==, "/usr/bin/vacation -a x");
    g_assert_cmpint(target(e, 2)->kind, ==, ALIAS_T_FILE);
    g_assert_cmpstr(target(e, 3)->value, ==, "/path with blanks/file");
    g_assert_cmpint(target(aliases_table_lookup(t, "pipe2"), 0)->kind, ==, ALIAS_T_PIPE);
    e = aliases_table_lookup(t, "full@example.org");
    g_assert_cmpstr(target(e, 1)->value, ==, "\"john doe\"@example.org");
    g_assert_cmpuint(aliases_table_lookup(t, "trailing")->targets->len, ==, 1);
    e = aliases_table_lookup(t, "x");
    g_assert_cmpstr(target(e, 0)->value, ==, "\"a,b\"@example.org");
    g_assert_cmpstr(target(e, 1)->value, ==, "echo a, b");
    g_assert_null(aliases_table_lookup(t, "nobody"));
    g_assert_cmpstr(aliases_table_nth(t, 0)->name, ==, "team");
    aliases_table_unref(t);
}

static void
test_parse_bad(void)
{
    struct {
        const char *text;
        const char *want;
    } cases[] = {
        {"a: b\nno colon\n", "aliases:2: no ':' after the alias name"},
        {"  b, c\na: d\n", "aliases:1: continuation line without an alias"},
        {"a: b\nA: c\n", "aliases:2: alias \"a\" already defined on line 1"},
        {"a:\nb: c\n", "aliases:1: alias \"a\" has no targets"},
        {"a: b c\n", "aliases:1: \"b c\": blank inside an address"},
        {"a: b,\n  c d\n", "aliases:2: \"c d\": blank inside an address"},
        {"a: \"unterminated\n", "aliases:1: unterminated quoted string"},
        {"a: :include:relative/path\n", "needs an absolute path"},
        {"a: |\n", "'|' without a command"},
        {"a: /dir/\n", "names a directory"},
        {"a: /x y\n", "blank in a file name"},
        {": b\n", "aliases:1: empty alias name"},
        {"\"x\" y: b\n", "no ':' after the quoted name"},
        {"a b: c\n", "blank, quote or comma in the alias name"},
        {"@x: b\n", "empty local part or domain"},
        {"a: b<c>\n", "not allowed in an address"},
        {"a: b\nc: d\x01\n", "aliases:2: contains a control character"},
        {"a: b\nc: \xff\xfe\n", "aliases:2: not valid UTF-8"},
        {"a: \"\"\n", "empty quoted target"},
    };
    for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autofree char *errs = parse_bad(cases[i].text, -1);
        if (!strstr(errs, cases[i].want))
            g_test_message("case %zu: got \"%s\", want \"%s\"", i, errs, cases[i].want);
        g_assert_nonnull(strstr(errs, cases[i].want));
    }
    g_autofree char *nul = parse_bad("a: b\nc: d\0e\n", 12);
    g_assert_nonnull(strstr(nul, "aliases:2: contains a NUL byte"));
    /* every error, with its own line */
    g_autofree char *many = parse_bad("x y\na: b\nz w\nc: d\n", -1);
    g_assert_nonnull(strstr(many, "aliases:1:"));
    g_assert_nonnull(strstr(many, "aliases:3:"));
    g_assert_null(strstr(many, "aliases:2:"));
    /* a flood of bad lines: bounded report */
    GString *flood = g_string_new(NULL);
    for (int i = 0; i < 20000; i++)
        g_string_append(flood, "bad line\n");
    g_autoptr(GPtrArray) errors = g_ptr_array_new_with_free_func(g_free);
    g_assert_null(aliases_table_parse("aliases", flood->str, flood->len, errors));
    g_assert_cmpuint(errors->len, <=, ALIASES_MAX_ERRORS + 1);
    g_string_free(flood, TRUE);
    /* an over-long line */
    g_autofree char *big = g_strnfill(ALIASES_MAX_LINE + 5, 'x');
    g_autofree char *longline = g_strconcat("a: b\nc: ", big, "\n", NULL);
    g_autofree char *ll = parse_bad(longline, -1);
    g_assert_nonnull(strstr(ll, "aliases:2: line longer than"));
}

static void
test_parse_huge(void)
{
    /* a long list on continuation lines parses, with every line right */
    GString *s = g_string_new("biglist: u0");
    for (int i = 1; i < 50000; i++)
        g_string_append_printf(s, ",%su%d", i % 10 == 0 ? "\n  " : " ", i);
    g_string_append(s, "\n");
    AliasTable *t = parse_ok(s->str);
    const AliasEntry *e = aliases_table_lookup(t, "biglist");
    g_assert_cmpuint(e->targets->len, ==, 50000);
    g_assert_cmpuint(target(e, 49999)->line, ==, 5000);
    aliases_table_unref(t);
    /* past ALIASES_MAX_TARGETS: an error, not unbounded memory */
    g_string_truncate(s, 0);
    g_string_append(s, "toobig: a0");
    for (int i = 1; i <= ALIASES_MAX_TARGETS; i++)
        g_string_append_printf(s, ",%sa%d", i % 1000 == 0 ? "\n " : "", i);
    g_string_append(s, "\n");
    g_autofree char *errs = parse_bad(s->str, -1);
    g_assert_nonnull(strstr(errs, "more than"));
    g_string_free(s, TRUE);
}

static void
test_parse_list(void)
{
    g_autoptr(GPtrArray) targets = g_ptr_array_new_with_free_func(aliases_target_free);
    g_autoptr(GPtrArray) errors = g_ptr_array_new_with_free_func(g_free);
    const char *text = "# forward\n\\alice, bob@example.org\n\n  carol\n\"|/bin/prog arg\"\n";
    g_assert_true(aliases_parse_list("fwd", text, strlen(text), targets, errors));
    g_assert_cmpuint(targets->len, ==, 4);
    g_assert_cmpint(((AliasTarget *)targets->pdata[0])->kind, ==, ALIAS_T_DIRECT);
    g_assert_cmpuint(((AliasTarget *)targets->pdata[2])->line, ==, 4);
    g_assert_cmpint(((AliasTarget *)targets->pdata[3])->kind, ==, ALIAS_T_PIPE);
    g_ptr_array_set_size(targets, 0);
    const char *bad = "ok\nnot ok here\n";
    g_assert_false(aliases_parse_list("fwd", bad, strlen(bad), targets, errors));
    g_assert_nonnull(strstr(errors->pdata[0], "fwd:2:"));
}

static void
test_table_file(void)
{
    g_autofree char *dir = kr_test_tmpdir();
    g_autofree char *path = g_build_filename(dir, "aliases", NULL);
    g_autoptr(GError) err = NULL;
    AliasTable *t = aliases_table_load(path, &err);
    g_assert_no_error(err);
    g_assert_false(aliases_table_exists(t));
    g_assert_false(aliases_table_changed(t));
    g_assert_true(g_file_set_contents(path, "a: b\n", -1, NULL));
    g_assert_true(aliases_table_changed(t));
    aliases_table_unref(t);
    t = aliases_table_load(path, &err);
    g_assert_no_error(err);
    g_assert_true(aliases_table_exists(t));
    g_assert_cmpuint(aliases_table_owner(t), ==, geteuid());
    g_assert_false(aliases_table_changed(t));
    aliases_table_unref(t);
    g_assert_true(g_file_set_contents(path, "a: b\nbroken\n", -1, NULL));
    t = aliases_table_load(path, &err);
    g_assert_null(t);
    g_autofree char *want = g_strdup_printf("%s:2: no ':'", path);
    g_assert_nonnull(strstr(err->message, want));
}

/* --- expansion ------------------------------------------------------------------ */

static void
test_expand_lists(void)
{
    AliasTable *t = parse_ok("team: alice, bob, Bob, carol@Remote.TEST, sub\n"
                             "sub: dave, alice\n"
                             "owner-team: alice\n"
                             "self: self, bob\n"
                             "direct: \\team, eve\n"
                             "dom@example.org: frank\n"
                             "redirect: grace\n"
                             "\"first last\": heidi\n");
    AliasExpandCtx c = mkctx(t);
    AliasExpansion x;
    g_autofree char *a = expand(&c, "team@localhost", &x);
    g_assert_cmpint(x.status, ==, ALIAS_OK);
    /* alice once (also via sub), bob once (case), remote kept, dave */
    g_assert_cmpstr(a, ==,
                    "mbox:alice@localhost, mbox:bob@localhost, addr:carol@remote.test, "
                    "mbox:dave@localhost");
    g_assert_cmpstr(x.owner, ==, "owner-team@localhost");
    g_assert_nonnull(strstr(x.how, "alias team (aliases:1)"));
    alias_expansion_clear(&x);
    /* a bare name applies in every served domain */
    g_autofree char *b = expand(&c, "team@example.org", &x);
    g_assert_cmpint(x.status, ==, ALIAS_OK);
    g_assert_cmpstr(x.owner, ==, "owner-team@example.org");
    alias_expansion_clear(&x);
    g_autofree char *s = expand(&c, "self@localhost", &x);
    g_assert_cmpstr(s, ==, "mbox:self@localhost, mbox:bob@localhost");
    g_assert_null(x.owner);
    alias_expansion_clear(&x);
    g_autofree char *d = expand(&c, "direct@localhost", &x);
    g_assert_cmpstr(d, ==, "mbox:team@localhost, mbox:eve@localhost");
    alias_expansion_clear(&x);
    g_autofree char *f = expand(&c, "dom@example.org", &x);
    g_assert_cmpstr(f, ==, "mbox:frank@localhost");
    alias_expansion_clear(&x);
    g_autofree char *f2 = expand(&c, "dom@localhost", &x); /* only in example.org */
    g_assert_cmpstr(f2, ==, "mbox:dom@localhost");
    g_assert_null(x.how);
    alias_expansion_clear(&x);
    g_autofree char *r = expand(&c, "team-request@localhost", &x);
    g_assert_cmpstr(r, ==, "mbox:alice@localhost");
    alias_expansion_clear(&x);
    g_autofree char *q = expand(&c, "\"First Last\"@localhost", &x);
    g_assert_cmpstr(q, ==, "mbox:heidi@localhost");
    alias_expansion_clear(&x);
    g_assert_true(alias_known(&c, "TEAM@localhost"));
    g_assert_true(alias_known(&c, "team-request@example.org"));
    g_assert_true(alias_known(&c, "postmaster@example.org"));
    g_assert_true(alias_known(&c, "Mailer-Daemon@localhost"));
    g_assert_false(alias_known(&c, "team@remote.test"));
    g_assert_false(alias_known(&c, "other-request@localhost"));
    g_assert_false(alias_known(&c, "nobody@localhost"));
    aliases_table_unref(t);
}

static void
test_expand_loops(void)
{
    AliasTable *t = parse_ok("a: b\nb: c\nc: a\n"
                             "diamond: x, y\nx: z\ny: z\n"
                             "twice: twice2\ntwice2: twice\n"
                             "inc: :include:/l/one\n"
                             "inc2: :include:/l/missing\n"
                             "inc3: :include:/l/bad\n");
    AliasExpandCtx c = mkctx(t);
    AliasExpansion x;
    g_autofree char *a = expand(&c, "a@localhost", &x);
    g_assert_cmpint(x.status, ==, ALIAS_LOOP);
    g_assert_cmpstr(x.diag, ==,
                    "alias loop: a@localhost -> b@localhost -> c@localhost -> a@localhost");
    g_assert_cmpuint(x.leaves->len, ==, 0);
    alias_expansion_clear(&x);
    g_autofree char *d = expand(&c, "diamond@localhost", &x);
    g_assert_cmpint(x.status, ==, ALIAS_OK); /* two paths to z are not a loop */
    g_assert_cmpstr(d, ==, "mbox:z@localhost");
    alias_expansion_clear(&x);
    /* a chain deeper than max_depth */
    GString *chain = g_string_new(NULL);
    for (int i = 0; i < 30; i++)
        g_string_append_printf(chain, "n%d: n%d\n", i, i + 1);
    AliasTable *t2 = parse_ok(chain->str);
    g_string_free(chain, TRUE);
    AliasExpandCtx c2 = mkctx(t2);
    c2.max_depth = 10;
    g_autofree char *deep = expand(&c2, "n0@localhost", &x);
    g_assert_cmpint(x.status, ==, ALIAS_LOOP);
    g_assert_nonnull(strstr(x.diag, "deeper than 10"));
    alias_expansion_clear(&x);
    c2.max_depth = 40;
    g_autofree char *ok = expand(&c2, "n0@localhost", &x);
    g_assert_cmpstr(ok, ==, "mbox:n30@localhost");
    alias_expansion_clear(&x);
    aliases_table_unref(t2);
    /* includes: nested, looping, missing, broken */
    files = g_hash_table_new(g_str_hash, g_str_equal);
    g_hash_table_insert(files, "/l/one", "carol, :include:/l/two");
    g_hash_table_insert(files, "/l/two", "dave\n:include:/l/one\n");
    g_hash_table_insert(files, "/l/bad", "ok\nnot ok\n");
    g_autofree char *i1 = expand(&c, "inc@localhost", &x);
    g_assert_cmpint(x.status, ==, ALIAS_LOOP);
    g_assert_nonnull(strstr(x.diag, "include loop: /l/one includes itself"));
    g_assert_nonnull(strstr(x.diag, "/l/two:2:"));
    alias_expansion_clear(&x);
    g_hash_table_insert(files, "/l/two", "dave\n");
    g_autofree char *i2 = expand(&c, "inc@localhost", &x);
    g_assert_cmpint(x.status, ==, ALIAS_OK);
    g_assert_cmpstr(i2, ==, "mbox:carol@localhost, mbox:dave@localhost");
    alias_expansion_clear(&x);
    g_autofree char *i3 = expand(&c, "inc2@localhost", &x);
    g_assert_cmpint(x.status, ==, ALIAS_TEMP);
    g_assert_nonnull(strstr(x.diag, "No such file"));
    alias_expansion_clear(&x);
    g_autofree char *i4 = expand(&c, "inc3@localhost", &x);
    g_assert_cmpint(x.status, ==, ALIAS_CONFIG);
    g_assert_nonnull(strstr(x.diag, "/l/bad:2:"));
    alias_expansion_clear(&x);
    g_clear_pointer(&files, g_hash_table_destroy);
    aliases_table_unref(t);
}

static void
test_expand_limits(void)
{
    GString *s = g_string_new("big: u0");
    for (int i = 1; i < 300; i++)
        g_string_append_printf(s, ", u%d", i);
    g_string_append(s, "\nctl: \"a\\\x01b\"\n");
    g_autoptr(GPtrArray) errors = g_ptr_array_new_with_free_func(g_free);
    AliasTable *t = aliases_table_parse("aliases", s->str, s->len, errors);
    g_assert_null(t); /* a control character even inside quotes */
    g_string_truncate(s, s->len - strlen("ctl: \"a\\\x01b\"\n"));
    t = parse_ok(s->str);
    g_string_free(s, TRUE);
    AliasExpandCtx c = mkctx(t);
    c.max_expansion = 100;
    AliasExpansion x;
    g_autofree char *a = expand(&c, "big@localhost", &x);
    g_assert_cmpint(x.status, ==, ALIAS_TOOBIG);
    g_assert_nonnull(strstr(x.diag, "more than 100"));
    g_assert_cmpuint(x.leaves->len, ==, 0);
    alias_expansion_clear(&x);
    c.max_expansion = 300;
    g_autofree char *b = expand(&c, "big@localhost", &x);
    g_assert_cmpint(x.status, ==, ALIAS_OK);
    g_assert_cmpuint(x.leaves->len, ==, 300);
    alias_expansion_clear(&x);
    aliases_table_unref(t);
}

static void
test_expand_pipes(void)
{
    AliasTable *t = parse_ok("p: \"|/bin/prog x\", bob\nf: /var/mail/archive\n"
                             "inc: :include:/l/cmds\n");
    AliasExpandCtx c = mkctx(t);
    AliasExpansion x;
    g_autofree char *a = expand(&c, "p@localhost", &x);
    g_assert_cmpint(x.status, ==, ALIAS_CONFIG);
    g_assert_nonnull(strstr(x.diag, "aliases.allow_pipe = false"));
    g_assert_nonnull(strstr(x.diag, "aliases:1:"));
    alias_expansion_clear(&x);
    g_autofree char *b = expand(&c, "f@localhost", &x);
    g_assert_cmpint(x.status, ==, ALIAS_CONFIG);
    g_assert_nonnull(strstr(x.diag, "allow_file"));
    alias_expansion_clear(&x);
    c.allow_pipe = c.allow_file = TRUE;
    g_autofree char *p = expand(&c, "p@localhost", &x);
    g_assert_cmpstr(p, ==, "pipe:/bin/prog x, mbox:bob@localhost");
    const AliasLeaf *l = x.leaves->pdata[0];
    g_assert_cmpuint(l->priv.uid, ==, 65534); /* the aliases file's */
    alias_expansion_clear(&x);
    files = g_hash_table_new(g_str_hash, g_str_equal);
    g_hash_table_insert(files, "/l/cmds", "|/bin/other\n");
    g_autofree char *i = expand(&c, "inc@localhost", &x);
    g_assert_cmpstr(i, ==, "pipe:/bin/other");
    l = x.leaves->pdata[0];
    g_assert_cmpuint(l->priv.uid, ==, 4321); /* the include file's owner */
    alias_expansion_clear(&x);
    g_clear_pointer(&files, g_hash_table_destroy);
    c.table_priv.valid = FALSE;
    g_autofree char *n = expand(&c, "p@localhost", &x);
    g_assert_cmpint(x.status, ==, ALIAS_CONFIG);
    g_assert_nonnull(strstr(x.diag, "no user to run it as"));
    alias_expansion_clear(&x);
    aliases_table_unref(t);
}

static void
test_expand_postmaster(void)
{
    AliasExpandCtx c = mkctx(NULL);
    AliasExpansion x;
    g_autofree char *a = expand(&c, "postmaster@localhost", &x);
    g_assert_cmpstr(a, ==, "mbox:postmaster@localhost");
    g_assert_nonnull(strstr(x.how, "built-in"));
    alias_expansion_clear(&x);
    g_autofree char *b = expand(&c, "PostMaster@example.org", &x);
    g_assert_cmpstr(b, ==, "mbox:postmaster@localhost");
    alias_expansion_clear(&x);
    g_autofree char *m = expand(&c, "MAILER-DAEMON@example.org", &x);
    g_assert_cmpstr(m, ==, "mbox:postmaster@localhost");
    alias_expansion_clear(&x);
    c.postmaster = "alice, bob@remote.test";
    g_autofree char *s = expand(&c, "postmaster@localhost", &x);
    g_assert_cmpstr(s, ==, "mbox:alice@localhost, addr:bob@remote.test");
    alias_expansion_clear(&x);
    AliasTable *t = parse_ok("postmaster: carol\n");
    c.table = t;
    g_autofree char *f = expand(&c, "postmaster@localhost", &x);
    g_assert_cmpstr(f, ==, "mbox:carol@localhost");
    alias_expansion_clear(&x);
    g_autofree char *md = expand(&c, "mailer-daemon@localhost", &x);
    g_assert_cmpstr(md, ==, "mbox:carol@localhost");
    alias_expansion_clear(&x);
    aliases_table_unref(t);
}

static void
test_expand_forward(void)
{
    AliasTable *t = parse_ok("team: bob, carol\n");
    AliasExpandCtx c = mkctx(t);
    c.allow_pipe = TRUE;
    forwards = g_hash_table_new(g_str_hash, g_str_equal);
    g_hash_table_insert(forwards, "bob@localhost", "\\bob, \"|/usr/bin/vacation bob\"");
    g_hash_table_insert(forwards, "carol@localhost", "dave@remote.test");
    g_hash_table_insert(forwards, "erin@localhost", "TEMP");
    g_hash_table_insert(forwards, "back@localhost", "team");
    AliasExpansion x;
    g_autofree char *a = expand(&c, "team@localhost", &x);
    g_assert_cmpstr(a, ==,
                    "mbox:bob@localhost, pipe:/usr/bin/vacation bob, "
                    "addr:dave@remote.test");
    const AliasLeaf *l = x.leaves->pdata[1];
    g_assert_cmpuint(l->priv.uid, ==, 1000); /* the forward file's user */
    g_assert_cmpuint(x.forward_seen, ==, 2);
    alias_expansion_clear(&x);
    g_autofree char *b = expand(&c, "bob@localhost", &x);
    g_assert_nonnull(strstr(x.how, "forward file /home/bob@localhost/.forward"));
    alias_expansion_clear(&x);
    g_autofree char *e = expand(&c, "erin@localhost", &x);
    g_assert_cmpint(x.status, ==, ALIAS_TEMP);
    g_assert_nonnull(strstr(x.diag, "unavailable"));
    alias_expansion_clear(&x);
    g_autofree char *k = expand(&c, "back@localhost", &x); /* forward into an alias */
    g_assert_cmpint(x.status, ==, ALIAS_OK);
    g_assert_cmpstr(k, ==,
                    "mbox:bob@localhost, pipe:/usr/bin/vacation bob, "
                    "addr:dave@remote.test");
    alias_expansion_clear(&x);
    g_clear_pointer(&forwards, g_hash_table_destroy);
    aliases_table_unref(t);
}

static void
test_delivered_to(void)
{
    const char *h = "Received: from x\r\n"
                    "Delivered-To: Alice@Localhost\r\n"
                    "delivered-to:\r\n   <bob@localhost>\r\n"
                    "X-Delivered-To: carol@localhost\r\n"
                    "Subject: Delivered-To: dave@localhost\r\n"
                    "\r\n"
                    "Delivered-To: erin@localhost\r\n";
    gsize n = strlen(h);
    g_assert_true(aliases_delivered_to(h, n, "alice@localhost"));
    g_assert_true(aliases_delivered_to(h, n, "bob@localhost"));
    g_assert_false(aliases_delivered_to(h, n, "carol@localhost"));
    g_assert_false(aliases_delivered_to(h, n, "dave@localhost"));
    g_assert_false(aliases_delivered_to(h, n, "erin@localhost")); /* in the body */
    g_assert_false(aliases_delivered_to(h, n, "alice@localhost.x"));
    const char *last = "Delivered-To: zed@localhost";
    g_assert_true(aliases_delivered_to(last, strlen(last), "zed@localhost"));
    g_assert_false(aliases_delivered_to("", 0, "zed@localhost"));
}

/* --- forward and include files ------------------------------------------------------ */

static char *
mkfile(const char *dir, const char *name, const char *text, mode_t mode)
{
    char *p = g_build_filename(dir, name, NULL);
    g_assert_true(g_file_set_contents(p, text, -1, NULL));
    g_assert_cmpint(chmod(p, mode), ==, 0);
    return p;
}

static AliasStatus
read_fwd(const AliasSys *sys, const char *address, GPtrArray *targets, AliasPriv *priv,
         char **ignored)
{
    g_autofree char *where = NULL, *why = NULL;
    g_ptr_array_set_size(targets, 0);
    alias_priv_clear(priv);
    g_clear_pointer(ignored, g_free);
    AliasStatus st = alias_read_forward(sys, address, targets, priv, &where, &why, ignored);
    if (*ignored)
        g_test_message("%s: %s", address, *ignored);
    return st;
}

static void
test_sys_forward(void)
{
    g_autofree char *dir = kr_test_tmpdir();
    g_autofree char *mail = g_build_filename(dir, "mail", NULL);
    g_autofree char *udir = g_build_filename(mail, "example.org", "erin", NULL);
    g_assert_cmpint(g_mkdir_with_parents(udir, 0700), ==, 0);
    g_autofree char *home = g_build_filename(dir, "home", NULL);
    g_assert_cmpint(g_mkdir_with_parents(home, 0755), ==, 0);
    g_autofree char *pwline =
        g_strdup_printf("sysu:x:%u:%u:System:%s:/bin/sh\n", geteuid(), getegid(), home);
    g_autofree char *passwd = mkfile(dir, "passwd", pwline, 0644);
    AliasSys sys = {.forward = TRUE,
                    .passwd_file = passwd,
                    .forward_dir = mail,
                    .default_domain = "localhost",
                    .self_uid = geteuid()};
    g_autoptr(GPtrArray) targets = g_ptr_array_new_with_free_func(aliases_target_free);
    AliasPriv priv = {0};
    g_autofree char *ignored = NULL;
    /* no file */
    g_assert_cmpint(read_fwd(&sys, "erin@example.org", targets, &priv, &ignored), ==, ALIAS_NONE);
    g_assert_null(ignored);
    /* a good virtual forward file (names lowercased) */
    g_autofree char *fwd = mkfile(udir, ".forward", "carol, dave@remote.test\n", 0644);
    g_assert_cmpint(read_fwd(&sys, "Erin@Example.ORG", targets, &priv, &ignored), ==, ALIAS_OK);
    g_assert_cmpuint(targets->len, ==, 2);
    g_assert_false(priv.valid); /* virtual: nobody to run commands as */
    /* group/world writable */
    chmod(fwd, 0664);
    g_assert_cmpint(read_fwd(&sys, "erin@example.org", targets, &priv, &ignored), ==, ALIAS_NONE);
    g_assert_nonnull(strstr(ignored, "group or world writable"));
    chmod(fwd, 0646);
    g_assert_cmpint(read_fwd(&sys, "erin@example.org", targets, &priv, &ignored), ==, ALIAS_NONE);
    g_assert_nonnull(strstr(ignored, "group or world writable"));
    chmod(fwd, 0600);
    /* owned by someone else */
    if (geteuid() == 0) {
        g_assert_cmpint(chown(fwd, 4242, 4242), ==, 0);
        g_assert_cmpint(read_fwd(&sys, "erin@example.org", targets, &priv, &ignored), ==,
                        ALIAS_NONE);
        g_assert_nonnull(strstr(ignored, "owned by someone else"));
        g_assert_cmpint(chown(fwd, 0, 0), ==, 0);
    }
    /* commands in a virtual user's file: ignored */
    g_assert_true(g_file_set_contents(fwd, "carol\n\"|/bin/sh -c evil\"\n", -1, NULL));
    g_assert_cmpint(read_fwd(&sys, "erin@example.org", targets, &priv, &ignored), ==, ALIAS_NONE);
    g_assert_nonnull(strstr(ignored, ":2: ignored: commands"));
    g_assert_cmpuint(targets->len, ==, 0);
    /* a bad line, an empty file */
    g_assert_true(g_file_set_contents(fwd, "carol\nnot valid\n", -1, NULL));
    g_assert_cmpint(read_fwd(&sys, "erin@example.org", targets, &priv, &ignored), ==, ALIAS_NONE);
    g_assert_nonnull(strstr(ignored, ".forward:2:"));
    g_assert_true(g_file_set_contents(fwd, "# nothing\n", -1, NULL));
    g_assert_cmpint(read_fwd(&sys, "erin@example.org", targets, &priv, &ignored), ==, ALIAS_NONE);
    g_assert_nonnull(strstr(ignored, "no targets"));
    /* a symlink */
    g_assert_cmpint(unlink(fwd), ==, 0);
    g_autofree char *elsewhere = mkfile(dir, "elsewhere", "carol\n", 0644);
    g_assert_cmpint(symlink(elsewhere, fwd), ==, 0);
    g_assert_cmpint(read_fwd(&sys, "erin@example.org", targets, &priv, &ignored), ==, ALIAS_NONE);
    g_assert_nonnull(strstr(ignored, "symbolic link"));
    /* a symlinked user directory is not followed either */
    g_autofree char *other = g_build_filename(mail, "example.org", "frank", NULL);
    g_assert_cmpint(symlink(udir, other), ==, 0);
    g_assert_cmpint(read_fwd(&sys, "frank@example.org", targets, &priv, &ignored), ==, ALIAS_NONE);
    g_assert_nonnull(strstr(ignored, "symbolic link"));
    /* names that are not one path component */
    g_assert_cmpint(read_fwd(&sys, "../etc@example.org", targets, &priv, &ignored), ==, ALIAS_NONE);
    g_assert_null(ignored);
    /* a system user (from passwd_file): ~/.forward, may run commands */
    g_autofree char *sfwd = mkfile(home, ".forward", "\\sysu, \"|/bin/true\"\n", 0644);
    g_assert_cmpint(read_fwd(&sys, "sysu@localhost", targets, &priv, &ignored), ==, ALIAS_OK);
    g_assert_true(priv.valid);
    g_assert_cmpuint(priv.uid, ==, geteuid());
    g_assert_cmpstr(priv.home, ==, home);
    g_assert_cmpuint(targets->len, ==, 2);
    /* only in the default domain */
    g_assert_cmpint(read_fwd(&sys, "sysu@example.org", targets, &priv, &ignored), ==, ALIAS_NONE);
    chmod(sfwd, 0666);
    g_assert_cmpint(read_fwd(&sys, "sysu@localhost", targets, &priv, &ignored), ==, ALIAS_NONE);
    g_assert_nonnull(strstr(ignored, "writable"));
    /* forward files off */
    sys.forward = FALSE;
    chmod(sfwd, 0644);
    g_assert_cmpint(read_fwd(&sys, "sysu@localhost", targets, &priv, &ignored), ==, ALIAS_NONE);
    alias_priv_clear(&priv);
    /* accounts */
    AliasPriv p = {0};
    g_assert_true(alias_pw_by_name(passwd, "sysu", &p));
    g_assert_cmpstr(p.home, ==, home);
    alias_priv_clear(&p);
    g_assert_false(alias_pw_by_name(passwd, "nosuch", &p));
    g_assert_true(alias_pw_by_uid(NULL, 0, &p)); /* the system's root */
    g_assert_cmpstr(p.user, ==, "root");
    alias_priv_clear(&p);
}

static void
test_sys_include(void)
{
    g_autofree char *dir = kr_test_tmpdir();
    g_autoptr(GPtrArray) targets = g_ptr_array_new_with_free_func(aliases_target_free);
    g_autofree char *why = NULL;
    uid_t owner = 99;
    g_autofree char *good = mkfile(dir, "good", "a, b\nc\n", 0644);
    g_assert_cmpint(alias_read_include(good, targets, &owner, &why), ==, ALIAS_OK);
    g_assert_cmpuint(targets->len, ==, 3);
    g_assert_cmpuint(owner, ==, geteuid());
    g_autofree char *ww = mkfile(dir, "ww", "a\n", 0666);
    g_assert_cmpint(alias_read_include(ww, targets, &owner, &why), ==, ALIAS_TEMP);
    g_assert_nonnull(strstr(why, "writable"));
    g_clear_pointer(&why, g_free);
    g_autofree char *bad = mkfile(dir, "bad", "a\nb c\n", 0644);
    g_assert_cmpint(alias_read_include(bad, targets, &owner, &why), ==, ALIAS_CONFIG);
    g_autofree char *want = g_strdup_printf("%s:2:", bad);
    g_assert_nonnull(strstr(why, want));
    g_clear_pointer(&why, g_free);
    g_autofree char *missing = g_build_filename(dir, "missing", NULL);
    g_assert_cmpint(alias_read_include(missing, targets, &owner, &why), ==, ALIAS_TEMP);
    g_clear_pointer(&why, g_free);
    g_assert_cmpint(alias_read_include(dir, targets, &owner, &why), ==, ALIAS_TEMP);
}

/* --- running ------------------------------------------------------------------------ */

/* Someone to run as: ourselves, or nobody when we are root. */
static AliasPriv
run_priv(void)
{
    AliasPriv p = {.valid = TRUE, .uid = geteuid(), .gid = getegid(), .home = (char *)"/"};
    if (geteuid() == 0) {
        p.uid = 65534;
        p.gid = 65534;
        p.user = (char *)"nobody";
    }
    return p;
}

static int
input_fd(const char *text)
{
    g_autofree char *dir = kr_test_tmpdir();
    g_autofree char *p = g_build_filename(dir, "in", NULL);
    g_assert_true(g_file_set_contents(p, text, -1, NULL));
    int fd = open(p, O_RDONLY);
    g_assert_cmpint(fd, >=, 0);
    return fd;
}

static void
test_run_pipe(void)
{
    AliasPriv p = run_priv();
    int in = input_fd("Subject: hi\n\nbody line\n");
    char *env[] = {(char *)"RECIPIENT=team@localhost", (char *)"PATH=/usr/bin:/bin", NULL};
    g_autofree char *d1 = NULL;
    g_assert_cmpint(
        alias_run_pipe(&p, "/bin/sh -c 'cat; echo \"to=$RECIPIENT\"'", env, in, 10, &d1), ==,
        ALIAS_OK);
    g_assert_nonnull(strstr(d1, "Subject: hi body line to=team@localhost"));
    /* read from the start again, no shell */
    g_autofree char *d2 = NULL;
    g_assert_cmpint(alias_run_pipe(&p, "head -c 7", env, in, 10, &d2), ==, ALIAS_OK);
    g_assert_nonnull(strstr(d2, ": Subject"));
    g_autofree char *d3 = NULL;
    g_assert_cmpint(alias_run_pipe(&p, "/bin/sh -c 'echo oops >&2; exit 1'", env, in, 10, &d3), ==,
                    ALIAS_PERM);
    g_assert_nonnull(strstr(d3, "exit status 1: oops"));
    g_autofree char *d4 = NULL;
    g_assert_cmpint(alias_run_pipe(&p, "/bin/sh -c 'exit 75'", env, in, 10, &d4), ==, ALIAS_TEMP);
    g_autofree char *d5 = NULL;
    gint64 t0 = g_get_monotonic_time();
    g_assert_cmpint(alias_run_pipe(&p, "/bin/sh -c 'echo started; sleep 30'", env, in, 1, &d5), ==,
                    ALIAS_PERM);
    g_assert_cmpint(g_get_monotonic_time() - t0, <, 5 * G_USEC_PER_SEC);
    g_assert_nonnull(strstr(d5, "time limit of 1s exceeded: started"));
    g_autofree char *d6 = NULL;
    g_assert_cmpint(alias_run_pipe(&p, "/nonexistent/program", env, in, 10, &d6), ==, ALIAS_PERM);
    g_assert_nonnull(strstr(d6, "cannot execute"));
    g_autofree char *d7 = NULL;
    g_assert_cmpint(alias_run_pipe(&p, "kill -9 $$", env, in, 10, &d7), ==, ALIAS_TEMP);
    g_assert_nonnull(strstr(d7, "signal 9"));
    /* lots of output: kept short, the command is not blocked */
    g_autofree char *d8 = NULL;
    g_assert_cmpint(
        alias_run_pipe(&p, "/bin/sh -c 'yes | head -c 1000000; exit 2'", env, in, 10, &d8), ==,
        ALIAS_PERM);
    g_assert_cmpuint(strlen(d8), <, 400);
    /* never as root */
    AliasPriv root = {.valid = TRUE, .uid = 0, .gid = 0};
    g_autofree char *d9 = NULL;
    g_assert_cmpint(alias_run_pipe(&root, "/bin/true", env, in, 10, &d9), ==, ALIAS_PERM);
    g_assert_nonnull(strstr(d9, "root"));
    if (geteuid() != 0) {
        AliasPriv other = {.valid = TRUE, .uid = geteuid() + 1, .gid = 1, .user = (char *)"x"};
        g_autofree char *d10 = NULL;
        g_assert_cmpint(alias_run_pipe(&other, "/bin/true", env, in, 10, &d10), ==, ALIAS_TEMP);
        g_assert_nonnull(strstr(d10, "not running as root"));
    } else {
        g_autofree char *d11 = NULL;
        g_assert_cmpint(alias_run_pipe(&p, "/usr/bin/id -u", env, in, 10, &d11), ==, ALIAS_OK);
        g_assert_nonnull(strstr(d11, ": 65534"));
    }
    close(in);
    g_auto(GStrv) a1 = alias_command_argv("/usr/bin/prog  -a   b");
    g_assert_cmpuint(g_strv_length(a1), ==, 3);
    g_assert_cmpstr(a1[2], ==, "b");
    g_auto(GStrv) a2 = alias_command_argv("prog > /tmp/x");
    g_assert_cmpstr(a2[0], ==, "/bin/sh");
    g_assert_cmpstr(a2[2], ==, "prog > /tmp/x");
    g_auto(GStrv) a3 = alias_command_argv("cat");
    g_assert_true(g_str_has_suffix(a3[0], "/cat") && a3[0][0] == '/');
}

static void
test_run_file(void)
{
    AliasPriv p = run_priv();
    g_autofree char *dir = kr_test_tmpdir();
    g_autofree char *out = g_build_filename(dir, "out", NULL);
    g_assert_cmpint(g_mkdir_with_parents(out, 0777), ==, 0);
    chmod(dir, 0755);
    chmod(out, 0777);
    int in = input_fd("Subject: x\n\nFrom the start\n>From here\nno newline at end");
    g_autofree char *mpath = g_build_filename(dir, "mbox-src", NULL);
    int mbox = open(mpath, O_RDWR | O_CREAT | O_TRUNC, 0600);
    g_autoptr(GError) err = NULL;
    g_autofree char *from = alias_mbox_from_line("a b@x", 0);
    g_assert_true(g_str_has_prefix(from, "From a_b@x "));
    g_assert_true(alias_mbox_copy(in, mbox, from, &err));
    g_autofree char *m = NULL;
    g_assert_true(g_file_get_contents(mpath, &m, NULL, NULL));
    g_autofree char *want = g_strconcat(
        from, "Subject: x\n\n>From the start\n>>From here\nno newline at end\n\n", NULL);
    g_assert_cmpstr(m, ==, want);
    g_autofree char *target = g_build_filename(out, "archive", NULL);
    g_autofree char *d1 = NULL, *d2 = NULL;
    g_assert_cmpint(alias_run_file(&p, target, mbox, 10, &d1), ==, ALIAS_OK);
    g_assert_cmpint(alias_run_file(&p, target, mbox, 10, &d2), ==, ALIAS_OK);
    g_autofree char *got = NULL;
    g_assert_true(g_file_get_contents(target, &got, NULL, NULL));
    g_autofree char *twice = g_strconcat(want, want, NULL);
    g_assert_cmpstr(got, ==, twice);
    struct stat st;
    g_assert_cmpint(stat(target, &st), ==, 0);
    g_assert_cmpuint(st.st_uid, ==, p.uid);
    g_assert_cmpuint(st.st_mode & 0777, ==, 0600);
    /* a symlink is not followed, a directory is not a file */
    g_autofree char *link = g_build_filename(out, "link", NULL);
    g_assert_cmpint(symlink(target, link), ==, 0);
    g_autofree char *d3 = NULL;
    g_assert_cmpint(alias_run_file(&p, link, mbox, 10, &d3), ==, ALIAS_PERM);
    g_assert_nonnull(strstr(d3, "cannot open"));
    g_autofree char *d4 = NULL;
    g_assert_cmpint(alias_run_file(&p, out, mbox, 10, &d4), ==, ALIAS_PERM);
    close(in);
    close(mbox);
}

int
main(int argc, char **argv)
{
    kr_test_init(&argc, &argv);
    g_test_add_func("/aliases/parse/good", test_parse_good);
    g_test_add_func("/aliases/parse/bad", test_parse_bad);
    g_test_add_func("/aliases/parse/huge", test_parse_huge);
    g_test_add_func("/aliases/parse/list", test_parse_list);
    g_test_add_func("/aliases/parse/file", test_table_file);
    g_test_add_func("/aliases/expand/lists", test_expand_lists);
    g_test_add_func("/aliases/expand/loops", test_expand_loops);
    g_test_add_func("/aliases/expand/limits", test_expand_limits);
    g_test_add_func("/aliases/expand/pipes", test_expand_pipes);
    g_test_add_func("/aliases/expand/postmaster", test_expand_postmaster);
    g_test_add_func("/aliases/expand/forward", test_expand_forward);
    g_test_add_func("/aliases/delivered-to", test_delivered_to);
    g_test_add_func("/aliases/sys/forward", test_sys_forward);
    g_test_add_func("/aliases/sys/include", test_sys_include);
    g_test_add_func("/aliases/run/pipe", test_run_pipe);
    g_test_add_func("/aliases/run/file", test_run_file);
    return g_test_run();
}
