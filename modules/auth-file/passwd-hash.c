/* SPDX-License-Identifier: MIT */
/*
 * passwd-hash.c - password hashing and verification: yescrypt and other
 * crypt(3) methods through libxcrypt, Argon2 through libargon2.
 *
 *   kr_passwd_check(password, len, error)     bounds: 1..1024, no NUL/CR/LF
 *   kr_passwd_hash(password, scheme, error)   new hash, caller g_free()s
 *                                             (argon2id if too long for crypt)
 *   kr_passwd_verify(password, hash)          constant-time match
 *   kr_passwd_verify_dummy(password)          timing filler, always FALSE
 *   kr_passwd_hash_usable(hash)               well-formed, accepted hash?
 *   kr_passwd_scheme_from_name / _name        scheme <-> "yescrypt"...
 *
 * Everything is thread-safe: crypt_rn() gets a fresh heap struct
 * crypt_data per call (32 KiB, too big for comfort on a worker stack),
 * wiped before it is freed. Salts come from the OS CSPRNG: libxcrypt's
 * crypt_gensalt_ra() with NULL rbytes, getrandom() for argon2.
 *
 * Errors: KR_PASSWD_ERROR_INVALID for a password out of bounds,
 * KR_PASSWD_ERROR_FAILED when a library or the RNG fails (log it; it is
 * not the user's fault). Verification never reports errors: any
 * problem is "no match".
 */
#include "passwd-hash.h"

#include <argon2.h>
#include <crypt.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define HASH_MAX CRYPT_OUTPUT_SIZE /* longest hash string we look at */

GQuark
kr_passwd_error_quark(void)
{
    return g_quark_from_static_string("kr-passwd-error-quark");
}

gboolean
kr_passwd_check(const char *password, gssize len, GError **error)
{
    gsize n;

    if (!password) {
        g_set_error(error, KR_PASSWD_ERROR, KR_PASSWD_ERROR_INVALID, "no password");
        return FALSE;
    }
    n = len < 0 ? strnlen(password, KR_PASSWD_MAX + 1) : (gsize)len;
    if (n == 0) {
        g_set_error(error, KR_PASSWD_ERROR, KR_PASSWD_ERROR_INVALID, "empty password");
        return FALSE;
    }
    if (n > KR_PASSWD_MAX) {
        g_set_error(error, KR_PASSWD_ERROR, KR_PASSWD_ERROR_INVALID,
                    "password longer than %d bytes", KR_PASSWD_MAX);
        return FALSE;
    }
    for (gsize i = 0; i < n; i++) {
        char c = password[i];
        if (c == '\0' || c == '\r' || c == '\n') {
            g_set_error(error, KR_PASSWD_ERROR, KR_PASSWD_ERROR_INVALID,
                        "password contains a NUL, CR or LF byte");
            return FALSE;
        }
    }
    return TRUE;
}

gboolean
kr_passwd_scheme_from_name(const char *name, KrPasswdScheme *scheme_r)
{
    if (!name)
        return FALSE;
    if (g_ascii_strcasecmp(name, "yescrypt") == 0)
        *scheme_r = KR_PASSWD_YESCRYPT;
    else if (g_ascii_strcasecmp(name, "argon2id") == 0)
        *scheme_r = KR_PASSWD_ARGON2ID;
    else
        return FALSE;
    return TRUE;
}

const char *
kr_passwd_scheme_name(KrPasswdScheme scheme)
{
    switch (scheme) {
    case KR_PASSWD_YESCRYPT:
        return "yescrypt";
    case KR_PASSWD_ARGON2ID:
        return "argon2id";
    }
    return NULL;
}

/* Equal length and equal bytes, without an early exit on the bytes. */
static gboolean
passwd_ct_equal(const char *a, const char *b)
{
    gsize la = strlen(a), lb = strlen(b);
    volatile unsigned char diff = 0;

    if (la != lb)
        return FALSE;
    for (gsize i = 0; i < la; i++)
        diff |= (unsigned char)a[i] ^ (unsigned char)b[i];
    return diff == 0;
}

static struct crypt_data *
passwd_crypt_data_new(void)
{
    return g_new0(struct crypt_data, 1);
}

static void
passwd_crypt_data_free(struct crypt_data *cd)
{
    explicit_bzero(cd, sizeof *cd);
    g_free(cd);
}

/* --- argon2 ------------------------------------------------------------ */

