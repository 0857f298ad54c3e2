/* SPDX-License-Identifier: MIT */
/*
 * kr-tls.h - TLS context helpers (OpenSSL).
 *
 *   kr_tls_server_ctx(cert, key, error)  a TLS 1.2+ server SSL_CTX with
 *                                         the certificate chain and key
 *                                         (PEM files); cached per pair
 *   kr_tls_client_ctx()                  a TLS 1.2+ client SSL_CTX
 *                                         (opportunistic: no verification)
 *   kr_tls_ensure_selfsigned(cert, key)  create a self-signed pair for
 *                                         kr_hostname() if missing
 */
#ifndef KURIR_KR_TLS_H
#define KURIR_KR_TLS_H

#include <glib.h>
#include <openssl/ssl.h>

G_BEGIN_DECLS

__attribute__((visibility("default"))) SSL_CTX *kr_tls_server_ctx(const char *cert_file,
                                                                  const char *key_file,
                                                                  GError **error);
__attribute__((visibility("default"))) SSL_CTX *kr_tls_client_ctx(GError **error);
__attribute__((visibility("default"))) gboolean
kr_tls_ensure_selfsigned(const char *cert_file, const char *key_file, GError **error);

G_END_DECLS
#endif
