/* SPDX-License-Identifier: MIT */
/*
 * kr-registry-private.h - the core's view of loaded modules and of what
 * they registered.
 */
#ifndef KR_REGISTRY_PRIVATE_H
#define KR_REGISTRY_PRIVATE_H

#include "kr-internal.h"

struct KrModule {
    const KrModuleDesc *desc;
    char *name;
    char *path;
    void *handle;
    gpointer conf;
    gboolean initialised;
};

/* kr-loader.c */
/* Load the named modules from dir, in order, parse their settings from
 * cfg (the group named after each module) and call init. Every problem is
 * appended to errors (with file:line where there is one). */
KR_INTERNAL void kr_modules_load(config_t *cfg, const char *dir, config_setting_t *list,
                                 GPtrArray *errors);
/* Load one module file (tests): no settings group. */
KR_INTERNAL KrModule *kr_module_load_file(const char *path, const char *name,
                                          config_setting_t *group, GPtrArray *errors);
KR_INTERNAL void kr_modules_fini(void);
KR_INTERNAL GPtrArray *kr_modules_loaded(void);
KR_INTERNAL const char *kr_default_module_path(void);

/* kr-registry.c */
KR_INTERNAL void kr_registry_begin(KrModule *mod);
KR_INTERNAL void kr_registry_end(void);
KR_INTERNAL const KrStageType *kr_registry_stage(const char *name);
KR_INTERNAL const KrListenerType *kr_registry_listener(const char *name);
KR_INTERNAL const KrCommand *kr_registry_command(const char *name, KrModule **mod_r);
KR_INTERNAL const KrControl *kr_registry_control(const char *name);
/* Names registered of a kind ("stage", "listener", "command", ...),
 * sorted, NULL-terminated; free with g_strfreev. */
KR_INTERNAL char **kr_registry_names(const char *kind);
KR_INTERNAL GPtrArray *kr_registry_services(void);
/* Forget everything (tests). */
KR_INTERNAL void kr_registry_reset(void);

#endif
