/* SPDX-License-Identifier: MIT */
/*
 * maildir-deliver.c - write one message into a Maildir (tmp/, then a
 * hard link into new/), following the Maildir delivery protocol
 * (https://cr.yp.to/proto/maildir.html) with fsyncs for durability.
 *
 *   maildir_host_part    host name with '/', ':' and ',' escaped as \057,
 *                        \072 and \054 (so ",S=" and ":2," parse)
 *   maildir_unique_name  "<sec>.M<usec>P<pid>Q<counter>.<host>"
 *   maildir_deliver      the delivery (see maildir-deliver.h)
 *
 * Files are mode 0600 and use LF line endings (kr_msg_write_to_fd with
 * lf=TRUE; the prefix is written as given, so give it with "\n"). The
 * name ends in ",S=<size>,W=<vsize>" (Maildir++, as Dovecot writes):
 * S is the size of the file on disk (fstat after the write), W its size
 * with CRLF line ends (S plus the LFs not preceded by CR, counted over
 * the bytes just written, from the page cache), which POP3 LIST and IMAP
 * RFC822.SIZE report: the store's scan and other readers of this
 * Maildir take both from the name without opening the file.
 *
 * Durability: the file is fsync'd before it is linked into new/, and
 * new/ is fsync'd after, through kr_sync_dir (kr-sync.h): deliveries
 * into one mailbox that run at once share that directory fsync.
 */
#include "maildir-deliver.h"
#include "maildir-path.h"
#include "maildir-store.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static gint name_counter;

char *
maildir_host_part(const char *hostname)
{
    GString *s = g_string_new(NULL);
    for (const char *p = hostname && *hostname ? hostname : "localhost"; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '/' || c == ':' || c == ',' || c == '\\' || c < 0x20 || c == 0x7f)
            g_string_append_printf(s, "\\%03o", c);
        else
            g_string_append_c(s, (char)c);
    }
    return g_string_free(s, FALSE);
}

char *
maildir_unique_name(const char *host)
{
    gint64 now = g_get_real_time();
    guint n = (guint)g_atomic_int_add(&name_counter, 1);
    return g_strdup_printf("%" G_GINT64_FORMAT ".M%06dP%dQ%u.%s", now / G_USEC_PER_SEC,
                           (int)(now % G_USEC_PER_SEC), (int)getpid(), n, host);
}

static KrStoreResult
errno_fail(GError **error, int e, const char *what, const char *dir, const char *name)
{
    g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(e), "%s %s/%s: %s", what, dir, name,
                g_strerror(e));
    return KR_STORE_TEMPFAIL;
}

/* Write and fsync tmp/name; its size on disk in *size_r, with CRLF line
 * ends in *vsize_r. */
static KrStoreResult
write_tmp(int tmp_dir, const char *name, KrMsg *msg, const char *prefix, goffset *size_r,
          gint64 *vsize_r, GError **error)
{
    int fd = openat(tmp_dir, name, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return errno_fail(error, errno, "cannot create", "tmp", name);
    g_autoptr(GError) err = NULL;
    struct stat st;
    KrStoreResult r = KR_STORE_OK;
    if (!kr_msg_write_to_fd(msg, fd, prefix, TRUE, &err)) {
        g_propagate_prefixed_error(error, g_steal_pointer(&err), "cannot write tmp/%s: ", name);
        r = KR_STORE_TEMPFAIL;
    } else if (fsync(fd) < 0) {
        r = errno_fail(error, errno, "cannot fsync", "tmp", name);
    } else if (fstat(fd, &st) < 0) {
        r = errno_fail(error, errno, "cannot stat", "tmp", name);
    } else if ((*vsize_r = md_file_vsize(fd, st.st_size)) < 0) {
        r = errno_fail(error, errno, "cannot read back", "tmp", name);
    } else {
        *size_r = st.st_size;
    }
    /* close() can report a late write error (NFS, quota). */
    if (close(fd) < 0 && r == KR_STORE_OK)
        r = errno_fail(error, errno, "cannot close", "tmp", name);
    return r;
}

/* Move tmp/name to new/final without ever replacing a file. */
static KrStoreResult
link_new(const MaildirFds *fds, const char *name, const char *final, GError **error)
{
    if (linkat(fds->tmp, name, fds->new_, final, 0) == 0) {
        if (unlinkat(fds->tmp, name, 0) < 0)
            g_warning("maildir: cannot remove tmp/%s after linking it: %s", name,
                      g_strerror(errno));
        return KR_STORE_OK;
    }
    int e = errno;
    /* File systems without hard links: renameat2 with RENAME_NOREPLACE
     * keeps the never-overwrite guarantee. */
    if ((e == EPERM || e == ENOTSUP || e == EOPNOTSUPP || e == EMLINK) &&
        renameat2(fds->tmp, name, fds->new_, final, RENAME_NOREPLACE) == 0)
        return KR_STORE_OK;
    return errno_fail(error, e, "cannot link into", "new", final);
}

KrStoreResult
maildir_deliver(const char *mail_dir, const char *host, const char *user, const char *folder,
                KrMsg *msg, const char *prefix, GError **error)
{
    MaildirFds fds;
    KrStoreResult r = maildir_open(mail_dir, user, folder, TRUE, &fds, error);
    if (r != KR_STORE_OK)
        return r;

    g_autofree char *name = NULL;
    g_autoptr(GError) err = NULL;
    goffset size = 0;
    gint64 vsize = 0;
    /* A clash in tmp/ means a clock step or a pid reused within the same
     * microsecond: take a fresh name (the counter moved on). */
    for (int tries = 0;; tries++) {
        g_free(name);
        name = maildir_unique_name(host);
        g_clear_error(&err);
        r = write_tmp(fds.tmp, name, msg, prefix, &size, &vsize, &err);
        if (r == KR_STORE_OK || tries >= 2 ||
            !g_error_matches(err, G_FILE_ERROR, G_FILE_ERROR_EXIST))
            break;
    }
    if (r != KR_STORE_OK) {
        if (!g_error_matches(err, G_FILE_ERROR, G_FILE_ERROR_EXIST))
            unlinkat(fds.tmp, name, 0);
        g_propagate_error(error, g_steal_pointer(&err));
        maildir_fds_close(&fds);
        return r;
    }

    g_autofree char *final =
        g_strdup_printf("%s,S=%" G_GINT64_FORMAT ",W=%" G_GINT64_FORMAT, name, (gint64)size, vsize);
    r = link_new(&fds, name, final, error);
    if (r != KR_STORE_OK) {
        unlinkat(fds.tmp, name, 0);
    } else if (!kr_sync_dir(fds.new_, &err)) {
        /* Not durable: take it back so that the retry does not make a
         * second copy (if the unlink fails too, the retry duplicates:
         * at-least-once, never lost). */
        g_set_error(error, G_FILE_ERROR, G_FILE_ERROR_IO, "cannot fsync new/: %s", err->message);
        r = KR_STORE_TEMPFAIL;
        unlinkat(fds.new_, final, 0);
    }
    maildir_fds_close(&fds);
    return r;
}
