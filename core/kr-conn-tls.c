/* SPDX-License-Identifier: MIT */
/*
 * NAME
 *   kr-conn-tls.c - connections: TLS setup, handshake, STARTTLS
 *
 * SYNOPSIS
 *   #include <kurir/kr-conn.h>
 *
 *   kr_conn_start_tls(c, ctx, error)       server side (STARTTLS)
 *   kr_conn_is_tls(c), kr_conn_tls_info(c), kr_conn_listener_tls(c)
 *
 *   #include "kr-conn-private.h"
 *
 *   kr_conn_start_tls_client(c, ctx, servername, error)
 *
 *   #include "kr-conn-impl.h"
 *
 *   kr_conn_tls_setup(c, ctx, client, error), kr_conn_handshake(c)
 *
 * DESCRIPTION
 *   OpenSSL on our own socket BIO (kr-conn-sock.c: MSG_NOSIGNAL), with
 *   SSL_MODE_RELEASE_BUFFERS (an idle TLS conn holds no buffers), no
 *   renegotiation, TLS 1.2 at least. Plaintext input read before the
 *   handshake is discarded (CVE-2011-0411); queued output goes out in
 *   clear first. A handshake has its own deadline: the idle timeout, or
 *   HANDSHAKE_SECONDS without one. When it is done, the pending on_ready
 *   (implicit TLS) or tls_done handler runs with ok=TRUE; on failure the
 *   conn closes and they get ok=FALSE from kr-conn.c.
 *
 * DIAGNOSTICS
 *   kr_conn_start_tls*: G_IO_ERROR_CLOSED (closing), G_IO_ERROR_EXISTS
 *   (TLS already active), G_IO_ERROR_FAILED (OpenSSL). A failed handshake
 *   is logged with OpenSSL's errors.
 *
 * SEE ALSO
 *   kr-conn.c, kr-tls.c (contexts), RFC 3207
 */
#include "kr-conn-impl.h"
#include <openssl/err.h>

gboolean
kr_conn_tls_setup(KrConn *c, SSL_CTX *ctx, gboolean client, GError **error)
{
    if (c->state != ST_OPEN) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_CLOSED, "connection is closing");
        return FALSE;
    }
    if (c->ssl) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_EXISTS, "TLS is already active");
        return FALSE;
    }
    ERR_clear_error();
    SSL *ssl = SSL_new(ctx);
    BIO *bio = ssl ? kr_conn_sock_bio(c->fd) : NULL;
    if (!bio) {
        g_autofree char *detail = kr_conn_ssl_errors();
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED, "cannot start TLS: %s", detail);
        if (ssl)
            SSL_free(ssl);
        return FALSE;
    }
    SSL_set_bio(ssl, bio, bio);
    SSL_set_mode(ssl, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
                          SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_set_options(ssl, SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_RENEGOTIATION);
    if (SSL_get_min_proto_version(ssl) < TLS1_2_VERSION)
        SSL_set_min_proto_version(ssl, TLS1_2_VERSION);
    if (client)
        SSL_set_connect_state(ssl);
    else
        SSL_set_accept_state(ssl);
    /* Nothing read in clear before the handshake may be taken as a
     * command inside the TLS session (CVE-2011-0411): drop it. Bytes not
     * read yet stay in the socket for OpenSSL. */
    if (c->in_len)
        g_debug("conn %" G_GUINT64_FORMAT ": discarding %zu bytes of plaintext input", c->id,
                c->in_len);
    kr_conn_drop_input(c);
    c->eof = FALSE;
    c->redeliver = FALSE;
    c->ssl = ssl;
    c->tls = TLS_HANDSHAKE;
    c->hs_client = client;
    c->plain_left = out_pending(c);
    c->hs_want = client ? G_IO_OUT : G_IO_IN;
    c->hs_kick = TRUE;
    c->hs_deadline = g_get_monotonic_time() +
                     (gint64)(c->timeout_sec ? c->timeout_sec : HANDSHAKE_SECONDS) * G_USEC_PER_SEC;
    return TRUE;
}

static void
conn_handshake_done(KrConn *c)
{
    c->tls = TLS_ON;
    c->ssl_more = TRUE; /* the client may have sent data right behind Finished */
    c->rd_want = G_IO_IN;
    c->last_activity = g_get_monotonic_time();
    if (kr_debug_enabled(G_LOG_DOMAIN)) {
        g_autofree char *info = kr_conn_tls_info(c);
        g_debug("conn %" G_GUINT64_FORMAT ": %s", c->id, info);
    }
    c->busy++;
    if (c->ready_owed) {
        c->ready_owed = FALSE;
        if (c->on_ready)
            c->on_ready(c, TRUE, c->ready_ud);
    } else if (c->tls_done_owed) {
        c->tls_done_owed = FALSE;
        if (c->h.tls_done)
            c->h.tls_done(c, TRUE, c->ud);
    }
    c->busy--;
}

void
kr_conn_handshake(KrConn *c)
{
    c->hs_kick = FALSE;
    ERR_clear_error();
    int r = SSL_do_handshake(c->ssl);
    if (r == 1) {
        conn_handshake_done(c);
        return;
    }
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ) {
        c->hs_want = G_IO_IN;
    } else if (e == SSL_ERROR_WANT_WRITE) {
        c->hs_want = G_IO_OUT;
    } else {
        kr_conn_fail_ssl(c, "TLS handshake failed", e);
    }
}

gboolean
kr_conn_start_tls(KrConn *c, SSL_CTX *ctx, GError **error)
{
    g_return_val_if_fail(c && ctx, FALSE);
    if (!kr_conn_tls_setup(c, ctx, FALSE, error))
        return FALSE;
    c->tls_done_owed = TRUE;
    kr_conn_update(c);
    return TRUE;
}

gboolean
kr_conn_start_tls_client(KrConn *c, SSL_CTX *ctx, const char *servername, GError **error)
{
    g_return_val_if_fail(c && ctx, FALSE);
    if (!kr_conn_tls_setup(c, ctx, TRUE, error))
        return FALSE;
    if (servername && *servername && !g_hostname_is_ip_address(servername))
        SSL_set_tlsext_host_name(c->ssl, servername);
    c->tls_done_owed = TRUE;
    kr_conn_update(c);
    return TRUE;
}

gboolean
kr_conn_is_tls(const KrConn *c)
{
    return c->tls == TLS_ON;
}

char *
kr_conn_tls_info(const KrConn *c)
{
    if (c->tls != TLS_ON)
        return NULL;
    const SSL_CIPHER *ci = SSL_get_current_cipher(c->ssl);
    int alg_bits = 0;
    int bits = ci ? SSL_CIPHER_get_bits(ci, &alg_bits) : 0;
    return g_strdup_printf("%s with cipher %s (%d/%d bits)", SSL_get_version(c->ssl),
                           ci ? SSL_CIPHER_get_name(ci) : "unknown", bits, alg_bits);
}

SSL_CTX *
kr_conn_listener_tls(const KrConn *c)
{
    return c->listener_tls;
}
