/* SPDX-License-Identifier: MIT */
/*
 * kr-pipeline.c - the pipeline graph and the engine that moves jobs
 * through it.
 *
 *   kr_pipeline_build(group, errors)   parse + check the graph, create nodes
 *   kr_pipeline_run(entry, msg, rcpts, done, ud, error)   start a job
 *   kr_job_*                           a stage's answers (kr-pipeline.h)
 *
 * Graph checks: every node has a known `type`; its settings parse against
 * the type's table; `next` and every `routes` target name a node; route
 * labels are ones the type declares; terminal types have no `next`; every
 * node is reachable from an entry-type node; there are no cycles.
 *
 * Engine: a job is (message, recipient indexes, node). When the stage
 * answers, finished recipients leave the job, recipients routed one by
 * one split into sub-jobs, and the rest follow the verdict. All branches
 * of one kr_pipeline_run share a Run that calls done() once when the
 * last branch ends. Answers may come synchronously from process() or
 * later from the main loop; the next stage is entered from an idle
 * callback so a stage's process() never re-enters itself.
 */
#include "kr-pipeline-private.h"
#include "kr-registry-private.h"
#include "kr-settings-private.h"

struct KrStage {
    char *name;
    const KrStageType *type;
    gpointer conf;
    gpointer data;
    char *next;
    GHashTable *routes; /* label -> node name */
    config_setting_t *where;
    gboolean created;
};

typedef struct Run {
    KrMsg *msg;
    KrJobDoneFunc done;
    gpointer ud;
    guint branches;
    KrJobResult result;
    char *r_ecode, *r_text, *r_stage;
    gboolean discarded; /* some branch was discarded */
} Run;

struct KrJob {
    Run *run;
    KrStage *stage;
    GArray *rcpts;        /* guint indexes into the message */
    GPtrArray *labels;    /* per job rcpt: route label or NULL */
    GArray *finished;     /* gboolean per job rcpt */
    gboolean answered;
};

static GHashTable *nodes; /* name -> KrStage */
static guint in_flight;

static void stage_free(gpointer p)
{
    KrStage *s = p;
    if (s->created && s->type->destroy)
        s->type->destroy(s);
    if (s->conf)
        kr_settings_clear(s->type->settings, s->conf);
    g_free(s->conf);
    g_free(s->name);
    g_free(s->next);
    if (s->routes)
        g_hash_table_destroy(s->routes);
    g_free(s);
}

const char *
kr_stage_name(const KrStage *stage)
{
    return stage->name;
}

gpointer
kr_stage_conf(const KrStage *stage)
{
    return stage->conf;
}

gpointer
kr_stage_data(const KrStage *stage)
{
    return stage->data;
}

void
kr_stage_set_data(KrStage *stage, gpointer data)
{
    stage->data = data;
}

const char *
kr_stage_next(const KrStage *stage)
{
    return stage->next;
}

gboolean
kr_pipeline_has_node(const char *name)
{
    return nodes && g_hash_table_contains(nodes, name);
}

const char *
kr_pipeline_node_next(const char *node)
{
    KrStage *s = nodes ? g_hash_table_lookup(nodes, node) : NULL;
    return s ? s->next : NULL;
}

GPtrArray *
kr_pipeline_nodes_of_type(const char *type)
{
    GPtrArray *out = g_ptr_array_new_with_free_func(g_free);
    if (!nodes)
        return out;
    GHashTableIter it;
    gpointer k, v;
    g_hash_table_iter_init(&it, nodes);
    while (g_hash_table_iter_next(&it, &k, &v))
        if (strcmp(((KrStage *)v)->type->name, type) == 0)
            g_ptr_array_add(out, g_strdup(k));
    return out;
}

guint
kr_pipeline_jobs_in_flight(void)
{
    return in_flight;
}

void
kr_pipeline_destroy(void)
{
    g_clear_pointer(&nodes, g_hash_table_destroy);
}

/* --- building ---------------------------------------------------------- */

static const char *const node_keys[] = {"type", "next", "routes", NULL};

static gboolean
type_has_label(const KrStageType *t, const char *label)
{
    if (!t->labels)
        return TRUE;
    for (const char *const *l = t->labels; *l; l++)
        if (strcmp(*l, label) == 0)
            return TRUE;
    return FALSE;
}

