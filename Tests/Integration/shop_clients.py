"""Typed calls to the running shop, for the integration tests."""
import base64
import json
import urllib.error
import urllib.request
import uuid

import grpc

from shop_fixtures import auth


class Client:
    """Typed calls to the shop as one user (or anonymously), through generated Python classes."""

    def __init__(self, shop, m, token=None):
        self.shop, self.m, self.token = shop, m, token

    def call(self, service, method, request, response, timeout=15, token=None, kind="unary_unary", identity="client", metadata=()):
        token = token or self.token
        md = list(metadata) + (auth(token) if token else [])
        return self.shop.stub(service, method, response, kind=kind, identity=identity)(request, metadata=md, timeout=timeout)

    def code(self, *args, **kwargs):
        """The status code a call ends with (OK when it succeeds)."""
        try:
            self.call(*args, **kwargs)
            return grpc.StatusCode.OK
        except grpc.RpcError as e:
            return e.code()


class Messages:
    def __init__(self, pb2):
        self.catalog = pb2("shop/v1/catalog.proto")
        self.accounts = pb2("shop/v1/accounts.proto")
        self.cart = pb2("shop/v1/cart.proto")
        self.orders = pb2("shop/v1/orders.proto")
        self.common = pb2("shop/v1/common.proto")
        self.notifications = pb2("shop/v1/notifications.proto")

    def address(self, **kw):
        a = dict(recipient="Ada Lovelace", lines=["1 Analytical St"], city="London", postal_code="N1 1AA", country_code="GB")
        a.update(kw)
        return self.common.Address(**a)


def new_customer(shop, m):
    return Client(shop, m, shop.token(str(uuid.uuid4())))


def make_product(admin, m, stock=10, price=1000, name=None, category="test", **kw):
    name = name or f"Product {uuid.uuid4().hex[:8]}"
    p = m.catalog.Product(sku=f"T-{uuid.uuid4().hex[:12]}", name=name, description=kw.pop("description", "for the tests"),
                          price=m.common.Money(currency_code=kw.pop("currency", "EUR"), amount_minor=price), stock=stock,
                          categories=[category], **kw)
    return admin.call("catalog", "CreateProduct", m.catalog.CreateProductRequest(product=p), m.catalog.Product)


def set_roles(admin, m, email, roles):
    """Gives the account with `email` exactly `roles` (the accounts service revokes its tokens)."""
    users = admin.call("accounts", "ListUsers", m.accounts.ListUsersRequest(page=m.common.PageRequest(page_size=500)),
                       m.accounts.ListUsersResponse).users
    user_id = next(u.id for u in users if u.email == email)
    return admin.call("accounts", "SetUserRoles", m.accounts.SetUserRolesRequest(user_id=user_id, roles=list(roles)),
                      m.accounts.User)


def http(base, method, path, body=None, token=None, headers=None, raw=None):
    """One request; returns (status, headers, parsed JSON or text)."""
    h = dict(headers or {})
    data = raw
    if body is not None:
        data = json.dumps(body).encode()
        h.setdefault("content-type", "application/json")
    if token:
        h["authorization"] = f"Bearer {token}"
    req = urllib.request.Request(base + path, data=data, method=method, headers=h)
    try:
        with urllib.request.urlopen(req, timeout=15) as r:
            status, hdrs, text = r.status, dict(r.headers), r.read().decode()
    except urllib.error.HTTPError as e:
        status, hdrs, text = e.code, dict(e.headers), e.read().decode()
    try:
        return status, {k.lower(): v for k, v in hdrs.items()}, json.loads(text) if text else None
    except json.JSONDecodeError:
        return status, {k.lower(): v for k, v in hdrs.items()}, text


def grpc_web(base, path, message, text=False, token=None):
    body = b"\x00" + len(message).to_bytes(4, "big") + message
    if text:
        body = base64.b64encode(body)
    headers = {"content-type": "application/grpc-web-text" if text else "application/grpc-web+proto", "x-grpc-web": "1"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    req = urllib.request.Request(base + path, data=body, method="POST", headers=headers)
    with urllib.request.urlopen(req, timeout=15) as r:
        data = r.read()
        ctype = r.headers["content-type"]
    if text:
        data = b"".join(base64.b64decode(chunk + b"=" * (-len(chunk) % 4)) for chunk in data.split(b"=") if chunk) if b"=" in data else base64.b64decode(data)
    messages, trailers, i = [], {}, 0
    while i < len(data):
        flag, n = data[i], int.from_bytes(data[i + 1:i + 5], "big")
        payload = data[i + 5:i + 5 + n]
        if flag & 0x80:
            for line in payload.decode().split("\r\n"):
                if line:
                    k, v = line.split(": ", 1)
                    trailers[k] = v
        else:
            messages.append(payload)
        i += 5 + n
    return ctype, messages, trailers
