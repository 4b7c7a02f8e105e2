"""Order events through the outbox, the Redis stream and the notifications consumer: nothing lost
while the consumer is down, nothing mailed twice when it comes back, relays safe together."""
import signal
import subprocess
import uuid

from shop_clients import Client, make_product
from waiting import wait_for

STREAM = "bazaar:order-events"


def registered(shop, m):
    anon = Client(shop, m)
    email = f"buyer-{uuid.uuid4().hex[:8]}@example.com"
    anon.call("accounts", "Register", m.accounts.RegisterRequest(email=email, password="long enough"), m.accounts.User)
    session = anon.call("accounts", "Login", m.accounts.LoginRequest(email=email, password="long enough"), m.accounts.Session)
    return email, Client(shop, m, session.access_token)


def message_ids(shop, email):
    return [line for msg in shop.mail.to(email) for line in msg.splitlines() if line.startswith("Message-ID:")]


def redis(shop, *args):
    return subprocess.run(["redis-cli", "-p", str(shop.redis_port), *args], capture_output=True, text=True,
                          check=True).stdout


def entry(entry_id):
    ms, seq = entry_id.split("-")
    return int(ms), int(seq)


def consumed(shop, up_to=None):
    """Whether the notifications consumer has been handed every stream entry up to `up_to` (the
    last one, by default) and has acknowledged all it was handed: it acknowledges an entry once
    what it made of it is committed."""
    if up_to is None:
        up_to = redis(shop, "XREVRANGE", STREAM, "+", "-", "COUNT", "1").split("\n")[0]
    lines = redis(shop, "XINFO", "GROUPS", STREAM).split("\n")  # one element a line off a terminal
    group = dict(zip(lines[0::2], lines[1::2]))
    return group["pending"] == "0" and entry(group["last-delivered-id"]) >= entry(up_to)


def mail_settled(shop, email):
    """No mail to `email` is waiting to be sent (the mailer sends only pending rows)."""
    return shop.sql("notifications", f"SELECT count(*) FROM notifications WHERE email_to = '{email}' AND email_state = 'pending'") == "0"


def test_notifications_outage_loses_nothing_and_mails_once(shop, m, admin):
    email, me = registered(shop, m)
    product = make_product(admin, m, stock=50)
    shop.stop("notifications", sig=signal.SIGTERM)
    orders = []
    for _ in range(5):
        me.call("cart", "AddItem", m.cart.AddItemRequest(product_id=product.id, quantity=1), m.cart.Cart)
        orders.append(me.call("orders", "PlaceOrder", m.orders.PlaceOrderRequest(request_id=str(uuid.uuid4()), shipping_address=m.address()),
                              m.orders.Order))
    # The relay published while the consumer was away: the events wait in the stream.
    wait_for("the relay", lambda: shop.sql("orders", "SELECT count(*) FROM outbox WHERE published_at IS NULL") == "0")
    # (Only the notifications service mails, and it is down.)
    assert message_ids(shop, email) == []
    shop.start("notifications")
    wait_for("five confirmation emails", lambda: len(message_ids(shop, email)) >= 5)
    # A repeat could only come from an entry not yet processed or a mail not yet sent: once
    # neither is left, every mail there will be is in.
    wait_for("the consumer to process the whole stream", lambda: consumed(shop))
    wait_for("the mail to this customer to be sent", lambda: mail_settled(shop, email))
    ids = message_ids(shop, email)
    assert len(ids) == len(set(ids)) == 5
    for o in orders:
        assert sum(o.id in msg for msg in shop.mail.to(email)) == 1


