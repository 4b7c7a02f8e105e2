import BazaarCore
import Foundation
import ShopAPI

/// The cart, the checkout, the orders (with their live status) and the notifications of the
/// signed-in shopper.
struct ShoppingPages: Sendable {
    let app: WebApp
    let visit: Visit

    var form: FormData { visit.form }
    var routes: Routes { Routes(app: app, visit: visit) }

    // MARK: cart

    func cartPage() async throws -> WebResponse {
        guard visit.user != nil else {
            return .page(
                200,
                Pages.layout(
                    title: "Your cart",
                    """
                    <h1>Your cart</h1>
                    <p><a href="/signin?next=/cart">Sign in</a> or <a href="/signup">create an account</a> to fill a cart.</p>
                    """, visit: visit))
        }
        let cart = try await app.cart.getCart(Shop_V1_GetCartRequest(), options: visit.options)
        guard !cart.items.isEmpty else {
            return .page(
                200,
                Pages.layout(
                    title: "Your cart",
                    "<h1>Your cart</h1><p class=\"empty\">Your cart is empty. <a href=\"/search\">Find something</a>.</p>",
                    visit: visit))
        }
        let rows = cart.items.map { item -> HTML in
            let link = "/products/\(URLText.component(item.productID))"
            let field = "qty-\(item.productID)"
            return """
                <tr>
                <th scope="row"><a href="\(url: link)">\(item.productName)</a></th>
                <td class="num">\(Money.text(item.unitPrice))</td>
                <td>
                <form method="post" action="/cart/set" class="inline">\(visit.csrfField)
                <input type="hidden" name="product_id" value="\(item.productID)">
                <label for="\(field)" class="visually-hidden">Quantity of \(item.productName)</label>
                <input id="\(field)" name="quantity" type="number" min="0" max="99" value="\(item.quantity)" class="qty">
                <button type="submit" class="secondary">Update</button>
                </form>
                </td>
                <td class="num">\(Money.text(Self.times(item.unitPrice, item.quantity)))</td>
                <td>
                <form method="post" action="/cart/remove" class="inline">\(visit.csrfField)
                <input type="hidden" name="product_id" value="\(item.productID)">
                <button type="submit" class="link" aria-label="Remove \(item.productName)">Remove</button>
                </form>
                </td>
                </tr>
                """
        }
        return .page(
            200,
            Pages.layout(
                title: "Your cart",
                """
                <h1>Your cart</h1>
                <div class="scroll"><table class="lines">
                <thead><tr><th scope="col">Product</th><th scope="col" class="num">Price</th><th scope="col">Quantity</th><th scope="col" class="num">Total</th><th scope="col"><span class="visually-hidden">Remove</span></th></tr></thead>
                <tbody>\(rows)</tbody>
                <tfoot><tr><th scope="row" colspan="3">Subtotal</th><td class="num" id="subtotal">\(Money.text(cart.subtotal))</td><td></td></tr></tfoot>
                </table></div>
                <p><a class="button" href="/checkout">Check out</a></p>
                """, visit: visit))
    }

    static func times(_ m: Shop_V1_Money?, _ n: Int64) -> Shop_V1_Money? {
        guard var m else { return nil }
        m.amountMinor *= n
        return m
    }

    func changeCart(_ action: String) async throws -> WebResponse {
        let product = try form.text("product_id", "The product", max: 64)
        guard visit.user != nil else {
            return .redirect("/signin" + URLText.query([("next", "/products/\(URLText.component(product))")]))
        }
        switch action {
        case "add":
            let n = try form.integer("quantity", "The quantity", 1...99)
            _ = try await app.cart.addItem(
                Shop_V1_AddItemRequest(productID: product, quantity: n), options: visit.options)
        case "set":
            let n = try form.integer("quantity", "The quantity", 0...99)
            if n == 0 {
                _ = try await app.cart.removeItem(Shop_V1_RemoveItemRequest(productID: product), options: visit.options)
            } else {
                _ = try await app.cart.setItemQuantity(
                    Shop_V1_SetItemQuantityRequest(productID: product, quantity: n), options: visit.options)
            }
        default:
            _ = try await app.cart.removeItem(Shop_V1_RemoveItemRequest(productID: product), options: visit.options)
        }
        return .redirect("/cart")
    }

