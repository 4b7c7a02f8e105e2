"""Typed calls to the running shop, for the integration tests."""
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
