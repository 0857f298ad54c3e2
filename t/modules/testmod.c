/* SPDX-License-Identifier: MIT */
/*
 * testmod.c - small modules for the loader and pipeline tests, built in
 * several variants by t/SConscript (macros select the variant):
 *
 *   testgood      registers stage types test-pass, test-async,
 *                 test-reject, test-route, test-split, test-tag, a
 *                 listener type "test-echo" and a command "testcmd"; has a
 *                 settings table of every type
 *   testbadabi    descriptor with ABI major 99
 *   testnewminor  descriptor with a newer ABI minor than the core
 *   testnodesc    no descriptor at all
 *   testmisnamed  descriptor named "somethingelse"
 *   testunres     references a symbol that does not exist
 *   testdup       registers stage type test-pass again (name clash)
 *   testfailinit  init() fails with a message
 */
#include <kurir/kurir.h>

#ifndef TM_SYM
#define TM_SYM testgood
#define TM_NAME "testgood"
#endif

typedef struct {
    gboolean flag;
    gint64 count;
    gint64 size;
    gint64 wait;
    char *word;
    int mode;
    char **list;
} TmConf;

static const char *const tm_modes[] = {"one", "two", "three", NULL};

static const KrSetting tm_settings[] = {
    KR_SETTING("flag", KR_SET_BOOL, TmConf, flag, "false", 0, 0, "a boolean"),
    KR_SETTING("count", KR_SET_INT, TmConf, count, "5", 1, 10, "an int in [1,10]"),
    KR_SETTING("max_message_size", KR_SET_SIZE, TmConf, size, "10M", 0, 0, "a size"),
    KR_SETTING("wait", KR_SET_DURATION, TmConf, wait, "5m", 0, 0, "a duration"),
    KR_SETTING("word", KR_SET_STRING, TmConf, word, "hello", 0, 0, "a string"),
    KR_SETTING_ENUM("mode", TmConf, mode, "one", tm_modes, "an enum"),
    KR_SETTING("list", KR_SET_STRLIST, TmConf, list, "a,b", 0, 0, "a list"),
    KR_SETTING_END,
};

#if defined(TM_UNRESOLVED)
extern int kr_this_symbol_does_not_exist(void);
int tm_use_it(void);
__attribute__((visibility("default"))) int
tm_use_it(void)
{
    return kr_this_symbol_does_not_exist();
}
#endif

/* test-pass: continue. */
static void
pass_process(KrStage *stage, KrJob *job)
{
    kr_job_continue(job);
}

/* test-async: answer from a timer (10 ms later). */
typedef struct {
    gint64 ms;
} AsyncConf;
static const KrSetting async_settings[] = {
    KR_SETTING("delay_ms", KR_SET_INT, AsyncConf, ms, "10", 0, 10000, "answer after this"),
    KR_SETTING_END,
};

static gboolean
async_answer(gpointer p)
{
    kr_job_continue(p);
    return G_SOURCE_REMOVE;
}

static void
async_process(KrStage *stage, KrJob *job)
{
    AsyncConf *c = kr_stage_conf(stage);
    kr_msg_set_attr(kr_job_msg(job), "async_seen", "yes");
    g_timeout_add((guint)c->ms, async_answer, job);
}

/* test-reject: reject when the sender contains "bad", else continue. */
static void
reject_process(KrStage *stage, KrJob *job)
{
    if (strstr(kr_msg_sender(kr_job_msg(job)), "bad"))
        kr_job_reject(job, 550, "5.7.1", "sender %s refused", kr_msg_sender(kr_job_msg(job)));
    else if (strstr(kr_msg_sender(kr_job_msg(job)), "later"))
        kr_job_defer(job, "4.7.1", "try later");
    else
        kr_job_continue(job);
}

/* test-route: route the whole job by the "route" attribute. */
static const char *const route_labels[] = {"left", "right", NULL};
static void
route_process(KrStage *stage, KrJob *job)
{
    const char *r = kr_msg_attr(kr_job_msg(job), "route");
    kr_job_route(job, r ? r : "left");
}