    // MARK: checkout

    /// The test payment provider's cards (see Payments.swift in Orders): the checkout offers
    /// them by name, as a real provider's card form would hand over a token.
    static let cards: [(token: String, label: String)] = [
        ("tok_visa", "Test card ending 4242 (approved)"), ("tok_declined", "Test card ending 0002 (declined)"),
    ]

    func checkoutPage(problem: String? = nil, status: Int = 200) async throws -> WebResponse {
        guard visit.user != nil else { return routes.signInFirst() }
        let cart = try await app.cart.getCart(Shop_V1_GetCartRequest(), options: visit.options)
        guard !cart.items.isEmpty else { return .redirect("/cart") }
        let lines = cart.items.map { item -> HTML in
            "<li>\(item.quantity) × \(item.productName) <span class=\"num\">\(Money.text(Self.times(item.unitPrice, item.quantity)))</span></li>"
        }
        let chosen = form["payment"] ?? Self.cards[0].token
        let cards = Self.cards.map { c -> HTML in
            let id = "pay-\(c.token)"
            return c.token == chosen
                ? "<li><input type=\"radio\" id=\"\(id)\" name=\"payment\" value=\"\(c.token)\" checked> <label for=\"\(id)\">\(c.label)</label></li>"
                : "<li><input type=\"radio\" id=\"\(id)\" name=\"payment\" value=\"\(c.token)\"> <label for=\"\(id)\">\(c.label)</label></li>"
        }
        let name = form["recipient"] ?? visit.user?.displayName ?? ""
        func field(_ id: String, _ label: String, _ autocomplete: String, required: Bool = true, size: Int = 100)
            -> HTML
        {
            required
                ? "<label for=\"\(id)\">\(label)</label><input id=\"\(id)\" name=\"\(id)\" autocomplete=\"\(autocomplete)\" maxlength=\"\(size)\" value=\"\(id == "recipient" ? name : form[id] ?? "")\" required>"
                : "<label for=\"\(id)\">\(label)</label><input id=\"\(id)\" name=\"\(id)\" autocomplete=\"\(autocomplete)\" maxlength=\"\(size)\" value=\"\(form[id] ?? "")\">"
        }
        // A new id per checkout page, kept when the form comes back: submitting twice (a double
        // click, a reload) places one order.
        let requestID = form["request_id"].flatMap { UUID(uuidString: $0)?.uuidString } ?? UUID().uuidString
        return .page(
            status,
            Pages.layout(
                title: "Checkout",
                """
                <h1>Checkout</h1>
                \(Pages.problem(problem))
                <div class="checkout">
                <section class="panel" aria-labelledby="summary"><h2 id="summary">Your order</h2>
                <ul class="summary">\(lines)</ul>
                <p>Total <strong>\(Money.text(cart.subtotal))</strong></p>
                </section>
                <form method="post" action="/checkout" class="stack panel">\(visit.csrfField)
                <input type="hidden" name="request_id" value="\(requestID.lowercased())">
                <fieldset><legend>Shipping address</legend>
                \(field("recipient", "Recipient", "name"))
                \(field("line1", "Street and number", "address-line1"))
                \(field("line2", "More address (optional)", "address-line2", required: false))
                \(field("city", "City", "address-level2"))
                \(field("postal_code", "Postal code", "postal-code", size: 20))
                \(field("country", "Country code (two letters, e.g. DE)", "country", size: 2))
                </fieldset>
                <fieldset><legend>Payment</legend><ul class="plain">\(cards)</ul></fieldset>
                <button type="submit">Place order</button>
                </form>
                </div>
                """, visit: visit), cache: "no-store")
    }

