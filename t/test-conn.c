/* SPDX-License-Identifier: MIT */
/*
 * test-conn.c - the connection layer (core/kr-conn*.c) and the TLS helpers
 * (core/kr-tls.c), over real loopback TCP sockets.
 *
 *   /conn/echo, /conn/pipelining, /conn/input-limit, /conn/pause-resume,
 *   /conn/flush-on-close, /conn/eof, /conn/reset, /conn/timeout,
 *   /conn/timeout-paused, /conn/starttls/..., /conn/tls/..., /conn/close-all,
 *   /conn/mapped-ipv4, /conn/idle-memory, /tls/...
 *
 * The server side is a KrConn on this process's main loop; the client is
 * a thread with blocking sockets (and OpenSSL when needed), which keeps
 * SIGPIPE blocked for itself only: the main thread keeps the default
 * action, so a server write that raised SIGPIPE would kill the test.
 */
#include "testlib.h"
#include "../core/kr-conn-private.h"
#include "../core/kr-internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

static SSL_CTX *server_ctx;
static SSL_CTX *client_ctx;

/* --- sockets ------------------------------------------------------------- */

static int
listen_local(guint16 *port_r)
{
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    g_assert_cmpint(lfd, >=, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    g_assert_cmpint(bind(lfd, (struct sockaddr *)&sa, sizeof sa), ==, 0);
    g_assert_cmpint(listen(lfd, 16), ==, 0);
    socklen_t len = sizeof sa;
    g_assert_cmpint(getsockname(lfd, (struct sockaddr *)&sa, &len), ==, 0);
    *port_r = ntohs(sa.sin_port);
    return lfd;
}

static void
set_client_timeouts(int fd)
{
    struct timeval tv = {.tv_sec = 15};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

static int
connect_to(guint16 port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    g_assert_cmpint(fd, >=, 0);
    struct sockaddr_in sa = {
        .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    g_assert_cmpint(connect(fd, (struct sockaddr *)&sa, sizeof sa), ==, 0);
    set_client_timeouts(fd);
    return fd;
}

/* A connected loopback pair: returns the accepted (server) end, blocking
 * as accept() gives it; *client_r is the client end. */
static int
tcp_pair(int *client_r, guint16 *server_port_r, guint16 *client_port_r)
{
    guint16 port;
    int lfd = listen_local(&port);
    *client_r = connect_to(port);
    int sfd = accept(lfd, NULL, NULL);
    g_assert_cmpint(sfd, >=, 0);
    close(lfd);
    if (server_port_r)
        *server_port_r = port;
    if (client_port_r) {
        struct sockaddr_in sa;
        socklen_t len = sizeof sa;
        g_assert_cmpint(getsockname(*client_r, (struct sockaddr *)&sa, &len), ==, 0);
        *client_port_r = ntohs(sa.sin_port);
    }
    return sfd;
}

/* --- the client thread --------------------------------------------------- */

typedef struct Client Client;
struct Client {
    int fd;
    SSL *ssl;
    GString *got;    /* everything received (after TLS: decrypted) */
    gsize tls_start; /* offset in got where TLS data starts */
    gboolean eof;
    char *fail;
    void (*run)(Client *);
    gpointer data;
    GThread *thread;
};

static void cl_fail(Client *cl, const char *fmt, ...) G_GNUC_PRINTF(2, 3);

static void
cl_fail(Client *cl, const char *fmt, ...)
{
    if (cl->fail)
        return;
    va_list ap;
    va_start(ap, fmt);
    cl->fail = g_strdup_vprintf(fmt, ap);
    va_end(ap);
}

static gpointer
client_main(gpointer p)
{
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &s, NULL);
    Client *cl = p;
    cl->run(cl);
    return NULL;
}

static Client *
client_start(int fd, void (*run)(Client *), gpointer data)
{
    Client *cl = g_new0(Client, 1);
    cl->fd = fd;
    cl->got = g_string_new(NULL);
    cl->run = run;
    cl->data = data;
    cl->thread = g_thread_new("client", client_main, cl);
    return cl;
}

static void
client_join(Client *cl)
{
    g_thread_join(cl->thread);
    g_assert_cmpstr(cl->fail, ==, NULL);
}

static void
client_free(Client *cl)
{
    if (cl->ssl)
        SSL_free(cl->ssl);
    if (cl->fd >= 0)
        close(cl->fd);
    g_string_free(cl->got, TRUE);
    g_free(cl->fail);
    g_free(cl);
}

static gboolean
cl_send_len(Client *cl, const char *data, gsize len)
{
    while (len > 0) {
        ssize_t n;
        if (cl->ssl) {
            n = SSL_write(cl->ssl, data, (int)len);
            if (n <= 0) {
                cl_fail(cl, "SSL_write failed");
                return FALSE;
            }
        } else {
            n = send(cl->fd, data, len, MSG_NOSIGNAL);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0) {
                cl_fail(cl, "send: %s", g_strerror(errno));
                return FALSE;
            }
        }
        data += n;
        len -= (gsize)n;
    }
    return TRUE;
}

static gboolean
cl_send(Client *cl, const char *s)
{
    return cl_send_len(cl, s, strlen(s));
}

/* >0 bytes appended, 0 EOF, -1 error or timeout */
static gssize
cl_read_some(Client *cl)
{
    char buf[16384];
    gssize n;
    if (cl->ssl) {
        n = SSL_read(cl->ssl, buf, sizeof buf);
        if (n <= 0) {
            int e = SSL_get_error(cl->ssl, (int)n);
            ERR_clear_error();
            return e == SSL_ERROR_ZERO_RETURN ? 0 : -1;
        }
    } else {
        do
            n = recv(cl->fd, buf, sizeof buf, 0);
        while (n < 0 && errno == EINTR);
        if (n < 0)
            return -1;
    }
    g_string_append_len(cl->got, buf, n);
    return n;
}

static gboolean
cl_wait(Client *cl, const char *needle)
{
    while (!strstr(cl->got->str + cl->tls_start, needle)) {
        gssize n = cl_read_some(cl);
        if (n <= 0) {
            cl_fail(cl, "%s while waiting for \"%s\" (got \"%s\")", n == 0 ? "EOF" : "error",
                    needle, cl->got->str);
            return FALSE;
        }
    }
    return TRUE;
}

static gboolean
cl_wait_len(Client *cl, gsize len)
{
    while (cl->got->len < len) {
        if (cl_read_some(cl) <= 0) {
            cl_fail(cl, "EOF or error after %zu of %zu bytes", cl->got->len, len);
            return FALSE;
        }
    }
    return TRUE;
}

static gboolean
cl_wait_eof(Client *cl)
{
    gssize n;
    while ((n = cl_read_some(cl)) > 0)
        ;
    if (n < 0) {
        cl_fail(cl, "error or timeout instead of EOF (got %zu bytes)", cl->got->len);
        return FALSE;
    }
    cl->eof = TRUE;
    return TRUE;
}

static gboolean
cl_starttls(Client *cl)
{
    cl->ssl = SSL_new(client_ctx);
    SSL_set_fd(cl->ssl, cl->fd);
    SSL_set_tlsext_host_name(cl->ssl, "localhost");
    if (SSL_connect(cl->ssl) != 1) {
        unsigned long e = ERR_get_error();
        char buf[256] = "";
        ERR_error_string_n(e, buf, sizeof buf);
        ERR_clear_error();
        cl_fail(cl, "SSL_connect failed: %s", buf);
        return FALSE;
    }
    cl->tls_start = cl->got->len;
    return TRUE;
}

/* --- the server side ------------------------------------------------------ */

typedef struct {
    GMainLoop *loop;
    KrConn *conn;
    gboolean watchdog;
    int ready, closed, released, timeouts, tls_dones, calls;
    gboolean ready_ok, tls_ok, tls_at_ready, quit_on_close;
    KrConnCloseReason why;
    GPtrArray *lines;
    GString *data;
    gboolean paused, in_resume, called_while_paused, called_in_resume;
    char *tls_info;
    gint64 t0, t_event;
    gsize max_len, last_len, len_at_resume;
    gboolean consumed_since;
    int spurious, fills;
    guint16 server_port, client_port;
} Srv;

static Srv *
srv_new(void)
{
    Srv *s = g_new0(Srv, 1);
    s->loop = g_main_loop_new(NULL, FALSE);
    s->lines = g_ptr_array_new_with_free_func(g_free);
    s->data = g_string_new(NULL);
    s->quit_on_close = TRUE;
    s->t0 = g_get_monotonic_time();
    return s;
}

static void
srv_free(Srv *s)
{
    g_main_loop_unref(s->loop);
    g_ptr_array_unref(s->lines);
    g_string_free(s->data, TRUE);
    g_free(s->tls_info);
    g_free(s);
}

static gboolean
watchdog_cb(gpointer p)
{
    Srv *s = p;
    s->watchdog = TRUE;
    g_main_loop_quit(s->loop);
    return G_SOURCE_REMOVE;
}

static void
srv_run(Srv *s)
{
    guint wd = g_timeout_add_seconds(25, watchdog_cb, s);
    g_main_loop_run(s->loop);
    g_assert_false(s->watchdog);
    g_source_remove(wd);
}

static void
on_closed(KrConn *c, KrConnCloseReason why, gpointer ud)
{
    Srv *s = ud;
    g_assert_true(c == s->conn);
    s->closed++;
    s->why = why;
    if (s->quit_on_close)
        g_main_loop_quit(s->loop);
}

static void
on_release(KrConn *c, gpointer ud)
{
    Srv *s = ud;
    /* the closed handler (if any) ran before */
    g_assert_true(s->closed == 1 || s->ready_ok == FALSE);
    s->released++;
}

/* A complete line from the input, consumed, without its CRLF; or NULL. */
static char *
take_line(KrConn *c)
{
    gsize len;
    const char *in = kr_conn_input(c, &len);
    const char *nl = memchr(in, '\n', len);
    if (!nl)
        return NULL;
    gsize n = (gsize)(nl - in);
    char *line = g_strndup(in, n > 0 && in[n - 1] == '\r' ? n - 1 : n);
    kr_conn_consume(c, n + 1);
    return line;
}

/* Echo protocol: "ECHO <line>"; QUIT answers BYE and closes; BIG writes
 * 1 MiB and closes. */
static void
echo_read(KrConn *c, gpointer ud)
{
    Srv *s = ud;
    s->calls++;
    char *line;
    while ((line = take_line(c))) {
        g_ptr_array_add(s->lines, line);
        if (strcmp(line, "QUIT") == 0) {
            kr_conn_printf(c, "BYE\r\n");
            kr_conn_close(c);
            return;
        }
        if (strcmp(line, "BIG") == 0) {
            char *big = g_malloc(1 << 20);
            for (int i = 0; i < 1 << 20; i++)
                big[i] = (char)('a' + i % 26);
            kr_conn_write(c, big, 1 << 20);
            g_free(big);
            kr_conn_close(c);
            return;
        }
        kr_conn_printf(c, "ECHO %s\r\n", line);
    }
}

static const KrConnHandlers echo_handlers = {.read = echo_read, .closed = on_closed};

static void
ready_echo(KrConn *c, gboolean ok, gpointer ud)
{
    Srv *s = ud;
    s->ready++;
    s->ready_ok = ok;
    if (!ok)
        return;
    s->tls_at_ready = kr_conn_is_tls(c);
    s->tls_info = kr_conn_tls_info(c);
    kr_conn_set_handlers(c, &echo_handlers, s);
}

/* Accept side: wrap the server end of a fresh pair; returns the client fd. */
static int
srv_conn(Srv *s, SSL_CTX *ctx, gboolean implicit, KrConnReadyFunc ready)
{
    int cfd;
    int sfd = tcp_pair(&cfd, &s->server_port, &s->client_port);
    s->conn = kr_conn_new(sfd, "test", ctx, implicit, ready, s);
    g_assert_nonnull(s->conn);
    g_assert_true(fcntl(sfd, F_GETFL) & O_NONBLOCK);
    kr_conn_set_release(s->conn, on_release, s);
    return cfd;
}

/* --- /conn/echo ------------------------------------------------------------------ */

static void
client_echo(Client *cl)
{
    (void)(cl_send(cl, "hello\r\nworld\r\n") && cl_wait(cl, "ECHO world\r\n") &&
           cl_send(cl, "QUIT\r\n") && cl_wait_eof(cl));
}

static void
test_echo(void)
{
    Srv *s = srv_new();
    guint before = kr_conn_count();
    int cfd = srv_conn(s, NULL, FALSE, ready_echo);
    g_assert_cmpuint(kr_conn_count(), ==, before + 1);
    g_assert_cmpstr(kr_conn_peer_ip(s->conn), ==, "127.0.0.1");
    g_assert_cmpstr(kr_conn_local_ip(s->conn), ==, "127.0.0.1");
    g_assert_cmpuint(kr_conn_peer_port(s->conn), ==, s->client_port);
    g_assert_cmpuint(kr_conn_local_port(s->conn), ==, s->server_port);
    g_assert_cmpstr(kr_conn_listener(s->conn), ==, "test");
    g_assert_null(kr_conn_listener_tls(s->conn));
    g_assert_false(kr_conn_is_tls(s->conn));
    g_assert_null(kr_conn_tls_info(s->conn));
    /* on_ready runs from the loop, not from kr_conn_new */
    g_assert_cmpint(s->ready, ==, 0);
    Client *cl = client_start(cfd, client_echo, s);
    srv_run(s);
    client_join(cl);
    g_assert_cmpint(s->ready, ==, 1);
    g_assert_true(s->ready_ok);
    g_assert_false(s->tls_at_ready);
    g_assert_cmpstr(cl->got->str, ==, "ECHO hello\r\nECHO world\r\nBYE\r\n");
    g_assert_true(cl->eof);
    g_assert_cmpint(s->closed, ==, 1);
    g_assert_cmpint(s->why, ==, KR_CONN_CLOSED_LOCAL);
    g_assert_cmpint(s->released, ==, 1);
    g_assert_cmpuint(kr_conn_count(), ==, before);
    /* nothing more is pending for the conn */
    while (g_main_context_iteration(NULL, FALSE))
        ;
    g_assert_cmpint(s->closed, ==, 1);
    g_assert_cmpint(s->released, ==, 1);
    client_free(cl);
    srv_free(s);
}

/* --- /conn/pipelining ------------------------------------------------------------ */

#define PIPELINED 3000

static gboolean
resume_cb(gpointer p)
{
    Srv *s = p;
    s->paused = FALSE;
    kr_conn_input(s->conn, &s->len_at_resume);
    s->in_resume = TRUE;
    kr_conn_resume(s->conn);
    s->in_resume = FALSE;
    return G_SOURCE_REMOVE;
}

/* One command per call, then pause and resume later: how an asynchronous
 * protocol works. */
static void
async_read(KrConn *c, gpointer ud)
{
    Srv *s = ud;
    s->calls++;
    if (s->paused)
        s->called_while_paused = TRUE;
    if (s->in_resume)
        s->called_in_resume = TRUE;
    char *line = take_line(c);
    if (!line)
        return;
    g_ptr_array_add(s->lines, line);
    if (strcmp(line, "QUIT") == 0) {
        kr_conn_printf(c, "BYE\r\n");
        kr_conn_close(c);
        return;
    }
    kr_conn_printf(c, "ok %s\r\n", line);
    kr_conn_pause(c);
    s->paused = TRUE;
    g_idle_add(resume_cb, s);
}

static void
ready_async(KrConn *c, gboolean ok, gpointer ud)
{
    static const KrConnHandlers h = {.read = async_read, .closed = on_closed};
    Srv *s = ud;
    s->ready++;
    s->ready_ok = ok;
    if (ok)
        kr_conn_set_handlers(c, &h, s);
}

static void
client_pipelining(Client *cl)
{
    GString *req = g_string_new(NULL);
    for (int i = 0; i < PIPELINED; i++)
        g_string_append_printf(req, "%04d\r\n", i);
    g_string_append(req, "QUIT\r\n");
    (void)(cl_send_len(cl, req->str, req->len) && cl_wait_eof(cl));
    g_string_free(req, TRUE);
}

static void
test_pipelining(void)
{
    Srv *s = srv_new();
    int cfd = srv_conn(s, NULL, FALSE, ready_async);
    Client *cl = client_start(cfd, client_pipelining, s);
    srv_run(s);
    client_join(cl);
    g_assert_cmpuint(s->lines->len, ==, PIPELINED + 1);
    GString *want = g_string_new(NULL);
    for (int i = 0; i < PIPELINED; i++) {
        char num[8];
        g_snprintf(num, sizeof num, "%04d", i);
        g_assert_cmpstr(s->lines->pdata[i], ==, num);
        g_string_append_printf(want, "ok %s\r\n", num);
    }
    g_string_append(want, "BYE\r\n");
    g_assert_cmpstr(cl->got->str, ==, want->str);
    g_assert_false(s->called_while_paused);
    g_assert_false(s->called_in_resume);
    g_assert_cmpint(s->closed, ==, 1);
    g_assert_cmpint(s->why, ==, KR_CONN_CLOSED_LOCAL);
    g_string_free(want, TRUE);
    client_free(cl);
    srv_free(s);
}

/* --- /conn/input-limit ------------------------------------------------------------ */

#define LIMIT       16
#define LIMIT_TOTAL 100

static gboolean
drain_cb(gpointer p)
{
    Srv *s = p;
    gsize len;
    const char *in = kr_conn_input(s->conn, &len);
    /* nothing new while the buffer was full */
    g_assert_cmpuint(len, ==, LIMIT);
    g_string_append_len(s->data, in, (gssize)len);
    kr_conn_consume(s->conn, len);
    s->consumed_since = TRUE;
    return G_SOURCE_REMOVE;
}

static void
limit_read(KrConn *c, gpointer ud)
{
    Srv *s = ud;
    gsize len;
    const char *in = kr_conn_input(c, &len);
    s->calls++;
    s->max_len = MAX(s->max_len, len);
    if (!s->consumed_since && len == s->last_len)
        s->spurious++; /* called again with nothing new */
    s->last_len = len;
    s->consumed_since = FALSE;
    if (s->data->len + len == LIMIT_TOTAL) {
        g_string_append_len(s->data, in, (gssize)len);
        kr_conn_consume(c, len);
        kr_conn_printf(c, "done\r\n");
        kr_conn_close(c);
    } else if (len == LIMIT) {
        /* full: leave it there for a while; reading must stop */
        s->fills++;
        g_timeout_add(100, drain_cb, s);
    }
}

static void
ready_limit(KrConn *c, gboolean ok, gpointer ud)
{
    static const KrConnHandlers h = {.read = limit_read, .closed = on_closed};
    Srv *s = ud;
    kr_conn_set_input_limit(c, LIMIT);
    kr_conn_set_handlers(c, &h, s);
}

static void
client_limit(Client *cl)
{
    char buf[LIMIT_TOTAL];
    for (int i = 0; i < LIMIT_TOTAL; i++)
        buf[i] = (char)('A' + i % 26);
    (void)(cl_send_len(cl, buf, sizeof buf) && cl_wait_eof(cl));
}

static void
test_input_limit(void)
{
    Srv *s = srv_new();
    s->last_len = G_MAXSIZE;
    int cfd = srv_conn(s, NULL, FALSE, ready_limit);
    Client *cl = client_start(cfd, client_limit, s);
    srv_run(s);
    client_join(cl);
    g_assert_cmpstr(cl->got->str, ==, "done\r\n");
    g_assert_cmpuint(s->max_len, ==, LIMIT);
    g_assert_cmpint(s->spurious, ==, 0);
    g_assert_cmpint(s->fills, ==, LIMIT_TOTAL / LIMIT);
    g_assert_cmpuint(s->data->len, ==, LIMIT_TOTAL);
    for (int i = 0; i < LIMIT_TOTAL; i++)
        g_assert_cmpint(s->data->str[i], ==, 'A' + i % 26);
    g_assert_cmpint(s->closed, ==, 1);
    client_free(cl);
    srv_free(s);
}

/* --- /conn/pause-resume ------------------------------------------------------------ */

static void
pause_read(KrConn *c, gpointer ud)
{
    Srv *s = ud;
    s->calls++;
    if (s->paused)
        s->called_while_paused = TRUE;
    if (s->in_resume)
        s->called_in_resume = TRUE;
    char *line;
    while ((line = take_line(c))) {
        g_ptr_array_add(s->lines, line);
        kr_conn_printf(c, "got %s\r\n", line);
        if (strcmp(line, "one") == 0) {
            /* paused with "two" still buffered */
            kr_conn_pause(c);
            s->paused = TRUE;
            s->t_event = g_get_monotonic_time();
            g_timeout_add(300, resume_cb, s);
            return;
        }
        if (strcmp(line, "two") == 0) {
            g_assert_cmpuint(s->calls, ==, 2);
            s->t_event = g_get_monotonic_time() - s->t_event;
        }
        if (strcmp(line, "three") == 0)
            kr_conn_close(c);
    }
}

static void
ready_pause(KrConn *c, gboolean ok, gpointer ud)
{
    static const KrConnHandlers h = {.read = pause_read, .closed = on_closed};
    kr_conn_set_handlers(c, &h, ud);
}

static void
client_pause(Client *cl)
{
    (void)(cl_send(cl, "one\r\ntwo\r\n") && cl_wait(cl, "got one\r\n") &&
           cl_send(cl, "three\r\n") && cl_wait_eof(cl));
}

static void
test_pause_resume(void)
{
    Srv *s = srv_new();
    int cfd = srv_conn(s, NULL, FALSE, ready_pause);
    Client *cl = client_start(cfd, client_pause, s);
    srv_run(s);
    client_join(cl);
    g_assert_cmpstr(cl->got->str, ==, "got one\r\ngot two\r\ngot three\r\n");
    g_assert_cmpuint(s->lines->len, ==, 3);
    g_assert_false(s->called_while_paused);
    g_assert_false(s->called_in_resume);
    /* "two" was handled only after the resume, 300 ms later */
    g_assert_cmpint(s->t_event, >=, 290 * 1000);
    g_assert_cmpint(s->calls, >=, 2);
    /* input is not read while paused: "three" (sent right after "got one")
     * was still in the socket when the conn resumed */
    g_assert_cmpuint(s->len_at_resume, ==, strlen("two\r\n"));
    g_assert_cmpint(s->why, ==, KR_CONN_CLOSED_LOCAL);
    client_free(cl);
    srv_free(s);
}

/* --- /conn/flush-on-close ------------------------------------------------------------ */

#define FLUSH_SIZE (4 << 20)

static void
ready_flush(KrConn *c, gboolean ok, gpointer ud)
{
    static const KrConnHandlers h = {.closed = on_closed};
    Srv *s = ud;
    kr_conn_set_handlers(c, &h, s);
    char chunk[65536];
    for (gsize off = 0; off < FLUSH_SIZE; off += sizeof chunk) {
        for (gsize i = 0; i < sizeof chunk; i++)
            chunk[i] = (char)((off + i) % 251);
        kr_conn_write(c, chunk, sizeof chunk);
    }
    s->max_len = kr_conn_output_pending(c);
    kr_conn_close(c);
    /* writing after close (before the flush is done) still goes out */
    kr_conn_printf(c, "END");
}

static void
client_slow_reader(Client *cl)
{
    g_usleep(300 * 1000);
    cl_wait_eof(cl);
}

static void
test_flush_on_close(void)
{
    Srv *s = srv_new();
    int cfd = srv_conn(s, NULL, FALSE, ready_flush);
    Client *cl = client_start(cfd, client_slow_reader, s);
    srv_run(s);
    client_join(cl);
    g_assert_cmpuint(s->max_len, ==, FLUSH_SIZE);
    g_assert_cmpuint(cl->got->len, ==, FLUSH_SIZE + 3);
    for (gsize i = 0; i < FLUSH_SIZE; i++)
        if ((guchar)cl->got->str[i] != i % 251)
            g_error("byte %zu differs", i);
    g_assert_cmpstr(cl->got->str + FLUSH_SIZE, ==, "END");
    g_assert_cmpint(s->closed, ==, 1);
    g_assert_cmpint(s->why, ==, KR_CONN_CLOSED_LOCAL);
    client_free(cl);
    srv_free(s);
}

/* --- /conn/eof -------------------------------------------------------------------- */

static void
eof_read(KrConn *c, gpointer ud)
{
    Srv *s = ud;
    s->calls++;
    if (kr_conn_eof(c)) {
        gsize len;
        const char *in = kr_conn_input(c, &len);
        s->ready_ok = TRUE;
        g_string_append_len(s->data, in, (gssize)len);
        s->fills++;
    }
}

static void
ready_eof(KrConn *c, gboolean ok, gpointer ud)
{
    static const KrConnHandlers h = {.read = eof_read, .closed = on_closed};
    kr_conn_set_handlers(c, &h, ud);
}

static void
client_eof(Client *cl)
{
    cl_send(cl, "partial");
    shutdown(cl->fd, SHUT_WR);
    cl_wait_eof(cl);
}

static void
test_eof(void)
{
    Srv *s = srv_new();
    int cfd = srv_conn(s, NULL, FALSE, ready_eof);
    Client *cl = client_start(cfd, client_eof, s);
    srv_run(s);
    client_join(cl);
    g_assert_true(cl->eof);
    g_assert_cmpint(s->fills, ==, 1); /* told about EOF exactly once */
    g_assert_cmpstr(s->data->str, ==, "partial");
    g_assert_cmpint(s->closed, ==, 1);
    g_assert_cmpint(s->why, ==, KR_CONN_CLOSED_EOF);
    client_free(cl);
    srv_free(s);
}

/* --- /conn/reset --------------------------------------------------------------------- */

static void
ready_flood(KrConn *c, gboolean ok, gpointer ud)
{
    static const KrConnHandlers h = {.read = echo_read, .closed = on_closed};
    Srv *s = ud;
    s->ready++;
    s->ready_ok = ok;
    if (!ok)
        return;
    kr_conn_set_handlers(c, &h, s);
    char *chunk = g_malloc0(1 << 20);
    for (int i = 0; i < 8; i++)
        kr_conn_write(c, chunk, 1 << 20);
    g_free(chunk);
}

static void
client_reset(Client *cl)
{
    if (GPOINTER_TO_INT(cl->data) && !cl_starttls(cl))
        return;
    if (!cl_wait_len(cl, 1))
        return;
    /* leave most of it unread and reset the connection */
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    setsockopt(cl->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    if (cl->ssl) {
        SSL_free(cl->ssl);
        cl->ssl = NULL;
    }
    close(cl->fd);
    cl->fd = -1;
}

static void
test_reset(gconstpointer tls)
{
    Srv *s = srv_new();
    int cfd = srv_conn(s, tls ? server_ctx : NULL, tls != NULL, ready_flood);
    Client *cl = client_start(cfd, client_reset, GINT_TO_POINTER(tls != NULL));
    srv_run(s);
    client_join(cl);
    g_assert_true(s->ready_ok);
    g_assert_cmpint(s->closed, ==, 1);
    g_assert_cmpint(s->why, ==, KR_CONN_CLOSED_ERROR);
    client_free(cl);
    srv_free(s);
}

/* --- /conn/timeout ------------------------------------------------------------------- */

static void
on_timeout(KrConn *c, gpointer ud)
{
    Srv *s = ud;
    s->timeouts++;
    s->t_event = g_get_monotonic_time() - s->t0;
    kr_conn_printf(c, "421 timeout\r\n");
}

static void
ready_timeout(KrConn *c, gboolean ok, gpointer ud)
{
    static const KrConnHandlers h = {.read = echo_read, .timeout = on_timeout, .closed = on_closed};
    Srv *s = ud;
    s->t0 = g_get_monotonic_time();
    kr_conn_set_handlers(c, &h, s);
    kr_conn_set_timeout(c, 1);
}

static void
client_timeout(Client *cl)
{
    g_usleep(600 * 1000);
    cl_send(cl, "a\r\n");
    g_usleep(600 * 1000);
    (void)(cl_send(cl, "b\r\n") && cl_wait_eof(cl));
}

static void
test_timeout(void)
{
    Srv *s = srv_new();
    int cfd = srv_conn(s, NULL, FALSE, ready_timeout);
    Client *cl = client_start(cfd, client_timeout, s);
    srv_run(s);
    client_join(cl);
    g_assert_cmpstr(cl->got->str, ==, "ECHO a\r\nECHO b\r\n421 timeout\r\n");
    g_assert_cmpint(s->timeouts, ==, 1);
    /* every input restarted the 1 s timer: the last came at 1.2 s */
    g_assert_cmpint(s->t_event, >=, 2000 * 1000);
    g_assert_cmpint(s->t_event, <, 6000 * 1000);
    g_assert_cmpint(s->closed, ==, 1);
    g_assert_cmpint(s->why, ==, KR_CONN_CLOSED_TIMEOUT);
    client_free(cl);
    srv_free(s);
}

/* The idle timer does not run while the server keeps the conn paused. */
static gboolean
work_done_cb(gpointer p)
{
    Srv *s = p;
    kr_conn_printf(s->conn, "done\r\n");
    kr_conn_resume(s->conn);
    s->t0 = g_get_monotonic_time();
    return G_SOURCE_REMOVE;
}

static void
work_read(KrConn *c, gpointer ud)
{
    Srv *s = ud;
    char *line = take_line(c);
    if (line) {
        kr_conn_pause(c);
        g_timeout_add(1600, work_done_cb, s);
        g_free(line);
    }
}

static void
ready_work(KrConn *c, gboolean ok, gpointer ud)
{
    static const KrConnHandlers h = {.read = work_read, .timeout = on_timeout, .closed = on_closed};
    kr_conn_set_handlers(c, &h, ud);
    kr_conn_set_timeout(c, 1);
}

static void
client_work(Client *cl)
{
    (void)(cl_send(cl, "work\r\n") && cl_wait_eof(cl));
}

static void
test_timeout_paused(void)
{
    Srv *s = srv_new();
    int cfd = srv_conn(s, NULL, FALSE, ready_work);
    Client *cl = client_start(cfd, client_work, s);
    srv_run(s);
    client_join(cl);
    g_assert_cmpstr(cl->got->str, ==, "done\r\n421 timeout\r\n");
    g_assert_cmpint(s->timeouts, ==, 1);
    /* counted from the resume (t0), after the output went out */
    g_assert_cmpint(s->t_event, >=, 900 * 1000);
    g_assert_cmpint(s->why, ==, KR_CONN_CLOSED_TIMEOUT);
    client_free(cl);
    srv_free(s);
}

/* --- /conn/starttls ------------------------------------------------------------------- */

static void
starttls_done(KrConn *c, gboolean ok, gpointer ud)
{
    Srv *s = ud;
    s->tls_dones++;
    s->tls_ok = ok;
    s->tls_at_ready = kr_conn_is_tls(c);
    s->tls_info = kr_conn_tls_info(c);
}

/* Like async_read, but STARTTLS starts TLS right in the handler. */
static void
starttls_read(KrConn *c, gpointer ud)
{
    Srv *s = ud;
    s->calls++;
    if (s->paused)
        s->called_while_paused = TRUE;
    char *line = take_line(c);
    if (!line)
        return;
    g_ptr_array_add(s->lines, line);
    if (strcmp(line, "STARTTLS") == 0) {
        g_autoptr(GError) err = NULL;
        kr_conn_printf(c, "220 go\r\n");
        g_assert_true(kr_conn_start_tls(c, kr_conn_listener_tls(c), &err));
        g_assert_no_error(err);
        /* everything that came with the command is gone */
        gsize len;
        kr_conn_input(c, &len);
        g_assert_cmpuint(len, ==, 0);
        /* a second STARTTLS is refused */
        g_assert_false(kr_conn_start_tls(c, kr_conn_listener_tls(c), &err));
        g_assert_error(err, G_IO_ERROR, G_IO_ERROR_EXISTS);
        return;
    }
    if (strcmp(line, "QUIT") == 0) {
        kr_conn_printf(c, "BYE\r\n");
        kr_conn_close(c);
        return;
    }
    kr_conn_printf(c, "ECHO %s\r\n", line);
    kr_conn_pause(c);
    s->paused = TRUE;
    g_idle_add(resume_cb, s);
}

static void
ready_starttls(KrConn *c, gboolean ok, gpointer ud)
{
    static const KrConnHandlers h = {
        .read = starttls_read, .tls_done = starttls_done, .closed = on_closed};
    kr_conn_set_handlers(c, &h, ud);
}

static void
client_starttls(Client *cl)
{
    const char *first = cl->data;
    /* one packet: the command and an injected command right behind it */
    if (!cl_send(cl, first) || !cl_wait(cl, "220 go\r\n"))
        return;
    /* nothing else came in clear */
    if (strstr(cl->got->str, "INJECTED")) {
        cl_fail(cl, "the injected command was answered in clear");
        return;
    }
    (void)(cl_starttls(cl) && cl_send(cl, "AFTER\r\n") && cl_wait(cl, "ECHO AFTER\r\n") &&
           cl_send(cl, "QUIT\r\n") && cl_wait_eof(cl));
}

static void
test_starttls(gconstpointer first)
{
    Srv *s = srv_new();
    int cfd = srv_conn(s, server_ctx, FALSE, ready_starttls);
    g_assert_true(kr_conn_listener_tls(s->conn) == server_ctx);
    Client *cl = client_start(cfd, client_starttls, (gpointer)first);
    srv_run(s);
    client_join(cl);
    g_assert_cmpint(s->tls_dones, ==, 1);
    g_assert_true(s->tls_ok);
    g_assert_true(s->tls_at_ready);
    g_assert_nonnull(s->tls_info);
    g_assert_true(g_str_has_prefix(s->tls_info, "TLSv1.3 with cipher TLS_"));
    g_assert_true(g_str_has_suffix(s->tls_info, " bits)"));
    /* the plaintext part, then the TLS part */
    g_autofree char *clear = g_strndup(cl->got->str, cl->tls_start);
    gboolean noop = g_str_has_prefix(first, "NOOP");
    g_assert_cmpstr(clear, ==, noop ? "ECHO NOOP\r\n220 go\r\n" : "220 go\r\n");
    g_assert_cmpstr(cl->got->str + cl->tls_start, ==, "ECHO AFTER\r\nBYE\r\n");
    /* INJECTED was never seen as a command */
    GString *cmds = g_string_new(NULL);
    for (guint i = 0; i < s->lines->len; i++)
        g_string_append_printf(cmds, "%s ", (char *)s->lines->pdata[i]);
    g_assert_cmpstr(cmds->str, ==, noop ? "NOOP STARTTLS AFTER QUIT " : "STARTTLS AFTER QUIT ");
    g_string_free(cmds, TRUE);
    g_assert_false(s->called_while_paused);
    g_assert_cmpint(s->closed, ==, 1);
    g_assert_cmpint(s->why, ==, KR_CONN_CLOSED_LOCAL);
    client_free(cl);
    srv_free(s);
}

/* --- /conn/tls/implicit ---------------------------------------------------------------- */

#define TLS_LINES 2000

static void
ready_echo_small(KrConn *c, gboolean ok, gpointer ud)
{
    ready_echo(c, ok, ud);
    /* smaller than one TLS record: the rest must be taken from OpenSSL's
     * buffer without the socket becoming readable again */
    if (ok)
        kr_conn_set_input_limit(c, 1000);
}

static void
client_implicit(Client *cl)
{
    if (!cl_starttls(cl))
        return;
    GString *req = g_string_new(NULL);
    for (int i = 0; i < TLS_LINES; i++)
        g_string_append_printf(req, "line number %05d\r\n", i);
    (void)(cl_send_len(cl, req->str, req->len) && cl_wait(cl, "ECHO line number 01999\r\n") &&
           cl_send(cl, "BIG\r\n") && cl_wait_eof(cl));
    g_string_free(req, TRUE);
}

static void
test_tls_implicit(void)
{
    Srv *s = srv_new();
    int cfd = srv_conn(s, server_ctx, TRUE, ready_echo_small);
    Client *cl = client_start(cfd, client_implicit, s);
    srv_run(s);
    client_join(cl);
    g_assert_cmpint(s->ready, ==, 1);
    g_assert_true(s->ready_ok);
    g_assert_true(s->tls_at_ready);
    g_assert_nonnull(s->tls_info);
    g_assert_nonnull(strstr(s->tls_info, " with cipher "));
    g_assert_cmpuint(s->lines->len, ==, TLS_LINES + 1);
    gsize echo_len = 0;
    for (int i = 0; i < TLS_LINES; i++) {
        char want[64];
        g_snprintf(want, sizeof want, "line number %05d", i);
        g_assert_cmpstr(s->lines->pdata[i], ==, want);
        echo_len += strlen("ECHO \r\n") + strlen(want);
    }
    /* all echoes in order, then the 1 MiB, flushed before the close */
    g_assert_cmpuint(cl->got->len, ==, echo_len + (1 << 20));
    g_assert_true(
        g_str_has_prefix(cl->got->str, "ECHO line number 00000\r\nECHO line number 00001"));
    g_assert_cmpint(cl->got->str[echo_len], ==, 'a');
    g_assert_cmpint(cl->got->str[cl->got->len - 1], ==, 'a' + ((1 << 20) - 1) % 26);
    g_assert_cmpint(s->closed, ==, 1);
    g_assert_cmpint(s->why, ==, KR_CONN_CLOSED_LOCAL);
    client_free(cl);
    srv_free(s);
}

/* Plaintext to a TLS port: on_ready(FALSE), then the conn is freed. */
static void
client_plain_to_tls(Client *cl)
{
    (void)(cl_send(cl, "EHLO client\r\n") && cl_wait_eof(cl));
}

static void
test_tls_implicit_fail(void)
{
    Srv *s = srv_new();
    guint before = kr_conn_count();
    int cfd = srv_conn(s, server_ctx, TRUE, ready_echo);
    Client *cl = client_start(cfd, client_plain_to_tls, s);
    guint wd = g_timeout_add_seconds(25, watchdog_cb, s);
    while (s->released == 0 && !s->watchdog)
        g_main_context_iteration(NULL, TRUE);
    g_assert_false(s->watchdog);
    g_source_remove(wd);
    client_join(cl);
    g_assert_cmpint(s->ready, ==, 1);
    g_assert_false(s->ready_ok);
    g_assert_cmpint(s->closed, ==, 0); /* no handlers were set */
    g_assert_cmpint(s->released, ==, 1);
    g_assert_cmpuint(kr_conn_count(), ==, before);
    /* the server sent no plaintext answer */
    g_assert_null(strstr(cl->got->str, "ECHO"));
    client_free(cl);
    srv_free(s);
}

/* --- /conn/tls/client: both ends are KrConns ------------------------------------------------ */

typedef struct {
    GMainLoop *loop;
    KrConn *srv, *cli;
    int srv_done, cli_done, srv_closed, cli_closed;
    gboolean srv_ok, cli_ok;
    KrConnCloseReason srv_why, cli_why;
    GString *cli_got, *srv_got;
} Pair;

static void
pair_srv_read(KrConn *c, gpointer ud)
{
    Pair *p = ud;
    char *line;
    while ((line = take_line(c))) {
        g_string_append_printf(p->srv_got, "%s|", line);
        if (strcmp(line, "PING") == 0)
            kr_conn_printf(c, "PONG\r\n");
        g_free(line);
    }
}

static void
pair_cli_read(KrConn *c, gpointer ud)
{
    Pair *p = ud;
    char *line;
    while ((line = take_line(c))) {
        g_string_append_printf(p->cli_got, "%s|", line);
        if (strcmp(line, "PONG") == 0)
            kr_conn_close(c);
        g_free(line);
    }
}

static void
pair_tls_done(KrConn *c, gboolean ok, gpointer ud)
{
    Pair *p = ud;
    if (c == p->srv) {
        p->srv_done++;
        p->srv_ok = ok && kr_conn_is_tls(c);
    } else {
        p->cli_done++;
        p->cli_ok = ok && kr_conn_is_tls(c);
        kr_conn_printf(c, "PING\r\n");
    }
}

static void
pair_closed(KrConn *c, KrConnCloseReason why, gpointer ud)
{
    Pair *p = ud;
    if (c == p->srv) {
        p->srv_closed++;
        p->srv_why = why;
    } else {
        p->cli_closed++;
        p->cli_why = why;
    }
    if (p->srv_closed && p->cli_closed)
        g_main_loop_quit(p->loop);
}

static void
test_tls_client(void)
{
    static const KrConnHandlers sh = {
        .read = pair_srv_read, .tls_done = pair_tls_done, .closed = pair_closed};
    static const KrConnHandlers ch = {
        .read = pair_cli_read, .tls_done = pair_tls_done, .closed = pair_closed};
    Pair p = {.loop = g_main_loop_new(NULL, FALSE)};
    p.cli_got = g_string_new(NULL);
    p.srv_got = g_string_new(NULL);
    int cfd;
    guint16 sport;
    int sfd = tcp_pair(&cfd, &sport, NULL);
    p.srv = kr_conn_new(sfd, "test", server_ctx, FALSE, NULL, NULL);
    p.cli = kr_conn_new(cfd, NULL, NULL, FALSE, NULL, NULL);
    g_assert_cmpstr(kr_conn_listener(p.cli), ==, "");
    g_assert_cmpuint(kr_conn_peer_port(p.cli), ==, sport);
    g_assert_cmpuint(kr_conn_id(p.cli), >, kr_conn_id(p.srv));
    kr_conn_set_handlers(p.srv, &sh, &p);
    kr_conn_set_handlers(p.cli, &ch, &p);
    g_autoptr(GError) err = NULL;
    g_assert_true(kr_conn_start_tls(p.srv, server_ctx, &err));
    g_assert_true(kr_conn_start_tls_client(p.cli, client_ctx, "localhost", &err));
    g_assert_no_error(err);
    Srv wd = {.loop = p.loop};
    guint wid = g_timeout_add_seconds(25, watchdog_cb, &wd);
    g_main_loop_run(p.loop);
    g_assert_false(wd.watchdog);
    g_source_remove(wid);
    g_assert_cmpint(p.srv_done, ==, 1);
    g_assert_cmpint(p.cli_done, ==, 1);
    g_assert_true(p.srv_ok);
    g_assert_true(p.cli_ok);
    g_assert_cmpstr(p.srv_got->str, ==, "PING|");
    g_assert_cmpstr(p.cli_got->str, ==, "PONG|");
    g_assert_cmpint(p.cli_closed, ==, 1);
    g_assert_cmpint(p.cli_why, ==, KR_CONN_CLOSED_LOCAL);
    g_assert_cmpint(p.srv_closed, ==, 1);
    g_assert_cmpint(p.srv_why, ==, KR_CONN_CLOSED_EOF);
    g_string_free(p.cli_got, TRUE);
    g_string_free(p.srv_got, TRUE);
    g_main_loop_unref(p.loop);
}

/* --- /conn/close-all ---------------------------------------------------------------------- */

static void
count_closed(KrConn *c, KrConnCloseReason why, gpointer ud)
{
    int *n = ud;
    g_assert_cmpint(why, ==, KR_CONN_CLOSED_SHUTDOWN);
    (*n)++;
}

static void
test_close_all(void)
{
    static const KrConnHandlers h = {.read = echo_read, .closed = count_closed};
    int closed = 0;
    guint before = kr_conn_count();
    int cfd[2];
    for (int i = 0; i < 2; i++) {
        int sfd = tcp_pair(&cfd[i], NULL, NULL);
        KrConn *c = kr_conn_new(sfd, "test", NULL, FALSE, NULL, NULL);
        kr_conn_set_handlers(c, &h, &closed);
        kr_conn_printf(c, "421 shutting down\r\n");
    }
    g_assert_cmpuint(kr_conn_count(), ==, before + 2);
    kr_conn_close_all();
    g_assert_cmpint(closed, ==, 2);
    g_assert_cmpuint(kr_conn_count(), ==, before);
    for (int i = 0; i < 2; i++) {
        char buf[256];
        gsize got = 0;
        ssize_t n;
        while ((n = recv(cfd[i], buf + got, sizeof buf - 1 - got, 0)) > 0)
            got += (gsize)n;
        g_assert_cmpint(n, ==, 0); /* EOF, not a timeout */
        buf[got] = 0;
        g_assert_cmpstr(buf, ==, "421 shutting down\r\n");
        close(cfd[i]);
    }
    while (g_main_context_iteration(NULL, FALSE))
        ;
    g_assert_cmpint(closed, ==, 2);
}

/* --- /conn/mapped-ipv4 ------------------------------------------------------------------- */

static void
test_mapped_ipv4(void)
{
    int lfd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (lfd < 0) {
        g_test_skip("no IPv6 sockets");
        return;
    }
    int zero = 0;
    setsockopt(lfd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
    struct sockaddr_in6 sa = {.sin6_family = AF_INET6};
    inet_pton(AF_INET6, "::ffff:127.0.0.1", &sa.sin6_addr);
    if (bind(lfd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(lfd, 4) < 0) {
        close(lfd);
        g_test_skip("cannot bind a v4-mapped address");
        return;
    }
    socklen_t len = sizeof sa;
    g_assert_cmpint(getsockname(lfd, (struct sockaddr *)&sa, &len), ==, 0);
    int cfd = connect_to(ntohs(sa.sin6_port));
    struct sockaddr_in6 peer;
    len = sizeof peer;
    int sfd = accept(lfd, (struct sockaddr *)&peer, &len);
    g_assert_cmpint(sfd, >=, 0);
    g_assert_cmpint(peer.sin6_family, ==, AF_INET6); /* the kernel's view: ::ffff:127.0.0.1 */
    close(lfd);
    KrConn *c = kr_conn_new(sfd, "v6", NULL, FALSE, NULL, NULL);
    g_assert_cmpstr(kr_conn_peer_ip(c), ==, "127.0.0.1");
    g_assert_cmpstr(kr_conn_local_ip(c), ==, "127.0.0.1");
    g_assert_cmpuint(kr_conn_local_port(c), ==, ntohs(sa.sin6_port));
    g_assert_cmpuint(kr_conn_peer_port(c), ==, ntohs(peer.sin6_port));
    kr_conn_close(c);
    guint before = kr_conn_count();
    while (kr_conn_count() == before)
        g_main_context_iteration(NULL, TRUE);
    close(cfd);
}

/* --- /conn/idle-memory ---------------------------------------------------------------------- */

static long
rss_kib(void)
{
    g_autofree char *s = NULL;
    g_assert_true(g_file_get_contents("/proc/self/statm", &s, NULL, NULL));
    long size, resident;
    g_assert_cmpint(sscanf(s, "%ld %ld", &size, &resident), ==, 2);
    return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

static void
idle_read(KrConn *c, gpointer ud)
{
    char *line;
    while ((line = take_line(c))) {
        kr_conn_printf(c, "ECHO %s\r\n", line);
        g_free(line);
    }
}

/* Make n idle connections that have each served one command. */
static void
make_idle(KrConn **conns, int *cfds, int n)
{
    static const KrConnHandlers h = {.read = idle_read};
    for (int i = 0; i < n; i++) {
        int sv[2];
        g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), ==, 0);
        cfds[i] = sv[1];
        conns[i] = kr_conn_new(sv[0], "mem", NULL, FALSE, NULL, NULL);
        kr_conn_set_handlers(conns[i], &h, NULL);
        kr_conn_set_timeout(conns[i], 300);
        g_assert_cmpint(send(sv[1], "hello\r\n", 7, 0), ==, 7);
    }
    gint64 deadline = g_get_monotonic_time() + 20 * G_USEC_PER_SEC;
    for (int i = 0; i < n; i++) {
        char buf[64];
        gsize got = 0;
        while (got < 12) {
            g_assert_cmpint(g_get_monotonic_time(), <, deadline);
            while (g_main_context_iteration(NULL, FALSE))
                ;
            ssize_t r = recv(cfds[i], buf + got, sizeof buf - got, MSG_DONTWAIT);
            if (r > 0)
                got += (gsize)r;
        }
        g_assert_cmpint(memcmp(buf, "ECHO hello\r\n", 12), ==, 0);
    }
    while (g_main_context_iteration(NULL, FALSE))
        ;
    for (int i = 0; i < n; i++) {
        gsize len;
        kr_conn_input(conns[i], &len);
        g_assert_cmpuint(len, ==, 0);
        g_assert_cmpuint(kr_conn_output_pending(conns[i]), ==, 0);
    }
}

static void
test_idle_memory(void)
{
    enum { N = 500 };
    int *cfds = g_new(int, 2 * N);
    KrConn **conns = g_new(KrConn *, 2 * N);
    guint before = kr_conn_count();
    /* the first batch warms up the allocator and GLib's poll arrays */
    make_idle(conns, cfds, N);
    long rss0 = rss_kib();
    make_idle(conns + N, cfds + N, N);
    long per_conn = (rss_kib() - rss0) * 1024 / N;
    g_test_message("%ld bytes RSS per idle connection", per_conn);
#ifdef KR_DEBUG_BUILD
    g_assert_cmpint(per_conn, <, 64 * 1024); /* ASan's redzones and shadow memory */
#else
    g_assert_cmpint(per_conn, <, 16 * 1024);
#endif
    g_assert_cmpuint(kr_conn_count(), ==, before + 2 * N);
    for (int i = 0; i < 2 * N; i++) {
        kr_conn_close(conns[i]);
        close(cfds[i]);
    }
    while (kr_conn_count() > before)
        g_main_context_iteration(NULL, TRUE);
    g_free(cfds);
    g_free(conns);
}

/* --- /tls ----------------------------------------------------------------------------------- */

static X509 *
read_cert(const char *path)
{
    FILE *f = fopen(path, "r");
    g_assert_nonnull(f);
    X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    g_assert_nonnull(x);
    return x;
}

static void
test_tls_selfsigned(void)
{
    g_autofree char *tmp = kr_test_tmpdir();
    g_autofree char *cert = g_build_filename(tmp, "a", "b", "cert.pem", NULL);
    g_autofree char *key = g_build_filename(tmp, "a", "k", "key.pem", NULL);
    g_autoptr(GError) err = NULL;
    g_assert_true(kr_tls_ensure_selfsigned(cert, key, &err));
    g_assert_no_error(err);
    struct stat st;
    g_assert_cmpint(stat(key, &st), ==, 0);
    g_assert_cmpint(st.st_mode & 07777, ==, 0600);
    g_assert_cmpint(stat(cert, &st), ==, 0);
    g_assert_cmpint(st.st_mode & 07777, ==, 0644);
    /* no temporary files left behind */
    g_autofree char *bdir = g_path_get_dirname(cert);
    GDir *d = g_dir_open(bdir, 0, NULL);
    int files = 0;
    while (g_dir_read_name(d))
        files++;
    g_dir_close(d);
    g_assert_cmpint(files, ==, 1);

    X509 *x = read_cert(cert);
    char cn[256] = "";
    X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, sizeof cn);
    g_assert_cmpstr(cn, ==, kr_hostname());
    g_assert_cmpint(X509_check_host(x, kr_hostname(), 0, 0, NULL), ==, 1);
    g_assert_cmpint(X509_check_host(x, "not-this-host.example", 0, 0, NULL), ==, 0);
    int days = 0, secs = 0;
    g_assert_true(ASN1_TIME_diff(&days, &secs, X509_get0_notBefore(x), X509_get0_notAfter(x)));
    g_assert_cmpint(days, >=, 3649);
    g_assert_cmpint(days, <=, 3651);
    const ASN1_INTEGER *serial = X509_get0_serialNumber(x);
    BIGNUM *bn = ASN1_INTEGER_to_BN(serial, NULL);
    g_assert_cmpint(BN_num_bits(bn), >, 64);
    g_assert_false(BN_is_negative(bn));
    BN_free(bn);
    /* self-signed: verifies with its own key */
    EVP_PKEY *pub = X509_get0_pubkey(x);
    g_assert_cmpint(X509_verify(x, pub), ==, 1);

    /* a server context loads it, and is cached */
    SSL_CTX *ctx = kr_tls_server_ctx(cert, key, &err);
    g_assert_no_error(err);
    g_assert_nonnull(ctx);
    g_assert_true(kr_tls_server_ctx(cert, key, NULL) == ctx);
    g_assert_cmpint(SSL_CTX_get_min_proto_version(ctx), ==, TLS1_2_VERSION);

    /* present files are kept */
    g_autofree char *pem1 = NULL;
    g_assert_true(g_file_get_contents(cert, &pem1, NULL, NULL));
    g_assert_true(kr_tls_ensure_selfsigned(cert, key, &err));
    g_autofree char *pem2 = NULL;
    g_assert_true(g_file_get_contents(cert, &pem2, NULL, NULL));
    g_assert_cmpstr(pem1, ==, pem2);

    /* a missing certificate makes a new pair (new random serial) */
    g_assert_cmpint(unlink(cert), ==, 0);
    g_assert_true(kr_tls_ensure_selfsigned(cert, key, &err));
    X509 *y = read_cert(cert);
    g_assert_cmpint(ASN1_INTEGER_cmp(X509_get0_serialNumber(x), X509_get0_serialNumber(y)), !=, 0);
    FILE *f = fopen(key, "r");
    EVP_PKEY *pk = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    g_assert_nonnull(pk);
    g_assert_cmpint(X509_check_private_key(y, pk), ==, 1);
    g_assert_cmpint(X509_check_private_key(x, pk), ==, 0);
    EVP_PKEY_free(pk);

    /* the old certificate with the new key does not load */
    g_autofree char *old = g_build_filename(tmp, "old.pem", NULL);
    g_assert_true(g_file_set_contents(old, pem1, -1, NULL));
    g_assert_null(kr_tls_server_ctx(old, key, &err));
    g_assert_nonnull(err);
    g_clear_error(&err);
    /* missing files */
    g_autofree char *none = g_build_filename(tmp, "none.pem", NULL);
    g_assert_null(kr_tls_server_ctx(none, key, &err));
    g_assert_error(err, G_IO_ERROR, G_IO_ERROR_NOT_FOUND);
    g_clear_error(&err);
    X509_free(x);
    X509_free(y);
}

static void
test_tls_client_ctx(void)
{
    g_autoptr(GError) err = NULL;
    SSL_CTX *ctx = kr_tls_client_ctx(&err);
    g_assert_no_error(err);
    g_assert_nonnull(ctx);
    g_assert_true(kr_tls_client_ctx(NULL) == ctx);
    g_assert_cmpint(SSL_CTX_get_min_proto_version(ctx), ==, TLS1_2_VERSION);
    g_assert_cmpint(SSL_CTX_get_verify_mode(ctx), ==, SSL_VERIFY_NONE);
}

int
main(int argc, char **argv)
{
    kr_test_init(&argc, &argv);
    g_autofree char *tmp = kr_test_tmpdir();
    g_autofree char *cert = g_build_filename(tmp, "tls", "cert.pem", NULL);
    g_autofree char *key = g_build_filename(tmp, "tls", "key.pem", NULL);
    g_autoptr(GError) err = NULL;
    if (!kr_tls_ensure_selfsigned(cert, key, &err) ||
        !(server_ctx = kr_tls_server_ctx(cert, key, &err)) ||
        !(client_ctx = kr_tls_client_ctx(&err)))
        g_error("TLS set-up: %s", err->message);

    g_test_add_func("/conn/echo", test_echo);
    g_test_add_func("/conn/pipelining", test_pipelining);
    g_test_add_func("/conn/input-limit", test_input_limit);
    g_test_add_func("/conn/pause-resume", test_pause_resume);
    g_test_add_func("/conn/flush-on-close", test_flush_on_close);
    g_test_add_func("/conn/eof", test_eof);
    g_test_add_data_func("/conn/reset/plain", NULL, test_reset);
    g_test_add_data_func("/conn/reset/tls", "tls", test_reset);
    g_test_add_func("/conn/timeout", test_timeout);
    g_test_add_func("/conn/timeout-paused", test_timeout_paused);
    g_test_add_data_func("/conn/starttls/injection", "STARTTLS\r\nINJECTED\r\n", test_starttls);
    g_test_add_data_func("/conn/starttls/injection-buffered", "NOOP\r\nSTARTTLS\r\nINJECTED\r\n",
                         test_starttls);
    g_test_add_func("/conn/tls/implicit", test_tls_implicit);
    g_test_add_func("/conn/tls/implicit-plaintext", test_tls_implicit_fail);
    g_test_add_func("/conn/tls/client", test_tls_client);
    g_test_add_func("/conn/close-all", test_close_all);
    g_test_add_func("/conn/mapped-ipv4", test_mapped_ipv4);
    g_test_add_func("/conn/idle-memory", test_idle_memory);
    g_test_add_func("/tls/selfsigned", test_tls_selfsigned);
    g_test_add_func("/tls/client-ctx", test_tls_client_ctx);
    return g_test_run();
}
