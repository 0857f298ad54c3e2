/* SPDX-License-Identifier: MIT */
/*
 * pop3-client.c - a small, fast POP3 load client for bench/pop3 (not a
 * test): the client's own cost must not hide the servers' difference.
 *
 *   pop3-client HOST PORT USER PASS stat-uidl
 *       login, STAT, UIDL (whole listing), QUIT
 *   pop3-client HOST PORT USER PASS retr-all [WINDOW]
 *       login, STAT, RETR 1..N (WINDOW commands in flight; 1 = one at a
 *       time like a classic client), QUIT
 *
 * Prints one line: "mode=... seconds=S messages=N bytes=B". Exit 1 on any
 * protocol error. Talks to the address given (the bench uses 127.0.0.1),
 * with a 60 s receive timeout.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static int fd;
static char *buf;
static size_t cap = 1 << 22, len, pos;
static long long total_bytes;

static void
die(const char *what)
{
    fprintf(stderr, "pop3-client: %s\n", what);
    exit(1);
}

static void
fill(void)
{
    if (pos > 0 && pos == len)
        pos = len = 0;
    if (pos > cap / 2) {
        memmove(buf, buf + pos, len - pos);
        len -= pos;
        pos = 0;
    }
    if (len == cap) {
        cap *= 2;
        buf = realloc(buf, cap);
    }
    ssize_t n = recv(fd, buf + len, cap - len, 0);
    if (n <= 0)
        die(n == 0 ? "connection closed" : "recv failed");
    len += (size_t)n;
    total_bytes += n;
}

/* One reply line; returns a pointer valid until the next call. */
static char *
line(void)
{
    for (;;) {
        char *nl = memmem(buf + pos, len - pos, "\r\n", 2);
        if (nl) {
            *nl = 0;
            char *l = buf + pos;
            pos = (size_t)(nl - buf) + 2;
            return l;
        }
        fill();
    }
}

/* Skip a multi-line body through its "." line; returns its size. */
static size_t
body(void)
{
    size_t scanned = 0; /* bytes after pos searched without a match */
    for (;;) {
        size_t avail = len - pos;
        if (avail >= 3 && memcmp(buf + pos, ".\r\n", 3) == 0) {
            pos += 3; /* empty body */
            return 0;
        }
        size_t from = scanned > 4 ? scanned - 4 : 0;
        if (avail >= 5 && avail > from) {
            char *e = memmem(buf + pos + from, avail - from, "\r\n.\r\n", 5);
            if (e) {
                size_t n = (size_t)(e - (buf + pos)) + 2;
                pos += n + 3;
                return n;
            }
            scanned = avail;
        }
        fill(); /* keeps offsets relative to pos valid */
    }
}

static void
sendstr(const char *s)
{
    size_t n = strlen(s);
    while (n > 0) {
        ssize_t w = send(fd, s, n, MSG_NOSIGNAL);
        if (w <= 0)
            die("send failed");
        s += w;
        n -= (size_t)w;
    }
}

static void
expect_ok(const char *what)
{
    char *l = line();
    if (strncmp(l, "+OK", 3) != 0) {
        fprintf(stderr, "pop3-client: %s: %s\n", what, l);
        exit(1);
    }
}

static double
now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int
main(int argc, char **argv)
{
    if (argc < 6)
        die("usage: pop3-client HOST PORT USER PASS stat-uidl|retr-all [WINDOW]");
    const char *mode = argv[5];
    int window = argc > 6 ? atoi(argv[6]) : 1;
    if (window < 1)
        window = 1;
    buf = malloc(cap);
    double t0 = now();
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((unsigned short)atoi(argv[2]))};
    if (inet_pton(AF_INET, argv[1], &sa.sin_addr) != 1)
        die("bad address");
    fd = socket(AF_INET, SOCK_STREAM, 0);
    struct timeval tv = {60, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0)
        die("connect failed");
    expect_ok("greeting");
    char cmd[512];
    snprintf(cmd, sizeof cmd, "USER %s\r\n", argv[3]);
    sendstr(cmd);
    expect_ok("USER");
    snprintf(cmd, sizeof cmd, "PASS %s\r\n", argv[4]);
    sendstr(cmd);
    expect_ok("PASS");
    sendstr("STAT\r\n");
    char *st = line();
    unsigned long n = 0;
    if (sscanf(st, "+OK %lu", &n) != 1)
        die("STAT");
    size_t bytes = 0;
    if (strcmp(mode, "stat-uidl") == 0) {
        sendstr("UIDL\r\n");
        expect_ok("UIDL");
        bytes = body();
    } else if (strcmp(mode, "retr-all") == 0) {
        unsigned long sent = 0, got = 0;
        while (got < n) {
            /* keep up to `window` RETRs in flight, sent in one write */
            char batch[64 * 32];
            size_t bl = 0;
            while (sent < n && sent - got < (unsigned long)window && bl < sizeof batch - 32) {
                bl += (size_t)snprintf(batch + bl, sizeof batch - bl, "RETR %lu\r\n", ++sent);
            }
            if (bl) {
                batch[bl] = 0;
                sendstr(batch);
            }
            expect_ok("RETR");
            bytes += body();
            got++;
        }
    } else {
        die("unknown mode");
    }
    sendstr("QUIT\r\n");
    expect_ok("QUIT");
    double t = now() - t0;
    printf("mode=%s seconds=%.4f messages=%lu bytes=%zu\n", mode, t, n, bytes);
    close(fd);
    return 0;
}
