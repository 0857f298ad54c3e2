/* SPDX-License-Identifier: MIT */
/*
 * auth-file.c - the auth-file module: users and passwords from a flat
 * file (DATA_DIR/users), managed with `kurir user`.
 *
 * Provides:
 *   auth backend "file"   authenticate (worker thread): look up + verify
 *                         the password; user_exists (main loop): look up
 *   command "user"        kurir user add|del|passwd ADDRESS, user list
 *   service "auth-file"   start: load the file (a broken file stops
 *                         start-up); reload (SIGHUP): re-read it
 *
 * Module settings (the `auth-file` group of kurir.conf):
 *   users_file  path of the users file, relative to DATA_DIR  (default "users")
 *   scheme      hash for new passwords: "yescrypt" | "argon2id" (default "yescrypt")
 *
 * The file format, its parser and the atomic edits are in users-file.c;
 * hashing and verification in passwd-hash.c. This file is the glue.
 *
 * FRESHNESS
 *   Every lookup first compares the file with the loaded table (one
 *   stat(): device, inode, size, mtime, ctime) and re-reads it if it was
 *   replaced, so `kurir user add` takes effect at once, no SIGHUP needed.
 *   A file that fails to parse is reported once and the previous table
 *   kept until the file changes again. A missing file means no users.
 *   The table is guarded by a mutex: lookups from worker threads and the
 *   main loop may overlap with a reload.
 *
 * TIMING
 *   An unknown user or a locked account costs one dummy verification, so
 *   the answer time does not tell which users exist. Delays after failed
 *   logins and per-client limits are the protocol modules' job.
 *
 * ADDRESSES
 *   The core hands authenticate() and user_exists() canonical addresses
 *   (kr_addr_canon: bare user -> user@default-domain, domain lowercased);
 *   the table compares ASCII case-insensitively. `kurir user` does the
 *   same to its ADDRESS argument and refuses domains not in core.domains.
 */
#include <kurir/kurir.h>
#include "passwd-hash.h"
#include "users-file.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <termios.h>
#include <unistd.h>

typedef struct {
    char *users_file;
    int scheme; /* index in scheme_names == KrPasswdScheme */
} AuthConf;

static const char *const scheme_names[] = {"yescrypt", "argon2id", NULL};

static const KrSetting auth_settings[] = {
    KR_SETTING("users_file", KR_SET_PATH, AuthConf, users_file, "users", 0, 0,
               "users file (user@domain:HASH lines), relative to DATA_DIR"),
    KR_SETTING_ENUM("scheme", AuthConf, scheme, "yescrypt", scheme_names,
                    "hash scheme for new passwords"),
    KR_SETTING_END,
};

/* The loaded table and what we know about the file. */
typedef struct {
    GMutex lock;
    char *path;
    KrPasswdScheme scheme;
    gboolean loaded;     /* a load was attempted and gave a table state */
    KrUsersTable *table; /* NULL: no users (file missing) */
    gboolean bad_valid;  /* bad_st: the file that failed to parse */
    struct stat bad_st;
    gboolean missing_known; /* table NULL because the file is missing */
} AuthFile;

static AuthFile auth;

static gboolean
same_file(const struct stat *a, const struct stat *b)
{
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
           a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
           a->st_ctim.tv_sec == b->st_ctim.tv_sec && a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

/* With auth.lock held: make the table match the file. force: re-read
 * even if it looks unchanged (SIGHUP). FALSE with *error if the file is
 * unusable (the previous table, if any, stays in use). */
static gboolean
auth_refresh(gboolean force, GError **error)
{
    struct stat st;
    gboolean exists = stat(auth.path, &st) == 0;
    if (!exists && errno != ENOENT) {
        int e = errno;
        g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(e), "%s: %s", auth.path,
                    g_strerror(e));
        return FALSE;
    }
    if (!force && auth.loaded) {
        if (!exists && auth.missing_known)
            return TRUE;
        if (exists && auth.table && !kr_users_changed(auth.table))
            return TRUE;
        if (exists && auth.bad_valid && same_file(&st, &auth.bad_st))
            return TRUE; /* still the broken file: already reported */
    }
    if (!exists) {
        if (!auth.missing_known)
            g_message("users file %s does not exist: no users", auth.path);
        g_clear_pointer(&auth.table, kr_users_free);
        auth.missing_known = TRUE;
        auth.bad_valid = FALSE;
        auth.loaded = TRUE;
        return TRUE;
    }
    g_autoptr(GError) err = NULL;
    KrUsersTable *t = kr_users_load(auth.path, &err);
    if (!t) {
        g_warning("users file not (re)loaded, %s: %s",
                  auth.table ? "keeping the previous users" : "no users until it is fixed",
                  err->message);
        auth.bad_st = st;
        auth.bad_valid = TRUE;
        g_propagate_error(error, g_steal_pointer(&err));
        return FALSE;
    }
    if (auth.loaded || force)
        g_message("users file %s loaded: %u users", auth.path, kr_users_count(t));
    kr_users_free(auth.table);
    auth.table = t;
    auth.missing_known = FALSE;
    auth.bad_valid = FALSE;
    auth.loaded = TRUE;
    return TRUE;
}

