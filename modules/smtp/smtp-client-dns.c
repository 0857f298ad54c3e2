/* SPDX-License-Identifier: MIT */
/*
 * smtp-client-dns.c - where the SMTP client connects: the static
 * resolver_override table, then DNS (MX, then A/AAAA).
 *
 *   smtpc_resolve(req, out)         B: the addresses to try, in order
 *   smtpc_resolved_clear(res)       free a result
 * (next-hop syntax and the override table: smtp-client-hop.c)
 *
 * smtpc_resolve is blocking (res_nquery from libresolv, getaddrinfo):
 * call it from a worker thread only. Order of lookups for a target:
 *   1. an address literal is used as is;
 *   2. a name in resolver_override gets the addresses listed there, in
 *      that order (no DNS at all; the tests use only this);
 *   3. with dns = false, anything else is a temporary failure;
 *   4. "[host]" (no_mx): A/AAAA of host;
 *   5. else MX records of the domain, by preference (equal preferences in
 *      random order); MX hosts are looked up in resolver_override first,
 *      then A/AAAA. No MX records: the domain's own A/AAAA (RFC 5321
 *      5.1). A null MX (RFC 7505) fails permanently (556 5.1.10).
 *      If this host (myhostname) is an MX, only better MX hosts are used;
 *      if it is the best one, the mail loops (554 5.4.6).
 * Failures: NXDOMAIN or no address for the domain itself: 550 5.4.4
 * (permanent); DNS trouble (SERVFAIL, timeouts): 451 4.4.3; MX hosts
 * that have no address: 451 4.4.3. At most max_addrs addresses.
 */
#include "smtp-client.h"
#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <netdb.h>
#include <netinet/in.h>
#include <resolv.h>
#include <string.h>

void
smtpc_resolved_clear(SmtpcResolved *r)
{
    if (r->addrs)
        g_ptr_array_unref(r->addrs);
    r->addrs = NULL;
    g_clear_pointer(&r->error, g_free);
}

static void set_fail(SmtpcResolved *out, int code, const char *ecode, const char *fmt, ...)
    G_GNUC_PRINTF(4, 5);

static void
set_fail(SmtpcResolved *out, int code, const char *ecode, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    g_free(out->error);
    out->error = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    out->code = code;
    g_strlcpy(out->ecode, ecode, sizeof out->ecode);
}

/* Copies of the override entries for name into out (TRUE if there are). */
static gboolean
from_override(const SmtpcResolveReq *req, const char *name, GPtrArray *out)
{
    GPtrArray *list = req->override ? g_hash_table_lookup(req->override, name) : NULL;
    if (!list)
        return FALSE;
    for (guint i = 0; i < list->len && out->len < req->max_addrs; i++) {
        const SmtpcAddr *s = list->pdata[i];
        SmtpcAddr *a = g_new0(SmtpcAddr, 1);
        *a = *s;
        a->host = g_strdup(s->host);
        a->ip = g_strdup(s->ip);
        g_ptr_array_add(out, a);
    }
    return TRUE;
}

typedef enum { LOOKUP_OK, LOOKUP_NONE, LOOKUP_TEMP } LookupResult;

