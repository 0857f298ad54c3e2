/* SPDX-License-Identifier: MIT */
/*
 * NAME
 *   kr-conn-impl.h - the KrConn structure, shared by core/kr-conn*.c
 *
 * SYNOPSIS
 *   #include "kr-conn-impl.h"
 *
 *   struct KrConn, ConnState (ST_*), TlsState (TLS_*), out_pending(c),
 *   app_io(c)
 *   kr-conn.c:     kr_conn_update, kr_conn_kill, kr_conn_begin_close
 *   kr-conn-io.c:  kr_conn_drop_input, kr_conn_drop_output,
 *                  kr_conn_compact_output, kr_conn_fail_errno,
 *                  kr_conn_fail_ssl, kr_conn_flush, kr_conn_receive,
 *                  kr_conn_deliver
 *   kr-conn-tls.c: kr_conn_tls_setup, kr_conn_handshake
 *
 * DESCRIPTION
 *   Only kr-conn.c (state, events, closing, creation), kr-conn-io.c
 *   (buffers, reading and writing) and kr-conn-tls.c (TLS) include this;
 *   the rest of the core uses kr-conn-private.h, modules kurir/kr-conn.h.
 *   Nothing here is exported (libkurir is built with -fvisibility=hidden).
 *   Main thread only, like every KrConn.
 *
 * SEE ALSO
 *   kr-conn.c (the model: events, lifetime, rules for protocol modules)
 */
#ifndef KR_CONN_IMPL_H
#define KR_CONN_IMPL_H

#include "kr-internal.h"
#include "kr-conn-private.h"
#include "kr-conn-epoll.h"
#include <netinet/in.h>
#include <openssl/ssl.h>

#define KR_CONN_DEFAULT_INPUT_LIMIT (64 * 1024)
#define KR_CONN_OUTPUT_HIGH         (256 * 1024)
#define SCRATCH_SIZE                (64 * 1024)
#define TLS_WRITE_CHUNK             (16 * 1024)
#define WRITE_BUDGET                (1024 * 1024) /* bytes per dispatch, for fairness */
#define CLOSE_FLUSH_SECONDS         30
#define HANDSHAKE_SECONDS           60 /* when no idle timeout is set */

typedef enum { ST_OPEN, ST_CLOSING, ST_DEAD } ConnState;
typedef enum { TLS_NONE, TLS_HANDSHAKE, TLS_ON } TlsState;

struct KrConn {
    KrEvItem ev; /* first: the shared event source's item */
    GList link;  /* in `conns` */
    int fd;
    guint busy; /* dispatch or handler calls on the stack */
    guint64 id;
    char *listener;
    SSL_CTX *listener_tls;
    KrConnHandlers h;
    gpointer ud;
    KrConnReadyFunc on_ready;
    gpointer ready_ud;
    KrConnReleaseFunc release;
    gpointer release_ud;

    /* input: bytes [in_off, in_off + in_len) of `in`, which is either
     * owned (heap) or the shared scratch buffer during a delivery */
    char *in;
    gsize in_off, in_len, in_limit;
    /* output: bytes from out_off; the first plain_left of them go out in
     * clear before a handshake starts */
    GString *out;
    gsize out_off, plain_left;
    gsize ssl_wlen; /* length of an SSL_write that must be repeated */

    SSL *ssl;
    GIOCondition hs_want, rd_want, wr_want;
    guint timeout_sec;
    gint64 last_activity, hs_deadline, close_deadline;
    KrConnCloseReason reason;
    guint8 state, tls;
    gboolean paused : 1;
    gboolean eof : 1;
    gboolean in_scratch : 1;
    gboolean redeliver : 1;  /* call the read handler again (resume) */
    gboolean ssl_more : 1;   /* OpenSSL may hold decrypted input */
    gboolean wr_blocked : 1; /* last write would block: wait for wr_want */
    gboolean hs_kick : 1;    /* try the handshake without waiting */
    gboolean hs_client : 1;
    gboolean ready_pending : 1; /* on_ready(TRUE) to be called */
    gboolean ready_owed : 1;    /* on_ready not yet called since begin */
    gboolean tls_done_owed : 1;
    gboolean ssl_shutting : 1;
    gboolean in_dispatch : 1;
    gboolean finishing : 1;
    gboolean begun : 1;
    char peer_ip[INET6_ADDRSTRLEN];
    char local_ip[INET6_ADDRSTRLEN];
    guint16 peer_port, local_port;
};

/* Output bytes not yet written. */
static inline gsize
out_pending(const KrConn *c)
{
    return c->out ? c->out->len - c->out_off : 0;
}

/* Application data may flow (no handshake in progress). */
static inline gboolean
app_io(const KrConn *c)
{
    return c->tls == TLS_NONE || c->tls == TLS_ON;
}

/* --- kr-conn.c ------------------------------------------------------------ */

/* Bring the epoll events, ready list and timer in line with the state. */
void kr_conn_update(KrConn *c);
/* Stop now: no flush, no close_notify. */
void kr_conn_kill(KrConn *c, KrConnCloseReason reason);
/* Start an orderly close (flush, close_notify); no-op unless open. */
void kr_conn_begin_close(KrConn *c, KrConnCloseReason reason);

/* --- kr-conn-io.c ---------------------------------------------------------- */

void kr_conn_drop_input(KrConn *c);
void kr_conn_drop_output(KrConn *c);
/* Free written output, or move it to the front of the buffer. */
void kr_conn_compact_output(KrConn *c);
/* Log an I/O error (errno err / OpenSSL's ssl_err) and kill the conn. */
void kr_conn_fail_errno(KrConn *c, const char *what, int err);
void kr_conn_fail_ssl(KrConn *c, const char *what, int ssl_err);
/* Write queued output (at most WRITE_BUDGET bytes), in clear or TLS. */
void kr_conn_flush(KrConn *c);
/* Read what is there (socket or TLS) and deliver it. */
void kr_conn_receive(KrConn *c);
/* Call the read handler; then keep the leftovers and act on EOF. */
void kr_conn_deliver(KrConn *c);

/* --- kr-conn-tls.c --------------------------------------------------------- */

/* Put an SSL object on the conn, client or server side; the handshake
 * starts from the next dispatch. FALSE (error set) if closing or TLS. */
gboolean kr_conn_tls_setup(KrConn *c, SSL_CTX *ctx, gboolean client, GError **error);
/* One handshake step; on success the owed callback runs. */
void kr_conn_handshake(KrConn *c);

#endif
