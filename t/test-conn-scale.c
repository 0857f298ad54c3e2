/* SPDX-License-Identifier: MIT */
/*
 * test-conn-scale.c - what many connections cost: the shared event source
 * of core/kr-conn-epoll.c (ready list, deadline heap, epoll batches) and
 * the connection layer on top of it with thousands of idle connections.
 *
 *   /ev/deadlines      items fire in deadline order, never early; earlier
 *                      deadlines win, later ones wait for the re-arm;
 *                      cleared items never fire
 *   /ev/wake           an item woken during a dispatch runs on the next one
 *   /conn-scale/idle-busy   2000 idle connections: a busy echo connection
 *                      is dispatched only for itself (counted), and its
 *                      round trips are not much slower than with none (timed)
 *   /conn-scale/pause-resume   an asynchronous command (pause, answer
 *                      later, resume) costs no epoll_ctl
 *   /conn-scale/burst  all idle connections get input at once (more than
 *                      one epoll batch): every one answers
 *   /conn-scale/close-all-in-handler   connections freed while waiting
 *                      on the dispatch list are never called
 *   /conn-scale/timeouts    short timeouts among 2000 long ones fire on
 *                      time; timeouts reset by input do not fire; the idle
 *                      ones are not examined meanwhile
 */
#include "testlib.h"
#include "../core/kr-conn-private.h"
#include "../core/kr-conn-epoll.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int n_idle = 2000;

static void
iterate_pending(void)
{
    while (g_main_context_iteration(NULL, FALSE))
        ;
}

/* Run the loop until *flag or the deadline (seconds from now) passes. */
static void
run_until(volatile gint *flag, int seconds)
{
    gint64 end = g_get_monotonic_time() + seconds * G_USEC_PER_SEC;
    while (!g_atomic_int_get(flag)) {
        g_assert_cmpint(g_get_monotonic_time(), <, end);
        g_main_context_iteration(NULL, TRUE);
    }
}

/* --- /ev -------------------------------------------------------------------- */

typedef struct {
    KrEvItem ev; /* first */
    gint64 deadline, fired_at;
    int fired, order;
} TItem;

static int fire_count;

static void
titem_fire(KrEvItem *it, GIOCondition rev)
{
    TItem *t = (TItem *)it;
    g_assert_cmpint(rev, ==, 0);
    t->fired++;
    t->fired_at = g_get_monotonic_time();
    t->order = fire_count++;
}

static void
test_ev_deadlines(void)
{
    enum { N = 400 };
    TItem *items = g_new0(TItem, N);
    GRand *r = g_rand_new_with_seed(4711);
    gint64 t0 = g_get_monotonic_time();
    fire_count = 0;
    for (int i = 0; i < N; i++) {
        TItem *t = &items[i];
        kr_ev_item_init(&t->ev, titem_fire);
        t->deadline = t0 + 20000 + g_rand_int_range(r, 0, 300000);
        kr_ev_set_deadline(&t->ev, t->deadline);
    }
    /* every 4th: a later deadline does not move the timer (it fires at
     * the first, and the owner re-arms); every 4th + 1: an earlier one
     * does; every 8th + 2: cleared, never fires */
    for (int i = 0; i < N; i += 4) {
        kr_ev_set_deadline(&items[i].ev, items[i].deadline + 500000);
        items[i + 1].deadline -= 10000;
        kr_ev_set_deadline(&items[i + 1].ev, items[i + 1].deadline);
        kr_ev_set_deadline(&items[i + 1].ev, -1); /* no effect */
    }
    for (int i = 2; i < N; i += 8)
        kr_ev_clear(&items[i].ev, -1);
    KrEvStats st;
    kr_ev_stats(&st);
    g_assert_cmpuint(st.timed, >=, N - N / 8);
    int expect = N - N / 8;
    gint64 end = t0 + 5 * G_USEC_PER_SEC;
    while (fire_count < expect && g_get_monotonic_time() < end)
        g_main_context_iteration(NULL, TRUE);
    g_assert_cmpint(fire_count, ==, expect);
    for (int i = 0; i < N; i++) {
        TItem *t = &items[i];
        if (i % 8 == 2) {
            g_assert_cmpint(t->fired, ==, 0);
            continue;
        }
        g_assert_cmpint(t->fired, ==, 1);
        g_assert_cmpint(t->fired_at, >=, t->deadline);
        if (i % 4 == 0) /* at the first deadline, not the later one */
            g_assert_cmpint(t->fired_at, <, t->deadline + 400000);
        /* in deadline order */
        for (int j = 0; j < N; j++) {
            TItem *u = &items[j];
            if (j % 8 != 2 && u->deadline < t->deadline)
                g_assert_cmpint(u->order, <, t->order);
        }
    }
    /* fired items are out of the heap: nothing more happens */
    iterate_pending();
    g_usleep(50000);
    iterate_pending();
    g_assert_cmpint(fire_count, ==, expect);
    for (int i = 0; i < N; i++)
        kr_ev_clear(&items[i].ev, -1);
    g_rand_free(r);
    g_free(items);
}

