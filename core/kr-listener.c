/* SPDX-License-Identifier: MIT */
/*
 * kr-listener.c - listeners: the `listeners` list of kurir.conf, bound
 * sockets, accept, connection limits, and TLS contexts.
 *
 *   kr_listeners_parse(list, errors)   check every entry (common keys and
 *                                      the listener type's own table)
 *   kr_listeners_start(error)          bind all, start accepting; writes
 *                                      DATA_DIR/run/listeners ("name
 *                                      address port" lines: tests use it
 *                                      to find ephemeral ports)
 *   kr_listeners_stop()                stop accepting (shutdown)
 *
 * Common keys: name, type, address (string or list; default
 * "127.0.0.1"), port (0 = ephemeral), tls ("none", "starttls",
 * "implicit"), tls_cert / tls_key (default tls/cert.pem, tls/key.pem in
 * DATA_DIR; a self-signed pair is made there if both are missing),
 * max_connections (default 1000), max_per_ip (default 50).
 */
#include "kr-startup.h"
#include "kr-conn-private.h"
#include "kr-registry-private.h"
#include "kr-settings-private.h"
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <glib-unix.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct {
    char *name;
    char *type;
    char **address;
    gint64 port;
    int tls;
    char *tls_cert;
    char *tls_key;
    gint64 max_connections;
    gint64 max_per_ip;
} CommonConf;

static const char *const tls_modes[] = {"none", "starttls", "implicit", NULL};

static const KrSetting common_settings[] = {
    {.name = "name", .type = KR_SET_STRING, .offset = offsetof(CommonConf, name), .flags = KR_SET_REQUIRED,
     .help = "listener name, used in logs"},
    {.name = "type", .type = KR_SET_STRING, .offset = offsetof(CommonConf, type), .flags = KR_SET_REQUIRED,
     .help = "listener type, registered by a module (smtp, pop3, imap, ...)"},
    KR_SETTING("address", KR_SET_STRLIST, CommonConf, address, "127.0.0.1", 0, 0,
               "addresses to bind (IPv4 or IPv6 literal)"),
    KR_SETTING("port", KR_SET_INT, CommonConf, port, NULL, 0, 65535, "TCP port (0: any free port)"),
    KR_SETTING_ENUM("tls", CommonConf, tls, "none", tls_modes,
                    "none, starttls (offered in the protocol) or implicit (TLS from the start)"),
    KR_SETTING("tls_cert", KR_SET_PATH, CommonConf, tls_cert, "tls/cert.pem", 0, 0,
               "PEM certificate chain"),
    KR_SETTING("tls_key", KR_SET_PATH, CommonConf, tls_key, "tls/key.pem", 0, 0, "PEM private key"),
    KR_SETTING("max_connections", KR_SET_INT, CommonConf, max_connections, "1000", 1, 1000000,
               "connections open at once on this listener"),
    KR_SETTING("max_per_ip", KR_SET_INT, CommonConf, max_per_ip, "50", 1, 1000000,
               "connections open at once from one client address"),
    KR_SETTING_END,
};

struct KrListener {
    CommonConf c;
    const KrListenerType *type;
    gpointer conf;
    gpointer data;
    config_setting_t *where;
    SSL_CTX *tls_ctx;
    GArray *fds;     /* int */
    GArray *sources; /* guint */
    guint n_conns;
    GHashTable *per_ip; /* ip -> count */
    gboolean created;
};

static GPtrArray *listeners;

const char *
kr_listener_name(const KrListener *l)
{
    return l->c.name;
}

gpointer
kr_listener_conf(const KrListener *l)
{
    return l->conf;
}

gpointer
kr_listener_data(const KrListener *l)
{
    return l->data;
}

void
kr_listener_set_data(KrListener *l, gpointer data)
{
    l->data = data;
}

const char *
kr_listener_tls_mode(const KrListener *l)
{
    return tls_modes[l->c.tls];
}

SSL_CTX *
kr_listener_tls_ctx(const KrListener *l)
{
    return l->tls_ctx;
}

static char **
table_names(const KrSetting *t)
{
    GPtrArray *a = g_ptr_array_new();
    for (; t && t->name; t++)
        g_ptr_array_add(a, (char *)t->name);
    g_ptr_array_add(a, NULL);
    return (char **)g_ptr_array_free(a, FALSE);
}

