#ifndef CBAZAAR_HTTPPARSER_SHIM_H
#define CBAZAAR_HTTPPARSER_SHIM_H
#include <http_parser.h>
#endif
