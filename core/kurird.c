/* SPDX-License-Identifier: MIT */
/*
 * kurird.c - the kurir daemon.
 *
 * SYNOPSIS
 *   kurird [-c FILE] [--data-dir DIR] [--check-config] [--version]
 *
 * DESCRIPTION
 *   Runs in the foreground and logs to stderr (or syslog). Without -c it
 *   runs the embedded default configuration (the text of etc/kurir.conf).
 *   DATA_DIR (default ./var) holds the queue, mail, users and TLS keys.
 *   --check-config validates the configuration, module loading and the
 *   pipeline graph, prints every problem (FILE:LINE: ...) and exits 0 or
 *   1 without starting anything.
 *
 * SIGNALS
 *   SIGTERM, SIGINT   stop accepting, let in-flight work finish or stay
 *                     safely queued, exit 0
 *   SIGHUP            re-read the config file and module data (users,
 *                     maps); says in the log what needs a restart
 *
 * DIAGNOSTICS
 *   Exit 1 with one line per problem on a bad config or start-up failure.
 */
#include "kr-startup.h"
#include "kr-conn-private.h"
#include "kr-registry-private.h"
#include <glib-unix.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

static GMainLoop *loop;
static char *opt_config;
static guint services_stopping;
static gboolean stopping;

static void
service_stopped(gpointer token)
{
    if (services_stopping > 0 && --services_stopping == 0)
        g_main_loop_quit(loop);
}

static gboolean
shutdown_timeout(gpointer ud)
{
    g_warning("shutdown: services did not finish in time; stopping anyway (queued mail is safe)");
    g_main_loop_quit(loop);
    return G_SOURCE_REMOVE;
}

static gboolean
on_term(gpointer ud)
{
    if (stopping) {
        g_message("second signal: stopping now");
        g_main_loop_quit(loop);
        return G_SOURCE_CONTINUE;
    }
    stopping = TRUE;
    g_message("stopping: no new connections; finishing in-flight work");
    kr_core_set_shutting_down();
    kr_listeners_stop();
    kr_control_stop();
    g_autoptr(GPtrArray) svcs = kr_registry_services();
    services_stopping = svcs->len + 1;
    for (guint i = 0; i < svcs->len; i++) {
        const KrService *s = svcs->pdata[i];
        if (s->stop)
            s->stop(s->self, service_stopped, NULL);
        else
            service_stopped(NULL);
    }
    service_stopped(NULL);
    g_timeout_add_seconds(20, shutdown_timeout, NULL);
    return G_SOURCE_CONTINUE;
}

static gboolean
on_hup(gpointer ud)
{
    if (!opt_config) {
        g_message("SIGHUP: running the embedded config; reloading module data only");
    } else {
        g_autoptr(GPtrArray) errors = g_ptr_array_new_with_free_func(g_free);
        gboolean restart = FALSE;
        if (!kr_startup_reload(opt_config, &restart, errors)) {
            for (guint i = 0; i < errors->len; i++)
                g_warning("SIGHUP: %s", (char *)errors->pdata[i]);
            g_warning("SIGHUP: config has errors; keeping the running configuration");
            return G_SOURCE_CONTINUE;
        }
        g_message("SIGHUP: reloaded logging settings from %s", opt_config);
        if (restart)
            g_warning("SIGHUP: modules, listeners, pipeline or module settings changed: "
                      "these take effect only after a restart");
    }
    g_autoptr(GPtrArray) svcs = kr_registry_services();
    for (guint i = 0; i < svcs->len; i++) {
        const KrService *s = svcs->pdata[i];
        if (s->reload)
            s->reload(s->self);
    }
    return G_SOURCE_CONTINUE;
}

static gboolean
control_reload(gpointer self, int argc, char **argv, GString *out)
{
    on_hup(NULL);
    g_string_append(out, "reloading (see the log)\n");
    return TRUE;
}

