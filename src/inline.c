/* SPDX-License-Identifier: MIT */
/* Emit a real symbol for every SHMRING_INLINE function, for FFI users and debuggers. */
#define SHMRING_EMIT_INLINE 1
#include "shmring/shmring.h"
