/* SPDX-License-Identifier: MIT */
/*
 * kr-registry.c - the registries modules fill from init(): stage types,
 * listener types, queue policies, auth backends, address verifiers,
 * stores, admin commands, services, control commands and address
 * resolvers.
 *
 * Each kind is a table name -> (module, item) plus its registration
 * order. Names are unique per kind; a clash names both modules.
 * Registration outside a module's init() is refused. Items are borrowed:
 * they must stay valid for the life of the process (modules are never
 * unloaded, so static const structs are the norm).
 */
#include "kr-registry-private.h"
#include <kurir/kr-worker.h>

typedef struct {
    KrModule *mod;
    gconstpointer item;
    char *name;
} Entry;

typedef struct {
    GHashTable *by_name;
    GPtrArray *order;
} Kind;

enum { K_STAGE, K_LISTENER, K_POLICY, K_AUTH, K_VERIFIER, K_STORE, K_COMMAND, K_SERVICE,
       K_CONTROL, K_RESOLVER, K_N };
static const char *const kind_names[K_N] = {"stage",  "listener", "queue policy",
                                             "auth backend", "address verifier", "store",
                                             "command", "service", "control", "resolver"};
static Kind kinds[K_N];
static KrModule *current;

void
kr_registry_begin(KrModule *mod)
{
    current = mod;
}

void
kr_registry_end(void)
{
    current = NULL;
}

static Kind *
kind(int k)
{
    if (!kinds[k].by_name) {
        kinds[k].by_name = g_hash_table_new(g_str_hash, g_str_equal);
        kinds[k].order = g_ptr_array_new();
    }
    return &kinds[k];
}

void
kr_registry_reset(void)
{
    for (int k = 0; k < K_N; k++) {
        if (!kinds[k].by_name)
            continue;
        g_hash_table_destroy(kinds[k].by_name);
        for (guint i = 0; i < kinds[k].order->len; i++) {
            Entry *e = kinds[k].order->pdata[i];
            g_free(e->name);
            g_free(e);
        }
        g_ptr_array_unref(kinds[k].order);
        kinds[k].by_name = NULL;
        kinds[k].order = NULL;
    }
}

static gboolean
add(int k, KrModule *mod, const char *name, gconstpointer item, uint32_t size, uint32_t min_size,
    GError **error)
{
    if (!mod || mod != current) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED,
                    "%s '%s' registered outside the module's init()", kind_names[k],
                    name ? name : "?");
        return FALSE;
    }
    if (!name || !*name || strlen(name) > 64) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, "%s with a bad name",
                    kind_names[k]);
        return FALSE;
    }
    if (size < min_size) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "%s '%s': struct_size %u is too small", kind_names[k], name, size);
        return FALSE;
    }
    Kind *kd = kind(k);
    Entry *old = g_hash_table_lookup(kd->by_name, name);
    if (old) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_EXISTS,
                    "%s '%s' is already registered by module '%s'", kind_names[k], name,
                    kr_module_name(old->mod));
        return FALSE;
    }
    Entry *e = g_new0(Entry, 1);
    e->mod = mod;
    e->item = item;
    e->name = g_strdup(name);
    g_hash_table_insert(kd->by_name, e->name, e);
    g_ptr_array_add(kd->order, e);
    return TRUE;
}

static gconstpointer
find(int k, const char *name, KrModule **mod_r)
{
    Kind *kd = kind(k);
    Entry *e = NULL;
    if (name)
        e = g_hash_table_lookup(kd->by_name, name);
    else if (kd->order->len)
        e = kd->order->pdata[0];
    if (mod_r)
        *mod_r = e ? e->mod : NULL;
    return e ? e->item : NULL;
}

#define MIN_SIZE(type, field) (uint32_t)(offsetof(type, field))

gboolean
kr_register_stage(KrModule *mod, const KrStageType *t, GError **error)
{
    if (t && !t->process) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, "stage type '%s' has no process()", t->name);
        return FALSE;
    }
    return add(K_STAGE, mod, t->name, t, t->struct_size, MIN_SIZE(KrStageType, spare), error);
}

gboolean
kr_register_listener(KrModule *mod, const KrListenerType *t, GError **error)
{
    return add(K_LISTENER, mod, t->name, t, t->struct_size, MIN_SIZE(KrListenerType, spare),
               error);
}

gboolean
kr_register_queue_policy(KrModule *mod, const KrQueuePolicy *p, GError **error)
{
    return add(K_POLICY, mod, p->name, p, p->struct_size, MIN_SIZE(KrQueuePolicy, spare), error);
}

gboolean
kr_register_auth(KrModule *mod, const KrAuthBackend *b, GError **error)
{
    return add(K_AUTH, mod, b->name, b, b->struct_size, MIN_SIZE(KrAuthBackend, spare), error);
}

gboolean
kr_register_address_verifier(KrModule *mod, const KrAddressVerifier *v, GError **error)
{
    return add(K_VERIFIER, mod, v->name, v, v->struct_size, MIN_SIZE(KrAddressVerifier, spare),
               error);
}

gboolean
kr_register_store(KrModule *mod, const KrStore *s, GError **error)
{
    return add(K_STORE, mod, s->name, s, s->struct_size, MIN_SIZE(KrStore, spare), error);
}

