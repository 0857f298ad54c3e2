/* SPDX-License-Identifier: MIT */
/*
 * rewrite-map.c - parse and look up trivial-rewrite's plain-text maps
 * (canonical, virtual, transport). The format and the lookup rules are
 * in rewrite-map.h.
 *
 *   rw_map_load, rw_map_parse, rw_map_ref, rw_map_unref, rw_map_changed,
 *   rw_map_lookup, rw_map_size, rw_map_path, rw_map_exists,
 *   rw_addr_map_apply, rw_transport_lookup, rw_transport_parse,
 *   rw_transport_clear
 *
 * Pure apart from reading the file: no globals, no logging. A parse
 * collects every error (up to RW_MAX_ERRORS) so an admin sees them all.
 */
#include "rewrite-map.h"

#include <errno.h>
#include <fcntl.h>
#include <gio/gio.h>
#include <kurir/kr-file.h>
#include <kurir/kr-watch.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define RW_MAX_ERRORS 50

typedef struct {
    char *value;
    guint line;
} Entry;

struct RwMap {
    gint ref;
    char *path;
    RwMapKind kind;
    GHashTable *entries; /* lowercased key -> Entry */
    gboolean exists;
    struct stat st; /* of the file loaded */
};

static void
entry_free(gpointer p)
{
    Entry *e = p;
    g_free(e->value);
    g_free(e);
}

static RwMap *
map_new(const char *name, RwMapKind kind)
{
    RwMap *m = g_new0(RwMap, 1);
    m->ref = 1;
    m->path = g_strdup(name);
    m->kind = kind;
    m->entries = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, entry_free);
    return m;
}

RwMap *
rw_map_ref(RwMap *map)
{
    if (map)
        g_atomic_int_inc(&map->ref);
    return map;
}

void
rw_map_unref(RwMap *map)
{
    if (!map || !g_atomic_int_dec_and_test(&map->ref))
        return;
    g_hash_table_destroy(map->entries);
    g_free(map->path);
    g_free(map);
}

guint
rw_map_size(const RwMap *map)
{
    return map ? g_hash_table_size(map->entries) : 0;
}

const char *
rw_map_path(const RwMap *map)
{
    return map ? map->path : NULL;
}

gboolean
rw_map_exists(const RwMap *map)
{
    return map && map->exists;
}

const char *
rw_map_lookup(const RwMap *map, const char *key, guint *line_r)
{
    if (!map || !key)
        return NULL;
    g_autofree char *k = g_ascii_strdown(key, -1);
    Entry *e = g_hash_table_lookup(map->entries, k);
    if (line_r)
        *line_r = e ? e->line : 0;
    return e ? e->value : NULL;
}

/* --- validation ---------------------------------------------------------- */

/* Printable, no blanks, no characters that never belong in an address
 * token of a map. */
static gboolean
token_ok(const char *s, const char **why)
{
    if (!*s) {
        *why = "is empty";
        return FALSE;
    }
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p <= ' ' || *p == 0x7f) {
            *why = "contains a blank or control character";
            return FALSE;
        }
        if (strchr("<>(),;\\\"", *p)) {
            *why = "contains a character not allowed here (one of <>(),;\\\")";
            return FALSE;
        }
    }
    return TRUE;
}

static gboolean
domain_ok(const char *d)
{
    if (!*d || strlen(d) > 253 || d[0] == '.' || strstr(d, ".."))
        return FALSE;
    if (d[0] == '[')
        return d[strlen(d) - 1] == ']' && strlen(d) > 2;
    for (const unsigned char *p = (const unsigned char *)d; *p; p++)
        if (!(g_ascii_isalnum(*p) || *p == '-' || *p == '.' || *p >= 0x80))
            return FALSE;
    return TRUE;
}

/* "user@domain", "user" or "@domain" (keys and values of address maps). */
static gboolean
address_token_ok(const char *s, const char *what, GString *err)
{
    const char *why = NULL;
    if (!token_ok(s, &why)) {
        g_string_append_printf(err, "%s \"%s\" %s", what, s, why);
        return FALSE;
    }
    const char *at = strrchr(s, '@');
    if (!at)
        return TRUE;
    if (strchr(s, '@') != at) {
        g_string_append_printf(err, "%s \"%s\" has more than one '@'", what, s);
        return FALSE;
    }
    if (!domain_ok(at + 1)) {
        g_string_append_printf(err, "%s \"%s\" has a bad domain", what, s);
        return FALSE;
    }
    if (at - s > 64) {
        g_string_append_printf(err, "%s \"%s\": local part longer than 64 bytes", what, s);
        return FALSE;
    }
    return TRUE;
}

