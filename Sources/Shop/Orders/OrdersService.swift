import BazaarAuth
import BazaarCore
import BazaarPostgres
import BazaarTelemetry
import Foundation
import ShopAPI
import ShopKit
import WellKnownTypes

/// `shop.v1.OrdersService` on PostgreSQL. The checkout saga and its recovery are in
/// `Checkout.swift`; the outbox relay in `OutboxRelay.swift`.
public final class OrdersService: Shop_V1_OrdersService.ServiceProtocol {
    public struct Settings: Sendable {
        /// A checkout step untouched this long is taken over by the recovery loop (longer than any
        /// live checkout takes: its deadline is 5 s).
        public var recoverAfter: Duration = .seconds(30)
        public var watchInterval: Duration = .milliseconds(250)
        public init() {}
    }

    public let db: PostgresPool
    /// The same database without waiting for the disk at commit: for the records a crash may
    /// lose because the recovery loop rebuilds them (the stock-committed mark). Defaults to `db`.
    public let relaxed: PostgresPool
    public let catalog: Shop_V1_CatalogService.Client
    public let cart: Shop_V1_CartService.Client
    public let payments: any PaymentProvider
    public let logger: Logger
    public let settings: Settings

    public init(
        db: PostgresPool, catalog: Shop_V1_CatalogService.Client, cart: Shop_V1_CartService.Client,
        payments: any PaymentProvider, logger: Logger, settings: Settings = Settings(), relaxed: PostgresPool? = nil
    ) {
        self.db = db
        self.relaxed = relaxed ?? db
        self.catalog = catalog
        self.cart = cart
        self.payments = payments
        self.logger = logger
        self.settings = settings
    }

    // MARK: reading orders

    static let orderColumns = """
        id::text AS id, user_id::text AS user_id, status, currency, total_minor, shipping_address::text AS address,
        COALESCE(payment_id, '') AS payment_id, cancel_reason, created_at::text AS created_text,
        \(epochMicros("created_at", as: "created")), \(epochMicros("updated_at", as: "updated"))
        """

    /// Orders from rows of ``orderColumns``, with their items (one more query for all of them).
    func orders(_ rows: [PostgresRow], _ c: PostgresConnection? = nil) async throws -> [Shop_V1_Order] {
        if rows.isEmpty { return [] }
        let ids = jsonText(rows.map { $0.text("id") })
        let sql = """
            SELECT order_id::text AS order_id, product_id::text AS product_id, product_name, quantity, unit_price_minor
            FROM order_items WHERE order_id = ANY(ARRAY(SELECT jsonb_array_elements_text($1::jsonb))::uuid[]) ORDER BY order_id, line
            """
        let itemRows: [PostgresRow]
        if let c {
            itemRows = try await c.query(sql, [ids]).rows
        } else {
            itemRows = try await db.query(sql, [ids]).rows
        }
        var items: [String: [Shop_V1_OrderItem]] = [:]
        let currency = Dictionary(rows.map { ($0.text("id"), $0.text("currency")) }, uniquingKeysWith: { a, _ in a })
        for r in itemRows {
            let cur = currency[r.text("order_id")] ?? ""
            var item = Shop_V1_OrderItem()
            item.productID = r.text("product_id")
            item.productName = r.text("product_name")
            item.quantity = r.int64("quantity")
            item.unitPrice = Shop_V1_Money(cur, r.int64("unit_price_minor"))
            item.lineTotal = Shop_V1_Money(cur, try MoneyMath.line(r.int64("quantity"), r.int64("unit_price_minor")))
            items[r.text("order_id"), default: []].append(item)
        }
        return rows.map { Self.order($0, items: items[$0.text("id")] ?? []) }
    }

    /// An order from a row of ``orderColumns`` and its items.
    static func order(_ row: PostgresRow, items: [Shop_V1_OrderItem]) -> Shop_V1_Order {
        var o = Shop_V1_Order()
        o.id = row.text("id")
        o.userID = row.text("user_id")
        o.status = OrderLifecycle.status(named: row.text("status"))
        o.total = Shop_V1_Money(row.text("currency"), row.int64("total_minor"))
        o.shippingAddress = Self.address(json: row.text("address"))
        o.paymentID = row.text("payment_id")
        o.cancelReason = row.text("cancel_reason")
        o.createTime = row.micros("created")
        o.updateTime = row.micros("updated")
        o.items = items
        return o
    }

    func order(_ id: String) async throws -> Shop_V1_Order? {
        try await orders(try await db.query("SELECT \(Self.orderColumns) FROM orders WHERE id = $1::uuid", [id]).rows)
            .first
    }

    /// The order if the caller may see it: its owner or an admin. Anyone else gets NOT_FOUND, so
    /// order ids cannot be probed.
    func visibleOrder(_ id: String) async throws -> Shop_V1_Order {
        let me = try UserIdentity.required()
        try Check.id(id, "id")
        guard let o = try await order(id), o.userID == me.subject || me.isAdmin else {
            throw RPCError(.notFound, "no order \(id)")
        }
        return o
    }

