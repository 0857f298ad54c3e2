/* SPDX-License-Identifier: MIT */
/*
 * kr-loader.c - the module loader.
 *
 *   kr_modules_load(cfg, dir, list, errors)   load what `modules` lists
 *   kr_module_load_file(path, name, group, errors)
 *   kr_modules_fini()                         fini in reverse load order
 *
 * Each module is dlopen()ed with RTLD_NOW | RTLD_LOCAL (unresolved
 * symbols fail here, naming the file), its one descriptor kr_module_NAME
 * is looked up, and refused when: the symbol is missing, abi_major
 * differs from KR_ABI_MAJOR, abi_minor is newer than KR_ABI_MINOR,
 * struct_size is too small, or desc->name is not the file's name. A name
 * listed twice is an error. Modules are never dlclose()d: they stay
 * resident until the process exits.
 */
#include "kr-registry-private.h"
#include "kr-settings-private.h"
#include <dlfcn.h>
#include <unistd.h>

static GPtrArray *loaded; /* KrModule*, load order */

const char *
kr_module_name(const KrModule *mod)
{
    return mod->name;
}

gpointer
kr_module_conf(const KrModule *mod)
{
    return mod->conf;
}

const char *
kr_module_data_dir(const KrModule *mod)
{
    return kr_data_dir();
}

GPtrArray *
kr_modules_loaded(void)
{
    if (!loaded)
        loaded = g_ptr_array_new();
    return loaded;
}

const char *
kr_default_module_path(void)
{
    static char *path;
    if (!path) {
        g_autofree char *exe = g_file_read_link("/proc/self/exe", NULL);
        g_autofree char *dir = exe ? g_path_get_dirname(exe) : g_strdup(".");
        path = g_build_filename(dir, "modules", NULL);
    }
    return path;
}

static gboolean
valid_module_name(const char *name)
{
    if (!*name || strlen(name) > 64 || name[0] == '-')
        return FALSE;
    for (const char *p = name; *p; p++)
        if (!(g_ascii_islower(*p) || g_ascii_isdigit(*p) || *p == '-' || *p == '_'))
            return FALSE;
    return TRUE;
}

KrModule *
kr_module_load_file(const char *path, const char *name, config_setting_t *group,
                    GPtrArray *errors)
{
    for (guint i = 0; i < kr_modules_loaded()->len; i++) {
        KrModule *m = loaded->pdata[i];
        if (strcmp(m->name, name) == 0) {
            g_ptr_array_add(errors, g_strdup_printf("%s: module '%s' is listed twice", path, name));
            return NULL;
        }
    }
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char *e = dlerror();
        g_ptr_array_add(errors, g_strdup_printf("%s: cannot load module '%s': %s", path, name,
                                                e ? e : "unknown error"));
        return NULL;
    }
    g_autofree char *sym = g_strconcat(KR_MODULE_SYMBOL_PREFIX, name, NULL);
    for (char *p = sym; *p; p++)
        if (*p == '-')
            *p = '_';
    const KrModuleDesc *d = dlsym(h, sym);
    char *why = NULL;
    if (!d)
        why = g_strdup_printf("no module descriptor '%s' (not a kurir module, or misnamed)", sym);
    else if (d->abi_major != KR_ABI_MAJOR)
        why = g_strdup_printf("built for module ABI %u.%u, this kurir has ABI %u.%u (major "
                              "differs: rebuild the module)",
                              d->abi_major, d->abi_minor, KR_ABI_MAJOR, KR_ABI_MINOR);
    else if (d->abi_minor > KR_ABI_MINOR)
        why = g_strdup_printf("built for module ABI %u.%u, newer than this kurir's %u.%u",
                              d->abi_major, d->abi_minor, KR_ABI_MAJOR, KR_ABI_MINOR);
    else if (d->struct_size < offsetof(KrModuleDesc, spare))
        why = g_strdup_printf("descriptor too small (%u bytes)", d->struct_size);
    else if (!d->name || strcmp(d->name, name) != 0)
        why = g_strdup_printf("descriptor names the module '%s', but the file is '%s.so'",
                              d->name ? d->name : "(null)", name);
    else if (!d->init)
        why = g_strdup("descriptor has no init function");
    if (why) {
        g_ptr_array_add(errors, g_strdup_printf("%s: refusing module '%s': %s", path, name, why));
        g_free(why);
        /* Never dlclose: constructors may have run. */
        return NULL;
    }
    KrModule *m = g_new0(KrModule, 1);
    m->desc = d;
    m->name = g_strdup(name);
    m->path = g_strdup(path);
    m->handle = h;
    if (d->conf_size > 0)
        m->conf = g_malloc0(d->conf_size);
    g_autofree char *what = g_strdup_printf("module '%s' settings", name);
    if (!kr_settings_parse(d->settings, group, m->conf, NULL, what, errors)) {
        g_ptr_array_add(kr_modules_loaded(), m); /* not initialised: fini skips it */
        return m;
    }
    g_autoptr(GError) err = NULL;
    kr_registry_begin(m);
    gboolean ok = d->init(m, &err);
    kr_registry_end();
    if (!ok) {
        g_autofree char *loc = group ? kr_cfg_where(group) : g_strdup(path);
        g_ptr_array_add(errors, g_strdup_printf("%s: module '%s' failed to start: %s", loc, name,
                                                err ? err->message : "unknown error"));
    } else {
        m->initialised = TRUE;
    }
    g_ptr_array_add(kr_modules_loaded(), m);
    return m;
}

void
kr_modules_load(config_t *cfg, const char *dir, config_setting_t *list, GPtrArray *errors)
{
    if (!list)
        return;
    int n = config_setting_length(list);
    for (int i = 0; i < n; i++) {
        config_setting_t *e = config_setting_get_elem(list, i);
        if (config_setting_type(e) != CONFIG_TYPE_STRING) {
            kr_diag(errors, e, "'modules' must be a list of module names (strings)");
            continue;
        }
        const char *name = config_setting_get_string(e);
        if (!valid_module_name(name)) {
            kr_diag(errors, e, "bad module name \"%s\" (use lowercase letters, digits, '-')",
                    name);
            continue;
        }
        g_autofree char *file = g_strconcat(name, ".so", NULL);
        g_autofree char *path = g_build_filename(dir, file, NULL);
        if (access(path, F_OK) != 0) {
            kr_diag(errors, e, "unknown module '%s': no file %s", name, path);
            continue;
        }
        config_setting_t *group = config_lookup(cfg, name);
        guint before = errors->len;
        kr_module_load_file(path, name, group, errors);
        /* Point load errors at the config line that asked for it. */
        for (guint j = before; j < errors->len; j++) {
            if (!g_str_has_prefix(errors->pdata[j], path))
                continue;
            g_autofree char *loc = kr_cfg_where(e);
            char *old = errors->pdata[j];
            errors->pdata[j] = g_strdup_printf("%s: %s", loc, old);
            g_free(old);
        }
    }
}

void
kr_modules_fini(void)
{
    if (!loaded)
        return;
    for (guint i = loaded->len; i-- > 0;) {
        KrModule *m = loaded->pdata[i];
        if (m->initialised && m->desc->fini)
            m->desc->fini(m);
        m->initialised = FALSE;
        if (m->conf)
            kr_settings_clear(m->desc->settings, m->conf);
        g_free(m->conf);
        m->conf = NULL;
    }
    /* The KrModule records and handles stay: modules are never unloaded. */
}
