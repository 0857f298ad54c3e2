/* SPDX-License-Identifier: MIT */
/*
 * maildir-path.c - validate mailbox names and open a user's Maildir
 * below DATA_DIR/mail without ever following a symbolic link. See
 * maildir-path.h for the layout and the rules.
 *
 *   maildir_name_ok, maildir_folder_ok, maildir_user_split
 *   maildir_open, maildir_fds_close
 *
 * Blocking (mkdir, fsync): called from worker threads. Thread-safe: two
 * deliveries creating the same Maildir at once both succeed (EEXIST is
 * fine, the open that follows checks what is there).
 */
#include "maildir-path.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define NAME_MAX_BYTES 255

static gboolean
name_check(const char *name, const char *what, gboolean folder, GError **error)
{
    const char *why = NULL;
    gsize len = name ? strlen(name) : 0;
    if (len == 0)
        why = "is empty";
    else if (len > NAME_MAX_BYTES)
        why = "is too long";
    else if (name[0] == '.')
        why = "starts with '.'";
    else if (strstr(name, ".."))
        why = "contains '..'";
    else if (strchr(name, '/'))
        why = "contains '/'";
    else if (folder && name[len - 1] == '.')
        why = "ends with '.'";
    else if (!g_utf8_validate(name, (gssize)len, NULL))
        why = "is not valid UTF-8";
    else
        for (const unsigned char *p = (const unsigned char *)name; *p; p++)
            if (*p < 0x20 || *p == 0x7f) {
                why = "contains a control character";
                break;
            }
    if (!why)
        return TRUE;
    g_autofree char *shown = g_strescape(name ? name : "", NULL);
    g_set_error(error, G_FILE_ERROR, G_FILE_ERROR_INVAL, "%s \"%.80s\" %s", what, shown, why);
    return FALSE;
}

gboolean
maildir_name_ok(const char *name, const char *what, GError **error)
{
    return name_check(name, what, FALSE, error);
}

gboolean
maildir_folder_ok(const char *folder, GError **error)
{
    return name_check(folder, "folder", TRUE, error);
}

gboolean
maildir_user_split(const char *user, char **domain_r, char **local_r, GError **error)
{
    const char *at = user ? strrchr(user, '@') : NULL;
    if (!at) {
        g_set_error(error, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                    "user \"%.80s\" is not an address (local@domain)", user ? user : "");
        return FALSE;
    }
    g_autofree char *local = g_ascii_strdown(user, at - user);
    g_autofree char *domain = g_ascii_strdown(at + 1, -1);
    if (!maildir_name_ok(domain, "domain", error) || !maildir_name_ok(local, "local part", error))
        return FALSE;
    *domain_r = g_steal_pointer(&domain);
    *local_r = g_steal_pointer(&local);
    return TRUE;
}

static void
set_errno_error(GError **error, int e, const char *what, const char *path)
{
    g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(e), "%s %s: %s", what, path,
                g_strerror(e));
}

/* Open directory `name` below dirfd, creating it (mode 0700, parent
 * fsync'd) if create is set. Never follows a symlink. -1 with error. */
static int
open_sub(int dirfd, const char *name, gboolean create, gboolean *created_r, const char *shown,
         GError **error)
{
    for (int tries = 0; tries < 3; tries++) {
        int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd >= 0)
            return fd;
        int e = errno;
        if (e == ELOOP || e == ENOTDIR) {
            g_set_error(error, G_FILE_ERROR, G_FILE_ERROR_NOTDIR,
                        "%s is a symbolic link or not a directory: refused", shown);
            return -1;
        }
        if (e != ENOENT || !create) {
            set_errno_error(error, e, "cannot open", shown);
            return -1;
        }
        if (mkdirat(dirfd, name, 0700) < 0) {
            if (errno == EEXIST)
                continue; /* someone else made it: open it */
            set_errno_error(error, errno, "cannot create", shown);
            return -1;
        }
        if (fsync(dirfd) < 0) {
            set_errno_error(error, errno, "cannot fsync the parent of", shown);
            return -1;
        }
        if (created_r)
            *created_r = TRUE;
    }
    set_errno_error(error, ENOENT, "cannot open", shown);
    return -1;
}

