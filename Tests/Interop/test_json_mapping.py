"""The proto3 JSON mapping (Sources/Runtime/BazaarWire/JSON) against Google's protobuf json_format (PyPI):
seeded random messages of every shop, test and gRPC message type go both ways, and the rules the
gateway relies on are checked one by one (golden cases)."""
import json
import math
import zlib

import pytest
from google.protobuf import json_format

from randmsg import Gen, equal
from test_wire_conformance import all_messages, message_class, SHOP, FIXTURES, GRPC

SEEDS = 10


def contains_any(desc, seen=None):
    seen = seen or set()
    if desc.full_name in seen:
        return False
    seen.add(desc.full_name)
    if desc.full_name == "google.protobuf.Any":
        return True
    return any(f.message_type is not None and contains_any(f.message_type, seen) for f in desc.fields)


def ours_to_json(driver, name, msg):
    answer = driver.call("tojson", name, msg.SerializeToString())
    assert answer.startswith("ok "), f"{name}: {answer}"
    return json.loads(bytes.fromhex(answer[3:]))


def ours_from_json(driver, name, text):
    answer = driver.call("fromjson", name, text.encode())
    return answer


def same_json(a, b, path=""):
    """JSON equality with float tolerance (both sides print shortest round-trip forms, but a
    float32 may print with one digit more or less)."""
    if isinstance(a, dict) and isinstance(b, dict):
        assert a.keys() == b.keys(), f"{path}: keys {sorted(a)} vs {sorted(b)}"
        for k in a:
            same_json(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b), f"{path}: lengths {len(a)} vs {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            same_json(x, y, f"{path}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        assert isinstance(a, (int, float)) and isinstance(b, (int, float)), f"{path}: {a!r} vs {b!r}"
        assert math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-30), f"{path}: {a!r} vs {b!r}"
    else:
        assert a == b, f"{path}: {a!r} vs {b!r}"


def sanitize(msg):
    """Random field values can be invalid for the well-known types (out-of-range timestamps,
    uppercase field-mask paths, NaN in a Value), which json_format rightly refuses: make them valid."""
    name = msg.DESCRIPTOR.full_name
    if name == "google.protobuf.Timestamp":
        msg.seconds = msg.seconds % 253402300799
        msg.nanos = abs(msg.nanos) % 1000000000
        return
    if name == "google.protobuf.Duration":
        msg.seconds = msg.seconds % 315576000000
        msg.nanos = abs(msg.nanos) % 1000000000
        return
    if name == "google.protobuf.FieldMask":
        paths = ["".join(c for c in p.lower() if c.isascii() and c.isalpha()) or "a" for p in msg.paths]
        del msg.paths[:]
        msg.paths.extend(paths)
        return
    if name == "google.protobuf.Value" and msg.WhichOneof("kind") == "number_value" and not math.isfinite(msg.number_value):
        msg.number_value = 0
    for field, value in msg.ListFields():
        if field.message_type is None:
            continue
        if field.message_type.GetOptions().map_entry:
            if field.message_type.fields_by_name["value"].message_type is not None:
                for v in value.values():
                    sanitize(v)
        elif field.is_repeated:
            for v in value:
                sanitize(v)
        else:
            sanitize(value)


def cases(pb2):
    for path in SHOP + FIXTURES + GRPC:
        module = pb2(path)
        for desc in all_messages(module):
            if not contains_any(desc):
                yield desc.full_name, message_class(module, desc)


def test_random_messages_map_like_json_format_both_ways(pb2, driver):
    checked = 0
    for name, cls in cases(pb2):
        for seed in range(SEEDS):
            msg = Gen(zlib.crc32(f"{name}/{seed}".encode())).message(cls)
            sanitize(msg)
            expected = json.loads(json_format.MessageToJson(msg))
            same_json(ours_to_json(driver, name, msg), expected, name)
            # Google's JSON (camelCase) and the original field names both come back to the message.
            for text in (json_format.MessageToJson(msg), json_format.MessageToJson(msg, preserving_proto_field_name=True)):
                answer = ours_from_json(driver, name, text)
                assert answer.startswith("ok "), f"{name} seed {seed}: {answer} for {text[:300]}"
                back = cls()
                back.ParseFromString(bytes.fromhex(answer[3:]))
                diff = equal(msg, back, name)
                assert diff is None, f"{name} seed {seed}: {diff}"
            checked += 1
    assert checked > 500


def roundtrip(driver, name, text):
    answer = ours_from_json(driver, name, text)
    assert answer.startswith("ok "), answer
    out = driver.call("tojson", name, bytes.fromhex(answer[3:]))
    assert out.startswith("ok "), out
    return json.loads(bytes.fromhex(out[3:]))


