import BazaarAuth
import BazaarCore
import BazaarPostgres
import BazaarTelemetry
import Foundation
import ShopAPI
import ShopKit

/// The checkout saga and its recovery.
///
/// ```
/// 1. read the cart's lines; reserve and price them    (catalog, idempotent per order id)
/// 2. claim (user, request_id) + order PENDING + items + outbox event: one statement
///    (claimed before: give the reservation back and replay the first attempt's answer)
/// 3. charge (idempotency key = order id)
/// 4a. PAID + event, then commit the stock, then mark it committed; empty the cart
/// 4b. declined: CANCELLED + event, release the stock (the compensation)
/// ```
/// From the order on, every step leaves a record, and the recovery loop finishes any checkout
/// that stopped halfway (a crash, a lost connection): a PENDING order is settled by asking the
/// provider what the charge came to, a paid order's stock is committed, a cancelled one's stock
/// released and payment refunded. Before the order exists only the catalog's reservation does,
/// and it expires. (Claims in state 'started' come from before the claim moved into the order's
/// statement; recovery still releases their reservations.)
extension OrdersService {
    public func placeOrder(_ request: Shop_V1_PlaceOrderRequest, context: ServerContext) async throws -> Shop_V1_Order {
        let user = try UserIdentity.required().subject
        // The request's fields were checked against orders.proto's and common.proto's rules
        // before this handler ran (generated code), so the address is complete and well-formed.
        guard let address = request.shippingAddress else {
            throw RPCError.invalidArgument(
                field: "shipping_address", "shipping_address is required", reason: "REQUIRED")
        }
        // Once money may move, the saga runs to its end even if the caller goes away or its
        // deadline passes: a detached task inherits neither cancellation nor the inbound deadline.
        // It runs where the handler runs (its loop), so its statements and calls need no hop, and
        // under the call's span, so that they stay in the call's trace.
        let span = Span.current
        return try await Task.detached(executorPreference: context.executor) { [self] in
            try await Span.$active.withValue(span) {
                try await checkout(
                    user: user, requestID: request.requestID, address: address, token: request.paymentToken)
            }
        }.value
    }

    func checkout(user: String, requestID: String, address: Shop_V1_Address, token: String) async throws
        -> Shop_V1_Order
    {
        let orderID = UUID().uuidString.lowercased()
        var reserved: Shop_V1_ReserveStockResponse?
        let total: Int64
        let currency: String
        let lines: [Shop_V1_ReservedLine]
        do {
            let cart = try await self.cart.getCartForUser(Shop_V1_GetCartForUserRequest(userID: user))
            guard !cart.items.isEmpty else { throw RPCError(.failedPrecondition, "the cart is empty") }
            let wanted = cart.items.map { Shop_V1_StockLine(productID: $0.productID, quantity: $0.quantity) }
            do {
                reserved = try await catalog.reserveStock(Shop_V1_ReserveStockRequest(orderID: orderID, lines: wanted))
            } catch {
                // The reservation may have happened before the error: undo it (a no-op otherwise).
                _ = try? await catalog.releaseStock(Shop_V1_ReleaseStockRequest(orderID: orderID))
                throw error
            }
            lines = reserved!.lines
            currency = lines.first?.unitPrice?.currencyCode ?? ""
            guard lines.allSatisfy({ $0.unitPrice?.currencyCode == currency }) else {
                throw RPCError(.failedPrecondition, "the cart mixes currencies; one order is paid in one currency")
            }
            // Prices come from the catalog's reservation, never from the client or the cart.
            total = try MoneyMath.total(lines.map { ($0.quantity, $0.unitPrice?.amountMinor ?? 0) })
            guard
                try await place(
                    orderID, user: user, requestID: requestID, address: address, currency: currency, total: total,
                    lines: lines)
            else {
                // The request id was claimed first by another attempt: give this reservation back and
                // answer as that attempt does.
                _ = try? await catalog.releaseStock(Shop_V1_ReleaseStockRequest(orderID: orderID))
                return try await replay(user: user, requestID: requestID)
            }
        } catch {
            // Another attempt with this request id may have placed its order meanwhile (and emptied
            // the cart, which is why this one failed): then its answer is this one's too.
            if try await abandon(orderID, user: user, requestID: requestID, reserved: reserved != nil, error) {
                return try await replay(user: user, requestID: requestID)
            }
            throw error
        }
        return try await settle(
            orderID, user: user, amount: total, currency: currency, token: token,
            placed: PlacedOrder(user: user, address: address, currency: currency, total: total, lines: lines))
    }

