/* SPDX-License-Identifier: MIT */
/*
 * aliases-run.c - run a command or append to a file for an alias or
 * forward target, as its user, with a time limit. The rules are in
 * aliases-run.h.
 *
 *   alias_run_pipe, alias_run_file, alias_command_argv, alias_mbox_from_line
 *
 * fork() from a threaded process: everything the child needs (argv,
 * environment, groups) is prepared before the fork, and the child only
 * makes system calls until it executes the command or exits.
 */
#include "aliases-run.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SHELL_META " |&;<>()$`\\\"'*?[]#~=%{}!\n"

typedef struct {
    gboolean file_mode;
    char **argv; /* exec mode */
    char **envp;
    const char *path; /* file mode */
    gboolean change_user;
    uid_t uid;
    gid_t gid;
    gid_t groups[64];
    int ngroups;
    const char *home;
} Child;

char **
alias_command_argv(const char *command)
{
    gboolean meta = FALSE;
    for (const char *p = command; *p && !meta; p++)
        meta = strchr(SHELL_META + 1, *p) != NULL; /* blanks alone need no shell */
    if (meta) {
        char **argv = g_new0(char *, 4);
        argv[0] = g_strdup("/bin/sh");
        argv[1] = g_strdup("-c");
        argv[2] = g_strdup(command);
        return argv;
    }
    GPtrArray *a = g_ptr_array_new();
    g_auto(GStrv) parts = g_strsplit_set(command, " \t", -1);
    for (char **p = parts; *p; p++)
        if (**p)
            g_ptr_array_add(a, g_strdup(*p));
    if (a->len > 0 && !strchr(a->pdata[0], '/')) {
        static const char *const dirs[] = {"/usr/local/bin", "/usr/bin", "/bin", NULL};
        for (const char *const *d = dirs; *d; d++) {
            g_autofree char *full = g_build_filename(*d, a->pdata[0], NULL);
            if (access(full, X_OK) == 0) {
                g_free(a->pdata[0]);
                a->pdata[0] = g_steal_pointer(&full);
                break;
            }
        }
    }
    g_ptr_array_add(a, NULL);
    return (char **)g_ptr_array_free(a, FALSE);
}

char *
alias_mbox_from_line(const char *sender, gint64 when)
{
    time_t t = (time_t)when;
    struct tm tm;
    char date[64];
    localtime_r(&t, &tm);
    strftime(date, sizeof date, "%a %b %e %H:%M:%S %Y", &tm);
    g_autofree char *s = g_strdup(sender && *sender ? sender : "MAILER-DAEMON");
    for (char *p = s; *p; p++)
        if (*p == ' ' || *p == '\t')
            *p = '_';
    return g_strdup_printf("From %s %s\n", s, date);
}

static gboolean
write_all(int fd, const char *p, gsize len, GError **error)
{
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int e = errno;
            g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(e), "write: %s",
                        g_strerror(e));
            return FALSE;
        }
        p += n;
        len -= (gsize)n;
    }
    return TRUE;
}

gboolean
alias_mbox_copy(int in_fd, int out_fd, const char *from_line, GError **error)
{
    if (lseek(in_fd, 0, SEEK_SET) < 0) {
        g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(errno), "seek: %s",
                    g_strerror(errno));
        return FALSE;
    }
    if (!write_all(out_fd, from_line, strlen(from_line), error))
        return FALSE;
    GString *line = g_string_new(NULL);
    char buf[16384];
    gboolean ok = TRUE, last_nl = TRUE;
    for (;;) {
        ssize_t n = read(in_fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(errno), "read: %s",
                        g_strerror(errno));
            ok = FALSE;
            break;
        }
        /* n == 0 flushes a last line without a newline */
        for (ssize_t i = 0; i <= n && ok; i++) {
            gboolean end = i == n;
            if (!end)
                g_string_append_c(line, buf[i]);
            if ((end && n == 0 && line->len) || (!end && buf[i] == '\n')) {
                const char *q = line->str;
                while (*q == '>')
                    q++;
                if (strncmp(q, "From ", 5) == 0)
                    ok = write_all(out_fd, ">", 1, error);
                ok = ok && write_all(out_fd, line->str, line->len, error);
                last_nl = line->str[line->len - 1] == '\n';
                g_string_truncate(line, 0);
            }
        }
        if (n == 0 || !ok)
            break;
    }
    g_string_free(line, TRUE);
    if (ok && !last_nl)
        ok = write_all(out_fd, "\n", 1, error);
    return ok && write_all(out_fd, "\n", 1, error);
}

