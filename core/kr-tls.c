/* SPDX-License-Identifier: MIT */
/*
 * kr-tls.c - TLS context helpers (OpenSSL 3).
 *
 *   kr_tls_server_ctx(cert, key, error)  TLS 1.2+ server context with the
 *                                         PEM chain and key; checks that
 *                                         they match; cached per pair
 *   kr_tls_client_ctx(error)             TLS 1.2+ client context, no
 *                                         verification (opportunistic)
 *   kr_tls_ensure_selfsigned(cert, key)  if either file is missing, make
 *                                         an EC P-256 key and a self-signed
 *                                         certificate for kr_hostname()
 *
 * Ownership: the contexts returned are owned by this file's cache and
 * live as long as the process; callers must not free them (SSL objects
 * made from them hold their own reference anyway). A changed certificate
 * file is not re-read (the cache is keyed by the file names).
 *
 * Errors: GError in G_IO_ERROR with OpenSSL's error text; nothing is
 * cached after a failure, so a fixed file can be tried again.
 */
#include "kr-internal.h"
#include <errno.h>
#include <fcntl.h>
#include <gio/gio.h>
#include <glib/gstdio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>
#include <unistd.h>

static GMutex tls_lock;
static GHashTable *server_ctxs; /* "cert\nkey" -> SSL_CTX */
static SSL_CTX *client_ctx;

static char *
tls_errors(void)
{
    GString *s = g_string_new(NULL);
    unsigned long e;
    char buf[256];
    while ((e = ERR_get_error()) != 0) {
        ERR_error_string_n(e, buf, sizeof buf);
        if (s->len)
            g_string_append(s, "; ");
        g_string_append(s, buf);
    }
    if (!s->len)
        g_string_append(s, "unknown OpenSSL error");
    return g_string_free(s, FALSE);
}

static void set_tls_error(GError **error, const char *fmt, ...) G_GNUC_PRINTF(2, 3);

static void
set_tls_error(GError **error, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    g_autofree char *msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    g_autofree char *detail = tls_errors();
    g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED, "%s: %s", msg, detail);
}

static void
ctx_common(SSL_CTX *ctx)
{
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF |
                                 SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
                              SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
}

static SSL_CTX *
server_ctx_new(const char *cert_file, const char *key_file, GError **error)
{
    for (int i = 0; i < 2; i++) {
        const char *f = i == 0 ? cert_file : key_file;
        if (g_access(f, R_OK) != 0) {
            int e = errno;
            g_set_error(error, G_IO_ERROR, g_io_error_from_errno(e), "cannot read %s: %s", f,
                        g_strerror(e));
            return NULL;
        }
    }
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        set_tls_error(error, "cannot create a TLS context");
        return NULL;
    }
    ctx_common(ctx);
    /* Stateless session tickets, no server-side session cache to grow. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_dh_auto(ctx, 1);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
        set_tls_error(error, "cannot load certificate %s", cert_file);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1) {
        set_tls_error(error, "cannot load private key %s", key_file);
        goto fail;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        set_tls_error(error, "private key %s does not match the certificate", key_file);
        goto fail;
    }
    g_debug("TLS: loaded certificate %s, key %s", cert_file, key_file);
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

SSL_CTX *
kr_tls_server_ctx(const char *cert_file, const char *key_file, GError **error)
{
    g_return_val_if_fail(cert_file && key_file, NULL);
    g_autofree char *k = g_strconcat(cert_file, "\n", key_file, NULL);
    g_mutex_lock(&tls_lock);
    if (!server_ctxs)
        server_ctxs = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    SSL_CTX *ctx = g_hash_table_lookup(server_ctxs, k);
    if (!ctx) {
        ctx = server_ctx_new(cert_file, key_file, error);
        if (ctx)
            g_hash_table_insert(server_ctxs, g_steal_pointer(&k), ctx);
    }
    g_mutex_unlock(&tls_lock);
    return ctx;
}

SSL_CTX *
kr_tls_client_ctx(GError **error)
{
    g_mutex_lock(&tls_lock);
    if (!client_ctx) {
        ERR_clear_error();
        SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
        if (ctx) {
            ctx_common(ctx);
            SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
            client_ctx = ctx;
        } else {
            set_tls_error(error, "cannot create a TLS client context");
        }
    }
    SSL_CTX *ctx = client_ctx;
    g_mutex_unlock(&tls_lock);
    return ctx;
}

/* --- self-signed certificate ------------------------------------------------ */

