/* SPDX-License-Identifier: MIT */
/*
 * rewrite-resolve.c - trivial-rewrite's pure decisions: clean up an
 * envelope address and resolve it to a transport and next hop. The rules
 * are in rewrite-resolve.h; the maps in rewrite-map.h.
 *
 *   rw_addr_clean(in, default_domain, steps, error)
 *   rw_resolve(ctx, address, out, steps)
 *
 * No globals: everything comes from the RwContext, so the tests drive it
 * with their own domains and maps.
 */
#include "rewrite-resolve.h"

#include <gio/gio.h>
#include <string.h>

static void step(GString *steps, const char *fmt, ...) G_GNUC_PRINTF(2, 3);

static void
step(GString *steps, const char *fmt, ...)
{
    if (!steps)
        return;
    if (steps->len)
        g_string_append(steps, "; ");
    va_list ap;
    va_start(ap, fmt);
    g_string_append_vprintf(steps, fmt, ap);
    va_end(ap);
}

static gboolean
fail(GError **error, const char *in, const char *why)
{
    g_autofree char *shown = g_strescape(in, NULL);
    if (strlen(shown) > 80)
        strcpy(shown + 77, "...");
    g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "bad address \"%s\": %s", shown, why);
    return FALSE;
}

/* The end of a quoted string starting at s[0] == '"', or NULL. */
static const char *
quote_end(const char *s)
{
    for (const char *p = s + 1; *p; p++) {
        if (*p == '\\' && p[1])
            p++;
        else if (*p == '"')
            return p;
    }
    return NULL;
}

static gboolean
local_ok(const char *l, gsize n, const char **why)
{
    if (n == 0) {
        *why = "empty local part";
        return FALSE;
    }
    if (n > RW_LOCAL_MAX) {
        *why = "local part longer than 64 bytes";
        return FALSE;
    }
    if (l[0] == '"') {
        const char *e = quote_end(l);
        if (!e || (gsize)(e - l) != n - 1) {
            *why = "bad quoted local part";
            return FALSE;
        }
        return TRUE;
    }
    for (gsize i = 0; i < n; i++) {
        unsigned char c = (unsigned char)l[i];
        if (c == ' ' || c == '\t' || strchr("<>(),;:\\\"[]@", c)) {
            *why = "character not allowed in an unquoted local part";
            return FALSE;
        }
    }
    if (l[0] == '.' || l[n - 1] == '.' || g_strstr_len(l, (gssize)n, "..")) {
        *why = "misplaced dot in the local part";
        return FALSE;
    }
    return TRUE;
}

static gboolean
domain_ok(const char *d, const char **why)
{
    gsize n = strlen(d);
    if (n == 0) {
        *why = "empty domain";
        return FALSE;
    }
    if (n > RW_DOMAIN_MAX) {
        *why = "domain longer than 253 bytes";
        return FALSE;
    }
    if (d[0] == '[') {
        if (d[n - 1] != ']' || n < 3) {
            *why = "bad address literal";
            return FALSE;
        }
        for (const char *p = d + 1; p < d + n - 1; p++)
            if (!(g_ascii_isalnum(*p) || strchr(".:-", *p))) {
                *why = "bad address literal";
                return FALSE;
            }
        return TRUE;
    }
    gsize label = 0;
    for (gsize i = 0; i < n; i++) {
        unsigned char c = (unsigned char)d[i];
        if (c == '.') {
            if (label == 0 || d[i - 1] == '-') {
                *why = "bad domain (empty label or label ending in '-')";
                return FALSE;
            }
            label = 0;
            continue;
        }
        if (!(g_ascii_isalnum(c) || c == '-' || c >= 0x80)) {
            *why = "character not allowed in a domain";
            return FALSE;
        }
        if (label == 0 && c == '-') {
            *why = "bad domain (label starting with '-')";
            return FALSE;
        }
        if (++label > 63) {
            *why = "domain label longer than 63 bytes";
            return FALSE;
        }
    }
    if (d[n - 1] == '-') {
        *why = "bad domain (label ending in '-')";
        return FALSE;
    }
    return TRUE;
}