/* test-split: route each recipient by its local part prefix (left/right). */
static void
split_process(KrStage *stage, KrJob *job)
{
    for (guint i = 0; i < kr_job_rcpt_count(job); i++) {
        KrRcpt *r = kr_job_rcpt(job, i);
        if (g_str_has_prefix(r->address, "left"))
            kr_job_rcpt_route(job, i, "left");
        else if (g_str_has_prefix(r->address, "right"))
            kr_job_rcpt_route(job, i, "right");
        else if (g_str_has_prefix(r->address, "fail"))
            kr_job_rcpt_done(job, i, KR_RCPT_FAILED, 550, "5.1.1", "no such user");
    }
    kr_job_continue(job);
}

/* test-tag: terminal; marks each recipient delivered with the node name. */
static void
tag_process(KrStage *stage, KrJob *job)
{
    for (guint i = 0; i < kr_job_rcpt_count(job); i++)
        kr_job_rcpt_done(job, i, KR_RCPT_DELIVERED, 250, "2.0.0", kr_stage_name(stage));
    kr_job_continue(job);
}

static const KrStageType tm_types[] = {
    {.struct_size = sizeof(KrStageType), .name = "test-pass", .process = pass_process},
    {.struct_size = sizeof(KrStageType), .name = "test-entry", .flags = KR_STAGE_ENTRY,
     .process = pass_process},
    {.struct_size = sizeof(KrStageType), .name = "test-async", .settings = async_settings,
     .conf_size = sizeof(AsyncConf), .process = async_process},
    {.struct_size = sizeof(KrStageType), .name = "test-reject", .process = reject_process},
    {.struct_size = sizeof(KrStageType), .name = "test-route", .labels = route_labels,
     .process = route_process},
    {.struct_size = sizeof(KrStageType), .name = "test-split", .labels = route_labels,
     .process = split_process},
    {.struct_size = sizeof(KrStageType), .name = "test-tag", .flags = KR_STAGE_TERMINAL,
     .process = tag_process},
};

#ifdef TM_DUP
#define TM_N_TYPES 1 /* only test-pass: clashes with testgood */
#else
#define TM_N_TYPES G_N_ELEMENTS(tm_types)
#endif

static int
cmd_run(KrModule *mod, int argc, char **argv)
{
    TmConf *c = kr_module_conf(mod);
    g_print("testcmd count=%" G_GINT64_FORMAT " word=%s args=%d\n", c->count, c->word, argc - 1);
    return 3;
}

static const KrCommand tm_cmd = {
    .struct_size = sizeof(KrCommand), .name = "testcmd", .usage = "testcmd   a test command",
    .run = cmd_run};

static gboolean
tm_init(KrModule *mod, GError **error)
{
#ifdef TM_FAILINIT
    g_set_error(error, G_FILE_ERROR, G_FILE_ERROR_FAILED, "init refused on purpose");
    return FALSE;
#endif
    for (gsize i = 0; i < TM_N_TYPES; i++)
        if (!kr_register_stage(mod, &tm_types[i], error))
            return FALSE;
    return TM_N_TYPES == 1 || kr_register_command(mod, &tm_cmd, error);
}

#ifndef TM_NODESC
KR_PUBLIC const KrModuleDesc G_PASTE(kr_module_, TM_SYM) = {
#ifdef TM_ABI_MAJOR
    .abi_major = TM_ABI_MAJOR,
#else
    .abi_major = KR_ABI_MAJOR,
#endif
#ifdef TM_ABI_MINOR
    .abi_minor = TM_ABI_MINOR,
#else
    .abi_minor = KR_ABI_MINOR,
#endif
    .struct_size = sizeof(KrModuleDesc),
#ifdef TM_DESC_NAME
    .name = TM_DESC_NAME,
#else
    .name = TM_NAME,
#endif
    .version = "0",
    .summary = "test module",
    .settings = tm_settings,
    .conf_size = sizeof(TmConf),
    .init = tm_init,
};
#else
KR_PUBLIC const void *const tm_not_a_descriptor[] = {(const void *)tm_init, tm_settings};
#endif