/* Create an empty regular file (Maildir++ `maildirfolder`), durable. */
static gboolean
touch_file(int dirfd, const char *name, const char *shown, GError **error)
{
    int fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        set_errno_error(error, errno, "cannot create", shown);
        return FALSE;
    }
    close(fd);
    if (fsync(dirfd) < 0) {
        set_errno_error(error, errno, "cannot fsync the parent of", shown);
        return FALSE;
    }
    return TRUE;
}

static int
open_mail_dir(const char *mail_dir, gboolean create, GError **error)
{
    int fd = open(mail_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0 || errno != ENOENT || !create) {
        if (fd < 0)
            set_errno_error(error, errno, "cannot open", mail_dir);
        return fd;
    }
    if (mkdir(mail_dir, 0700) < 0 && errno != EEXIST) {
        set_errno_error(error, errno, "cannot create", mail_dir);
        return -1;
    }
    g_autofree char *parent = g_path_get_dirname(mail_dir);
    int pfd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (pfd >= 0) {
        int rc = fsync(pfd);
        int e = errno;
        close(pfd);
        if (rc < 0) {
            set_errno_error(error, e, "cannot fsync", parent);
            return -1;
        }
    }
    fd = open(mail_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        set_errno_error(error, errno, "cannot open", mail_dir);
    return fd;
}

static void
close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

void
maildir_fds_close(MaildirFds *fds)
{
    close_fd(&fds->dir);
    close_fd(&fds->tmp);
    close_fd(&fds->new_);
    close_fd(&fds->cur);
}

KrStoreResult
maildir_open(const char *mail_dir, const char *user, const char *folder, gboolean create,
             MaildirFds *fds, GError **error)
{
    g_autofree char *domain = NULL, *local = NULL, *fname = NULL;
    *fds = (MaildirFds)MAILDIR_FDS_INIT;
    if (!maildir_user_split(user, &domain, &local, error))
        return KR_STORE_PERMFAIL;
    if (folder && g_ascii_strcasecmp(folder, "INBOX") == 0)
        folder = NULL;
    if (folder) {
        if (!maildir_folder_ok(folder, error))
            return KR_STORE_PERMFAIL;
        fname = g_strconcat(".", folder, NULL);
    }

    g_autofree char *shown = g_build_filename(mail_dir, domain, NULL);
    int top = open_mail_dir(mail_dir, create, error);
    if (top < 0)
        return KR_STORE_TEMPFAIL;
    int dom = open_sub(top, domain, create, NULL, shown, error);
    close(top);
    if (dom < 0)
        return KR_STORE_TEMPFAIL;
    g_free(shown);
    shown = g_build_filename(mail_dir, domain, local, NULL);
    int home = open_sub(dom, local, create, NULL, shown, error);
    close(dom);
    if (home < 0)
        return KR_STORE_TEMPFAIL;
    if (fname) {
        gboolean created = FALSE;
        g_free(shown);
        shown = g_build_filename(mail_dir, domain, local, fname, NULL);
        fds->dir = open_sub(home, fname, create, &created, shown, error);
        close(home);
        if (fds->dir < 0)
            return KR_STORE_TEMPFAIL;
        if (created) {
            g_autofree char *mf = g_build_filename(shown, "maildirfolder", NULL);
            if (!touch_file(fds->dir, "maildirfolder", mf, error)) {
                maildir_fds_close(fds);
                return KR_STORE_TEMPFAIL;
            }
        }
    } else {
        fds->dir = home;
    }

    static const char *const subs[] = {"tmp", "new", "cur"};
    int *slots[] = {&fds->tmp, &fds->new_, &fds->cur};
    for (int i = 0; i < 3; i++) {
        g_autofree char *s = g_build_filename(shown, subs[i], NULL);
        *slots[i] = open_sub(fds->dir, subs[i], create, NULL, s, error);
        if (*slots[i] < 0) {
            maildir_fds_close(fds);
            return KR_STORE_TEMPFAIL;
        }
    }
    return KR_STORE_OK;
}
