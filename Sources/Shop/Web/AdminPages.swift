import BazaarCore
import ShopAPI
import WellKnownTypes

/// The back office at `/admin/`: products, orders, customers, and the place for the analytics.
/// Only for admins: ``Routes`` refuses everyone else before any of this runs, and the services
/// refuse a customer's token for every call made here as well.
struct AdminPages: Sendable {
    let app: WebApp
    let visit: Visit

    var form: FormData { visit.form }
    var query: FormData { (try? FormData(query: visit.request.query)) ?? FormData() }

    func answer(_ s: [String], post: Bool) async throws -> WebResponse {
        if post {
            switch (s.count, s.first) {
            case (1, "products"): return try await saveProduct(id: nil)
            case (2, "products"): return try await saveProduct(id: s[1])
            case (3, "products") where s[2] == "archive": return try await archive(s[1])
            case (3, "orders") where s[2] == "status": return try await move(s[1])
            case (3, "orders") where s[2] == "cancel": return try await cancel(s[1])
            default: break
            }
        } else {
            switch (s.count, s.first) {
            case (0, _): return home()
            case (1, "products"): return try await products()
            case (2, "products"):
                return s[1] == "new" ? productForm(nil, values: FormData()) : try await editProduct(s[1])
            case (1, "orders"): return try await orders()
            case (2, "orders"): return try await order(s[1])
            case (1, "customers"): return try await customers()
            case (1, "insights"): return insights()
            default: break
            }
        }
        return Pages.error(404, "There is no page at this address.", visit: visit)
    }

    func page(_ title: String, _ main: HTML, status: Int = 200) -> WebResponse {
        .page(
            status,
            Pages.layout(
                title: title,
                """
                <nav class="admin" aria-label="Back office"><a href="/admin/">Back office</a> <a href="/admin/products">Products</a> \
                <a href="/admin/orders">Orders</a> <a href="/admin/customers">Customers</a> <a href="/admin/insights">Insights</a></nav>
                \(main)
                """, visit: visit), cache: "no-store")
    }

    func home() -> WebResponse {
        page(
            "Back office",
            """
            <h1>Back office</h1>
            <ul class="tiles">
            <li><a href="/admin/products">Products</a><p>Create, edit, price, stock, archive.</p></li>
            <li><a href="/admin/orders">Orders</a><p>Ship, deliver, cancel with a refund.</p></li>
            <li><a href="/admin/customers">Customers</a><p>Who has an account.</p></li>
            <li><a href="/admin/insights">Insights</a><p>Sales and funnels.</p></li>
            </ul>
            """)
    }

    // MARK: products

    func products() async throws -> WebResponse {
        var q = SearchQuery()
        q.text = String((query["q"] ?? "").prefix(200))
        q.sort = q.text.isEmpty ? .newest : .unspecified
        q.pageToken = String((query["page"] ?? "").prefix(512))
        let answer = try await app.catalog.listProducts(q.request(pageSize: 25), options: visit.options)
        let rows = answer.products.map { p -> HTML in
            """
            <tr><th scope="row"><a href="\(url: "/admin/products/\(URLText.component(p.id))")">\(p.name)</a></th>\
            <td>\(p.sku)</td><td class="num">\(Money.text(p.price))</td><td class="num">\(p.stock)</td></tr>
            """
        }
        return page(
            "Products",
            """
            <h1>Products</h1>
            <p><a class="button" href="/admin/products/new">New product</a></p>
            <form method="get" action="/admin/products" class="filters" role="search">
            <label>Find <input name="q" type="search" value="\(q.text)"></label><button type="submit">Find</button>
            </form>
            <div class="scroll"><table class="lines">
            <thead><tr><th scope="col">Name</th><th scope="col">SKU</th><th scope="col" class="num">Price</th><th scope="col" class="num">Stock</th></tr></thead>
            <tbody>\(rows)</tbody></table></div>
            \(Pages.nextPage(answer.nextPageToken, "/admin/products", [("q", q.text)]))
            """)
    }

