import BazaarPostgres

/// The orders database: orders, the checkout idempotency records, the transactional outbox, and
/// the built-in test payment provider's ledger.
public enum OrdersSchema {
    public static let migrations: [Migration] = [
        Migration(
            version: 1, name: "orders, checkouts, outbox, test payments",
            sql: """
                CREATE TABLE orders (
                    id               uuid PRIMARY KEY,
                    user_id          uuid NOT NULL,
                    status           text NOT NULL CHECK (status IN ('PENDING', 'PAID', 'SHIPPED', 'DELIVERED', 'CANCELLED')),
                    currency         char(3) NOT NULL,
                    total_minor      bigint NOT NULL CHECK (total_minor >= 0),
                    shipping_address jsonb NOT NULL,
                    payment_id       text,
                    cancel_reason    text NOT NULL DEFAULT '',
                    -- Where the catalog reservation stands, and whether a refund is owed: what the
                    -- recovery loop finishes after a crash.
                    stock_state      text NOT NULL DEFAULT 'reserved' CHECK (stock_state IN ('reserved', 'committed', 'released')),
                    refund_state     text NOT NULL DEFAULT 'none' CHECK (refund_state IN ('none', 'pending', 'refunded')),
                    created_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
                    updated_at       timestamptz NOT NULL DEFAULT clock_timestamp()
                );
                CREATE INDEX orders_user ON orders (user_id, created_at DESC, id DESC);
                CREATE INDEX orders_newest ON orders (created_at DESC, id DESC);
                CREATE INDEX orders_unsettled ON orders (updated_at)
                    WHERE status = 'PENDING' OR (status = 'PAID' AND stock_state = 'reserved')
                       OR (status = 'CANCELLED' AND (stock_state <> 'released' OR refund_state = 'pending'));
                CREATE TABLE order_items (
                    order_id         uuid NOT NULL REFERENCES orders (id),
                    line             integer NOT NULL,
                    product_id       uuid NOT NULL,
                    product_name     text NOT NULL,
                    quantity         bigint NOT NULL CHECK (quantity > 0),
                    unit_price_minor bigint NOT NULL,
                    PRIMARY KEY (order_id, line)
                );
                -- One row per (user, request_id): the idempotency record of a checkout. Written before
                -- anything else happens, so a crash at any later step is found and finished.
                CREATE TABLE checkouts (
                    user_id       uuid NOT NULL,
                    request_id    text NOT NULL,
                    order_id      uuid NOT NULL UNIQUE,
                    state         text NOT NULL DEFAULT 'started' CHECK (state IN ('started', 'ordered', 'done', 'failed')),
                    error_code    integer,
                    error_message text,
                    created_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
                    updated_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
                    PRIMARY KEY (user_id, request_id)
                );
                CREATE INDEX checkouts_started ON checkouts (updated_at) WHERE state = 'started';
                -- Events written in the same transaction as the change they describe; the relay
                -- publishes them to a Redis stream.
                CREATE TABLE outbox (
                    id           bigserial PRIMARY KEY,
                    event_id     uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
                    -- The order the event is about: status watches read an order's events in order.
                    order_id     uuid NOT NULL,
                    type         text NOT NULL,
                    payload      jsonb NOT NULL,
                    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
                    published_at timestamptz
                );
                CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;
                CREATE INDEX outbox_order ON outbox (order_id, id);
                -- The test payment provider's own records (a real provider keeps these on its side).
                CREATE TABLE test_payments (
                    idempotency_key text PRIMARY KEY,
                    charge_id       text NOT NULL UNIQUE,
                    amount_minor    bigint NOT NULL,
                    currency        char(3) NOT NULL,
                    status          text NOT NULL CHECK (status IN ('succeeded', 'declined', 'refunded')),
                    created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
                    refunded_at     timestamptz
                );
                """),
        // The relay no longer holds a transaction across its Redis calls: it leases rows instead.
        Migration(
            version: 2, name: "outbox leases",
            sql: """
                ALTER TABLE outbox ADD COLUMN lease_until timestamptz;
                """),
    ]
}
