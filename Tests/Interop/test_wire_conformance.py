"""Wire conformance of Bazaar's protobuf-c runtime against Google's protobuf (PyPI).

Seeded random messages, edge values included, go Python -> Bazaar (decode, re-encode) -> Python,
and must come back equal, with nothing left in Bazaar's unknown fields. Every message of proto/
and of the test protos is covered.
"""
import random
import zlib

import pytest

from randmsg import Gen, equal

SHOP = ["shop/v1/catalog.proto", "shop/v1/accounts.proto", "shop/v1/cart.proto", "shop/v1/orders.proto",
        "shop/v1/notifications.proto", "shop/v1/common.proto", "bazaar/options/v1/options.proto",
        "google/api/http.proto"]
FIXTURES = ["conformance/v1/all_types.proto", "conformance/v1/proto2_types.proto", "conformance/v1/evolution.proto"]
GRPC = ["grpc/testing/messages.proto", "grpc/health/v1/health.proto", "grpc/reflection/v1/reflection.proto"]
SEEDS_PER_TYPE = 40


def all_messages(module):
    out = []

    def walk(desc):
        if desc.GetOptions().map_entry:
            return
        out.append(desc)
        for n in desc.nested_types:
            walk(n)

    for d in module.DESCRIPTOR.message_types_by_name.values():
        walk(d)
    return out


def message_class(module, desc):
    from google.protobuf import message_factory
    return message_factory.GetMessageClass(desc)


def cases(pb2):
    for path in SHOP + FIXTURES + GRPC:
        module = pb2(path)
        for desc in all_messages(module):
            yield desc.full_name, message_class(module, desc)


def check_roundtrip(driver, name, msg):
    data = msg.SerializeToString()
    unknown, out = driver.roundtrip(name, data)
    assert unknown == 0, f"{name}: Bazaar kept {unknown} known fields as unknown"
    back = type(msg)()
    back.ParseFromString(out)
    diff = equal(msg, back, name)
    assert diff is None, f"{name} seed-data {data.hex()[:120]}: {diff}"


def test_every_message_round_trips(pb2, driver):
    count = 0
    for name, cls in cases(pb2):
        for seed in range(SEEDS_PER_TYPE):
            msg = Gen(zlib.crc32(f"{name}:{seed}".encode())).message(cls)
            check_roundtrip(driver, name, msg)
            count += 1
    assert count > 1000


def test_edge_values(pb2, driver):
    m = pb2("conformance/v1/all_types.proto")
    a = m.AllTypes()
    a.f_int32 = -1                      # a 10-byte varint
    a.f_int64 = -2**63
    a.f_uint64 = 2**64 - 1
    a.f_sint32 = -2**31
    a.f_sfixed64 = -2**63
    a.f_float = float("inf")
    a.f_double = float("nan")
    a.f_string = "ünïcødé ✓ 🎉"
    a.f_bytes = bytes(range(256)) * 400  # ~100 KB, NUL bytes included
    a.f_enum = 999                       # unknown value of an open enum
    a.r_enum.extend([0, 1, -7, 4242])
    a.m_string_string[""] = ""           # map entry with default key and value
    a.m_int32_int64[0] = 0
    a.m_bool_enum[False] = 0
    a.m_uint64_nested[0].SetInParent()
    a.p_int32 = 0                        # explicit presence of a zero value
    a.p_string = ""
    a.o_bytes = b""                      # oneof set to an empty value
    check_roundtrip(driver, "conformance.v1.AllTypes", a)

    assert driver.roundtrip("conformance.v1.Empty", b"") == (0, b"")
    assert driver.roundtrip("conformance.v1.AllTypes", b"") == (0, b"")


def test_deep_nesting_within_limit(pb2, driver):
    m = pb2("conformance/v1/all_types.proto")
    root = m.AllTypes()
    node = root
    for i in range(90):
        node = node.child
        node.f_int32 = i
    check_roundtrip(driver, "conformance.v1.AllTypes", root)


def test_newer_schema_survives_older_service(pb2, driver):
    m = pb2("conformance/v1/evolution.proto")
    for seed in range(200):
        new = Gen(seed).message(m.ItemV2)
        unknown, out = driver.roundtrip("conformance.v1.ItemV1", new.SerializeToString())
        back = m.ItemV2()
        back.ParseFromString(out)
        diff = equal(new, back, "ItemV2")
        assert diff is None, diff


def test_bazaar_encoding_matches_python(pb2, driver):
    """For messages without maps or floats, Bazaar's bytes equal Python's deterministic bytes."""
    m = pb2("shop/v1/orders.proto")
    c = pb2("shop/v1/common.proto")
    order = m.Order(id="o-1", user_id="u-1", status=m.ORDER_STATUS_PAID,
                    total=c.Money(currency_code="EUR", amount_minor=5998))
    for i in range(10):
        order.items.add(product_id=f"p-{i}", product_name="Ünïcode Mug", quantity=i + 1,
                        unit_price=c.Money(currency_code="EUR", amount_minor=2999))
    order.create_time.seconds = 1_700_000_000
    order.create_time.nanos = 123_000_000
    data = order.SerializeToString(deterministic=True)
    _, out = driver.roundtrip("shop.v1.Order", data)
    assert out == data


def test_malformed_input_fails_that_request_only(pb2, driver):
    m = pb2("conformance/v1/all_types.proto")
    # A rich but small message, so that 1,500 mutations stay quick.
    good = next(d for d in (Gen(seed).message(m.AllTypes).SerializeToString() for seed in range(100))
                if 500 < len(d) < 4000)
    r = random.Random(1234)
    rejected = 0
    for i in range(1500):
        data = bytearray(good)
        for _ in range(r.randint(1, 6)):
            op = r.random()
            if op < 0.4 and data:
                data[r.randrange(len(data))] = r.randrange(256)
            elif op < 0.7 and data:
                del data[r.randrange(len(data)):]
            else:
                data.insert(r.randrange(len(data) + 1), r.randrange(256))
        answer = driver.call("roundtrip", "conformance.v1.AllTypes", bytes(data))
        assert answer.startswith("ok ") or answer.startswith("err "), answer
        rejected += answer.startswith("err ")
    assert rejected > 0
    # The driver still serves well-formed requests afterwards.
    assert driver.roundtrip("conformance.v1.AllTypes", good)[0] == 0
