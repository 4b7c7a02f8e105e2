import BazaarPostgres

/// The catalog database, in versioned migrations (applied at startup under an advisory lock).
public enum CatalogSchema {
    public static let migrations: [Migration] = [
        Migration(
            version: 1, name: "products and stock reservations",
            sql: """
                CREATE TABLE products (
                    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
                    sku         text NOT NULL UNIQUE,
                    name        text NOT NULL,
                    description text NOT NULL DEFAULT '',
                    currency    char(3) NOT NULL,
                    price_minor bigint NOT NULL CHECK (price_minor >= 0),
                    -- Units that can still be reserved: a reservation takes them, a release gives them back.
                    stock       bigint NOT NULL CHECK (stock >= 0),
                    categories  text[] NOT NULL DEFAULT '{}',
                    image_urls  text[] NOT NULL DEFAULT '{}',
                    attributes  jsonb NOT NULL DEFAULT '{}',
                    active      boolean NOT NULL DEFAULT true,
                    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
                    updated_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
                    search      tsvector GENERATED ALWAYS AS (
                        setweight(to_tsvector('english', name), 'A') || setweight(to_tsvector('english', description), 'B')) STORED
                );
                CREATE INDEX products_search ON products USING gin (search);
                CREATE INDEX products_categories ON products USING gin (categories);
                CREATE INDEX products_newest ON products (created_at DESC, id DESC) WHERE active;
                CREATE INDEX products_price ON products (price_minor, id) WHERE active;
                CREATE INDEX products_name ON products (name, id) WHERE active;

                -- One row per order: where its reservation stands.
                CREATE TABLE reservations (
                    order_id   uuid PRIMARY KEY,
                    state      text NOT NULL CHECK (state IN ('reserved', 'committed', 'released')),
                    expires_at timestamptz NOT NULL,
                    updated_at timestamptz NOT NULL DEFAULT clock_timestamp()
                );
                CREATE INDEX reservations_expiring ON reservations (expires_at) WHERE state = 'reserved';
                CREATE TABLE reservation_lines (
                    order_id   uuid NOT NULL REFERENCES reservations (order_id),
                    product_id uuid NOT NULL REFERENCES products (id),
                    quantity   bigint NOT NULL CHECK (quantity > 0),
                    currency   char(3) NOT NULL,
                    unit_price_minor bigint NOT NULL,
                    PRIMARY KEY (order_id, product_id)
                );
                """)
    ]
}
