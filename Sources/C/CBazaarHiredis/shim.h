#ifndef CBAZAAR_HIREDIS_SHIM_H
#define CBAZAAR_HIREDIS_SHIM_H
#include <hiredis/hiredis.h>
/* The asynchronous API: Bazaar drives it from its own event loop (see BazaarRedis). */
#include <hiredis/async.h>
#endif
