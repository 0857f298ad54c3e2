/* SPDX-License-Identifier: MIT */
/*
 * kurir.h - the whole public module API in one include.
 */
#ifndef KURIR_KURIR_H
#define KURIR_KURIR_H
#include "kr-core.h"
#include "kr-settings.h"
#include "kr-module.h"
#include "kr-msg.h"
#include "kr-queue.h"
#include "kr-pipeline.h"
#include "kr-conn.h"
#include "kr-tls.h"
#include "kr-worker.h"
#include "kr-failcount.h"
#include "kr-file.h"
#include "kr-sync.h"
#include "kr-watch.h"
#include "kr-registry.h"
#include "kr-store.h"
#endif
