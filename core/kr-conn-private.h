/* SPDX-License-Identifier: MIT */
/*
 * kr-conn-private.h - the core's side of KrConn (kr-conn*.c): creating
 * connections from accepted sockets, the listener's release hook, and
 * daemon shutdown. Modules see only kurir/kr-conn.h.
 *
 *   kr_conn_new(fd, listener, tls_ctx, implicit, on_ready, ud)
 *                                 wrap a connected socket (owned from now on)
 *   kr_conn_begin(conn, implicit, on_ready, ud)
 *                                 start a conn made with on_ready == NULL
 *   kr_conn_set_release(conn, release, ud)
 *                                 last callback before the KrConn is freed
 *   kr_conn_start_tls_client(conn, ctx, servername, error)
 *                                 client-side handshake (STARTTLS as client)
 *   kr_conn_close_all()           close every connection (daemon shutdown)
 *   kr_conn_count()               connections not yet freed
 *
 * Plumbing from kr-conn-sock.c for kr-conn*.c (not exported):
 *   kr_conn_sock_bio(fd), kr_conn_sock_addr(fd, peer, ...), kr_conn_ssl_errors()
 */
#ifndef KR_CONN_PRIVATE_H
#define KR_CONN_PRIVATE_H

#include "kr-internal.h"

typedef void (*KrConnReadyFunc)(KrConn *conn, gboolean ok, gpointer ud);
typedef void (*KrConnReleaseFunc)(KrConn *conn, gpointer ud);

/* Take ownership of a connected socket fd (made non-blocking here)
 * accepted by listener `listener_name` (copied; NULL for an outgoing
 * connection). tls_ctx is the listener's TLS context (may be NULL; not
 * referenced, it must outlive the conn). If implicit_tls, the server
 * handshake starts at once and on_ready(conn, ok, ud) runs when it is done;
 * otherwise, if on_ready is set, it runs from the main loop with ok=TRUE.
 * With implicit_tls FALSE and on_ready NULL nothing starts until
 * kr_conn_begin(). on_ready runs exactly once per begin, also when the
 * conn dies first (ok=FALSE); after on_ready(FALSE) the conn is closed
 * and freed once the callback returns. Input is read only once a read
 * handler is set (kr_conn_set_handlers). */
KR_INTERNAL KrConn *kr_conn_new(int fd, const char *listener_name, SSL_CTX *tls_ctx,
                                gboolean implicit_tls, KrConnReadyFunc on_ready, gpointer ud);
/* Start a conn created with implicit_tls FALSE and on_ready NULL; same
 * meaning as the arguments of kr_conn_new. Call at most once. */
KR_INTERNAL void kr_conn_begin(KrConn *conn, gboolean implicit_tls, KrConnReadyFunc on_ready,
                               gpointer ud);
/* release(conn, ud) runs once, after the closed handler, just before the
 * KrConn is freed (listeners use it for their connection counts). */
KR_INTERNAL void kr_conn_set_release(KrConn *conn, KrConnReleaseFunc release, gpointer ud);
/* Client side of a TLS handshake on an open connection (for example after
 * the peer's "220 Ready to start TLS"): buffered input is discarded,
 * queued output is sent in clear first, and the tls_done handler runs
 * when done. servername (may be NULL) is sent as SNI unless it is an IP
 * literal. No certificate verification here: use a verifying ctx for
 * that. FALSE (error set) if TLS cannot start (already TLS, closing). */
KR_INTERNAL gboolean kr_conn_start_tls_client(KrConn *conn, SSL_CTX *ctx, const char *servername,
                                              GError **error);
/* Close all connections (daemon shutdown): queued output gets one
 * non-blocking write attempt, TLS a best-effort close_notify; the closed
 * handlers run now (reason KR_CONN_CLOSED_SHUTDOWN), except for a conn
 * whose handler is on the stack, which finishes when it returns. */
KR_INTERNAL void kr_conn_close_all(void);
/* Connections created and not yet freed. */
KR_INTERNAL guint kr_conn_count(void);

/* kr-conn-sock.c: an OpenSSL BIO on socket fd (not owned) whose writes
 * never raise SIGPIPE; NULL if OpenSSL fails. */
BIO *kr_conn_sock_bio(int fd);
/* The peer's (peer TRUE) or local address of fd as text into buf and its
 * port; returns the address family (AF_UNSPEC if there is none). */
int kr_conn_sock_addr(int fd, gboolean peer, char *buf, gsize size, guint16 *port_r);
/* OpenSSL's error queue as one line, emptied; "" if none. g_free it. */
char *kr_conn_ssl_errors(void);

#endif
