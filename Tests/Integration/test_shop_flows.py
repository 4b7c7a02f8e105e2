"""End to end through the generated clients (grpcio + protoc's Python classes), every service a
real process over mTLS on PostgreSQL and Redis, mail into an SMTP sink: register, log in,
browse, search, cart, checkout (paid and declined), status changes, watch, notifications."""
import threading
import uuid

import grpc

from shop_clients import Client, make_product
from waiting import HANG_GUARD, wait_for


def test_shopping_end_to_end(shop, m, admin):
    anon = Client(shop, m)
    email = f"ada-{uuid.uuid4().hex[:8]}@example.com"
    user = anon.call("accounts", "Register", m.accounts.RegisterRequest(email=email, password="correct horse", display_name="Ada"), m.accounts.User)
    assert user.roles == ["customer"] and user.email == email
    session = anon.call("accounts", "Login", m.accounts.LoginRequest(email=email, password="correct horse"), m.accounts.Session)
    assert session.token_type == "Bearer" and session.user.id == user.id
    me = Client(shop, m, session.access_token)
    assert me.call("accounts", "GetMe", m.accounts.GetMeRequest(), m.accounts.User).id == user.id

    # The admin stocks the shop; customers browse and search without signing in.
    tag = uuid.uuid4().hex[:6]
    teapot = make_product(admin, m, stock=5, price=2500, name=f"Porcelain teapot {tag}", category=f"kitchen-{tag}",
                          description="brews loose leaf tea")
    mug = make_product(admin, m, stock=3, price=900, name=f"Stoneware mug {tag}", category=f"kitchen-{tag}", description="holds coffee")
    listed = anon.call("catalog", "ListProducts", m.catalog.ListProductsRequest(category=f"kitchen-{tag}", sort=m.catalog.PRODUCT_SORT_PRICE_ASC),
                       m.catalog.ListProductsResponse)
    assert [p.id for p in listed.products] == [mug.id, teapot.id]
    page1 = anon.call("catalog", "ListProducts", m.catalog.ListProductsRequest(
        category=f"kitchen-{tag}", page=m.common.PageRequest(page_size=1)), m.catalog.ListProductsResponse)
    page2 = anon.call("catalog", "ListProducts", m.catalog.ListProductsRequest(
        category=f"kitchen-{tag}", page=m.common.PageRequest(page_size=1, page_token=page1.next_page_token)), m.catalog.ListProductsResponse)
    assert page1.next_page_token and not page2.next_page_token
    assert {page1.products[0].id, page2.products[0].id} == {mug.id, teapot.id}
    cheap = anon.call("catalog", "ListProducts", m.catalog.ListProductsRequest(category=f"kitchen-{tag}", max_price_minor=1000),
                      m.catalog.ListProductsResponse)
    assert [p.id for p in cheap.products] == [mug.id]
    # Full-text search stems: "brewing" finds "brews".
    found = anon.call("catalog", "ListProducts", m.catalog.ListProductsRequest(query=f"brewing teapot {tag}"), m.catalog.ListProductsResponse)
    assert [p.id for p in found.products] == [teapot.id]
    assert anon.call("catalog", "GetProduct", m.catalog.GetProductRequest(sku=teapot.sku), m.catalog.Product).id == teapot.id

    # Cart: lines enriched with current names and prices.
    me.call("cart", "AddItem", m.cart.AddItemRequest(product_id=teapot.id, quantity=1), m.cart.Cart)
    me.call("cart", "AddItem", m.cart.AddItemRequest(product_id=mug.id, quantity=1), m.cart.Cart)
    cart = me.call("cart", "SetItemQuantity", m.cart.SetItemQuantityRequest(product_id=mug.id, quantity=2), m.cart.Cart)
    assert {(i.product_name, i.quantity, i.unit_price.amount_minor) for i in cart.items} == {(teapot.name, 1, 2500), (mug.name, 2, 900)}
    assert cart.subtotal.amount_minor == 4300

    # Checkout, paid: prices from the catalog, stock taken, cart emptied, email sent.
    order = me.call("orders", "PlaceOrder", m.orders.PlaceOrderRequest(request_id=str(uuid.uuid4()), shipping_address=m.address(),
                                                                      payment_token="tok_visa"), m.orders.Order)
    assert order.status == m.orders.ORDER_STATUS_PAID and order.total.amount_minor == 4300 and order.payment_id
    assert anon.call("catalog", "GetProduct", m.catalog.GetProductRequest(id=mug.id), m.catalog.Product).stock == 1
    assert not me.call("cart", "GetCart", m.cart.GetCartRequest(), m.cart.Cart).items
    wait_for("the confirmation email", lambda: any("confirmed" in msg for msg in shop.mail.to(email)))

    # Watch the order while the admin ships and delivers it.
    seen, ended = [], []
    stream = me.call("orders", "WatchOrder", m.orders.WatchOrderRequest(id=order.id), m.orders.Order, kind="unary_stream",
                     timeout=HANG_GUARD)

    def watch():
        try:
            seen.extend(o.status for o in stream)
            ended.append(stream.code())
        except grpc.RpcError as e:
            ended.append(e.code())
    watcher = threading.Thread(target=watch)
    watcher.start()
    wait_for("the first watched status", lambda: seen)
    # Shipped and delivered back to back, faster than the watch polls: it still sees both.
    admin.call("orders", "UpdateOrderStatus", m.orders.UpdateOrderStatusRequest(id=order.id, status=m.orders.ORDER_STATUS_SHIPPED), m.orders.Order)
    assert me.code("orders", "CancelOrder", m.orders.CancelOrderRequest(id=order.id), m.orders.Order) == grpc.StatusCode.FAILED_PRECONDITION
    admin.call("orders", "UpdateOrderStatus", m.orders.UpdateOrderStatusRequest(id=order.id, status=m.orders.ORDER_STATUS_DELIVERED), m.orders.Order)
    watcher.join(HANG_GUARD)
    assert ended == [grpc.StatusCode.OK], f"the watch did not end at DELIVERED: {ended}"
    assert seen == [m.orders.ORDER_STATUS_PAID, m.orders.ORDER_STATUS_SHIPPED, m.orders.ORDER_STATUS_DELIVERED]
    wait_for("the delivery email", lambda: any("delivered" in msg for msg in shop.mail.to(email)))
    assert any("shipped" in msg for msg in shop.mail.to(email))

    # Checkout, declined: the order is cancelled and the stock returns (the compensation).
    me.call("cart", "AddItem", m.cart.AddItemRequest(product_id=teapot.id, quantity=2), m.cart.Cart)
    try:
        me.call("orders", "PlaceOrder", m.orders.PlaceOrderRequest(request_id=str(uuid.uuid4()), shipping_address=m.address(),
                                                                  payment_token="tok_declined"), m.orders.Order)
        raise AssertionError("a declined payment placed an order")
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.FAILED_PRECONDITION and "declined" in e.details()
    assert anon.call("catalog", "GetProduct", m.catalog.GetProductRequest(id=teapot.id), m.catalog.Product).stock == 4
    mine = me.call("orders", "ListOrders", m.orders.ListOrdersRequest(), m.orders.ListOrdersResponse).orders
    assert [o.status for o in mine] == [m.orders.ORDER_STATUS_CANCELLED, m.orders.ORDER_STATUS_DELIVERED]
    assert "declined" in mine[0].cancel_reason
    # The cart keeps its lines after a failed checkout, so the customer can pay another way.
    order2 = me.call("orders", "PlaceOrder", m.orders.PlaceOrderRequest(request_id=str(uuid.uuid4()), shipping_address=m.address(),
                                                                       payment_token="tok_mastercard"), m.orders.Order)
    assert order2.status == m.orders.ORDER_STATUS_PAID
    assert anon.call("catalog", "GetProduct", m.catalog.GetProductRequest(id=teapot.id), m.catalog.Product).stock == 2

    # The customer cancels a paid order: refunded, stock back.
    cancelled = me.call("orders", "CancelOrder", m.orders.CancelOrderRequest(id=order2.id, reason="changed my mind"), m.orders.Order)
    assert cancelled.status == m.orders.ORDER_STATUS_CANCELLED
    assert anon.call("catalog", "GetProduct", m.catalog.GetProductRequest(id=teapot.id), m.catalog.Product).stock == 4
    assert shop.sql("orders", f"SELECT status FROM test_payments WHERE idempotency_key = '{order2.id}'") == "refunded"
    wait_for("two cancellation emails", lambda: sum("cancelled" in msg for msg in shop.mail.to(email)) >= 2)

    # The notifications are in the app too, newest first, and can be marked read.
    def six_notes():
        notes = me.call("notifications", "ListNotifications", m.notifications.ListNotificationsRequest(),
                        m.notifications.ListNotificationsResponse).notifications
        return notes if len(notes) >= 6 else None
    notes = wait_for("six notifications", six_notes)
    assert all(n.user_id == user.id for n in notes)
    me.call("notifications", "MarkRead", m.notifications.MarkReadRequest(id=notes[0].id), m.notifications.Notification)
    unread = me.call("notifications", "ListNotifications", m.notifications.ListNotificationsRequest(unread_only=True),
                     m.notifications.ListNotificationsResponse).notifications
    assert notes[0].id not in [n.id for n in unread] and len(unread) == len(notes) - 1
    # Every email went to the customer once: no duplicates by Message-ID.
    ids = [line for msg in shop.mail.to(email) for line in msg.splitlines() if line.startswith("Message-ID:")]
    assert len(ids) == len(set(ids)) == 6


