/* SPDX-License-Identifier: MIT */
/*
 * test-config.c - `kurird --check-config` against bad configurations:
 * every problem is one line "FILE:LINE: ..." on stderr, exit status 1,
 * and nothing is started. Uses the test modules in BUILD/t/modules.
 */
#include "testlib.h"
#include <glib/gstdio.h>

typedef struct {
    const char *name;
    const char *body;    /* config text after the core group; %s = nothing */
    int line;            /* expected line of the first problem (0: any) */
    const char *expect;  /* substring of that line */
} Case;

static char *
run_check(const char *conf_text, int *status_r, char **conf_path_r)
{
    char *dir = kr_test_tmpdir();
    char *conf = g_build_filename(dir, "kurir.conf", NULL);
    g_assert_true(g_file_set_contents(conf, conf_text, -1, NULL));
    char *kurird = g_build_filename(kr_test_build_dir(), "kurird", NULL);
    char *argv[] = {kurird, "--check-config", "-c", conf, "--data-dir", dir, NULL};
    char *out = NULL, *err = NULL;
    GError *e = NULL;
    g_assert_true(g_spawn_sync(NULL, argv, NULL, 0, NULL, NULL, &out, &err, status_r, &e));
    g_assert_no_error(e);
    /* --check-config never starts anything. */
    char *ports = g_build_filename(dir, "run", "listeners", NULL);
    g_assert_false(g_file_test(ports, G_FILE_TEST_EXISTS));
    g_free(ports);
    g_free(kurird);
    g_free(out);
    *conf_path_r = conf;
    g_free(dir);
    return err;
}

static char *
with_core(const char *body)
{
    char *mp = g_build_filename(kr_test_build_dir(), "t", "modules", NULL);
    /* Line 1 is the core group; bodies start at line 2. */
    char *s = g_strdup_printf("core = { module_path = \"%s\"; };\n%s", mp, body);
    g_free(mp);
    return s;
}

static void
check_case(gconstpointer data)
{
    const Case *c = data;
    g_autofree char *text = with_core(c->body);
    int status = 0;
    g_autofree char *conf = NULL;
    g_autofree char *err = run_check(text, &status, &conf);
    if (g_test_verbose())
        g_test_message("stderr: %s", err);
    g_assert_true(g_spawn_check_wait_status(status, NULL) == FALSE);
    g_assert_true(WIFEXITED(status));
    g_assert_cmpint(WEXITSTATUS(status), ==, 1);
    g_autofree char *want = c->line ? g_strdup_printf("%s:%d: ", conf, c->line) : g_strdup(conf);
    gboolean found = FALSE;
    g_auto(GStrv) lines = g_strsplit(err, "\n", -1);
    for (char **l = lines; *l; l++)
        if (g_str_has_prefix(*l, want) && strstr(*l, c->expect))
            found = TRUE;
    if (!found)
        g_test_message("expected a line starting '%s' containing '%s'; got:\n%s", want, c->expect,
                       err);
    g_assert_true(found);
}

