/* SPDX-License-Identifier: MIT */
/*
 * kr-startup.c - read kurir.conf and bring the core up (see kr-startup.h).
 *
 * Top-level keys: core, modules, listeners, pipeline, and one group per
 * loaded module (named after it). Anything else is an error with a hint.
 * A syntax error stops there (libconfig reports the first one only).
 */
#include "kr-startup.h"
#include "kr-pipeline-private.h"
#include "kr-registry-private.h"
#include "kr-settings-private.h"

static config_t cfg;
static gboolean cfg_loaded;
static KrCoreConf core_conf;

config_t *
kr_startup_config(void)
{
    return cfg_loaded ? &cfg : NULL;
}

static gboolean
read_config(config_t *c, const char *file, const char *text, GPtrArray *errors)
{
    config_init(c);
    config_set_options(c, CONFIG_OPTION_AUTOCONVERT | CONFIG_OPTION_SEMICOLON_SEPARATORS);
    int ok;
    if (file) {
        g_autofree char *dir = g_path_get_dirname(file);
        config_set_include_dir(c, dir);
        ok = config_read_file(c, file);
    } else {
        ok = config_read_string(c, text ? text : kr_default_config);
    }
    if (!ok) {
        const char *ef = config_error_file(c);
        if (config_error_type(c) == CONFIG_ERR_FILE_IO)
            g_ptr_array_add(errors, g_strdup_printf("%s: cannot read config: %s", file ? file : "?",
                                                    g_strerror(errno)));
        else
            g_ptr_array_add(errors, g_strdup_printf("%s:%d: syntax error: %s",
                                                    ef ? ef : (file ? file : "(embedded kurir.conf)"),
                                                    config_error_line(c), config_error_text(c)));
        config_destroy(c);
        return FALSE;
    }
    return TRUE;
}

static gboolean
list_has(config_setting_t *list, const char *name)
{
    for (int i = 0; list && i < config_setting_length(list); i++) {
        const char *s = config_setting_get_string_elem(list, i);
        if (s && strcmp(s, name) == 0)
            return TRUE;
    }
    return FALSE;
}

static void
check_top_level(config_t *c, GPtrArray *errors)
{
    static const char *const known[] = {"core", "modules", "listeners", "pipeline", NULL};
    config_setting_t *root = config_root_setting(c);
    config_setting_t *mods = config_setting_get_member(root, "modules");
    for (int i = 0; i < config_setting_length(root); i++) {
        config_setting_t *s = config_setting_get_elem(root, i);
        const char *name = config_setting_name(s);
        if (g_strv_contains(known, name) || list_has(mods, name))
            continue;
        g_autofree char *hint = kr_settings_suggest(NULL, known, name);
        if (config_setting_is_group(s))
            kr_diag(errors, s,
                    "settings group '%s' is for a module that is not in 'modules'%s", name, hint);
        else
            kr_diag(errors, s, "unknown top-level setting '%s'%s", name, hint);
    }
    if (mods && !config_setting_is_aggregate(mods))
        kr_diag(errors, mods, "'modules' must be a list of module names");
}

gboolean
kr_startup(const KrStartupOpts *o, GPtrArray *errors)
{
    guint before = errors->len;
    kr_log_init();
    kr_core_set_data_dir(o->data_dir ? o->data_dir : "var");
    kr_core_set_daemon(o->daemon);
    if (!read_config(&cfg, o->config_file, o->config_text, errors))
        return FALSE;
    cfg_loaded = TRUE;
    check_top_level(&cfg, errors);
    kr_settings_parse(kr_core_settings, config_lookup(&cfg, "core"), &core_conf, NULL,
                      "'core'", errors);
    kr_core_apply(&core_conf);
    kr_log_configure(core_conf.syslog, core_conf.syslog_facility, core_conf.debug);
    kr_worker_init((guint)core_conf.workers);
    kr_builtin_register();
    const char *mpath = o->module_path ? o->module_path
                        : core_conf.module_path ? core_conf.module_path
                                                : kr_default_module_path();
    config_setting_t *mods = config_lookup(&cfg, "modules");
    if (mods && config_setting_is_aggregate(mods))
        kr_modules_load(&cfg, mpath, mods, errors);
    kr_listeners_parse(config_lookup(&cfg, "listeners"), errors);
    kr_pipeline_build(config_lookup(&cfg, "pipeline"), errors);
    return errors->len == before;
}

void
kr_shutdown_modules(void)
{
    kr_pipeline_destroy();
    kr_modules_fini();
}

/* A canonical text of a setting subtree, to tell what changed. */
static void
canon(config_setting_t *s, GString *out)
{
    if (!s) {
        g_string_append(out, "-");
        return;
    }
    const char *n = config_setting_name(s);
    g_string_append_printf(out, "%s:%d=", n ? n : "", config_setting_type(s));
    switch (config_setting_type(s)) {
    case CONFIG_TYPE_INT:
    case CONFIG_TYPE_INT64:
        g_string_append_printf(out, "%lld", (long long)config_setting_get_int64(s));
        break;
    case CONFIG_TYPE_FLOAT:
        g_string_append_printf(out, "%g", config_setting_get_float(s));
        break;
    case CONFIG_TYPE_BOOL:
        g_string_append_printf(out, "%d", config_setting_get_bool(s));
        break;
    case CONFIG_TYPE_STRING:
        g_string_append_printf(out, "\"%s\"", config_setting_get_string(s));
        break;
    default:
        g_string_append_c(out, '{');
        for (int i = 0; i < config_setting_length(s); i++) {
            canon(config_setting_get_elem(s, i), out);
            g_string_append_c(out, ';');
        }
        g_string_append_c(out, '}');
    }
}

static gboolean
same_part(config_t *a, config_t *b, const char *path)
{
    g_autoptr(GString) x = g_string_new(NULL), y = g_string_new(NULL);
    canon(config_lookup(a, path), x);
    canon(config_lookup(b, path), y);
    return g_string_equal(x, y);
}

gboolean
kr_startup_reload(const char *file, gboolean *restart_r, GPtrArray *errors)
{
    config_t nc;
    *restart_r = FALSE;
    if (!read_config(&nc, file, NULL, errors))
        return FALSE;
    KrCoreConf c = {0};
    guint before = errors->len;
    kr_settings_parse(kr_core_settings, config_lookup(&nc, "core"), &c, NULL, "'core'", errors);
    if (errors->len == before) {
        kr_log_configure(c.syslog, c.syslog_facility, c.debug);
        static const char *const parts[] = {"modules", "listeners", "pipeline", NULL};
        for (const char *const *p = parts; *p; p++)
            if (!same_part(&cfg, &nc, *p))
                *restart_r = TRUE;
        config_setting_t *mods = config_lookup(&nc, "modules");
        for (int i = 0; mods && i < config_setting_length(mods); i++) {
            const char *m = config_setting_get_string_elem(mods, i);
            if (m && !same_part(&cfg, &nc, m))
                *restart_r = TRUE;
        }
    }
    kr_settings_clear(kr_core_settings, &c);
    config_destroy(&nc);
    return errors->len == before;
}
