import BazaarAuth
import BazaarCore
import Foundation

/// Reads the services' BAZAAR_* settings, failing with the variable's name on bad values.
public struct ShopEnvironment: Sendable {
    public let values: [String: String]
    public let typed: Environment

    public init(_ values: [String: String]) {
        self.values = values
        typed = Environment(values, upstream: nil)
    }

    public subscript(_ key: String) -> String? { typed[key] }
    public func int(_ key: String, _ range: ClosedRange<Int>) throws(RPCError) -> Int? { try typed.int(key, range) }
    public func bool(_ key: String) throws(RPCError) -> Bool? { try typed.bool(key) }
    public func duration(_ key: String) throws(RPCError) -> Duration? { try typed.duration(key) }

    public func required(_ key: String, for service: String) throws(RPCError) -> String {
        guard let v = typed[key], !v.isEmpty else {
            throw RPCError(.invalidArgument, "BAZAAR_\(key) is required for \(service)")
        }
        return v
    }

    /// The deployment profile (BAZAAR_ENV): `development` (the default) or `production`, which
    /// refuses test-only components unless each is allowed explicitly.
    public func isProduction() throws(RPCError) -> Bool {
        switch typed["ENV"] ?? "development" {
        case "development": return false
        case "production": return true
        case let other: throw RPCError(.invalidArgument, "BAZAAR_ENV='\(other)': expected development or production")
        }
    }

    /// The SPIFFE trust domain of the mesh identities (BAZAAR_TRUST_DOMAIN).
    public var trustDomain: String { typed["TRUST_DOMAIN"] ?? IdentityPolicy().trustDomain }

    /// A `host:port` setting (`nil` when unset and without a default).
    public func address(_ key: String, default fallback: String? = nil) throws(RPCError) -> (host: String, port: Int)? {
        guard let text = typed[key] ?? fallback else { return nil }
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]),
            (1...65535).contains(port)
        else {
            throw RPCError(.invalidArgument, "BAZAAR_\(key)='\(text)': expected host:port")
        }
        return (String(text[..<colon]), port)
    }

    public func file(_ key: String, default path: String) throws(RPCError) -> String {
        let p = typed[key] ?? path
        guard let text = try? String(contentsOfFile: p, encoding: .utf8) else {
            throw RPCError(.invalidArgument, "BAZAAR_\(key): cannot read \(p)")
        }
        return text
    }

    /// The access-token verification keys (BAZAAR_JWT_PUBLIC_KEY, BAZAAR_JWT_KEY_ROLES,
    /// BAZAAR_JWT_KEY_ISSUERS; see ``JWTKey/verificationKeys(_:)``).
    public func verificationKeys() throws(RPCError) -> [JWTKey] { try JWTKey.verificationKeys(typed) }

    /// BAZAAR_JWT_MAX_LIFETIME: the longest life an access token may have (1h).
    public func tokenMaxLifetime() throws(RPCError) -> Double { try JWT.maxLifetime(typed) }
}
