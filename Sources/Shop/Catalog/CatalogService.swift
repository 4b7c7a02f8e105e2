import BazaarAuth
import BazaarCore
import BazaarPostgres
import BazaarTelemetry
import Foundation
import ShopAPI
import ShopKit
import WellKnownTypes

/// `shop.v1.CatalogService` on PostgreSQL: products, search, and stock reservations for orders.
///
/// Stock is one counter per product of units still available. A reservation takes units from it
/// in one transaction (all lines or none, never below zero: `UPDATE ... WHERE stock >= $n`, and a
/// CHECK constraint behind it), a commit makes the reservation final, and a release (or the
/// expiry sweep) gives the units back. Each step is idempotent per order id.
public final class CatalogService: Shop_V1_CatalogService.ServiceProtocol {
    public let db: PostgresPool
    public let logger: Logger
    /// How long a reservation lives without a commit before the sweep releases it.
    public let reservationTTL: Duration
    /// How often stock watches look for changes.
    public let watchInterval: Duration

    public init(
        db: PostgresPool, logger: Logger, reservationTTL: Duration = .seconds(900),
        watchInterval: Duration = .milliseconds(500)
    ) {
        self.db = db
        self.logger = logger
        self.reservationTTL = reservationTTL
        self.watchInterval = watchInterval
    }

    static let columns = """
        id::text AS id, sku, name, description, currency, price_minor, stock, to_jsonb(categories)::text AS categories,
        to_jsonb(image_urls)::text AS image_urls, attributes::text AS attributes, active, created_at::text AS created_text,
        \(epochMicros("created_at", as: "created")), \(epochMicros("updated_at", as: "updated"))
        """

    static func product(_ row: PostgresRow) -> Shop_V1_Product {
        var p = Shop_V1_Product()
        p.id = row.text("id")
        p.sku = row.text("sku")
        p.name = row.text("name")
        p.description_p = row.text("description")
        p.price = Shop_V1_Money(row.text("currency"), row.int64("price_minor"))
        p.stock = row.int64("stock")
        p.categories = jsonStringList(row["categories"])
        p.imageURLs = jsonStringList(row["image_urls"])
        p.attributes = jsonStringMap(row["attributes"])
        p.active = row.bool("active") ?? false
        p.createTime = row.micros("created")
        p.updateTime = row.micros("updated")
        return p
    }

    // MARK: reads

    public func listProducts(_ request: Shop_V1_ListProductsRequest, context: ServerContext) async throws
        -> Shop_V1_ListProductsResponse
    {
        let size = try PageToken.size(request.page)
        // The schema's rules (catalog.proto) bound the text and the prices; what they cannot say:
        try Check.that(
            request.maxPriceMinor == 0 || request.minPriceMinor <= request.maxPriceMinor, field: "min_price_minor",
            reason: "ABOVE_MAX_PRICE", "min_price_minor is above max_price_minor")
        let hasQuery = !request.query.trimming(" ").isEmpty
        var sort = request.sort
        if sort == .unspecified { sort = hasQuery ? .relevance : .newest }
        guard case .unrecognized = sort else {
            return try await list(request, size: size, sort: sort, hasQuery: hasQuery)
        }
        throw RPCError(.invalidArgument, "sort is not a known ProductSort")
    }