typedef struct {
    KrEvItem ev;
    KrEvItem *other;
    int calls;
    guint64 dispatch[3];
} WItem;

static void
witem_fire(KrEvItem *it, GIOCondition rev)
{
    WItem *w = (WItem *)it;
    KrEvStats st;
    kr_ev_stats(&st);
    if (w->calls < 3)
        w->dispatch[w->calls] = st.dispatches;
    w->calls++;
    if (w->calls < 3) {
        kr_ev_wake(it);
        if (w->other)
            kr_ev_wake(w->other);
    }
}

static void
test_ev_wake(void)
{
    WItem a = {0}, b = {0};
    kr_ev_item_init(&a.ev, witem_fire);
    kr_ev_item_init(&b.ev, witem_fire);
    a.other = &b.ev;
    kr_ev_wake(&a.ev);
    kr_ev_wake(&a.ev); /* twice is once */
    iterate_pending();
    g_assert_cmpint(a.calls, ==, 3);
    /* each call in its own dispatch */
    g_assert_cmpuint(a.dispatch[1], >, a.dispatch[0]);
    g_assert_cmpuint(a.dispatch[2], >, a.dispatch[1]);
    /* b was woken by a's first call: it ran in a's second dispatch */
    g_assert_cmpint(b.calls, >=, 1);
    g_assert_cmpuint(b.dispatch[0], ==, a.dispatch[1]);
    kr_ev_clear(&a.ev, -1);
    kr_ev_clear(&b.ev, -1);
}

/* --- idle connections ------------------------------------------------------------ */

typedef struct {
    KrConn **conns;
    int *cfds;
    int n;
    int closed, timeouts;
} Idle;

static char *
take_line(KrConn *c)
{
    gsize len;
    const char *in = kr_conn_input(c, &len);
    const char *nl = memchr(in, '\n', len);
    if (!nl)
        return NULL;
    char *line = g_strndup(in, (gsize)(nl - in));
    kr_conn_consume(c, (gsize)(nl - in) + 1);
    return line;
}

static void
echo_read(KrConn *c, gpointer ud)
{
    char *line;
    while ((line = take_line(c))) {
        kr_conn_printf(c, "%s\n", line);
        g_free(line);
    }
}

static void
idle_closed(KrConn *c, KrConnCloseReason why, gpointer ud)
{
    Idle *idle = ud;
    idle->closed++;
}

/* Read one "\n"-terminated reply from a non-blocking fd, running the
 * loop meanwhile; returns its length. */
