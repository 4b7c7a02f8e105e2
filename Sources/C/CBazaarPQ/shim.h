#ifndef CBAZAAR_PQ_SHIM_H
#define CBAZAAR_PQ_SHIM_H
#include <libpq-fe.h>
#endif
