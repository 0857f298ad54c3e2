/* SPDX-License-Identifier: MIT */
/*
 * kr-pipeline-private.h - building and checking the pipeline graph.
 */
#ifndef KR_PIPELINE_PRIVATE_H
#define KR_PIPELINE_PRIVATE_H

#include "kr-internal.h"

/* Build the graph from the `pipeline` group (NULL: empty graph). Every
 * problem (unknown type, bad settings, dangling edge, unreachable node,
 * cycle) is appended to errors with its FILE:LINE. Creates the stage
 * instances only if the graph is valid. */
KR_INTERNAL gboolean kr_pipeline_build(config_setting_t *group, GPtrArray *errors);
KR_INTERNAL void kr_pipeline_destroy(void);
/* Jobs still running (shutdown waits for the receive side to drain). */
KR_INTERNAL guint kr_pipeline_jobs_in_flight(void);

#endif
