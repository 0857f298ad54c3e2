/* SPDX-License-Identifier: MIT */
/*
 * smtp-client-hop.c - next-hop syntax and the resolver_override table of
 * the SMTP client. Pure (numeric addresses only, never DNS); unit tests
 * in t/test-smtp-client.c.
 *
 *   smtpc_target_parse(spec, port, t, error)   "host", "host:port",
 *                                  "[host]:port" (no MX lookup), "[192.0.2.1]"
 *   smtpc_target_clear(t)
 *   smtpc_override_parse(entries, port, error) "name = addr[:port], ..." ->
 *                                  name -> GPtrArray of SmtpcAddr
 *   smtpc_numeric_addr(host, ip, port)        one numeric address, or NULL
 *   smtpc_addr_free(a)
 *   smtpc_mx_array()                           an empty GArray of SmtpcMx
 *   smtpc_mx_plan(mxs, myhostname)             MX records -> the hosts to try
 */
#include "smtp-client.h"
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <string.h>

void
smtpc_addr_free(gpointer p)
{
    SmtpcAddr *a = p;
    if (!a)
        return;
    g_free(a->host);
    g_free(a->ip);
    g_free(a);
}

void
smtpc_target_clear(SmtpcTarget *t)
{
    g_clear_pointer(&t->host, g_free);
}

static gboolean
parse_port(const char *s, guint16 *port_r)
{
    char *end = NULL;
    guint64 v = g_ascii_strtoull(s, &end, 10);
    if (!*s || !end || *end || v == 0 || v > 65535)
        return FALSE;
    *port_r = (guint16)v;
    return TRUE;
}

gboolean
smtpc_target_parse(const char *spec, guint16 default_port, SmtpcTarget *t, GError **error)
{
    memset(t, 0, sizeof *t);
    g_autofree char *s = g_strstrip(g_strdup(spec ? spec : ""));
    char *host = s, *port = NULL;
    gboolean no_mx = FALSE;
    if (*s == '[') {
        char *close = strchr(s, ']');
        if (!close || close == s + 1)
            goto bad;
        *close = 0;
        host = s + 1;
        no_mx = TRUE;
        if (close[1] == ':')
            port = close + 2;
        else if (close[1])
            goto bad;
    } else {
        char *colon = strchr(s, ':');
        if (colon) {
            if (strchr(colon + 1, ':'))
                goto bad; /* a bare IPv6 address needs brackets */
            *colon = 0;
            port = colon + 1;
        }
    }
    if (!*host || strpbrk(host, " \t[]<>@,;\"\\"))
        goto bad;
    t->port = default_port;
    if (port && !parse_port(port, &t->port))
        goto bad;
    t->host = g_ascii_strdown(host, -1);
    t->no_mx = no_mx;
    return TRUE;
bad:
    g_set_error(error, SMTPC_ERROR, 0,
                "'%s' is not a next hop (host, host:port, [host]:port, [address])",
                spec ? spec : "");
    return FALSE;
}

/* A numeric address, with the port, into a new SmtpcAddr (NULL if not
 * numeric). */