    func checkout() async throws -> WebResponse {
        guard visit.user != nil else { return routes.signInFirst() }
        var address = Shop_V1_Address()
        let country: String
        do {
            address.recipient = try form.text("recipient", "The recipient", max: 100)
            address.lines = [try form.text("line1", "The street", max: 200)]
            let line2 = try form.text("line2", "The second address line", max: 200, required: false)
            if !line2.isEmpty { address.lines.append(line2) }
            address.city = try form.text("city", "The city", max: 100)
            address.postalCode = try form.text("postal_code", "The postal code", max: 20)
            country = try form.text("country", "The country code", max: 2).uppercased()
            guard country.count == 2, country.allSatisfy({ $0.isASCII && $0.isLetter }) else {
                throw FormProblem("The country code is two letters, like DE or US.")
            }
        } catch let e as FormProblem {
            return try await checkoutPage(problem: e.message, status: 400)
        }
        address.countryCode = country
        let payment = form["payment"] ?? ""
        guard Self.cards.contains(where: { $0.token == payment }) else {
            return try await checkoutPage(problem: "Choose how to pay.", status: 400)
        }
        guard let requestID = form["request_id"].flatMap(UUID.init(uuidString:)) else {
            return try await checkoutPage(
                problem: "The checkout form is out of date; please submit it again.", status: 400)
        }
        do {
            let order = try await app.orders.placeOrder(
                Shop_V1_PlaceOrderRequest(
                    requestID: requestID.uuidString.lowercased(), shippingAddress: address, paymentToken: payment),
                options: visit.options)
            return .redirect("/orders/\(URLText.component(order.id))?placed=1")
        } catch let e as RPCError
            where [.failedPrecondition, .invalidArgument, .aborted, .resourceExhausted].contains(e.code)
        {
            // A declined card, a product that sold out, an address the service refuses: the
            // shopper sees why, with the form as filled in (and a new request id, since this one
            // is spent).
            var f = form
            f.remove("request_id")
            let again = ShoppingPages(app: app, visit: Visit(visit.request, session: visit.session, form: f))
            return try await again.checkoutPage(problem: Pages.sentence(e.message), status: 409)
        }
    }

    // MARK: orders

    static func statusLabel(_ s: Shop_V1_OrderStatus) -> String {
        switch s {
        case .pending: "Pending payment"
        case .paid: "Paid"
        case .shipped: "Shipped"
        case .delivered: "Delivered"
        case .cancelled: "Cancelled"
        default: "Unknown"
        }
    }

    static func statusBadge(_ o: Shop_V1_Order) -> HTML {
        "<span class=\"status s-\(statusLabel(o.status).lowercased().split(separator: " ")[0])\">\(statusLabel(o.status))</span>"
    }

    func ordersPage() async throws -> WebResponse {
        guard visit.user != nil else { return routes.signInFirst() }
        let token = String(((try? FormData(query: visit.request.query))?["page"] ?? "").prefix(512))
        var r = Shop_V1_ListOrdersRequest()
        r.page = Shop_V1_PageRequest(pageSize: 20, pageToken: token)
        let answer = try await app.orders.listOrders(r, options: visit.options)
        return .page(
            200,
            Pages.layout(
                title: "Your orders",
                """
                <h1>Your orders</h1>
                \(Self.orderTable(answer.orders, base: "/orders/"))
                \(Pages.nextPage(answer.nextPageToken, "/orders"))
                """, visit: visit))
    }

