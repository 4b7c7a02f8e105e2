"""Seeded random protobuf messages with edge values, and a value comparison that treats NaN as
equal to NaN (protobuf compares floats bit for bit; Python's == does not)."""
import math
import random

from google.protobuf.descriptor import FieldDescriptor as FD

INT32 = (-2**31, 2**31 - 1)
INT64 = (-2**63, 2**63 - 1)
UINT32 = (0, 2**32 - 1)
UINT64 = (0, 2**64 - 1)

RANGES = {
    FD.TYPE_INT32: INT32, FD.TYPE_SINT32: INT32, FD.TYPE_SFIXED32: INT32,
    FD.TYPE_INT64: INT64, FD.TYPE_SINT64: INT64, FD.TYPE_SFIXED64: INT64,
    FD.TYPE_UINT32: UINT32, FD.TYPE_FIXED32: UINT32,
    FD.TYPE_UINT64: UINT64, FD.TYPE_FIXED64: UINT64,
}

STRINGS = ["", "a", "héllo wörld", "日本語テキスト", "emoji 🎉🛒", "x" * 300, "line\nbreak\ttab", "\u00ff\u0100"]


class Gen:
    def __init__(self, seed, max_depth=6, max_nodes=60):
        self.r = random.Random(seed)
        self.max_depth = max_depth
        # Recursive types branch (child, children, maps of themselves): bound the total size.
        self.nodes_left = max_nodes

    def integer(self, t):
        lo, hi = RANGES[t]
        c = self.r.random()
        if c < 0.3:
            # Edge values: the limits, zero, -1 (a 10-byte varint for int32), small numbers.
            return self.r.choice([lo, hi, 0, 1, -1 if lo < 0 else 2, lo + 1, hi - 1, 127, 128, 16383, 16384])
        if c < 0.6:
            return self.r.randint(max(lo, -1000), min(hi, 1000))
        return self.r.randint(lo, hi)

    def floating(self, t):
        c = self.r.random()
        if c < 0.3:
            return self.r.choice([0.0, -0.0, math.inf, -math.inf, math.nan, 1.0, -1.5, 1e-30, 3.4e38 if t == FD.TYPE_FLOAT else 1e308])
        v = self.r.uniform(-1e6, 1e6)
        if t == FD.TYPE_FLOAT:
            import struct
            v = struct.unpack("f", struct.pack("f", v))[0]
        return v

    def string(self):
        if self.r.random() < 0.4:
            return self.r.choice(STRINGS)
        # protobuf-c carries strings NUL-terminated, so U+0000 is left out (a documented limit).
        return "".join(chr(self.r.choice([self.r.randint(0x20, 0x7e), self.r.randint(0xa0, 0xd7ff),
                                           self.r.randint(0xe000, 0xfffd), self.r.randint(0x10000, 0x10ffff)]))
                       for _ in range(self.r.randint(0, 40)))

    def bytes_(self):
        c = self.r.random()
        if c < 0.05:
            return self.r.randbytes(self.r.randint(50_000, 200_000))  # large
        if c < 0.2:
            return b""
        return self.r.randbytes(self.r.randint(0, 64))

    def enum(self, field):
        values = [v.number for v in field.enum_type.values]
        closed = getattr(field.enum_type, "is_closed", False)
        if not closed and self.r.random() < 0.15:
            return self.r.choice([12345, -5, 2**31 - 1, -2**31])  # unknown values stay
        return self.r.choice(values)

    def scalar(self, field, depth):
        t = field.type
        if t in RANGES:
            return self.integer(t)
        if t in (FD.TYPE_FLOAT, FD.TYPE_DOUBLE):
            return self.floating(t)
        if t == FD.TYPE_BOOL:
            return self.r.random() < 0.5
        if t == FD.TYPE_STRING:
            return self.string()
        if t == FD.TYPE_BYTES:
            return self.bytes_()
        if t == FD.TYPE_ENUM:
            return self.enum(field)
        raise AssertionError(f"unhandled type {t}")

    def fill(self, msg, depth=0):
        self.nodes_left -= 1
        if self.nodes_left <= 0:
            depth = self.max_depth  # no more sub-messages below this one
        desc = msg.DESCRIPTOR
        if desc.full_name in ("google.protobuf.Any",):
            return msg
        oneof_chosen = {}
        for o in desc.oneofs:
            if o.fields:
                oneof_chosen[o.name] = self.r.choice(list(o.fields) + [None])
        for field in desc.fields:
            o = field.containing_oneof
            real_oneof = o is not None and not (len(o.fields) == 1 and o.name == "_" + field.name)
            if real_oneof:
                if oneof_chosen.get(o.name) is not field:
                    continue
            elif self.r.random() < 0.35:
                continue
            self.set_field(msg, field, depth)
        return msg

    def set_field(self, msg, field, depth):
        is_map = field.message_type is not None and field.message_type.GetOptions().map_entry
        if is_map:
            key_f = field.message_type.fields_by_name["key"]
            val_f = field.message_type.fields_by_name["value"]
            target = getattr(msg, field.name)
            for i in range(self.r.randint(0, 4)):
                k = self.scalar(key_f, depth) if not (i == 0 and self.r.random() < 0.3) else \
                    {FD.TYPE_STRING: "", FD.TYPE_BOOL: False}.get(key_f.type, 0)  # default keys
                if val_f.type == FD.TYPE_MESSAGE:
                    if depth < self.max_depth:
                        self.fill(target[k], depth + 1)
                    else:
                        target[k].SetInParent()
                else:
                    target[k] = self.scalar(val_f, depth)
            return
        if field.is_repeated:
            n = self.r.choice([0, 1, 2, 5, 20]) if self.r.random() < 0.9 else 200
            if field.type == FD.TYPE_MESSAGE:
                if depth >= self.max_depth:
                    return
                for _ in range(min(n, 4)):
                    self.fill(getattr(msg, field.name).add(), depth + 1)
            else:
                getattr(msg, field.name).extend(self.scalar(field, depth) for _ in range(n))
            return
        if field.type == FD.TYPE_MESSAGE:
            if depth >= self.max_depth:
                return
            self.fill(getattr(msg, field.name), depth + 1)
            getattr(msg, field.name).SetInParent()
            return
        setattr(msg, field.name, self.scalar(field, depth))

    def message(self, cls):
        m = cls()
        self.fill(m)
        self.fill_required(m)
        return m

    def fill_required(self, msg):
        """proto2 `required` fields must be set for the message to be valid."""
        for field in msg.DESCRIPTOR.fields:
            if field.is_required and not msg.HasField(field.name):
                setattr(msg, field.name, self.scalar(field, 0))
            if field.type == FD.TYPE_MESSAGE and not field.is_repeated and msg.HasField(field.name):
                self.fill_required(getattr(msg, field.name))
            elif field.type == FD.TYPE_MESSAGE and field.is_repeated \
                    and not field.message_type.GetOptions().map_entry:
                for sub in getattr(msg, field.name):
                    self.fill_required(sub)


