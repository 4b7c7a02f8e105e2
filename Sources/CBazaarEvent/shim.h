#ifndef CBAZAAR_EVENT_SHIM_H
#define CBAZAAR_EVENT_SHIM_H
#include <event2/event.h>
#endif
