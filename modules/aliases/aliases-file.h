/* SPDX-License-Identifier: MIT */
/*
 * aliases-file.h - the /etc/aliases format: parsing alias files and
 * target lists (:include: files, .forward files). Pure: no globals, no
 * logging (see aliases-file.c).
 *
 *   aliases_table_load(path, error)          read and parse an aliases file
 *   aliases_table_parse(name, text, len, errors)   parse text
 *   aliases_table_ref / aliases_table_unref
 *   aliases_table_lookup(table, key)         entry by lowercased name
 *   aliases_table_size / _nth / _path / _exists / _changed / _owner
 *   aliases_parse_list(name, text, len, targets, errors)
 *                                            an :include: or .forward file
 *   aliases_target_free(target)
 *
 * ALIASES FILE
 *   name: target, target, ...
 *   A line starting with a blank continues the entry above it. Blank
 *   lines and lines whose first non-blank character is '#' are ignored
 *   (also between continuation lines). The name is a local part
 *   ("team": in every served domain) or an address ("team@example.org":
 *   that one); it may be quoted ("first last": ...). Names compare
 *   case-insensitively; a name given twice is an error naming both
 *   lines. An entry needs at least one target.
 *
 * TARGETS (separated by commas; blanks around them are ignored)
 *   user, user@domain, <user@domain>   an address (expanded again if local)
 *   \user                              that local mailbox, not expanded
 *   :include:/path                     the targets listed in /path
 *   |command args                      a command, the message on stdin
 *   /path/file                         append to a file (mbox format)
 *   "..."                              any of the above quoted, for
 *                                      commas, blanks or a '#' inside
 *   Quoted strings end on the same line and take \" and \\ escapes.
 *   :include: paths must be absolute.
 *
 * LIST FILES (:include:, .forward)
 *   The same targets, separated by commas and/or line ends; '#' comment
 *   lines and blank lines are ignored.
 *
 * LIMITS AND ERRORS
 *   No control characters other than TAB, valid UTF-8, lines at most
 *   ALIASES_MAX_LINE bytes, at most ALIASES_MAX_TARGETS targets per
 *   entry or list and ALIASES_MAX_ENTRIES entries per file. Every error
 *   is "FILE:LINE: why" (at most 50 are reported). A missing aliases
 *   file loads as an empty table (_exists() FALSE).
 *
 * OWNERSHIP
 *   A table is immutable once loaded and may be shared by threads; it
 *   lives while references exist. Entries and targets belong to it.
 */
#ifndef ALIASES_FILE_H
#define ALIASES_FILE_H

#include <glib.h>
#include <sys/types.h>

#define ALIASES_MAX_LINE    65536
#define ALIASES_MAX_TARGETS 100000
#define ALIASES_MAX_ENTRIES 1000000
#define ALIASES_MAX_FILE    (256 * 1024 * 1024)
#define ALIASES_MAX_ERRORS  50

typedef enum {
    ALIAS_T_ADDRESS, /* value: the address as written (<> removed) */
    ALIAS_T_DIRECT,  /* \user: value without the backslash */
    ALIAS_T_INCLUDE, /* value: the absolute path */
    ALIAS_T_PIPE,    /* value: the command, without '|' */
    ALIAS_T_FILE,    /* value: the absolute path */
} AliasTargetKind;

typedef struct {
    AliasTargetKind kind;
    char *value;
    guint line;
} AliasTarget;

typedef struct {
    char *name;         /* lowercased */
    GPtrArray *targets; /* AliasTarget * */
    guint line;
} AliasEntry;

typedef struct AliasTable AliasTable;

AliasTable *aliases_table_load(const char *path, GError **error);
AliasTable *aliases_table_parse(const char *name, const char *text, gsize len, GPtrArray *errors);
AliasTable *aliases_table_ref(AliasTable *t);
void aliases_table_unref(AliasTable *t);
const AliasEntry *aliases_table_lookup(const AliasTable *t, const char *key);
guint aliases_table_size(const AliasTable *t);
const AliasEntry *aliases_table_nth(const AliasTable *t, guint i);
const char *aliases_table_path(const AliasTable *t);
gboolean aliases_table_exists(const AliasTable *t);
/* The file differs from the one loaded (or appeared, or went away). */
gboolean aliases_table_changed(const AliasTable *t);
/* Owner of the loaded file (0 when missing or parsed from text). */
uid_t aliases_table_owner(const AliasTable *t);

/* Parse a list file into targets (AliasTarget *, caller frees with
 * aliases_target_free). FALSE if errors were appended. */
gboolean aliases_parse_list(const char *name, const char *text, gsize len, GPtrArray *targets,
                            GPtrArray *errors);
void aliases_target_free(gpointer target);

#endif
