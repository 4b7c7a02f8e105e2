import BazaarWire
import CBazaarOpenSSL
import Foundation

/// A JWT problem: the reason a token was refused, for logs and `WWW-Authenticate`.
public struct JWTError: Error, CustomStringConvertible, Sendable, Equatable {
    public let description: String
    public init(_ d: String) { description = d }
}

/// A key for signing (private) or verifying (public) access tokens: Ed25519 (JWS alg `EdDSA`),
/// or ECDSA P-256 (alg `ES256`, for tokens from other issuers).
public final class JWTKey: @unchecked Sendable {
    let pkey: OpaquePointer
    public let isPrivate: Bool
    /// The `kid` header value; tokens name the key they were signed with, so keys can rotate.
    public let keyID: String
    /// The roles tokens signed with this key may carry (`nil`: any). A key from another issuer (a
    /// partner's, say) is bound to what it may grant: its tokens can never make an admin.
    public let grantableRoles: Set<String>?
    /// The issuer (`iss`) tokens signed with this key must name (`nil`: the verifier's issuer).
    public let issuer: String?

    private init(
        _ pkey: OpaquePointer, isPrivate: Bool, keyID: String, grantableRoles: Set<String>? = nil, issuer: String? = nil
    ) {
        self.pkey = pkey
        self.isPrivate = isPrivate
        self.keyID = keyID
        self.grantableRoles = grantableRoles
        self.issuer = issuer
    }

    deinit { EVP_PKEY_free(pkey) }

    /// A new Ed25519 key pair.
    public static func generate(keyID: String = "k1") throws -> JWTKey {
        guard let ctx = EVP_PKEY_CTX_new_id(EVP_PKEY_ED25519, nil) else { throw JWTError("cannot make a key context") }
        defer { EVP_PKEY_CTX_free(ctx) }
        var key: OpaquePointer?
        guard EVP_PKEY_keygen_init(ctx) == 1, EVP_PKEY_keygen(ctx, &key) == 1, let key else {
            throw JWTError("cannot generate an Ed25519 key")
        }
        return JWTKey(key, isPrivate: true, keyID: keyID)
    }

    /// From PEM: a private key (`-----BEGIN PRIVATE KEY-----`) or a public key; Ed25519 or P-256.
    public convenience init(pem: String, keyID: String = "k1") throws {
        // A memory BIO reads the buffer in place (it does not copy), so the buffer must outlive
        // every read: the parse runs inside withUnsafeBytes, never on a temporary array pointer.
        let (key, isPrivate) = try Array(pem.utf8).withUnsafeBytes { buffer throws -> (OpaquePointer, Bool) in
            guard let bio = BIO_new_mem_buf(buffer.baseAddress, Int32(buffer.count)) else {
                throw JWTError("out of memory")
            }
            defer { BIO_free(bio) }
            if let k = PEM_read_bio_PrivateKey(bio, nil, nil, nil) { return (k, true) }
            ERR_clear_error()
            _ = BIO_ctrl(bio, BIO_CTRL_RESET, 0, nil)
            if let k = PEM_read_bio_PUBKEY(bio, nil, nil, nil) { return (k, false) }
            ERR_clear_error()
            throw JWTError("not a PEM private or public key")
        }
        guard EVP_PKEY_get_id(key) == EVP_PKEY_ED25519 || Self.isP256(key) else {
            EVP_PKEY_free(key)
            throw JWTError("only Ed25519 (EdDSA) and P-256 (ES256) keys are accepted")
        }
        self.init(key, isPrivate: isPrivate, keyID: keyID)
    }