static void
parse_entry(config_setting_t *e, GPtrArray *errors)
{
    if (!config_setting_is_group(e)) {
        kr_diag(errors, e, "each listener must be a group { name = ...; type = ...; port = ...; }");
        return;
    }
    const char *tname = NULL;
    config_setting_lookup_string(e, "type", &tname);
    const KrListenerType *t = tname ? kr_registry_listener(tname) : NULL;
    if (tname && !t) {
        g_auto(GStrv) known = kr_registry_names("listener");
        g_autofree char *list = g_strjoinv(", ", known);
        kr_diag(errors, config_setting_get_member(e, "type"),
                "unknown listener type '%s' (loaded modules provide: %s)", tname,
                *list ? list : "none");
        return;
    }
    KrListener *l = g_new0(KrListener, 1);
    l->type = t;
    l->where = e;
    g_autofree char **own = t ? table_names(t->settings) : NULL;
    g_autofree char **common = table_names(common_settings);
    kr_settings_parse(common_settings, e, &l->c, (const char *const *)own, "listener", errors);
    if (!config_setting_get_member(e, "port"))
        kr_diag(errors, e, "listener '%s' needs a 'port'", l->c.name ? l->c.name : "?");
    if (t) {
        l->conf = t->conf_size ? g_malloc0(t->conf_size) : NULL;
        g_autofree char *what = g_strdup_printf("listener '%s' (type %s)", l->c.name, tname);
        kr_settings_parse(t->settings, e, l->conf, (const char *const *)common, what, errors);
    }
    for (guint i = 0; i < listeners->len; i++) {
        KrListener *o = listeners->pdata[i];
        if (l->c.name && o->c.name && strcmp(o->c.name, l->c.name) == 0)
            kr_diag(errors, e, "listener name '%s' is used twice", l->c.name);
    }
    g_ptr_array_add(listeners, l);
}

void
kr_listeners_parse(config_setting_t *list, GPtrArray *errors)
{
    if (!listeners)
        listeners = g_ptr_array_new();
    if (!list)
        return;
    if (!config_setting_is_list(list) && !config_setting_is_array(list)) {
        kr_diag(errors, list, "'listeners' must be a list ( { ... }, { ... } )");
        return;
    }
    for (int i = 0; i < config_setting_length(list); i++)
        parse_entry(config_setting_get_elem(list, i), errors);
}

/* --- accepting ----------------------------------------------------------- */

typedef struct {
    KrListener *l;
    char *ip;
} Accepted;

static void
conn_released(KrConn *conn, gpointer ud)
{
    Accepted *a = ud;
    KrListener *l = a->l;
    l->n_conns--;
    guint n = GPOINTER_TO_UINT(g_hash_table_lookup(l->per_ip, a->ip));
    if (n <= 1)
        g_hash_table_remove(l->per_ip, a->ip);
    else
        g_hash_table_insert(l->per_ip, g_strdup(a->ip), GUINT_TO_POINTER(n - 1));
    g_free(a->ip);
    g_free(a);
}

static void
conn_ready(KrConn *conn, gboolean ok, gpointer ud)
{
    Accepted *a = ud;
    if (!ok) {
        g_debug("%s: TLS handshake with %s failed", a->l->c.name, kr_conn_peer_ip(conn));
        kr_conn_close(conn);
        return;
    }
    a->l->type->accept(a->l, conn);
}

static gboolean
on_accept(gint fd, GIOCondition cond, gpointer ud)
{
    KrListener *l = ud;
    for (int burst = 0; burst < 64; burst++) {
        int c = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (c < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
                errno != ECONNABORTED)
                g_warning("%s: accept: %s", l->c.name, g_strerror(errno));
            break;
        }
        KrConn *conn = kr_conn_new(c, l->c.name, l->tls_ctx, FALSE, NULL, NULL);
        const char *ip = kr_conn_peer_ip(conn);
        guint per_ip = GPOINTER_TO_UINT(g_hash_table_lookup(l->per_ip, ip));
        const char *why = NULL;
        if (l->n_conns >= (guint)l->c.max_connections)
            why = "too many connections";
        else if (per_ip >= (guint)l->c.max_per_ip)
            why = "too many connections from your address";
        Accepted *a = g_new0(Accepted, 1);
        a->l = l;
        a->ip = g_strdup(ip);
        l->n_conns++;
        g_hash_table_insert(l->per_ip, g_strdup(ip), GUINT_TO_POINTER(per_ip + 1));
        kr_conn_set_release(conn, conn_released, a);
        if (why) {
            g_message("%s: refusing %s: %s", l->c.name, ip, why);
            if (l->type->overload && l->c.tls != 2)
                l->type->overload(l, conn, why);
            kr_conn_close(conn);
            continue;
        }
        kr_conn_begin(conn, l->c.tls == 2, conn_ready, a);
    }
    return G_SOURCE_CONTINUE;
}