static const KrControl reload_control = {
    .struct_size = sizeof(KrControl), .name = "reload", .handle = control_reload};

static char *opt_data;

static void
free_opts(void)
{
    g_clear_pointer(&opt_config, g_free);
    g_clear_pointer(&opt_data, g_free);
}

int
main(int argc, char **argv)
{
    atexit(free_opts);
    gboolean opt_check = FALSE, opt_version = FALSE;
    GOptionEntry entries[] = {
        {"config", 'c', 0, G_OPTION_ARG_FILENAME, &opt_config, "configuration file (default: the embedded kurir.conf)", "FILE"},
        {"data-dir", 'd', 0, G_OPTION_ARG_FILENAME, &opt_data, "data directory (default: ./var)", "DIR"},
        {"check-config", 0, 0, G_OPTION_ARG_NONE, &opt_check, "validate config, modules and pipeline, then exit", NULL},
        {"version", 'V', 0, G_OPTION_ARG_NONE, &opt_version, "print the version", NULL},
        {NULL}};
    g_set_prgname("kurird");
    g_autoptr(GOptionContext) ctx = g_option_context_new("- the kurir mail server");
    g_option_context_add_main_entries(ctx, entries, NULL);
    g_autoptr(GError) err = NULL;
    if (!g_option_context_parse(ctx, &argc, &argv, &err)) {
        fprintf(stderr, "kurird: %s\n", err->message);
        return 2;
    }
    if (opt_version) {
        printf("kurird %s (module ABI %d.%d)\n", KR_VERSION, KR_ABI_MAJOR, KR_ABI_MINOR);
        return 0;
    }
    signal(SIGPIPE, SIG_IGN);
    KrStartupOpts o = {.config_file = opt_config, .data_dir = opt_data ? opt_data : "var",
                       .daemon = !opt_check};
    g_autoptr(GPtrArray) errors = g_ptr_array_new_with_free_func(g_free);
    gboolean ok = kr_startup(&o, errors);
    for (guint i = 0; i < errors->len; i++)
        fprintf(stderr, "%s\n", (char *)errors->pdata[i]);
    if (opt_check) {
        if (ok)
            printf("%s: configuration ok\n", opt_config ? opt_config : "(embedded kurir.conf)");
        kr_shutdown_modules();
        return ok ? 0 : 1;
    }
    if (!ok) {
        fprintf(stderr, "kurird: not started: %u problem(s) in the configuration\n", errors->len);
        return 1;
    }
    loop = g_main_loop_new(NULL, FALSE);
    kr_registry_begin(kr_builtin_module());
    kr_register_control(kr_builtin_module(), &reload_control, NULL);
    kr_registry_end();
    if (!kr_queue_init_dirs(&err) || !kr_control_start(&err) || !kr_listeners_start(&err)) {
        g_critical("not started: %s", err->message);
        return 1;
    }
    g_autoptr(GPtrArray) svcs = kr_registry_services();
    for (guint i = 0; i < svcs->len; i++) {
        const KrService *s = svcs->pdata[i];
        if (s->start && !s->start(s->self, &err)) {
            g_critical("not started: service %s: %s", s->name, err->message);
            return 1;
        }
    }
    g_unix_signal_add(SIGTERM, on_term, NULL);
    g_unix_signal_add(SIGINT, on_term, NULL);
    g_unix_signal_add(SIGHUP, on_hup, NULL);
    g_message("kurird %s started: data dir %s, config %s", KR_VERSION, kr_data_dir(),
              opt_config ? opt_config : "(embedded)");
    g_main_loop_run(loop);
    kr_conn_close_all();
    kr_worker_drain();
    /* Let completions of drained work run (they may persist results). */
    while (g_main_context_iteration(NULL, FALSE))
        ;
    kr_shutdown_modules();
    g_message("kurird stopped");
    g_main_loop_unref(loop);
    return 0;
}
