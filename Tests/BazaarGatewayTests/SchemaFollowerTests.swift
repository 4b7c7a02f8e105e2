import BazaarCore
import BazaarSchema
import BazaarWire
import ShopAPI
import Testing
import WellKnownTypes

@testable import BazaarGateway

/// An upstream the test drives: which endpoints are connected, and what reflection would answer.
final class FakeUpstream: Sendable {
    let endpoints = Lock<Set<String>>([])
    let files = Lock<[[UInt8]]>([])
    let reads = Lock(0)

    func serve(_ protoFiles: [ProtoFile]) {
        var all: [ProtoFile] = []
        for f in protoFiles { all += f.withDependencies }
        var seen: Set<String> = []
        files.withLock { $0 = all.filter { seen.insert($0.path).inserted }.map(\.serializedDescriptor) }
    }

    func follower(_ name: String) -> SchemaFollower {
        var f = SchemaFollower(
            upstream: name,
            read: {
                self.reads.withLock { $0 += 1 }
                // As over the network: nothing answers while nothing is up.
                guard !self.endpoints.withLock({ $0.isEmpty }) else {
                    throw RPCError(.unavailable, "no endpoint is up")
                }
                return self.files.withLock { $0 }
            }, connected: { self.endpoints.withLock { $0 } })
        f.poll = .milliseconds(5)
        return f
    }
}

/// A transport that is never called: routing is what is under test.
struct NoTransport: ClientTransport {
    func unary(_ method: MethodDescriptor, request: [UInt8], options: CallOptions) async throws -> [UInt8] {
        throw RPCError(.unavailable, "not connected")
    }

    func streaming(_ method: MethodDescriptor, requests: RPCStream<[UInt8]>, options: CallOptions) -> RPCStream<[UInt8]>
    {
        RPCStream { $0.finish(throwing: RPCError(.unavailable, "not connected")) }
    }
}

