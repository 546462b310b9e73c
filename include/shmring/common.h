/* SPDX-License-Identifier: MIT */
/*
 * shmring/common.h: what every shmring header needs: the inline macro, the error
 * convention and the ordering helpers.
 *
 * Error convention: every public function returns 0 (or a count) on success and a
 * negative errno on failure; shmring_strerror() turns any such value into a sentence.
 * Nothing on the fast path touches errno.
 */
#ifndef SHMRING_COMMON_H
#define SHMRING_COMMON_H

#include <errno.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
#error "shmring headers are C11; include them from C"
#endif

/* Inline API. src/inline.c defines SHMRING_EMIT_INLINE before including the headers,
 * so every inline function also exists as a real symbol in libshmring (for FFI and
 * for debuggers). */
#ifdef SHMRING_EMIT_INLINE
#define SHMRING_INLINE extern inline __attribute__((used, visibility("default")))
#else
#define SHMRING_INLINE static inline
#endif

#define SHMRING_API __attribute__((visibility("default")))
#define shmring_likely(x) __builtin_expect(!!(x), 1)
#define shmring_unlikely(x) __builtin_expect(!!(x), 0)

/* The unit of cache isolation: two lines, because the adjacent-line prefetcher pulls
 * lines in pairs on x86. Indices written by different sides live this far apart. */
#define SHMRING_LINE 128u
#define SHMRING_PAGE 4096u

/* Timeouts for blocking calls (every timeout_ms argument), in milliseconds: 0 (NOWAIT)
 * looks once and returns -EAGAIN; n > 0 waits up to n ms from the call, then returns
 * -ETIMEDOUT; SHMRING_FOREVER waits without limit. Any other negative value is -EINVAL
 * (a "time left" computed past its deadline must not become a wait for ever).
 * Waits measure CLOCK_MONOTONIC (a change of the wall clock moves no deadline).
 * Signals do not interrupt them: no call returns -EINTR; a handler runs and the wait
 * goes on to its deadline, which a signal does not move. To stop a wait from a
 * handler, wait in a loop of bounded timeouts and look at a flag the handler sets. */
#define SHMRING_NOWAIT 0
#define SHMRING_FOREVER (-1)

/* Returns a static sentence for 0 or any negative errno returned by shmring. */
SHMRING_API const char *shmring_strerror(int err);

/* The last slow-path failure of this thread in more detail (for example the size a
 * segment needed when creation failed with -ENOSPC), or "" if there is none. Each
 * create, open and unlink call clears it first: it never describes an older failure
 * than the last such call's. The
 * string is thread-local and valid until the next shmring call on this thread. */
SHMRING_API const char *shmring_last_error_detail(void);

/*
 * Ordering helpers. Every use names, in a comment, the other side of its pairing.
 * They are thin on purpose: the order is the point, not the wrapper.
 */
/* pairing: named at each use */
#define shmring_load_acquire(p) atomic_load_explicit((p), memory_order_acquire)
/* pairing: named at each use */
#define shmring_store_release(p, v) atomic_store_explicit((p), (v), memory_order_release)
/* no pairing: a use says why relaxed is enough */
#define shmring_load_relaxed(p) atomic_load_explicit((p), memory_order_relaxed)
/* no pairing: a use says why relaxed is enough */
#define shmring_store_relaxed(p, v) atomic_store_explicit((p), (v), memory_order_relaxed)

#if defined(__SANITIZE_THREAD__)
#define SHMRING_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define SHMRING_TSAN 1
#endif
#endif

#ifdef SHMRING_TSAN
/* ThreadSanitizer does not model stand-alone fences. Under TSan a fence becomes a
 * seq_cst read-modify-write, which is a full barrier on the hardware as well; every
 * access the fences order is atomic, so TSan checks no data race less. */
static inline void shmring__fence_rmw(void)
{
	static _Atomic int word;
	/* stands for the fence at its call site, whose pairing that site names */
	atomic_fetch_add_explicit(&word, 0, memory_order_seq_cst);
}
#define shmring_fence_seq_cst() shmring__fence_rmw()
#define shmring_fence_acquire() shmring__fence_rmw()
#define shmring_fence_release() shmring__fence_rmw()
#else
/* fences: every call site names the fence or access its fence pairs with */
#define shmring_fence_seq_cst() atomic_thread_fence(memory_order_seq_cst) /* pairing: at use */
#define shmring_fence_acquire() atomic_thread_fence(memory_order_acquire) /* pairing: at use */
#define shmring_fence_release() atomic_thread_fence(memory_order_release) /* pairing: at use */
#endif

static inline void shmring_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield" ::: "memory");
#else
	atomic_signal_fence(memory_order_seq_cst);
#endif
}

/*
 * A hint that another CPU reads the line at p next: push it out of this CPU's private
 * caches into the shared last-level cache, so the reader's miss is served there instead
 * of by a snoop into this core (x86 CLDEMOTE). Never needed for correctness; whether it
 * pays depends on where the reader runs (spsc.h, shmring_spsc_set_demote). CPUs without
 * CLDEMOTE execute its encoding as a NOP (it lies in the reserved hint-NOP space,
 * 0F 1C /0), so it is emitted on every x86 build; elsewhere it does nothing.
 */
static inline void shmring__demote(const void *p)
{
#if defined(__x86_64__) || defined(__i386__)
	/* encoded by hand: assemblers before binutils 2.31 lack the mnemonic */
	__asm__ __volatile__(".byte 0x0f, 0x1c, 0x00" ::"a"(p) : "memory");
#else
	(void)p;
#endif
}

/* What the set_demote options demote of each message: its first two lines (a header and
 * what a small message has after it), the lines a reader touches first. Every line of a
 * large message would cost the producer 2-17 ns a line here (a 64 KiB record's round
 * trip 35x as long) for nothing: a reader's sequential reads of it are prefetched. */
#define SHMRING__DEMOTE_HEAD 128u

/*
 * Demote every line holding a byte of [p, p + len): after writing data that a process on
 * another physical core reads next, and before publishing it. What the set_demote
 * options do for a channel's own lines (spsc.h, mpmc.h, bcast.h), for lines only the
 * application knows: a pool frame's header, say (pool.h). A hint, never needed for
 * correctness; where the reader shares this core (SMT siblings, one CPU) it costs a
 * trip to the shared cache. One instruction per 64 bytes, 2-17 ns each here (the most
 * on lines just written): for the lines a reader touches first, not for bulk data,
 * whose sequential reads are prefetched.
 */
SHMRING_INLINE void shmring_demote(const void *p, size_t len)
{
	uintptr_t a = (uintptr_t)p & ~(uintptr_t)63, end = (uintptr_t)p + len;
	for (; a < end; a += 64)
		shmring__demote((const void *)a);
}

#endif /* SHMRING_COMMON_H */
