/// Which mesh identities may call which methods. It is checked before a handler runs; a caller not
/// on a method's list gets `PERMISSION_DENIED`.
///
/// A method's list comes from configuration first (by full method path, then by service name), and
/// otherwise from the IDL: an `internal` method admits the services named in its `callers`. A method
/// with no list admits any caller the transport let in (under mTLS, any holder of a mesh certificate).
/// Entries are SPIFFE IDs (`spiffe://shop.local/orders`), bare service names (resolved in the policy's
/// trust domain), or `*` for anyone.
public struct IdentityPolicy: Sendable {
    public var trustDomain: String
    /// Allow-lists keyed by `/<service>/<method>` or `<service>`.
    public var allowLists: [String: [String]]

    public init(trustDomain: String = "bazaar.local", allowLists: [String: [String]] = [:]) {
        self.trustDomain = trustDomain
        self.allowLists = allowLists
    }

    /// The allow-list that applies to a method, or `nil` when anyone may call it.
    public func allowList(for method: MethodDescriptor) -> [String]? {
        if let list = allowLists[method.path] ?? allowLists[method.service] { return list }
        if method.options.auth.level == .internal { return method.options.auth.callers }
        return nil
    }

    /// `nil` when `identity` may call `method`, otherwise the error to answer with.
    public func check(_ method: MethodDescriptor, identity: String?) -> RPCError? {
        guard let list = allowList(for: method) else { return nil }
        if list.contains("*") { return nil }
        guard let identity else {
            return RPCError(.permissionDenied, "\(method.path) needs a mesh identity and the caller presented none")
        }
        for entry in list where spiffeID(entry) == identity { return nil }
        return RPCError(.permissionDenied, "\(identity) may not call \(method.path)")
    }

    private func spiffeID(_ entry: String) -> String {
        entry.hasPrefix("spiffe://") ? entry : "spiffe://\(trustDomain)/\(entry)"
    }
}
