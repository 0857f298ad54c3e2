/* SPDX-License-Identifier: MIT */
/*
 * aliases-sys.c - accounts, forward files and :include: files for alias
 * expansion, with the permission checks described in aliases-sys.h.
 *
 *   alias_pw_by_name, alias_pw_by_uid, alias_read_forward,
 *   alias_read_include
 *
 * Thread-safe (getpwnam_r, fgetpwent_r); blocking.
 */
#include "aliases-sys.h"

#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FORWARD_MAX (64 * 1024)
#define INCLUDE_MAX (16 * 1024 * 1024)

static void
priv_from_pw(const struct passwd *pw, AliasPriv *out)
{
    out->valid = TRUE;
    out->uid = pw->pw_uid;
    out->gid = pw->pw_gid;
    out->user = g_strdup(pw->pw_name);
    out->home = g_strdup(pw->pw_dir && *pw->pw_dir ? pw->pw_dir : "/");
}

/* Look an account up by name (name != NULL) or uid. */
static gboolean
pw_find(const char *passwd_file, const char *name, uid_t uid, AliasPriv *out)
{
    char buf[4096];
    struct passwd pw, *res = NULL;
    memset(out, 0, sizeof *out);
    if (!passwd_file || !*passwd_file) {
        int rc = name ? getpwnam_r(name, &pw, buf, sizeof buf, &res)
                      : getpwuid_r(uid, &pw, buf, sizeof buf, &res);
        if (rc != 0 || !res)
            return FALSE;
        priv_from_pw(res, out);
        return TRUE;
    }
    FILE *f = fopen(passwd_file, "re");
    if (!f)
        return FALSE;
    gboolean found = FALSE;
    while (fgetpwent_r(f, &pw, buf, sizeof buf, &res) == 0 && res) {
        if (name ? strcmp(res->pw_name, name) == 0 : res->pw_uid == uid) {
            priv_from_pw(res, out);
            found = TRUE;
            break;
        }
    }
    fclose(f);
    return found;
}

/* Account lookups by name in the system database are cached for
 * PW_CACHE_TTL seconds: through NSS one getpwnam costs dozens of system
 * calls, and it runs for every local recipient. An account added or
 * removed is seen within the TTL. */
#define PW_CACHE_TTL 10
#define PW_CACHE_MAX 4096

typedef struct {
    gboolean found;
    AliasPriv priv;
    gint64 at;
} PwCached;

static GMutex pw_lock;
static GHashTable *pw_cache; /* "file\nname" -> PwCached */

static void
pw_cached_free(gpointer p)
{
    PwCached *c = p;
    g_free(c->priv.user);
    g_free(c->priv.home);
    g_free(c);
}

gboolean
alias_pw_by_name(const char *passwd_file, const char *name, AliasPriv *out)
{
    if (passwd_file && *passwd_file)
        return pw_find(passwd_file, name, 0, out); /* a plain file: cheap, always fresh */
    g_autofree char *key = g_strconcat(passwd_file ? passwd_file : "", "\n", name, NULL);
    gint64 now = g_get_monotonic_time() / G_USEC_PER_SEC;
    g_mutex_lock(&pw_lock);
    if (!pw_cache)
        pw_cache = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, pw_cached_free);
    PwCached *c = g_hash_table_lookup(pw_cache, key);
    if (c && now - c->at < PW_CACHE_TTL) {
        *out = c->priv;
        out->user = g_strdup(c->priv.user);
        out->home = g_strdup(c->priv.home);
        gboolean found = c->found;
        g_mutex_unlock(&pw_lock);
        return found;
    }
    g_mutex_unlock(&pw_lock);
    gboolean found = pw_find(passwd_file, name, 0, out);
    PwCached *n = g_new0(PwCached, 1);
    n->found = found;
    n->priv = *out;
    n->priv.user = g_strdup(out->user);
    n->priv.home = g_strdup(out->home);
    n->at = now;
    g_mutex_lock(&pw_lock);
    if (g_hash_table_size(pw_cache) >= PW_CACHE_MAX)
        g_hash_table_remove_all(pw_cache);
    g_hash_table_replace(pw_cache, g_steal_pointer(&key), n);
    g_mutex_unlock(&pw_lock);
    return found;
}

