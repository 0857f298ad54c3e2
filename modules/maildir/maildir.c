/* SPDX-License-Identifier: MIT */
/*
 * maildir.c - the maildir module: registers the mail store "maildir",
 * which keeps each user's mail in a Maildir (Maildir++ folders) under
 * DATA_DIR/mail/<domain>/<local>/.
 *
 *   store "maildir"   deliver(self, user, folder, msg, prefix, error):
 *                     see maildir-deliver.h (writing) and maildir-path.h
 *                     (layout, name rules, symlink safety); after a
 *                     delivery, sessions on that folder are told
 *                     (md_notify_delivery: change counter, watches)
 *                     mailbox: the KrMailboxOps of kr-store.h, see
 *                     maildir-store.h (per-folder index, sessions, folders)
 *
 * Module settings (the `maildir` group): none yet.
 *
 * Files: maildir.c (this glue), maildir-path.c (names -> directories),
 * maildir-deliver.c (tmp/ -> new/ delivery), maildir-index.c (the
 * per-folder index file), maildir-folder.c (shared folder state, directory
 * scan), maildir-mailbox.c (sessions), maildir-cache.c (a session's
 * cached blobs), maildir-folders.c (folder ops, append).
 */
#include "maildir-deliver.h"
#include "maildir-path.h"
#include "maildir-store.h"

static Maildir maildir;

static KrStoreResult
maildir_store_deliver(gpointer self, const char *user, const char *folder, KrMsg *msg,
                      const char *prefix, GError **error)
{
    Maildir *md = self;
    KrStoreResult r = maildir_deliver(md->mail_dir, md->host, user, folder, msg, prefix, error);
    if (r == KR_STORE_OK)
        md_notify_delivery(md, user, folder);
    return r;
}

static const KrStore maildir_store = {
    .struct_size = sizeof(KrStore),
    .name = "maildir",
    .self = &maildir,
    .deliver = maildir_store_deliver,
    .mailbox = &maildir_mailbox_ops,
};

static gboolean
maildir_init(KrModule *mod, GError **error)
{
    maildir.mail_dir = g_build_filename(kr_module_data_dir(mod), "mail", NULL);
    maildir.host = maildir_host_part(kr_hostname());
    return kr_register_store(mod, &maildir_store, error);
}

static void
maildir_fini(KrModule *mod)
{
    g_clear_pointer(&maildir.mail_dir, g_free);
    g_clear_pointer(&maildir.host, g_free);
}

KR_MODULE(maildir, "maildir", "0.1", "Maildir mail store", NULL, 0, maildir_init, maildir_fini);
