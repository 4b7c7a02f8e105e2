/*
 * Oracle for Bazaar's C emitter. Built twice by Tests/Interop/test_c_oracle.py: once against
 * protoc-c's generated code and once against bazaar-codegen's, with the same registry of
 * descriptor symbols (registry.inc). Both builds must print the same thing.
 *
 *   oracle dump            the layout of every descriptor: sizes, offsets, labels, flags, defaults
 *   oracle pack < lines    for each "FULL.NAME HEX" line: unpack with that descriptor and pack again
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <protobuf-c/protobuf-c.h>

#include "registry.inc" /* defines: static const ProtobufCMessageDescriptor *registry[]; */

static const size_t registry_count = sizeof(registry) / sizeof(registry[0]);

static void dump_default(const ProtobufCFieldDescriptor *f) {
    const void *d = f->default_value;
    if (d == NULL) { printf(" default=none"); return; }
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32: case PROTOBUF_C_TYPE_SINT32: case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_ENUM:
        printf(" default=%d", *(const int32_t *)d); break;
    case PROTOBUF_C_TYPE_UINT32: case PROTOBUF_C_TYPE_FIXED32:
        printf(" default=%u", *(const uint32_t *)d); break;
    case PROTOBUF_C_TYPE_INT64: case PROTOBUF_C_TYPE_SINT64: case PROTOBUF_C_TYPE_SFIXED64:
        printf(" default=%lld", (long long)*(const int64_t *)d); break;
    case PROTOBUF_C_TYPE_UINT64: case PROTOBUF_C_TYPE_FIXED64:
        printf(" default=%llu", (unsigned long long)*(const uint64_t *)d); break;
    case PROTOBUF_C_TYPE_FLOAT: printf(" default=%.9g", *(const float *)d); break;
    case PROTOBUF_C_TYPE_DOUBLE: printf(" default=%.17g", *(const double *)d); break;
    case PROTOBUF_C_TYPE_BOOL: printf(" default=%d", *(const protobuf_c_boolean *)d); break;
    case PROTOBUF_C_TYPE_STRING: {
        /* For strings the descriptor points at the char array (or at protobuf_c_empty_string). */
        const char *s = (d == &protobuf_c_empty_string) ? protobuf_c_empty_string : (const char *)d;
        printf(" default=\"%s\"%s", s, d == &protobuf_c_empty_string ? "(empty)" : "");
        break;
    }
    case PROTOBUF_C_TYPE_BYTES: {
        const ProtobufCBinaryData *b = d;
        printf(" default=bytes[%zu]", b->len);
        for (size_t i = 0; i < b->len; i++) printf("%02x", b->data[i]);
        break;
    }
    default: printf(" default=?"); break;
    }
}

static void dump_enum(const ProtobufCEnumDescriptor *e) {
    printf("  enum %s c=%s pkg=%s values=%u names=%u ranges=%u\n", e->name, e->c_name, e->package_name,
           e->n_values, e->n_value_names, e->n_value_ranges);
    for (unsigned i = 0; i < e->n_values; i++)
        printf("    value %s %s %d\n", e->values[i].name, e->values[i].c_name, e->values[i].value);
    for (unsigned i = 0; i < e->n_value_names; i++)
        printf("    by_name %s %u\n", e->values_by_name[i].name, e->values_by_name[i].index);
    for (unsigned i = 0; i <= e->n_value_ranges; i++)
        printf("    range %d %d\n", e->value_ranges[i].start_value, e->value_ranges[i].orig_index);
}

static void dump(void) {
    for (size_t r = 0; r < registry_count; r++) {
        const ProtobufCMessageDescriptor *m = registry[r];
        printf("message %s short=%s c=%s pkg=%s size=%zu fields=%u ranges=%u\n", m->name, m->short_name,
               m->c_name, m->package_name, m->sizeof_message, m->n_fields, m->n_field_ranges);
        for (unsigned i = 0; i < m->n_fields; i++) {
            const ProtobufCFieldDescriptor *f = &m->fields[i];
            printf("  field %s id=%u label=%d type=%d quant=%u offset=%u flags=%u", f->name, f->id, f->label,
                   f->type, f->quantifier_offset, f->offset, f->flags);
            if (f->type == PROTOBUF_C_TYPE_MESSAGE)
                printf(" msg=%s", ((const ProtobufCMessageDescriptor *)f->descriptor)->name);
            dump_default(f);
            printf("\n");
            if (f->type == PROTOBUF_C_TYPE_ENUM) dump_enum(f->descriptor);
        }
        for (unsigned i = 0; i < m->n_fields; i++) printf("  by_name %u\n", m->fields_sorted_by_name[i]);
        for (unsigned i = 0; m->n_fields && i <= m->n_field_ranges; i++)
            printf("  range %d %d\n", m->field_ranges[i].start_value, m->field_ranges[i].orig_index);
        /* The init function must produce the same defaults. */
        void *msg = calloc(1, m->sizeof_message);
        m->message_init(msg);
        size_t packed = protobuf_c_message_get_packed_size(msg);
        printf("  init_packed_size %zu\n", packed);
        free(msg);
    }
}

static int nibble(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Byte by byte: sscanf would rescan the whole line on every call. */
static int unhex(const char *s, uint8_t *out, size_t n) {
    for (size_t i = 0; i < n; i++) {
        int hi = nibble(s[2 * i]), lo = nibble(s[2 * i + 1]);
        if (hi < 0 || lo < 0) return -1;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

static void pack(void) {
    size_t cap = 1 << 20;
    char *line = malloc(cap);
    ssize_t len;
    while ((len = getline(&line, &cap, stdin)) > 0) {
        if (line[len - 1] == '\n') line[--len] = 0;
        char *space = strchr(line, ' ');
        if (!space) { printf("ERR syntax\n"); continue; }
        *space = 0;
        const char *hex = space + 1;
        const ProtobufCMessageDescriptor *d = NULL;
        for (size_t r = 0; r < registry_count; r++)
            if (strcmp(registry[r]->name, line) == 0) d = registry[r];
        if (!d) { printf("ERR unknown %s\n", line); continue; }
        size_t n = strlen(hex) / 2;
        uint8_t *buf = malloc(n + 1);
        if (unhex(hex, buf, n) != 0) { printf("ERR hex\n"); free(buf); continue; }
        ProtobufCMessage *msg = protobuf_c_message_unpack(d, NULL, n, buf);
        if (!msg) { printf("ERR unpack\n"); free(buf); continue; }
        size_t size = protobuf_c_message_get_packed_size(msg);
        uint8_t *out = malloc(size + 1);
        size_t written = protobuf_c_message_pack(msg, out);
        printf("OK ");
        for (size_t i = 0; i < written; i++) printf("%02x", out[i]);
        printf("\n");
        protobuf_c_message_free_unpacked(msg, NULL);
        free(out);
        free(buf);
    }
    free(line);
}

int main(int argc, char **argv) {
    if (argc == 2 && strcmp(argv[1], "dump") == 0) { dump(); return 0; }
    if (argc == 2 && strcmp(argv[1], "pack") == 0) { pack(); return 0; }
    fprintf(stderr, "usage: oracle dump | oracle pack < lines\n");
    return 2;
}
