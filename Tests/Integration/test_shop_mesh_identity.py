"""Whom a service believes it is calling. Mesh clients check the upstream's SPIFFE identity
(spiffe://bazaar.local/<service>) rather than the name they dialled: in Kubernetes that name is a
headless Service's DNS name, which is not in the workload certificates, and a name or address
that leads to the wrong service must be refused, not called."""
import grpc
import pytest

from mesh_fixtures import Dnsmasq
from shop_clients import Client, make_product, new_customer


def add_item(shop, m, product):
    customer = new_customer(shop, m)
    return customer.call("cart", "AddItem", m.cart.AddItemRequest(product_id=product.id, quantity=1), m.cart.Cart)


def test_an_upstream_reached_by_a_dns_name_outside_its_certificate_is_called(shop, m, tmp_path):
    admin = Client(shop, m, shop.token("identity-admin", roles=("admin",)))
    product = make_product(admin, m)
    dns = Dnsmasq(tmp_path)
    dns.set("catalog-headless.bazaar.svc.cluster.local", ["127.0.0.1"])
    try:
        shop.stop("cart")
        shop.start("cart", env={"BAZAAR_CATALOG_TARGET": f"dns:///catalog-headless.bazaar.svc.cluster.local:{shop.ports['catalog']}",
                                "BAZAAR_DNS_SERVER": dns.nameserver})
        cart = add_item(shop, m, product)
        assert [item.product_id for item in cart.items] == [product.id]
        assert cart.subtotal.amount_minor == product.price.amount_minor  # priced by the catalog over the DNS name
    finally:
        shop.stop("cart")
        shop.start("cart")
        dns.stop()


def test_an_address_that_leads_to_another_service_is_refused(shop, m):
    admin = Client(shop, m, shop.token("identity-admin-2", roles=("admin",)))
    product = make_product(admin, m)
    try:
        # cart's "catalog" points at the accounts service: its certificate says accounts.
        shop.stop("cart")
        shop.start("cart", env={"BAZAAR_CATALOG_TARGET": f"127.0.0.1:{shop.ports['accounts']}",
                                "BAZAAR_RETRY_MAX_ATTEMPTS": "1"})
        with pytest.raises(grpc.RpcError) as error:
            add_item(shop, m, product)
        assert error.value.code() == grpc.StatusCode.UNAVAILABLE, error.value
    finally:
        shop.stop("cart")
        shop.start("cart")
