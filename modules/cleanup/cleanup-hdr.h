/* SPDX-License-Identifier: MIT */
/*
 * cleanup-hdr.h - the header texts the cleanup stage adds, built from
 * plain values (no KrMsg): pure functions, unit-tested in t/test-cleanup.c.
 *
 *   cleanup_date(unix_time)           RFC 5322 date-time, local zone,
 *                                     English names: "Tue, 3 Feb 2026 10:04:05 +0100"
 *   cleanup_received(&fields)         the value of a Received: header
 *                                     (RFC 5321 4.4), folded with "\n\t"
 *   cleanup_comment_text(s)           s made safe inside a (comment)
 *   cleanup_addr_literal(ip)          "[192.0.2.1]" or "[IPv6:2001:db8::1]"
 *
 * Every value taken from a message attribute is sanitised: control
 * characters become '?', and so do '\' and unbalanced '(' ')' inside
 * comments (balanced ones nest, as RFC 5322 allows) and blanks, ';', '<',
 * '>' and parentheses in words, so an attribute can never break the
 * header's syntax or add a line.
 */
#ifndef KR_CLEANUP_HDR_H
#define KR_CLEANUP_HDR_H

#include <glib.h>

typedef struct {
    const char *helo;        /* EHLO/HELO argument, or NULL */
    const char *client_name; /* reverse DNS name, or NULL ("unknown") */
    const char *client_addr; /* IP address, or NULL: local submission */
    const char *tls;         /* TLS description ("TLSv1.3 ..."), or NULL */
    const char *auth_user;   /* authenticated user, or NULL */
    const char *uid;         /* local submitter's uid (sendmail), or NULL */
    const char *hostname;    /* this host */
    const char *protocol;    /* "ESMTPS" ..., or NULL ("SMTP", "local" without client) */
    const char *queue_id;
    const char *rcpt; /* the only recipient, or NULL when several */
    gint64 date;      /* unix time */
} CleanupReceived;

char *cleanup_date(gint64 unix_time);
char *cleanup_received(const CleanupReceived *f);
char *cleanup_comment_text(const char *s);
char *cleanup_addr_literal(const char *ip);

#endif
