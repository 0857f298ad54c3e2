/* SPDX-License-Identifier: MIT */
/*
 * users-file.c - parse the auth-file users file into a lookup table, and
 * edit it atomically. The format, limits and locking are described in
 * users-file.h.
 *
 *   kr_users_load / kr_users_free            file -> table
 *   kr_users_lookup / _count / _nth          read a table (thread-safe)
 *   kr_user_attr                             one attribute of an entry
 *   kr_users_changed                         stat() the file against the table
 *   kr_users_file_add / _del / _set_hash     locked read-modify-write-rename
 *   kr_users_address_valid / _canon          address syntax
 *
 * The parser works on a buffer with explicit lengths (NUL bytes are just
 * bad bytes), checks the line length before anything else, and stops at
 * the first bad line with "FILE:LINE: why"; text quoted from the file in
 * a message is truncated and escaped.
 */
#include "users-file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define ATTR_KEY_MAX 32
#define QUOTE_MAX    64

struct KrUsersTable {
    char *path;
    GPtrArray *entries;     /* KrUserEntry *, owned, file order */
    GHashTable *by_address; /* canonical address -> entry (borrowed) */
    struct stat st;         /* of the file that was read */
};

/* A line of a file being edited: where it is in the buffer. */
typedef struct {
    gsize off;
    gsize len;
} UsersLine;

typedef enum {
    USERS_ADD,
    USERS_DEL,
    USERS_SET_HASH,
} UsersOp;

GQuark
kr_users_error_quark(void)
{
    return g_quark_from_static_string("kr-users-error-quark");
}

/* --- messages ------------------------------------------------------------ */

/* Up to QUOTE_MAX bytes of s, escaped for a log line; UTF-8 kept if valid. */
static char *
users_quote(const char *s, gsize len)
{
    static const char *high;
    static char high_buf[129];
    gsize n = MIN(len, QUOTE_MAX);
    char *raw, *esc, *res;

    if (g_once_init_enter(&high)) {
        for (int i = 0; i < 128; i++)
            high_buf[i] = (char)(0x80 + i);
        g_once_init_leave(&high, high_buf);
    }
    raw = g_strndup(s, n); /* stops at a NUL: fine for a message */
    esc = g_strescape(raw, g_utf8_validate(raw, -1, NULL) ? high : NULL);
    res = n < len ? g_strconcat(esc, "...", NULL) : g_strdup(esc);
    g_free(esc);
    g_free(raw);
    return res;
}

/* How an ASCII byte that is not allowed somewhere is described. */
static char *
users_bad_ascii(unsigned char c, const char *where)
{
    if (c < 0x20 || c == 0x7f)
        return g_strdup_printf("control character 0x%02x in %s", c, where);
    if (c == ' ')
        return g_strdup_printf("blank in %s", where);
    return g_strdup_printf("character '%c' not allowed in %s", c, where);
}

/* --- addresses ----------------------------------------------------------- */

static gboolean
users_atext(unsigned char c)
{
    return g_ascii_isalnum(c) || (c != '\0' && strchr("!#$%&'*+=?^_`{|}~-", c) != NULL);
}

/* Length of the acceptable non-ASCII UTF-8 character at s, or 0. */
static gsize
users_utf8_char(const char *s, gsize avail)
{
    gunichar u = g_utf8_get_char_validated(s, (gssize)avail);

    if (u == (gunichar)-1 || u == (gunichar)-2)
        return 0;
    switch (g_unichar_type(u)) {
    case G_UNICODE_CONTROL:
    case G_UNICODE_FORMAT:
    case G_UNICODE_SURROGATE:
    case G_UNICODE_UNASSIGNED:
    case G_UNICODE_PRIVATE_USE:
    case G_UNICODE_SPACE_SEPARATOR:
    case G_UNICODE_LINE_SEPARATOR:
    case G_UNICODE_PARAGRAPH_SEPARATOR:
        return 0;
    default:
        break;
    }
    if (g_unichar_isspace(u))
        return 0;
    return (gsize)g_utf8_skip[*(const guchar *)s];
}