    /// What the checkout inserted, so that its answer needs no read back.
    struct PlacedOrder: Sendable {
        var user: String
        var address: Shop_V1_Address
        var currency: String
        var total: Int64
        var lines: [Shop_V1_ReservedLine]

        func items() throws -> [Shop_V1_OrderItem] {
            try lines.map { line in
                var item = Shop_V1_OrderItem()
                item.productID = line.productID
                item.productName = line.productName
                item.quantity = line.quantity
                item.unitPrice = Shop_V1_Money(currency, line.unitPrice?.amountMinor ?? 0)
                item.lineTotal = Shop_V1_Money(
                    currency, try MoneyMath.line(line.quantity, line.unitPrice?.amountMinor ?? 0))
                return item
            }
        }
    }

    /// The idempotency claim, the order, its items and its `order.placed` event: one statement, so
    /// one round trip and one commit. False when (user, request id) was claimed before: nothing is
    /// written then. (A crash before this leaves at most a stock reservation without an order,
    /// which the catalog's sweep returns when it expires.)
    private func place(
        _ orderID: String, user: String, requestID: String, address: Shop_V1_Address, currency: String, total: Int64,
        lines: [Shop_V1_ReservedLine]
    ) async throws -> Bool {
        let items = lines.enumerated().map { n, line -> [String: Any] in
            [
                "line": n + 1, "product_id": line.productID, "product_name": line.productName,
                "quantity": line.quantity, "unit_price_minor": line.unitPrice?.amountMinor ?? 0,
            ]
        }
        let itemsJSON = String(
            decoding: try JSONSerialization.data(withJSONObject: items, options: [.sortedKeys]), as: UTF8.self)
        let row = try await db.query(
            """
            WITH claim AS (
                INSERT INTO checkouts (user_id, request_id, order_id, state) VALUES ($1::uuid, $2, $3::uuid, 'ordered')
                ON CONFLICT (user_id, request_id) DO NOTHING RETURNING order_id),
            placed AS (
                INSERT INTO orders (id, user_id, status, currency, total_minor, shipping_address)
                SELECT order_id, $1::uuid, 'PENDING', $4, $5, $6::jsonb FROM claim
                RETURNING id, user_id, total_minor, currency),
            items AS (
                INSERT INTO order_items (order_id, line, product_id, product_name, quantity, unit_price_minor)
                SELECT p.id, x.line, x.product_id::uuid, x.product_name, x.quantity, x.unit_price_minor
                FROM placed p, jsonb_to_recordset($7::jsonb)
                    AS x(line integer, product_id text, product_name text, quantity bigint, unit_price_minor bigint)),
            event AS (
                INSERT INTO outbox (order_id, type, payload)
                SELECT id, 'order.placed', \(Self.eventPayload) FROM placed)
            SELECT count(*) AS placed FROM placed
            """, [user, requestID, orderID, currency, total, Self.addressJSON(address), itemsJSON]
        ).rows.first
        return row?.int64("placed") == 1
    }

    /// Nothing was charged and no order exists. A final answer (empty cart, out of stock) is kept
    /// under the request id; after a transient one nothing is kept, so that a retry starts afresh.
    /// A reservation is given back (if that fails too, the catalog's sweep returns it on expiry).
    /// Returns true when the request id was claimed by another attempt (answer with its outcome).
    private func abandon(_ orderID: String, user: String, requestID: String, reserved: Bool, _ error: any Error)
        async throws -> Bool
    {
        let status = RPCError(error)
        if reserved { _ = try? await catalog.releaseStock(Shop_V1_ReleaseStockRequest(orderID: orderID)) }
        if [.failedPrecondition, .notFound, .invalidArgument, .outOfRange].contains(status.code) {
            let recorded = try await db.query(
                """
                INSERT INTO checkouts (user_id, request_id, order_id, state, error_code, error_message)
                VALUES ($1::uuid, $2, $3::uuid, 'failed', $4, $5) ON CONFLICT (user_id, request_id) DO NOTHING
                """, [user, requestID, orderID, Int(status.code.rawValue), status.message])
            return recorded.affectedRows == 0
        }
        return try await !db.query(
            "SELECT 1 FROM checkouts WHERE user_id = $1::uuid AND request_id = $2", [user, requestID]
        ).rows.isEmpty
    }