def refused(driver, name, text):
    answer = ours_from_json(driver, name, text)
    assert answer.startswith("err "), f"{text} was accepted"
    return answer[4:]


# Golden cases, one per rule of the mapping the gateway documents.

def test_names_camel_case_out_and_both_names_in(driver):
    t = "shop.v1.Product"
    assert roundtrip(driver, t, '{"image_urls": ["https://a"], "createTime": "2026-01-02T03:04:05Z"}') == \
        {"imageUrls": ["https://a"], "createTime": "2026-01-02T03:04:05Z"}


def test_int64_as_strings_out_numbers_or_strings_in(driver):
    t = "shop.v1.Money"
    assert roundtrip(driver, t, '{"amountMinor": 9007199254740993}') == {"amountMinor": "9007199254740993"}
    assert roundtrip(driver, t, '{"amountMinor": "-42"}') == {"amountMinor": "-42"}
    assert roundtrip(driver, t, '{"amountMinor": 1e3}') == {"amountMinor": "1000"}
    assert "amountMinor" in refused(driver, t, '{"amountMinor": 1.5}')
    assert "amountMinor" in refused(driver, t, '{"amountMinor": "12abc"}')
    assert "amountMinor" in refused(driver, t, '{"amountMinor": 99999999999999999999}')


def test_zero_values_are_left_out(driver):
    assert roundtrip(driver, "shop.v1.Money", '{"currencyCode": "", "amountMinor": 0}') == {}
    assert roundtrip(driver, "shop.v1.Product", '{"active": false, "stock": "0", "price": {}}') == {"price": {}}


def test_bytes_in_every_base64_flavour(driver):
    t = "conformance.v1.AllTypes"
    for text in ('"+/8="', '"-_8="', '"-_8"', '"+/8"'):
        assert roundtrip(driver, t, '{"fBytes": %s}' % text)["fBytes"] == "+/8="
    assert "fBytes" in refused(driver, t, '{"fBytes": "***"}')


def test_enums_by_name_or_number(driver):
    t = "shop.v1.ListOrdersRequest"
    assert roundtrip(driver, t, '{"status": "ORDER_STATUS_PAID"}') == {"status": "ORDER_STATUS_PAID"}
    assert roundtrip(driver, t, '{"status": 3}') == {"status": "ORDER_STATUS_SHIPPED"}
    assert roundtrip(driver, t, '{"status": 77}') == {"status": 77}  # open enums keep unknown numbers
    assert "status" in refused(driver, t, '{"status": "SHIPPED_SOON"}')


def test_well_known_types(driver):
    ts = "google.protobuf.Timestamp"
    assert roundtrip(driver, ts, '"2026-02-03T04:05:06.5+01:00"') == "2026-02-03T03:05:06.500Z"
    assert roundtrip(driver, ts, '"1970-01-01T00:00:00.000000001Z"') == "1970-01-01T00:00:00.000000001Z"
    for bad in ('"2026-02-30T00:00:00Z"', '"2026-01-01 00:00:00Z"', '"2026-01-01T00:00:00"', '12'):
        refused(driver, ts, bad)
    d = "google.protobuf.Duration"
    assert roundtrip(driver, d, '"-1.5s"') == "-1.500s"
    assert roundtrip(driver, d, '"3s"') == "3s"
    refused(driver, d, '"3m"')
    assert roundtrip(driver, "google.protobuf.Int64Value", '"12"') == "12"
    assert roundtrip(driver, "google.protobuf.BoolValue", "true") is True
    assert roundtrip(driver, "google.protobuf.StringValue", '"x"') == "x"
    s = "google.protobuf.Struct"
    assert roundtrip(driver, s, '{"a": [1, "two", null, {"b": false}]}') == {"a": [1, "two", None, {"b": False}]}
    assert roundtrip(driver, "google.protobuf.Value", "null") is None
    assert roundtrip(driver, "google.protobuf.FieldMask", '"name,price.amountMinor"') == "name,price.amountMinor"
    assert roundtrip(driver, "google.protobuf.Empty", "{}") == {}


def test_unknown_fields_and_wrong_shapes_name_the_field(driver):
    assert "product.colour" in refused(driver, "shop.v1.CreateProductRequest", '{"product": {"colour": "red"}}')
    assert "product.stock" in refused(driver, "shop.v1.CreateProductRequest", '{"product": {"stock": true}}')
    assert "categories" in refused(driver, "shop.v1.Product", '{"categories": "books"}')
    assert "malformed JSON" in refused(driver, "shop.v1.Product", '{"name": ')
    # Deep nesting is refused, not a crash.
    deep = '{"structValue": ' * 200 + "{}" + "}" * 200
    refused(driver, "google.protobuf.Value", deep)
    assert driver.call("tojson", "shop.v1.Money", b"").startswith("ok")