/* Nodes whose type is unknown: edges to them and reachability are not
 * reported again (the type error is the one that matters). */
static GHashTable *broken;

static void
parse_node(config_setting_t *ns, GHashTable *out, GPtrArray *errors)
{
    const char *name = config_setting_name(ns);
    g_hash_table_add(broken, (gpointer)name);
    if (!config_setting_is_group(ns)) {
        kr_diag(errors, ns, "pipeline node '%s' must be a group { type = \"...\"; ... }", name);
        return;
    }
    config_setting_t *ts = config_setting_get_member(ns, "type");
    if (!ts || config_setting_type(ts) != CONFIG_TYPE_STRING) {
        kr_diag(errors, ns, "pipeline node '%s' needs a string 'type'", name);
        return;
    }
    const char *tname = config_setting_get_string(ts);
    const KrStageType *t = kr_registry_stage(tname);
    if (!t) {
        g_auto(GStrv) known = kr_registry_names("stage");
        g_autofree char *list = g_strjoinv(", ", known);
        kr_diag(errors, ts, "pipeline node '%s': unknown stage type '%s' (loaded modules provide: %s)",
                name, tname, *list ? list : "none");
        return;
    }
    KrStage *s = g_new0(KrStage, 1);
    s->name = g_strdup(name);
    s->type = t;
    s->where = ns;
    s->conf = t->conf_size ? g_malloc0(t->conf_size) : NULL;
    g_autofree char *what = g_strdup_printf("pipeline node '%s' (type %s)", name, tname);
    kr_settings_parse(t->settings, ns, s->conf, node_keys, what, errors);
    config_setting_t *nx = config_setting_get_member(ns, "next");
    if (nx) {
        if (config_setting_type(nx) != CONFIG_TYPE_STRING)
            kr_diag(errors, nx, "pipeline node '%s': 'next' must be a node name", name);
        else if (t->flags & KR_STAGE_TERMINAL)
            kr_diag(errors, nx, "pipeline node '%s': type %s ends the pipeline and takes no 'next'",
                    name, tname);
        else
            s->next = g_strdup(config_setting_get_string(nx));
    }
    config_setting_t *rs = config_setting_get_member(ns, "routes");
    if (rs) {
        if (!config_setting_is_group(rs)) {
            kr_diag(errors, rs, "pipeline node '%s': 'routes' must be a group { label = \"node\"; }",
                    name);
        } else {
            s->routes = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
            for (int i = 0; i < config_setting_length(rs); i++) {
                config_setting_t *r = config_setting_get_elem(rs, i);
                if (config_setting_type(r) != CONFIG_TYPE_STRING) {
                    kr_diag(errors, r, "route '%s' must name a node", config_setting_name(r));
                    continue;
                }
                if (!type_has_label(t, config_setting_name(r))) {
                    g_autofree char *l = g_strjoinv(", ", (char **)t->labels);
                    kr_diag(errors, r, "pipeline node '%s': stage type %s never routes to '%s' (its labels: %s)",
                            name, tname, config_setting_name(r), l);
                    continue;
                }
                g_hash_table_insert(s->routes, g_strdup(config_setting_name(r)),
                                    g_strdup(config_setting_get_string(r)));
            }
        }
    }
    g_hash_table_insert(out, s->name, s);
    g_hash_table_remove(broken, name);
}

/* 0 = white, 1 = grey (on the DFS stack), 2 = black */
static gboolean
find_cycle(GHashTable *g, KrStage *s, GHashTable *colour, GPtrArray *path)
{
    g_hash_table_insert(colour, s->name, GINT_TO_POINTER(1));
    g_ptr_array_add(path, s->name);
    GPtrArray *succ = g_ptr_array_new();
    if (s->next)
        g_ptr_array_add(succ, s->next);
    if (s->routes) {
        GHashTableIter it;
        gpointer k, v;
        g_hash_table_iter_init(&it, s->routes);
        while (g_hash_table_iter_next(&it, &k, &v))
            g_ptr_array_add(succ, v);
    }
    for (guint i = 0; i < succ->len; i++) {
        KrStage *t = g_hash_table_lookup(g, succ->pdata[i]);
        if (!t)
            continue;
        int c = GPOINTER_TO_INT(g_hash_table_lookup(colour, t->name));
        if (c == 1) {
            g_ptr_array_add(path, t->name);
            g_ptr_array_unref(succ);
            return TRUE;
        }
        if (c == 0 && find_cycle(g, t, colour, path)) {
            g_ptr_array_unref(succ);
            return TRUE;
        }
    }
    g_ptr_array_unref(succ);
    g_ptr_array_remove_index(path, path->len - 1);
    g_hash_table_insert(colour, s->name, GINT_TO_POINTER(2));
    return FALSE;
}