static char *
users_local_problem(const char *l, gsize len)
{
    if (len == 0)
        return g_strdup("empty local part");
    if (len > KR_USERS_MAX_LOCAL)
        return g_strdup_printf("local part longer than %d bytes", KR_USERS_MAX_LOCAL);
    for (gsize i = 0; i < len;) {
        unsigned char c = (unsigned char)l[i];
        if (c >= 0x80) {
            gsize n = users_utf8_char(l + i, len - i);
            if (n == 0)
                return g_strdup("bad or disallowed UTF-8 in local part");
            i += n;
            continue;
        }
        if (c == '.') {
            if (i == 0 || i == len - 1 || l[i - 1] == '.')
                return g_strdup("misplaced '.' in local part");
        } else if (!users_atext(c)) {
            return users_bad_ascii(c, "local part");
        }
        i++;
    }
    return NULL;
}

static char *
users_label_end_problem(const char *d, gsize start, gsize end)
{
    if (end == start)
        return g_strdup("empty label in domain");
    if (end - start > 63)
        return g_strdup("domain label longer than 63 bytes");
    if (d[end - 1] == '-')
        return g_strdup("domain label ends with '-'");
    return NULL;
}

static char *
users_domain_problem(const char *d, gsize len)
{
    gsize start = 0;
    char *why;

    if (len == 0)
        return g_strdup("empty domain");
    if (len > KR_USERS_MAX_DOMAIN)
        return g_strdup_printf("domain longer than %d bytes", KR_USERS_MAX_DOMAIN);
    for (gsize i = 0; i < len;) {
        unsigned char c = (unsigned char)d[i];
        if (c >= 0x80) {
            gsize n = users_utf8_char(d + i, len - i);
            if (n == 0)
                return g_strdup("bad or disallowed UTF-8 in domain");
            i += n;
            continue;
        }
        if (c == '.') {
            if ((why = users_label_end_problem(d, start, i)))
                return why;
            start = i + 1;
        } else if (c == '-') {
            if (i == start)
                return g_strdup("domain label starts with '-'");
        } else if (!g_ascii_isalnum(c)) {
            return users_bad_ascii(c, "domain");
        }
        i++;
    }
    return users_label_end_problem(d, start, len);
}

/* What is wrong with the address a[0..len), or NULL; g_free the answer. */
static char *
users_address_problem(const char *a, gsize len)
{
    const char *at = memchr(a, '@', len);
    gsize llen;
    char *why;

    if (!at)
        return g_strdup("no '@'");
    llen = (gsize)(at - a);
    if (memchr(at + 1, '@', len - llen - 1))
        return g_strdup("more than one '@'");
    if ((why = users_local_problem(a, llen)))
        return why;
    return users_domain_problem(at + 1, len - llen - 1);
}

gboolean
kr_users_address_valid(const char *address, GError **error)
{
    char *why;

    if (!address) {
        g_set_error(error, KR_USERS_ERROR, KR_USERS_ERROR_ADDRESS, "no address");
        return FALSE;
    }
    why = users_address_problem(address, strlen(address));
    if (why) {
        g_autofree char *q = users_quote(address, strlen(address));
        g_set_error(error, KR_USERS_ERROR, KR_USERS_ERROR_ADDRESS, "bad address \"%s\": %s", q,
                    why);
        g_free(why);
        return FALSE;
    }
    return TRUE;
}

char *
kr_users_address_canon(const char *address, GError **error)
{
    if (!kr_users_address_valid(address, error))
        return NULL;
    return g_ascii_strdown(address, -1);
}

/* --- lines --------------------------------------------------------------- */

static const char *
users_hash_problem(const char *h, gsize len)
{
    if (len == 0)
        return "empty password hash";
    for (gsize i = 0; i < len; i++) {
        unsigned char c = (unsigned char)h[i];
        if (c < 0x20 || c == 0x7f)
            return "control character in password hash";
        if (c == ' ')
            return "blank in password hash";
        if (c >= 0x80)
            return "non-ASCII byte in password hash";
        if (c == ':')
            return "':' in password hash";
    }
    return NULL;
}

static gboolean
users_attr_key_char(unsigned char c)
{
    return g_ascii_islower(c) || g_ascii_isdigit(c) || c == '_' || c == '.' || c == '-';
}

