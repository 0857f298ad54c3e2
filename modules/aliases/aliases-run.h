/* SPDX-License-Identifier: MIT */
/*
 * aliases-run.h - deliver to a command or append to a file, as a given
 * user, with a time limit (see aliases-run.c). Blocking: worker threads.
 *
 *   alias_run_pipe(priv, command, env, in_fd, timeout, diag)
 *   alias_run_file(priv, path, in_fd, timeout, diag)
 *   alias_command_argv(command)     how a command line is executed
 *   alias_mbox_from_line(...)       the "From " line of an mbox message
 *   alias_mbox_copy(in_fd, out_fd, from_line, error)
 *                                   in_fd (LF lines) as one mbox message
 *
 * PRIVILEGES
 *   The child runs as priv (uid, gid, and the account's groups; its home
 *   as working directory). Changing user needs kurird to run as root;
 *   otherwise only priv->uid == geteuid() can run, and anything else is
 *   ALIAS_TEMP (and logged by the caller): the admin either runs kurird
 *   as root or gives the targets to kurird's user. Nothing runs as root:
 *   a priv of uid 0 is refused (ALIAS_PERM).
 *
 * COMMANDS
 *   A command without shell metacharacters ( |&;<>()$`\"'*?[]#~=%{}! and
 *   newlines) is split at blanks and executed directly (a bare program
 *   name is looked up in /usr/local/bin:/usr/bin:/bin); anything else
 *   runs as /bin/sh -c COMMAND. Standard input is in_fd (from its
 *   start), standard output and error are captured (the first
 *   ALIAS_OUTPUT_MAX bytes), the environment is exactly env. The child is
 *   a session leader: on timeout its whole process group is killed.
 *
 * RESULTS
 *   ALIAS_OK: exit status 0. ALIAS_TEMP: exit 75 (EX_TEMPFAIL), 71
 *   (EX_OSERR) or 74 (EX_IOERR), killed by a signal, cannot fork, wrong
 *   user. ALIAS_PERM: any other exit status, the time limit exceeded,
 *   cannot execute. *diag_r describes it with the captured output
 *   (control characters replaced by spaces).
 *
 * FILES
 *   The child (as priv) opens path with O_APPEND | O_CREAT (mode 0600)
 *   | O_NOFOLLOW, refuses anything but a regular file, takes an flock,
 *   appends in_fd's content and fsyncs. ENOSPC, EDQUOT, EAGAIN are
 *   ALIAS_TEMP; other errors ALIAS_PERM.
 */
#ifndef ALIASES_RUN_H
#define ALIASES_RUN_H

#include "aliases-expand.h"

#define ALIAS_OUTPUT_MAX 2048

AliasStatus alias_run_pipe(const AliasPriv *priv, const char *command, char **env, int in_fd,
                           gint64 timeout_s, char **diag_r);
AliasStatus alias_run_file(const AliasPriv *priv, const char *path, int in_fd, gint64 timeout_s,
                           char **diag_r);
/* The argv a command runs with (NULL-terminated; g_strfreev). */
char **alias_command_argv(const char *command);
/* "From SENDER DATE\n" ("MAILER-DAEMON" for the null sender). */
char *alias_mbox_from_line(const char *sender, gint64 when);
/* Write from_line, then in_fd's content from its start with lines that
 * begin with "From " or ">...From " quoted by one more '>' (mboxrd), a
 * final newline if missing, and an empty line. */
gboolean alias_mbox_copy(int in_fd, int out_fd, const char *from_line, GError **error);

#endif