static void
check_edge(GHashTable *g, KrStage *s, const char *target, const char *what, GPtrArray *errors,
           GHashTable *reached)
{
    if (!g_hash_table_contains(g, target)) {
        if (g_hash_table_contains(broken, target))
            return;
        kr_diag(errors, s->where, "pipeline node '%s': %s points to '%s', which is not a node",
                s->name, what, target);
        return;
    }
    g_hash_table_add(reached, (gpointer)target);
}

static gint
cmp_stage_line(gconstpointer a, gconstpointer b)
{
    const KrStage *x = *(KrStage *const *)a, *y = *(KrStage *const *)b;
    return config_setting_source_line(x->where) - config_setting_source_line(y->where);
}

gboolean
kr_pipeline_build(config_setting_t *group, GPtrArray *errors)
{
    guint before = errors->len;
    GHashTable *g = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, stage_free);
    if (group && !config_setting_is_group(group)) {
        kr_diag(errors, group, "'pipeline' must be a group of nodes");
        group = NULL;
    }
    broken = g_hash_table_new(g_str_hash, g_str_equal);
    for (int i = 0; group && i < config_setting_length(group); i++)
        parse_node(config_setting_get_elem(group, i), g, errors);

    /* Edges, then reachability from entry nodes, then cycles. */
    GPtrArray *all = g_ptr_array_new();
    {
        GHashTableIter it;
        gpointer k, v;
        g_hash_table_iter_init(&it, g);
        while (g_hash_table_iter_next(&it, &k, &v))
            g_ptr_array_add(all, v);
    }
    g_ptr_array_sort(all, cmp_stage_line);
    GHashTable *targets = g_hash_table_new(g_str_hash, g_str_equal);
    for (guint i = 0; i < all->len; i++) {
        KrStage *s = all->pdata[i];
        if (s->next)
            check_edge(g, s, s->next, "'next'", errors, targets);
        if (s->routes) {
            GHashTableIter it;
            gpointer k, v;
            g_hash_table_iter_init(&it, s->routes);
            while (g_hash_table_iter_next(&it, &k, &v)) {
                g_autofree char *what = g_strdup_printf("route '%s'", (char *)k);
                check_edge(g, s, v, what, errors, targets);
            }
        }
    }
    /* Reachability: BFS from entry-type nodes. */
    GHashTable *seen = g_hash_table_new(g_str_hash, g_str_equal);
    GQueue q = G_QUEUE_INIT;
    for (guint i = 0; i < all->len; i++) {
        KrStage *s = all->pdata[i];
        if (s->type->flags & KR_STAGE_ENTRY) {
            g_hash_table_add(seen, s->name);
            g_queue_push_tail(&q, s);
        }
    }
    while (!g_queue_is_empty(&q)) {
        KrStage *s = g_queue_pop_head(&q);
        GPtrArray *succ = g_ptr_array_new();
        if (s->next)
            g_ptr_array_add(succ, s->next);
        if (s->routes) {
            GHashTableIter it;
            gpointer k, v;
            g_hash_table_iter_init(&it, s->routes);
            while (g_hash_table_iter_next(&it, &k, &v))
                g_ptr_array_add(succ, v);
        }
        for (guint i = 0; i < succ->len; i++) {
            KrStage *t = g_hash_table_lookup(g, succ->pdata[i]);
            if (t && !g_hash_table_contains(seen, t->name)) {
                g_hash_table_add(seen, t->name);
                g_queue_push_tail(&q, t);
            }
        }
        g_ptr_array_unref(succ);
    }
    for (guint i = 0; g_hash_table_size(broken) == 0 && i < all->len; i++) {
        KrStage *s = all->pdata[i];
        if (!g_hash_table_contains(seen, s->name))
            kr_diag(errors, s->where,
                    "pipeline node '%s' is unreachable (no edge leads to it from an entry node "
                    "such as 'maildrop' or 'qmgr')",
                    s->name);
    }
    GHashTable *colour = g_hash_table_new(g_str_hash, g_str_equal);
    for (guint i = 0; i < all->len; i++) {
        KrStage *s = all->pdata[i];
        if (g_hash_table_lookup(colour, s->name))
            continue;
        g_autoptr(GPtrArray) path = g_ptr_array_new();
        if (find_cycle(g, s, colour, path)) {
            g_ptr_array_add(path, NULL);
            g_autofree char *p = g_strjoinv(" -> ", (char **)path->pdata);
            KrStage *first = g_hash_table_lookup(g, path->pdata[path->len - 2]);
            kr_diag(errors, first->where, "pipeline has a cycle: %s", p);
            break;
        }
    }
    g_hash_table_destroy(colour);
    g_hash_table_destroy(seen);
    g_hash_table_destroy(targets);
    g_clear_pointer(&broken, g_hash_table_destroy);

    if (errors->len == before) {
        for (guint i = 0; i < all->len; i++) {
            KrStage *s = all->pdata[i];
            g_autoptr(GError) err = NULL;
            if (s->type->create && !s->type->create(s, &err)) {
                kr_diag(errors, s->where, "pipeline node '%s': %s", s->name,
                        err ? err->message : "cannot be created");
                continue;
            }
            s->created = TRUE;
        }
    }
    g_ptr_array_unref(all);
    if (errors->len != before) {
        g_hash_table_destroy(g);
        return FALSE;
    }
    kr_pipeline_destroy();
    nodes = g;
    return TRUE;
}

