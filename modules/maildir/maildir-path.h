/* SPDX-License-Identifier: MIT */
/*
 * maildir-path.h - from a user address and folder name to the open
 * directories of its Maildir under DATA_DIR/mail, safely.
 *
 *   maildir_name_ok(name, what, error)     one path component acceptable?
 *   maildir_folder_ok(folder, error)       Maildir++ folder name acceptable?
 *   maildir_user_split(user, &dom, &loc, error)  validated, lowercased parts
 *   maildir_open(mail_dir, user, folder, create, &fds, error)
 *                                          open (create) the Maildir
 *   maildir_fds_close(&fds)                close what maildir_open opened
 *
 * LAYOUT
 *   MAIL_DIR/<domain>/<local>/{tmp,new,cur}/            INBOX
 *   MAIL_DIR/<domain>/<local>/.<folder>/{tmp,new,cur}/  Maildir++ folder,
 *                                          with an empty `maildirfolder`
 *   <domain> and <local> are the parts of the canonical address with
 *   ASCII letters lowercased (the users file's canonical form), so
 *   "Bob@Example.ORG" and "bob@example.org" share one mailbox.
 *   Directories are created mode 0700, and their parent fsync'd.
 *
 * SAFETY
 *   A name is one path component: 1..255 bytes of valid UTF-8, no '/',
 *   no control characters (< 0x20, 0x7f), no leading '.', no "..". A
 *   folder is a Maildir++ name: the same, and no trailing '.' (the dot
 *   separates levels, "Work.Projects"); "INBOX" (any case) is the INBOX.
 *   Everything below MAIL_DIR is opened with openat(O_NOFOLLOW |
 *   O_DIRECTORY) relative to its parent's descriptor, so a symbolic link
 *   planted anywhere below MAIL_DIR is refused, never followed. MAIL_DIR
 *   itself may be a symlink (an admin's choice of disk).
 *
 * ERRORS
 *   KR_STORE_PERMFAIL for names that can never work (error code
 *   G_FILE_ERROR_INVAL); KR_STORE_TEMPFAIL for everything the
 *   file system says, including a symlink or a non-directory in the way
 *   (an admin can fix it; the queue keeps the message meanwhile).
 */
#ifndef KR_MAILDIR_PATH_H
#define KR_MAILDIR_PATH_H

#include <kurir/kurir.h>

typedef struct {
    int dir; /* the Maildir (INBOX or .folder) */
    int tmp;
    int new_;
    int cur;
} MaildirFds;

#define MAILDIR_FDS_INIT                                                                           \
    {                                                                                              \
        -1, -1, -1, -1                                                                             \
    }

gboolean maildir_name_ok(const char *name, const char *what, GError **error);
gboolean maildir_folder_ok(const char *folder, GError **error);
gboolean maildir_user_split(const char *user, char **domain_r, char **local_r, GError **error);
KrStoreResult maildir_open(const char *mail_dir, const char *user, const char *folder,
                           gboolean create, MaildirFds *fds, GError **error);
void maildir_fds_close(MaildirFds *fds);

#endif
