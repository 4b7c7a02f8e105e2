#ifndef CBAZAAR_HIREDIS_SHIM_H
#define CBAZAAR_HIREDIS_SHIM_H
#include <hiredis/hiredis.h>
#endif