    static func isP256(_ key: OpaquePointer) -> Bool {
        guard EVP_PKEY_get_id(key) == EVP_PKEY_EC else { return false }
        var name = [CChar](repeating: 0, count: 64)
        var len = 0
        guard EVP_PKEY_get_group_name(key, &name, name.count, &len) == 1 else { return false }
        let group = String(decoding: name.prefix(len).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return group == "prime256v1" || group == "P-256"
    }

    /// The JWS algorithm this key signs and verifies with.
    public var algorithm: String { EVP_PKEY_get_id(pkey) == EVP_PKEY_ED25519 ? "EdDSA" : "ES256" }

    /// The raw 32-byte Ed25519 public key (a JWK's `x`, RFC 8037).
    public var rawPublicKey: [UInt8] {
        var out = [UInt8](repeating: 0, count: 32)
        var len = out.count
        guard EVP_PKEY_get_raw_public_key(pkey, &out, &len) == 1 else { return [] }
        return Array(out[0..<len])
    }

    /// The RFC 7638 JWK thumbprint of the public key (base64url SHA-256 of its canonical JWK):
    /// a stable key id, so tokens can name their key and keys can rotate.
    public var thumbprint: String {
        if algorithm == "ES256" {
            // For P-256 keys: the SHA-256 of the DER SubjectPublicKeyInfo.
            var der: UnsafeMutablePointer<UInt8>?
            let n = i2d_PUBKEY(pkey, &der)
            guard n > 0, let der else { return "" }
            defer { CRYPTO_free(der, #file, #line) }
            var digest = [UInt8](repeating: 0, count: 32)
            _ = SHA256(der, Int(n), &digest)
            return JWT.base64url(digest)
        }
        let jwk = "{\"crv\":\"Ed25519\",\"kty\":\"OKP\",\"x\":\"\(JWT.base64url(rawPublicKey))\"}"
        var digest = [UInt8](repeating: 0, count: 32)
        _ = SHA256(Array(jwk.utf8), jwk.utf8.count, &digest)
        return JWT.base64url(digest)
    }

    /// The same key under another key id.
    public func withKeyID(_ keyID: String) -> JWTKey {
        EVP_PKEY_up_ref(pkey)
        return JWTKey(pkey, isPrivate: isPrivate, keyID: keyID, grantableRoles: grantableRoles, issuer: issuer)
    }

    /// The same key, allowed to grant only `roles`.
    public func granting(only roles: Set<String>) -> JWTKey {
        EVP_PKEY_up_ref(pkey)
        return JWTKey(pkey, isPrivate: isPrivate, keyID: keyID, grantableRoles: roles, issuer: issuer)
    }

    /// The same key, bound to `issuer`: its tokens must name it, whatever issuer the verifier
    /// expects of the others (a partner's key cannot pass for the shop's own issuer, nor the reverse).
    public func issuing(as issuer: String) -> JWTKey {
        EVP_PKEY_up_ref(pkey)
        return JWTKey(pkey, isPrivate: isPrivate, keyID: keyID, grantableRoles: grantableRoles, issuer: issuer)
    }

    public var publicKeyPEM: String { Self.pem { PEM_write_bio_PUBKEY($0, pkey) } }
    public var privateKeyPEM: String? {
        isPrivate ? Self.pem { PEM_write_bio_PrivateKey($0, pkey, nil, nil, 0, nil, nil) } : nil
    }

    private static func pem(_ write: (OpaquePointer) -> Int32) -> String {
        guard let bio = BIO_new(BIO_s_mem()) else { return "" }
        defer { BIO_free(bio) }
        _ = write(bio)
        var p: UnsafeMutablePointer<CChar>?
        let n = BIO_ctrl(bio, BIO_CTRL_INFO, 0, &p)
        guard let p, n > 0 else { return "" }
        return String(decoding: UnsafeRawBufferPointer(start: p, count: n), as: UTF8.self)
    }

    func sign(_ message: [UInt8]) throws -> [UInt8] {
        guard isPrivate, let md = EVP_MD_CTX_new() else { throw JWTError("signing needs the private key") }
        defer { EVP_MD_CTX_free(md) }
        let es256 = algorithm == "ES256"
        var sig = [UInt8](repeating: 0, count: 160)
        var len = sig.count
        guard EVP_DigestSignInit(md, nil, es256 ? EVP_sha256() : nil, nil, pkey) == 1,
            EVP_DigestSign(md, &sig, &len, message, message.count) == 1
        else {
            throw JWTError("signing failed")
        }
        guard es256 else { return Array(sig[0..<len]) }
        // JWS wants r || s (32 bytes each), OpenSSL gives DER.
        var p: UnsafePointer<UInt8>? = UnsafePointer(sig)
        guard let ecdsa = d2i_ECDSA_SIG(nil, &p, len) else { throw JWTError("signing failed") }
        defer { ECDSA_SIG_free(ecdsa) }
        var r: OpaquePointer?
        var s: OpaquePointer?
        ECDSA_SIG_get0(ecdsa, &r, &s)
        var out = [UInt8](repeating: 0, count: 64)
        guard BN_bn2binpad(r, &out, 32) == 32,
            out.withUnsafeMutableBufferPointer({ BN_bn2binpad(s, $0.baseAddress! + 32, 32) }) == 32
        else {
            throw JWTError("signing failed")
        }
        return out
    }

    func verify(_ signature: [UInt8], _ message: [UInt8]) -> Bool {
        guard let md = EVP_MD_CTX_new() else { return false }
        defer { EVP_MD_CTX_free(md) }
        guard algorithm == "ES256" else {
            return EVP_DigestVerifyInit(md, nil, nil, nil, pkey) == 1
                && EVP_DigestVerify(md, signature, signature.count, message, message.count) == 1
        }
        guard signature.count == 64, let ecdsa = ECDSA_SIG_new() else { return false }
        defer { ECDSA_SIG_free(ecdsa) }
        let r = BN_bin2bn(signature, 32, nil)
        let s = signature.withUnsafeBufferPointer { BN_bin2bn($0.baseAddress! + 32, 32, nil) }
        guard ECDSA_SIG_set0(ecdsa, r, s) == 1 else { return false }
        var der: UnsafeMutablePointer<UInt8>?
        let n = i2d_ECDSA_SIG(ecdsa, &der)
        guard n > 0, let der else { return false }
        defer { CRYPTO_free(der, #file, #line) }
        return EVP_DigestVerifyInit(md, nil, EVP_sha256(), nil, pkey) == 1
            && EVP_DigestVerify(md, der, Int(n), message, message.count) == 1
    }
}

/// Access tokens: compact JWS with alg `EdDSA` (Ed25519) or `ES256` (P-256), the algorithm pinned
/// by the key.
///
/// Verification refuses any algorithm no configured key has (so no `none`, and no HMAC keyed with
/// the public key), uses only keys of the token's algorithm,
/// checks the signature before reading any claim, and requires `exp`; `nbf`, `iss` and `aud` are
/// checked as configured. JSON is Foundation's `JSONSerialization`.
public enum JWT {
    /// Verified claims.
    public struct Claims: @unchecked Sendable {
        public let values: [String: Any]
        public var subject: String? { values["sub"] as? String }
        public var issuer: String? { values["iss"] as? String }
        public var roles: [String] { values["roles"] as? [String] ?? [] }
        public var scopes: [String] { (values["scope"] as? String)?.split(separator: " ").map(String.init) ?? [] }
        public var expiresAt: Double? { (values["exp"] as? NSNumber)?.doubleValue }
    }

    /// Signs `claims` (add `exp`, `iss`, `aud`, `sub` yourself, or use ``issue``).
    public static func sign(_ claims: [String: Any], key: JWTKey) throws -> String {
        let header: [String: Any] = ["alg": key.algorithm, "typ": "JWT", "kid": key.keyID]
        let h = base64url(try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys]))
        let p = base64url(try JSONSerialization.data(withJSONObject: claims, options: [.sortedKeys]))
        let signingInput = h + "." + p
        return signingInput + "." + base64url(try key.sign(Array(signingInput.utf8)))
    }

    /// An access token for `subject`, valid `lifetime` seconds from `now`.
    public static func issue(
        subject: String, issuer: String, audience: String, lifetime: Int, roles: [String] = [],
        extra: [String: Any] = [:], key: JWTKey, now: Double = Date().timeIntervalSince1970
    ) throws -> String {
        var claims = extra
        claims["sub"] = subject
        claims["iss"] = issuer
        claims["aud"] = audience
        claims["iat"] = Int(now)
        claims["nbf"] = Int(now)
        claims["exp"] = Int(now) + lifetime
        if !roles.isEmpty { claims["roles"] = roles }
        return try sign(claims, key: key)
    }

    /// The longest life a verified token may have (`exp` minus `iat`, or minus `nbf`, or minus
    /// now): access tokens live 15 minutes, so a token minted for a year is refused.
    public static let defaultMaxLifetime: Double = 3600

    /// Verifies `token` against `keys` (by `kid`, or each when it names none) and the claims:
    /// expiry, `nbf`, issuer, audience, a lifetime of at most `maxLifetime`, and roles the
    /// signing key may grant (``JWTKey/grantableRoles``).
    public static func verify(
        _ token: String, keys: [JWTKey], issuer: String?, audience: String?, leeway: Double = 30,
        maxLifetime: Double? = defaultMaxLifetime, now: Double = Date().timeIntervalSince1970
    ) throws -> Claims {
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3 else { throw JWTError("not a compact JWS (three dot-separated parts)") }
        guard let headerBytes = base64urlDecode(parts[0]), let payloadBytes = base64urlDecode(parts[1]),
            let signature = base64urlDecode(parts[2])
        else { throw JWTError("malformed base64url") }
        guard let header = try? JSONSerialization.jsonObject(with: Data(headerBytes)) as? [String: Any] else {
            throw JWTError("the header is not a JSON object")
        }
        guard let alg = header["alg"] as? String, alg == "EdDSA" || alg == "ES256",
            keys.contains(where: { $0.algorithm == alg })
        else {
            throw JWTError(
                "algorithm \(header["alg"].map { "\($0)" } ?? "(none)") is not accepted; only \(Set(keys.map(\.algorithm)).sorted().joined(separator: " or "))"
            )
        }
        if header["crit"] != nil { throw JWTError("critical header extensions are not supported") }
        let ofAlg = keys.filter { $0.algorithm == alg }
        let candidates = (header["kid"] as? String).map { kid in ofAlg.filter { $0.keyID == kid } } ?? ofAlg
        guard !candidates.isEmpty else { throw JWTError("unknown signing key") }
        let signingInput = Array(token.utf8.prefix(parts[0].utf8.count + 1 + parts[1].utf8.count))
        guard let signer = candidates.first(where: { $0.verify(signature, signingInput) }) else {
            throw JWTError("bad signature")
        }
        guard let claims = try? JSONSerialization.jsonObject(with: Data(payloadBytes)) as? [String: Any] else {
            throw JWTError("the payload is not a JSON object")
        }
        guard let exp = (claims["exp"] as? NSNumber)?.doubleValue else { throw JWTError("no expiry (exp)") }
        guard now - leeway < exp else { throw JWTError("expired") }
        let nbf = (claims["nbf"] as? NSNumber)?.doubleValue
        if let nbf, now + leeway < nbf { throw JWTError("not valid yet (nbf)") }
        if let maxLifetime {
            let start = (claims["iat"] as? NSNumber)?.doubleValue ?? nbf ?? now
            if exp - start > maxLifetime + leeway {
                throw JWTError("the token lives longer than \(Int(maxLifetime)) s")
            }
        }
        if let allowed = signer.grantableRoles {
            let roles = (claims["roles"] as? [String]) ?? []
            if let role = roles.first(where: { !allowed.contains($0) }) {
                throw JWTError("the signing key may not grant the role \(role)")
            }
        }
        if let expected = signer.issuer ?? issuer, claims["iss"] as? String != expected {
            throw JWTError("wrong issuer")
        }
        if let audience {
            let aud = (claims["aud"] as? [String]) ?? (claims["aud"] as? String).map { [$0] } ?? []
            guard aud.contains(audience) else { throw JWTError("wrong audience") }
        }
        return Claims(values: claims)
    }

    /// base64url without padding, as JWS writes every part.
    public static func base64url(_ bytes: some Collection<UInt8>) -> String {
        Base64.encode(bytes, alphabet: .url, padding: false)
    }

    static func base64urlDecode(_ text: Substring) -> [UInt8]? {
        // JWS parts have no padding: a `=` is as malformed as any character outside the alphabet.
        text.utf8.contains(UInt8(ascii: "=")) ? nil : Base64.decode(text, alphabet: .url)
    }
}
