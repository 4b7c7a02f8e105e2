"""Fixtures of the shop's integration tests: the running shop and helpers to drive it."""
import uuid

import pytest

from shop_clients import Client, Messages
from shop_fixtures import Shop


@pytest.fixture(scope="session")
def m(pb2):
    return Messages(pb2)


@pytest.fixture(scope="session")
def shop(tmp_path_factory):
    s = Shop(tmp_path_factory.mktemp("shop"))
    yield s
    s.close()


@pytest.fixture
def admin(shop, m):
    return Client(shop, m, shop.token(str(uuid.uuid4()), roles=("admin", "customer")))
