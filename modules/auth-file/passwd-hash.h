/* SPDX-License-Identifier: MIT */
/*
 * passwd-hash.h - password hashing and verification for the auth-file
 * module. Pure: no sockets, no globals beyond one lazily made dummy hash.
 *
 *   kr_passwd_check(password, len, error)     bounds check (see below)
 *   kr_passwd_hash(password, scheme, error)   new salted hash, g_free it
 *   kr_passwd_verify(password, hash)          TRUE if password matches hash
 *   kr_passwd_verify_dummy(password)          burn the time of one verify
 *   kr_passwd_hash_usable(hash)               could verify ever succeed?
 *   kr_passwd_scheme_from_name(name, &s)      "yescrypt" / "argon2id"
 *   kr_passwd_scheme_name(s)                  the reverse
 *
 * Schemes: KR_PASSWD_YESCRYPT (the default, "$y$...", libxcrypt's default
 * cost) and KR_PASSWD_ARGON2ID ("$argon2id$v=19$m=19456,t=2,p=1$...",
 * the OWASP minimum: 19 MiB, 2 passes, 1 lane, 16-byte salt from
 * getrandom(), 32-byte tag). Verification also accepts "$argon2i$"
 * hashes and any crypt(3) hash libxcrypt rates CRYPT_SALT_OK ("$6$",
 * "$2b$", "$7$", "$gy$"...). Hashes libxcrypt calls legacy (DES, "$1$",
 * "$5$", "$sha1$", NT) never verify: reset those passwords. A hash that
 * starts with '!' or '*' is a locked account and never verifies. Argon2
 * hashes asking for more than 256 MiB, 16 passes or 16 lanes are refused
 * so a bad users file cannot exhaust memory in the worker threads.
 *
 * Passwords: 1..KR_PASSWD_MAX bytes, no NUL, CR or LF. kr_passwd_hash()
 * fails with KR_PASSWD_ERROR_INVALID for any other; kr_passwd_verify()
 * returns FALSE for them without hashing. libxcrypt takes at most 511
 * bytes (CRYPT_MAX_PASSPHRASE_SIZE - 1), so a longer password asked for
 * with KR_PASSWD_YESCRYPT is hashed with Argon2id instead, and never
 * matches a crypt(3) hash.
 *
 * Threads: every function may be called from several threads at once
 * (crypt_rn() with a per-call struct crypt_data; argon2 has no state).
 * The hash comparison is constant-time in the hash contents.
 *
 * Linking: needs -lcrypt (linked globally) and -largon2: the module's
 * SConscript must add LIBS=['argon2'].
 */
#ifndef KR_PASSWD_HASH_H
#define KR_PASSWD_HASH_H

#include <glib.h>

#define KR_PASSWD_MAX 1024 /* bytes */

/* Argon2id parameters for new hashes. */
#define KR_PASSWD_ARGON2_T       2     /* passes */
#define KR_PASSWD_ARGON2_M       19456 /* KiB */
#define KR_PASSWD_ARGON2_P       1     /* lanes */
#define KR_PASSWD_ARGON2_SALT    16    /* bytes */
#define KR_PASSWD_ARGON2_HASHLEN 32    /* bytes */

/* Upper bounds accepted when verifying someone else's argon2 hash. */
#define KR_PASSWD_ARGON2_MAX_T 16
#define KR_PASSWD_ARGON2_MAX_M (256 * 1024) /* KiB */
#define KR_PASSWD_ARGON2_MAX_P 16

typedef enum {
    KR_PASSWD_YESCRYPT, /* default */
    KR_PASSWD_ARGON2ID,
} KrPasswdScheme;

#define KR_PASSWD_ERROR kr_passwd_error_quark()
typedef enum {
    KR_PASSWD_ERROR_INVALID, /* password out of bounds */
    KR_PASSWD_ERROR_SCHEME,  /* unknown scheme */
    KR_PASSWD_ERROR_FAILED,  /* the hashing library or the RNG failed */
} KrPasswdError;

GQuark kr_passwd_error_quark(void);

/* len < 0: password is NUL-terminated. With len >= 0 an embedded NUL
 * is an error (a decoded SASL buffer, say). */
gboolean kr_passwd_check(const char *password, gssize len, GError **error);
char *kr_passwd_hash(const char *password, KrPasswdScheme scheme, GError **error);
gboolean kr_passwd_verify(const char *password, const char *hash);
/* Always FALSE; costs about one yescrypt verification. For unknown users,
 * so that timing does not tell which users exist. */
gboolean kr_passwd_verify_dummy(const char *password);
/* TRUE if hash is well formed and of a method verify accepts (so some
 * password matches it). Costs one hash computation: for the admin
 * command, not for the login path. */
gboolean kr_passwd_hash_usable(const char *hash);
gboolean kr_passwd_scheme_from_name(const char *name, KrPasswdScheme *scheme_r);
const char *kr_passwd_scheme_name(KrPasswdScheme scheme);

#endif
