/* SPDX-License-Identifier: MIT */
/*
 * queue.h - private interfaces between the files of the queue module.
 *
 *   queue.c       module descriptor, settings, registration, crash points
 *   enqueue.c     stage types `enqueue` (receive side ends) and `qmgr`
 *                 (delivery side starts)
 *   qmgr.c        the queue manager: active set, scheduling through the
 *                 policy, results, retries, bounces (qmgr-private.h)
 *   qmgr-admin.c  hold, delete, release, flush, status
 *   qmgr-scan.c   recovery scan at start, maildrop pickup
 *   policy-fifo.c, policy-fair.c   the two built-in policies
 *   queue-cmd.c   `kurir queue list|show|flush|delete|hold|release`
 *   sendmail.c, sendmail-addr.c    `kurir sendmail` / `sendmail`
 *
 * Everything here has hidden visibility (the module exports only its
 * descriptor); the policies and the address parser are also linked
 * directly by the unit tests.
 */
#ifndef QUEUE_H
#define QUEUE_H

#include <kurir/kurir.h>
#include <gio/gio.h>

/* The module's settings (the `queue` group of kurir.conf). */
typedef struct {
    char *policy;
    gint64 max_active;
    gint64 max_deliveries;
    gint64 min_backoff;
    gint64 max_backoff;
    gint64 max_lifetime;
    char *bounce_node;
    char *pickup_node;
    gint64 pickup_interval;
} QueueConf;

extern const QueueConf *queue_conf;

/* --- policies (policy-fifo.c, policy-fair.c) ---------------------------- */
extern const KrQueuePolicy queue_policy_fifo;
extern const KrQueuePolicy queue_policy_fair;
/* Order used by both: older arrival first, then queue ID. */
int queue_item_cmp(const KrQueueItem *a, const KrQueueItem *b);

/* --- the queue manager (qmgr.c) ----------------------------------------- */
gboolean qmgr_start(GError **error);
void qmgr_stop(void (*done)(gpointer token), gpointer token);
gboolean qmgr_running(void);
/* Something the stop waits for may have ended: check again. */
void qmgr_check_stopped(void);
/* Counts for `kurir queue status` (control). */
void qmgr_status(GString *out);
/* A committed message is in incoming/ (enqueue stage, release, pickup
 * of rejected mail): take it. msg may be NULL to load it by ID. */
void qmgr_incoming(const char *id, KrMsg *msg);
/* A slot of max_active for a message about to be committed straight into
 * active/ (only when nothing waits, so arrival order is kept): TRUE if
 * taken. Then exactly one of: qmgr_incoming_active() once the file is
 * durable there, or qmgr_release_active() if the commit failed. */
gboolean qmgr_reserve_active(void);
void qmgr_release_active(void);
void qmgr_incoming_active(const char *id, KrMsg *msg);
/* TRUE while the queue manager handles the message with this ID. */
gboolean qmgr_knows(const char *id);
/* Control requests; the reply text goes to out. */
gboolean qmgr_flush(GString *out);
gboolean qmgr_hold(const char *id, GString *out);
gboolean qmgr_release(const char *id, GString *out);
gboolean qmgr_delete(const char *id, GString *out);
/* Destination of an address for the policy: "local:DOMAIN" or
 * "smtp:DOMAIN" (lowercased). Newly allocated. */
char *qmgr_destination(const char *address);
/* Backoff after the n-th failed attempt (n >= 1), in seconds. */
gint64 qmgr_backoff(unsigned attempts, gint64 min_backoff, gint64 max_backoff);

/* Recovery (qmgr-scan.c): results handed to the queue manager. */
typedef struct {
    char *id;
    gint64 due; /* deferred: when to try again */
} QmgrFound;
void qmgr_recovered(GPtrArray *incoming_ids, GArray *deferred /* QmgrFound */);

/* --- scanning (qmgr-scan.c) ---------------------------------------------- */
/* Recovery at start, in a worker; calls qmgr_recovered() when done. */
void qscan_recover(void);
/* Pick up maildrop/ now (also runs every pickup_interval). */
void qscan_pickup(void);
void qscan_start_timer(void);
void qscan_stop(void);
/* In-flight maildrop pickups (stop waits for them). */
guint qscan_busy(void);
/* When a deferred file becomes due: the earliest next_try of its
 * unfinished recipients (now for PENDING/FAILED ones). */
gint64 qscan_due(KrMsg *msg, gint64 now, gint64 min_backoff);

/* --- enqueue (enqueue.c) ------------------------------------------------- */
extern const KrStageType queue_enqueue_type;
extern const KrStageType queue_qmgr_type;
guint enqueue_busy(void);

/* --- commands ----------------------------------------------------------- */
extern const KrCommand queue_command;
extern const KrCommand sendmail_command;
extern const KrControl queue_control;
/* Print the queue (kurir queue list, sendmail -bp); exit status. */
int queue_cmd_list(void);

/* --- addresses (sendmail-addr.c) ---------------------------------------- */
/* Parse an RFC 5322 address-list (a To/Cc/Bcc value, unfolded) and append
 * each addr-spec found (display names, comments and groups dropped) to
 * out as a new string. FALSE on a syntax error (out keeps what was
 * found before it). */
gboolean sendmail_parse_address_list(const char *value, GPtrArray *out);
/* TRUE if addr is an acceptable envelope address: local@domain or a bare
 * local part, printable ASCII or UTF-8, no spaces outside quotes, no
 * control characters, at most 254 bytes of domain and 64 of local part
 * (bare), no angle brackets. "" (null sender) is not. */
gboolean sendmail_address_ok(const char *addr);

/* --- crash points (queue.c) --------------------------------------------- */
/* Test hook: if $KURIR_CRASH_POINT equals name, the process kills itself
 * with SIGKILL here (a crash at a well-defined point). */
void queue_crash_point(const char *name);

#endif
