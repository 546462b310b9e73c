/* SPDX-License-Identifier: MIT */
/* shmring/shmring.h: the whole public API. */
#ifndef SHMRING_SHMRING_H
#define SHMRING_SHMRING_H

#include "common.h"
#include "layout.h"
#include "segment.h"
#include "registry.h"
#include "wait.h"
#include "spsc.h"
#if __has_include("mpmc.h")
#include "mpmc.h"
#endif
#if __has_include("pool.h")
#include "pool.h"
#endif
#if __has_include("bcast.h")
#include "bcast.h"
#endif
#if __has_include("dump.h")
#include "dump.h"
#endif

#endif
