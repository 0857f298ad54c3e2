/* SPDX-License-Identifier: MIT */
/*
 * kr-builtin.c - stage types the core provides itself, registered under
 * the pseudo-module "core":
 *
 *   maildrop   entry of the receive side (SMTP and sendmail inject here);
 *              passes every job on to `next`
 *   discard    ends the pipeline, dropping the job's recipients (logged)
 *   reject     ends the pipeline, refusing with its settings:
 *              code (default 550), ecode ("5.7.1"), text ("rejected")
 */
#include "kr-startup.h"
#include "kr-registry-private.h"

static void
pass_process(KrStage *stage, KrJob *job)
{
    kr_job_continue(job);
}

static void
discard_process(KrStage *stage, KrJob *job)
{
    kr_job_discard(job);
}

typedef struct {
    gint64 code;
    char *ecode;
    char *text;
} RejectConf;

static const KrSetting reject_settings[] = {
    KR_SETTING("code", KR_SET_INT, RejectConf, code, "550", 400, 599, "reply code"),
    KR_SETTING("ecode", KR_SET_STRING, RejectConf, ecode, "5.7.1", 0, 0, "enhanced status code"),
    KR_SETTING("text", KR_SET_STRING, RejectConf, text, "rejected", 0, 0, "reply text"),
    KR_SETTING_END,
};

static void
reject_process(KrStage *stage, KrJob *job)
{
    RejectConf *c = kr_stage_conf(stage);
    kr_job_reject(job, (int)c->code, c->ecode, "%s", c->text);
}

static const KrStageType builtin_types[] = {
    {.struct_size = sizeof(KrStageType),
     .name = "maildrop",
     .summary = "receive-side entry: SMTP and sendmail inject here",
     .flags = KR_STAGE_ENTRY,
     .process = pass_process},
    {.struct_size = sizeof(KrStageType),
     .name = "discard",
     .summary = "drop the message's recipients (logged)",
     .flags = KR_STAGE_TERMINAL,
     .process = discard_process},
    {.struct_size = sizeof(KrStageType),
     .name = "reject",
     .summary = "refuse with a fixed reply",
     .flags = KR_STAGE_TERMINAL,
     .settings = reject_settings,
     .conf_size = sizeof(RejectConf),
     .process = reject_process},
};

static const KrModuleDesc core_desc = {
    .abi_major = KR_ABI_MAJOR,
    .abi_minor = KR_ABI_MINOR,
    .struct_size = sizeof(KrModuleDesc),
    .name = "core",
    .version = "1",
    .summary = "the core's own stage types",
};

static KrModule core_mod = {.desc = &core_desc, .name = (char *)"core"};

KrModule *
kr_builtin_module(void)
{
    return &core_mod;
}

void
kr_builtin_register(void)
{
    if (kr_registry_stage("maildrop"))
        return;
    kr_registry_begin(&core_mod);
    for (gsize i = 0; i < G_N_ELEMENTS(builtin_types); i++) {
        g_autoptr(GError) err = NULL;
        if (!kr_register_stage(&core_mod, &builtin_types[i], &err))
            g_critical("%s", err->message);
    }
    kr_registry_end();
}
