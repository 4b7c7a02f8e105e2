import BazaarCore
import BazaarWire
import ShopAPI
import WellKnownTypes

/// What the search page was asked for, from its query string. Prices are typed in major units
/// (`12.50`) and sent to the catalog in minor units.
struct SearchQuery: Sendable, Equatable {
    var text = ""
    var category = ""
    var minPrice: Int64?
    var maxPrice: Int64?
    var sort: Shop_V1_ProductSort = .unspecified
    var pageToken = ""

    struct Invalid: Error, CustomStringConvertible {
        let description: String
    }

    static let sorts: [(key: String, label: String, value: Shop_V1_ProductSort)] = [
        ("", "Best match", .unspecified), ("newest", "Newest", .newest), ("price-asc", "Price, low to high", .priceAsc),
        ("price-desc", "Price, high to low", .priceDesc), ("name", "Name", .name),
    ]

    init() {}

    init(_ form: FormData) throws(Invalid) {
        text = String((form["q"] ?? "").prefix(200))
        category = String((form["category"] ?? "").prefix(100))
        minPrice = try Self.price(form["min"], "lowest price")
        maxPrice = try Self.price(form["max"], "highest price")
        if let min = minPrice, let max = maxPrice, min > max {
            throw Invalid(description: "The lowest price is above the highest price.")
        }
        let key = form["sort"] ?? ""
        guard let s = Self.sorts.first(where: { $0.key == key }) else {
            throw Invalid(description: "There is no sort order called “\(key)”.")
        }
        sort = s.value
        pageToken = String((form["page"] ?? "").prefix(512))
    }

    var sortKey: String { Self.sorts.first { $0.value == sort }?.key ?? "" }

    /// `12`, `12.5` or `12.50` as minor units; empty is no bound.
    static func price(_ text: String?, _ what: String) throws(Invalid) -> Int64? {
        guard let text, !text.isEmpty else { return nil }
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count <= 2, let major = Int64(parts[0]), major >= 0, major < 1_000_000_000,
            // ASCII digits only: `isNumber` also takes "⅚" or "٣", which Int64 then refuses.
            parts.count == 1
                || (parts[1].count <= 2 && !parts[1].isEmpty && parts[1].allSatisfy { $0.isASCII && $0.isWholeNumber })
        else { throw Invalid(description: "The \(what) must be an amount like 12 or 12.50.") }
        let cents = parts.count == 2 ? Int64(parts[1].padding(toLength: 2, withPad: "0", startingAt: 0)) ?? 0 : 0
        return major * 100 + cents
    }

    /// The catalog request for this search, `pageSize` products per page.
    func request(pageSize: Int32) -> Shop_V1_ListProductsRequest {
        var r = Shop_V1_ListProductsRequest()
        r.query = text
        r.category = category
        r.minPriceMinor = minPrice ?? 0
        r.maxPriceMinor = maxPrice ?? 0
        r.sort = sort
        var page = Shop_V1_PageRequest()
        page.pageSize = pageSize
        page.pageToken = pageToken
        r.page = page
        return r
    }

    /// This search's query string with another page token.
    func link(page: String) -> String {
        let path = category.isEmpty ? "/search" : "/categories/\(URLText.component(category))"
        return path
            + URLText.query([
                ("q", text), ("min", minPrice.map(Money.plain) ?? ""), ("max", maxPrice.map(Money.plain) ?? ""),
                ("sort", sortKey), ("page", page),
            ])
    }
}

/// Prices as people read them.
enum Money {
    static func text(_ m: Shop_V1_Money?) -> String {
        guard let m else { return "" }
        let symbol = ["USD": "$", "EUR": "€", "GBP": "£"][m.currencyCode]
        let amount = plain(m.amountMinor)
        return symbol.map { "\($0)\(amount)" } ?? "\(amount) \(m.currencyCode)"
    }

    /// `1250` as `12.50`.
    static func plain(_ minor: Int64) -> String {
        let sign = minor < 0 ? "-" : ""
        let v = minor.magnitude
        let cents = v % 100
        return "\(sign)\(v / 100).\(cents < 10 ? "0" : "")\(cents)"
    }
}

/// The pages, each from the calls it needs.
enum Pages {
    static let pageSize: Int32 = 12

    static func layout(title: String, _ main: HTML, query: String = "", visit: Visit? = nil) -> HTML {
        """
        <!doctype html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <title>\(title) · Bazaar</title>
        <link rel="stylesheet" href="\(url: Assets.stylesheetPath)">
        <script src="\(url: Assets.scriptPath)" defer></script>
        </head>
        <body>
        <a class="skip" href="#main">Skip to content</a>
        <header class="top">
        <a class="brand" href="/">Bazaar</a>
        <form class="search" role="search" method="get" action="/search">
        <label for="q" class="visually-hidden">Search products</label>
        <input id="q" name="q" type="search" value="\(query)" placeholder="Search products">
        <button type="submit">Search</button>
        </form>
        \(menu(visit))
        </header>
        <main id="main">
        \(main)
        </main>
        <footer class="bottom"><p>Bazaar, an open-source shop on an open-source mesh.</p></footer>
        </body>
        </html>

        """
    }