gboolean
kr_register_command(KrModule *mod, const KrCommand *c, GError **error)
{
    return add(K_COMMAND, mod, c->name, c, c->struct_size, MIN_SIZE(KrCommand, spare), error);
}

gboolean
kr_register_service(KrModule *mod, const KrService *s, GError **error)
{
    return add(K_SERVICE, mod, s->name, s, s->struct_size, MIN_SIZE(KrService, spare), error);
}

gboolean
kr_register_control(KrModule *mod, const KrControl *c, GError **error)
{
    return add(K_CONTROL, mod, c->name, c, c->struct_size, MIN_SIZE(KrControl, spare), error);
}

gboolean
kr_register_resolver(KrModule *mod, const KrResolver *r, GError **error)
{
    if (r && !r->resolve) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "resolver '%s' has no resolve()", r->name ? r->name : "?");
        return FALSE;
    }
    return add(K_RESOLVER, mod, r->name, r, r->struct_size, MIN_SIZE(KrResolver, spare), error);
}

const KrResolver *
kr_resolver(const char *name)
{
    return find(K_RESOLVER, name, NULL);
}

void
kr_resolution_clear(KrResolution *res)
{
    if (!res)
        return;
    g_clear_pointer(&res->address, g_free);
    g_clear_pointer(&res->transport, g_free);
    g_clear_pointer(&res->nexthop, g_free);
    g_clear_pointer(&res->reason, g_free);
    res->code = 0;
    res->ecode[0] = 0;
}

const KrStageType *
kr_registry_stage(const char *name)
{
    return find(K_STAGE, name, NULL);
}

const KrListenerType *
kr_registry_listener(const char *name)
{
    return find(K_LISTENER, name, NULL);
}

const KrCommand *
kr_registry_command(const char *name, KrModule **mod_r)
{
    return find(K_COMMAND, name, mod_r);
}

const KrControl *
kr_registry_control(const char *name)
{
    return find(K_CONTROL, name, NULL);
}

const KrQueuePolicy *
kr_queue_policy(const char *name)
{
    return find(K_POLICY, name, NULL);
}

const KrAuthBackend *
kr_auth_backend(const char *name)
{
    return find(K_AUTH, name, NULL);
}

const KrStore *
kr_store(const char *name)
{
    return find(K_STORE, name, NULL);
}

GPtrArray *
kr_registry_services(void)
{
    GPtrArray *out = g_ptr_array_new();
    Kind *kd = kind(K_SERVICE);
    for (guint i = 0; i < kd->order->len; i++)
        g_ptr_array_add(out, (gpointer)((Entry *)kd->order->pdata[i])->item);
    return out;
}

static gint
cmp_strp(gconstpointer a, gconstpointer b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

char **
kr_registry_names(const char *kname)
{
    GPtrArray *out = g_ptr_array_new();
    for (int k = 0; k < K_N; k++) {
        if (strcmp(kind_names[k], kname) != 0)
            continue;
        Kind *kd = kind(k);
        for (guint i = 0; i < kd->order->len; i++)
            g_ptr_array_add(out, g_strdup(((Entry *)kd->order->pdata[i])->name));
    }
    g_ptr_array_sort(out, cmp_strp);
    g_ptr_array_add(out, NULL);
    return (char **)g_ptr_array_free(out, FALSE);
}

gboolean
kr_local_address_exists(const char *address)
{
    Kind *kd = kind(K_AUTH);
    for (guint i = 0; i < kd->order->len; i++) {
        const KrAuthBackend *b = ((Entry *)kd->order->pdata[i])->item;
        if (b->user_exists && b->user_exists(b->self, address))
            return TRUE;
    }
    kd = kind(K_VERIFIER);
    for (guint i = 0; i < kd->order->len; i++) {
        const KrAddressVerifier *v = ((Entry *)kd->order->pdata[i])->item;
        if (v->exists && v->exists(v->self, address))
            return TRUE;
    }
    return FALSE;
}

/* --- async auth -------------------------------------------------------- */

typedef struct {
    char *user, *password, *canon;
    KrAuthResult result;
    KrAuthDoneFunc done;
    gpointer ud;
} AuthJob;

static void
auth_work(gpointer p)
{
    AuthJob *j = p;
    const KrAuthBackend *b = kr_auth_backend(NULL);
    if (!b || !b->authenticate) {
        j->result = KR_AUTH_TEMPFAIL;
        return;
    }
    g_autofree char *user = kr_addr_canon(j->user);
    j->result = b->authenticate(b->self, user, j->password, &j->canon);
}

static void
auth_done(gpointer p)
{
    AuthJob *j = p;
    j->done(j->result, j->result == KR_AUTH_OK ? j->canon : NULL, j->ud);
    g_free(j->user);
    if (j->password) {
        memset(j->password, 0, strlen(j->password));
        g_free(j->password);
    }
    g_free(j->canon);
    g_free(j);
}

void
kr_auth_check_async(const char *user, const char *password, KrAuthDoneFunc done, gpointer ud)
{
    AuthJob *j = g_new0(AuthJob, 1);
    j->user = g_strdup(user);
    j->password = g_strdup(password);
    j->done = done;
    j->ud = ud;
    kr_worker_run(auth_work, auth_done, j);
}