/* Parses "k=v,k=v" into a NULL-terminated vector, or sets *why_r. */
static char **
users_parse_attrs(const char *s, gsize len, char **why_r)
{
    GPtrArray *attrs = g_ptr_array_new_with_free_func(g_free);
    gsize pos = 0;

    if (len == 0) {
        *why_r = g_strdup("empty attribute list after ':'");
        goto fail;
    }
    while (pos <= len) {
        const char *item = s + pos;
        const char *comma = memchr(item, ',', len - pos);
        gsize ilen = comma ? (gsize)(comma - item) : len - pos;
        const char *eq = memchr(item, '=', ilen);
        gsize klen = eq ? (gsize)(eq - item) : ilen;

        if (ilen == 0) {
            *why_r = g_strdup("empty attribute");
            goto fail;
        }
        if (!eq) {
            g_autofree char *q = users_quote(item, ilen);
            *why_r = g_strdup_printf("attribute \"%s\" has no '='", q);
            goto fail;
        }
        for (gsize i = 0; i < klen; i++) {
            if (!users_attr_key_char((unsigned char)item[i])) {
                klen = 0;
                break;
            }
        }
        if (klen == 0 || klen > ATTR_KEY_MAX) {
            g_autofree char *q = users_quote(item, eq - item);
            *why_r = g_strdup_printf("bad attribute key \"%s\"", q);
            goto fail;
        }
        for (const char *v = eq + 1; v < item + ilen; v++) {
            unsigned char c = (unsigned char)*v;
            if (c <= 0x20 || c >= 0x7f || c == ':') {
                g_autofree char *q = users_quote(item, klen);
                *why_r = g_strdup_printf("bad character in the value of attribute \"%s\"", q);
                goto fail;
            }
        }
        for (guint i = 0; i < attrs->len; i++) {
            const char *prev = attrs->pdata[i];
            if (strncmp(prev, item, klen + 1) == 0) {
                g_autofree char *q = users_quote(item, klen);
                *why_r = g_strdup_printf("attribute \"%s\" given twice", q);
                goto fail;
            }
        }
        g_ptr_array_add(attrs, g_strndup(item, ilen));
        if (!comma)
            break;
        pos += ilen + 1;
    }
    g_ptr_array_add(attrs, NULL);
    return (char **)g_ptr_array_free(attrs, FALSE);
fail:
    g_ptr_array_free(attrs, TRUE);
    return NULL;
}

static void
users_entry_free(gpointer p)
{
    KrUserEntry *e = p;

    g_free(e->address);
    g_free(e->hash);
    g_strfreev(e->attrs);
    g_free(e);
}

/* One line, without its LF. Returns the entry, or NULL with *why_r set
 * for a bad line and NULL for a blank or comment line. */
static KrUserEntry *
users_parse_line(const char *line, gsize len, char **why_r)
{
    const char *colon, *hash, *colon2;
    gsize i, hlen;
    const char *hwhy;
    char **attrs = NULL;
    KrUserEntry *e;

    *why_r = NULL;
    if (len > KR_USERS_MAX_LINE) {
        *why_r = g_strdup_printf("line too long (%zu bytes, at most %d)", len, KR_USERS_MAX_LINE);
        return NULL;
    }
    for (i = 0; i < len && (line[i] == ' ' || line[i] == '\t'); i++)
        ;
    if (i == len || line[i] == '#')
        return NULL;
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)line[i];
        if (c < 0x20 || c == 0x7f) {
            *why_r = g_strdup_printf("control character 0x%02x in column %zu", c, i + 1);
            return NULL;
        }
    }
    colon = memchr(line, ':', len);
    if (!colon) {
        *why_r = g_strdup("missing ':' after the address");
        return NULL;
    }
    {
        gsize alen = (gsize)(colon - line);
        char *why = users_address_problem(line, alen);
        if (why) {
            g_autofree char *q = users_quote(line, alen);
            *why_r = g_strdup_printf("bad address \"%s\": %s", q, why);
            g_free(why);
            return NULL;
        }
    }
    hash = colon + 1;
    colon2 = memchr(hash, ':', len - (gsize)(hash - line));
    hlen = colon2 ? (gsize)(colon2 - hash) : len - (gsize)(hash - line);
    if ((hwhy = users_hash_problem(hash, hlen))) {
        *why_r = g_strdup(hwhy);
        return NULL;
    }
    if (colon2) {
        const char *a = colon2 + 1;
        gsize alen = len - (gsize)(a - line);
        if (memchr(a, ':', alen)) {
            *why_r = g_strdup("too many ':'-separated fields");
            return NULL;
        }
        if (!(attrs = users_parse_attrs(a, alen, why_r)))
            return NULL;
    }
    e = g_new0(KrUserEntry, 1);
    e->address = g_ascii_strdown(line, colon - line);
    e->hash = g_strndup(hash, hlen);
    e->attrs = attrs ? attrs : g_new0(char *, 1);
    return e;
}