gboolean
alias_pw_by_uid(const char *passwd_file, uid_t uid, AliasPriv *out)
{
    return pw_find(passwd_file, NULL, uid, out);
}

/* Read all of fd (at most max bytes) into *buf_r. */
static gboolean
read_fd(int fd, gsize max, char **buf_r, gsize *len_r, int *errno_r)
{
    GString *s = g_string_new(NULL);
    char chunk[8192];
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof chunk);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            *errno_r = errno;
            g_string_free(s, TRUE);
            return FALSE;
        }
        if (n == 0)
            break;
        if (s->len + (gsize)n > max) {
            *errno_r = EFBIG;
            g_string_free(s, TRUE);
            return FALSE;
        }
        g_string_append_len(s, chunk, n);
    }
    *len_r = s->len;
    *buf_r = g_string_free(s, FALSE);
    return TRUE;
}

/* A path component we are willing to open below forward_dir. */
static gboolean
component_ok(const char *s)
{
    if (!*s || *s == '.' || strlen(s) > 255 || strchr(s, '/'))
        return FALSE;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p < 0x20 || *p == 0x7f)
            return FALSE;
    return TRUE;
}

/* openat a directory without following a symlink; a symlink is ELOOP. */
static int
open_dir_nofollow(int at, const char *name, int *errno_r)
{
    int fd = openat(at, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd >= 0)
        return fd;
    *errno_r = errno;
    struct stat st;
    if ((*errno_r == ENOTDIR || *errno_r == ELOOP) &&
        fstatat(at, name, &st, AT_SYMLINK_NOFOLLOW) == 0)
        *errno_r = S_ISLNK(st.st_mode) ? ELOOP : ENOTDIR;
    return -1;
}