    private func list(_ request: Shop_V1_ListProductsRequest, size: Int, sort: Shop_V1_ProductSort, hasQuery: Bool)
        async throws -> Shop_V1_ListProductsResponse
    {
        var conditions = ["active"]
        var params: [(any PostgresBindable)?] = []
        func bind(_ value: any PostgresBindable) -> String {
            params.append(value)
            return "$\(params.count)"
        }
        if !request.category.isEmpty { conditions.append("categories @> ARRAY[\(bind(request.category))]::text[]") }
        var rank = "0"
        if hasQuery {
            let q = bind(request.query)
            conditions.append("search @@ websearch_to_tsquery('english', \(q))")
            rank = "ts_rank(search, websearch_to_tsquery('english', \(q)))"
        }
        if request.minPriceMinor > 0 { conditions.append("price_minor >= \(bind(request.minPriceMinor))") }
        if request.maxPriceMinor > 0 { conditions.append("price_minor <= \(bind(request.maxPriceMinor))") }
        guard sort != .relevance || hasQuery else { throw RPCError(.invalidArgument, "sort RELEVANCE needs a query") }

        // Keyset pagination on (sort key, id); relevance pages by offset, as ranks are not stable keys.
        let cursor = try PageToken.decode(request.page.map(\.pageToken), count: 3)
        if let cursor, cursor[0] != String(sort.rawValue) {
            throw RPCError(.invalidArgument, "page.page_token belongs to another sort order")
        }
        var offset = 0
        let order: String
        switch sort {
        case .priceAsc:
            order = "price_minor, id"
            if let c = cursor {
                conditions.append("(price_minor, id) > (\(bind(try int64(c[1]))), \(bind(try uuid(c[2])))::uuid)")
            }
        case .priceDesc:
            order = "price_minor DESC, id DESC"
            if let c = cursor {
                conditions.append("(price_minor, id) < (\(bind(try int64(c[1]))), \(bind(try uuid(c[2])))::uuid)")
            }
        case .name:
            order = "name, id"
            if let c = cursor { conditions.append("(name, id) > (\(bind(c[1])), \(bind(try uuid(c[2])))::uuid)") }
        case .relevance:
            order = "\(rank) DESC, id"
            if let c = cursor {
                // A position in the ranking: never negative, and no deeper than anyone pages.
                let position = try int64(c[1])
                guard position >= 0 && position <= Self.maxRelevanceOffset else {
                    throw RPCError(.invalidArgument, "page.page_token is not a token this service issued")
                }
                offset = Int(position)
            }
        default:
            order = "created_at DESC, id DESC"
            if let c = cursor {
                conditions.append("(created_at, id) < (\(bind(c[1]))::timestamptz, \(bind(try uuid(c[2])))::uuid)")
            }
        }
        let sql =
            "SELECT \(Self.columns) FROM products WHERE \(conditions.joined(separator: " AND ")) ORDER BY \(order) LIMIT \(size + 1) OFFSET \(offset)"
        let rows = try await db.query(sql, params).rows
        var response = Shop_V1_ListProductsResponse()
        response.products = rows.prefix(size).map(Self.product)
        if rows.count > size, let last = rows.prefix(size).last {
            let key: [String]
            switch sort {
            case .priceAsc, .priceDesc: key = [last.text("price_minor"), last.text("id")]
            case .name: key = [last.text("name"), last.text("id")]
            case .relevance: key = [String(offset + size), ""]
            default: key = [last.text("created_text"), last.text("id")]
            }
            response.nextPageToken = PageToken.encode([String(sort.rawValue)] + key)
        }
        return response
    }

    /// How deep relevance-ranked results page (OFFSET paging costs the skipped rows).
    static let maxRelevanceOffset: Int64 = 10_000

    private func int64(_ text: String) throws(RPCError) -> Int64 {
        guard let v = Int64(text) else {
            throw RPCError(.invalidArgument, "page.page_token is not a token this service issued")
        }
        return v
    }

    private func uuid(_ text: String) throws(RPCError) -> String {
        guard Check.isID(text) else {
            throw RPCError(.invalidArgument, "page.page_token is not a token this service issued")
        }
        return text
    }

    public func getProduct(_ request: Shop_V1_GetProductRequest, context: ServerContext) async throws -> Shop_V1_Product
    {
        let rows: [PostgresRow]
        if !request.id.isEmpty {
            try Check.id(request.id, "id")
            rows = try await db.query("SELECT \(Self.columns) FROM products WHERE id = $1", [request.id]).rows
        } else if !request.sku.isEmpty {
            try Check.text(request.sku, "sku", max: 64)
            rows = try await db.query("SELECT \(Self.columns) FROM products WHERE sku = $1", [request.sku]).rows
        } else {
            throw RPCError(.invalidArgument, "id or sku is required")
        }
        guard let row = rows.first else {
            throw RPCError(.notFound, "no product \(request.id.isEmpty ? "with SKU \(request.sku)" : request.id)")
        }
        return Self.product(row)
    }

    public func batchGetProducts(_ request: Shop_V1_BatchGetProductsRequest, context: ServerContext) async throws
        -> Shop_V1_BatchGetProductsResponse
    {
        for id in request.ids { try Check.id(id, "ids") }
        var response = Shop_V1_BatchGetProductsResponse()
        if request.ids.isEmpty { return response }
        let rows = try await db.query(
            "SELECT \(Self.columns) FROM products WHERE id = ANY(\(Self.uuidArray("$1")))", [jsonText(request.ids)]
        ).rows
        response.products = rows.map(Self.product)
        return response
    }

