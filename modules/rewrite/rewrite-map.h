/* SPDX-License-Identifier: MIT */
/*
 * rewrite-map.h - the plain-text lookup tables of trivial-rewrite:
 * canonical and virtual address maps, and the transport map. Pure:
 * parsing and lookups, no global state (see rewrite-map.c).
 *
 *   rw_map_load(path, kind, error)        parse a file into a map
 *   rw_map_parse(name, text, len, kind, errors)  parse text (tests, check)
 *   rw_map_ref / rw_map_unref             reference counting
 *   rw_map_changed(map)                   the file differs from the loaded one?
 *   rw_map_lookup(map, key, &line)        exact lookup (key lowercased)
 *   rw_map_size(map), rw_map_path(map), rw_map_exists(map)
 *   rw_addr_map_apply(map, address, is_local, default_domain, &why)
 *                                         canonical/virtual rewriting
 *   rw_transport_lookup(map, address, &entry, &why)
 *                                         transport map lookup
 *   rw_transport_parse(value, &entry, error)   one transport map value
 *
 * FORMAT (all maps)
 *   One entry per line: KEY, blanks, VALUE (the rest of the line, blanks
 *   trimmed). Blank lines and lines whose first non-blank character is
 *   '#' are ignored. No control characters other than TAB; lines at most
 *   RW_MAP_MAX_LINE bytes; at most RW_MAP_MAX_ENTRIES entries; valid
 *   UTF-8. Keys compare case-insensitively (ASCII); a key given twice is
 *   an error naming both lines.
 *
 * ADDRESS MAPS (canonical_map, virtual_map)
 *   KEY is "user@domain" (that address), "user" (that local part in
 *   every served domain) or "@domain" (every address in the domain).
 *   VALUE is one address "user@domain", a bare "user" (the default
 *   domain is appended), or "@domain" (keep the local part, change the
 *   domain). Lookup order: user@domain, user (served domains only),
 *   @domain; the first match wins and is applied once (no recursion).
 *
 * TRANSPORT MAP
 *   KEY is "user@domain", "domain", ".domain" (every subdomain of
 *   domain) or "*" (everything). VALUE is "local", "smtp", "smtp:NEXTHOP",
 *   "relay:NEXTHOP" or "error[:[5.X.Y] TEXT]". NEXTHOP is a host name,
 *   "[host]" (no MX lookup) or either with ":PORT". Lookup order: the
 *   address, its domain, then ".parent" for each parent domain, then "*".
 *
 * ERRORS
 *   Messages are "FILE:LINE: why" (rw_map_parse appends every one found
 *   to errors; rw_map_load fails with all of them joined by newlines in
 *   one G_IO_ERROR_INVALID_DATA). A missing file loads as an empty map
 *   (rw_map_exists() is FALSE) that counts as changed once the file
 *   appears; other I/O errors are G_IO_ERROR with the path.
 *
 * OWNERSHIP
 *   A loaded map is immutable and may be used from several threads; it
 *   lives while references exist.
 */
#ifndef REWRITE_MAP_H
#define REWRITE_MAP_H

#include <glib.h>
#include <sys/types.h>

#define RW_MAP_MAX_LINE    4096
#define RW_MAP_MAX_ENTRIES 1000000
#define RW_MAP_MAX_FILE    (256 * 1024 * 1024)

typedef enum {
    RW_MAP_ADDRESS,   /* canonical_map, virtual_map */
    RW_MAP_TRANSPORT, /* transport_map */
} RwMapKind;

typedef struct RwMap RwMap;

typedef struct {
    char *transport; /* "local", "smtp", "relay", "error" */
    char *nexthop;   /* "" when none */
    int code;        /* error: 550 */
    char ecode[12];  /* error: "5.1.1" */
    char *text;      /* error: reply text */
} RwTransport;

RwMap *rw_map_load(const char *path, RwMapKind kind, GError **error);
RwMap *rw_map_parse(const char *name, const char *text, gsize len, RwMapKind kind,
                    GPtrArray *errors);
RwMap *rw_map_ref(RwMap *map);
void rw_map_unref(RwMap *map);
gboolean rw_map_changed(const RwMap *map);
const char *rw_map_lookup(const RwMap *map, const char *key, guint *line_r);
guint rw_map_size(const RwMap *map);
gboolean rw_map_exists(const RwMap *map);
const char *rw_map_path(const RwMap *map);

/* Rewrite a canonical address ("local@domain", domain lowercased) with
 * an address map. Returns the new address, or NULL when no key matched.
 * is_local(domain) says whether a domain is served here (for bare-user
 * keys). *why_r (may be NULL) gets "FILE:LINE: KEY -> VALUE". */
char *rw_addr_map_apply(const RwMap *map, const char *address,
                        gboolean (*is_local)(const char *domain), const char *default_domain,
                        char **why_r);

/* Transport for a canonical address, or FALSE when no key matched.
 * Free the entry with rw_transport_clear. */
gboolean rw_transport_lookup(const RwMap *map, const char *address, RwTransport *out, char **why_r);
gboolean rw_transport_parse(const char *value, RwTransport *out, GError **error);
void rw_transport_clear(RwTransport *t);

#endif
