/* SPDX-License-Identifier: MIT */
/*
 * kr-pipeline.h - stage types, stage instances and jobs.
 *
 * The pipeline is a graph declared in the `pipeline` group of kurir.conf:
 * each node is an instance of a stage type registered by a module, with
 * its own settings, a `next` edge and/or labelled `routes`. A job is one
 * message with a set of its recipients moving through the graph. A stage's
 * process() gets the job and must, now or later (after disk or network
 * work, off the event loop), answer exactly once:
 *
 *   kr_job_continue(job)                    follow `next`
 *   kr_job_route(job, label)                follow routes[label]
 *   kr_job_reject(job, 550, "5.7.1", fmt..) refuse (receive side: the SMTP
 *                                           client gets the reply; delivery
 *                                           side: the recipients fail)
 *   kr_job_defer(job, "4.3.0", fmt..)       try again later
 *   kr_job_discard(job)                     drop silently (logged)
 *
 * Per-recipient answers are possible before continuing: kr_job_rcpt_route
 * sends one recipient along a label (the engine splits the job), and
 * kr_job_rcpt_done finishes one recipient (delivered/deferred/failed). A
 * job whose recipients are all finished ends.
 *
 * Entry stage types (KR_STAGE_ENTRY) start graphs: `maildrop` (receive
 * side, where SMTP and sendmail inject) and `qmgr` (delivery side). Every
 * other node must be reachable from an entry; cycles are refused.
 *
 *   kr_pipeline_run(node, msg, done, ud)   start a job at a node
 *   kr_stage_conf / kr_stage_name / kr_stage_data / kr_stage_set_data
 */
#ifndef KURIR_KR_PIPELINE_H
#define KURIR_KR_PIPELINE_H

#include <glib.h>
#include <stdint.h>
#include "kr-msg.h"
#include "kr-settings.h"

G_BEGIN_DECLS

typedef struct KrStage KrStage;
typedef struct KrJob KrJob;

enum {
    KR_STAGE_ENTRY = 1 << 0, /* may start a graph (no incoming edge needed) */
    KR_STAGE_TERMINAL = 1 << 1, /* finishes recipients itself; takes no `next` */
};

typedef struct KrStageType {
    uint32_t struct_size; /* sizeof(KrStageType) */
    const char *name;
    const char *summary;
    unsigned flags;
    const KrSetting *settings; /* per-node settings; may be NULL */
    size_t conf_size;
    /* Route labels this type answers with (NULL-terminated), so the graph
     * check can refuse routes to labels it never uses. NULL: any label. */
    const char *const *labels;
    /* Set up a node; conf is its parsed settings. May be NULL. */
    gboolean (*create)(KrStage *stage, GError **error);
    void (*destroy)(KrStage *stage);
    /* Handle a job; answer exactly once (see above). */
    void (*process)(KrStage *stage, KrJob *job);
    void *spare[8];
} KrStageType;

KR_API const char *kr_stage_name(const KrStage *stage);
KR_API gpointer kr_stage_conf(const KrStage *stage);
KR_API gpointer kr_stage_data(const KrStage *stage);
KR_API void kr_stage_set_data(KrStage *stage, gpointer data);
/* The node `next` points to, or NULL. */
KR_API const char *kr_stage_next(const KrStage *stage);

/* --- jobs -------------------------------------------------------------- */

typedef enum {
    KR_VERDICT_CONTINUE = 0,
    KR_VERDICT_ROUTE,
    KR_VERDICT_REJECT,
    KR_VERDICT_DEFER,
    KR_VERDICT_DISCARD,
} KrVerdictKind;

/* How a finished job ended, for the caller of kr_pipeline_run. */
typedef struct KrJobResult {
    KrVerdictKind kind; /* CONTINUE: ran to the end of the graph */
    int code;           /* REJECT/DEFER: reply code */
    const char *ecode;  /* "5.7.1" */
    const char *text;
    const char *stage; /* node that answered */
} KrJobResult;

typedef void (*KrJobDoneFunc)(KrMsg *msg, const KrJobResult *result, gpointer user_data);

/* Run msg through the graph starting at node `entry`, with the recipients
 * in rcpts (indexes into the message; NULL = all pending recipients).
 * done runs on the main loop once every branch of the job has ended; for
 * split jobs, result is the first REJECT/DEFER seen, else CONTINUE. */
KR_API gboolean kr_pipeline_run(const char *entry, KrMsg *msg, GArray *rcpts, KrJobDoneFunc done,
                                gpointer user_data, GError **error);
/* TRUE if the graph has a node of that name. */
KR_API gboolean kr_pipeline_has_node(const char *name);
/* Names of the nodes of a stage type (for the queue manager to find its
 * qmgr node). Free the array with g_ptr_array_unref. */
KR_API GPtrArray *kr_pipeline_nodes_of_type(const char *type);
/* Node settings: the `next` of a node (NULL if none). */
KR_API const char *kr_pipeline_node_next(const char *node);

KR_API KrMsg *kr_job_msg(const KrJob *job);
KR_API guint kr_job_rcpt_count(const KrJob *job);
KR_API KrRcpt *kr_job_rcpt(const KrJob *job, guint i);

KR_API void kr_job_continue(KrJob *job);
KR_API void kr_job_route(KrJob *job, const char *label);
KR_API void kr_job_reject(KrJob *job, int code, const char *ecode, const char *fmt, ...)
    G_GNUC_PRINTF(4, 5);
KR_API void kr_job_defer(KrJob *job, const char *ecode, const char *fmt, ...) G_GNUC_PRINTF(3, 4);
KR_API void kr_job_discard(KrJob *job);

/* Before answering: send recipient i of the job along route label. */
KR_API void kr_job_rcpt_route(KrJob *job, guint i, const char *label);
/* Before answering: finish recipient i (state DELIVERED, DEFERRED or
 * FAILED, with its reply). It leaves the job. */
KR_API void kr_job_rcpt_done(KrJob *job, guint i, KrRcptState state, int code, const char *ecode,
                             const char *diag);

G_END_DECLS
#endif
