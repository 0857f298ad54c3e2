/* SPDX-License-Identifier: MIT */
/*
 * rewrite-resolve.h - trivial-rewrite's decisions, pure: from an
 * envelope address to its canonical form and its transport (see
 * rewrite-resolve.c).
 *
 *   rw_addr_clean(in, default_domain, steps, error)
 *                     syntax clean-up: a canonical "local@domain" or an error
 *   rw_resolve(ctx, address, out, steps)
 *                     clean-up, canonical map, virtual map, transport
 *
 * STEPS
 *   Both append what they did to `steps` (may be NULL), one item per
 *   change, separated by "; " - what `kurir resolve` prints as "why".
 */
#ifndef REWRITE_RESOLVE_H
#define REWRITE_RESOLVE_H

#include <kurir/kurir.h>
#include "rewrite-map.h"

#define RW_LOCAL_MAX  64  /* bytes of local part (RFC 5321 4.5.3.1.1) */
#define RW_DOMAIN_MAX 253 /* bytes of domain */

typedef struct {
    const char *default_domain;
    gboolean (*is_local)(const char *domain); /* served here? */
    const char *relayhost;                    /* NULL or "": none */
    const RwMap *canonical, *virtual_, *transport;
} RwContext;

/* Clean up an envelope address: surrounding blanks and <>, a source
 * route (@a,@b:user@d) removed; the default domain appended to a bare
 * local part; a trailing dot of the domain removed; the domain
 * lowercased. The local part keeps its case. Refused (FALSE, error set):
 * empty, longer than RW_LOCAL_MAX/RW_DOMAIN_MAX, invalid UTF-8, control
 * characters, blanks or <>(),;:\ outside a quoted local part, a bad
 * domain. */
char *rw_addr_clean(const char *in, const char *default_domain, GString *steps, GError **error);

/* Resolve address into out (strings newly allocated; struct_size left
 * alone): transport "error" with 550 5.1.3 for an address refused by
 * rw_addr_clean; else the canonical map, then the virtual map (each at
 * most once), then the transport map, else "local" for served domains,
 * "relay" to the relay host if one is set, else "smtp" by MX. nexthop is
 * the domain for local and smtp. out->reason is the steps text, or for
 * "error" the reply text. */
void rw_resolve(const RwContext *ctx, const char *address, KrResolution *out, GString *steps);

#endif
