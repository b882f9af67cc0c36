// Makes Synchronization.Mutex visible to ThreadSanitizer on Linux, so the sanitizer run needs no suppression.
//
// Mutex.withLock is inlined into GPUBridge's (instrumented) code, and so is the fast path of its lock and unlock: a
// compare-and-exchange on the lock word, which TSan sees as an acquire and a release. When the lock is contended,
// the inlined code calls _MutexHandle._lockSlow / _unlockSlow in libswiftSynchronization.so, which is not
// instrumented: the lock is then taken (by a spin or by the kernel's futex hand-off) without any synchronization TSan
// can see, and the next access inside the critical section is reported as a race with the previous holder's.
//
// scripts/test preloads this library (LD_PRELOAD) into the ThreadSanitizer test run. It defines the three slow-path
// symbols, calls the library's own functions (dlsym RTLD_NEXT) and tells TSan what they did: __tsan_acquire on the
// lock word after the lock is taken, __tsan_release before it is given up, on the same address the inlined fast path
// uses. Nothing is suppressed: a race outside any lock, or between an access inside a withLock body and one outside
// it, is still reported (docs/RELIABILITY.md, Sanitizers). In a process without TSan (__tsan_* absent: weak
// symbols) the functions only forward.
//
// The symbols and their calling convention (self in r13, swiftself; the thread id in the first argument register)
// are those of the Swift 6 toolchain's Synchronization module on x86_64 Linux. If a toolchain renames them, the
// preload defines symbols nobody calls and the run reports the false races again: it fails loudly, not silently.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdint.h>
#include <stddef.h>

extern void __tsan_acquire(void *addr) __attribute__((weak));
extern void __tsan_release(void *addr) __attribute__((weak));

typedef void (*lock_slow_t)(uint32_t self_id, void *handle __attribute__((swift_context))) __attribute__((swiftcall));
typedef void (*unlock_slow_t)(void *handle __attribute__((swift_context))) __attribute__((swiftcall));
typedef _Bool (*try_lock_slow_t)(void *handle __attribute__((swift_context))) __attribute__((swiftcall));

#define LOCK_SLOW "$s15Synchronization12_MutexHandleV9_lockSlowyys6UInt32VF"
#define UNLOCK_SLOW "$s15Synchronization12_MutexHandleV11_unlockSlowyyF"
#define TRY_LOCK_SLOW "$s15Synchronization12_MutexHandleV12_tryLockSlowSbyF"

__attribute__((swiftcall)) void lock_slow(uint32_t self_id, void *handle __attribute__((swift_context))) __asm__(LOCK_SLOW);
__attribute__((swiftcall)) void unlock_slow(void *handle __attribute__((swift_context))) __asm__(UNLOCK_SLOW);
__attribute__((swiftcall)) _Bool try_lock_slow(void *handle __attribute__((swift_context))) __asm__(TRY_LOCK_SLOW);

__attribute__((swiftcall)) void lock_slow(uint32_t self_id, void *handle __attribute__((swift_context))) {
    static lock_slow_t cached;
    lock_slow_t next = __atomic_load_n(&cached, __ATOMIC_ACQUIRE);
    if (!next) {
        next = (lock_slow_t)dlsym(RTLD_NEXT, LOCK_SLOW);
        __atomic_store_n(&cached, next, __ATOMIC_RELEASE);
    }
    next(self_id, handle);
    if (__tsan_acquire) __tsan_acquire(handle);
}

__attribute__((swiftcall)) void unlock_slow(void *handle __attribute__((swift_context))) {
    static unlock_slow_t cached;
    unlock_slow_t next = __atomic_load_n(&cached, __ATOMIC_ACQUIRE);
    if (!next) {
        next = (unlock_slow_t)dlsym(RTLD_NEXT, UNLOCK_SLOW);
        __atomic_store_n(&cached, next, __ATOMIC_RELEASE);
    }
    if (__tsan_release) __tsan_release(handle);
    next(handle);
}

__attribute__((swiftcall)) _Bool try_lock_slow(void *handle __attribute__((swift_context))) {
    static try_lock_slow_t cached;
    try_lock_slow_t next = __atomic_load_n(&cached, __ATOMIC_ACQUIRE);
    if (!next) {
        next = (try_lock_slow_t)dlsym(RTLD_NEXT, TRY_LOCK_SLOW);
        __atomic_store_n(&cached, next, __ATOMIC_RELEASE);
    }
    _Bool locked = next(handle);
    if (locked && __tsan_acquire) __tsan_acquire(handle);
    return locked;
}