/* --- tables -------------------------------------------------------------- */

static KrUsersTable *
users_table_new(const char *path)
{
    KrUsersTable *t = g_new0(KrUsersTable, 1);

    t->path = g_strdup(path);
    t->entries = g_ptr_array_new_with_free_func(users_entry_free);
    t->by_address = g_hash_table_new(g_str_hash, g_str_equal);
    return t;
}

void
kr_users_free(KrUsersTable *table)
{
    if (!table)
        return;
    g_hash_table_destroy(table->by_address);
    g_ptr_array_free(table->entries, TRUE);
    g_free(table->path);
    g_free(table);
}

/* Parses buf into t; records every line's place in lines if not NULL. */
static gboolean
users_parse_buffer(KrUsersTable *t, const char *buf, gsize len, GArray *lines, GError **error)
{
    gsize pos = 0;
    guint lineno = 0;

    while (pos < len) {
        const char *start = buf + pos;
        const char *nl = memchr(start, '\n', len - pos);
        gsize llen = nl ? (gsize)(nl - start) : len - pos;
        char *why = NULL;
        KrUserEntry *e, *prev;

        lineno++;
        e = users_parse_line(start, llen, &why);
        if (why) {
            g_set_error(error, KR_USERS_ERROR, KR_USERS_ERROR_PARSE, "%s:%u: %s", t->path, lineno,
                        why);
            g_free(why);
            return FALSE;
        }
        if (e) {
            e->line = lineno;
            if ((prev = g_hash_table_lookup(t->by_address, e->address))) {
                g_set_error(error, KR_USERS_ERROR, KR_USERS_ERROR_PARSE,
                            "%s:%u: duplicate user %s (first on line %u)", t->path, lineno,
                            e->address, prev->line);
                users_entry_free(e);
                return FALSE;
            }
            g_ptr_array_add(t->entries, e);
            g_hash_table_insert(t->by_address, e->address, e);
        }
        if (lines) {
            UsersLine l = {pos, llen};
            g_array_append_val(lines, l);
        }
        pos += llen + (nl ? 1 : 0);
    }
    return TRUE;
}

static void
users_set_errno_error(GError **error, int e, const char *what, const char *path)
{
    g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(e), "%s: %s%s%s", path,
                what ? what : "", what ? ": " : "", g_strerror(e));
}

/* Reads the whole of path (a regular file of at most KR_USERS_MAX_FILE
 * bytes); *st_r describes it as it was before the read. */
static gboolean
users_read(const char *path, char **buf_r, gsize *len_r, struct stat *st_r, GError **error)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    gsize cap, len = 0;
    char *buf;

    if (fd < 0) {
        users_set_errno_error(error, errno, NULL, path);
        return FALSE;
    }
    if (fstat(fd, st_r) < 0) {
        users_set_errno_error(error, errno, "fstat", path);
        close(fd);
        return FALSE;
    }
    if (!S_ISREG(st_r->st_mode)) {
        g_set_error(error, G_FILE_ERROR, G_FILE_ERROR_INVAL, "%s: not a regular file", path);
        close(fd);
        return FALSE;
    }
    cap = (gsize)MIN(st_r->st_size, (off_t)KR_USERS_MAX_FILE) + 1;
    buf = g_malloc(cap);
    for (;;) {
        ssize_t n;
        if (len == cap) {
            if (cap > KR_USERS_MAX_FILE) {
                g_set_error(error, KR_USERS_ERROR, KR_USERS_ERROR_PARSE,
                            "%s: file larger than %d bytes", path, KR_USERS_MAX_FILE);
                goto fail;
            }
            cap = MIN(cap * 2, (gsize)KR_USERS_MAX_FILE + 1);
            buf = g_realloc(buf, cap);
        }
        n = read(fd, buf + len, cap - len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            users_set_errno_error(error, errno, "read", path);
            goto fail;
        }
        if (n == 0)
            break;
        len += (gsize)n;
    }
    close(fd);
    *buf_r = buf;
    *len_r = len;
    return TRUE;
fail:
    close(fd);
    g_free(buf);
    return FALSE;
}