/* A/AAAA of name into out. */
static LookupResult
lookup_host(const SmtpcResolveReq *req, const char *name, guint16 port, GPtrArray *out,
            char **why_r)
{
    if (from_override(req, name, out))
        return LOOKUP_OK;
    if (!req->dns) {
        *why_r = g_strdup_printf("no resolver_override entry for %s (dns = false)", name);
        return LOOKUP_TEMP;
    }
    g_autofree char *ascii = g_hostname_to_ascii(name);
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_ADDRCONFIG};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(ascii ? ascii : name, NULL, &hints, &res);
    if (rc != 0) {
        *why_r = g_strdup_printf("lookup of %s: %s", name, gai_strerror(rc));
        return rc == EAI_NONAME
#ifdef EAI_NODATA
                       || rc == EAI_NODATA
#endif
                   ? LOOKUP_NONE
                   : LOOKUP_TEMP;
    }
    guint before = out->len;
    for (struct addrinfo *ai = res; ai && out->len < req->max_addrs; ai = ai->ai_next) {
        if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
            continue;
        char ip[INET6_ADDRSTRLEN];
        const void *src = ai->ai_family == AF_INET
                              ? (const void *)&((struct sockaddr_in *)ai->ai_addr)->sin_addr
                              : (const void *)&((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr;
        if (!inet_ntop(ai->ai_family, src, ip, sizeof ip))
            continue;
        gboolean dup = FALSE;
        for (guint i = before; i < out->len; i++)
            if (!strcmp(((SmtpcAddr *)out->pdata[i])->ip, ip))
                dup = TRUE;
        if (dup)
            continue;
        SmtpcAddr *a = smtpc_numeric_addr(name, ip, port);
        if (a)
            g_ptr_array_add(out, a);
    }
    freeaddrinfo(res);
    if (out->len == before) {
        *why_r = g_strdup_printf("%s has no usable address", name);
        return LOOKUP_NONE;
    }
    return LOOKUP_OK;
}

typedef enum { MX_FOUND, MX_NODATA, MX_NXDOMAIN, MX_TEMP } MxResult;

/* MX records of domain (sorted) into mxs. */
static MxResult
lookup_mx(const char *domain, GArray *mxs, char **why_r)
{
    g_autofree char *ascii = g_hostname_to_ascii(domain);
    struct __res_state rs;
    memset(&rs, 0, sizeof rs);
    if (res_ninit(&rs) != 0) {
        *why_r = g_strdup("cannot initialise the resolver");
        return MX_TEMP;
    }
    g_autofree guchar *ans = g_malloc(NS_MAXMSG);
    int n = res_nquery(&rs, ascii ? ascii : domain, ns_c_in, ns_t_mx, ans, NS_MAXMSG);
    int herr = rs.res_h_errno;
    res_nclose(&rs);
    if (n < 0) {
        switch (herr) {
        case HOST_NOT_FOUND:
            *why_r = g_strdup_printf("domain %s not found", domain);
            return MX_NXDOMAIN;
        case NO_DATA:
            return MX_NODATA;
        default:
            *why_r = g_strdup_printf("DNS lookup of MX records of %s failed (%s)", domain,
                                     herr == TRY_AGAIN ? "temporary failure" : "server failure");
            return MX_TEMP;
        }
    }
    ns_msg msg;
    if (ns_initparse(ans, n, &msg) != 0) {
        *why_r = g_strdup_printf("malformed DNS answer for the MX records of %s", domain);
        return MX_TEMP;
    }
    int count = ns_msg_count(msg, ns_s_an);
    for (int i = 0; i < count; i++) {
        ns_rr rr;
        if (ns_parserr(&msg, ns_s_an, i, &rr) != 0)
            continue;
        if (ns_rr_type(rr) != ns_t_mx || ns_rr_rdlen(rr) < 3)
            continue;
        const guchar *rd = ns_rr_rdata(rr);
        char name[NS_MAXDNAME];
        if (dn_expand(ns_msg_base(msg), ns_msg_end(msg), rd + 2, name, sizeof name) < 0)
            continue;
        SmtpcMx mx = {.pref = ns_get16(rd), .name = g_ascii_strdown(name, -1)};
        g_array_append_val(mxs, mx);
    }
    return mxs->len ? MX_FOUND : MX_NODATA;
}

static gboolean
is_literal(const char *host)
{
    struct in6_addr a6;
    struct in_addr a4;
    const char *p = g_ascii_strncasecmp(host, "ipv6:", 5) == 0 ? host + 5 : host;
    return inet_pton(AF_INET, p, &a4) == 1 || inet_pton(AF_INET6, p, &a6) == 1;
}

void
smtpc_resolve(const SmtpcResolveReq *req, SmtpcResolved *out)
{
    memset(out, 0, sizeof *out);
    out->addrs = g_ptr_array_new_with_free_func(smtpc_addr_free);
    const char *host = req->target.host;
    guint16 port = req->target.port;
    g_autofree char *why = NULL;

    if (is_literal(host)) {
        SmtpcAddr *a = smtpc_numeric_addr(host, host, port);
        if (a)
            g_ptr_array_add(out->addrs, a);
        else
            set_fail(out, 550, "5.1.2", "bad address literal [%s]", host);
        return;
    }
    if (from_override(req, host, out->addrs))
        return;
    if (!req->dns) {
        set_fail(out, 451, "4.4.3", "no resolver_override entry for %s (dns = false)", host);
        return;
    }
    if (req->target.no_mx) {
        LookupResult lr = lookup_host(req, host, port, out->addrs, &why);
        if (lr == LOOKUP_NONE)
            set_fail(out, 550, "5.4.4", "Host or domain name not found: %s", why);
        else if (lr == LOOKUP_TEMP)
            set_fail(out, 451, "4.4.3", "Host or domain name lookup failed: %s", why);
        return;
    }
    g_autoptr(GArray) mxs = smtpc_mx_array();
    switch (lookup_mx(host, mxs, &why)) {
    case MX_NXDOMAIN:
        set_fail(out, 550, "5.4.4", "Host or domain name not found: %s", why);
        return;
    case MX_TEMP:
        set_fail(out, 451, "4.4.3", "%s", why);
        return;
    case MX_NODATA: {
        LookupResult lr = lookup_host(req, host, port, out->addrs, &why);
        if (lr == LOOKUP_NONE)
            set_fail(out, 550, "5.4.4", "Host or domain name not found: %s", why);
        else if (lr == LOOKUP_TEMP)
            set_fail(out, 451, "4.4.3", "Host or domain name lookup failed: %s", why);
        return;
    }
    case MX_FOUND:
        break;
    }
    switch (smtpc_mx_plan(mxs, req->myhostname)) {
    case SMTPC_MX_NULL:
        set_fail(out, 556, "5.1.10", "domain %s does not accept mail (null MX)", host);
        return;
    case SMTPC_MX_LOOP:
        set_fail(out, 554, "5.4.6", "mail for %s loops back to myself", host);
        return;
    case SMTPC_MX_OK:
        break;
    }
    for (guint i = 0; i < mxs->len && out->addrs->len < req->max_addrs; i++) {
        SmtpcMx *m = &g_array_index(mxs, SmtpcMx, i);
        g_autofree char *w = NULL;
        lookup_host(req, m->name, port, out->addrs, &w);
        if (w) {
            g_free(why);
            why = g_steal_pointer(&w);
        }
    }
    if (out->addrs->len == 0)
        set_fail(out, 451, "4.4.3", "no MX host of %s has an address%s%s", host, why ? ": " : "",
                 why ? why : "");
}