    /// A uuid[] from a JSON array parameter: lists are bound as one JSON text, never spliced.
    static func uuidArray(_ placeholder: String) -> String {
        "ARRAY(SELECT jsonb_array_elements_text(\(placeholder)::jsonb))::uuid[]"
    }

    static func textArray(_ placeholder: String) -> String {
        "ARRAY(SELECT jsonb_array_elements_text(\(placeholder)::jsonb))"
    }

    // MARK: admin writes

    public func createProduct(_ request: Shop_V1_CreateProductRequest, context: ServerContext) async throws
        -> Shop_V1_Product
    {
        guard let p = request.product else { throw RPCError(.invalidArgument, "product is required") }
        try Self.validate(p, fields: Self.writable)
        do {
            let row = try await db.query(
                """
                INSERT INTO products (sku, name, description, currency, price_minor, stock, categories, image_urls, attributes, active)
                VALUES ($1, $2, $3, $4, $5, $6, \(Self.textArray("$7")), \(Self.textArray("$8")), $9::jsonb, true)
                RETURNING \(Self.columns)
                """,
                [
                    p.sku, p.name, p.description_p, p.price?.currencyCode ?? "", p.price?.amountMinor ?? 0, p.stock,
                    jsonText(p.categories), jsonText(p.imageURLs), jsonText(p.attributes),
                ]
            ).rows[0]
            logger.info("product created", [("product_id", .string(row.text("id"))), ("sku", .string(p.sku))])
            return Self.product(row)
        } catch let e as PostgresError where e.isUniqueViolation {
            throw RPCError(.alreadyExists, "a product with SKU \(p.sku) exists")
        }
    }

    static let writable: Set<String> = [
        "sku", "name", "description", "price", "stock", "categories", "image_urls", "attributes", "active",
    ]