/* --- the engine -------------------------------------------------------- */

static void job_enter(KrJob *job);

static void
run_branch_end(Run *run)
{
    if (--run->branches > 0)
        return;
    if (run->result.kind == KR_VERDICT_CONTINUE && run->discarded)
        run->result.kind = KR_VERDICT_DISCARD;
    run->result.ecode = run->r_ecode;
    run->result.text = run->r_text;
    run->result.stage = run->r_stage;
    in_flight--;
    run->done(run->msg, &run->result, run->ud);
    kr_msg_unref(run->msg);
    g_free(run->r_ecode);
    g_free(run->r_text);
    g_free(run->r_stage);
    g_free(run);
}

static KrJob *
job_new(Run *run, KrStage *stage, GArray *rcpts)
{
    KrJob *j = g_new0(KrJob, 1);
    j->run = run;
    j->stage = stage;
    j->rcpts = rcpts;
    j->labels = g_ptr_array_new_with_free_func(g_free);
    g_ptr_array_set_size(j->labels, rcpts->len);
    j->finished = g_array_sized_new(FALSE, TRUE, sizeof(gboolean), rcpts->len);
    g_array_set_size(j->finished, rcpts->len);
    run->branches++;
    return j;
}

static void
job_free(KrJob *j)
{
    g_array_unref(j->rcpts);
    g_ptr_array_unref(j->labels);
    g_array_unref(j->finished);
    g_free(j);
}

static gboolean
job_enter_idle(gpointer p)
{
    job_enter(p);
    return G_SOURCE_REMOVE;
}

static void
job_schedule(KrJob *j)
{
    GSource *src = g_idle_source_new();
    g_source_set_callback(src, job_enter_idle, j, NULL);
    g_source_attach(src, NULL);
    g_source_unref(src);
}

static void
job_end(KrJob *j)
{
    Run *run = j->run;
    job_free(j);
    run_branch_end(run);
}

static gboolean
job_end_idle(gpointer p)
{
    job_end(p);
    return G_SOURCE_REMOVE;
}

static void
job_enter(KrJob *j)
{
    j->answered = FALSE;
    j->stage->type->process(j->stage, j);
}

KrMsg *
kr_job_msg(const KrJob *job)
{
    return job->run->msg;
}

guint
kr_job_rcpt_count(const KrJob *job)
{
    return job->rcpts->len;
}

KrRcpt *
kr_job_rcpt(const KrJob *job, guint i)
{
    g_return_val_if_fail(i < job->rcpts->len, NULL);
    return kr_msg_rcpt(job->run->msg, g_array_index(job->rcpts, guint, i));
}