static gboolean
add_ext(X509 *x, X509V3_CTX *v3, int nid, const char *value)
{
    X509_EXTENSION *ext = X509V3_EXT_nconf_nid(NULL, v3, nid, value);
    if (!ext)
        return FALSE;
    int ok = X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    return ok == 1;
}

static gboolean
add_san(X509 *x, const char *host)
{
    GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();
    GENERAL_NAME *gen = GENERAL_NAME_new();
    gboolean ok = FALSE;
    if (!gens || !gen)
        goto out;
    ASN1_OCTET_STRING *ip = a2i_IPADDRESS(host);
    if (ip) {
        GENERAL_NAME_set0_value(gen, GEN_IPADD, ip);
    } else {
        ASN1_IA5STRING *dns = ASN1_IA5STRING_new();
        if (!dns || !ASN1_STRING_set(dns, host, -1)) {
            ASN1_IA5STRING_free(dns);
            goto out;
        }
        GENERAL_NAME_set0_value(gen, GEN_DNS, dns);
    }
    if (!sk_GENERAL_NAME_push(gens, gen))
        goto out;
    gen = NULL;
    ok = X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 0, X509V3_ADD_DEFAULT) == 1;
out:
    GENERAL_NAME_free(gen);
    GENERAL_NAMES_free(gens);
    return ok;
}

static X509 *
make_cert(EVP_PKEY *pkey, const char *host)
{
    X509 *x = X509_new();
    BIGNUM *serial = BN_new();
    /* CN is limited to 64 characters; the SAN carries the full name */
    g_autofree char *cn = g_strndup(host, 64);
    gboolean ok = FALSE;
    if (!x || !serial)
        goto out;
    /* random positive serial, 127 bits */
    if (!BN_rand(serial, 127, BN_RAND_TOP_ONE, BN_RAND_BOTTOM_ANY) ||
        !BN_to_ASN1_INTEGER(serial, X509_get_serialNumber(x)))
        goto out;
    if (!X509_set_version(x, X509_VERSION_3) || !X509_gmtime_adj(X509_getm_notBefore(x), -3600) ||
        !X509_time_adj_ex(X509_getm_notAfter(x), 3650, 0, NULL) || !X509_set_pubkey(x, pkey))
        goto out;
    X509_NAME *name = X509_get_subject_name(x);
    if (!X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1,
                                    0) ||
        !X509_set_issuer_name(x, name))
        goto out;
    X509V3_CTX v3;
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
    if (!add_san(x, host) || !add_ext(x, &v3, NID_basic_constraints, "critical,CA:FALSE") ||
        !add_ext(x, &v3, NID_key_usage, "critical,digitalSignature") ||
        !add_ext(x, &v3, NID_ext_key_usage, "serverAuth") ||
        !add_ext(x, &v3, NID_subject_key_identifier, "hash"))
        goto out;
    if (X509_sign(x, pkey, EVP_sha256()) <= 0)
        goto out;
    ok = TRUE;
out:
    BN_free(serial);
    if (!ok) {
        X509_free(x);
        x = NULL;
    }
    return x;
}