static const Case cases[] = {
    {"syntax", "modules = [ \"testgood\" ];\ntestgood = { count = 3 \n};\nx = ;\n", 5,
     "syntax error"},
    {"unknown-key", "modules = [ \"testgood\" ];\ntestgood = {\n  max_mesage_size = \"1M\";\n};\n", 4,
     "unknown setting 'max_mesage_size' in module 'testgood' settings (did you mean 'max_message_size'?)"},
    {"wrong-type", "modules = [ \"testgood\" ];\ntestgood = {\n  count = \"many\";\n};\n", 4,
     "'count' must be an integer"},
    {"out-of-range", "modules = [ \"testgood\" ];\ntestgood = {\n  count = 11;\n};\n", 4,
     "out of range [1, 10]"},
    {"bad-bool", "modules = [ \"testgood\" ];\ntestgood = { flag = 1; };\n", 3, "'flag' must be a boolean"},
    {"bad-size", "modules = [ \"testgood\" ];\ntestgood = { max_message_size = \"10Q\"; };\n", 3,
     "must be a size"},
    {"bad-duration", "modules = [ \"testgood\" ];\ntestgood = { wait = \"5x\"; };\n", 3,
     "must be a duration"},
    {"bad-enum", "modules = [ \"testgood\" ];\ntestgood = { mode = \"four\"; };\n", 3,
     "'mode' must be one of"},
    {"bad-list", "modules = [ \"testgood\" ];\ntestgood = { list = [ 1, 2 ]; };\n", 3, "list of strings"},
    {"unknown-module", "modules = [\n  \"nosuch\"\n];\n", 0, "unknown module 'nosuch'"},
    {"bad-module-name", "modules = [ \"../evil\" ];\n", 2, "bad module name"},
    {"abi-major", "modules = [ \"testbadabi\" ];\n", 2, "built for module ABI 99.0"},
    {"abi-minor", "modules = [ \"testnewminor\" ];\n", 2, "newer than this kurir's"},
    {"no-descriptor", "modules = [ \"testnodesc\" ];\n", 2, "no module descriptor 'kr_module_testnodesc'"},
    {"misnamed", "modules = [ \"testmisnamed\" ];\n", 2,
     "descriptor names the module 'somethingelse', but the file is 'testmisnamed.so'"},
    {"unresolved", "modules = [ \"testunres\" ];\n", 2, "undefined symbol: kr_this_symbol_does_not_exist"},
    {"listed-twice", "modules = [ \"testgood\",\n \"testgood\" ];\n", 3, "listed twice"},
    {"name-clash", "modules = [ \"testgood\", \"testdup\" ];\n", 2,
     "stage 'test-pass' is already registered by module 'testgood'"},
    {"init-fails", "modules = [ \"testfailinit\" ];\n", 2, "init refused on purpose"},
    {"unknown-top", "modules = [ \"testgood\" ];\nmodulez = [ ];\n", 3,
     "unknown top-level setting 'modulez' (did you mean 'modules'?)"},
    {"group-not-loaded", "modules = [ ];\ntestgood = { count = 2; };\n", 3, "not in 'modules'"},
    {"unknown-stage-type", "modules = [ \"testgood\" ];\npipeline = {\n  a = { type = \"test-entry\"; next = \"b\"; };\n  b = { type = \"nosuch\"; };\n};\n", 5,
     "unknown stage type 'nosuch'"},
    {"dangling-edge", "modules = [ \"testgood\" ];\npipeline = {\n  a = { type = \"test-entry\"; next = \"nowhere\"; };\n};\n", 4,
     "'next' points to 'nowhere', which is not a node"},
    {"unreachable", "modules = [ \"testgood\" ];\npipeline = {\n  a = { type = \"test-entry\"; };\n  b = { type = \"test-pass\"; };\n};\n", 5,
     "pipeline node 'b' is unreachable"},
    {"cycle", "modules = [ \"testgood\" ];\npipeline = {\n  a = { type = \"test-entry\"; next = \"b\"; };\n  b = { type = \"test-pass\"; next = \"c\"; };\n  c = { type = \"test-pass\"; next = \"b\"; };\n};\n", 0,
     "pipeline has a cycle"},
    {"bad-label", "modules = [ \"testgood\" ];\npipeline = {\n  a = { type = \"test-entry\"; next = \"r\"; };\n  r = { type = \"test-route\"; routes = {\n    up = \"a\"; }; };\n};\n", 6,
     "never routes to 'up'"},
    {"terminal-next", "modules = [ \"testgood\" ];\npipeline = {\n  a = { type = \"test-entry\"; next = \"t\"; };\n  t = { type = \"test-tag\";\n    next = \"a\"; };\n};\n", 6,
     "takes no 'next'"},
    {"node-setting", "modules = [ \"testgood\" ];\npipeline = {\n  a = { type = \"test-entry\"; next = \"w\"; };\n  w = { type = \"test-async\"; delay_ms = -5; };\n};\n", 5,
     "out of range"},
    {"node-unknown-key", "modules = [ \"testgood\" ];\npipeline = {\n  a = { type = \"test-entry\"; nxt = \"a\"; };\n};\n", 4,
     "unknown setting 'nxt' in pipeline node 'a' (type test-entry) (did you mean 'next'?)"},
    {"listener-type", "modules = [ \"testgood\" ];\nlisteners = (\n  { name = \"x\"; type = \"nosuch\"; port = 0; }\n);\n", 4,
     "unknown listener type 'nosuch'"},
    {"core-key", "modules = [ ];\ncore2 = { };\n", 3, "not in 'modules' (did you mean 'core'?)"},
};

static void
test_multiple_problems(void)
{
    /* All problems are reported, not only the first. */
    g_autofree char *text = with_core("modules = [ \"testgood\", \"testbadabi\" ];\n"
                                      "testgood = { count = 0; word = 5; };\n");
    int status;
    g_autofree char *conf = NULL;
    g_autofree char *err = run_check(text, &status, &conf);
    g_assert_nonnull(strstr(err, "ABI 99"));
    g_assert_nonnull(strstr(err, "'count'"));
    g_assert_nonnull(strstr(err, "'word' must be a string"));
}

static void
test_good(void)
{
    g_autofree char *text = with_core(
        "modules = [ \"testgood\" ];\ntestgood = { count = 7; max_message_size = \"2M\"; wait = \"4h\"; "
        "mode = \"two\"; list = \"x\"; };\n"
        "pipeline = {\n  a = { type = \"test-entry\"; next = \"r\"; };\n"
        "  r = { type = \"test-route\"; routes = { left = \"t\"; right = \"t\"; }; };\n"
        "  t = { type = \"test-tag\"; };\n};\n");
    int status;
    g_autofree char *conf = NULL;
    g_autofree char *err = run_check(text, &status, &conf);
    g_assert_cmpstr(err, ==, "");
    g_assert_true(g_spawn_check_wait_status(status, NULL));
}

static void
test_embedded_default(void)
{
    /* The embedded default (etc/kurir.conf) must always validate. */
    char *dir = kr_test_tmpdir();
    g_autofree char *kurird = g_build_filename(kr_test_build_dir(), "kurird", NULL);
    char *argv[] = {kurird, "--check-config", "--data-dir", dir, NULL};
    g_autofree char *out = NULL, *err = NULL;
    int status;
    g_assert_true(g_spawn_sync(NULL, argv, NULL, 0, NULL, NULL, &out, &err, &status, NULL));
    if (!g_spawn_check_wait_status(status, NULL))
        g_test_message("%s", err);
    g_assert_true(g_spawn_check_wait_status(status, NULL));
    g_assert_nonnull(strstr(out, "configuration ok"));
    g_free(dir);
}

int
main(int argc, char **argv)
{
    kr_test_init(&argc, &argv);
    for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autofree char *path = g_strdup_printf("/config/bad/%s", cases[i].name);
        g_test_add_data_func(path, &cases[i], check_case);
    }
    g_test_add_func("/config/bad/all-problems-reported", test_multiple_problems);
    g_test_add_func("/config/good", test_good);
    g_test_add_func("/config/embedded-default", test_embedded_default);
    return g_test_run();
}
