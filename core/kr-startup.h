/* SPDX-License-Identifier: MIT */
/*
 * kr-startup.h - reading kurir.conf and bringing the core up, shared by
 * kurird, the kurir command and the tests.
 *
 *   kr_startup(opts, errors)   read config (file or embedded), check the
 *                              top-level keys, apply `core`, load the
 *                              modules, parse listeners, build the
 *                              pipeline; every problem appended to errors
 *   kr_startup_config()        the libconfig tree in use (or NULL)
 *   kr_shutdown_modules()      fini modules in reverse order
 */
#ifndef KR_STARTUP_H
#define KR_STARTUP_H

#include "kr-internal.h"

typedef struct KrStartupOpts {
    const char *config_file; /* NULL: the embedded default */
    const char *config_text; /* instead of a file (tests); NULL normally */
    const char *data_dir;    /* NULL: "./var" */
    gboolean daemon;         /* kurird (TRUE) or the kurir command */
    const char *module_path; /* override core.module_path (tests) */
} KrStartupOpts;

KR_INTERNAL gboolean kr_startup(const KrStartupOpts *opts, GPtrArray *errors);
KR_INTERNAL config_t *kr_startup_config(void);
KR_INTERNAL void kr_shutdown_modules(void);
/* Read and check a config without applying it (SIGHUP); FALSE + errors
 * if it is bad. *restart_r is set when a part that needs a restart
 * (modules, listeners, pipeline, core other than debug/syslog) changed. */
KR_INTERNAL gboolean kr_startup_reload(const char *config_file, gboolean *restart_r,
                                       GPtrArray *errors);

/* kr-builtin.c: the core's own stage types (maildrop entry, ...). */
KR_INTERNAL void kr_builtin_register(void);
/* The pseudo-module "core", for the core's own registrations. */
KR_INTERNAL KrModule *kr_builtin_module(void);

/* kr-listener.c */
KR_INTERNAL void kr_listeners_parse(config_setting_t *list, GPtrArray *errors);
KR_INTERNAL gboolean kr_listeners_start(GError **error);
KR_INTERNAL void kr_listeners_stop(void);

/* kr-control.c */
KR_INTERNAL gboolean kr_control_start(GError **error);
KR_INTERNAL void kr_control_stop(void);

#endif