static int
bind_one(KrListener *l, const char *addr, GError **error)
{
    struct sockaddr_storage ss = {0};
    socklen_t len;
    int family;
    struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, addr, &s4->sin_addr) == 1) {
        family = s4->sin_family = AF_INET;
        s4->sin_port = htons((guint16)l->c.port);
        len = sizeof *s4;
    } else if (inet_pton(AF_INET6, addr, &s6->sin6_addr) == 1) {
        family = s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((guint16)l->c.port);
        len = sizeof *s6;
    } else {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "listener '%s': '%s' is not an IP address", l->c.name, addr);
        return -1;
    }
    int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0)
        goto fail;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, 1024) < 0)
        goto fail;
    return fd;
fail:;
    int e = errno;
    if (fd >= 0)
        close(fd);
    g_set_error(error, G_IO_ERROR, g_io_error_from_errno(e), "listener '%s': cannot listen on %s port %d: %s",
                l->c.name, addr, (int)l->c.port, g_strerror(e));
    return -1;
}

static void
write_ports_file(void)
{
    GString *s = g_string_new(NULL);
    for (guint i = 0; listeners && i < listeners->len; i++) {
        KrListener *l = listeners->pdata[i];
        for (guint j = 0; j < l->fds->len; j++) {
            struct sockaddr_storage ss;
            socklen_t len = sizeof ss;
            char host[INET6_ADDRSTRLEN] = "?";
            int port = 0;
            if (getsockname(g_array_index(l->fds, int, j), (struct sockaddr *)&ss, &len) == 0) {
                if (ss.ss_family == AF_INET) {
                    inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, host, sizeof host);
                    port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
                } else {
                    inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, host, sizeof host);
                    port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
                }
            }
            g_string_append_printf(s, "%s %s %d\n", l->c.name, host, port);
            g_message("listening: %s (%s%s) on %s port %d", l->c.name, l->type->name,
                      l->c.tls == 2 ? ", TLS" : l->c.tls == 1 ? ", STARTTLS" : "", host, port);
        }
    }
    g_autofree char *dir = g_build_filename(kr_data_dir(), "run", NULL);
    g_mkdir_with_parents(dir, 0700);
    g_autofree char *path = g_build_filename(dir, "listeners", NULL);
    g_autoptr(GError) err = NULL;
    if (!g_file_set_contents(path, s->str, (gssize)s->len, &err))
        g_warning("cannot write %s: %s", path, err->message);
    g_string_free(s, TRUE);
}

gboolean
kr_listeners_start(GError **error)
{
    for (guint i = 0; listeners && i < listeners->len; i++) {
        KrListener *l = listeners->pdata[i];
        if (l->c.tls != 0) {
            g_autofree char *dcert = g_build_filename(kr_data_dir(), "tls", "cert.pem", NULL);
            g_autofree char *dkey = g_build_filename(kr_data_dir(), "tls", "key.pem", NULL);
            if (strcmp(l->c.tls_cert, dcert) == 0 && strcmp(l->c.tls_key, dkey) == 0 &&
                !kr_tls_ensure_selfsigned(dcert, dkey, error))
                return FALSE;
            l->tls_ctx = kr_tls_server_ctx(l->c.tls_cert, l->c.tls_key, error);
            if (!l->tls_ctx) {
                g_prefix_error(error, "listener '%s': ", l->c.name);
                return FALSE;
            }
        }
        l->per_ip = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
        l->fds = g_array_new(FALSE, FALSE, sizeof(int));
        l->sources = g_array_new(FALSE, FALSE, sizeof(guint));
        if (l->type->create && !l->created) {
            if (!l->type->create(l, error)) {
                g_prefix_error(error, "listener '%s': ", l->c.name);
                return FALSE;
            }
            l->created = TRUE;
        }
        for (char **a = l->c.address; a && *a; a++) {
            int fd = bind_one(l, *a, error);
            if (fd < 0)
                return FALSE;
            g_array_append_val(l->fds, fd);
            guint id = g_unix_fd_add(fd, G_IO_IN, on_accept, l);
            g_array_append_val(l->sources, id);
        }
    }
    write_ports_file();
    return TRUE;
}

void
kr_listeners_stop(void)
{
    for (guint i = 0; listeners && i < listeners->len; i++) {
        KrListener *l = listeners->pdata[i];
        for (guint j = 0; l->sources && j < l->sources->len; j++)
            g_source_remove(g_array_index(l->sources, guint, j));
        for (guint j = 0; l->fds && j < l->fds->len; j++)
            close(g_array_index(l->fds, int, j));
        if (l->sources)
            g_array_set_size(l->sources, 0);
        if (l->fds)
            g_array_set_size(l->fds, 0);
    }
}
