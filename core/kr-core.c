/* SPDX-License-Identifier: MIT */
/*
 * kr-core.c - process-wide facts (host name, served domains, DATA_DIR)
 * and the core's own settings table (the `core` group of kurir.conf).
 *
 *   kr_hostname, kr_default_domain, kr_domain_is_local, kr_local_domains,
 *   kr_data_dir, kr_is_daemon, kr_shutting_down, kr_addr_domain,
 *   kr_addr_canon (public, see kr-core.h); kr_core_apply, kr_core_set_*
 *   (internal, called once by start-up code before modules load).
 */
#include "kr-internal.h"
#include <unistd.h>

static struct {
    char *hostname;
    char **domains;
    char *data_dir;
    gboolean daemon;
    gboolean shutting_down;
} core;

const KrSetting kr_core_settings[] = {
    KR_SETTING("hostname", KR_SET_STRING, KrCoreConf, hostname, NULL, 0, 0,
               "this host's name in greetings and Received headers (default: system host name)"),
    KR_SETTING("domains", KR_SET_STRLIST, KrCoreConf, domains, "localhost", 0, 0,
               "mail domains served here; the first is the default domain"),
    KR_SETTING("module_path", KR_SET_STRING, KrCoreConf, module_path, NULL, 0, 0,
               "directory of module .so files (default: modules/ next to the kurird binary)"),
    KR_SETTING("debug", KR_SET_STRLIST, KrCoreConf, debug, "", 0, 0,
               "log domains (module names, \"core\" or \"all\") whose debug lines are shown"),
    KR_SETTING("syslog", KR_SET_BOOL, KrCoreConf, syslog, "false", 0, 0,
               "log to syslog instead of stderr"),
    KR_SETTING("syslog_facility", KR_SET_STRING, KrCoreConf, syslog_facility, "mail", 0, 0,
               "syslog facility"),
    KR_SETTING("workers", KR_SET_INT, KrCoreConf, workers, "8", 1, 256,
               "worker threads for disk and other blocking work"),
    KR_SETTING_END,
};

void
kr_core_set_data_dir(const char *dir)
{
    g_free(core.data_dir);
    core.data_dir = g_canonicalize_filename(dir, NULL);
}

void
kr_core_apply(const KrCoreConf *conf)
{
    g_free(core.hostname);
    if (conf->hostname && *conf->hostname) {
        core.hostname = g_strdup(conf->hostname);
    } else {
        char buf[256] = "localhost";
        if (gethostname(buf, sizeof buf - 1) != 0 || !*buf)
            strcpy(buf, "localhost");
        buf[sizeof buf - 1] = 0;
        core.hostname = g_strdup(buf);
    }
    g_strfreev(core.domains);
    GPtrArray *d = g_ptr_array_new();
    for (char **p = conf->domains; p && *p; p++)
        g_ptr_array_add(d, g_ascii_strdown(*p, -1));
    if (d->len == 0)
        g_ptr_array_add(d, g_strdup("localhost"));
    g_ptr_array_add(d, NULL);
    core.domains = (char **)g_ptr_array_free(d, FALSE);
}

void
kr_core_set_daemon(gboolean daemon)
{
    core.daemon = daemon;
}

void
kr_core_set_shutting_down(void)
{
    core.shutting_down = TRUE;
}

const char *
kr_hostname(void)
{
    return core.hostname ? core.hostname : "localhost";
}

const char *
kr_default_domain(void)
{
    return core.domains && core.domains[0] ? core.domains[0] : "localhost";
}

const char *const *
kr_local_domains(void)
{
    static const char *const none[] = {"localhost", NULL};
    return core.domains ? (const char *const *)core.domains : none;
}

gboolean
kr_domain_is_local(const char *domain)
{
    if (!domain)
        return FALSE;
    for (const char *const *p = kr_local_domains(); *p; p++)
        if (g_ascii_strcasecmp(*p, domain) == 0)
            return TRUE;
    return FALSE;
}

const char *
kr_data_dir(void)
{
    return core.data_dir ? core.data_dir : "var";
}

gboolean
kr_is_daemon(void)
{
    return core.daemon;
}

gboolean
kr_shutting_down(void)
{
    return core.shutting_down;
}

const char *
kr_addr_domain(const char *addr)
{
    const char *at = addr ? strrchr(addr, '@') : NULL;
    return at ? at + 1 : NULL;
}

char *
kr_addr_canon(const char *addr)
{
    const char *at = strrchr(addr, '@');
    if (!at)
        return g_strconcat(addr, "@", kr_default_domain(), NULL);
    g_autofree char *dom = g_utf8_strdown(at + 1, -1);
    return g_strdup_printf("%.*s@%s", (int)(at - addr), addr, dom);
}