/* --- the child --------------------------------------------------------------- */

static void
say(const char *s)
{
    ssize_t r = write(1, s, strlen(s));
    (void)r;
}

static void
say_errno(const char *what, int e)
{
    say(what);
    say(": ");
    say(strerrordesc_np(e) ? strerrordesc_np(e) : "error");
    say("\n");
}

static int
temp_errno(int e)
{
    return e == ENOSPC || e == EDQUOT || e == EAGAIN || e == EINTR || e == ENOMEM ? 75 : 73;
}

__attribute__((noreturn)) static void
child_main(const Child *c, int in_fd, int out_fd)
{
    setsid();
    if (in_fd != 0 && dup2(in_fd, 0) < 0)
        _exit(71);
    if (dup2(out_fd, 1) < 0 || dup2(out_fd, 2) < 0)
        _exit(71);
    close_range(3, ~0U, 0);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGPIPE, SIG_DFL);
    if (c->change_user) {
        if (setgroups((size_t)c->ngroups, c->groups) < 0 || setgid(c->gid) < 0 ||
            setuid(c->uid) < 0) {
            say_errno("cannot change user", errno);
            _exit(71);
        }
    }
    if (!c->home || chdir(c->home) < 0) {
        if (chdir("/") < 0)
            _exit(71);
    }
    if (!c->file_mode) {
        execve(c->argv[0], c->argv, c->envp);
        say_errno("cannot execute the command", errno);
        _exit(126);
    }
    int fd = open(c->path, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC, 0600);
    if (fd < 0) {
        int e = errno;
        say_errno("cannot open the file", e);
        _exit(temp_errno(e));
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        say("not a regular file\n");
        _exit(73);
    }
    if (flock(fd, LOCK_EX) < 0) {
        say_errno("cannot lock the file", errno);
        _exit(75);
    }
    char buf[16384];
    for (;;) {
        ssize_t n = read(0, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            say_errno("cannot read the message", errno);
            _exit(74);
        }
        if (n == 0)
            break;
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(fd, buf + off, (size_t)(n - off));
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0) {
                int e = errno;
                say_errno("cannot write the file", e);
                if (ftruncate(fd, st.st_size) < 0) /* leave no half message */
                    _exit(75);
                _exit(temp_errno(e));
            }
            off += w;
        }
    }
    if (fsync(fd) < 0) {
        int e = errno;
        say_errno("cannot sync the file", e);
        _exit(temp_errno(e));
    }
    _exit(0);
}

/* --- the parent ---------------------------------------------------------------- */

static char *
clean_output(const GString *out)
{
    g_autofree char *s = g_utf8_make_valid(out->str, (gssize)out->len);
    GString *r = g_string_new(NULL);
    gboolean space = TRUE;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        gboolean blank = *p < 0x20 || *p == 0x7f || *p == ' ';
        if (blank) {
            if (!space)
                g_string_append_c(r, ' ');
            space = TRUE;
        } else {
            g_string_append_c(r, (char)*p);
            space = FALSE;
        }
    }
    while (r->len && r->str[r->len - 1] == ' ')
        g_string_truncate(r, r->len - 1);
    if (r->len > 300) {
        const char *cut = g_utf8_find_prev_char(r->str, r->str + 297);
        g_string_truncate(r, cut ? (gsize)(cut - r->str) : 297);
        g_string_append(r, "...");
    }
    return g_string_free(r, FALSE);
}

