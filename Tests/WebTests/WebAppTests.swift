import BazaarCore
import ShopAPI
import Testing
import WellKnownTypes

@testable import Web

/// A catalog of a few products held in memory: enough for the pages' unit tests. The browser
/// tests run the real catalog on PostgreSQL.
struct FakeCatalog: Shop_V1_CatalogService.ServiceProtocol {
    var products: [Shop_V1_Product]

    static func product(_ id: String, _ name: String, cents: Int64, stock: Int64, categories: [String] = ["toys"])
        -> Shop_V1_Product
    {
        var p = Shop_V1_Product()
        p.id = id
        p.sku = "SKU-\(id)"
        p.name = name
        p.description_p = "About \(name)"
        var m = Shop_V1_Money()
        m.currencyCode = "USD"
        m.amountMinor = cents
        p.price = m
        p.stock = stock
        p.categories = categories
        p.imageURLs = ["https://images.example/\(id).jpg", "javascript:alert(1)"]
        p.attributes = ["colour": "red"]
        p.active = true
        return p
    }

    func listProducts(_ r: Shop_V1_ListProductsRequest, context: ServerContext) async throws
        -> Shop_V1_ListProductsResponse
    {
        if r.query == "down" { throw RPCError(.unavailable, "catalog down") }
        var out = Shop_V1_ListProductsResponse()
        let matching = products.filter { p in
            (r.query.isEmpty || p.name.contains(r.query)) && (r.category.isEmpty || p.categories.contains(r.category))
                && (r.minPriceMinor == 0 || p.price!.amountMinor >= r.minPriceMinor)
                && (r.maxPriceMinor == 0 || p.price!.amountMinor <= r.maxPriceMinor)
        }
        let start = Int(r.page?.pageToken ?? "") ?? 0
        let size = Int(r.page?.pageSize ?? 10)
        out.products = Array(matching.dropFirst(start).prefix(size))
        if start + size < matching.count { out.nextPageToken = String(start + size) }
        return out
    }

    func getProduct(_ r: Shop_V1_GetProductRequest, context: ServerContext) async throws -> Shop_V1_Product {
        guard let p = products.first(where: { $0.id == r.id }) else { throw RPCError(.notFound, "no product") }
        return p
    }

    func batchGetProducts(_ r: Shop_V1_BatchGetProductsRequest, context: ServerContext) async throws
        -> Shop_V1_BatchGetProductsResponse
    { throw RPCError(.unimplemented, "") }
    func createProduct(_ r: Shop_V1_CreateProductRequest, context: ServerContext) async throws -> Shop_V1_Product {
        throw RPCError(.unimplemented, "")
    }
    func updateProduct(_ r: Shop_V1_UpdateProductRequest, context: ServerContext) async throws -> Shop_V1_Product {
        throw RPCError(.unimplemented, "")
    }
    func deleteProduct(_ r: Shop_V1_DeleteProductRequest, context: ServerContext) async throws
        -> Shop_V1_DeleteProductResponse
    { throw RPCError(.unimplemented, "") }
    func reserveStock(_ r: Shop_V1_ReserveStockRequest, context: ServerContext) async throws
        -> Shop_V1_ReserveStockResponse
    { throw RPCError(.unimplemented, "") }
    func commitStock(_ r: Shop_V1_CommitStockRequest, context: ServerContext) async throws
        -> Shop_V1_CommitStockResponse
    { throw RPCError(.unimplemented, "") }
    func releaseStock(_ r: Shop_V1_ReleaseStockRequest, context: ServerContext) async throws
        -> Shop_V1_ReleaseStockResponse
    { throw RPCError(.unimplemented, "") }
    func watchStock(
        _ r: Shop_V1_WatchStockRequest, responses: RPCWriter<Shop_V1_StockLevel>, context: ServerContext
    ) async throws { throw RPCError(.unimplemented, "") }
}

@Suite struct WebAppTests {
    static let products =
        [
            FakeCatalog.product("1", "<script>alert(1)</script>", cents: 1250, stock: 3),
            FakeCatalog.product("2", "Kite", cents: 2000, stock: 0, categories: ["outdoor & garden"]),
        ] + (3...20).map { FakeCatalog.product(String($0), "Ball \($0)", cents: Int64($0) * 100, stock: 50) }

    static func app() -> WebApp {
        let t = InProcessTransport(services: [FakeCatalog(products: products)])
        return WebApp(
            catalog: t, accounts: t, cart: t, orders: t, notifications: t, sessions: MemorySessionStore())
    }

    static func get(_ target: String, method: String = "GET") async -> (WebResponse, String) {
        let r = await app().respond(to: WebRequest(method: method, target: target))
        return (r, String(decoding: r.body, as: UTF8.self))
    }