/* Write data to a new "path.tmp.PID" with mode, fsync'd; returns its name. */
static char *
write_tmp(const char *path, const char *data, gsize len, mode_t mode, GError **error)
{
    char *tmp = g_strdup_printf("%s.tmp.%d", path, (int)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
    if (fd < 0)
        goto fail;
    if (fchmod(fd, mode) < 0)
        goto fail;
    while (len > 0) {
        ssize_t n = write(fd, data, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            goto fail;
        data += n;
        len -= (gsize)n;
    }
    if (fsync(fd) < 0)
        goto fail;
    if (close(fd) < 0) {
        fd = -1;
        goto fail;
    }
    return tmp;
fail:;
    int e = errno;
    if (fd >= 0)
        close(fd);
    g_unlink(tmp);
    g_set_error(error, G_IO_ERROR, g_io_error_from_errno(e), "cannot write %s: %s", tmp,
                g_strerror(e));
    g_free(tmp);
    return NULL;
}

static void
fsync_dir_of(const char *path)
{
    g_autofree char *dir = g_path_get_dirname(path);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

static char *
pem_string(gboolean key, EVP_PKEY *pkey, X509 *x, gsize *len_r)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *res = NULL;
    if (b && (key ? PEM_write_bio_PrivateKey(b, pkey, NULL, NULL, 0, NULL, NULL)
                  : PEM_write_bio_X509(b, x)) == 1) {
        char *p;
        long n = BIO_get_mem_data(b, &p);
        if (n > 0) {
            res = g_memdup2(p, (gsize)n);
            *len_r = (gsize)n;
        }
    }
    BIO_free(b);
    return res;
}

gboolean
kr_tls_ensure_selfsigned(const char *cert_file, const char *key_file, GError **error)
{
    g_return_val_if_fail(cert_file && key_file, FALSE);
    if (g_file_test(cert_file, G_FILE_TEST_EXISTS) && g_file_test(key_file, G_FILE_TEST_EXISTS))
        return TRUE;
    const char *host = kr_hostname();
    for (int i = 0; i < 2; i++) {
        g_autofree char *dir = g_path_get_dirname(i == 0 ? key_file : cert_file);
        if (g_mkdir_with_parents(dir, i == 0 ? 0700 : 0755) < 0) {
            int e = errno;
            g_set_error(error, G_IO_ERROR, g_io_error_from_errno(e), "cannot create %s: %s", dir,
                        g_strerror(e));
            return FALSE;
        }
    }
    gboolean ok = FALSE;
    X509 *x = NULL;
    char *key_pem = NULL, *cert_pem = NULL, *key_tmp = NULL, *cert_tmp = NULL;
    gsize key_len = 0, cert_len = 0;
    ERR_clear_error();
    EVP_PKEY *pkey = EVP_EC_gen("P-256");
    if (!pkey) {
        set_tls_error(error, "cannot generate a key");
        goto out;
    }
    x = make_cert(pkey, host);
    if (!x) {
        set_tls_error(error, "cannot make a certificate for %s", host);
        goto out;
    }
    key_pem = pem_string(TRUE, pkey, NULL, &key_len);
    cert_pem = pem_string(FALSE, NULL, x, &cert_len);
    if (!key_pem || !cert_pem) {
        set_tls_error(error, "cannot encode key and certificate");
        goto out;
    }
    key_tmp = write_tmp(key_file, key_pem, key_len, 0600, error);
    if (!key_tmp)
        goto out;
    cert_tmp = write_tmp(cert_file, cert_pem, cert_len, 0644, error);
    if (!cert_tmp)
        goto out;
    for (int i = 0; i < 2; i++) {
        char **tmp = i == 0 ? &key_tmp : &cert_tmp;
        const char *dst = i == 0 ? key_file : cert_file;
        if (g_rename(*tmp, dst) < 0) {
            int e = errno;
            g_set_error(error, G_IO_ERROR, g_io_error_from_errno(e), "cannot rename %s to %s: %s",
                        *tmp, dst, g_strerror(e));
            goto out;
        }
        g_clear_pointer(tmp, g_free);
        fsync_dir_of(dst);
    }
    g_message("TLS: created a self-signed certificate for %s: %s, key %s", host, cert_file,
              key_file);
    ok = TRUE;
out:
    if (key_tmp)
        g_unlink(key_tmp);
    if (cert_tmp)
        g_unlink(cert_tmp);
    g_free(key_tmp);
    g_free(cert_tmp);
    if (key_pem)
        OPENSSL_cleanse(key_pem, key_len);
    g_free(key_pem);
    g_free(cert_pem);
    X509_free(x);
    EVP_PKEY_free(pkey);
    return ok;
}
