/* SPDX-License-Identifier: MIT */
/*
 * example-filter.c - the worked example of a kurir module: a pipeline
 * stage that adds a header to every message and rejects messages whose
 * Subject matches a pattern. docs/modules.md walks through this file.
 *
 * Stage type "example-filter", per-node settings:
 *   header          header name to add          (default "X-Kurir-Filter")
 *   value           its value                   (default "checked")
 *   reject_subject  GLib regex; a message whose Subject matches is
 *                   refused with 550 5.7.1      (default: none)
 *   reject_text     reply text on refusal       (default "message refused by filter")
 *
 * Module settings (the `example-filter` group): none.
 */
#include <kurir/kurir.h>

/* Per-node settings, filled by the core from the node's config group. */
typedef struct {
    char *header;
    char *value;
    char *reject_subject;
    char *reject_text;
} FilterConf;

static const KrSetting filter_settings[] = {
    KR_SETTING("header", KR_SET_STRING, FilterConf, header, "X-Kurir-Filter", 0, 0,
               "header to add"),
    KR_SETTING("value", KR_SET_STRING, FilterConf, value, "checked", 0, 0, "its value"),
    KR_SETTING("reject_subject", KR_SET_STRING, FilterConf, reject_subject, NULL, 0, 0,
               "regex: reject messages whose Subject matches"),
    KR_SETTING("reject_text", KR_SET_STRING, FilterConf, reject_text,
               "message refused by filter", 0, 0, "reply text on refusal"),
    KR_SETTING_END,
};

/* Per-node state, made once in create(). */
typedef struct {
    GRegex *reject;
} Filter;

static gboolean
filter_create(KrStage *stage, GError **error)
{
    FilterConf *c = kr_stage_conf(stage);
    Filter *f = g_new0(Filter, 1);
    if (!c->header || !*c->header || strpbrk(c->header, ": \t\r\n")) {
        g_set_error(error, G_REGEX_ERROR, 0, "'header' must be a header field name");
        g_free(f);
        return FALSE;
    }
    if (c->reject_subject) {
        f->reject = g_regex_new(c->reject_subject, G_REGEX_CASELESS, 0, error);
        if (!f->reject) {
            g_free(f);
            return FALSE;
        }
    }
    kr_stage_set_data(stage, f);
    return TRUE;
}

static void
filter_destroy(KrStage *stage)
{
    Filter *f = kr_stage_data(stage);
    if (f && f->reject)
        g_regex_unref(f->reject);
    g_free(f);
}

/* The work: answer exactly once. This filter is quick, so it answers at
 * once; a slow one would start its work and answer from a callback. */
static void
filter_process(KrStage *stage, KrJob *job)
{
    FilterConf *c = kr_stage_conf(stage);
    Filter *f = kr_stage_data(stage);
    KrMsg *msg = kr_job_msg(job);
    const char *subject = kr_msg_header(msg, "Subject", 0);
    if (f->reject && subject && g_regex_match(f->reject, subject, 0, NULL)) {
        g_message("%s: rejected by %s: subject matches", kr_msg_queue_id(msg),
                  kr_stage_name(stage));
        kr_job_reject(job, 550, "5.7.1", "%s", c->reject_text);
        return;
    }
    g_autoptr(GError) err = NULL;
    if (!kr_msg_prepend_header(msg, c->header, c->value, &err)) {
        kr_job_defer(job, "4.3.0", "filter error: %s", err->message);
        return;
    }
    kr_job_continue(job);
}

static const KrStageType filter_type = {
    .struct_size = sizeof(KrStageType),
    .name = "example-filter",
    .summary = "add a header; reject by Subject pattern",
    .settings = filter_settings,
    .conf_size = sizeof(FilterConf),
    .create = filter_create,
    .destroy = filter_destroy,
    .process = filter_process,
};

static gboolean
example_init(KrModule *mod, GError **error)
{
    return kr_register_stage(mod, &filter_type, error);
}

KR_MODULE(example_filter, "example-filter", "1.0", "example filter stage for integrators", NULL,
          0, example_init, NULL);