static int
open_virtual(const char *dir, const char *domain, const char *local, int *errno_r)
{
    int d = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (d < 0) {
        *errno_r = errno;
        return -1;
    }
    int dd = open_dir_nofollow(d, domain, errno_r);
    close(d);
    if (dd < 0)
        return -1;
    int ud = open_dir_nofollow(dd, local, errno_r);
    close(dd);
    if (ud < 0)
        return -1;
    int fd = openat(ud, ".forward", O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    *errno_r = errno;
    close(ud);
    return fd;
}

AliasStatus
alias_read_forward(const AliasSys *sys, const char *address, GPtrArray *targets, AliasPriv *priv,
                   char **where_r, char **why_r, char **ignored_r)
{
    if (!sys->forward)
        return ALIAS_NONE;
    const char *at = strrchr(address, '@');
    if (!at)
        return ALIAS_NONE;
    g_autofree char *local = g_ascii_strdown(address, at - address);
    g_autofree char *domain = g_ascii_strdown(at + 1, -1);
    AliasPriv pw = {0};
    gboolean system_user = g_ascii_strcasecmp(domain, sys->default_domain) == 0 &&
                           component_ok(local) && alias_pw_by_name(sys->passwd_file, local, &pw);
    g_autofree char *path = NULL;
    int fd, err = 0;
    if (system_user) {
        path = g_build_filename(pw.home, ".forward", NULL);
        fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
        err = errno;
    } else {
        if (!sys->forward_dir || !*sys->forward_dir || !component_ok(local) ||
            !component_ok(domain))
            return ALIAS_NONE;
        path = g_build_filename(sys->forward_dir, domain, local, ".forward", NULL);
        fd = open_virtual(sys->forward_dir, domain, local, &err);
    }
    if (fd < 0) {
        alias_priv_clear(&pw);
        if (err == ENOENT || err == ENOTDIR)
            return ALIAS_NONE;
        if (err == ELOOP) {
            *ignored_r = g_strdup_printf("%s: ignored: a symbolic link", path);
            return ALIAS_NONE;
        }
        *why_r = g_strdup_printf("%s: %s", path, g_strerror(err));
        return ALIAS_TEMP;
    }
    struct stat st;
    const char *bad = NULL;
    if (fstat(fd, &st) < 0)
        bad = "cannot stat";
    else if (!S_ISREG(st.st_mode))
        bad = "not a regular file";
    else if (st.st_mode & (S_IWGRP | S_IWOTH))
        bad = "group or world writable";
    else if (st.st_uid != 0 && st.st_uid != (system_user ? pw.uid : sys->self_uid))
        bad = "owned by someone else";
    else if (st.st_size > FORWARD_MAX)
        bad = "larger than 64 KiB";
    if (bad) {
        close(fd);
        alias_priv_clear(&pw);
        *ignored_r = g_strdup_printf("%s: ignored: %s", path, bad);
        return ALIAS_NONE;
    }
    g_autofree char *buf = NULL;
    gsize len = 0;
    gboolean ok = read_fd(fd, FORWARD_MAX, &buf, &len, &err);
    close(fd);
    if (!ok) {
        alias_priv_clear(&pw);
        *why_r = g_strdup_printf("%s: %s", path, g_strerror(err));
        return ALIAS_TEMP;
    }
    g_autoptr(GPtrArray) errors = g_ptr_array_new_with_free_func(g_free);
    guint before = targets->len;
    if (!aliases_parse_list(path, buf, len, targets, errors)) {
        g_ptr_array_remove_range(targets, before, targets->len - before);
        alias_priv_clear(&pw);
        *ignored_r = g_strdup_printf("%s: ignored: %s", path, (char *)errors->pdata[0]);
        return ALIAS_NONE;
    }
    if (targets->len == before) {
        alias_priv_clear(&pw);
        *ignored_r = g_strdup_printf("%s: ignored: no targets", path);
        return ALIAS_NONE;
    }
    if (!system_user) {
        for (guint i = before; i < targets->len; i++) {
            const AliasTarget *t = targets->pdata[i];
            if (t->kind == ALIAS_T_PIPE || t->kind == ALIAS_T_FILE || t->kind == ALIAS_T_INCLUDE) {
                guint line = t->line;
                g_ptr_array_remove_range(targets, before, targets->len - before);
                *ignored_r = g_strdup_printf("%s:%u: ignored: commands, files and :include: "
                                             "are for system users only",
                                             path, line);
                return ALIAS_NONE;
            }
        }
    }
    *priv = pw; /* invalid for virtual users: no account to run anything as */
    *where_r = g_steal_pointer(&path);
    return ALIAS_OK;
}

AliasStatus
alias_read_include(const char *path, GPtrArray *targets, uid_t *owner_r, char **why_r)
{
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        *why_r = g_strdup(g_strerror(errno));
        return ALIAS_TEMP;
    }
    struct stat st;
    const char *bad = NULL;
    if (fstat(fd, &st) < 0)
        bad = "cannot stat";
    else if (!S_ISREG(st.st_mode))
        bad = "not a regular file";
    else if (st.st_mode & (S_IWGRP | S_IWOTH))
        bad = "refused: group or world writable";
    else if (st.st_size > INCLUDE_MAX)
        bad = "larger than 16 MiB";
    if (bad) {
        close(fd);
        *why_r = g_strdup(bad);
        return ALIAS_TEMP;
    }
    g_autofree char *buf = NULL;
    gsize len = 0;
    int err = 0;
    gboolean ok = read_fd(fd, INCLUDE_MAX, &buf, &len, &err);
    close(fd);
    if (!ok) {
        *why_r = g_strdup(g_strerror(err));
        return ALIAS_TEMP;
    }
    g_autoptr(GPtrArray) errors = g_ptr_array_new_with_free_func(g_free);
    if (!aliases_parse_list(path, buf, len, targets, errors)) {
        *why_r = g_strdup(errors->pdata[0]);
        return ALIAS_CONFIG;
    }
    *owner_r = st.st_uid;
    return ALIAS_OK;
}