    func editProduct(_ id: String) async throws -> WebResponse {
        var r = Shop_V1_GetProductRequest()
        r.id = id
        let p = try await app.catalog.getProduct(r, options: visit.options)
        return productForm(p, values: Self.values(of: p))
    }

    /// A product's fields as the form shows them.
    static func values(of p: Shop_V1_Product) -> FormData {
        FormData([
            ("sku", p.sku), ("name", p.name), ("description", p.description_p),
            ("price", Money.plain(p.price?.amountMinor ?? 0)), ("currency", p.price?.currencyCode ?? "EUR"),
            ("stock", String(p.stock)), ("categories", p.categories.joined(separator: ", ")),
            ("images", p.imageURLs.joined(separator: "\n")),
            (
                "attributes",
                p.attributes.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }.joined(separator: "\n")
            ),
        ])
    }

    func productForm(_ p: Shop_V1_Product?, values v: FormData, problem: String? = nil, status: Int = 200)
        -> WebResponse
    {
        let action = p.map { "/admin/products/\(URLText.component($0.id))" } ?? "/admin/products"
        let title = p == nil ? "New product" : "Edit \(p!.name)"
        let archive: HTML =
            p.map { p in
                p.active
                    ? """
                    <form method="post" action="\(url: "/admin/products/\(URLText.component(p.id))/archive")" class="inline">\(visit.csrfField)
                    <button type="submit" class="secondary">Archive (hide from the shop)</button></form>
                    """
                    : "<p class=\"notice\">Archived: hidden from the shop, kept for its orders.</p>"
            } ?? .empty
        let view: HTML =
            p.map { "<p><a href=\"\(url: "/products/\(URLText.component($0.id))")\">See it in the shop</a></p>" }
            ?? .empty
        return page(
            title,
            """
            <h1>\(title)</h1>
            \(Pages.problem(problem))\(view)
            <form method="post" action="\(url: action)" class="stack panel">\(visit.csrfField)
            <label for="sku">SKU</label><input id="sku" name="sku" maxlength="64" value="\(v["sku"])" required>
            <label for="name">Name</label><input id="name" name="name" maxlength="200" value="\(v["name"])" required>
            <label for="description">Description</label><textarea id="description" name="description" rows="4" maxlength="5000">\(v["description"])</textarea>
            <label for="price">Price (e.g. 12.50)</label><input id="price" name="price" inputmode="decimal" value="\(v["price"])" required>
            <label for="currency">Currency (ISO code)</label><input id="currency" name="currency" maxlength="3" value="\(v["currency"] ?? "EUR")" required>
            <label for="stock">Stock</label><input id="stock" name="stock" type="number" min="0" value="\(v["stock"] ?? "0")" required>
            <input type="hidden" name="stock_was" value="\(v["stock_was"] ?? v["stock"] ?? "")">
            <label for="categories">Categories (comma separated)</label><input id="categories" name="categories" value="\(v["categories"])">
            <label for="images">Image addresses (one per line)</label><textarea id="images" name="images" rows="2">\(v["images"])</textarea>
            <label for="attributes">Attributes (one “name: value” per line)</label><textarea id="attributes" name="attributes" rows="3">\(v["attributes"])</textarea>
            <button type="submit">Save</button>
            </form>
            \(archive)
            """, status: status)
    }

    func saveProduct(id: String?) async throws -> WebResponse {
        var p = Shop_V1_Product()
        do {
            p.sku = try form.text("sku", "The SKU", max: 64)
            p.name = try form.text("name", "The name", max: 200)
            p.description_p = try form.text("description", "The description", max: 5000, required: false)
            guard let price = try? SearchQuery.price(form["price"], "price"), price > 0 else {
                throw FormProblem("The price must be an amount like 12 or 12.50.")
            }
            let currency = try form.text("currency", "The currency", max: 3).uppercased()
            guard currency.count == 3, currency.allSatisfy({ $0.isASCII && $0.isLetter }) else {
                throw FormProblem("The currency is a three-letter code like EUR.")
            }
            p.price = Shop_V1_Money(currencyCode: currency, amountMinor: price)
            p.stock = try form.integer("stock", "The stock", 0...1_000_000_000)
            p.categories = (form["categories"] ?? "").split(separator: ",").map {
                String($0.trimmingPrefix(" ").reversed().drop { $0 == " " }.reversed())
            }.filter { !$0.isEmpty }
            p.imageURLs = (form["images"] ?? "").split(whereSeparator: \.isNewline).map {
                String($0).trimmingPrefix(" ").description
            }.filter { !$0.isEmpty }
            for url in p.imageURLs where !HTML.isSafeURL(url) {
                throw FormProblem("Image addresses start with https:// or /.")
            }
            for line in (form["attributes"] ?? "").split(whereSeparator: \.isNewline) {
                guard let colon = line.firstIndex(of: ":") else {
                    throw FormProblem("Write each attribute as “name: value”.")
                }
                let key = line[..<colon].trimmingPrefix(" ")
                let value = line[line.index(after: colon)...].trimmingPrefix(" ")
                if !key.isEmpty { p.attributes[String(key)] = String(value) }
            }
        } catch let e as FormProblem {
            return productForm(try await existing(id), values: form, problem: e.message, status: 400)
        }
        let saved: Shop_V1_Product
        do {
            if let id {
                p.id = id
                // Only what this form edits: never `active` (editing does not bring an archived
                // product back), and the stock only when the admin changed it, since sales move
                // it while the form is open (writing back the number it showed would undo them).
                var mask = ["sku", "name", "description", "price", "categories", "image_urls", "attributes"]
                if form["stock"] != form["stock_was"] { mask.append("stock") }
                saved = try await app.catalog.updateProduct(
                    Shop_V1_UpdateProductRequest(product: p, updateMask: Google_Protobuf_FieldMask(paths: mask)),
                    options: visit.options)
            } else {
                saved = try await app.catalog.createProduct(
                    Shop_V1_CreateProductRequest(product: p), options: visit.options)
            }
        } catch let e as RPCError where e.code == .invalidArgument || e.code == .alreadyExists {
            return productForm(try await existing(id), values: form, problem: Pages.sentence(e.message), status: 400)
        }
        return .redirect("/admin/products/\(URLText.component(saved.id))")
    }

    func existing(_ id: String?) async throws -> Shop_V1_Product? {
        guard let id else { return nil }
        var r = Shop_V1_GetProductRequest()
        r.id = id
        return try await app.catalog.getProduct(r, options: visit.options)
    }

    func archive(_ id: String) async throws -> WebResponse {
        _ = try await app.catalog.deleteProduct(Shop_V1_DeleteProductRequest(id: id), options: visit.options)
        return .redirect("/admin/products/\(URLText.component(id))")
    }

    // MARK: orders

    static let statusFilters: [(key: String, value: Shop_V1_OrderStatus)] = [
        ("", .unspecified), ("pending", .pending), ("paid", .paid), ("shipped", .shipped), ("delivered", .delivered),
        ("cancelled", .cancelled),
    ]

    func orders() async throws -> WebResponse {
        let key = query["status"] ?? ""
        guard let filter = Self.statusFilters.first(where: { $0.key == key }) else {
            return Pages.error(400, "There is no order status called “\(key)”.", visit: visit)
        }
        var r = Shop_V1_ListOrdersRequest()
        r.status = filter.value
        r.page = Shop_V1_PageRequest(pageSize: 25, pageToken: String((query["page"] ?? "").prefix(512)))
        let answer = try await app.orders.listAllOrders(r, options: visit.options)
        let tabs = Self.statusFilters.map { f -> HTML in
            let label = f.key.isEmpty ? "All" : ShoppingPages.statusLabel(f.value)
            let link = "/admin/orders" + URLText.query([("status", f.key)])
            return f.key == key
                ? "<li><a href=\"\(url: link)\" aria-current=\"page\">\(label)</a></li>"
                : "<li><a href=\"\(url: link)\">\(label)</a></li>"
        }
        return page(
            "Orders",
            """
            <h1>Orders</h1>
            <nav aria-label="Filter by status"><ul class="categories">\(tabs)</ul></nav>
            \(ShoppingPages.orderTable(answer.orders, base: "/admin/orders/", showCustomer: true))
            \(Pages.nextPage(answer.nextPageToken, "/admin/orders", [("status", key)]))
            """)
    }

    func order(_ id: String) async throws -> WebResponse {
        let o = try await app.orders.getOrder(Shop_V1_GetOrderRequest(id: id), options: visit.options)
        let base = "/admin/orders/\(URLText.component(o.id))"
        var actions: [HTML] = []
        if let next = [
            Shop_V1_OrderStatus.paid: ("shipped", "Mark shipped"), .shipped: ("delivered", "Mark delivered"),
        ][
            o.status]
        {
            actions.append(
                """
                <form method="post" action="\(url: base + "/status")" class="inline">\(visit.csrfField)
                <input type="hidden" name="status" value="\(next.0)"><button type="submit">\(next.1)</button></form>
                """)
        }
        if o.status == .pending || o.status == .paid {
            actions.append(
                """
                <form method="post" action="\(url: base + "/cancel")" class="stack narrow">\(visit.csrfField)
                <label for="reason">Reason for the customer</label><input id="reason" name="reason" maxlength="500" required>
                <button type="submit" class="secondary">Cancel and refund</button></form>
                """)
        }
        return page(
            "Order \(o.id.prefix(8))",
            """
            <h1>Order \(o.id.prefix(8))</h1>
            <p>Customer <code>\(o.userID)</code>\(o.paymentID.isEmpty ? "" : ", payment \(o.paymentID)").</p>
            \(ShoppingPages.orderDetails(o, live: false))
            <div class="actions">\(actions)</div>
            """)
    }

    func move(_ id: String) async throws -> WebResponse {
        let to: Shop_V1_OrderStatus
        switch form["status"] {
        case "shipped": to = .shipped
        case "delivered": to = .delivered
        default: throw FormProblem("An order can be marked shipped or delivered here.")
        }
        _ = try await app.orders.updateOrderStatus(
            Shop_V1_UpdateOrderStatusRequest(id: id, status: to), options: visit.options)
        return .redirect("/admin/orders/\(URLText.component(id))")
    }

    func cancel(_ id: String) async throws -> WebResponse {
        let reason = try form.text("reason", "The reason", max: 500)
        _ = try await app.orders.cancelOrder(Shop_V1_CancelOrderRequest(id: id, reason: reason), options: visit.options)
        return .redirect("/admin/orders/\(URLText.component(id))")
    }

    // MARK: customers

    func customers() async throws -> WebResponse {
        var r = Shop_V1_ListUsersRequest()
        r.page = Shop_V1_PageRequest(pageSize: 50, pageToken: String((query["page"] ?? "").prefix(512)))
        let answer = try await app.accounts.listUsers(r, options: visit.options)
        let rows = answer.users.map { u -> HTML in
            """
            <tr><th scope="row">\(u.email)</th><td>\(u.displayName)</td><td>\(u.roles.joined(separator: ", "))</td>\
            <td>\(u.createTime.map(Pages.date))</td><td><code>\(u.id)</code></td></tr>
            """
        }
        return page(
            "Customers",
            """
            <h1>Customers</h1>
            <div class="scroll"><table class="lines">
            <thead><tr><th scope="col">Email</th><th scope="col">Name</th><th scope="col">Roles</th><th scope="col">Since</th><th scope="col">Id</th></tr></thead>
            <tbody>\(rows)</tbody></table></div>
            \(Pages.nextPage(answer.nextPageToken, "/admin/customers"))
            """)
    }

    // MARK: insights

    func insights() -> WebResponse {
        page(
            "Insights",
            """
            <h1>Insights</h1>
            <p>Revenue, funnels, abandoned carts and payment failures will show here as charts with their numbers
            beside them, once the shop's analytics pipeline runs (see docs/web.md).</p>
            """)
    }
}