static gboolean
nexthop_ok(const char *h)
{
    const char *host_end;
    if (h[0] == '[') {
        const char *close = strchr(h, ']');
        if (!close || close == h + 1)
            return FALSE;
        for (const char *p = h + 1; p < close; p++)
            if (!(g_ascii_isalnum(*p) || strchr(".:-", *p)))
                return FALSE;
        host_end = close + 1;
    } else {
        host_end = strchr(h, ':');
        if (!host_end)
            host_end = h + strlen(h);
        g_autofree char *host = g_strndup(h, host_end - h);
        if (!domain_ok(host) || host[0] == '[')
            return FALSE;
    }
    if (!*host_end)
        return TRUE;
    if (*host_end != ':' || !host_end[1])
        return FALSE;
    guint64 port = 0;
    if (!g_ascii_string_to_unsigned(host_end + 1, 10, 1, 65535, &port, NULL))
        return FALSE;
    return TRUE;
}

void
rw_transport_clear(RwTransport *t)
{
    g_clear_pointer(&t->transport, g_free);
    g_clear_pointer(&t->nexthop, g_free);
    g_clear_pointer(&t->text, g_free);
    t->code = 0;
    t->ecode[0] = 0;
}

gboolean
rw_transport_parse(const char *value, RwTransport *out, GError **error)
{
    memset(out, 0, sizeof *out);
    const char *colon = strchr(value, ':');
    g_autofree char *name = colon ? g_strndup(value, colon - value) : g_strdup(value);
    const char *arg = colon ? colon + 1 : "";
    if (strcmp(name, "error") == 0) {
        out->transport = g_strdup("error");
        out->nexthop = g_strdup("");
        out->code = 550;
        g_strlcpy(out->ecode, "5.1.1", sizeof out->ecode);
        while (*arg == ' ' || *arg == '\t')
            arg++;
        /* An optional enhanced status code first: 5.X.Y */
        if (arg[0] && arg[1] == '.' && g_ascii_isdigit(arg[0])) {
            gsize n = strcspn(arg, " \t");
            g_autofree char *code = g_strndup(arg, n);
            g_auto(GStrv) parts = g_strsplit(code, ".", -1);
            gboolean ok = g_strv_length(parts) == 3 && n < sizeof out->ecode;
            for (int i = 0; ok && i < 3; i++) {
                guint64 v;
                ok = g_ascii_string_to_unsigned(parts[i], 10, 0, 999, &v, NULL) &&
                     strlen(parts[i]) <= 3;
            }
            if (!ok || code[0] != '5') {
                rw_transport_clear(out);
                g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                            "\"%s\" is not a permanent enhanced status code (5.X.Y)", code);
                return FALSE;
            }
            g_strlcpy(out->ecode, code, sizeof out->ecode);
            arg += n;
            while (*arg == ' ' || *arg == '\t')
                arg++;
        }
        out->text = g_strdup(*arg ? arg : "address refused");
        return TRUE;
    }
    if (strcmp(name, "local") != 0 && strcmp(name, "smtp") != 0 && strcmp(name, "relay") != 0) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "unknown transport \"%s\" (local, smtp, relay or error)", name);
        return FALSE;
    }
    if (strcmp(name, "local") == 0 && *arg) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "transport local takes no next hop");
        return FALSE;
    }
    if (strcmp(name, "relay") == 0 && !*arg) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "transport relay needs a next hop (relay:[host]:port)");
        return FALSE;
    }
    if (*arg && !nexthop_ok(arg)) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "bad next hop \"%s\" (host, [host], host:port or [host]:port)", arg);
        return FALSE;
    }
    out->transport = g_steal_pointer(&name);
    out->nexthop = g_ascii_strdown(arg, -1);
    return TRUE;
}

