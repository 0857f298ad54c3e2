/* SPDX-License-Identifier: MIT */
/*
 * kr-control.c - the control socket DATA_DIR/run/control, through which
 * the kurir command asks the running daemon to act (queue flush, hold,
 * release, reload ...).
 *
 * Protocol: the client sends one line (at most 4096 bytes, words split on
 * spaces) and half-closes; the daemon answers "OK\n" or "ERR\n" followed
 * by free text, then closes. The socket is mode 0600 (owner only), in a
 * 0700 directory. Handlers run on the event loop and must be quick.
 *
 *   kr_control_start(error) / kr_control_stop()   daemon side
 *   kr_control_request(line, reply_r, error)       client side (public)
 */
#include "kr-startup.h"
#include "kr-registry-private.h"
#include <errno.h>
#include <glib-unix.h>
#include <glib/gstdio.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define CONTROL_MAX 4096

static int listen_fd = -1;
static guint listen_src;

typedef struct {
    int fd;
    guint src;
    GString *in;
} Client;

static char *
control_path(void)
{
    return g_build_filename(kr_data_dir(), "run", "control", NULL);
}

static void
client_answer(Client *c)
{
    g_autoptr(GString) out = g_string_new(NULL);
    g_auto(GStrv) argv = NULL;
    int argc = 0;
    char *line = c->in->str;
    line[strcspn(line, "\r\n")] = 0;
    argv = g_strsplit_set(g_strstrip(line), " \t", -1);
    GPtrArray *words = g_ptr_array_new();
    for (char **w = argv; *w; w++)
        if (**w)
            g_ptr_array_add(words, *w);
    g_ptr_array_add(words, NULL);
    argc = (int)words->len - 1;
    char **av = (char **)words->pdata;
    gboolean ok = FALSE;
    const KrControl *ctl = argc > 0 ? kr_registry_control(av[0]) : NULL;
    if (!ctl)
        g_string_append_printf(out, "unknown control command '%s'\n", argc ? av[0] : "");
    else
        ok = ctl->handle(ctl->self, argc, av, out);
    g_ptr_array_free(words, TRUE);
    g_autofree char *reply = g_strconcat(ok ? "OK\n" : "ERR\n", out->str, NULL);
    /* Replies are small; a blocking write to a local client is fine, but
     * bound it so a stuck client cannot hold the loop. */
    struct timeval tv = {.tv_sec = 1};
    setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    g_unix_set_fd_nonblocking(c->fd, FALSE, NULL);
    gsize off = 0, len = strlen(reply);
    while (off < len) {
        ssize_t n = send(c->fd, reply + off, len - off, MSG_NOSIGNAL);
        if (n <= 0)
            break;
        off += (gsize)n;
    }
}

static gboolean
client_read(gint fd, GIOCondition cond, gpointer ud)
{
    Client *c = ud;
    char buf[1024];
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return G_SOURCE_CONTINUE;
    if (n > 0) {
        g_string_append_len(c->in, buf, n);
        if (c->in->len <= CONTROL_MAX && !memchr(buf, '\n', (size_t)n))
            return G_SOURCE_CONTINUE;
    }
    if (c->in->len > CONTROL_MAX) {
        const char *e = "ERR\nrequest too long\n";
        (void)!write(fd, e, strlen(e));
    } else if (c->in->len > 0) {
        client_answer(c);
    }
    close(fd);
    g_string_free(c->in, TRUE);
    g_free(c);
    return G_SOURCE_REMOVE;
}

static gboolean
on_accept(gint fd, GIOCondition cond, gpointer ud)
{
    int c = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (c < 0)
        return G_SOURCE_CONTINUE;
    Client *cl = g_new0(Client, 1);
    cl->fd = c;
    cl->in = g_string_new(NULL);
    cl->src = g_unix_fd_add(c, G_IO_IN | G_IO_HUP, client_read, cl);
    return G_SOURCE_CONTINUE;
}

static gboolean
fill_addr(struct sockaddr_un *sa, GError **error)
{
    g_autofree char *path = control_path();
    memset(sa, 0, sizeof *sa);
    sa->sun_family = AF_UNIX;
    if (strlen(path) >= sizeof sa->sun_path) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_FILENAME_TOO_LONG,
                    "control socket path too long: %s", path);
        return FALSE;
    }
    strcpy(sa->sun_path, path);
    return TRUE;
}

gboolean
kr_control_start(GError **error)
{
    struct sockaddr_un sa;
    if (!fill_addr(&sa, error))
        return FALSE;
    g_autofree char *dir = g_path_get_dirname(sa.sun_path);
    g_mkdir_with_parents(dir, 0700);
    g_unlink(sa.sun_path);
    listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    mode_t old = umask(0077);
    int r = listen_fd < 0 ? -1 : bind(listen_fd, (struct sockaddr *)&sa, sizeof sa);
    umask(old);
    if (r < 0 || listen(listen_fd, 16) < 0) {
        g_set_error(error, G_IO_ERROR, g_io_error_from_errno(errno),
                    "cannot create control socket %s: %s", sa.sun_path, g_strerror(errno));
        if (listen_fd >= 0)
            close(listen_fd);
        listen_fd = -1;
        return FALSE;
    }
    listen_src = g_unix_fd_add(listen_fd, G_IO_IN, on_accept, NULL);
    return TRUE;
}

void
kr_control_stop(void)
{
    if (listen_fd < 0)
        return;
    g_source_remove(listen_src);
    close(listen_fd);
    listen_fd = -1;
    g_autofree char *path = control_path();
    g_unlink(path);
}

gboolean
kr_control_request(const char *line, char **reply_r, GError **error)
{
    struct sockaddr_un sa;
    if (!fill_addr(&sa, error))
        return FALSE;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_NOT_CONNECTED,
                    "kurird is not running (no control socket at %s: %s)", sa.sun_path,
                    g_strerror(errno));
        if (fd >= 0)
            close(fd);
        return FALSE;
    }
    struct timeval tv = {.tv_sec = 30};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    g_autofree char *req = g_strconcat(line, "\n", NULL);
    (void)!write(fd, req, strlen(req));
    shutdown(fd, SHUT_WR);
    GString *rep = g_string_new(NULL);
    char buf[4096];
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0 && rep->len < 16 * 1024 * 1024)
        g_string_append_len(rep, buf, n);
    close(fd);
    gboolean ok = g_str_has_prefix(rep->str, "OK\n");
    if (!ok && !g_str_has_prefix(rep->str, "ERR\n")) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED, "no answer from kurird");
        g_string_free(rep, TRUE);
        return FALSE;
    }
    char *body = g_strdup(rep->str + (ok ? 3 : 4));
    g_string_free(rep, TRUE);
    if (!ok) {
        g_strchomp(body);
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED, "%s", body);
        g_free(body);
        return FALSE;
    }
    if (reply_r)
        *reply_r = body;
    else
        g_free(body);
    return TRUE;
}
