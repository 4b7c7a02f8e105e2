#ifndef CBAZAAR_ARGON2_SHIM_H
#define CBAZAAR_ARGON2_SHIM_H
#include <argon2.h>
#endif