def test_events_delivered_twice_are_processed_once(shop, m, admin):
    """A relay that crashed after XADD but before its commit publishes again; the consumer must
    drop the repeat by event id. Replays the stream's own entries to the consumer group."""
    email, me = registered(shop, m)
    product = make_product(admin, m, stock=5)
    me.call("cart", "AddItem", m.cart.AddItemRequest(product_id=product.id, quantity=1), m.cart.Cart)
    order = me.call("orders", "PlaceOrder", m.orders.PlaceOrderRequest(request_id=str(uuid.uuid4()), shipping_address=m.address()),
                    m.orders.Order)
    wait_for("the confirmation email", lambda: message_ids(shop, email))
    # Re-publish every event of this order, as a second relay would.
    rows = shop.sql("orders", f"SELECT event_id, type, payload::text FROM outbox WHERE payload->>'order_id' = '{order.id}'").splitlines()
    assert rows
    added = []
    for row in rows:
        event_id, type_, payload = row.split("|", 2)
        added.append(redis(shop, "XADD", STREAM, "*", "event_id", event_id, "type", type_, "payload", payload).strip())
    # Malformed entries must not stop the consumer either.
    for fields in (["garbage", "\xff\x01"], ["event_id", "1 OR 1=1", "type", "order.paid", "payload", "{not json"],
                   ["event_id", str(uuid.uuid4()), "type", "order.paid", "payload", '{"user_id": "nobody", "order_id": 7}']):
        added.append(redis(shop, "XADD", STREAM, "*", *fields).strip())
    # Once the consumer has processed all of them and no mail is waiting, a repeat would be in.
    wait_for("the consumer to process the entries added", lambda: consumed(shop, up_to=added[-1]))
    wait_for("the mail to this customer to be sent", lambda: mail_settled(shop, email))
    assert len(message_ids(shop, email)) == 1
    # And the service still works.
    me.call("cart", "AddItem", m.cart.AddItemRequest(product_id=product.id, quantity=1), m.cart.Cart)
    me.call("orders", "PlaceOrder", m.orders.PlaceOrderRequest(request_id=str(uuid.uuid4()), shipping_address=m.address()), m.orders.Order)
    wait_for("the second confirmation", lambda: len(message_ids(shop, email)) == 2)


def test_two_relays_publish_every_event_exactly_once(shop, m, admin):
    """A second orders replica runs its own outbox relay against the same database: with
    FOR UPDATE SKIP LOCKED they split the rows and the stream gets each event once."""
    import concurrent.futures

    shop.start("orders", replica="orders-2")
    try:
        product = make_product(admin, m, stock=100)
        users = [str(uuid.uuid4()) for _ in range(20)]
        customers = [Client(shop, m, shop.token(u)) for u in users]
        for c in customers:
            c.call("cart", "AddItem", m.cart.AddItemRequest(product_id=product.id, quantity=1), m.cart.Cart)
        with concurrent.futures.ThreadPoolExecutor(10) as pool:
            list(pool.map(lambda c: c.call("orders", "PlaceOrder", m.orders.PlaceOrderRequest(
                request_id=str(uuid.uuid4()), shipping_address=m.address()), m.orders.Order), customers))
        wait_for("both relays", lambda: shop.sql("orders", "SELECT count(*) FROM outbox WHERE published_at IS NULL") == "0")
        # redis-cli prints one element per line when not on a terminal.
        out = subprocess.run(["redis-cli", "-p", str(shop.redis_port), "XRANGE", "bazaar:order-events", "-", "+"],
                             capture_output=True, text=True, check=True).stdout
        lines = out.splitlines()
        published = [lines[i + 1] for i, l in enumerate(lines[:-1]) if l == "event_id"]
        ours = set(shop.sql("orders", f"""SELECT event_id FROM outbox WHERE payload->>'user_id' IN
                                         ({",".join("'" + u + "'" for u in users)})""").split())
        assert len(ours) == 40  # placed + paid per order
        mine = [e for e in published if e in ours]
        assert sorted(mine) == sorted(ours)
    finally:
        shop.stop("orders-2")


def test_mail_waits_for_the_smtp_server_and_is_sent_once_it_is_back(shop, m, admin):
    """Regression: the retry path of the mailer (SMTP server unreachable) failed with a SQL type
    error, so no email was ever retried."""
    email, me = registered(shop, m)
    product = make_product(admin, m, stock=5)
    shop.mail.pause()
    try:
        me.call("cart", "AddItem", m.cart.AddItemRequest(product_id=product.id, quantity=1), m.cart.Cart)
        me.call("orders", "PlaceOrder", m.orders.PlaceOrderRequest(request_id=str(uuid.uuid4()), shipping_address=m.address()), m.orders.Order)
        wait_for("a failed delivery attempt",
                 lambda: shop.sql("notifications", f"SELECT count(*) FROM notifications WHERE email_to = '{email}' AND email_attempts > 0") == "1")
        assert shop.sql("notifications", f"SELECT email_state FROM notifications WHERE email_to = '{email}'") == "pending"
        assert "mailer round failed" not in shop.log("notifications")
    finally:
        shop.mail.resume()
    # (The first retry comes 2 s after the first failure.)
    wait_for("the email after the server came back", lambda: message_ids(shop, email))
    assert shop.sql("notifications", f"SELECT email_state FROM notifications WHERE email_to = '{email}'") == "sent"
