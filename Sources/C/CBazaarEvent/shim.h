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
#endif