/* --- the auth backend -------------------------------------------------- */

static KrAuthResult
auth_authenticate(gpointer self, const char *user, const char *password, char **canon_r)
{
    g_autofree char *hash = NULL, *canon = NULL;
    gboolean usable_table;
    g_mutex_lock(&auth.lock);
    auth_refresh(FALSE, NULL);
    usable_table = auth.table || auth.missing_known;
    const KrUserEntry *e = kr_users_lookup(auth.table, user);
    if (e) {
        hash = g_strdup(e->hash);
        canon = g_strdup(e->address);
    }
    g_mutex_unlock(&auth.lock);
    if (!usable_table) {
        /* Never loaded a good file: that is trouble, not a wrong password. */
        kr_passwd_verify_dummy(password ? password : "");
        return KR_AUTH_TEMPFAIL;
    }
    if (!password || !hash || !kr_passwd_hash_usable(hash)) {
        kr_passwd_verify_dummy(password ? password : "");
        return KR_AUTH_FAIL;
    }
    if (!kr_passwd_verify(password, hash))
        return KR_AUTH_FAIL;
    *canon_r = g_steal_pointer(&canon);
    return KR_AUTH_OK;
}

static gboolean
auth_user_exists(gpointer self, const char *address)
{
    g_mutex_lock(&auth.lock);
    auth_refresh(FALSE, NULL);
    gboolean found = kr_users_lookup(auth.table, address) != NULL;
    g_mutex_unlock(&auth.lock);
    return found;
}

static const KrAuthBackend auth_backend = {
    .struct_size = sizeof(KrAuthBackend),
    .name = "file",
    .self = &auth,
    .authenticate = auth_authenticate,
    .user_exists = auth_user_exists,
};

/* --- the service: load at start, re-read on SIGHUP -------------------- */

static gboolean
auth_start(gpointer self, GError **error)
{
    g_mutex_lock(&auth.lock);
    gboolean ok = auth_refresh(TRUE, error);
    g_mutex_unlock(&auth.lock);
    if (!ok)
        g_prefix_error(error, "auth-file: ");
    return ok;
}

static void
auth_stop(gpointer self, void (*done)(gpointer token), gpointer token)
{
    done(token);
}

static void
auth_reload(gpointer self)
{
    g_mutex_lock(&auth.lock);
    auth_refresh(TRUE, NULL);
    g_mutex_unlock(&auth.lock);
}

static const KrService auth_service = {
    .struct_size = sizeof(KrService),
    .name = "auth-file",
    .self = &auth,
    .start = auth_start,
    .stop = auth_stop,
    .reload = auth_reload,
};

/* --- the command: kurir user ... --------------------------------------- */

/* The canonical, checked form of a command-line ADDRESS, or NULL after
 * printing why. */
static char *
user_address(const char *arg)
{
    g_autofree char *canon = kr_addr_canon(arg);
    g_autoptr(GError) err = NULL;
    char *addr = kr_users_address_canon(canon, &err);
    if (!addr) {
        fprintf(stderr, "kurir user: %s\n", err->message);
        return NULL;
    }
    if (!kr_domain_is_local(kr_addr_domain(addr))) {
        fprintf(stderr,
                "kurir user: domain '%s' is not served here (add it to core.domains first)\n",
                kr_addr_domain(addr));
        g_free(addr);
        return NULL;
    }
    return addr;
}

/* One line from stdin, without its line ending; with a terminal, asked
 * for twice with echo off. NULL after printing why. */
static char *
user_read_line(const char *prompt)
{
    char buf[KR_PASSWD_MAX + 3];
    struct termios old, quiet;
    gboolean tty = isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &old) == 0;
    if (tty) {
        fprintf(stderr, "%s", prompt);
        quiet = old;
        quiet.c_lflag &= ~(tcflag_t)ECHO;
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
    }
    char *got = fgets(buf, sizeof buf, stdin);
    if (tty) {
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
        fprintf(stderr, "\n");
    }
    if (!got) {
        fprintf(stderr, "kurir user: no password on standard input\n");
        return NULL;
    }
    gsize len = strlen(buf);
    gboolean eol = len > 0 && buf[len - 1] == '\n';
    if (!eol && !feof(stdin)) {
        explicit_bzero(buf, sizeof buf);
        fprintf(stderr, "kurir user: password too long (at most %d bytes)\n", KR_PASSWD_MAX);
        return NULL;
    }
    if (eol)
        buf[--len] = 0;
    if (len > 0 && buf[len - 1] == '\r')
        buf[--len] = 0;
    char *out = g_strdup(buf);
    explicit_bzero(buf, sizeof buf);
    return out;
}

static void
secret_free(char *s)
{
    if (s) {
        explicit_bzero(s, strlen(s));
        g_free(s);
    }
}

