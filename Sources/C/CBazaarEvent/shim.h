#ifndef CBAZAAR_EVENT_SHIM_H
#define CBAZAAR_EVENT_SHIM_H
/* System headers first, with the feature macros Swift's Glibc module uses: libevent's headers
 * would otherwise pull <sys/select.h> in under other macros, and Swift then sees two different
 * fd_set types ("fds_bits is not present in definition of fd_set"). */
#include <sys/types.h>
#include <sys/time.h>
#include <sys/select.h>
#include <event2/event.h>
/* evthread_use_pthreads: lets other threads activate a loop's wakeup event. */
#include <event2/thread.h>
/* evdns: asynchronous DNS on a loop, for the mesh's dns:/// resolver. */
#include <event2/dns.h>
/* evhttp: the admin endpoint (/metrics) speaks HTTP/1.1 through libevent's parser. */
#include <event2/http.h>
#include <event2/buffer.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

/* The kernel's id of the calling thread (gettid(2)), and a name for it that ps, top and
 * debuggers show: glibc declares both only under _GNU_SOURCE, which Swift's Glibc module does
 * not set, so they are reached from here. */
static inline int bazaar_thread_id(void) { return (int)syscall(SYS_gettid); }
extern int pthread_setname_np(pthread_t thread, const char *name);
static inline void bazaar_name_thread(const char *name) { (void)pthread_setname_np(pthread_self(), name); }
#endif