void
kr_job_rcpt_route(KrJob *job, guint i, const char *label)
{
    g_return_if_fail(i < job->rcpts->len && label);
    g_free(job->labels->pdata[i]);
    job->labels->pdata[i] = g_strdup(label);
}

void
kr_job_rcpt_done(KrJob *job, guint i, KrRcptState state, int code, const char *ecode,
                 const char *diag)
{
    g_return_if_fail(i < job->rcpts->len);
    kr_rcpt_set_result(kr_job_rcpt(job, i), state, code, ecode, diag);
    g_array_index(job->finished, gboolean, i) = TRUE;
}

static void
record_result(Run *run, KrVerdictKind kind, int code, const char *ecode, const char *text,
              const char *stage)
{
    /* The first REJECT wins; a DEFER only replaces CONTINUE. */
    if (run->result.kind == KR_VERDICT_REJECT)
        return;
    if (run->result.kind == KR_VERDICT_DEFER && kind != KR_VERDICT_REJECT)
        return;
    run->result.kind = kind;
    run->result.code = code;
    g_free(run->r_ecode);
    g_free(run->r_text);
    g_free(run->r_stage);
    run->r_ecode = g_strdup(ecode);
    run->r_text = g_strdup(text);
    run->r_stage = g_strdup(stage);
}

/* Send the job's remaining recipients (those in `which`) to node. */
static void
fork_to(KrJob *j, const char *node, GArray *which)
{
    KrStage *t = g_hash_table_lookup(nodes, node);
    if (!t) {
        /* Only possible for labels the graph does not route: defer. */
        g_warning("%s: pipeline node '%s' has no route to '%s'; deferring %u recipient(s)",
                  kr_msg_queue_id(j->run->msg), j->stage->name, node, which->len);
        for (guint i = 0; i < which->len; i++)
            kr_rcpt_set_result(kr_msg_rcpt(j->run->msg, g_array_index(which, guint, i)),
                               KR_RCPT_DEFERRED, 451, "4.3.5", "pipeline has no route");
        record_result(j->run, KR_VERDICT_DEFER, 451, "4.3.5", "pipeline has no route",
                      j->stage->name);
        g_array_unref(which);
        return;
    }
    job_schedule(job_new(j->run, t, which));
}

static const char *
route_target(KrStage *s, const char *label)
{
    const char *t = s->routes ? g_hash_table_lookup(s->routes, label) : NULL;
    return t ? t : label; /* unknown: fork_to reports it */
}

static void
answer(KrJob *j, KrVerdictKind kind, const char *label, int code, const char *ecode,
       const char *text)
{
    if (j->answered) {
        g_critical("stage '%s' answered a job twice", j->stage->name);
        return;
    }
    j->answered = TRUE;
    Run *run = j->run;
    KrStage *s = j->stage;
    /* Recipients routed one by one, grouped by label. */
    GHashTable *by_label = NULL;
    GArray *rest = g_array_new(FALSE, FALSE, sizeof(guint));
    for (guint i = 0; i < j->rcpts->len; i++) {
        guint idx = g_array_index(j->rcpts, guint, i);
        if (g_array_index(j->finished, gboolean, i))
            continue;
        const char *l = j->labels->pdata[i];
        if (l) {
            if (!by_label)
                by_label = g_hash_table_new_full(g_str_hash, g_str_equal, NULL,
                                                 (GDestroyNotify)g_array_unref);
            GArray *a = g_hash_table_lookup(by_label, l);
            if (!a) {
                a = g_array_new(FALSE, FALSE, sizeof(guint));
                g_hash_table_insert(by_label, (gpointer)l, a);
            }
            g_array_append_val(a, idx);
        } else {
            g_array_append_val(rest, idx);
        }
    }
    if (by_label) {
        GHashTableIter it;
        gpointer k, v;
        g_hash_table_iter_init(&it, by_label);
        while (g_hash_table_iter_next(&it, &k, &v)) {
            g_hash_table_iter_steal(&it);
            fork_to(j, route_target(s, k), v);
        }
        g_hash_table_destroy(by_label);
    }
    if (rest->len == 0) {
        g_array_unref(rest);
        job_end(j);
        return;
    }
    switch (kind) {
    case KR_VERDICT_CONTINUE:
        if (s->next) {
            fork_to(j, s->next, rest);
        } else {
            g_array_unref(rest);
        }
        break;
    case KR_VERDICT_ROUTE:
        fork_to(j, route_target(s, label), rest);
        break;
    case KR_VERDICT_REJECT:
    case KR_VERDICT_DEFER: {
        KrRcptState st = code >= 500 ? KR_RCPT_FAILED : KR_RCPT_DEFERRED;
        for (guint i = 0; i < rest->len; i++)
            kr_rcpt_set_result(kr_msg_rcpt(run->msg, g_array_index(rest, guint, i)), st, code,
                               ecode, text);
        record_result(run, code >= 500 ? KR_VERDICT_REJECT : KR_VERDICT_DEFER, code, ecode, text,
                      s->name);
        g_array_unref(rest);
        break;
    }
    case KR_VERDICT_DISCARD:
        for (guint i = 0; i < rest->len; i++)
            kr_rcpt_set_result(kr_msg_rcpt(run->msg, g_array_index(rest, guint, i)),
                               KR_RCPT_DELIVERED, 250, "2.0.0", "discarded");
        g_message("%s: discarded by pipeline node '%s'", kr_msg_queue_id(run->msg), s->name);
        run->discarded = TRUE;
        g_array_unref(rest);
        break;
    }
    job_end(j);
}