@Suite struct SchemaFollowerTests {
    /// Runs followers against one gateway and hands their events to `body`, in order.
    func follow(
        _ followers: [SchemaFollower],
        _ body: (Gateway, inout AsyncStream<SchemaFollower.Event>.Iterator) async throws -> Void
    )
        async throws
    {
        var upstreams: [String: any ClientTransport] = [:]
        for f in followers { upstreams[f.upstream] = NoTransport() }
        let gateway = Gateway(upstreams: upstreams, settings: Gateway.Settings())
        let (events, sink) = AsyncStream<SchemaFollower.Event>.makeStream()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for f in followers { group.addTask { await f.run(into: gateway, events: { sink.yield($0) }) } }
            var iterator = events.makeAsyncIterator()
            try await body(gateway, &iterator)
            group.cancelAll()
        }
    }

    /// The next installation or refusal (failed reads of an upstream not up yet are skipped).
    func decision(_ events: inout AsyncStream<SchemaFollower.Event>.Iterator) async -> SchemaFollower.Event? {
        while let e = await events.next() {
            if case .unreadable = e { continue }
            return e
        }
        return nil
    }

    func paths(_ g: Gateway, of upstream: String) -> Set<String> {
        Set(g.routes.routes.filter { $0.upstream == upstream }.map { "\($0.httpMethod) \($0.template)" })
    }

    @Test(.timeLimit(.minutes(1))) func routesAppearWhenTheUpstreamComesUpAndStayWhenItIsLost() async throws {
        let cart = FakeUpstream()
        cart.serve([ProtoFile.shop_v1_cart])
        try await follow([cart.follower("cart")]) { gateway, events in
            // While nothing answers, reads fail (said once) and nothing is routed.
            guard case .unreadable(let who, _)? = await events.next() else {
                Issue.record("a failed read was not reported")
                return
            }
            #expect(who == "cart" && gateway.routes.routes.isEmpty)
            cart.endpoints.withLock { $0 = ["10.0.0.1:9103"] }
            guard case .installed(let upstream, let services, let routes)? = await events.next() else {
                Issue.record("no schema installed")
                return
            }
            #expect(upstream == "cart" && services == ["shop.v1.CartService"] && routes == 5)
            guard case .found(let route, _) = gateway.routes.match(method: "GET", path: "/v1/cart") else {
                Issue.record("GET /v1/cart is not routed")
                return
            }
            #expect(route.upstream == "cart" && route.method.path == "/shop.v1.CartService/GetCart")
            // Lost, then back on another endpoint with the same schema: read again, nothing
            // installed or said, and the routes stayed all along.
            cart.endpoints.withLock { $0 = [] }
            let before = cart.reads.withLock { $0 }
            cart.endpoints.withLock { $0 = ["10.0.0.2:9103"] }
            while cart.reads.withLock({ $0 }) == before { await Task.yield() }
            #expect(paths(gateway, of: "cart").count == 5)
        }
    }

    @Test(.timeLimit(.minutes(1))) func aSchemaThatChangesIsPickedUpWhenTheUpstreamReconnects() async throws {
        let shop = FakeUpstream()
        shop.serve([ProtoFile.shop_v1_cart])
        try await follow([shop.follower("shop")]) { gateway, events in
            shop.endpoints.withLock { $0 = ["a:1"] }
            guard case .installed(_, _, let first)? = await decision(&events) else {
                Issue.record("no schema")
                return
            }
            #expect(first == 5)
            // A new version of the service (one more service in it) comes up on another endpoint.
            shop.serve([ProtoFile.shop_v1_cart, ProtoFile.shop_v1_notifications])
            shop.endpoints.withLock { $0 = ["b:1"] }
            guard case .installed(_, let services, let second)? = await decision(&events) else {
                Issue.record("no new schema")
                return
            }
            #expect(services == ["shop.v1.CartService", "shop.v1.NotificationsService"])
            #expect(second == 8)
            if case .notFound = gateway.routes.match(method: "GET", path: "/v1/notifications") {
                Issue.record("new route missing")
            }
        }
    }

    @Test(.timeLimit(.minutes(1))) func anUpstreamCannotClaimAnotherUpstreamsRoutesOrServices() async throws {
        let catalog = FakeUpstream()
        catalog.serve([ProtoFile.shop_v1_catalog])
        let impostor = FakeUpstream()
        impostor.serve([ProtoFile.shop_v1_catalog])
        try await follow([catalog.follower("catalog"), impostor.follower("impostor")]) { gateway, events in
            catalog.endpoints.withLock { $0 = ["c:1"] }
            guard case .installed(let first, _, _)? = await decision(&events) else {
                Issue.record("no schema")
                return
            }
            #expect(first == "catalog")
            impostor.endpoints.withLock { $0 = ["i:1"] }
            guard case .refused(let who, let reason)? = await decision(&events) else {
                Issue.record("the impostor was not refused")
                return
            }
            #expect(who == "impostor")
            #expect(reason.contains("catalog") && reason.contains("impostor"), "names both: \(reason)")
            #expect(paths(gateway, of: "catalog").count == 8 && paths(gateway, of: "impostor").isEmpty)
        }
    }

    @Test(.timeLimit(.minutes(1))) func conflictingRoutesAcrossUpstreamsAreRefusedNamingBoth() throws {
        // Two services whose bindings take the same requests.
        let gateway = Gateway(upstreams: ["a": NoTransport(), "b": NoTransport()], settings: Gateway.Settings())
        func service(_ name: String) -> ServiceDescriptor {
            ServiceDescriptor(
                name: name,
                methods: [
                    MethodDescriptor(
                        service: name, method: "Get", kind: .unary, inputType: "shop.v1.GetCartForUserRequest",
                        outputType: "shop.v1.Cart",
                        options: MethodOptions(http: [HTTPRule(method: "GET", path: "/v1/things/{user_id}")]))
                ],
                file: ProtoFile.shop_v1_cart)
        }
        try gateway.install(UpstreamSchema(upstream: "a", services: [service("a.v1.Things")]))
        do {
            try gateway.install(UpstreamSchema(upstream: "b", services: [service("b.v1.Things")]))
            Issue.record("the clash was installed")
        } catch {
            #expect(error.description.contains("/a.v1.Things/Get") && error.description.contains("/b.v1.Things/Get"))
            #expect(error.description.contains("upstreams a and b"))
        }
        #expect(gateway.routes.routes.map(\.upstream) == ["a"])
        // An upstream the gateway does not know is refused too.
        #expect(throws: RouteTable.BuildError.self) {
            try gateway.install(UpstreamSchema(upstream: "c", services: [service("c.v1.X")]))
        }
    }
}