static gboolean
check_entry(RwMapKind kind, const char *key, const char *value, GString *err)
{
    if (kind == RW_MAP_ADDRESS) {
        if (strcmp(key, "@") == 0 || key[strlen(key) - 1] == '@') {
            g_string_append_printf(err, "key \"%s\" names no domain", key);
            return FALSE;
        }
        if (!address_token_ok(key, "key", err))
            return FALSE;
        if (strpbrk(value, " \t,")) {
            g_string_append_printf(err, "value \"%s\": one address only (lists belong in aliases)",
                                   value);
            return FALSE;
        }
        if (value[strlen(value) - 1] == '@') {
            g_string_append_printf(err, "value \"%s\" names no domain", value);
            return FALSE;
        }
        return address_token_ok(value, "value", err);
    }
    /* transport map */
    if (strcmp(key, "*") != 0) {
        const char *why = NULL;
        if (!token_ok(key, &why)) {
            g_string_append_printf(err, "key \"%s\" %s", key, why);
            return FALSE;
        }
        const char *at = strrchr(key, '@');
        const char *dom = at ? at + 1 : (key[0] == '.' ? key + 1 : key);
        if ((at && (at == key || strchr(key, '@') != at)) || !domain_ok(dom)) {
            g_string_append_printf(err, "key \"%s\" is not an address, domain, .domain or \"*\"",
                                   key);
            return FALSE;
        }
    }
    RwTransport t;
    g_autoptr(GError) e = NULL;
    if (!rw_transport_parse(value, &t, &e)) {
        g_string_append(err, e->message);
        return FALSE;
    }
    rw_transport_clear(&t);
    return TRUE;
}

/* --- parsing --------------------------------------------------------------- */

static void
add_error(GPtrArray *errors, const char *name, guint line, const char *why)
{
    if (errors->len < RW_MAX_ERRORS)
        g_ptr_array_add(errors, g_strdup_printf("%s:%u: %s", name, line, why));
    else if (errors->len == RW_MAX_ERRORS)
        g_ptr_array_add(errors, g_strdup_printf("%s: too many errors; giving up", name));
}

RwMap *
rw_map_parse(const char *name, const char *text, gsize len, RwMapKind kind, GPtrArray *errors)
{
    RwMap *m = map_new(name, kind);
    m->exists = TRUE;
    guint before = errors->len;
    const char *p = text, *end = text + len;
    for (guint lineno = 1; p < end && errors->len <= before + RW_MAX_ERRORS; lineno++) {
        const char *nl = memchr(p, '\n', end - p);
        const char *le = nl ? nl : end;
        gsize n = le - p;
        if (n > 0 && p[n - 1] == '\r')
            n--;
        if (n > RW_MAP_MAX_LINE) {
            add_error(errors, name, lineno, "line too long");
            p = nl ? nl + 1 : end;
            continue;
        }
        g_autofree char *line = g_strndup(p, n);
        p = nl ? nl + 1 : end;
        if (strlen(line) != n) {
            add_error(errors, name, lineno, "contains a NUL byte");
            continue;
        }
        if (!g_utf8_validate(line, (gssize)n, NULL)) {
            add_error(errors, name, lineno, "not valid UTF-8");
            continue;
        }
        gboolean bad = FALSE;
        for (const unsigned char *c = (const unsigned char *)line; *c; c++)
            if ((*c < 0x20 && *c != '\t') || *c == 0x7f)
                bad = TRUE;
        if (bad) {
            add_error(errors, name, lineno, "contains a control character");
            continue;
        }
        char *s = g_strstrip(line);
        if (!*s || *s == '#')
            continue;
        gsize kl = strcspn(s, " \t");
        if (!s[kl]) {
            g_autofree char *why = g_strdup_printf("\"%s\" has no value (KEY VALUE)", s);
            add_error(errors, name, lineno, why);
            continue;
        }
        s[kl] = 0;
        char *value = g_strstrip(s + kl + 1);
        g_autofree char *key = g_ascii_strdown(s, -1);
        g_autoptr(GString) err = g_string_new(NULL);
        if (!check_entry(kind, key, value, err)) {
            add_error(errors, name, lineno, err->str);
            continue;
        }
        Entry *old = g_hash_table_lookup(m->entries, key);
        if (old) {
            g_autofree char *why =
                g_strdup_printf("key \"%s\" already given on line %u", key, old->line);
            add_error(errors, name, lineno, why);
            continue;
        }
        if (g_hash_table_size(m->entries) >= RW_MAP_MAX_ENTRIES) {
            add_error(errors, name, lineno, "too many entries");
            break;
        }
        Entry *e = g_new0(Entry, 1);
        e->value = g_strdup(value);
        e->line = lineno;
        g_hash_table_insert(m->entries, g_steal_pointer(&key), e);
    }
    if (errors->len != before) {
        rw_map_unref(m);
        return NULL;
    }
    return m;
}

