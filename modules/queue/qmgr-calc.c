/* SPDX-License-Identifier: MIT */
/*
 * qmgr-calc.c - the queue manager's small pure decisions, also linked by
 * t/test-queue-policy.c.
 *
 *   qmgr_backoff(n, min, max)   retry delay after the n-th failed attempt:
 *                               min, doubling per attempt, at most max
 *   qmgr_destination(addr)      what the policy sees: "transport:nexthop"
 *                               from the default resolver (kr_resolver,
 *                               modules/rewrite) when one is registered;
 *                               else "local:DOMAIN" for served domains,
 *                               "smtp:DOMAIN" for others (lowercased; no
 *                               domain: the default one)
 */
#include "queue.h"

gint64
qmgr_backoff(unsigned attempts, gint64 min_backoff, gint64 max_backoff)
{
    gint64 d = min_backoff;
    for (unsigned i = 1; i < attempts && d < max_backoff; i++)
        d *= 2;
    return MIN(d, max_backoff);
}

char *
qmgr_destination(const char *address)
{
    const KrResolver *res = kr_resolver(NULL);
    if (res) {
        KrResolution r = {.struct_size = sizeof r};
        if (res->resolve(res->self, address, &r) && r.transport) {
            char *dest = g_strconcat(r.transport, ":", r.nexthop ? r.nexthop : "", NULL);
            kr_resolution_clear(&r);
            return dest;
        }
        kr_resolution_clear(&r);
    }
    const char *d = kr_addr_domain(address);
    if (!d || !*d)
        d = kr_default_domain();
    g_autofree char *lower = g_ascii_strdown(d ? d : "", -1);
    return g_strconcat(kr_domain_is_local(lower) ? "local:" : "smtp:", lower, NULL);
}
