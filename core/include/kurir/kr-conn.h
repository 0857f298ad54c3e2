/* SPDX-License-Identifier: MIT */
/*
 * kr-conn.h - one client connection on the event loop: buffered,
 * non-blocking input and output over a socket, optionally TLS, with an
 * idle timeout. Shared by every protocol module (SMTP, POP3, IMAP).
 *
 * Input: the read handler runs when new bytes are in the input buffer
 * (or at EOF); the protocol parses kr_conn_input() and consumes what it
 * used with kr_conn_consume(). The buffer never grows past the limit set
 * with kr_conn_set_input_limit() (default 64 KiB): when full, reading
 * pauses until the protocol consumes. Protocols pause input themselves
 * while a command is being processed (kr_conn_pause) and resume after.
 *
 * Output is queued and written when the socket is writable;
 * kr_conn_close() flushes first. Memory is allocated lazily and given
 * back when buffers are empty, so an idle connection costs little.
 *
 * STARTTLS: kr_conn_start_tls() discards every buffered input byte
 * (no plaintext injection into the TLS session), then handshakes.
 *
 * The close handler runs exactly once, after which the KrConn is freed.
 */
#ifndef KURIR_KR_CONN_H
#define KURIR_KR_CONN_H

#include <glib.h>
#include <openssl/ssl.h>

G_BEGIN_DECLS

#define KR_CONN_API __attribute__((visibility("default")))

typedef struct KrConn KrConn;

typedef enum {
    KR_CONN_CLOSED_EOF,     /* peer closed */
    KR_CONN_CLOSED_ERROR,   /* I/O or TLS error */
    KR_CONN_CLOSED_TIMEOUT, /* idle timeout (after the timeout handler) */
    KR_CONN_CLOSED_LOCAL,   /* kr_conn_close() */
    KR_CONN_CLOSED_SHUTDOWN,/* daemon shutting down */
} KrConnCloseReason;

typedef struct KrConnHandlers {
    /* New input (or EOF: kr_conn_eof() is TRUE). */
    void (*read)(KrConn *conn, gpointer ud);
    /* Idle timeout: write a goodbye if wanted; the connection then closes. */
    void (*timeout)(KrConn *conn, gpointer ud);
    /* TLS handshake finished (ok) or failed (connection closes after). */
    void (*tls_done)(KrConn *conn, gboolean ok, gpointer ud);
    /* Last call; free ud here. */
    void (*closed)(KrConn *conn, KrConnCloseReason why, gpointer ud);
} KrConnHandlers;

KR_CONN_API void kr_conn_set_handlers(KrConn *conn, const KrConnHandlers *h, gpointer ud);

KR_CONN_API const char *kr_conn_peer_ip(const KrConn *conn);
KR_CONN_API guint16 kr_conn_peer_port(const KrConn *conn);
KR_CONN_API const char *kr_conn_local_ip(const KrConn *conn);
KR_CONN_API guint16 kr_conn_local_port(const KrConn *conn);
/* Name of the listener that accepted the connection. */
KR_CONN_API const char *kr_conn_listener(const KrConn *conn);
/* Process-unique connection number, for log lines. */
KR_CONN_API guint64 kr_conn_id(const KrConn *conn);

/* Input */
KR_CONN_API const char *kr_conn_input(const KrConn *conn, gsize *len_r);
KR_CONN_API void kr_conn_consume(KrConn *conn, gsize n);
KR_CONN_API gboolean kr_conn_eof(const KrConn *conn);
KR_CONN_API void kr_conn_pause(KrConn *conn);
KR_CONN_API void kr_conn_resume(KrConn *conn);
KR_CONN_API void kr_conn_set_input_limit(KrConn *conn, gsize limit);

/* Output */
KR_CONN_API void kr_conn_write(KrConn *conn, const void *data, gsize len);
KR_CONN_API void kr_conn_printf(KrConn *conn, const char *fmt, ...) G_GNUC_PRINTF(2, 3);
KR_CONN_API gsize kr_conn_output_pending(const KrConn *conn);
/* Flush output, then close (the closed handler runs). */
KR_CONN_API void kr_conn_close(KrConn *conn);

/* Idle timeout in seconds (0: none); reset by every input. */
KR_CONN_API void kr_conn_set_timeout(KrConn *conn, guint seconds);

/* TLS */
KR_CONN_API gboolean kr_conn_start_tls(KrConn *conn, SSL_CTX *ctx, GError **error);
KR_CONN_API gboolean kr_conn_is_tls(const KrConn *conn);
/* "TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)" or NULL. */
KR_CONN_API char *kr_conn_tls_info(const KrConn *conn);

/* The listener's TLS context (NULL if it has none). */
KR_CONN_API SSL_CTX *kr_conn_listener_tls(const KrConn *conn);

G_END_DECLS
#endif