RwMap *
rw_map_load(const char *path, RwMapKind kind, GError **error)
{
    struct stat st;
    gsize size;
    GError *err = NULL;
    g_autofree char *buf = kr_file_read_bounded(path, RW_MAP_MAX_FILE, &st, &size, &err);
    if (!buf) {
        if (g_error_matches(err, G_IO_ERROR, G_IO_ERROR_NOT_FOUND)) {
            g_error_free(err);
            return map_new(path, kind); /* exists = FALSE */
        }
        g_propagate_error(error, err);
        return NULL;
    }
    g_autoptr(GPtrArray) errors = g_ptr_array_new_with_free_func(g_free);
    RwMap *m = rw_map_parse(path, buf, size, kind, errors);
    if (!m) {
        g_ptr_array_add(errors, NULL);
        g_autofree char *all = g_strjoinv("\n", (char **)errors->pdata);
        g_set_error_literal(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, all);
        return NULL;
    }
    m->st = st;
    return m;
}

gboolean
rw_map_changed(const RwMap *map)
{
    struct stat st;
    if (!map || !map->path)
        return FALSE;
    if (stat(map->path, &st) < 0)
        return map->exists; /* removed (or unreadable): changed if it was there */
    if (!map->exists)
        return TRUE;
    return !kr_watch_same_file(&st, &map->st);
}

/* --- lookups --------------------------------------------------------------- */

char *
rw_addr_map_apply(const RwMap *map, const char *address, gboolean (*is_local)(const char *),
                  const char *default_domain, char **why_r)
{
    if (!map || rw_map_size(map) == 0)
        return NULL;
    const char *at = strrchr(address, '@');
    if (!at)
        return NULL;
    g_autofree char *local = g_strndup(address, at - address);
    const char *domain = at + 1;
    g_autofree char *dkey = g_strconcat("@", domain, NULL);
    g_autofree char *akey = g_ascii_strdown(address, -1);
    const char *key = akey, *value;
    guint line = 0;
    value = rw_map_lookup(map, address, &line);
    g_autofree char *lkey = g_ascii_strdown(local, -1);
    if (!value && is_local && is_local(domain)) {
        key = lkey;
        value = rw_map_lookup(map, local, &line);
    }
    if (!value) {
        key = dkey;
        value = rw_map_lookup(map, dkey, &line);
    }
    if (!value)
        return NULL;
    char *out;
    if (value[0] == '@') {
        g_autofree char *d = g_ascii_strdown(value + 1, -1);
        out = g_strdup_printf("%s@%s", local, d);
    } else if (!strchr(value, '@')) {
        out = g_strdup_printf("%s@%s", value, default_domain);
    } else {
        const char *vat = strrchr(value, '@');
        g_autofree char *d = g_ascii_strdown(vat + 1, -1);
        out = g_strdup_printf("%.*s@%s", (int)(vat - value), value, d);
    }
    if (why_r)
        *why_r = g_strdup_printf("%s:%u: %s -> %s", map->path, line, key, value);
    return out;
}

gboolean
rw_transport_lookup(const RwMap *map, const char *address, RwTransport *out, char **why_r)
{
    memset(out, 0, sizeof *out);
    if (!map || rw_map_size(map) == 0)
        return FALSE;
    const char *at = strrchr(address, '@');
    const char *domain = at ? at + 1 : address;
    const char *value = NULL;
    guint line = 0;
    g_autofree char *key = NULL;
    if ((value = rw_map_lookup(map, address, &line))) {
        key = g_strdup(address);
    } else if ((value = rw_map_lookup(map, domain, &line))) {
        key = g_strdup(domain);
    } else {
        for (const char *d = strchr(domain, '.'); d && !value; d = strchr(d + 1, '.')) {
            if ((value = rw_map_lookup(map, d, &line)))
                key = g_strdup(d);
        }
        if (!value && (value = rw_map_lookup(map, "*", &line)))
            key = g_strdup("*");
    }
    if (!value)
        return FALSE;
    if (!rw_transport_parse(value, out, NULL))
        return FALSE; /* cannot happen: checked when parsed */
    if (why_r)
        *why_r = g_strdup_printf("%s:%u: %s -> %s", map->path, line, key, value);
    return TRUE;
}
