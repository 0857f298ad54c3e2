/* SPDX-License-Identifier: MIT */
/*
 * smtp-relay.c - network lists for relay control: which client addresses
 * are "trusted networks" (may relay without authenticating).
 *
 *   smtp_nets_parse(list, nets, error)   "10.0.0.0/8", "192.0.2.1",
 *                                        "::1/128", "2001:db8::/32" ->
 *                                        SmtpNet entries; FALSE on a bad one
 *   smtp_nets_match(nets, ip)            TRUE if the textual address ip is
 *                                        inside one of them
 *
 * A bare address means a single host (/32 or /128). An IPv4 client seen
 * as an IPv4-mapped IPv6 address (::ffff:a.b.c.d) matches IPv4 entries.
 * Host bits set below the prefix are an error (a typo like 10.0.0.1/8 is
 * more likely a mistake than an intent).
 */
#include "smtp.h"
#include <arpa/inet.h>
#include <sys/socket.h>

static gboolean
parse_addr(const char *text, SmtpNet *n)
{
    if (inet_pton(AF_INET, text, n->addr) == 1) {
        n->family = AF_INET;
        return TRUE;
    }
    if (inet_pton(AF_INET6, text, n->addr) == 1) {
        n->family = AF_INET6;
        return TRUE;
    }
    return FALSE;
}

static gboolean
prefix_match(const guint8 *a, const guint8 *b, guint prefix)
{
    guint full = prefix / 8, rest = prefix % 8;
    if (memcmp(a, b, full) != 0)
        return FALSE;
    if (rest == 0)
        return TRUE;
    guint8 mask = (guint8)(0xff << (8 - rest));
    return (a[full] & mask) == (b[full] & mask);
}

gboolean
smtp_nets_parse(char **list, GArray *nets, GError **error)
{
    for (char **p = list; p && *p; p++) {
        SmtpNet n = {0};
        g_autofree char *text = g_strstrip(g_strdup(*p));
        char *slash = strchr(text, '/');
        if (slash)
            *slash++ = '\0';
        if (!parse_addr(text, &n)) {
            g_set_error(error, SMTP_CONF_ERROR, 0,
                        "trusted_networks: '%s' is not an IPv4 or IPv6 address or network", *p);
            return FALSE;
        }
        guint max = n.family == AF_INET ? 32 : 128;
        n.prefix = max;
        if (slash) {
            char *end = NULL;
            guint64 v = g_ascii_strtoull(slash, &end, 10);
            if (!*slash || *end || v > max) {
                g_set_error(error, SMTP_CONF_ERROR, 0,
                            "trusted_networks: bad prefix length in '%s'", *p);
                return FALSE;
            }
            n.prefix = (guint)v;
        }
        /* host bits must be zero */
        SmtpNet masked = n;
        guint bytes = max / 8;
        for (guint i = 0; i < bytes; i++) {
            guint bit0 = i * 8;
            if (bit0 >= n.prefix)
                masked.addr[i] = 0;
            else if (bit0 + 8 > n.prefix)
                masked.addr[i] &= (guint8)(0xff << (8 - (n.prefix - bit0)));
        }
        if (memcmp(masked.addr, n.addr, bytes) != 0) {
            g_set_error(error, SMTP_CONF_ERROR, 0,
                        "trusted_networks: '%s' has host bits set below the prefix", *p);
            return FALSE;
        }
        g_array_append_val(nets, n);
    }
    return TRUE;
}

gboolean
smtp_nets_match(const GArray *nets, const char *ip)
{
    SmtpNet c = {0};
    if (!nets || !ip || !parse_addr(ip, &c))
        return FALSE;
    if (c.family == AF_INET6) {
        static const guint8 mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (memcmp(c.addr, mapped, 12) == 0) {
            memmove(c.addr, c.addr + 12, 4);
            c.family = AF_INET;
        }
    }
    for (guint i = 0; i < nets->len; i++) {
        const SmtpNet *n = &g_array_index(nets, SmtpNet, i);
        if (n->family == c.family && prefix_match(n->addr, c.addr, n->prefix))
            return TRUE;
    }
    return FALSE;
}
