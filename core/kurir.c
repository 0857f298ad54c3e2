/* SPDX-License-Identifier: MIT */
/*
 * kurir.c - the admin command.
 *
 * SYNOPSIS
 *   kurir [-c FILE] [--data-dir DIR] COMMAND [ARGS...]
 *   sendmail [sendmail options] [recipients...]    (argv[0] "sendmail")
 *
 * DESCRIPTION
 *   Reads the same configuration as kurird (embedded default without -c)
 *   and loads the same modules, so that commands registered by modules
 *   (user, queue, aliases, resolve, ...) are available. Built in:
 *     modules          list loaded modules and what they provide
 *     check-config     the same as kurird --check-config
 *     reload           ask the running daemon to reload (SIGHUP path)
 *   Invoked as "sendmail", or as "kurir sendmail", it runs the command
 *   registered under the name "sendmail".
 *
 * DIAGNOSTICS
 *   Exit status 0 on success; 64 (EX_USAGE) for bad usage; commands
 *   return their own status (sendmail uses sysexits.h codes).
 */
#include "kr-startup.h"
#include "kr-registry-private.h"
#include <stdio.h>
#include <sysexits.h>

static void
usage(FILE *f)
{
    fprintf(f, "usage: kurir [-c FILE] [--data-dir DIR] COMMAND [ARGS...]\n\ncommands:\n"
               "  modules            list loaded modules and what they provide\n"
               "  check-config       validate the configuration\n"
               "  reload             ask the running kurird to reload\n");
    g_auto(GStrv) cmds = kr_registry_names("command");
    for (char **c = cmds; *c; c++) {
        const KrCommand *cmd = kr_registry_command(*c, NULL);
        g_auto(GStrv) lines = g_strsplit(cmd->usage ? cmd->usage : *c, "\n", -1);
        for (char **l = lines; *l; l++)
            if (**l)
                fprintf(f, "  %s\n", *l);
    }
}

static int
cmd_modules(void)
{
    GPtrArray *mods = kr_modules_loaded();
    for (guint i = 0; i < mods->len; i++) {
        KrModule *m = mods->pdata[i];
        printf("%-14s %-6s %s\n", m->name, m->desc->version ? m->desc->version : "",
               m->desc->summary ? m->desc->summary : "");
    }
    static const struct {
        const char *kind, *label;
    } kinds[] = {{"stage", "stage types"},
                 {"listener", "listener types"},
                 {"queue policy", "queue policies"},
                 {"auth backend", "auth backends"},
                 {"address verifier", "address verifiers"},
                 {"resolver", "resolvers"},
                 {"store", "stores"},
                 {"command", "commands"}};
    for (gsize k = 0; k < G_N_ELEMENTS(kinds); k++) {
        g_auto(GStrv) names = kr_registry_names(kinds[k].kind);
        g_autofree char *list = g_strjoinv(", ", names);
        printf("%s: %s\n", kinds[k].label, list);
    }
    return 0;
}

int
main(int argc, char **argv)
{
    g_autofree char *base = g_path_get_basename(argv[0]);
    gboolean as_sendmail = strcmp(base, "sendmail") == 0;
    const char *config = NULL, *data_dir = NULL;
    int i = 1;
    g_set_prgname(as_sendmail ? "sendmail" : "kurir");
    if (!as_sendmail) {
        for (; i < argc && argv[i][0] == '-'; i++) {
            if ((!strcmp(argv[i], "-c") || !strcmp(argv[i], "--config")) && i + 1 < argc)
                config = argv[++i];
            else if (!strcmp(argv[i], "--data-dir") && i + 1 < argc)
                data_dir = argv[++i];
            else if (g_str_has_prefix(argv[i], "--data-dir="))
                data_dir = argv[i] + 11;
            else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help"))
                break;
            else {
                fprintf(stderr, "kurir: unknown option %s\n", argv[i]);
                return EX_USAGE;
            }
        }
    } else {
        data_dir = g_getenv("KURIR_DATA_DIR");
        config = g_getenv("KURIR_CONFIG");
    }
    if (!data_dir)
        data_dir = g_getenv("KURIR_DATA_DIR");
    KrStartupOpts o = {.config_file = config, .data_dir = data_dir ? data_dir : "var",
                       .daemon = FALSE};
    g_autoptr(GPtrArray) errors = g_ptr_array_new_with_free_func(g_free);
    gboolean ok = kr_startup(&o, errors);
    const char *cmd = as_sendmail ? "sendmail" : (i < argc ? argv[i] : NULL);
    if (cmd && !strcmp(cmd, "check-config")) {
        for (guint e = 0; e < errors->len; e++)
            fprintf(stderr, "%s\n", (char *)errors->pdata[e]);
        if (ok)
            printf("%s: configuration ok\n", config ? config : "(embedded kurir.conf)");
        return ok ? 0 : 1;
    }
    if (!ok) {
        for (guint e = 0; e < errors->len; e++)
            fprintf(stderr, "%s\n", (char *)errors->pdata[e]);
        fprintf(stderr, "kurir: the configuration has errors\n");
        return as_sendmail ? EX_CONFIG : 1;
    }
    int rc;
    if (!cmd || !strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
        usage(cmd ? stdout : stderr);
        rc = cmd ? 0 : EX_USAGE;
    } else if (!strcmp(cmd, "modules")) {
        rc = cmd_modules();
    } else if (!strcmp(cmd, "reload")) {
        g_autoptr(GError) err = NULL;
        rc = kr_control_request("reload", NULL, &err) ? 0 : 1;
        if (err)
            fprintf(stderr, "kurir: %s\n", err->message);
    } else {
        KrModule *mod = NULL;
        const KrCommand *c = kr_registry_command(cmd, &mod);
        if (!c) {
            fprintf(stderr, "kurir: unknown command '%s'\n", cmd);
            usage(stderr);
            rc = EX_USAGE;
        } else if (as_sendmail) {
            argv[0] = (char *)"sendmail";
            rc = c->run(mod, argc, argv);
        } else {
            rc = c->run(mod, argc - i, argv + i);
        }
    }
    kr_worker_drain();
    kr_shutdown_modules();
    return rc;
}