char *
rw_addr_clean(const char *in, const char *default_domain, GString *steps, GError **error)
{
    if (!in) {
        fail(error, "", "empty address");
        return NULL;
    }
    gsize len = strlen(in);
    if (len > 1000) {
        fail(error, in, "too long");
        return NULL;
    }
    if (!g_utf8_validate(in, (gssize)len, NULL)) {
        fail(error, in, "not valid UTF-8");
        return NULL;
    }
    for (const unsigned char *p = (const unsigned char *)in; *p; p++)
        if (*p < 0x20 || *p == 0x7f) {
            fail(error, in, "contains a control character");
            return NULL;
        }
    g_autofree char *buf = g_strstrip(g_strdup(in));
    char *s = buf;
    gsize n = strlen(s);
    if (n >= 2 && s[0] == '<' && s[n - 1] == '>') {
        s[n - 1] = 0;
        s++;
    }
    if (s[0] == '@') {
        char *colon = strchr(s, ':');
        if (!colon) {
            fail(error, in, "source route without ':'");
            return NULL;
        }
        step(steps, "source route %.*s removed", (int)(colon + 1 - s), s);
        s = colon + 1;
    }
    if (!*s) {
        fail(error, in, "empty address");
        return NULL;
    }
    /* The '@' that separates the domain: after a quoted local part. */
    const char *at;
    if (s[0] == '"') {
        const char *qe = quote_end(s);
        if (!qe) {
            fail(error, in, "unterminated quoted local part");
            return NULL;
        }
        at = strchr(qe, '@');
    } else {
        at = strrchr(s, '@');
    }
    gsize ln = at ? (gsize)(at - s) : strlen(s);
    const char *why = NULL;
    if (!local_ok(s, ln, &why)) {
        fail(error, in, why);
        return NULL;
    }
    g_autofree char *domain = NULL;
    if (!at || !at[1]) {
        if (at) {
            fail(error, in, "empty domain");
            return NULL;
        }
        domain = g_strdup(default_domain);
        step(steps, "default domain %s appended", default_domain);
    } else {
        domain = g_strdup(at + 1);
        gsize dl = strlen(domain);
        if (dl > 1 && domain[dl - 1] == '.' && domain[0] != '[') {
            domain[dl - 1] = 0;
            step(steps, "trailing dot of the domain removed");
        }
    }
    if (!domain_ok(domain, &why)) {
        fail(error, in, why);
        return NULL;
    }
    g_autofree char *lower = g_utf8_strdown(domain, -1);
    if (strcmp(lower, domain) != 0)
        step(steps, "domain lowercased");
    return g_strdup_printf("%.*s@%s", (int)ln, s, lower);
}

static void
set_error(KrResolution *out, int code, const char *ecode, const char *text)
{
    g_free(out->transport);
    g_free(out->nexthop);
    g_free(out->reason);
    out->transport = g_strdup("error");
    out->nexthop = g_strdup("");
    out->code = code;
    g_strlcpy(out->ecode, ecode, sizeof out->ecode);
    out->reason = g_strdup(text);
}

void
rw_resolve(const RwContext *c, const char *address, KrResolution *out, GString *steps)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(GString) local_steps = steps ? NULL : g_string_new(NULL);
    if (!steps)
        steps = local_steps;
    char *addr = rw_addr_clean(address, c->default_domain, steps, &err);
    if (!addr) {
        out->address = g_strdup(address ? address : "");
        set_error(out, 550, "5.1.3", err->message);
        step(steps, "%s", err->message);
        return;
    }
    const RwMap *maps[2] = {c->canonical, c->virtual_};
    const char *names[2] = {"canonical map", "virtual map"};
    for (int i = 0; i < 2; i++) {
        char *why = NULL;
        char *mapped = rw_addr_map_apply(maps[i], addr, c->is_local, c->default_domain, &why);
        if (mapped) {
            step(steps, "%s %s", names[i], why);
            g_free(why);
            g_free(addr);
            addr = mapped;
        }
    }
    out->address = addr;
    const char *domain = strrchr(addr, '@') + 1;
    RwTransport t;
    char *why = NULL;
    if (rw_transport_lookup(c->transport, addr, &t, &why)) {
        step(steps, "transport map %s", why);
        g_free(why);
        if (strcmp(t.transport, "error") == 0) {
            set_error(out, t.code, t.ecode, t.text);
            rw_transport_clear(&t);
            return;
        }
        out->transport = g_strdup(t.transport);
        out->nexthop = g_strdup(*t.nexthop ? t.nexthop : domain);
        rw_transport_clear(&t);
    } else if (c->is_local && c->is_local(domain)) {
        step(steps, "domain %s is served here", domain);
        out->transport = g_strdup("local");
        out->nexthop = g_strdup(domain);
    } else if (c->relayhost && *c->relayhost) {
        step(steps, "remote domain %s: through the relay host", domain);
        out->transport = g_strdup("relay");
        out->nexthop = g_ascii_strdown(c->relayhost, -1);
    } else {
        step(steps, "remote domain %s: delivered to its MX hosts", domain);
        out->transport = g_strdup("smtp");
        out->nexthop = g_strdup(domain);
    }
    out->reason = g_strdup(steps->str);
}
