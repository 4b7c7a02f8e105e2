import BazaarCore
import Synchronization
import Testing

@Suite struct IdentityPolicyTests {
    static func method(_ level: AuthRequirement.Level, callers: [String] = []) -> MethodDescriptor {
        MethodDescriptor(
            service: "shop.v1.Notifications", method: "Send", kind: .unary, inputType: "a", outputType: "b",
            options: MethodOptions(auth: AuthRequirement(level: level, callers: callers)))
    }

    @Test func idlCallersAreAllowedAndOthersDenied() {
        let policy = IdentityPolicy(trustDomain: "shop.local")
        let m = Self.method(.internal, callers: ["orders"])
        #expect(policy.check(m, identity: "spiffe://shop.local/orders") == nil)
        #expect(policy.check(m, identity: "spiffe://shop.local/cart")?.code == .permissionDenied)
        #expect(policy.check(m, identity: "spiffe://other.domain/orders")?.code == .permissionDenied)
        #expect(policy.check(m, identity: nil)?.code == .permissionDenied)
    }

    @Test func configurationOverridesTheIDL() {
        var policy = IdentityPolicy(trustDomain: "shop.local")
        let m = Self.method(.internal, callers: ["orders"])
        policy.allowLists["shop.v1.Notifications"] = ["spiffe://shop.local/cart"]
        #expect(policy.check(m, identity: "spiffe://shop.local/cart") == nil)
        #expect(policy.check(m, identity: "spiffe://shop.local/orders") != nil)
        policy.allowLists["/shop.v1.Notifications/Send"] = ["*"]
        #expect(policy.check(m, identity: nil) == nil)
    }

    @Test func methodsWithoutAListAdmitAnyone() {
        let policy = IdentityPolicy()
        #expect(policy.check(Self.method(.public), identity: nil) == nil)
        #expect(policy.check(Self.method(.authenticated), identity: "spiffe://bazaar.local/gateway") == nil)
    }
}

@Suite struct InterceptorTests {
    struct Tag: RPCInterceptor {
        let name: String
        let log: Log
        func intercept(_ head: RPCCallHead, next: @Sendable (RPCCallHead) async throws -> Void) async throws {
            log.append("\(name)>")
            var h = head
            h.metadata.add("x-seen", name)
            try await next(h)
            log.append("<\(name)")
        }
    }

    final class Log: Sendable {
        private let items = Lock<[String]>([])
        func append(_ s: String) { items.withLock { $0.append(s) } }
        var all: [String] { items.withLock { $0 } }
    }

    @Test func runOutermostFirstAndPassChangedHeads() async throws {
        let log = Log()
        let chain: [any RPCInterceptor] = [Tag(name: "a", log: log), Tag(name: "b", log: log)]
        let head = RPCCallHead(
            method: IdentityPolicyTests.method(.public), metadata: Metadata(), deadline: nil, peerIdentity: nil)
        try await chain.run(head) { h in
            log.append(
                "call:" + h.metadata.values("x-seen").map { if case .text(let s) = $0 { s } else { "" } }.joined())
        }
        #expect(log.all == ["a>", "b>", "call:ab", "<b", "<a"])
    }
}
