import BazaarCore
import Foundation

extension JWTKey {
    /// The access-token verification keys: BAZAAR_JWT_PUBLIC_KEY is a comma-separated list of PEM
    /// files (Ed25519 or P-256), each optionally `kid=path` to give the key id tokens name;
    /// without one the key id is the key's thumbprint (what the accounts service puts in `kid`).
    public static func verificationKeys(_ typed: Environment) throws(RPCError) -> [JWTKey] {
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
}

extension JWT {
    /// BAZAAR_JWT_MAX_LIFETIME: the longest life an access token may have (1h).
    public static func maxLifetime(_ typed: Environment) throws(RPCError) -> Double {
        try typed.duration("JWT_MAX_LIFETIME").map(\.inSeconds) ?? JWT.defaultMaxLifetime
    }
}
