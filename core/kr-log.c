/* SPDX-License-Identifier: MIT */
/*
 * kr-log.c - the log writer: one line per event to stderr (default) or
 * syslog, "TIME kurird[PID]: DOMAIN: [warning: ]TEXT".
 *
 *   kr_log_init()                        install the GLib log writer
 *   kr_log_configure(syslog, facility, debug_domains)
 *   kr_debug_enabled(domain)             public, see kr-core.h
 *
 * Debug lines are printed for domains listed in core.debug ("all" for
 * every domain); G_MESSAGES_DEBUG in the environment adds to the list.
 * Control characters in messages are escaped so that untrusted input
 * (addresses, commands) can never forge log lines.
 */
#include "kr-internal.h"
#include <stdio.h>
#include <syslog.h>
#include <unistd.h>

static gboolean use_syslog;
static char **debug_domains;
static GMutex log_lock;

gboolean
kr_debug_enabled(const char *domain)
{
    char **list = g_atomic_pointer_get(&debug_domains);
    for (char **d = list; d && *d; d++)
        if (strcmp(*d, "all") == 0 || (domain && strcmp(*d, domain) == 0))
            return TRUE;
    return FALSE;
}

static int
facility_of(const char *name)
{
    static const struct {
        const char *n;
        int f;
    } tab[] = {{"mail", LOG_MAIL},     {"daemon", LOG_DAEMON}, {"user", LOG_USER},
               {"local0", LOG_LOCAL0}, {"local1", LOG_LOCAL1}, {"local2", LOG_LOCAL2},
               {"local3", LOG_LOCAL3}, {"local4", LOG_LOCAL4}, {"local5", LOG_LOCAL5},
               {"local6", LOG_LOCAL6}, {"local7", LOG_LOCAL7}};
    for (gsize i = 0; name && i < G_N_ELEMENTS(tab); i++)
        if (strcmp(tab[i].n, name) == 0)
            return tab[i].f;
    return LOG_MAIL;
}

static void
escape_into(GString *out, const char *msg)
{
    for (const unsigned char *p = (const unsigned char *)msg; *p; p++) {
        if (*p < 0x20 || *p == 0x7f)
            g_string_append_printf(out, "\\x%02x", *p);
        else
            g_string_append_c(out, *p);
    }
}

static GLogWriterOutput
writer(GLogLevelFlags level, const GLogField *fields, gsize n_fields, gpointer ud)
{
    const char *domain = NULL, *message = NULL;
    for (gsize i = 0; i < n_fields; i++) {
        if (strcmp(fields[i].key, "GLIB_DOMAIN") == 0)
            domain = fields[i].value;
        else if (strcmp(fields[i].key, "MESSAGE") == 0)
            message = fields[i].value;
    }
    if ((level & G_LOG_LEVEL_DEBUG) && !kr_debug_enabled(domain))
        return G_LOG_WRITER_HANDLED;
    const char *tag = "";
    int prio = LOG_INFO;
    if (level & G_LOG_LEVEL_ERROR)
        tag = "fatal: ", prio = LOG_CRIT;
    else if (level & G_LOG_LEVEL_CRITICAL)
        tag = "panic: ", prio = LOG_CRIT;
    else if (level & G_LOG_LEVEL_WARNING)
        tag = "warning: ", prio = LOG_WARNING;
    else if (level & G_LOG_LEVEL_DEBUG)
        tag = "debug: ", prio = LOG_DEBUG;
    GString *line = g_string_sized_new(128);
    if (!use_syslog) {
        /* The local zone is looked up once: g_date_time_new_now_local()
         * would re-read /etc/localtime on every line. */
        static GTimeZone *tz;
        if (g_once_init_enter(&tz))
            g_once_init_leave(&tz, g_time_zone_new_local());
        g_autoptr(GDateTime) now = g_date_time_new_now(tz);
        g_autofree char *ts = g_date_time_format(now, "%Y-%m-%dT%H:%M:%S.%f");
        ts[23] = 0; /* milliseconds */
        g_string_append_printf(line, "%s %s[%d]: ", ts, g_get_prgname() ? g_get_prgname() : "kurir",
                               (int)getpid());
    }
    g_string_append_printf(line, "%s: %s", domain ? domain : "core", tag);
    escape_into(line, message ? message : "");
    if (use_syslog) {
        syslog(prio, "%s", line->str);
    } else {
        g_string_append_c(line, '\n');
        g_mutex_lock(&log_lock);
        fwrite(line->str, 1, line->len, stderr);
        fflush(stderr);
        g_mutex_unlock(&log_lock);
    }
    g_string_free(line, TRUE);
    if (level & G_LOG_LEVEL_ERROR)
        abort();
    return G_LOG_WRITER_HANDLED;
}

void
kr_log_init(void)
{
    static gboolean done;
    if (done)
        return;
    done = TRUE;
    const char *env = g_getenv("G_MESSAGES_DEBUG");
    if (env)
        debug_domains = g_strsplit(env, " ", -1);
    g_log_set_writer_func(writer, NULL, NULL);
}

void
kr_log_configure(gboolean syslog_on, const char *facility, char **domains)
{
    GPtrArray *all = g_ptr_array_new();
    const char *env = g_getenv("G_MESSAGES_DEBUG");
    g_auto(GStrv) envd = env ? g_strsplit(env, " ", -1) : NULL;
    for (char **d = envd; d && *d; d++)
        g_ptr_array_add(all, g_strdup(*d));
    for (char **d = domains; d && *d; d++)
        g_ptr_array_add(all, g_strdup(*d));
    g_ptr_array_add(all, NULL);
    /* The old list is kept, not freed: worker threads may be reading it
     * (a few bytes per SIGHUP). */
    static GPtrArray *retired;
    if (!retired)
        retired = g_ptr_array_new();
    char **old = g_atomic_pointer_get(&debug_domains);
    if (old)
        g_ptr_array_add(retired, old);
    g_atomic_pointer_set(&debug_domains, (char **)g_ptr_array_free(all, FALSE));
    if (syslog_on && !use_syslog)
        openlog(g_get_prgname() ? g_get_prgname() : "kurird", LOG_PID | LOG_NDELAY,
                facility_of(facility));
    else if (!syslog_on && use_syslog)
        closelog();
    use_syslog = syslog_on;
}
