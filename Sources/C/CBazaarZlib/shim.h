#ifndef CBAZAAR_ZLIB_SHIM_H
#define CBAZAAR_ZLIB_SHIM_H
#include <zlib.h>
#endif
