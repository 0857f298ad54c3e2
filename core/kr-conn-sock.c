/* SPDX-License-Identifier: MIT */
/*
 * kr-conn-sock.c - socket and OpenSSL plumbing for kr-conn*.c.
 *
 *   kr_conn_sock_bio(fd)       an OpenSSL BIO on a connected socket that
 *                              never raises SIGPIPE (send with MSG_NOSIGNAL);
 *                              the fd is not owned (BIO_free leaves it open)
 *   kr_conn_sock_addr(fd, peer, buf, size, port_r)
 *                              the peer's or our own address as text
 *                              ("192.0.2.1", "2001:db8::1"; v4-mapped IPv6
 *                              as IPv4; "local" for AF_UNIX, "unknown" when
 *                              there is none) and port; returns the family
 *   kr_conn_ssl_errors()       OpenSSL's error queue as one line (emptied);
 *                              "" when it was empty. Free with g_free.
 */
#include "kr-internal.h"
#include "kr-conn-private.h"
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <stdint.h>
#include <sys/socket.h>

char *
kr_conn_ssl_errors(void)
{
    GString *s = g_string_new(NULL);
    unsigned long e;
    char buf[256];
    while ((e = ERR_get_error()) != 0) {
        ERR_error_string_n(e, buf, sizeof buf);
        if (s->len)
            g_string_append(s, "; ");
        g_string_append(s, buf);
    }
    return g_string_free(s, FALSE);
}

int
kr_conn_sock_addr(int fd, gboolean peer, char *buf, gsize size, guint16 *port_r)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    memset(&ss, 0, sizeof ss);
    if ((peer ? getpeername(fd, (struct sockaddr *)&ss, &len)
              : getsockname(fd, (struct sockaddr *)&ss, &len)) < 0)
        ss.ss_family = AF_UNSPEC;
    if (ss.ss_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &s4->sin_addr, buf, size);
        *port_r = ntohs(s4->sin_port);
    } else if (ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&ss;
        if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr))
            inet_ntop(AF_INET, &s6->sin6_addr.s6_addr[12], buf, size);
        else
            inet_ntop(AF_INET6, &s6->sin6_addr, buf, size);
        *port_r = ntohs(s6->sin6_port);
    } else {
        g_strlcpy(buf, ss.ss_family == AF_UNIX ? "local" : "unknown", size);
        *port_r = 0;
    }
    return ss.ss_family;
}

/* --- a socket BIO that never raises SIGPIPE -------------------------------- */

static int
bio_fd(BIO *b)
{
    return (int)(intptr_t)BIO_get_data(b);
}

static int
bio_write(BIO *b, const char *buf, int len)
{
    BIO_clear_retry_flags(b);
    ssize_t n = send(bio_fd(b), buf, (size_t)len, MSG_NOSIGNAL);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        BIO_set_retry_write(b);
    return (int)n;
}

static int
bio_read(BIO *b, char *buf, int len)
{
    BIO_clear_retry_flags(b);
    ssize_t n = recv(bio_fd(b), buf, (size_t)len, 0);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        BIO_set_retry_read(b);
    return (int)n;
}

static int
bio_puts(BIO *b, const char *s)
{
    return bio_write(b, s, (int)strlen(s));
}

static long
bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    switch (cmd) {
    case BIO_CTRL_FLUSH:
    case BIO_CTRL_DUP:
        return 1;
    case BIO_C_GET_FD:
        if (ptr)
            *(int *)ptr = bio_fd(b);
        return bio_fd(b);
    default:
        return 0;
    }
}

static int
bio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static BIO_METHOD *
bio_method(void)
{
    static BIO_METHOD *m;
    if (!m) {
        m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK | BIO_TYPE_DESCRIPTOR,
                         "kurir socket");
        BIO_meth_set_write(m, bio_write);
        BIO_meth_set_read(m, bio_read);
        BIO_meth_set_puts(m, bio_puts);
        BIO_meth_set_ctrl(m, bio_ctrl);
        BIO_meth_set_create(m, bio_create);
    }
    return m;
}

BIO *
kr_conn_sock_bio(int fd)
{
    BIO *bio = BIO_new(bio_method());
    if (bio)
        BIO_set_data(bio, (void *)(intptr_t)fd);
    return bio;
}