/* Read the password (stdin), check it, hash it. NULL after printing why. */
static char *
user_new_hash(void)
{
    char *pw = user_read_line("Password: ");
    if (!pw)
        return NULL;
    if (isatty(STDIN_FILENO)) {
        char *again = user_read_line("Again: ");
        gboolean same = again && strcmp(pw, again) == 0;
        secret_free(again);
        if (!same) {
            secret_free(pw);
            fprintf(stderr, "kurir user: the passwords differ\n");
            return NULL;
        }
    }
    if (!*pw) {
        secret_free(pw);
        fprintf(stderr, "kurir user: empty password refused\n");
        return NULL;
    }
    g_autoptr(GError) err = NULL;
    char *hash = kr_passwd_check(pw, -1, &err) ? kr_passwd_hash(pw, auth.scheme, &err) : NULL;
    secret_free(pw);
    if (!hash)
        fprintf(stderr, "kurir user: %s\n", err->message);
    return hash;
}

static int
user_list(void)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(KrUsersTable) t = kr_users_load(auth.path, &err);
    if (!t) {
        if (g_error_matches(err, G_FILE_ERROR, G_FILE_ERROR_NOENT))
            return 0;
        fprintf(stderr, "kurir user: %s\n", err->message);
        return 1;
    }
    for (guint i = 0; i < kr_users_count(t); i++) {
        const KrUserEntry *e = kr_users_nth(t, i);
        printf("%s%s\n", e->address, kr_passwd_hash_usable(e->hash) ? "" : " (locked)");
    }
    return 0;
}

static int
user_run(KrModule *mod, int argc, char **argv)
{
    const char *sub = argc > 1 ? argv[1] : NULL;
    if (sub && !strcmp(sub, "list") && argc == 2)
        return user_list();
    if (!sub || argc != 3 || (strcmp(sub, "add") && strcmp(sub, "del") && strcmp(sub, "passwd"))) {
        fprintf(stderr, "usage: kurir user add|del|passwd ADDRESS   (password on stdin)\n"
                        "       kurir user list\n");
        return EX_USAGE;
    }
    g_autofree char *addr = user_address(argv[2]);
    if (!addr)
        return EX_DATAERR;
    g_autoptr(GError) err = NULL;
    gboolean ok;
    if (!strcmp(sub, "del")) {
        ok = kr_users_file_del(auth.path, addr, &err);
        if (ok)
            printf("deleted %s (its mailbox is kept)\n", addr);
    } else {
        g_autofree char *dir = g_path_get_dirname(auth.path);
        if (g_mkdir_with_parents(dir, 0700) < 0) {
            fprintf(stderr, "kurir user: cannot create %s: %s\n", dir, g_strerror(errno));
            return 1;
        }
        /* Refuse early, before asking for a password. */
        g_autoptr(KrUsersTable) t = kr_users_load(auth.path, NULL);
        gboolean known = t && kr_users_lookup(t, addr);
        if (!strcmp(sub, "add") && known) {
            fprintf(stderr, "kurir user: %s already exists\n", addr);
            return 1;
        }
        if (!strcmp(sub, "passwd") && t && !known) {
            fprintf(stderr, "kurir user: no user %s\n", addr);
            return 1;
        }
        char *hash = user_new_hash();
        if (!hash)
            return 1;
        ok = !strcmp(sub, "add") ? kr_users_file_add(auth.path, addr, hash, &err)
                                 : kr_users_file_set_hash(auth.path, addr, hash, &err);
        secret_free(hash);
        if (ok)
            printf("%s %s\n", !strcmp(sub, "add") ? "added" : "password changed for", addr);
    }
    if (!ok) {
        fprintf(stderr, "kurir user: %s\n", err->message);
        return 1;
    }
    return 0;
}

static const KrCommand user_command = {
    .struct_size = sizeof(KrCommand),
    .name = "user",
    .usage = "user add ADDRESS       add a user (password on stdin)\n"
             "user del ADDRESS       delete a user (the mailbox is kept)\n"
             "user passwd ADDRESS    set a user's password (on stdin)\n"
             "user list              list the users",
    .run = user_run,
};

/* --- module ------------------------------------------------------------ */

static gboolean
auth_init(KrModule *mod, GError **error)
{
    AuthConf *c = kr_module_conf(mod);
    g_mutex_init(&auth.lock);
    auth.path = g_strdup(c->users_file);
    auth.scheme = (KrPasswdScheme)c->scheme;
    return kr_register_auth(mod, &auth_backend, error) &&
           kr_register_command(mod, &user_command, error) &&
           kr_register_service(mod, &auth_service, error);
}

static void
auth_fini(KrModule *mod)
{
    g_mutex_lock(&auth.lock);
    g_clear_pointer(&auth.table, kr_users_free);
    g_clear_pointer(&auth.path, g_free);
    auth.loaded = FALSE;
    g_mutex_unlock(&auth.lock);
}

KR_MODULE(auth_file, "auth-file", "0.1", "users and passwords from a file (DATA_DIR/users)",
          auth_settings, sizeof(AuthConf), auth_init, auth_fini);