static gsize
await_reply(int fd, char *buf, gsize size)
{
    gsize got = 0;
    gint64 end = g_get_monotonic_time() + 20 * G_USEC_PER_SEC;
    while (got == 0 || buf[got - 1] != '\n') {
        g_assert_cmpint(g_get_monotonic_time(), <, end);
        ssize_t r = recv(fd, buf + got, size - got, MSG_DONTWAIT);
        if (r > 0) {
            got += (gsize)r;
            continue;
        }
        g_assert_true(r < 0 && errno == EAGAIN);
        g_main_context_iteration(NULL, TRUE);
    }
    return got;
}

/* n connections that have each served one line, with a 300 s timeout. */
static Idle *
idle_new(int n)
{
    static const KrConnHandlers h = {.read = echo_read, .closed = idle_closed};
    Idle *idle = g_new0(Idle, 1);
    idle->n = n;
    idle->conns = g_new(KrConn *, n);
    idle->cfds = g_new(int, n);
    for (int i = 0; i < n; i++) {
        int sv[2];
        g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), ==, 0);
        idle->cfds[i] = sv[1];
        idle->conns[i] = kr_conn_new(sv[0], "idle", NULL, FALSE, NULL, NULL);
        kr_conn_set_handlers(idle->conns[i], &h, idle);
        kr_conn_set_timeout(idle->conns[i], 300);
        g_assert_cmpint(send(sv[1], "hi\n", 3, 0), ==, 3);
        if (i % 256 == 255)
            iterate_pending();
    }
    for (int i = 0; i < n; i++) {
        char buf[16];
        g_assert_cmpuint(await_reply(idle->cfds[i], buf, sizeof buf), ==, 3);
        g_assert_cmpint(memcmp(buf, "hi\n", 3), ==, 0);
    }
    iterate_pending();
    return idle;
}

static void
idle_free(Idle *idle)
{
    guint before = kr_conn_count();
    for (int i = 0; i < idle->n; i++) {
        kr_conn_close(idle->conns[i]);
        close(idle->cfds[i]);
    }
    gint64 end = g_get_monotonic_time() + 20 * G_USEC_PER_SEC;
    while (kr_conn_count() > before - (guint)idle->n) {
        g_assert_cmpint(g_get_monotonic_time(), <, end);
        g_main_context_iteration(NULL, TRUE);
    }
    g_assert_cmpint(idle->closed, ==, idle->n);
    g_free(idle->conns);
    g_free(idle->cfds);
    g_free(idle);
}

/* --- /conn-scale/idle-busy ------------------------------------------------------------ */

enum { TRIPS = 300 };

typedef struct {
    int fd;
    gint64 lat[TRIPS];
    char *fail;
    gint done;
} Pinger;

static gpointer
pinger_main(gpointer p)
{
    Pinger *pg = p;
    char buf[64];
    for (int i = 0; i < TRIPS && !pg->fail; i++) {
        char msg[32];
        int len = g_snprintf(msg, sizeof msg, "ping %d\n", i);
        gint64 t = g_get_monotonic_time();
        if (send(pg->fd, msg, (size_t)len, MSG_NOSIGNAL) != len) {
            pg->fail = g_strdup_printf("send: %s", g_strerror(errno));
            break;
        }
        int got = 0;
        while (got < len) {
            ssize_t r = recv(pg->fd, buf + got, sizeof buf - (size_t)got, 0);
            if (r <= 0) {
                pg->fail = g_strdup_printf("recv: %s", r ? g_strerror(errno) : "EOF");
                break;
            }
            got += (int)r;
        }
        if (!pg->fail && (got != len || memcmp(buf, msg, (size_t)len) != 0))
            pg->fail = g_strdup_printf("round trip %d: got \"%.*s\"", i, got, buf);
        pg->lat[i] = g_get_monotonic_time() - t;
    }
    g_atomic_int_set(&pg->done, 1);
    g_main_context_wakeup(NULL);
    return NULL;
}

static int
cmp_gint64(gconstpointer a, gconstpointer b)
{
    gint64 x = *(const gint64 *)a, y = *(const gint64 *)b;
    return x < y ? -1 : x > y;
}