    /// The header's links: what a visitor or the signed-in user can go to.
    static func menu(_ visit: Visit?) -> HTML {
        guard let visit else { return .empty }
        guard let user = visit.user else {
            return """
                <nav class="menu" aria-label="Account"><a href="/cart">Cart</a> <a href="/signin">Sign in</a> <a href="/signup">Sign up</a></nav>
                """
        }
        let admin: HTML = user.isAdmin ? "<a href=\"/admin/\">Back office</a> " : .empty
        return """
            <nav class="menu" aria-label="Account">\(admin)<a href="/orders">Orders</a> <a href="/notifications">Notifications</a> \
            <a href="/cart">Cart</a> <a href="/account" title="\(user.email)">\(user.displayName.isEmpty ? "Account" : user.displayName)</a>
            <form method="post" action="/signout" class="inline">\(visit.csrfField)<button type="submit" class="link">Sign out</button></form></nav>
            """
    }

    static func card(_ p: Shop_V1_Product) -> HTML {
        let image: HTML =
            p.imageURLs.first.map { url in
                "<img src=\"\(url: url)\" alt=\"\(p.name)\" loading=\"lazy\" width=\"320\" height=\"320\">"
            } ?? "<div class=\"noimage\" aria-hidden=\"true\"></div>"
        return """
            <li class="card">
            <a href="\(url: "/products/\(URLText.component(p.id))")">\(image)<span class="name">\(p.name)</span></a>
            <span class="price">\(Money.text(p.price))</span>\(stock(p.stock, short: true))
            </li>
            """
    }

    static func grid(_ products: [Shop_V1_Product]) -> HTML {
        products.isEmpty
            ? "<p class=\"empty\">No products match.</p>"
            : "<ul class=\"grid\">\(products.map(card))</ul>"
    }

    static func stock(_ n: Int64, short: Bool = false) -> HTML {
        if n <= 0 { return "<span class=\"stock out\">Out of stock</span>" }
        if n <= 5 { return "<span class=\"stock low\">Only \(n) left</span>" }
        return short ? .empty : "<span class=\"stock in\">In stock</span>"
    }

    static func home(_ catalog: Shop_V1_CatalogService.Client, visit: Visit? = nil) async throws -> WebResponse {
        var newest = SearchQuery()
        newest.sort = .newest
        let products = try await catalog.listProducts(
            newest.request(pageSize: pageSize), options: visit?.options ?? CallOptions(waitForReady: true)
        ).products
        var categories: [String] = []
        for c in products.flatMap(\.categories) where !categories.contains(c) { categories.append(c) }
        let nav: HTML =
            categories.isEmpty
            ? .empty
            : """
            <nav aria-label="Categories"><h2>Categories</h2><ul class="categories">\(categories.map { c -> HTML in
                "<li><a href=\"\(url: "/categories/\(URLText.component(c))")\">\(c)</a></li>"
            })</ul></nav>
            """
        return .page(
            200,
            layout(
                title: "Welcome",
                """
                <h1>Welcome to Bazaar</h1>
                \(nav)
                <section aria-labelledby="new"><h2 id="new">New in</h2>\(grid(products))</section>
                """, visit: visit))
    }

    static func search(_ catalog: Shop_V1_CatalogService.Client, _ q: SearchQuery, visit: Visit? = nil) async throws
        -> WebResponse
    {
        let answer = try await catalog.listProducts(
            q.request(pageSize: pageSize), options: visit?.options ?? CallOptions(waitForReady: true))
        let heading = q.category.isEmpty ? (q.text.isEmpty ? "All products" : "Results for “\(q.text)”") : q.category
        let options = SearchQuery.sorts.map { s -> HTML in
            s.value == q.sort
                ? "<option value=\"\(s.key)\" selected>\(s.label)</option>"
                : "<option value=\"\(s.key)\">\(s.label)</option>"
        }
        let action = q.category.isEmpty ? "/search" : "/categories/\(URLText.component(q.category))"
        let next: HTML =
            answer.nextPageToken.isEmpty
            ? .empty
            : "<nav class=\"pages\" aria-label=\"Pages\"><a rel=\"next\" href=\"\(url: q.link(page: answer.nextPageToken))\">Next page</a></nav>"
        return .page(
            200,
            layout(
                title: heading,
                """
                <h1>\(heading)</h1>
                <form class="filters" method="get" action="\(url: action)">
                <input type="hidden" name="q" value="\(q.text)">
                <label>Lowest price <input id="min" name="min" inputmode="decimal" value="\(q.minPrice.map(Money.plain))"></label>
                <label>Highest price <input id="max" name="max" inputmode="decimal" value="\(q.maxPrice.map(Money.plain))"></label>
                <label>Sort by <select id="sort" name="sort">\(options)</select></label>
                <button type="submit">Apply</button>
                </form>
                \(grid(answer.products))
                \(next)
                """, query: q.text, visit: visit))
    }