KrUsersTable *
kr_users_load(const char *path, GError **error)
{
    KrUsersTable *t;
    char *buf;
    gsize len;
    struct stat st;

    if (!users_read(path, &buf, &len, &st, error))
        return NULL;
    t = users_table_new(path);
    t->st = st;
    if (!users_parse_buffer(t, buf, len, NULL, error)) {
        kr_users_free(t);
        t = NULL;
    }
    g_free(buf);
    return t;
}

const KrUserEntry *
kr_users_lookup(const KrUsersTable *table, const char *address)
{
    char *canon;
    const KrUserEntry *e;

    if (!table || !address)
        return NULL;
    if (strnlen(address, KR_USERS_MAX_LOCAL + 1 + KR_USERS_MAX_DOMAIN + 1) >
        KR_USERS_MAX_LOCAL + 1 + KR_USERS_MAX_DOMAIN)
        return NULL;
    canon = g_ascii_strdown(address, -1);
    e = g_hash_table_lookup(table->by_address, canon);
    g_free(canon);
    return e;
}

guint
kr_users_count(const KrUsersTable *table)
{
    return table->entries->len;
}

const KrUserEntry *
kr_users_nth(const KrUsersTable *table, guint i)
{
    if (i >= table->entries->len)
        return NULL;
    return table->entries->pdata[i];
}

const char *
kr_user_attr(const KrUserEntry *entry, const char *key)
{
    gsize klen = strlen(key);

    for (char **a = entry->attrs; *a; a++) {
        if (strncmp(*a, key, klen) == 0 && (*a)[klen] == '=')
            return *a + klen + 1;
    }
    return NULL;
}

static gboolean
users_timespec_eq(const struct timespec *a, const struct timespec *b)
{
    return a->tv_sec == b->tv_sec && a->tv_nsec == b->tv_nsec;
}

gboolean
kr_users_changed(const KrUsersTable *table)
{
    struct stat st;

    if (stat(table->path, &st) < 0)
        return TRUE;
    return st.st_dev != table->st.st_dev || st.st_ino != table->st.st_ino ||
           st.st_size != table->st.st_size || !users_timespec_eq(&st.st_mtim, &table->st.st_mtim) ||
           !users_timespec_eq(&st.st_ctim, &table->st.st_ctim);
}

/* --- atomic edits -------------------------------------------------------- */

static gboolean
users_write_all(int fd, const char *buf, gsize len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return FALSE;
        }
        buf += n;
        len -= (gsize)n;
    }
    return TRUE;
}

static gboolean
users_fsync_dir(const char *path, GError **error)
{
    g_autofree char *dir = g_path_get_dirname(path);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

    if (fd < 0) {
        users_set_errno_error(error, errno, NULL, dir);
        return FALSE;
    }
    if (fsync(fd) < 0 && errno != EINVAL) {
        users_set_errno_error(error, errno, "fsync", dir);
        close(fd);
        return FALSE;
    }
    close(fd);
    return TRUE;
}

/* Writes data to tmp (0600, owned like old if given) and renames it over
 * path, syncing file and directory. */
static gboolean
users_replace(const char *path, const char *tmp, const GString *data, const struct stat *old,
              GError **error)
{
    int fd;
    struct stat st;

    if (unlink(tmp) < 0 && errno != ENOENT) {
        users_set_errno_error(error, errno, "unlink", tmp);
        return FALSE;
    }
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0600);
    if (fd < 0) {
        users_set_errno_error(error, errno, NULL, tmp);
        return FALSE;
    }
    if (fchmod(fd, 0600) < 0 || fstat(fd, &st) < 0) {
        users_set_errno_error(error, errno, "fchmod", tmp);
        goto fail;
    }
    if (old && (st.st_uid != old->st_uid || st.st_gid != old->st_gid) &&
        fchown(fd, old->st_uid, old->st_gid) < 0) {
        users_set_errno_error(error, errno, "cannot keep the old file's owner", tmp);
        goto fail;
    }
    if (!users_write_all(fd, data->str, data->len)) {
        users_set_errno_error(error, errno, "write", tmp);
        goto fail;
    }
    if (fsync(fd) < 0) {
        users_set_errno_error(error, errno, "fsync", tmp);
        goto fail;
    }
    if (close(fd) < 0) {
        fd = -1;
        users_set_errno_error(error, errno, "close", tmp);
        goto fail;
    }
    fd = -1;
    if (rename(tmp, path) < 0) {
        users_set_errno_error(error, errno, "rename", tmp);
        goto fail;
    }
    return users_fsync_dir(path, error);
