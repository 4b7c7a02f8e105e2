#ifndef CBAZAAR_OPENSSL_SHIM_H
#define CBAZAAR_OPENSSL_SHIM_H
#include <openssl/ssl.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <openssl/rand.h>

/* Macros over SSL_ctrl that Swift cannot import. */
static inline int bazaar_ssl_ctx_set_min_proto_version(SSL_CTX *ctx, int version) {
    return (int)SSL_CTX_set_min_proto_version(ctx, version);
}
static inline int bazaar_ssl_set_tlsext_host_name(SSL *ssl, const char *name) {
    return (int)SSL_set_tlsext_host_name(ssl, name);
}
/* EVP_EC_gen expands to the variadic EVP_PKEY_Q_keygen, which Swift cannot call. */
static inline EVP_PKEY *bazaar_ec_keygen(const char *curve) {
    return EVP_EC_gen(curve);
}
#endif
