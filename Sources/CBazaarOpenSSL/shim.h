#ifndef CBAZAAR_OPENSSL_SHIM_H
#define CBAZAAR_OPENSSL_SHIM_H
#include <openssl/ssl.h>
#endif