/* Like echo_read, but asynchronous: pause, answer and resume from an
 * idle callback (as a protocol does around a command that takes time). */
static gboolean
async_answer(gpointer p)
{
    KrConn *c = p;
    echo_read(c, NULL);
    kr_conn_resume(c);
    return G_SOURCE_REMOVE;
}

static void
async_read(KrConn *c, gpointer ud)
{
    gsize len;
    const char *in = kr_conn_input(c, &len);
    if (!memchr(in, '\n', len))
        return;
    kr_conn_pause(c);
    g_idle_add(async_answer, c);
}

/* TRIPS echo round trips over loopback TCP; returns the median in us;
 * item dispatches and epoll_ctl calls per round trip (x100) in *items_r
 * and *ctl_r. */
static gint64
round_trips(const KrConnHandlers *h, guint64 *items_x100_r, guint64 *ctl_x100_r)
{
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    g_assert_cmpint(bind(lfd, (struct sockaddr *)&sa, sizeof sa), ==, 0);
    g_assert_cmpint(listen(lfd, 4), ==, 0);
    socklen_t slen = sizeof sa;
    g_assert_cmpint(getsockname(lfd, (struct sockaddr *)&sa, &slen), ==, 0);
    int cfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    g_assert_cmpint(connect(cfd, (struct sockaddr *)&sa, sizeof sa), ==, 0);
    int one = 1;
    setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct timeval tv = {.tv_sec = 15};
    setsockopt(cfd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    int sfd = accept(lfd, NULL, NULL);
    g_assert_cmpint(sfd, >=, 0);
    close(lfd);
    KrConn *c = kr_conn_new(sfd, "busy", NULL, FALSE, NULL, NULL);
    kr_conn_set_handlers(c, h, NULL);
    kr_conn_set_timeout(c, 300);
    iterate_pending();

    Pinger *pg = g_new0(Pinger, 1);
    pg->fd = cfd;
    KrEvStats st0, st1;
    kr_ev_stats(&st0);
    GThread *th = g_thread_new("pinger", pinger_main, pg);
    run_until(&pg->done, 60);
    g_thread_join(th);
    kr_ev_stats(&st1);
    g_assert_cmpstr(pg->fail, ==, NULL);
    *items_x100_r = (st1.items - st0.items) * 100 / TRIPS;
    if (ctl_x100_r)
        *ctl_x100_r = (st1.ctl - st0.ctl) * 100 / TRIPS;
    qsort(pg->lat, TRIPS, sizeof pg->lat[0], cmp_gint64);
    gint64 median = pg->lat[TRIPS / 2];
    g_free(pg);

    guint before = kr_conn_count();
    kr_conn_close(c);
    close(cfd);
    while (kr_conn_count() == before)
        g_main_context_iteration(NULL, TRUE);
    return median;
}

static gint64
busy_round_trips(guint64 *items_x100_r)
{
    static const KrConnHandlers h = {.read = echo_read};
    return round_trips(&h, items_x100_r, NULL);
}

/* Median time of a main loop iteration with nothing to do, in ns. */
static gint64
empty_iteration_ns(void)
{
    enum { N = 2001 };
    static gint64 t[N];
    iterate_pending();
    for (int i = 0; i < N; i++) {
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        g_main_context_iteration(NULL, FALSE);
        clock_gettime(CLOCK_MONOTONIC, &b);
        t[i] = (b.tv_sec - a.tv_sec) * 1000000000 + (b.tv_nsec - a.tv_nsec);
    }
    qsort(t, N, sizeof t[0], cmp_gint64);
    return t[N / 2];
}

static void
test_idle_busy(void)
{
    /* Counted: each round trip dispatches the busy conn about once (at
     * most a few times: input, then output that could not go at once,
     * and so on), however many idle connections there are. Timed: the
     * median round trip with n_idle idle connections is within 5x (plus
     * 0.1 ms of scheduling noise) of the one with none, and under 50 ms;
     * so is an empty main loop iteration (plus 20 us). The machine may be busy with other things:
     * the timed part gets three tries. */
    gboolean ok = FALSE;
    for (int attempt = 0; attempt < 3 && !ok; attempt++) {
        guint64 items0, items1;
        gint64 base = busy_round_trips(&items0);
        gint64 iter0 = empty_iteration_ns();
        Idle *idle = idle_new(n_idle);
        gint64 iter1 = empty_iteration_ns();
        KrEvStats st;
        kr_ev_stats(&st);
        /* they are all really there: in the epoll set, with a timer */
        g_assert_cmpuint(st.watched, >=, (guint)n_idle);
        g_assert_cmpuint(st.timed, >=, (guint)n_idle);
        gint64 loaded = busy_round_trips(&items1);
        idle_free(idle);
        g_test_message("round trip median: %" G_GINT64_FORMAT " us with no idle connection, "
                       "%" G_GINT64_FORMAT " us with %d; item dispatches per round trip: "
                       "%.2f and %.2f",
                       base, loaded, n_idle, items0 / 100.0, items1 / 100.0);
        g_assert_cmpuint(items0, <=, 400);
        g_assert_cmpuint(items1, <=, 400);
        g_assert_cmpuint(items1, <=, items0 + 50);
        g_test_message("empty loop iteration median: %" G_GINT64_FORMAT " ns with no idle "
                       "connection, %" G_GINT64_FORMAT " ns with %d",
                       iter0, iter1, n_idle);
        ok = loaded < 5 * base + 100 && loaded < 50000 && iter1 < 5 * iter0 + 20000;
    }
    g_assert_true(ok);
}

/* --- /conn-scale/pause-resume ------------------------------------------------------ */

/* A command handled asynchronously (pause, answer later, resume) costs no
 * epoll_ctl when the client waits for the answer: the socket stays in the
 * epoll set while paused, as nothing arrives meanwhile. */
static void
test_pause_resume_cheap(void)
{
    static const KrConnHandlers h = {.read = async_read};
    guint64 items, ctl;
    round_trips(&h, &items, &ctl);
    g_test_message("async round trip: %.2f item dispatches, %.2f epoll_ctl", items / 100.0,
                   ctl / 100.0);
    g_assert_cmpuint(ctl, ==, 0);
    g_assert_cmpuint(items, <=, 300);
}

/* --- /conn-scale/burst ------------------------------------------------------------------ */

static void
test_burst(void)
{
    Idle *idle = idle_new(n_idle);
    KrEvStats st0, st1;
    kr_ev_stats(&st0);
    for (int i = 0; i < idle->n; i++) {
        char msg[32];
        int len = g_snprintf(msg, sizeof msg, "line %d\n", i);
        g_assert_cmpint(send(idle->cfds[i], msg, (size_t)len, 0), ==, len);
    }
    for (int i = 0; i < idle->n; i++) {
        char buf[32], msg[32];
        int len = g_snprintf(msg, sizeof msg, "line %d\n", i);
        g_assert_cmpuint(await_reply(idle->cfds[i], buf, sizeof buf), ==, (gsize)len);
        g_assert_cmpint(memcmp(buf, msg, (size_t)len), ==, 0);
    }
    kr_ev_stats(&st1);
    g_assert_cmpuint(st1.events - st0.events, >=, (guint64)idle->n);
    /* bounded batches: at least two dispatches for more than 1024 events */
    if (idle->n > 1024)
        g_assert_cmpuint(st1.dispatches - st0.dispatches, >=, 2);
    g_assert_cmpint(idle->closed, ==, 0);
    idle_free(idle);
}

/* --- /conn-scale/close-all-in-handler -------------------------------------------------- */

/* Every conn has input in the same epoll batch; the first read handler
 * closes them all: the others are freed while they wait on the list the
 * dispatch walks, and never get a read call. */
enum { CA_N = 50 };
static int ca_reads, ca_closed[CA_N];

static void
ca_read(KrConn *c, gpointer ud)
{
    ca_reads++;
    kr_conn_close_all();
    /* this one's handler is on the stack: it stays usable until it returns */
    kr_conn_printf(c, "late\n");
}

static void
ca_closed_cb(KrConn *c, KrConnCloseReason why, gpointer ud)
{
    int i = GPOINTER_TO_INT(ud);
    g_assert_cmpint(why, ==, KR_CONN_CLOSED_SHUTDOWN);
    ca_closed[i]++;
}

static void
test_close_all_in_handler(void)
{
    static const KrConnHandlers h = {.read = ca_read, .closed = ca_closed_cb};
    int cfds[CA_N];
    guint before = kr_conn_count();
    ca_reads = 0;
    for (int i = 0; i < CA_N; i++) {
        int sv[2];
        g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), ==, 0);
        cfds[i] = sv[1];
        ca_closed[i] = 0;
        KrConn *c = kr_conn_new(sv[0], "ca", NULL, FALSE, NULL, NULL);
        kr_conn_set_handlers(c, &h, GINT_TO_POINTER(i));
        kr_conn_set_timeout(c, 60);
    }
    iterate_pending();
    for (int i = 0; i < CA_N; i++)
        g_assert_cmpint(send(cfds[i], "x\n", 2, 0), ==, 2);
    gint64 end = g_get_monotonic_time() + 10 * G_USEC_PER_SEC;
    while (kr_conn_count() > before) {
        g_assert_cmpint(g_get_monotonic_time(), <, end);
        g_main_context_iteration(NULL, TRUE);
    }
    iterate_pending();
    g_assert_cmpint(ca_reads, ==, 1);
    for (int i = 0; i < CA_N; i++) {
        g_assert_cmpint(ca_closed[i], ==, 1);
        char buf[16];
        ssize_t r;
        while ((r = recv(cfds[i], buf, sizeof buf, 0)) > 0)
            ;
        g_assert_cmpint(r, ==, 0); /* EOF */
        close(cfds[i]);
    }
}