    static func orderTable(_ orders: [Shop_V1_Order], base: String, showCustomer: Bool = false) -> HTML {
        guard !orders.isEmpty else { return "<p class=\"empty\">No orders yet.</p>" }
        let rows = orders.map { o -> HTML in
            let customer: HTML = showCustomer ? "<td><code>\(o.userID.prefix(8))</code></td>" : .empty
            return """
                <tr><th scope="row"><a href="\(url: base + URLText.component(o.id))">\(o.id.prefix(8))</a></th>\
                <td>\(o.createTime.map(Pages.date))</td>\(customer)<td>\(statusBadge(o))</td><td class="num">\(Money.text(o.total))</td></tr>
                """
        }
        let customer: HTML = showCustomer ? "<th scope=\"col\">Customer</th>" : .empty
        return """
            <div class="scroll"><table class="lines">
            <thead><tr><th scope="col">Order</th><th scope="col">Placed</th>\(customer)<th scope="col">Status</th><th scope="col" class="num">Total</th></tr></thead>
            <tbody>\(rows)</tbody></table></div>
            """
    }

    /// The parts of an order page both the shopper and the back office show.
    static func orderDetails(_ o: Shop_V1_Order, live: Bool) -> HTML {
        let items = o.items.map { i -> HTML in
            "<tr><th scope=\"row\">\(i.productName)</th><td class=\"num\">\(i.quantity)</td><td class=\"num\">\(Money.text(i.unitPrice))</td><td class=\"num\">\(Money.text(i.lineTotal))</td></tr>"
        }
        let a = o.shippingAddress ?? Shop_V1_Address()
        let address = ([a.recipient] + a.lines + ["\(a.postalCode) \(a.city)", a.countryCode]).map { l -> HTML in
            "\(l)<br>"
        }
        let watch = "/orders/\(URLText.component(o.id))/events"
        let status: HTML =
            live && !OrderLifecycleText.isFinal(o.status)
            ? "<p>Status: <strong id=\"order-status\" data-watch=\"\(url: watch)\" aria-live=\"polite\">\(statusLabel(o.status))</strong></p>"
            : "<p>Status: <strong id=\"order-status\">\(statusLabel(o.status))</strong></p>"
        let reason: HTML = o.cancelReason.isEmpty ? .empty : "<p>Why: \(o.cancelReason)</p>"
        return """
            \(status)\(reason)
            <p>Placed \(o.createTime.map(Pages.date)).</p>
            <div class="scroll"><table class="lines">
            <thead><tr><th scope="col">Product</th><th scope="col" class="num">Quantity</th><th scope="col" class="num">Price</th><th scope="col" class="num">Total</th></tr></thead>
            <tbody>\(items)</tbody>
            <tfoot><tr><th scope="row" colspan="3">Total</th><td class="num">\(Money.text(o.total))</td></tr></tfoot>
            </table></div>
            <h2>Shipping to</h2><address>\(address)</address>
            """
    }

    func orderPage(_ id: String) async throws -> WebResponse {
        guard visit.user != nil else { return routes.signInFirst() }
        let o = try await app.orders.getOrder(Shop_V1_GetOrderRequest(id: id), options: visit.options)
        let placed = (try? FormData(query: visit.request.query))?["placed"] != nil
        let cancel: HTML =
            o.status == .pending || o.status == .paid
            ? """
            <form method="post" action="\(url: "/orders/\(URLText.component(o.id))/cancel")" class="stack narrow">\(visit.csrfField)
            <label for="reason">Why cancel? (optional)</label><input id="reason" name="reason" maxlength="500">
            <button type="submit" class="secondary">Cancel this order</button>
            </form>
            """
            : .empty
        return .page(
            200,
            Pages.layout(
                title: "Order \(o.id.prefix(8))",
                """
                <h1>Order \(o.id.prefix(8))</h1>
                \(Pages.notice(placed ? "Thank you: your order is placed." : nil))
                \(Self.orderDetails(o, live: true))
                \(cancel)
                <p><a href="/orders">All your orders</a></p>
                """, visit: visit))
    }