    @Test func productNamesAreTextNeverMarkup() async {
        for target in ["/", "/products/1", "/search?q=script"] {
            let (r, html) = await Self.get(target)
            #expect(r.status == 200, "\(target)")
            #expect(!html.contains("<script>alert(1)</script>"), "\(target)")
            #expect(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "\(target)")
            #expect(!html.contains("javascript:"), "\(target)")
        }
    }

    @Test func everyPageCarriesTheSecurityHeaders() async {
        for target in ["/", "/products/2", "/products/nope", "/search?min=x", "/no/such/page", "/categories/toys"] {
            let (r, _) = await Self.get(target)
            let names = Set(r.headers.map(\.0))
            #expect(
                names.isSuperset(of: ["content-security-policy", "x-content-type-options", "content-type"]), "\(target)"
            )
            #expect(r.headers.first { $0.0 == "content-security-policy" }!.1.contains("script-src 'self'"))
        }
    }

    @Test func statusesForWhatIsMissingMalformedOrDown() async {
        #expect(await Self.get("/products/nope").0.status == 404)
        #expect(await Self.get("/no/such/page").0.status == 404)
        #expect(await Self.get("/search?min=abc").0.status == 400)
        #expect(await Self.get("/search?min=30&max=10").0.status == 400)
        #expect(await Self.get("/search?sort=sideways").0.status == 400)
        // Digits that are not ASCII ("⅚", "٣") are refused, not a crash (the first version's
        // check took them and then force-unwrapped what Int64 could not read).
        #expect(await Self.get("/search?min=1.%E2%85%9A").0.status == 400)
        #expect(await Self.get("/search?max=%D9%A3").0.status == 400)
        #expect(await Self.get("/search?q=%zz").0.status == 400)
        #expect(await Self.get("/products/%zz").0.status == 400)
        #expect(await Self.get("/search?q=down").0.status == 503)
        #expect(await Self.get("/", method: "POST").0.status == 405)
    }

    @Test func searchFiltersByPriceAndPagesWithTheFiltersKept() async {
        let (_, first) = await Self.get("/search?q=Ball&min=5&max=18.5")
        #expect(first.contains("Ball 5<") && first.contains("Ball 16<") && !first.contains("Ball 4<"))
        #expect(!first.contains("Ball 17<"))  // twelve per page
        #expect(first.contains("href=\"/search?q=Ball&amp;min=5.00&amp;max=18.50&amp;page=12\""))
        let (_, second) = await Self.get("/search?q=Ball&min=5.00&max=18.50&page=12")
        #expect(second.contains("Ball 17<") && second.contains("Ball 18<") && !second.contains("Ball 19<"))
        #expect(!second.contains("rel=\"next\""))
    }

    @Test func categoriesAndProductDetails() async {
        let (home, html) = await Self.get("/")
        #expect(home.status == 200)
        #expect(html.contains("href=\"/categories/outdoor%20%26%20garden\">outdoor &amp; garden</a>"))
        let (_, category) = await Self.get("/categories/outdoor%20%26%20garden")
        #expect(category.contains(">Kite<") && !category.contains("Ball 3<"))
        let (_, kite) = await Self.get("/products/2")
        #expect(
            kite.contains("Out of stock") && kite.contains("$20.00") && kite.contains("<dt>colour</dt><dd>red</dd>"))
        #expect(kite.contains("alt=\"Kite\""))
        let (_, few) = await Self.get("/products/1")
        #expect(few.contains("Only 3 left"))
    }

    @Test func timesReadAsADayAndAMinuteInUTC() {
        #expect(Pages.date(Google_Protobuf_Timestamp(seconds: 1_796_652_425)) == "2026-12-07 14:07 UTC")
        #expect(Pages.date(Google_Protobuf_Timestamp(seconds: 0)) == "1970-01-01 00:00 UTC")
        #expect(Pages.date(Google_Protobuf_Timestamp(seconds: Int64.max)) == "")
    }

    @Test func theDemoCatalogsPicturesAreDrawnHere() async {
        let (svg, text) = await Self.get("/static/demo/blue-3.svg")
        #expect(svg.status == 200 && text.hasPrefix("<svg") && text.contains("#2e6db4"))
        #expect(svg.headers.contains { $0 == ("content-type", "image/svg+xml") })
        for bad in ["purple-1", "blue-8", "blue--1", "blue", "blue-1-2"] {
            #expect(await Self.get("/static/demo/\(bad).svg").0.status == 404, "\(bad)")
        }
    }

    @Test func theStylesheetIsServedUnderItsHashForAYear() async {
        let (css, text) = await Self.get(Assets.stylesheetPath)
        #expect(css.status == 200 && text.contains(".grid"))
        #expect(css.headers.contains { $0 == ("cache-control", "public, max-age=31536000, immutable") })
        #expect(await Self.get("/static/site.0000000000000000.css").0.status == 404)
    }
}
