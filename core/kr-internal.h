/* SPDX-License-Identifier: MIT */
/*
 * kr-internal.h - private interfaces between the core's own files. Never
 * included by modules (they see only core/include/kurir/).
 */
#ifndef KR_INTERNAL_H
#define KR_INTERNAL_H

#include <kurir/kurir.h>
#include <libconfig.h>
#include <gio/gio.h>
#include <errno.h>
#include <string.h>

#define KR_INTERNAL __attribute__((visibility("default")))
#define KR_VERSION "0.1"

extern KR_INTERNAL const char kr_default_config[];

/* kr-core.c: process-wide settings, set once at start-up. */
typedef struct KrCoreConf {
    char *hostname;
    char **domains;
    char *module_path;
    char **debug;
    gboolean syslog;
    char *syslog_facility;
    gint64 workers;
} KrCoreConf;
extern KR_INTERNAL const KrSetting kr_core_settings[];
KR_INTERNAL void kr_core_set_data_dir(const char *dir);
KR_INTERNAL void kr_core_apply(const KrCoreConf *conf);
KR_INTERNAL void kr_core_set_daemon(gboolean daemon);
KR_INTERNAL void kr_core_set_shutting_down(void);

/* kr-log.c */
KR_INTERNAL void kr_log_init(void);
KR_INTERNAL void kr_log_configure(gboolean syslog, const char *facility, char **debug_domains);

/* kr-worker.c */
KR_INTERNAL void kr_worker_init(guint n_threads);
/* Wait for queued and running work to finish (shutdown). */
KR_INTERNAL void kr_worker_drain(void);

/* kr-queue-dirs.c */
KR_INTERNAL gboolean kr_queue_init_dirs(GError **error);

#endif
