import BazaarCore
import BazaarTransport

/// Where a channel finds its servers, in gRPC's target syntax:
///
/// - `dns:///catalog-headless.shop.svc:8443`: every A and AAAA record of the name (a Kubernetes
///   headless service returns one per ready pod), re-resolved periodically and after failures;
/// - `dns://10.0.0.10:53/catalog:8443`: the same, asking that nameserver;
/// - `static:///10.0.0.1:8443,10.0.0.2:8443`, or just `host:port[,host:port…]`: a fixed list.
public enum Target: Sendable, Hashable, CustomStringConvertible {
    case dns(host: String, port: Int, nameserver: String?)
    case endpoints([Endpoint])

    public static let defaultPort = 443

    /// Parses a target; the error message says what was wrong.
    public init(parsing text: String) throws(RPCError) {
        let t = text.trimming(" \t")
        if t.hasPrefix("dns:") {
            var rest = t.dropFirst(4)
            var nameserver: String?
            if rest.hasPrefix("//") {
                rest = rest.dropFirst(2)
                guard let slash = rest.firstIndex(of: "/") else {
                    throw RPCError(.invalidArgument, "target '\(text)': expected dns:///name:port")
                }
                let authority = rest[..<slash]
                if !authority.isEmpty { nameserver = String(authority) }
                rest = rest[rest.index(after: slash)...]
            }
            let (host, port) = try Self.hostPort(String(rest), text)
            self = .dns(host: host, port: port, nameserver: nameserver)
            return
        }
        var list = Substring(t)
        for scheme in ["static:///", "static:", "ipv4:", "ipv6:"] where list.hasPrefix(scheme) {
            list = list.dropFirst(scheme.count)
            break
        }
        let parts = list.split(separator: ",").map { $0.trimming(" ") }.filter { !$0.isEmpty }
        guard !parts.isEmpty else { throw RPCError(.invalidArgument, "target '\(text)' names no endpoint") }
        self = .endpoints(
            try parts.map { p throws(RPCError) in
                let (h, port) = try Self.hostPort(p, text)
                return Endpoint(host: h, port: port)
            })
    }

    private static func hostPort(_ s: String, _ whole: String) throws(RPCError) -> (String, Int) {
        if let e = Endpoint(s) { return (e.host, e.port) }
        // No port given: gRPC's default.
        if !s.isEmpty, !s.contains(":") || (s.hasPrefix("[") && s.hasSuffix("]")) {
            let host = s.hasPrefix("[") ? String(s.dropFirst().dropLast()) : s
            return (host, defaultPort)
        }
        throw RPCError(.invalidArgument, "target '\(whole)': '\(s)' is not host:port")
    }

    public var description: String {
        switch self {
        case .dns(let host, let port, let ns): "dns://\(ns ?? "")/\(Endpoint(host: host, port: port))"
        case .endpoints(let list): list.map(\.description).joined(separator: ",")
        }
    }
}

/// Turns a target into endpoint lists over time.
public protocol Resolver: AnyObject, Sendable {
    /// Starts resolving; `update` receives every new list (or why resolution failed; the channel
    /// then keeps the endpoints it has).
    func start(_ update: @escaping @Sendable (Result<[Endpoint], RPCError>) -> Void)
    /// Asks for a fresh resolution soon, e.g. after a connection failed. Rate-limited.
    func refresh()
    func stop()
}

/// A fixed endpoint list.
public final class StaticResolver: Resolver {
    private let endpoints: [Endpoint]
    public init(_ endpoints: [Endpoint]) { self.endpoints = endpoints }
    public func start(_ update: @escaping @Sendable (Result<[Endpoint], RPCError>) -> Void) {
        update(.success(endpoints))
    }
    public func refresh() {}
    public func stop() {}
}
