/* SPDX-License-Identifier: MIT */
/*
 * users-file.h - the auth-file users file (DATA_DIR/users): its format,
 * the in-memory table, and atomic edits for the admin command.
 *
 *   kr_users_load(path, error)                   parse into a table
 *   kr_users_free(table)                         free (NULL is fine)
 *   kr_users_lookup(table, address)              entry or NULL
 *   kr_users_count(table), kr_users_nth(table, i)  entries in file order
 *   kr_user_attr(entry, key)                     attribute value or NULL
 *   kr_users_changed(table)                      file replaced or edited?
 *   kr_users_file_add(path, address, hash, error)
 *   kr_users_file_del(path, address, error)
 *   kr_users_file_set_hash(path, address, hash, error)
 *   kr_users_address_valid(address, error)       syntax check only
 *   kr_users_address_canon(address, error)       checked, lowercased copy
 *
 * FORMAT
 *   One user per line:  local@domain:HASH[:key=value,key=value...]
 *   Blank lines and lines whose first non-blank character is '#' are
 *   ignored. Elsewhere no control characters (not even TAB) and no
 *   leading or trailing blanks. Lines end in LF and are at most
 *   KR_USERS_MAX_LINE bytes; the file at most KR_USERS_MAX_FILE bytes.
 *
 *   Address: local part 1..64 bytes of A-Z a-z 0-9 and
 *   !#$%&'*+=?^_`{|}~.- (a dot-atom: no leading, trailing or double
 *   dot; '/' is refused because stores build paths from addresses) and
 *   valid UTF-8 from U+0080 up, except controls, format characters and
 *   blanks (U+0085, U+00A0, U+200B...); domain 1..253 bytes of dot-separated
 *   labels of 1..63 bytes of A-Z a-z 0-9 '-' and UTF-8, a label never
 *   starting or ending with '-'. No address literals. Matching is
 *   case-insensitive for ASCII letters in both parts (addresses are
 *   stored with ASCII lowercased); non-ASCII characters are compared
 *   byte for byte, so write them lowercase in NFC. Two lines with the
 *   same canonical address are an error.
 *
 *   HASH: printable ASCII except ':' (see passwd-hash.h for the schemes).
 *   "!" or "*" (or anything starting with them) locks the account.
 *
 *   Attributes (optional, for growth; unknown keys are kept and ignored):
 *   keys 1..32 bytes of a-z 0-9 _ . -, values printable ASCII without
 *   ',' ':' or blanks, possibly empty; each key at most once.
 *
 * OWNERSHIP
 *   A table owns its entries; entries live as long as the table. A
 *   loaded table is read-only and may be used from several threads.
 *
 * ERRORS
 *   KR_USERS_ERROR_PARSE: "FILE:LINE: why". KR_USERS_ERROR_ADDRESS /
 *   _HASH: bad argument. _EXISTS / _NOT_FOUND: add / del, set_hash.
 *   I/O failures are G_FILE_ERROR (G_FILE_ERROR_NOENT: no file), with
 *   the path in the message.
 *
 * UPDATES
 *   The kr_users_file_* helpers take an exclusive flock() on PATH.lock,
 *   read and fully parse PATH (refusing to touch a file with a bad
 *   line), write PATH.tmp (mode 0600, owner and group of the old file),
 *   fsync it, rename it over PATH and fsync the directory. Comments and
 *   all other lines are kept byte for byte. A missing PATH counts as
 *   empty for add. Readers need no lock: they see the old or new file.
 */
#ifndef KR_USERS_FILE_H
#define KR_USERS_FILE_H

#include <glib.h>

#define KR_USERS_MAX_LINE   4096               /* bytes, without the LF */
#define KR_USERS_MAX_FILE   (64 * 1024 * 1024) /* bytes */
#define KR_USERS_MAX_LOCAL  64
#define KR_USERS_MAX_DOMAIN 253

#define KR_USERS_ERROR kr_users_error_quark()
typedef enum {
    KR_USERS_ERROR_PARSE,
    KR_USERS_ERROR_ADDRESS,
    KR_USERS_ERROR_HASH,
    KR_USERS_ERROR_EXISTS,
    KR_USERS_ERROR_NOT_FOUND,
} KrUsersError;

typedef struct KrUserEntry {
    char *address; /* canonical: ASCII lowercased */
    char *hash;
    char **attrs; /* NULL-terminated "key=value", file order; never NULL */
    guint line;   /* 1-based line in the file it came from */
} KrUserEntry;

typedef struct KrUsersTable KrUsersTable;

GQuark kr_users_error_quark(void);

gboolean kr_users_address_valid(const char *address, GError **error);
char *kr_users_address_canon(const char *address, GError **error);

KrUsersTable *kr_users_load(const char *path, GError **error);
void kr_users_free(KrUsersTable *table);
const KrUserEntry *kr_users_lookup(const KrUsersTable *table, const char *address);
guint kr_users_count(const KrUsersTable *table);
const KrUserEntry *kr_users_nth(const KrUsersTable *table, guint i);
const char *kr_user_attr(const KrUserEntry *entry, const char *key);
/* TRUE if the file at the table's path is not the one loaded (inode,
 * device, size, mtime or ctime differ) or cannot be stat()ed: reload
 * it, and keep the old table if that fails. */
gboolean kr_users_changed(const KrUsersTable *table);

gboolean kr_users_file_add(const char *path, const char *address, const char *hash, GError **error);
gboolean kr_users_file_del(const char *path, const char *address, GError **error);
gboolean kr_users_file_set_hash(const char *path, const char *address, const char *hash,
                                GError **error);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(KrUsersTable, kr_users_free)

#endif