SmtpcAddr *
smtpc_numeric_addr(const char *host, const char *ip, guint16 port)
{
    struct addrinfo hints = {.ai_flags = AI_NUMERICHOST, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    const char *p = ip;
    if (g_ascii_strncasecmp(p, "IPv6:", 5) == 0)
        p += 5;
    if (getaddrinfo(p, NULL, &hints, &res) != 0 || !res)
        return NULL;
    SmtpcAddr *a = g_new0(SmtpcAddr, 1);
    memcpy(&a->sa, res->ai_addr, res->ai_addrlen);
    a->salen = res->ai_addrlen;
    freeaddrinfo(res);
    if (a->sa.ss_family == AF_INET)
        ((struct sockaddr_in *)&a->sa)->sin_port = htons(port);
    else
        ((struct sockaddr_in6 *)&a->sa)->sin6_port = htons(port);
    a->host = g_strdup(host);
    a->ip = g_strdup(p);
    a->port = port;
    return a;
}

GHashTable *
smtpc_override_parse(char **entries, guint16 default_port, GError **error)
{
    GHashTable *t =
        g_hash_table_new_full(g_str_hash, g_str_equal, g_free, (GDestroyNotify)g_ptr_array_unref);
    for (guint i = 0; entries && entries[i]; i++) {
        const char *e = entries[i];
        const char *eq = strchr(e, '=');
        g_autofree char *name = eq ? g_strstrip(g_ascii_strdown(e, eq - e)) : NULL;
        if (!eq || !*name || strchr(name, ' ')) {
            g_set_error(error, SMTPC_ERROR, 0,
                        "resolver_override: '%s' is not \"name = address[:port], ...\"", e);
            goto fail;
        }
        GPtrArray *list = g_hash_table_lookup(t, name);
        if (!list) {
            list = g_ptr_array_new_with_free_func(smtpc_addr_free);
            g_hash_table_insert(t, g_strdup(name), list);
        }
        g_auto(GStrv) vals = g_strsplit(eq + 1, ",", -1);
        for (guint j = 0; vals[j]; j++) {
            SmtpcTarget tg;
            g_strstrip(vals[j]);
            /* "192.0.2.1:25", "[::1]:2525", "::1" */
            SmtpcAddr *a = NULL;
            if (!strchr(vals[j], '[') && strchr(vals[j], ':') &&
                strchr(vals[j], ':') != strrchr(vals[j], ':'))
                a = smtpc_numeric_addr(name, vals[j], default_port);
            else if (smtpc_target_parse(vals[j], default_port, &tg, NULL)) {
                a = smtpc_numeric_addr(name, tg.host, tg.port);
                smtpc_target_clear(&tg);
            }
            if (!a) {
                g_set_error(error, SMTPC_ERROR, 0,
                            "resolver_override: '%s': '%s' is not a numeric address[:port]", e,
                            vals[j]);
                goto fail;
            }
            g_ptr_array_add(list, a);
        }
    }
    return t;
fail:
    g_hash_table_destroy(t);
    return NULL;
}

/* ---- MX records ---- */

static void
mx_clear(gpointer p)
{
    g_free(((SmtpcMx *)p)->name);
}

GArray *
smtpc_mx_array(void)
{
    GArray *a = g_array_new(FALSE, FALSE, sizeof(SmtpcMx));
    g_array_set_clear_func(a, mx_clear);
    return a;
}

typedef struct {
    SmtpcMx mx;
    guint32 rnd;
} Shuffled;

static gint
shuffled_cmp(gconstpointer a, gconstpointer b)
{
    const Shuffled *x = a, *y = b;
    if (x->mx.pref != y->mx.pref)
        return x->mx.pref < y->mx.pref ? -1 : 1;
    return x->rnd < y->rnd ? -1 : x->rnd > y->rnd;
}

SmtpcMxPlan
smtpc_mx_plan(GArray *mxs, const char *myhostname)
{
    if (mxs->len == 1) {
        SmtpcMx *m = &g_array_index(mxs, SmtpcMx, 0);
        if (m->pref == 0 && (!m->name[0] || !strcmp(m->name, ".")))
            return SMTPC_MX_NULL;
    }
    /* Sort by preference, equal ones in random order (RFC 5321 5.1). */
    g_autoptr(GArray) tmp = g_array_sized_new(FALSE, FALSE, sizeof(Shuffled), mxs->len);
    for (guint i = 0; i < mxs->len; i++) {
        Shuffled sh = {.mx = g_array_index(mxs, SmtpcMx, i), .rnd = g_random_int()};
        g_array_append_val(tmp, sh);
    }
    g_array_sort(tmp, shuffled_cmp);
    for (guint i = 0; i < tmp->len; i++)
        g_array_index(mxs, SmtpcMx, i) = g_array_index(tmp, Shuffled, i).mx;
    /* If we are an MX of the domain, only better ones may be used. */
    guint limit = mxs->len;
    for (guint i = 0; myhostname && i < mxs->len; i++) {
        SmtpcMx *m = &g_array_index(mxs, SmtpcMx, i);
        if (!g_ascii_strcasecmp(m->name, myhostname)) {
            guint pref = m->pref;
            for (limit = 0; limit < mxs->len && g_array_index(mxs, SmtpcMx, limit).pref < pref;
                 limit++)
                ;
            break;
        }
    }
    if (limit == 0)
        return SMTPC_MX_LOOP;
    g_array_set_size(mxs, limit);
    /* Names that are no host ("." among others) are skipped. */
    for (guint i = mxs->len; i-- > 0;) {
        SmtpcMx *m = &g_array_index(mxs, SmtpcMx, i);
        if (!m->name[0] || !strcmp(m->name, "."))
            g_array_remove_index(mxs, i);
    }
    return mxs->len ? SMTPC_MX_OK : SMTPC_MX_NULL;
}