    static func product(_ catalog: Shop_V1_CatalogService.Client, id: String, visit: Visit? = nil) async throws
        -> WebResponse
    {
        var r = Shop_V1_GetProductRequest()
        r.id = id
        let p = try await catalog.getProduct(r, options: visit?.options ?? CallOptions(waitForReady: true))
        guard p.active || visit?.isAdmin == true else { throw RPCError(.notFound, "archived") }
        let buy: HTML =
            p.stock > 0 && visit != nil
            ? """
            <form class="buy" method="post" action="/cart/add">\(visit!.csrfField)
            <input type="hidden" name="product_id" value="\(p.id)">
            <label>Quantity <input name="quantity" type="number" min="1" max="\(min(99, p.stock))" value="1" required></label>
            <button type="submit">Add to cart</button>
            </form>
            """
            : .empty
        let images = p.imageURLs.map { url -> HTML in
            "<img src=\"\(url: url)\" alt=\"\(p.name)\" width=\"480\" height=\"480\">"
        }
        let attributes = p.attributes.sorted { $0.key < $1.key }.map { k, v -> HTML in "<dt>\(k)</dt><dd>\(v)</dd>" }
        let details: HTML = attributes.isEmpty ? .empty : "<dl class=\"attributes\">\(attributes)</dl>"
        return .page(
            200,
            layout(
                title: p.name,
                """
                <article class="product">
                <div class="gallery">\(images)</div>
                <div class="about">
                <h1>\(p.name)</h1>
                <p class="price">\(Money.text(p.price))</p>
                <p>\(stock(p.stock))</p>
                \(buy)
                <p class="description">\(p.description_p)</p>
                \(details)
                <p class="sku">SKU \(p.sku)</p>
                </div>
                </article>
                """, visit: visit))
    }

    /// A link to the next page of a list, when there is one.
    static func nextPage(_ token: String, _ path: String, _ query: [(String, String)] = []) -> HTML {
        guard !token.isEmpty else { return .empty }
        return
            "<nav class=\"pages\" aria-label=\"Pages\"><a rel=\"next\" href=\"\(url: path + URLText.query(query + [("page", token)]))\">Next page</a></nav>"
    }

    /// A form's refusal, announced to screen readers.
    static func problem(_ message: String?) -> HTML {
        guard let message else { return .empty }
        return "<p class=\"problem\" role=\"alert\">\(message)</p>"
    }

    /// What a form just did.
    static func notice(_ message: String?) -> HTML {
        guard let message else { return .empty }
        return "<p class=\"notice\" role=\"status\">\(message)</p>"
    }

    /// A service's message as a sentence (`the cart is empty` as `The cart is empty.`).
    static func sentence(_ s: String) -> String {
        guard let first = s.first else { return s }
        return first.uppercased() + s.dropFirst() + (s.hasSuffix(".") ? "" : ".")
    }

    /// A timestamp as a day and a time (UTC), e.g. `2026-12-07 14:05 UTC`; empty when out of
    /// the range timestamps have.
    static func date(_ t: Google_Protobuf_Timestamp) -> String {
        guard let text = try? ProtoJSON.timestampText(seconds: t.seconds, nanos: 0) else { return "" }
        // "2026-12-07T14:05:09Z": the day and the minute.
        return text.prefix(10) + " " + text.dropFirst(11).prefix(5) + " UTC"
    }

    static func error(_ status: Int, _ message: String, headers: [(String, String)] = [], visit: Visit? = nil)
        -> WebResponse
    {
        let title =
            [
                400: "Bad request", 403: "Not allowed", 404: "Not found", 405: "Not allowed", 409: "Not possible",
                415: "Unsupported form", 503: "Unavailable",
            ][status] ?? "Something went wrong"
        var page = WebResponse.page(
            status,
            layout(
                title: title, "<h1>\(title)</h1><p>\(message)</p><p><a href=\"/\">Back to the shop</a></p>",
                visit: visit),
            cache: "no-store")
        page.headers += headers
        return page
    }

    /// A failed service call, as a page.
    static func failure(_ e: RPCError, visit: Visit? = nil) -> WebResponse {
        switch e.code {
        case .notFound: error(404, "We could not find that.", visit: visit)
        case .invalidArgument: error(400, e.message, visit: visit)
        case .failedPrecondition, .aborted, .alreadyExists, .outOfRange: error(409, sentence(e.message), visit: visit)
        case .permissionDenied: error(403, "This page is not for your account.", visit: visit)
        // A throttle says when to come back; any other exhausted resource is a limit of this
        // user's (a full cart), not the shop being down.
        case .resourceExhausted where e.message.contains("try again"): error(429, sentence(e.message), visit: visit)
        case .resourceExhausted where e.metadata["retry-after"] == nil: error(409, sentence(e.message), visit: visit)
        case .unavailable, .deadlineExceeded, .resourceExhausted:
            error(503, "Part of the shop is not answering right now. Please try again in a moment.", visit: visit)
        default: error(500, "Something went wrong on our side.", visit: visit)
        }
    }
}