def same_float(a, b):
    return (math.isnan(a) and math.isnan(b)) or a == b


def equal_value(field, x, y, path):
    """Compares one value of `field` (a message, a float or anything else)."""
    if field.type == FD.TYPE_MESSAGE:
        return equal(x, y, path)
    if field.type in (FD.TYPE_FLOAT, FD.TYPE_DOUBLE):
        return None if same_float(x, y) else f"{path}: {x} != {y}"
    return None if x == y else f"{path}: {x!r} != {y!r}"


def equal(a, b, path=""):
    """Field-by-field equality; returns None or a description of the first difference."""
    fa = {f.name: v for f, v in a.ListFields()}
    fb = {f.name: v for f, v in b.ListFields()}
    # proto3 implicit -0.0 may be dropped on one side and kept on the other: both mean 0.
    for f, v in list(a.ListFields()) + list(b.ListFields()):
        if f.type in (FD.TYPE_FLOAT, FD.TYPE_DOUBLE) and not f.is_repeated and not f.has_presence and v == 0:
            fa.pop(f.name, None)
            fb.pop(f.name, None)
    if fa.keys() != fb.keys():
        return f"{path}: fields {sorted(fa.keys() ^ fb.keys())} present on one side only"
    for f in a.DESCRIPTOR.fields:
        if f.name not in fa:
            continue
        va, vb = fa[f.name], fb[f.name]
        p = f"{path}.{f.name}"
        if f.message_type is not None and f.message_type.GetOptions().map_entry:
            if set(va.keys()) != set(vb.keys()):
                return f"{p}: map keys differ"
            vf = f.message_type.fields_by_name["value"]
            diffs = (equal_value(vf, va[k], vb[k], f"{p}[{k!r}]") for k in va)
        elif f.is_repeated:
            if len(va) != len(vb):
                return f"{p}: {len(va)} != {len(vb)} elements"
            diffs = (equal_value(f, x, y, f"{p}[{i}]") for i, (x, y) in enumerate(zip(va, vb)))
        else:
            diffs = iter([equal_value(f, va, vb, p)])
        d = next((d for d in diffs if d), None)
        if d:
            return d
    return None