static AliasStatus
run_child(Child *c, const AliasPriv *priv, int in_fd, gint64 timeout_s, const char *what,
          char **diag_r)
{
    if (priv->uid == 0) {
        *diag_r = g_strdup_printf("%s: refused to run as root", what);
        return ALIAS_PERM;
    }
    if (geteuid() == 0) {
        c->change_user = TRUE;
        c->uid = priv->uid;
        c->gid = priv->gid;
        c->ngroups = G_N_ELEMENTS(c->groups);
        if (!priv->user || getgrouplist(priv->user, priv->gid, c->groups, &c->ngroups) < 0) {
            c->groups[0] = priv->gid;
            c->ngroups = 1;
        }
    } else if (priv->uid != geteuid()) {
        *diag_r = g_strdup_printf("%s: cannot run as %s (uid %u): kurird is not running as root",
                                  what, priv->user ? priv->user : "?", (unsigned)priv->uid);
        return ALIAS_TEMP;
    }
    c->home = priv->home;
    if (lseek(in_fd, 0, SEEK_SET) < 0) {
        *diag_r = g_strdup_printf("%s: cannot rewind the message: %s", what, g_strerror(errno));
        return ALIAS_TEMP;
    }
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0) {
        *diag_r = g_strdup_printf("%s: %s", what, g_strerror(errno));
        return ALIAS_TEMP;
    }
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(p[0]);
        close(p[1]);
        *diag_r = g_strdup_printf("%s: cannot fork: %s", what, g_strerror(e));
        return ALIAS_TEMP;
    }
    if (pid == 0)
        child_main(c, in_fd, p[1]);
    close(p[1]);
    GString *out = g_string_new(NULL);
    gint64 deadline = g_get_monotonic_time() + timeout_s * G_USEC_PER_SEC;
    gboolean eof = FALSE, timed_out = FALSE;
    int status = 0;
    for (;;) {
        if (!eof) {
            struct pollfd pfd = {.fd = p[0], .events = POLLIN};
            if (poll(&pfd, 1, 50) > 0) {
                char buf[4096];
                ssize_t n = read(p[0], buf, sizeof buf);
                if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN))
                    eof = TRUE;
                else if (n > 0 && out->len < ALIAS_OUTPUT_MAX)
                    g_string_append_len(out, buf, MIN((gsize)n, ALIAS_OUTPUT_MAX - out->len));
            }
        } else {
            g_usleep(10000);
        }
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid && eof)
            break;
        if (r == pid) {
            /* exited; read what is left without waiting for grandchildren */
            fcntl(p[0], F_SETFL, O_NONBLOCK);
            char buf[4096];
            ssize_t n;
            while ((n = read(p[0], buf, sizeof buf)) > 0)
                if (out->len < ALIAS_OUTPUT_MAX)
                    g_string_append_len(out, buf, MIN((gsize)n, ALIAS_OUTPUT_MAX - out->len));
            break;
        }
        if (g_get_monotonic_time() >= deadline) {
            kill(-pid, SIGKILL);
            kill(pid, SIGKILL);
            while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
                ;
            timed_out = TRUE;
            break;
        }
    }
    close(p[0]);
    g_autofree char *output = clean_output(out);
    g_string_free(out, TRUE);
    const char *sep = *output ? ": " : "";
    if (timed_out) {
        *diag_r = g_strdup_printf("%s: time limit of %" G_GINT64_FORMAT "s exceeded%s%s", what,
                                  timeout_s, sep, output);
        return ALIAS_PERM;
    }
    if (WIFSIGNALED(status)) {
        *diag_r =
            g_strdup_printf("%s: killed by signal %d%s%s", what, WTERMSIG(status), sep, output);
        return ALIAS_TEMP;
    }
    int code = WEXITSTATUS(status);
    if (code == 0) {
        *diag_r = g_strdup_printf("%s%s%s", what, sep, output);
        return ALIAS_OK;
    }
    *diag_r = g_strdup_printf("%s: exit status %d%s%s", what, code, sep, output);
    return code == 75 || code == 71 || code == 74 ? ALIAS_TEMP : ALIAS_PERM;
}

AliasStatus
alias_run_pipe(const AliasPriv *priv, const char *command, char **env, int in_fd, gint64 timeout_s,
               char **diag_r)
{
    Child c = {0};
    g_auto(GStrv) argv = alias_command_argv(command);
    g_autofree char *what = g_strdup_printf("command |%s", command);
    if (!argv[0]) {
        *diag_r = g_strdup_printf("%s: empty command", what);
        return ALIAS_PERM;
    }
    c.argv = argv;
    c.envp = env;
    return run_child(&c, priv, in_fd, timeout_s, what, diag_r);
}

AliasStatus
alias_run_file(const AliasPriv *priv, const char *path, int in_fd, gint64 timeout_s, char **diag_r)
{
    Child c = {.file_mode = TRUE, .path = path};
    g_autofree char *what = g_strdup_printf("file %s", path);
    return run_child(&c, priv, in_fd, timeout_s, what, diag_r);
}
