#ifndef CBAZAAR_EVENT_SHIM_H
#define CBAZAAR_EVENT_SHIM_H
#include <event2/event.h>
/* evthread_use_pthreads: lets other threads activate a loop's wakeup event. */
#include <event2/thread.h>
#endif
