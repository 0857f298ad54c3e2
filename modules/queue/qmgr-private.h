/* SPDX-License-Identifier: MIT */
/*
 * qmgr-private.h - the queue manager's state, shared by qmgr.c
 * (admission, scheduling, results, retries) and qmgr-admin.c (hold,
 * delete, release, flush, status). Everything runs on the event loop.
 */
#ifndef QMGR_PRIVATE_H
#define QMGR_PRIVATE_H

#include "queue.h"

typedef enum {
    QM_WAITING,   /* file in `dir` (incoming/ or deferred/), waiting for a slot */
    QM_LOADING,   /* worker: load, move to active/ */
    QM_ACTIVE,    /* items queued in the policy or running */
    QM_FINISHING, /* saving, bouncing, moving or removing */
    QM_DEFERRED,  /* file in `dir`, comes back at `due` */
} QmState;

typedef enum { ACT_NONE, ACT_HOLD, ACT_DELETE } QmAction;

typedef struct QMsg QMsg;

typedef struct {
    KrQueueItem pub; /* first: the policy hands it back */
    QMsg *qm;
    char *dest;
    GArray *rcpts; /* guint indexes into the message */
    gboolean queued;
} QItem;

/* What a recipient looked like before the bounce job (to restore it if
 * the bounce could not be queued). */
typedef struct {
    guint index;
    KrRcptState state;
    unsigned attempts;
    gint64 next_try;
    int code;
    char ecode[12];
    char diag[KR_DIAG_MAX + 1];
} RcptCopy;

struct QMsg {
    char *id;
    QmState state;
    KrQueueDir dir; /* WAITING/DEFERRED: where the file is */
    KrMsg *msg;     /* loaded (may be NULL while WAITING) */
    gint64 due;
    GSequenceIter *due_iter;
    GList *wait_link;
    GPtrArray *items; /* QItem * */
    QmAction action;
    gboolean forced;     /* flush: every deferred recipient is due */
    gboolean counted;    /* holds a slot of max_active */
    gboolean retry_soon; /* a status save or bounce failed */
    GArray *bounced;     /* RcptCopy, during the bounce job */
};

typedef struct {
    gboolean running, stopping, recovering;
    const KrQueuePolicy *pol;
    gpointer pstate;
    char *node;
    gboolean bounce_ok;
    gint64 max_active;
    GHashTable *msgs; /* id -> QMsg */
    GQueue waiting;   /* QMsg * */
    GSequence *deferred;
    guint timer;
    gint64 timer_due;
    guint kick_src;
    guint n_active;  /* counted messages */
    guint n_running; /* deliveries, until their status is saved */
    guint n_busy;    /* worker ops and bounce jobs */
    void (*stop_done)(gpointer token);
    gpointer stop_token;
} Qmgr;

extern Qmgr Q;

/* qmgr.c */
gint64 qm_now(void);
QMsg *qm_new(const char *id, KrQueueDir dir, KrMsg *msg);
void qm_item_free(QItem *it);
/* Let go of a message (removed, held, or left for the next start). */
void qm_forget(QMsg *qm);
void qm_admit(void);
void qm_kick(void);
/* No item left: bounce what failed, then remove or defer (or do the
 * requested action). */
void qm_finish(QMsg *qm);
void qm_to_deferred(QMsg *qm, gint64 due);
void qm_push_waiting(QMsg *qm, gboolean head);
void qm_arm_timer(void);

/* qmgr-admin.c */
/* The message is idle (not loading, no delivery running): do its
 * hold or delete action (worker), then forget it. */
void qm_apply_action(QMsg *qm);

#endif