void
kr_job_continue(KrJob *job)
{
    answer(job, KR_VERDICT_CONTINUE, NULL, 0, NULL, NULL);
}

void
kr_job_route(KrJob *job, const char *label)
{
    answer(job, KR_VERDICT_ROUTE, label, 0, NULL, NULL);
}

static void
answer_v(KrJob *job, KrVerdictKind kind, int code, const char *ecode, const char *fmt, va_list ap)
{
    g_autofree char *text = g_strdup_vprintf(fmt, ap);
    /* Replies go to SMTP clients and queue files: one line, bounded. */
    for (char *p = text; *p; p++)
        if (*p == '\r' || *p == '\n')
            *p = ' ';
    if (strlen(text) > KR_DIAG_MAX)
        text[KR_DIAG_MAX] = 0;
    answer(job, kind, NULL, code, ecode, text);
}

void
kr_job_reject(KrJob *job, int code, const char *ecode, const char *fmt, ...)
{
    if (code < 400 || code > 599)
        code = 554;
    va_list ap;
    va_start(ap, fmt);
    answer_v(job, KR_VERDICT_REJECT, code, ecode, fmt, ap);
    va_end(ap);
}

void
kr_job_defer(KrJob *job, const char *ecode, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    answer_v(job, KR_VERDICT_DEFER, 451, ecode, fmt, ap);
    va_end(ap);
}

void
kr_job_discard(KrJob *job)
{
    answer(job, KR_VERDICT_DISCARD, NULL, 0, NULL, NULL);
}

gboolean
kr_pipeline_run(const char *entry, KrMsg *msg, GArray *rcpts, KrJobDoneFunc done,
                gpointer user_data, GError **error)
{
    KrStage *s = nodes ? g_hash_table_lookup(nodes, entry) : NULL;
    if (!s) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND, "no pipeline node '%s'", entry);
        return FALSE;
    }
    GArray *r = g_array_new(FALSE, FALSE, sizeof(guint));
    if (rcpts) {
        g_array_append_vals(r, rcpts->data, rcpts->len);
    } else {
        for (guint i = 0; i < kr_msg_rcpt_count(msg); i++)
            if (kr_msg_rcpt(msg, i)->state == KR_RCPT_PENDING ||
                kr_msg_rcpt(msg, i)->state == KR_RCPT_DEFERRED)
                g_array_append_val(r, i);
    }
    Run *run = g_new0(Run, 1);
    run->msg = kr_msg_ref(msg);
    run->done = done;
    run->ud = user_data;
    in_flight++;
    KrJob *j = job_new(run, s, r);
    if (r->len == 0) {
        /* Nothing to do: still report through done(), asynchronously. */
        j->answered = TRUE;
        GSource *src = g_idle_source_new();
        g_source_set_callback(src, job_end_idle, j, NULL);
        g_source_attach(src, NULL);
        g_source_unref(src);
        return TRUE;
    }
    job_schedule(j);
    return TRUE;
}
