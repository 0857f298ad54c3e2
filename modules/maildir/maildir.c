/* SPDX-License-Identifier: MIT */
/*
 * maildir.c - the maildir module: registers the mail store "maildir",
 * which keeps each user's mail in a Maildir (Maildir++ folders) under
 * DATA_DIR/mail/<domain>/<local>/.
 *
 *   store "maildir"   deliver(self, user, folder, msg, prefix, error):
 *                     see maildir-deliver.h (writing) and maildir-path.h
 *                     (layout, name rules, symlink safety)
 *
 * Module settings (the `maildir` group): none yet. The per-folder index
 * (UIDVALIDITY, UIDs, flags, cached fields for POP3/IMAP) comes later in
 * its own file; delivery will then also append to the index.
 *
 * Files: maildir.c (this glue), maildir-path.c (names -> directories),
 * maildir-deliver.c (tmp/ -> new/ delivery).
 */
#include "maildir-deliver.h"
#include "maildir-path.h"

typedef struct {
    char *mail_dir; /* DATA_DIR/mail */
    char *host;     /* host part of file names, escaped */
} Maildir;

static Maildir maildir;

static KrStoreResult
maildir_store_deliver(gpointer self, const char *user, const char *folder, KrMsg *msg,
                      const char *prefix, GError **error)
{
    Maildir *md = self;
    return maildir_deliver(md->mail_dir, md->host, user, folder, msg, prefix, error);
}

static const KrStore maildir_store = {
    .struct_size = sizeof(KrStore),
    .name = "maildir",
    .self = &maildir,
    .deliver = maildir_store_deliver,
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