    static func addressJSON(_ a: Shop_V1_Address) -> String {
        let object: [String: Any] = [
            "recipient": a.recipient, "lines": a.lines, "city": a.city, "postal_code": a.postalCode,
            "country_code": a.countryCode,
        ]
        guard let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]) else {
            return "{}"
        }
        return String(decoding: data, as: UTF8.self)
    }

    static func address(json: String) -> Shop_V1_Address {
        var a = Shop_V1_Address()
        guard let data = json.data(using: .utf8),
            let o = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
        else { return a }
        a.recipient = o["recipient"] as? String ?? ""
        a.lines = o["lines"] as? [String] ?? []
        a.city = o["city"] as? String ?? ""
        a.postalCode = o["postal_code"] as? String ?? ""
        a.countryCode = o["country_code"] as? String ?? ""
        return a
    }

    public func getOrder(_ request: Shop_V1_GetOrderRequest, context: ServerContext) async throws -> Shop_V1_Order {
        try await visibleOrder(request.id)
    }

    public func listOrders(_ request: Shop_V1_ListOrdersRequest, context: ServerContext) async throws
        -> Shop_V1_ListOrdersResponse
    {
        try await list(request, user: try UserIdentity.required().subject)
    }

    public func listAllOrders(_ request: Shop_V1_ListOrdersRequest, context: ServerContext) async throws
        -> Shop_V1_ListOrdersResponse
    {
        try await list(request, user: nil)
    }

    private func list(_ request: Shop_V1_ListOrdersRequest, user: String?) async throws -> Shop_V1_ListOrdersResponse {
        let size = try PageToken.size(request.page)
        var conditions: [String] = []
        var params: [(any PostgresBindable)?] = []
        if let user {
            params.append(user)
            conditions.append("user_id = $\(params.count)::uuid")
        }
        switch request.status {
        case .unspecified: break
        case .unrecognized: throw RPCError(.invalidArgument, "status is not a known OrderStatus")
        default:
            params.append(OrderLifecycle.name(request.status))
            conditions.append("status = $\(params.count)")
        }
        if let c = try PageToken.decode(request.page?.pageToken, count: 2) {
            guard Check.isID(c[1]) else {
                throw RPCError(.invalidArgument, "page.page_token is not a token this service issued")
            }
            params += [c[0], c[1]]
            conditions.append("(created_at, id) < ($\(params.count - 1)::timestamptz, $\(params.count)::uuid)")
        }
        let whereClause = conditions.isEmpty ? "" : "WHERE " + conditions.joined(separator: " AND ")
        let rows = try await db.query(
            "SELECT \(Self.orderColumns) FROM orders \(whereClause) ORDER BY created_at DESC, id DESC LIMIT \(size + 1)",
            params
        ).rows
        var response = Shop_V1_ListOrdersResponse()
        response.orders = try await orders(Array(rows.prefix(size)))
        if rows.count > size, let last = rows.prefix(size).last {
            response.nextPageToken = PageToken.encode([last.text("created_text"), last.text("id")])
        }
        return response
    }

    /// Sends the order as it is, then once per status change until it is delivered or cancelled.
    /// Changes come from the order's outbox events, in commit order, so none is skipped even
    /// when several happen between two polls (polling the order itself would coalesce them).
    public func watchOrder(
        _ request: Shop_V1_WatchOrderRequest, responses: RPCWriter<Shop_V1_Order>, context: ServerContext
    ) async throws {
        // The event cursor is read before the order, so a change in between is seen twice at
        // worst (and then written once: only a different status is written).
        try Check.id(request.id, "id")
        var cursor = try await db.query(
            "SELECT COALESCE(max(id), 0) AS id FROM outbox WHERE order_id = $1::uuid", [request.id]
        ).rows[0].int64("id")
        var order = try await visibleOrder(request.id)
        try await responses.write(order)
        var status = order.status
        while !OrderLifecycle.isFinal(status) {
            try await Task.sleep(for: settings.watchInterval)
            let events = try await db.query(
                "SELECT id, type FROM outbox WHERE order_id = $1::uuid AND id > $2 ORDER BY id",
                [request.id, cursor]
            ).rows
            guard let lastEvent = events.last else { continue }
            cursor = lastEvent.int64("id")
            let latest = try await self.order(request.id) ?? order
            for event in events {
                let next = OrderLifecycle.status(named: event.text("type").dropFirst("order.".count).uppercased())
                guard next != .unspecified, next != status else { continue }
                order = latest
                order.status = next
                try await responses.write(order)
                status = next
                if OrderLifecycle.isFinal(status) { break }
            }
        }
    }

    // MARK: changing status

    public func cancelOrder(_ request: Shop_V1_CancelOrderRequest, context: ServerContext) async throws -> Shop_V1_Order
    {
        let me = try UserIdentity.required()
        let order = try await visibleOrder(request.id)
        try Check.text(request.reason, "reason", max: 500, required: false, multiline: true)
        if order.status == .cancelled { return order }
        if let refusal = OrderLifecycle.refusal(from: order.status, to: .cancelled, by: me.isAdmin ? .admin : .customer)
        {
            throw refusal
        }
        let reason = request.reason.isEmpty ? "cancelled by the customer" : request.reason
        guard try await cancel(order.id, from: [order.status], reason: reason) else {
            // It moved on meanwhile (shipped, or cancelled by someone else): answer from what it is now.
            let now = try await visibleOrder(request.id)
            if now.status == .cancelled { return now }
            throw OrderLifecycle.refusal(from: now.status, to: .cancelled, by: .customer)
                ?? RPCError(.aborted, "the order changed; try again")
        }
        try await finishCancellation(order.id)
        return try await visibleOrder(request.id)
    }

    public func updateOrderStatus(_ request: Shop_V1_UpdateOrderStatusRequest, context: ServerContext) async throws
        -> Shop_V1_Order
    {
        let order = try await visibleOrder(request.id)
        if case .unrecognized = request.status { throw RPCError(.invalidArgument, "status is not a known OrderStatus") }
        try Check.that(request.status != .unspecified, field: "status", reason: "REQUIRED", "status is required")
        if order.status == request.status { return order }
        if let refusal = OrderLifecycle.refusal(from: order.status, to: request.status, by: .admin) { throw refusal }
        if request.status == .cancelled {
            _ = try await cancel(order.id, from: [order.status], reason: "cancelled by the shop")
            try await finishCancellation(order.id)
        } else {
            let moved = try await transition(order.id, from: order.status, to: request.status)
            if !moved { throw RPCError(.aborted, "the order changed meanwhile; read it and try again") }
        }
        return try await visibleOrder(request.id)
    }

    /// Moves an order if it is still in `from`, with its event, in one transaction. False when it
    /// was not in `from` (someone else moved it first).
    func transition(_ id: String, from: Shop_V1_OrderStatus, to: Shop_V1_OrderStatus, paymentID: String? = nil)
        async throws -> Bool
    {
        // One statement (atomic by itself): one round trip instead of BEGIN, UPDATE, INSERT, COMMIT.
        let row = try await db.query(
            """
            WITH moved AS (
                UPDATE orders SET status = $3, payment_id = COALESCE($4, payment_id), updated_at = clock_timestamp()
                WHERE id = $1::uuid AND status = $2 RETURNING id, user_id, total_minor, currency),
            event AS (INSERT INTO outbox (order_id, type, payload) SELECT id, $5, \(Self.eventPayload) FROM moved)
            SELECT count(*) AS moved FROM moved
            """,
            [
                id, OrderLifecycle.name(from), OrderLifecycle.name(to), paymentID,
                "order.\(OrderLifecycle.name(to).lowercased())",
            ]
        ).rows.first
        return row?.int64("moved") == 1
    }

    /// An event's payload, in SQL, from a row with `id`, `user_id`, `total_minor` and `currency`:
    /// every value a string, as consumers read them.
    static let eventPayload = """
        jsonb_build_object('order_id', id::text, 'user_id', user_id::text, 'total_minor', total_minor::text, 'currency', currency::text)
        """

    /// Cancels an order still in one of `from`: status, refund owed (when it was paid) and the
    /// event in one statement. ``finishCancellation(_:)`` then refunds and releases the stock.
    func cancel(_ id: String, from: [Shop_V1_OrderStatus], reason: String) async throws -> Bool {
        let row = try await db.query(
            """
            WITH moved AS (
                UPDATE orders SET status = 'CANCELLED', cancel_reason = $3, updated_at = clock_timestamp(),
                    refund_state = CASE WHEN payment_id IS NOT NULL THEN 'pending' ELSE refund_state END
                WHERE id = $1::uuid AND status = ANY(ARRAY(SELECT jsonb_array_elements_text($2::jsonb)))
                RETURNING id, user_id, total_minor, currency),
            event AS (
                INSERT INTO outbox (order_id, type, payload)
                SELECT id, 'order.cancelled', \(Self.eventPayload) || jsonb_build_object('reason', $3::text) FROM moved)
            SELECT count(*) AS moved FROM moved
            """, [id, jsonText(from.map(OrderLifecycle.name)), reason]
        ).rows.first
        return row?.int64("moved") == 1
    }

    /// The compensation of a cancelled order: refund what was charged, return the stock. Each step
    /// is idempotent and recorded, so the recovery loop can repeat it after a crash.
    func finishCancellation(_ id: String) async throws {
        let row = try await db.query(
            "SELECT COALESCE(payment_id, '') AS payment_id, refund_state, stock_state FROM orders WHERE id = $1::uuid",
            [id]
        ).rows.first
        guard let row else { return }
        if row.text("refund_state") == "pending" {
            try await payments.refund(chargeID: row.text("payment_id"))
            _ = try await db.query(
                "UPDATE orders SET refund_state = 'refunded', updated_at = clock_timestamp() WHERE id = $1::uuid", [id])
            logger.info("payment refunded", [("order_id", .string(id))])
        }
        if row.text("stock_state") != "released" {
            _ = try await catalog.releaseStock(Shop_V1_ReleaseStockRequest(orderID: id))
            _ = try await db.query(
                "UPDATE orders SET stock_state = 'released', updated_at = clock_timestamp() WHERE id = $1::uuid", [id])
        }
    }
}