static gboolean
passwd_fill_random(void *buf, gsize len, GError **error)
{
    guint8 *p = buf;

    while (len > 0) {
        ssize_t n = getrandom(p, len, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            g_set_error(error, KR_PASSWD_ERROR, KR_PASSWD_ERROR_FAILED, "getrandom: %s",
                        g_strerror(errno));
            return FALSE;
        }
        p += n;
        len -= (gsize)n;
    }
    return TRUE;
}

static char *
passwd_hash_argon2id(const char *password, GError **error)
{
    guint8 salt[KR_PASSWD_ARGON2_SALT];
    gsize enclen = argon2_encodedlen(KR_PASSWD_ARGON2_T, KR_PASSWD_ARGON2_M, KR_PASSWD_ARGON2_P,
                                     sizeof salt, KR_PASSWD_ARGON2_HASHLEN, Argon2_id);
    char *enc;
    int rc;

    if (!passwd_fill_random(salt, sizeof salt, error))
        return NULL;
    enc = g_malloc0(enclen);
    rc = argon2id_hash_encoded(KR_PASSWD_ARGON2_T, KR_PASSWD_ARGON2_M, KR_PASSWD_ARGON2_P, password,
                               strlen(password), salt, sizeof salt, KR_PASSWD_ARGON2_HASHLEN, enc,
                               enclen);
    explicit_bzero(salt, sizeof salt);
    if (rc != ARGON2_OK) {
        g_set_error(error, KR_PASSWD_ERROR, KR_PASSWD_ERROR_FAILED, "argon2id: %s",
                    argon2_error_message(rc));
        g_free(enc);
        return NULL;
    }
    return enc;
}

/* Reads "NAME=<decimal>" at *p, advancing past it. */
static gboolean
passwd_argon2_param(const char **p, char name, guint64 max, guint64 *val_r)
{
    const char *s = *p;
    guint64 v = 0;
    gsize digits = 0;

    if (s[0] != name || s[1] != '=')
        return FALSE;
    s += 2;
    while (g_ascii_isdigit(*s)) {
        v = v * 10 + (guint64)(*s - '0');
        if (v > max)
            return FALSE;
        s++;
        digits++;
    }
    if (digits == 0)
        return FALSE;
    *val_r = v;
    *p = s;
    return TRUE;
}

/* The argon2 type of an acceptable "$argon2{i,id}$[v=N$]m=M,t=T,p=P$..."
 * hash with costs within our bounds, or -1. */
static int
passwd_argon2_type(const char *hash)
{
    const char *p;
    guint64 v, m, t, par;
    int type;

    if (g_str_has_prefix(hash, "$argon2id$")) {
        type = Argon2_id;
        p = hash + strlen("$argon2id$");
    } else if (g_str_has_prefix(hash, "$argon2i$")) {
        type = Argon2_i;
        p = hash + strlen("$argon2i$");
    } else {
        return -1;
    }
    if (p[0] == 'v') {
        if (!passwd_argon2_param(&p, 'v', 0xff, &v) || *p++ != '$')
            return -1;
    }
    if (!passwd_argon2_param(&p, 'm', KR_PASSWD_ARGON2_MAX_M, &m) || *p++ != ',')
        return -1;
    if (!passwd_argon2_param(&p, 't', KR_PASSWD_ARGON2_MAX_T, &t) || *p++ != ',')
        return -1;
    if (!passwd_argon2_param(&p, 'p', KR_PASSWD_ARGON2_MAX_P, &par) || *p != '$')
        return -1;
    if (t < 1 || par < 1)
        return -1;
    return type;
}

/* --- crypt(3) ---------------------------------------------------------- */

static char *
passwd_hash_yescrypt(const char *password, GError **error)
{
    struct crypt_data *cd;
    char *setting, *out, *result = NULL;

    errno = 0;
    setting = crypt_gensalt_ra("$y$", 0, NULL, 0);
    if (!setting) {
        g_set_error(error, KR_PASSWD_ERROR, KR_PASSWD_ERROR_FAILED, "crypt_gensalt: %s",
                    g_strerror(errno ? errno : EINVAL));
        return NULL;
    }
    cd = passwd_crypt_data_new();
    errno = 0;
    out = crypt_rn(password, setting, cd, sizeof *cd);
    if (out && out[0] != '*')
        result = g_strdup(out);
    else
        g_set_error(error, KR_PASSWD_ERROR, KR_PASSWD_ERROR_FAILED, "crypt: %s",
                    g_strerror(errno ? errno : EINVAL));
    passwd_crypt_data_free(cd);
    free(setting);
    return result;
}

