/* SPDX-License-Identifier: MIT */
/*
 * cleanup-hdr.c - texts of the headers the cleanup stage adds (see
 * cleanup-hdr.h): the Received: trace line and RFC 5322 dates.
 *
 *   cleanup_date, cleanup_received, cleanup_comment_text,
 *   cleanup_addr_literal
 *
 * Pure: no I/O, no globals; thread-safe.
 */
#include "cleanup-hdr.h"
#include <string.h>
#include <time.h>

static const char *const wdays[] = {"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"};
static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                     "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

char *
cleanup_date(gint64 unix_time)
{
    /* localtime_r, not GLib's local GDateTime: that re-reads
     * /etc/localtime on every call (three system calls a message). */
    time_t t = (time_t)unix_time;
    struct tm tm;
    if (!localtime_r(&t, &tm)) {
        t = 0;
        gmtime_r(&t, &tm);
    }
    long off = tm.tm_gmtoff / 60;
    char sign = off < 0 ? '-' : '+';
    if (off < 0)
        off = -off;
    return g_strdup_printf("%s, %d %s %04d %02d:%02d:%02d %c%02ld%02ld",
                           wdays[(tm.tm_wday + 6) % 7], tm.tm_mday, months[tm.tm_mon],
                           tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec, sign, off / 60,
                           off % 60);
}

/* Valid UTF-8 with every byte in `bad` (and every control) as '?'. */
static char *
sanitise(const char *s, const char *bad)
{
    char *v = g_utf8_make_valid(s ? s : "", -1);
    for (char *p = v; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c < 0x20 || c == 0x7f || (c < 0x80 && strchr(bad, c)))
            *p = '?';
    }
    return v;
}

/* Nested comments are fine (RFC 5322 ccontent), so balanced parentheses
 * are kept ("(256/256 bits)" in TLS info); an unbalanced one becomes '?'. */
char *
cleanup_comment_text(const char *s)
{
    char *v = sanitise(s, "\\");
    g_autoptr(GArray) open = g_array_new(FALSE, FALSE, sizeof(gsize));
    for (gsize i = 0; v[i]; i++) {
        if (v[i] == '(') {
            g_array_append_val(open, i);
        } else if (v[i] == ')') {
            if (open->len > 0)
                g_array_set_size(open, open->len - 1);
            else
                v[i] = '?';
        }
    }
    for (guint i = 0; i < open->len; i++)
        v[g_array_index(open, gsize, i)] = '?';
    return v;
}

/* A word of the trace line (domain, id, protocol): no blanks, no
 * characters that end a clause or a comment. */
static char *
token(const char *s)
{
    return sanitise(s, " \t()\\;<>\"");
}

char *
cleanup_addr_literal(const char *ip)
{
    g_autofree char *t = token(ip);
    if (strchr(t, ':'))
        return g_strdup_printf("[IPv6:%s]", t);
    return g_strdup_printf("[%s]", t);
}

char *
cleanup_received(const CleanupReceived *f)
{
    GString *v = g_string_new(NULL);
    g_autofree char *host = token(f->hostname ? f->hostname : "localhost");
    g_autofree char *id = token(f->queue_id);
    if (f->client_addr) {
        g_autofree char *lit = cleanup_addr_literal(f->client_addr);
        g_autofree char *helo = f->helo && *f->helo ? token(f->helo) : NULL;
        g_autofree char *name =
            cleanup_comment_text(f->client_name && *f->client_name ? f->client_name : "unknown");
        g_string_append_printf(v, "from %s (%s %s)", helo ? helo : lit, name, lit);
        if (f->tls && *f->tls) {
            g_autofree char *tls = cleanup_comment_text(f->tls);
            g_string_append_printf(v, "\n\t(using %s)", tls);
        }
        if (f->auth_user && *f->auth_user) {
            g_autofree char *au = cleanup_comment_text(f->auth_user);
            g_string_append_printf(v, "\n\t(authenticated as %s)", au);
        }
        g_autofree char *proto = token(f->protocol && *f->protocol ? f->protocol : "SMTP");
        /* RFC 3848: ESMTP + S (TLS) + A (authenticated), if the server
         * gave the plain name. */
        if (g_ascii_strcasecmp(proto, "ESMTP") == 0) {
            g_free(proto);
            proto = g_strdup_printf("ESMTP%s%s", f->tls && *f->tls ? "S" : "",
                                    f->auth_user && *f->auth_user ? "A" : "");
        }
        g_string_append_printf(v, "\n\tby %s (kurir) with %s id %s", host, proto, id);
    } else {
        g_string_append_printf(v, "by %s (kurir", host);
        if (f->uid && *f->uid) {
            g_autofree char *uid = cleanup_comment_text(f->uid);
            g_string_append_printf(v, ", from userid %s", uid);
        }
        g_autofree char *proto = token(f->protocol && *f->protocol ? f->protocol : "local");
        g_string_append_printf(v, ") with %s id %s", proto, id);
    }
    if (f->rcpt && *f->rcpt) {
        g_autofree char *r = sanitise(f->rcpt, " \t<>;\\");
        g_string_append_printf(v, "\n\tfor <%s>", r);
    }
    g_autofree char *date = cleanup_date(f->date);
    g_string_append_printf(v, "; %s", date);
    return g_string_free(v, FALSE);
}