    static func validate(_ p: Shop_V1_Product, fields: Set<String>) throws(RPCError) {
        if fields.contains("sku") {
            try Check.text(p.sku, "product.sku", max: 64)
            try Check.that(
                p.sku.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "-_.".contains($0)) },
                field: "product.sku", reason: "PATTERN_MISMATCH",
                "product.sku may hold only letters, digits, '-', '_' and '.'")
        }
        if fields.contains("name") { try Check.text(p.name, "product.name", max: 200) }
        if fields.contains("description") {
            try Check.text(p.description_p, "product.description", max: 5000, required: false, multiline: true)
        }
        if fields.contains("price") {
            guard let price = p.price else {
                throw RPCError.invalidArgument(field: "product.price", "product.price is required", reason: "REQUIRED")
            }
            try Check.that(
                price.currencyCode.count == 3 && price.currencyCode.allSatisfy { $0.isASCII && $0.isUppercase },
                field: "product.price.currency_code", reason: "PATTERN_MISMATCH",
                "product.price.currency_code must be an ISO 4217 code such as EUR")
            try Check.that(
                price.amountMinor >= 0 && price.amountMinor <= MoneyMath.maxUnitPriceMinor,
                field: "product.price.amount_minor", reason: "OUT_OF_RANGE",
                "product.price.amount_minor must be between 0 and \(MoneyMath.maxUnitPriceMinor)")
        }
        if fields.contains("stock") {
            try Check.that(
                p.stock >= 0 && p.stock <= 1_000_000_000, field: "product.stock", reason: "OUT_OF_RANGE",
                "product.stock must be between 0 and 1e9")
        }
        if fields.contains("categories") {
            try Check.that(
                p.categories.count <= 20, field: "product.categories", reason: "TOO_MANY_ITEMS",
                "product.categories holds at most 20 entries")
            for c in p.categories { try Check.text(c, "product.categories", max: 64) }
        }
        if fields.contains("image_urls") {
            try Check.that(
                p.imageURLs.count <= 20, field: "product.image_urls", reason: "TOO_MANY_ITEMS",
                "product.image_urls holds at most 20 entries")
            for u in p.imageURLs {
                try Check.text(u, "product.image_urls", max: 2000)
                // An address elsewhere, or a path on the shop's own site (the demo catalog's
                // pictures, or images the edge serves): never a scheme a browser would run.
                let sameSite = u.hasPrefix("/") && !u.hasPrefix("//") && !u.contains("\\")
                try Check.that(
                    u.hasPrefix("https://") || u.hasPrefix("http://") || sameSite, field: "product.image_urls",
                    reason: "NOT_A_URL", "product.image_urls must be http(s) URLs or paths on this site")
            }
        }
        if fields.contains("attributes") {
            try Check.that(
                p.attributes.count <= 50, field: "product.attributes", reason: "TOO_MANY_ITEMS",
                "product.attributes holds at most 50 entries")
            for (k, v) in p.attributes {
                try Check.text(k, "product.attributes key", max: 64)
                try Check.text(v, "product.attributes[\(k)]", max: 500, required: false, multiline: true)
            }
        }
    }

    public func updateProduct(_ request: Shop_V1_UpdateProductRequest, context: ServerContext) async throws
        -> Shop_V1_Product
    {
        guard let p = request.product else { throw RPCError(.invalidArgument, "product is required") }
        try Check.id(p.id, "product.id")
        let paths = Set(request.updateMask?.paths ?? [])
        let unknown = paths.subtracting(Self.writable)
        try Check.that(
            unknown.isEmpty, field: "update_mask", reason: "NOT_WRITABLE",
            "update_mask names fields that cannot be changed: \(unknown.sorted().joined(separator: ", "))")
        let fields = paths.isEmpty ? Self.writable : paths
        try Self.validate(p, fields: fields)
        var sets: [String] = []
        var params: [(any PostgresBindable)?] = [p.id]
        func set(_ column: String, _ value: any PostgresBindable, cast: String = "") {
            params.append(value)
            sets.append("\(column) = $\(params.count)\(cast)")
        }
        for field in fields.sorted() {
            switch field {
            case "sku": set("sku", p.sku)
            case "name": set("name", p.name)
            case "description": set("description", p.description_p)
            case "price":
                set("currency", p.price?.currencyCode ?? "")
                set("price_minor", p.price?.amountMinor ?? 0)
            case "stock": set("stock", p.stock)
            case "categories":
                params.append(jsonText(p.categories))
                sets.append("categories = \(Self.textArray("$\(params.count)"))")
            case "image_urls":
                params.append(jsonText(p.imageURLs))
                sets.append("image_urls = \(Self.textArray("$\(params.count)"))")
            case "attributes": set("attributes", jsonText(p.attributes), cast: "::jsonb")
            case "active": set("active", p.active)
            default: break
            }
        }
        do {
            let rows = try await db.query(
                "UPDATE products SET \(sets.joined(separator: ", ")), updated_at = clock_timestamp() WHERE id = $1 RETURNING \(Self.columns)",
                params
            ).rows
            guard let row = rows.first else { throw RPCError(.notFound, "no product \(p.id)") }
            return Self.product(row)
        } catch let e as PostgresError where e.isUniqueViolation {
            throw RPCError(.alreadyExists, "a product with SKU \(p.sku) exists")
        }
    }

    public func deleteProduct(_ request: Shop_V1_DeleteProductRequest, context: ServerContext) async throws
        -> Shop_V1_DeleteProductResponse
    {
        try Check.id(request.id, "id")
        let r = try await db.query(
            "UPDATE products SET active = false, updated_at = clock_timestamp() WHERE id = $1", [request.id])
        guard r.affectedRows == 1 else { throw ProductErrors.notFound(request.id) }
        return Shop_V1_DeleteProductResponse()
    }

    // MARK: stock reservations (called by the orders service)

    public func reserveStock(_ request: Shop_V1_ReserveStockRequest, context: ServerContext) async throws
        -> Shop_V1_ReserveStockResponse
    {
        try Check.id(request.orderID, "order_id")
        var wanted: [String: Int64] = [:]
        for line in request.lines {
            try Check.id(line.productID, "lines.product_id")
            wanted[line.productID, default: 0] += line.quantity
        }
        let ttlSeconds =
            Double(reservationTTL.components.seconds) + Double(reservationTTL.components.attoseconds) / 1e18
        let want = String(
            decoding: try JSONSerialization.data(
                withJSONObject: wanted.sorted { $0.key < $1.key }.map { ["product_id": $0.key, "quantity": $0.value] }),
            as: UTF8.self)
        // One statement, so one round trip and atomic by itself: the reservation, every product's
        // stock taken (rows locked in id order, so two orders sharing products cannot deadlock),
        // and the reservation's lines. A shortage or a product no longer sold drives its stock
        // below zero, and a missing product leaves its line without a price: either fails the
        // whole statement on a constraint (the CHECK on stock, NOT NULL), and nothing is kept.
        let rows: [PostgresRow]
        do {
            rows = try await db.query(
                """
                WITH r AS (
                    INSERT INTO reservations (order_id, state, expires_at)
                    VALUES ($1, 'reserved', clock_timestamp() + make_interval(secs => $2))
                    ON CONFLICT (order_id) DO NOTHING RETURNING order_id, expires_at),
                want AS (
                    SELECT x.product_id::uuid AS product_id, x.quantity
                    FROM jsonb_to_recordset($3::jsonb) AS x(product_id text, quantity bigint)),
                locked AS (
                    SELECT p.id FROM products p WHERE p.id IN (SELECT product_id FROM want) AND EXISTS (SELECT 1 FROM r)
                    ORDER BY p.id FOR UPDATE),
                taken AS (
                    UPDATE products p SET stock = CASE WHEN p.active THEN p.stock - w.quantity ELSE -1 END,
                        updated_at = clock_timestamp()
                    FROM want w, locked l WHERE p.id = w.product_id AND l.id = p.id
                    RETURNING p.id, p.name, p.currency, p.price_minor, w.quantity),
                lines AS (
                    INSERT INTO reservation_lines (order_id, product_id, quantity, currency, unit_price_minor)
                    SELECT r.order_id, w.product_id, w.quantity, t.currency, t.price_minor
                    FROM r, want w LEFT JOIN taken t ON t.id = w.product_id)
                SELECT \(epochMicros("r.expires_at", as: "expires")), t.id::text AS product_id, t.name, t.currency,
                    t.price_minor AS unit_price_minor, t.quantity
                FROM r, taken t ORDER BY t.id
                """, [request.orderID, ttlSeconds, want]
            ).rows
        } catch let e as PostgresError where ["23514", "23502", "23503"].contains(e.sqlState) {
            throw try await shortage(wanted)
        }
        guard let first = rows.first else {
            // Reserved before (a retry): answer as the first time, unless it was released since.
            return try await db.withConnection { c in try await Self.existingReservation(request.orderID, c) }
        }
        var response = Shop_V1_ReserveStockResponse()
        response.expireTime = first.micros("expires")
        response.lines = rows.map(Self.reservedLine)
        return response
    }

    /// A reserved line from a row with `product_id`, `name`, `quantity`, `currency`, `unit_price_minor`.
    private static func reservedLine(_ row: PostgresRow) -> Shop_V1_ReservedLine {
        var line = Shop_V1_ReservedLine()
        line.productID = row.text("product_id")
        line.productName = row.text("name")
        line.quantity = row.int64("quantity")
        line.unitPrice = Shop_V1_Money(row.text("currency"), row.int64("unit_price_minor"))
        return line
    }

    /// Why a reservation could not take its stock, product by product (read after the failed
    /// statement, so the numbers may have moved since: they explain, they do not decide).
    private func shortage(_ wanted: [String: Int64]) async throws -> RPCError {
        let found = try await db.query(
            "SELECT id::text AS id, name, stock, active FROM products WHERE id = ANY(\(Self.uuidArray("$1")))",
            [jsonText(Array(wanted.keys))]
        ).rows
        let byID = Dictionary(found.map { ($0.text("id"), $0) }, uniquingKeysWith: { a, _ in a })
        for (productID, quantity) in wanted.sorted(by: { $0.key < $1.key }) {
            guard let p = byID[productID] else { return ProductErrors.notFound(productID) }
            if p.bool("active") != true { return ProductErrors.notSold(productID, name: p.text("name")) }
            if p.int64("stock") < quantity {
                return ProductErrors.outOfStock(
                    productID, name: p.text("name"), available: p.int64("stock"), requested: quantity)
            }
        }
        return RPCError(.aborted, "the stock changed while it was being reserved; try again")
    }

    private static func existingReservation(_ orderID: String, _ tx: PostgresConnection) async throws
        -> Shop_V1_ReserveStockResponse
    {
        let r = try await tx.query(
            "SELECT state, \(epochMicros("expires_at", as: "expires")) FROM reservations WHERE order_id = $1", [orderID]
        ).rows[0]
        if r.text("state") == "released" {
            throw RPCError(.failedPrecondition, "the reservation for order \(orderID) was released")
        }
        var response = Shop_V1_ReserveStockResponse()
        response.expireTime = r.micros("expires")
        let lines = try await tx.query(
            """
            SELECT l.product_id::text AS product_id, p.name, l.quantity, l.currency, l.unit_price_minor
            FROM reservation_lines l JOIN products p ON p.id = l.product_id WHERE l.order_id = $1 ORDER BY l.product_id
            """, [orderID]
        ).rows
        response.lines = lines.map(reservedLine)
        return response
    }

    public func commitStock(_ request: Shop_V1_CommitStockRequest, context: ServerContext) async throws
        -> Shop_V1_CommitStockResponse
    {
        try Check.id(request.orderID, "order_id")
        let r = try await db.query(
            """
            UPDATE reservations SET state = 'committed', updated_at = clock_timestamp()
            WHERE order_id = $1 AND state IN ('reserved', 'committed') RETURNING order_id
            """, [request.orderID])
        if r.affectedRows == 1 { return Shop_V1_CommitStockResponse() }
        let found = try await db.query("SELECT state FROM reservations WHERE order_id = $1", [request.orderID]).rows
        if found.isEmpty { throw RPCError(.notFound, "no reservation for order \(request.orderID)") }
        throw RPCError(
            .failedPrecondition,
            "the reservation for order \(request.orderID) was released (or expired) before the commit")
    }

    public func releaseStock(_ request: Shop_V1_ReleaseStockRequest, context: ServerContext) async throws
        -> Shop_V1_ReleaseStockResponse
    {
        try Check.id(request.orderID, "order_id")
        try await db.transaction { tx in
            // Releasing an order never seen leaves a tombstone, so that a reservation still on its
            // way (a retry racing the release) is refused instead of leaking stock.
            _ = try await tx.query(
                """
                INSERT INTO reservations (order_id, state, expires_at) VALUES ($1, 'released', clock_timestamp())
                ON CONFLICT (order_id) DO NOTHING
                """, [request.orderID])
            try await Self.release(orderIDs: "ARRAY[$1::uuid]", [request.orderID], tx)
        }
        return Shop_V1_ReleaseStockResponse()
    }

    /// Returns the units of the given orders' reservations (reserved or committed) to stock.
    static func release(orderIDs: String, _ params: [(any PostgresBindable)?], _ tx: PostgresConnection) async throws {
        _ = try await tx.query(
            """
            WITH released AS (
                UPDATE reservations SET state = 'released', updated_at = clock_timestamp()
                WHERE order_id = ANY(\(orderIDs)) AND state <> 'released' RETURNING order_id),
            units AS (
                SELECT l.product_id, sum(l.quantity) AS quantity FROM reservation_lines l JOIN released r USING (order_id)
                GROUP BY l.product_id)
            UPDATE products p SET stock = p.stock + units.quantity, updated_at = clock_timestamp()
            FROM units WHERE p.id = units.product_id
            """, params)
    }

    /// Releases reservations that expired without a commit; safe to run in several replicas at once.
    /// Returns how many it released.
    @discardableResult
    public func sweepExpiredReservations() async throws -> Int {
        try await db.transaction { tx in
            let expired = try await tx.query(
                """
                SELECT order_id::text AS order_id FROM reservations WHERE state = 'reserved' AND expires_at < clock_timestamp()
                ORDER BY expires_at LIMIT 200 FOR UPDATE SKIP LOCKED
                """
            ).rows.map { $0.text("order_id") }
            if expired.isEmpty { return 0 }
            try await Self.release(orderIDs: Self.uuidArray("$1"), [jsonText(expired)], tx)
            logger.warning("released expired stock reservations", [("count", .int(Int64(expired.count)))])
            return expired.count
        }
    }

    public func watchStock(
        _ request: Shop_V1_WatchStockRequest, responses: RPCWriter<Shop_V1_StockLevel>, context: ServerContext
    ) async throws {
        for id in request.productIDs { try Check.id(id, "product_ids") }
        let ids = jsonText(request.productIDs)
        var last: [String: Int64] = [:]
        while !Task.isCancelled {
            let rows = try await db.query(
                "SELECT id::text AS id, name, stock, active FROM products WHERE id = ANY(\(Self.uuidArray("$1")))",
                [ids]
            ).rows
            if last.isEmpty && rows.isEmpty { throw RPCError(.notFound, "none of the products exist") }
            // A product taken out of the shop ends the watch: its stock no longer means anything.
            if let gone = rows.first(where: { $0.bool("active") != true }) {
                throw ProductErrors.notSold(gone.text("id"), name: gone.text("name"))
            }
            for row in rows where last[row.text("id")] != row.int64("stock") {
                last[row.text("id")] = row.int64("stock")
                var level = Shop_V1_StockLevel()
                level.productID = row.text("id")
                level.stock = row.int64("stock")
                level.time = .now
                try await responses.write(level)
            }
            try await Task.sleep(for: watchInterval)
        }
    }
}