static gboolean
passwd_crypt_usable(const char *hash)
{
    return hash[0] != '\0' && crypt_checksalt(hash) == CRYPT_SALT_OK;
}

/* --- public ------------------------------------------------------------ */

char *
kr_passwd_hash(const char *password, KrPasswdScheme scheme, GError **error)
{
    if (!kr_passwd_check(password, -1, error))
        return NULL;
    switch (scheme) {
    case KR_PASSWD_YESCRYPT:
        /* libxcrypt refuses passphrases of CRYPT_MAX_PASSPHRASE_SIZE bytes
         * or more; argon2 takes any length. */
        if (strlen(password) >= CRYPT_MAX_PASSPHRASE_SIZE)
            return passwd_hash_argon2id(password, error);
        return passwd_hash_yescrypt(password, error);
    case KR_PASSWD_ARGON2ID:
        return passwd_hash_argon2id(password, error);
    }
    g_set_error(error, KR_PASSWD_ERROR, KR_PASSWD_ERROR_SCHEME, "unknown password scheme %d",
                (int)scheme);
    return NULL;
}

/* Cheap checks, before verifying: not locked, not absurd, a method we
 * accept, argon2 costs in bounds. */
static gboolean
passwd_hash_acceptable(const char *hash)
{
    if (!hash || hash[0] == '\0' || hash[0] == '!' || hash[0] == '*')
        return FALSE;
    if (strnlen(hash, HASH_MAX) >= HASH_MAX)
        return FALSE;
    if (g_str_has_prefix(hash, "$argon2"))
        return passwd_argon2_type(hash) >= 0;
    return passwd_crypt_usable(hash);
}

gboolean
kr_passwd_hash_usable(const char *hash)
{
    static const char probe[] = "kurir probe";
    struct crypt_data *cd;
    const char *out;
    gboolean ok;

    if (!passwd_hash_acceptable(hash))
        return FALSE;
    /* Hash a probe with it: a bare setting, a truncated hash or a bad
     * encoding shows up as a failure or an output of another length. */
    if (g_str_has_prefix(hash, "$argon2")) {
        int rc = argon2_verify(hash, probe, strlen(probe), (argon2_type)passwd_argon2_type(hash));
        return rc == ARGON2_OK || rc == ARGON2_VERIFY_MISMATCH;
    }
    cd = passwd_crypt_data_new();
    out = crypt_rn(probe, hash, cd, sizeof *cd);
    ok = out && out[0] != '*' && strlen(out) == strlen(hash);
    passwd_crypt_data_free(cd);
    return ok;
}

gboolean
kr_passwd_verify(const char *password, const char *hash)
{
    struct crypt_data *cd;
    const char *out;
    gboolean ok;

    if (!kr_passwd_check(password, -1, NULL) || !passwd_hash_acceptable(hash))
        return FALSE;
    if (g_str_has_prefix(hash, "$argon2")) {
        /* argon2_verify() recomputes the tag and compares in constant time. */
        int type = passwd_argon2_type(hash);
        return argon2_verify(hash, password, strlen(password), (argon2_type)type) == ARGON2_OK;
    }
    cd = passwd_crypt_data_new();
    out = crypt_rn(password, hash, cd, sizeof *cd);
    ok = out && out[0] != '*' && passwd_ct_equal(out, hash);
    passwd_crypt_data_free(cd);
    return ok;
}

static gpointer
passwd_make_dummy(gpointer unused)
{
    guint8 raw[24];
    char *pw, *hash;

    /* An unguessable password, so the dummy can never match anything. */
    if (!passwd_fill_random(raw, sizeof raw, NULL))
        memset(raw, 0x5a, sizeof raw);
    pw = g_base64_encode(raw, sizeof raw);
    hash = kr_passwd_hash(pw, KR_PASSWD_YESCRYPT, NULL);
    g_free(pw);
    return hash; /* NULL if libcrypt is broken; verify then is cheap */
}

gboolean
kr_passwd_verify_dummy(const char *password)
{
    static GOnce once = G_ONCE_INIT;
    const char *hash = g_once(&once, passwd_make_dummy, NULL);

    if (hash)
        (void)kr_passwd_verify(password, hash);
    return FALSE;
}