    /// Steps 3 and 4: charge, then either complete or compensate. The answer is built from what
    /// was written (`placed` and the final statement's row), not read back.
    func settle(
        _ orderID: String, user: String, amount: Int64, currency: String, token: String, placed: PlacedOrder
    ) async throws -> Shop_V1_Order {
        var outcome: ChargeOutcome?
        do {
            outcome = try await payments.charge(key: orderID, amountMinor: amount, currency: currency, token: token)
        } catch {
            // Unknown outcome: ask once more; if the provider has no record, nothing was charged.
            outcome = try? await payments.lookup(key: orderID)
            if outcome == nil {
                _ = try await cancel(
                    orderID, from: [.pending], reason: "the payment could not be taken: provider unavailable")
                try await failCheckout(
                    orderID, RPCError(.unavailable, "the payment provider is unavailable; the order was cancelled"))
                try await finishCancellation(orderID)
                throw RPCError(.unavailable, "the payment provider is unavailable; the order was cancelled")
            }
        }
        let final: PostgresRow?
        switch outcome! {
        case .succeeded(let chargeID):
            final = try await complete(orderID, chargeID: chargeID)
            do {
                _ = try await cart.clearCartForUser(Shop_V1_ClearCartForUserRequest(userID: user))
            } catch {
                logger.warning(
                    "order placed but the cart was not emptied",
                    [("order_id", .string(orderID)), ("error", .string("\(RPCError(error).code)"))])
            }
            logger.info("order placed", [("order_id", .string(orderID)), ("total_minor", .int(amount))])
        case .declined(let reason):
            let error = RPCError(
                .failedPrecondition, "payment declined: \(reason); the order was cancelled",
                details: [
                    .errorInfo(
                        ErrorInfo(
                            reason: "PAYMENT_DECLINED", domain: "orders.shop.bazaar",
                            metadata: ["order_id": orderID, "decline_reason": reason])),
                    .resourceInfo(ResourceInfo(type: "shop.v1.Order", name: orderID, description: "cancelled")),
                ])
            _ = try await cancel(orderID, from: [.pending], reason: "payment declined: \(reason)")
            try await failCheckout(orderID, error)
            try await finishCancellation(orderID)
            throw error
        }
        if let final { return Self.order(final, items: try placed.items()) }
        guard let order = try await order(orderID) else { throw RPCError(.internal, "order \(orderID) vanished") }
        return order
    }

    /// A successful charge: PAID, then the stock committed. If the order was cancelled meanwhile
    /// (the recovery loop gave up on it), the charge is refunded instead. Returns the order's row
    /// (``orderColumns``) as the last statement left it, when this call completed it.
    @discardableResult
    func complete(_ orderID: String, chargeID: String) async throws -> PostgresRow? {
        let paid = try await transition(orderID, from: .pending, to: .paid, paymentID: chargeID)
        if !paid {
            guard let now = try await order(orderID) else { return nil }
            if now.status == .cancelled {
                _ = try await db.query(
                    """
                    UPDATE orders SET payment_id = $2, refund_state = 'pending', updated_at = clock_timestamp()
                    WHERE id = $1::uuid AND payment_id IS NULL
                    """, [orderID, chargeID])
                try await finishCancellation(orderID)
                throw RPCError(.aborted, "the checkout took too long and was cancelled; the payment was refunded")
            }
        }
        do {
            _ = try await catalog.commitStock(Shop_V1_CommitStockRequest(orderID: orderID))
            // The order's stock and its checkout record are final together (one statement), which
            // returns the order as it now is. A relaxed commit: if a crash loses it, the order is
            // PAID with its stock still 'reserved', and the recovery loop commits it again (the
            // catalog's commit is idempotent).
            return try await relaxed.query(
                """
                WITH done AS (UPDATE checkouts SET state = 'done', updated_at = clock_timestamp() WHERE order_id = $1::uuid)
                UPDATE orders SET stock_state = 'committed', updated_at = clock_timestamp() WHERE id = $1::uuid
                RETURNING \(Self.orderColumns)
                """, [orderID]
            ).rows.first
        } catch let e as RPCError where e.code == .failedPrecondition || e.code == .notFound {
            // The reservation expired before the payment went through: give the money back.
            _ = try await cancel(orderID, from: [.paid], reason: "the stock reservation expired")
            try await finishCancellation(orderID)
            throw RPCError(
                .aborted, "the stock reservation expired before payment; the order was cancelled and refunded")
        }
    }