fail:
    if (fd >= 0)
        close(fd);
    unlink(tmp);
    return FALSE;
}

static int
users_lock(const char *path, GError **error)
{
    g_autofree char *lockpath = g_strconcat(path, ".lock", NULL);
    int fd = open(lockpath, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0600);

    if (fd < 0) {
        users_set_errno_error(error, errno, NULL, lockpath);
        return -1;
    }
    while (flock(fd, LOCK_EX) < 0) {
        if (errno != EINTR) {
            users_set_errno_error(error, errno, "flock", lockpath);
            close(fd);
            return -1;
        }
    }
    return fd;
}

static gboolean
users_modify(const char *path, UsersOp op, const char *address, const char *hash, GError **error)
{
    g_autofree char *canon = NULL;
    g_autofree char *tmp = NULL;
    g_autofree char *buf = NULL;
    g_autoptr(KrUsersTable) t = NULL;
    g_autoptr(GArray) lines = NULL;
    g_autoptr(GString) out = NULL;
    GError *rerr = NULL;
    const KrUserEntry *e;
    const char *why;
    struct stat st;
    gboolean have_old = TRUE, ok = FALSE;
    gsize len = 0;
    int lockfd;

    if (!(canon = kr_users_address_canon(address, error)))
        return FALSE;
    if (op != USERS_DEL && (why = users_hash_problem(hash, hash ? strlen(hash) : 0))) {
        g_set_error(error, KR_USERS_ERROR, KR_USERS_ERROR_HASH, "bad password hash: %s", why);
        return FALSE;
    }
    if ((lockfd = users_lock(path, error)) < 0)
        return FALSE;

    if (!users_read(path, &buf, &len, &st, &rerr)) {
        if (!g_error_matches(rerr, G_FILE_ERROR, G_FILE_ERROR_NOENT)) {
            g_propagate_error(error, rerr);
            goto out;
        }
        g_clear_error(&rerr);
        have_old = FALSE;
    }
    t = users_table_new(path);
    lines = g_array_new(FALSE, FALSE, sizeof(UsersLine));
    if (have_old && !users_parse_buffer(t, buf, len, lines, error))
        goto out;

    e = g_hash_table_lookup(t->by_address, canon);
    if (op == USERS_ADD && e) {
        g_set_error(error, KR_USERS_ERROR, KR_USERS_ERROR_EXISTS, "%s:%u: user %s already exists",
                    path, e->line, canon);
        goto out;
    }
    if (op != USERS_ADD && !e) {
        g_set_error(error, KR_USERS_ERROR, KR_USERS_ERROR_NOT_FOUND, "%s: no user %s", path, canon);
        goto out;
    }

    out = g_string_sized_new(len + 128);
    for (guint i = 0; i < lines->len; i++) {
        const UsersLine *l = &g_array_index(lines, UsersLine, i);
        const char *s = buf + l->off;
        if (e && i + 1 == e->line) {
            const char *c1, *c2;
            if (op == USERS_DEL)
                continue;
            /* USERS_SET_HASH: keep the address as written, and the attributes. */
            c1 = memchr(s, ':', l->len);
            c2 = memchr(c1 + 1, ':', l->len - (gsize)(c1 + 1 - s));
            g_string_append_len(out, s, c1 + 1 - s);
            g_string_append(out, hash);
            if (c2)
                g_string_append_len(out, c2, s + l->len - c2);
        } else {
            g_string_append_len(out, s, l->len);
        }
        g_string_append_c(out, '\n');
    }
    if (op == USERS_ADD)
        g_string_append_printf(out, "%s:%s\n", canon, hash);

    tmp = g_strconcat(path, ".tmp", NULL);
    ok = users_replace(path, tmp, out, have_old ? &st : NULL, error);
out:
    close(lockfd); /* releases the lock */
    return ok;
}

gboolean
kr_users_file_add(const char *path, const char *address, const char *hash, GError **error)
{
    return users_modify(path, USERS_ADD, address, hash, error);
}

gboolean
kr_users_file_del(const char *path, const char *address, GError **error)
{
    return users_modify(path, USERS_DEL, address, NULL, error);
}

gboolean
kr_users_file_set_hash(const char *path, const char *address, const char *hash, GError **error)
{
    return users_modify(path, USERS_SET_HASH, address, hash, error);
}
