/* SPDX-License-Identifier: MIT */
/*
 * aliases-sys.h - what alias expansion needs from the system: user
 * accounts, forward files with their permission checks, :include: files
 * (see aliases-sys.c). Blocking (file reads, NSS lookups): worker
 * threads only.
 *
 *   alias_pw_by_name(passwd_file, name, priv)   account by name
 *   alias_pw_by_uid(passwd_file, uid, priv)     account by uid
 *   alias_read_forward(sys, address, targets, priv, where, why, ignored)
 *   alias_read_include(path, targets, owner, why)
 *
 * FORWARD FILES
 *   System users: an address in the default domain whose local part is
 *   an account (the passwd file, or the system's user database when
 *   passwd_file is "") has HOME/.forward. Virtual users (everyone else
 *   in a served domain): FORWARD_DIR/<domain>/<local>/.forward, the
 *   names lowercased (by default FORWARD_DIR is DATA_DIR/mail, so the
 *   file sits next to the Maildir, where the store never lists it).
 *   A forward file is ignored (ALIAS_NONE with *ignored_r saying why, to
 *   be logged) when it is a symbolic link or not a regular file, is
 *   group- or world-writable, is owned by someone other than the user
 *   (system users; root may own it too) or than kurird's user (virtual
 *   users; or root), is larger than 64 KiB, has a bad line, or - for a
 *   virtual user, who has no account to run them as - names a command
 *   or a file. Virtual paths are opened component by component without
 *   following symbolic links. I/O trouble other than "not there" is
 *   ALIAS_TEMP.
 *
 * INCLUDE FILES
 *   Absolute paths, read following symbolic links; a file that is not
 *   regular, larger than 16 MiB, or group- or world-writable is refused
 *   (ALIAS_TEMP: the admin fixes it, mail waits); a bad line is
 *   ALIAS_CONFIG with FILE:LINE. *owner_r gets the owner's uid (whose
 *   account runs the commands and files it names).
 */
#ifndef ALIASES_SYS_H
#define ALIASES_SYS_H

#include "aliases-expand.h"

typedef struct {
    gboolean forward;           /* honour forward files at all */
    const char *passwd_file;    /* "" or NULL: getpwnam/getpwuid */
    const char *forward_dir;    /* "" or NULL: no virtual forward files */
    const char *default_domain; /* system users live here */
    uid_t self_uid;             /* kurird's effective uid */
} AliasSys;

gboolean alias_pw_by_name(const char *passwd_file, const char *name, AliasPriv *out);
gboolean alias_pw_by_uid(const char *passwd_file, uid_t uid, AliasPriv *out);
AliasStatus alias_read_forward(const AliasSys *sys, const char *address, GPtrArray *targets,
                               AliasPriv *priv, char **where_r, char **why_r, char **ignored_r);
AliasStatus alias_read_include(const char *path, GPtrArray *targets, uid_t *owner_r, char **why_r);

#endif
