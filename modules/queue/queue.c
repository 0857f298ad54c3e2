/* SPDX-License-Identifier: MIT */
/*
 * queue.c - the queue module: queue manager, queue policies, the
 * `enqueue` and `qmgr` stage types, and the `kurir queue` and `sendmail`
 * commands.
 *
 * Registers: stage types enqueue (end of the receive side: durable, then
 * "250") and qmgr (start of the delivery side); queue policies fifo and
 * fair; the service "qmgr" (recovery scan at start, scheduling, retries,
 * maildrop pickup); the control command "queue" (flush, hold, release,
 * delete, pickup); the commands "queue" and "sendmail".
 *
 * Settings (the `queue` group of kurir.conf), with defaults:
 *   policy           "fair"      scheduling policy: fifo, fair, or one a
 *                                module registers (unknown: start-up error)
 *   max_active       10000       messages in active/ at once
 *   max_deliveries   32          deliveries running at once
 *   min_backoff      "5m"        first retry after a temporary failure;
 *                                doubles per attempt ...
 *   max_backoff      "66m"       ... up to this
 *   max_lifetime     "5d"        a message still undelivered after this
 *                                bounces (Status 4.4.7)
 *   bounce_node      "bounce"    pipeline node that reports failures (a
 *                                `bounce` stage); "" = no DSNs, failures
 *                                are only logged
 *   pickup_node      "maildrop"  where mail from queue/maildrop/ (sendmail)
 *                                enters the pipeline
 *   pickup_interval  "10s"       maildrop scan when nobody asked for one
 *
 * Test hook: with KURIR_CRASH_POINT=NAME in the environment, kurird kills
 * itself with SIGKILL when it reaches that point (queue_crash_point());
 * the crash tests use it to stop at exact places. Names: enqueue-durable
 * (file durable, no reply yet), active (moved to active/), delivered
 * (delivery done, status not saved), saved (status saved, file not yet
 * removed or moved), bounce-queued (DSN durable, recipients not marked).
 */
#include "queue.h"
#include <signal.h>
#include <unistd.h>

const QueueConf *queue_conf;
static const char *crash_point;

static const KrSetting queue_settings[] = {
    KR_SETTING("policy", KR_SET_STRING, QueueConf, policy, "fair", 0, 0,
               "scheduling policy: fifo, fair, or one added by a module"),
    KR_SETTING("max_active", KR_SET_INT, QueueConf, max_active, "10000", 1, 1000000,
               "messages in the active queue at once"),
    KR_SETTING("max_deliveries", KR_SET_INT, QueueConf, max_deliveries, "32", 1, 100000,
               "deliveries running at once"),
    KR_SETTING("min_backoff", KR_SET_DURATION, QueueConf, min_backoff, "5m", 1, 30 * 86400,
               "first retry after a temporary failure"),
    KR_SETTING("max_backoff", KR_SET_DURATION, QueueConf, max_backoff, "66m", 1, 30 * 86400,
               "longest time between retries"),
    KR_SETTING("max_lifetime", KR_SET_DURATION, QueueConf, max_lifetime, "5d", 1, 365 * 86400,
               "how long a message may stay queued before it bounces"),
    KR_SETTING("bounce_node", KR_SET_STRING, QueueConf, bounce_node, "bounce", 0, 0,
               "pipeline node that reports failures (\"\": none)"),
    KR_SETTING("pickup_node", KR_SET_STRING, QueueConf, pickup_node, "maildrop", 0, 0,
               "where mail from queue/maildrop/ enters the pipeline"),
    KR_SETTING("pickup_interval", KR_SET_DURATION, QueueConf, pickup_interval, "10s", 1, 86400,
               "maildrop scan interval"),
    KR_SETTING_END,
};

void
queue_crash_point(const char *name)
{
    if (crash_point && strcmp(crash_point, name) == 0) {
        g_warning("crash point '%s' reached: killing kurird (KURIR_CRASH_POINT)", name);
        raise(SIGKILL);
    }
}

static gboolean
svc_start(gpointer self, GError **error)
{
    return qmgr_start(error);
}

static void
svc_stop(gpointer self, void (*done)(gpointer token), gpointer token)
{
    qmgr_stop(done, token);
}

static const KrService qmgr_service = {
    .struct_size = sizeof(KrService),
    .name = "qmgr",
    .start = svc_start,
    .stop = svc_stop,
};

static gboolean
queue_init(KrModule *mod, GError **error)
{
    queue_conf = kr_module_conf(mod);
    if (queue_conf->min_backoff > queue_conf->max_backoff) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "min_backoff (%" G_GINT64_FORMAT
                    "s) is longer than max_backoff (%" G_GINT64_FORMAT "s)",
                    queue_conf->min_backoff, queue_conf->max_backoff);
        return FALSE;
    }
    if (!queue_conf->policy || !*queue_conf->policy) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, "policy must be set");
        return FALSE;
    }
    crash_point = g_getenv("KURIR_CRASH_POINT");
    return kr_register_stage(mod, &queue_enqueue_type, error) &&
           kr_register_stage(mod, &queue_qmgr_type, error) &&
           kr_register_queue_policy(mod, &queue_policy_fifo, error) &&
           kr_register_queue_policy(mod, &queue_policy_fair, error) &&
           kr_register_service(mod, &qmgr_service, error) &&
           kr_register_control(mod, &queue_control, error) &&
           kr_register_command(mod, &queue_command, error) &&
           kr_register_command(mod, &sendmail_command, error);
}

KR_MODULE(queue, "queue", "1.0", "queue manager, queue policies, queue and sendmail commands",
          queue_settings, sizeof(QueueConf), queue_init, NULL);
