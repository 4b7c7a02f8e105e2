#ifndef CBAZAAR_PROTOBUF_C_SHIM_H
#define CBAZAAR_PROTOBUF_C_SHIM_H
#include <protobuf-c/protobuf-c.h>

// Swift cannot import the PROTOBUF_C_MESSAGE_INIT macro or read the address of
// the extern `protobuf_c_empty_string` as a `char *`; these inline helpers do.
static inline char *bazaar_pbc_empty_string(void) {
    return (char *)protobuf_c_empty_string;
}
#endif
