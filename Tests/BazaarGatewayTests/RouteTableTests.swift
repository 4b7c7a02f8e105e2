import BazaarCore
import BazaarWire
import ShopAPI
import Testing

@testable import BazaarGateway

@Suite struct PathTemplateTests {
    @Test func parsesTheGrammar() throws {
        let t = try PathTemplate("/v1/{name=shelves/*/books/*}:publish")
        #expect(t.segments == [.literal("v1"), .literal("shelves"), .any, .literal("books"), .any])
        #expect(t.verb == "publish")
        #expect(t.variables == [PathTemplate.Variable(fieldPath: ["name"], start: 1, end: 5)])
        let nested = try PathTemplate("/v1/products/{product.id}")
        #expect(nested.variables.first?.fieldPath == ["product", "id"])
        let rest = try PathTemplate("/files/{path=**}")
        #expect(rest.match(["files", "a", "b", "c.txt"], verb: nil)?.first?.1 == "a/b/c.txt")
        #expect(rest.match(["files"], verb: nil)?.first?.1 == "")
        for bad in [
            "v1/x", "/v1/{id", "/v1/**/x", "/v1/a{id}", "/v1/{a}/{a}", "/v1/", "/v1/x:", "/v1/{a=}", "/v1/{a b}",
        ] {
            #expect(throws: PathTemplate.ParseError.self, "\(bad)") { try PathTemplate(bad) }
        }
    }

    @Test func matchesSegmentsAndVerbs() throws {
        let t = try PathTemplate("/v1/orders/{id}:cancel")
        #expect(t.match(["v1", "orders", "o-1"], verb: "cancel")?.first?.1 == "o-1")
        #expect(t.match(["v1", "orders", "o-1"], verb: nil) == nil)
        #expect(t.match(["v1", "orders", ""], verb: "cancel") == nil)
        #expect(try PathTemplate("/v1/a/*").isMoreSpecific(than: try PathTemplate("/v1/*/b")))
        #expect(try PathTemplate("/v1/a/*").isMoreSpecific(than: try PathTemplate("/v1/a/**")))
    }
}

@Suite struct RouteTableTests {
    let table: RouteTable

    init() throws {
        table = try RouteTable(services: [
            Shop_V1_CatalogService.descriptor, Shop_V1_OrdersService.descriptor, Shop_V1_CartService.descriptor,
            Shop_V1_AccountsService.descriptor, Shop_V1_NotificationsService.descriptor,
        ])
    }

    func route(_ method: String, _ path: String) -> (String, [String: String])? {
        guard case .found(let r, let vars) = table.match(method: method, path: path) else { return nil }
        return (
            r.method.method,
            Dictionary(vars.map { ($0.0.joined(separator: "."), $0.1) }, uniquingKeysWith: { a, _ in a })
        )
    }

    @Test func theShopRoutes() {
        #expect(route("GET", "/v1/products")?.0 == "ListProducts")
        #expect(route("GET", "/v1/products/p%2F1")?.1 == ["id": "p/1"])
        #expect(route("GET", "/v1/skus/MUG-1")?.1 == ["sku": "MUG-1"])
        #expect(route("GET", "/v1/products:batchGet")?.0 == "BatchGetProducts")
        #expect(route("PATCH", "/v1/products/abc")?.1 == ["product.id": "abc"])
        #expect(route("POST", "/v1/orders/o1:cancel")?.0 == "CancelOrder")
        #expect(route("POST", "/v1/orders/o1:setStatus")?.0 == "UpdateOrderStatus")
        #expect(route("PATCH", "/v1/admin/orders/o1")?.0 == "UpdateOrderStatus")  // an additional binding
        #expect(route("HEAD", "/v1/products")?.0 == "ListProducts")
    }

    @Test func wrongMethodsAndUnknownPaths() {
        guard case .methodNotAllowed(let allowed) = table.match(method: "PUT", path: "/v1/products/abc") else {
            Issue.record("PUT on a product was not 405")
            return
        }
        #expect(Set(allowed) == ["GET", "PATCH", "DELETE"])
        guard case .notFound = table.match(method: "GET", path: "/v2/products") else {
            Issue.record("unknown path matched")
            return
        }
        guard case .notFound = table.match(method: "GET", path: "/v1/products/%zz") else {
            Issue.record("bad escape matched")
            return
        }
        // An unknown verb is no POST route; the whole segment may still be an order id for GET.
        if case .found = table.match(method: "POST", path: "/v1/orders/o1:explode") {
            Issue.record("unknown verb matched")
        }
    }

    @Test func conflictsAndBadBindingsAreRefusedAtStartup() {
        func service(_ rules: [(String, HTTPRule)]) -> ServiceDescriptor {
            let methods = rules.map { name, rule in
                MethodDescriptor(
                    service: "shop.v1.CatalogService", method: name, kind: .unary,
                    inputType: "shop.v1.GetProductRequest",
                    outputType: "shop.v1.Product", options: MethodOptions(http: [rule]))
            }
            return ServiceDescriptor(name: "shop.v1.CatalogService", methods: methods, file: ProtoFile.shop_v1_catalog)
        }
        let clash = service([
            ("A", HTTPRule(method: "GET", path: "/v1/x/{id}")), ("B", HTTPRule(method: "GET", path: "/v1/x/{sku}")),
        ])
        #expect(throws: RouteTable.BuildError.self) { try RouteTable(services: [clash]) }
        let missing = service([("A", HTTPRule(method: "GET", path: "/v1/x/{colour}"))])
        #expect(throws: RouteTable.BuildError.self) { try RouteTable(services: [missing]) }
        let badBody = service([("A", HTTPRule(method: "POST", path: "/v1/x", body: "nothing"))])
        #expect(throws: RouteTable.BuildError.self) { try RouteTable(services: [badBody]) }
        let fine = service([
            ("A", HTTPRule(method: "GET", path: "/v1/x/{id}")), ("B", HTTPRule(method: "POST", path: "/v1/x/{id}")),
        ])
        #expect(throws: Never.self) { try RouteTable(services: [fine]) }
    }
}