    private func failCheckout(_ orderID: String, _ error: RPCError) async throws {
        _ = try await db.query(
            """
            UPDATE checkouts SET state = 'failed', error_code = $2, error_message = $3, updated_at = clock_timestamp() WHERE order_id = $1::uuid
            """, [orderID, Int(error.code.rawValue), error.message])
    }

    /// A request id seen before: the same answer as the first time, without charging again.
    private func replay(user: String, requestID: String) async throws -> Shop_V1_Order {
        guard
            let c = try await db.query(
                """
                SELECT order_id::text AS order_id, state, COALESCE(error_code, 0) AS error_code, COALESCE(error_message, '') AS error_message
                FROM checkouts WHERE user_id = $1::uuid AND request_id = $2
                """, [user, requestID]
            ).rows.first
        else { throw RPCError(.aborted, "the checkout with this request_id was abandoned; try again") }
        if c.text("state") == "failed" {
            throw RPCError(StatusCode(rawValue: Int(c.int64("error_code"))) ?? .unknown, c.text("error_message"))
        }
        if let order = try await order(c.text("order_id")) { return order }
        throw RPCError(.aborted, "a checkout with this request_id is in progress; try again shortly")
    }

    // MARK: recovery

    /// Finishes checkouts and cancellations that stopped halfway, untouched for `recoverAfter`.
    /// Safe in several replicas at once: every step is conditional or idempotent. Returns how many
    /// orders or claims it acted on.
    @discardableResult
    public func recover() async throws -> Int {
        let age =
            Double(settings.recoverAfter.components.seconds) + Double(settings.recoverAfter.components.attoseconds)
            / 1e18
        var acted = 0
        // A claim that never became an order: release whatever the catalog may have reserved.
        for row in try await db.query(
            """
            SELECT c.order_id::text AS order_id FROM checkouts c LEFT JOIN orders o ON o.id = c.order_id
            WHERE c.state = 'started' AND c.updated_at < clock_timestamp() - make_interval(secs => $1) AND o.id IS NULL LIMIT 100
            """, [age]
        ).rows {
            let id = row.text("order_id")
            _ = try await catalog.releaseStock(Shop_V1_ReleaseStockRequest(orderID: id))
            try await failCheckout(id, RPCError(.aborted, "the checkout was interrupted; place the order again"))
            acted += 1
        }
        let stuck = try await db.query(
            """
            SELECT id::text AS id, status, stock_state, refund_state FROM orders
            WHERE (status = 'PENDING' OR (status = 'PAID' AND stock_state = 'reserved')
                   OR (status = 'CANCELLED' AND (stock_state <> 'released' OR refund_state = 'pending')))
              AND updated_at < clock_timestamp() - make_interval(secs => $1)
            ORDER BY updated_at LIMIT 100
            """, [age]
        ).rows
        for row in stuck {
            let id = row.text("id")
            do {
                switch row.text("status") {
                case "PENDING":
                    switch try await payments.lookup(key: id) {
                    case .succeeded(let chargeID):
                        try await complete(id, chargeID: chargeID)
                        if let user = try await order(id)?.userID {
                            _ = try? await cart.clearCartForUser(Shop_V1_ClearCartForUserRequest(userID: user))
                        }
                    case .declined(let reason):
                        _ = try await cancel(id, from: [.pending], reason: "payment declined: \(reason)")
                        try await failCheckout(
                            id, RPCError(.failedPrecondition, "payment declined: \(reason); the order was cancelled"))
                        try await finishCancellation(id)
                    case nil:
                        _ = try await cancel(
                            id, from: [.pending], reason: "the checkout was interrupted before payment")
                        try await failCheckout(
                            id,
                            RPCError(.aborted, "the checkout was interrupted before payment; the order was cancelled"))
                        try await finishCancellation(id)
                    }
                case "PAID":
                    guard let chargeID = try await order(id)?.paymentID else { continue }
                    try await complete(id, chargeID: chargeID)
                default:
                    try await finishCancellation(id)
                }
                logger.info(
                    "recovered an interrupted order",
                    [("order_id", .string(id)), ("status_was", .string(row.text("status")))])
                acted += 1
            } catch {
                logger.warning(
                    "recovery of an order failed; will try again",
                    [("order_id", .string(id)), ("error", .string("\(RPCError(error).message)"))])
            }
        }
        return acted
    }
}