    /// The order's status as server-sent events, for the order page's script: one `status` event
    /// now and one per change, until the order is final or the stream has run for a while (the
    /// browser's EventSource then opens it again).
    func orderEvents(_ id: String) async throws -> WebResponse {
        guard visit.user != nil else { return Pages.error(401, "Sign in to follow an order.", visit: visit) }
        // Refused here, before the stream starts, when the order is not this user's.
        _ = try await app.orders.getOrder(Shop_V1_GetOrderRequest(id: id), options: visit.options)
        var watchOptions = visit.options
        watchOptions.timeout = .seconds(25)
        let options = watchOptions
        let orders = app.orders
        return WebResponse(
            status: 200,
            headers: [
                ("content-type", "text/event-stream; charset=utf-8"), ("cache-control", "no-store"),
                ("x-content-type-options", "nosniff"),
            ],
            body: Array("retry: 2000\n\n".utf8),
            events: { write in
                do {
                    for try await o in orders.watchOrder(Shop_V1_WatchOrderRequest(id: id), options: options) {
                        let label = Self.statusLabel(o.status)
                        try await write(Array("event: status\ndata: \(label)\n\n".utf8))
                        if OrderLifecycleText.isFinal(o.status) {
                            try await write(Array("event: end\ndata: \(label)\n\n".utf8))
                            return
                        }
                    }
                } catch let e as RPCError where e.code == .deadlineExceeded || e.code == .cancelled {
                    // The stream's time is up: the browser comes back for more.
                }
            })
    }

    func cancelOrder(_ id: String) async throws -> WebResponse {
        guard visit.user != nil else { return routes.signInFirst() }
        let reason = try form.text("reason", "The reason", max: 500, required: false)
        _ = try await app.orders.cancelOrder(Shop_V1_CancelOrderRequest(id: id, reason: reason), options: visit.options)
        return .redirect("/orders/\(URLText.component(id))")
    }

    // MARK: notifications

    func notificationsPage() async throws -> WebResponse {
        guard visit.user != nil else { return routes.signInFirst() }
        let token = String(((try? FormData(query: visit.request.query))?["page"] ?? "").prefix(512))
        var r = Shop_V1_ListNotificationsRequest()
        r.page = Shop_V1_PageRequest(pageSize: 20, pageToken: token)
        let answer = try await app.notifications.listNotifications(r, options: visit.options)
        let items = answer.notifications.map { n -> HTML in
            let about: HTML =
                switch n.subjectRef {
                case .orderID(let id): "<a href=\"\(url: "/orders/\(URLText.component(id))")\">See the order</a>"
                case .productID(let id): "<a href=\"\(url: "/products/\(URLText.component(id))")\">See the product</a>"
                default: .empty
                }
            let mark: HTML =
                n.read
                ? .empty
                : """
                <form method="post" action="\(url: "/notifications/\(URLText.component(n.id))/read")" class="inline">\(visit.csrfField)<button type="submit" class="link">Mark as read</button></form>
                """
            return """
                <li class="\(n.read ? "read" : "unread")"><h2>\(n.subject)</h2><p class="when">\(n.createTime.map(Pages.date))</p>
                <p>\(n.body)</p><div>\(about) \(mark)</div></li>
                """
        }
        let list: HTML =
            items.isEmpty ? "<p class=\"empty\">Nothing yet.</p>" : "<ul class=\"notes\">\(items)</ul>"
        return .page(
            200,
            Pages.layout(
                title: "Notifications",
                """
                <h1>Notifications</h1>
                \(list)
                \(Pages.nextPage(answer.nextPageToken, "/notifications"))
                """, visit: visit))
    }

    func markRead(_ id: String) async throws -> WebResponse {
        guard visit.user != nil else { return routes.signInFirst() }
        _ = try await app.notifications.markRead(Shop_V1_MarkReadRequest(id: id), options: visit.options)
        return .redirect("/notifications")
    }
}

/// Which order statuses are final, for the pages (the orders service's own rule lives in its
/// module, which the web app does not link).
enum OrderLifecycleText {
    static func isFinal(_ s: Shop_V1_OrderStatus) -> Bool { s == .delivered || s == .cancelled }
}
