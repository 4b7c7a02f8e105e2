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

    /// The access-token verification keys: BAZAAR_JWT_PUBLIC_KEY is a comma-separated list of PEM
    /// files (Ed25519 or P-256), each optionally `kid=path` to give the key id tokens name;
    /// without one the key id is the key's thumbprint (what the accounts service puts in `kid`).
    public func verificationKeys() throws(RPCError) -> [JWTKey] {
        let list = (typed["JWT_PUBLIC_KEY"] ?? ".run/jwt/jwt-pub.pem").split(separator: ",").map {
            String($0).trimming(" ")
        }
        var keys: [JWTKey] = []
        for entry in list where !entry.isEmpty {
            let parts = entry.split(separator: "=", maxSplits: 1).map(String.init)
            let (kid, path) = parts.count == 2 ? (parts[0], parts[1]) : (nil, parts[0])
            guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
                throw RPCError(.invalidArgument, "BAZAAR_JWT_PUBLIC_KEY: cannot read \(path)")
            }
            do {
                let key = try JWTKey(pem: text)
                keys.append(key.withKeyID(kid ?? key.thumbprint))
            } catch {
                throw RPCError(.invalidArgument, "BAZAAR_JWT_PUBLIC_KEY: \(path): \(error)")
            }
        }
        guard !keys.isEmpty else { throw RPCError(.invalidArgument, "BAZAAR_JWT_PUBLIC_KEY names no key") }
        // kid:role+role,...: what each listed key may grant (keys not listed: any role).
        for entry in (typed["JWT_KEY_ROLES"] ?? "").split(separator: ",").map({ String($0).trimming(" ") })
        where !entry.isEmpty {
            let parts = entry.split(separator: ":", maxSplits: 1).map(String.init)
            guard parts.count == 2, let i = keys.firstIndex(where: { $0.keyID == parts[0] }) else {
                throw RPCError(
                    .invalidArgument,
                    "BAZAAR_JWT_KEY_ROLES: '\(entry)' is not kid:role+role for a key of BAZAAR_JWT_PUBLIC_KEY")
            }
            keys[i] = keys[i].granting(only: Set(parts[1].split(separator: "+").map(String.init)))
        }
        // kid:issuer,...: the issuer each listed key's tokens must name (keys not listed: BAZAAR_JWT_ISSUER).
        for entry in (typed["JWT_KEY_ISSUERS"] ?? "").split(separator: ",").map({ String($0).trimming(" ") })
        where !entry.isEmpty {
            let parts = entry.split(separator: ":", maxSplits: 1).map(String.init)
            guard parts.count == 2, !parts[1].isEmpty, let i = keys.firstIndex(where: { $0.keyID == parts[0] }) else {
                throw RPCError(
                    .invalidArgument,
                    "BAZAAR_JWT_KEY_ISSUERS: '\(entry)' is not kid:issuer for a key of BAZAAR_JWT_PUBLIC_KEY")
            }
            keys[i] = keys[i].issuing(as: parts[1])
        }
        return keys
    }

    /// BAZAAR_JWT_MAX_LIFETIME: the longest life an access token may have (1h).
    public func tokenMaxLifetime() throws(RPCError) -> Double {
        try duration("JWT_MAX_LIFETIME").map(\.inSeconds) ?? JWT.defaultMaxLifetime
    }
}