def test_notifications_stream_to_a_subscriber(shop, m, admin):
    user = str(uuid.uuid4())
    me = Client(shop, m, shop.token(user))
    stream = me.call("notifications", "Subscribe", m.notifications.SubscribeRequest(), m.notifications.Notification,
                     kind="unary_stream", timeout=20)
    got = []

    def read():
        try:
            for n in stream:
                got.append(n)
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.CANCELLED  # by stream.cancel() below

    reader = threading.Thread(target=read)
    reader.start()
    # The stream carries what is stored after the subscription has started, which nothing else
    # tells: notifications sent as the orders service sends them, until one arrives, show it.
    def marker():
        me.call("notifications", "Send", m.notifications.SendNotificationRequest(
            id=str(uuid.uuid4()), user_id=user, channel=m.notifications.CHANNEL_IN_APP, subject="marker", body="marker"),
            m.notifications.Notification, identity="orders")
        return got
    wait_for("the subscription to stream a notification", marker, every=0.2)
    product = make_product(admin, m, stock=5)
    me.call("cart", "AddItem", m.cart.AddItemRequest(product_id=product.id, quantity=1), m.cart.Cart)
    order = me.call("orders", "PlaceOrder", m.orders.PlaceOrderRequest(request_id="sub-1", shipping_address=m.address()), m.orders.Order)
    first = wait_for("the order's notification to be streamed", lambda: next((n for n in got if n.subject != "marker"), None))
    assert first.order_id == order.id and "confirmed" in first.subject
    stream.cancel()
    reader.join(timeout=10)
