import BazaarAuth
import BazaarCore
import BazaarTransport
import Testing

@testable import BazaarGateway

/// What the gateway tells the services about a caller: the same for REST and gRPC (one helper).
@Suite struct ForwardingTests {
    /// Request ids the gateway makes are version-4 UUIDs in lowercase, and do not repeat.
    @Test func newRequestIDsAreDistinctVersion4UUIDs() {
        var seen = Set<String>()
        for _ in 0..<10_000 {
            let id = Gateway.newRequestID()
            let groups = id.split(separator: "-", omittingEmptySubsequences: false)
            #expect(groups.map(\.count) == [8, 4, 4, 4, 12], "\(id)")
            #expect(id.allSatisfy { $0 == "-" || $0.isHexDigit && !$0.isUppercase }, "\(id)")
            #expect(groups[2].first == "4" && "89ab".contains(groups[3].first!), "\(id)")
            seen.insert(id)
        }
        #expect(seen.count == 10_000)
    }

    @Test func theGatewaysOwnRequestIDAndAddressGoUpstreamNotTheClientsTraceContext() throws {
        var settings = Gateway.Settings()
        settings.trustedProxies = [IPNetwork("10.0.0.0/8")!]
        let gateway = try Gateway(services: [], upstreams: [:], settings: settings)
        let request = HTTPRequest(
            method: "GET", target: "/v1/products",
            headers: [
                ("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
                ("x-forwarded-for", "203.0.113.9"), ("x-request-id", "evil\r\nheader"),
            ],
            remoteAddress: "10.1.2.3:5555")
        var options = CallOptions()
        gateway.forward(
            UserIdentity(subject: "u1", roles: ["customer"], scopes: ["orders:read"]), requestID: "req-1", request,
            into: &options)
        // A trace starts at the gateway: the client's sampled flag decides nothing; its trace
        // goes to the telemetry as a link (the client observer takes the key off the call).
        #expect(options.metadata["traceparent"] == nil)
        #expect(
            options.metadata["x-bazaar-client-traceparent"] == "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        )
        #expect(options.metadata["x-request-id"] == "req-1")
        #expect(options.metadata[ForwardedIdentity.clientAddressKey] == "203.0.113.9")
        #expect(options.metadata[ForwardedIdentity.scopesKey] == "orders:read")
        #expect(options.metadata[ForwardedIdentity.subjectKey] == "u1")
    }
}

/// Revoked tokens: Bazaar's own say when to the microsecond; others only the second.
@Suite struct RevocationListTests {
    @Test func tokensIssuedBeforeTheirRevocationAreRefused() {
        let list = RevocationList()
        let t = 1_800_000_000.250_000
        list.apply([("u1", t)], now: t)
        func user(_ issued: Double?, precise: Bool) -> UserIdentity {
            var u = UserIdentity(subject: "u1", issuedAt: issued)
            u.issuedAtIsPrecise = precise
            return u
        }
        #expect(list.isRevoked(user(t - 0.000_001, precise: true)))
        #expect(!list.isRevoked(user(t + 0.000_001, precise: true)))
        // Only the second known: the revocation's own second is refused too.
        #expect(list.isRevoked(user(1_800_000_000, precise: false)))
        #expect(!list.isRevoked(user(1_800_000_001, precise: false)))
        #expect(list.isRevoked(user(nil, precise: false)))
        #expect(!list.isRevoked(UserIdentity(subject: "someone else", issuedAt: 0)))
        // Entries older than any live token are dropped.
        list.apply([], now: t + JWT.defaultMaxLifetime + 301)
        #expect(list.count == 0)
    }
}