/* --- /conn-scale/timeouts --------------------------------------------------------------- */

enum { SHORT = 10 };

typedef struct {
    KrConn *conn;
    int cfd;
    gboolean chatty; /* sends a line every 300 ms until t0 + 2.1 s */
    gint64 t0, last_input, timed_out_at;
    int timeouts, closed;
    KrConnCloseReason why;
} Short;

static gint shorts_closed;
static guint chatter_tag;

static void
short_timeout(KrConn *c, gpointer ud)
{
    Short *s = ud;
    s->timeouts++;
    s->timed_out_at = g_get_monotonic_time();
}

static void
short_closed(KrConn *c, KrConnCloseReason why, gpointer ud)
{
    Short *s = ud;
    s->closed++;
    s->why = why;
    g_atomic_int_inc(&shorts_closed);
}

static gboolean
chatter(gpointer p)
{
    Short *ss = p;
    gint64 now = g_get_monotonic_time();
    gboolean more = FALSE;
    for (int i = 0; i < SHORT; i++) {
        Short *s = &ss[i];
        if (!s->chatty || now >= s->t0 + 2100 * 1000)
            continue;
        g_assert_cmpint(s->timeouts, ==, 0);
        g_assert_cmpint(send(s->cfd, "x\n", 2, 0), ==, 2);
        s->last_input = now;
        more = TRUE;
    }
    if (!more)
        chatter_tag = 0;
    return more ? G_SOURCE_CONTINUE : G_SOURCE_REMOVE;
}

