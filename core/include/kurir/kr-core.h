/* SPDX-License-Identifier: MIT */
/*
 * kr-core.h - process-wide facts every module may read: host name, served
 * domains, DATA_DIR, and the log conventions.
 *
 *   kr_hostname()            myhostname (core.hostname)
 *   kr_default_domain()      the first served domain (core.domains[0])
 *   kr_domain_is_local(d)    TRUE if d (case-insensitive) is served here
 *   kr_local_domains()       the served domains
 *   kr_data_dir()            DATA_DIR (absolute)
 *   kr_is_daemon()           TRUE in kurird, FALSE in the kurir command
 *   kr_shutting_down()       TRUE once SIGTERM/SIGINT was received
 *
 * Logging: modules use GLib's g_message / g_warning / g_debug; each
 * module is compiled with G_LOG_DOMAIN set to its name, and the core
 * writes one line per call to stderr or syslog. g_debug output is shown
 * for the domains listed in core.debug (or "all"). Lines about a message
 * start with its queue ID: "4Fh2kqA9sT0x1b: from=<a@x>, size=1234".
 */
#ifndef KURIR_KR_CORE_H
#define KURIR_KR_CORE_H

#include <glib.h>

G_BEGIN_DECLS

#define KR_CORE_API __attribute__((visibility("default")))

KR_CORE_API const char *kr_hostname(void);
KR_CORE_API const char *kr_default_domain(void);
KR_CORE_API gboolean kr_domain_is_local(const char *domain);
KR_CORE_API const char *const *kr_local_domains(void);
KR_CORE_API const char *kr_data_dir(void);
KR_CORE_API gboolean kr_is_daemon(void);
KR_CORE_API gboolean kr_shutting_down(void);
/* TRUE if debug logging is on for this log domain. */
KR_CORE_API gboolean kr_debug_enabled(const char *domain);

/* Address helpers. kr_addr_domain returns a pointer into addr after the
 * last '@' (or NULL); kr_addr_canon returns a new "local@domain" with the
 * domain lowercased and, for a bare local part, the default domain
 * appended. */
KR_CORE_API const char *kr_addr_domain(const char *addr);
KR_CORE_API char *kr_addr_canon(const char *addr);

G_END_DECLS
#endif