static void
test_timeouts(void)
{
    static const KrConnHandlers h = {
        .read = echo_read, .timeout = short_timeout, .closed = short_closed};
    Idle *idle = idle_new(n_idle);
    Short *ss = g_new0(Short, SHORT);
    g_atomic_int_set(&shorts_closed, 0);
    for (int i = 0; i < SHORT; i++) {
        Short *s = &ss[i];
        int sv[2];
        g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), ==, 0);
        s->cfd = sv[1];
        s->chatty = i % 2;
        s->conn = kr_conn_new(sv[0], "short", NULL, FALSE, NULL, NULL);
        kr_conn_set_handlers(s->conn, &h, s);
        s->t0 = s->last_input = g_get_monotonic_time();
        kr_conn_set_timeout(s->conn, 1);
    }
    chatter_tag = g_timeout_add(300, chatter, ss);
    KrEvStats st0, st1;
    kr_ev_stats(&st0);
    gint64 end = g_get_monotonic_time() + 15 * G_USEC_PER_SEC;
    while (g_atomic_int_get(&shorts_closed) < SHORT) {
        g_assert_cmpint(g_get_monotonic_time(), <, end);
        g_main_context_iteration(NULL, TRUE);
    }
    kr_ev_stats(&st1);
    g_assert_cmpuint(chatter_tag, ==, 0); /* it stopped before the chatty ones timed out */
    for (int i = 0; i < SHORT; i++) {
        Short *s = &ss[i];
        g_assert_cmpint(s->timeouts, ==, 1);
        g_assert_cmpint(s->closed, ==, 1);
        g_assert_cmpint(s->why, ==, KR_CONN_CLOSED_TIMEOUT);
        /* 1 s after the last input, not before, and not much later */
        g_assert_cmpint(s->timed_out_at - s->last_input, >=, 1000 * 1000);
        g_assert_cmpint(s->timed_out_at - s->last_input, <, 3000 * 1000);
        if (s->chatty)
            g_assert_cmpint(s->timed_out_at - s->t0, >=, 2800 * 1000);
        /* the timeout handler's connection got EOF */
        char buf[64];
        ssize_t r;
        while ((r = recv(s->cfd, buf, sizeof buf, 0)) > 0)
            ;
        g_assert_cmpint(r, ==, 0);
        close(s->cfd);
    }
    /* the idle connections were left alone: a few item dispatches per
     * short connection and input, none per idle connection */
    g_test_message("%" G_GUINT64_FORMAT " item dispatches, %" G_GUINT64_FORMAT
                   " timers fired, %" G_GUINT64_FORMAT " loop dispatches",
                   st1.items - st0.items, st1.timers - st0.timers, st1.dispatches - st0.dispatches);
    g_assert_cmpuint(st1.items - st0.items, <, 400);
    g_assert_cmpint(idle->closed, ==, 0);
    idle_free(idle);
    g_free(ss);
}

int
main(int argc, char **argv)
{
    kr_test_init(&argc, &argv);
    signal(SIGPIPE, SIG_IGN);
    /* 2 fds per idle connection, and some */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rlim_t need = (rlim_t)n_idle * 2 + 256;
        if (rl.rlim_cur < need) {
            rl.rlim_cur = MIN(need, rl.rlim_max);
            setrlimit(RLIMIT_NOFILE, &rl);
            getrlimit(RLIMIT_NOFILE, &rl);
        }
        if (rl.rlim_cur < need)
            n_idle = (int)MAX((rl.rlim_cur - 256) / 2, 100);
    }
    g_test_add_func("/ev/deadlines", test_ev_deadlines);
    g_test_add_func("/ev/wake", test_ev_wake);
    g_test_add_func("/conn-scale/idle-busy", test_idle_busy);
    g_test_add_func("/conn-scale/pause-resume", test_pause_resume_cheap);
    g_test_add_func("/conn-scale/burst", test_burst);
    g_test_add_func("/conn-scale/timeouts", test_timeouts);
    g_test_add_func("/conn-scale/close-all-in-handler", test_close_all_in_handler);
    return g_test_run();
}
