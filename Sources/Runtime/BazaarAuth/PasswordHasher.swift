import CBazaarArgon2
import CBazaarOpenSSL

/// Password hashing with argon2id (libargon2), in the standard encoded form
/// (`$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`), which other argon2 libraries read too.
public struct PasswordHasher: Sendable {
    /// Memory in KiB, passes, and lanes: OWASP's minimum recommendation for argon2id by default.
    public var memoryKiB: UInt32 = 19_456
    public var iterations: UInt32 = 2
    public var parallelism: UInt32 = 1
    public var saltLength = 16
    public var hashLength = 32

    public init() {}

    public struct Failure: Error, CustomStringConvertible, Sendable {
        public let description: String
    }

    /// A new hash with a fresh random salt.
    public func hash(_ password: String) throws -> String {
        var salt = [UInt8](repeating: 0, count: saltLength)
        guard RAND_bytes(&salt, Int32(saltLength)) == 1 else {
            throw Failure(description: "no random bytes for a salt")
        }
        let length = argon2_encodedlen(
            iterations, memoryKiB, parallelism, UInt32(saltLength), UInt32(hashLength), Argon2_id)
        var encoded = [CChar](repeating: 0, count: length + 1)
        let pwd = Array(password.utf8)
        let rc = argon2id_hash_encoded(
            iterations, memoryKiB, parallelism, pwd, pwd.count, salt, salt.count, hashLength,
            &encoded, encoded.count)
        guard rc == ARGON2_OK.rawValue else { throw Failure(description: String(cString: argon2_error_message(rc))) }
        return String(cString: encoded)
    }

    /// Whether `password` matches `encoded` (any argon2id parameters; constant-time compare).
    public static func verify(_ password: String, against encoded: String) -> Bool {
        guard encoded.hasPrefix("$argon2id$") else { return false }
        let pwd = Array(password.utf8)
        return argon2id_verify(encoded, pwd, pwd.count) == ARGON2_OK.rawValue
    }

    /// Whether a stored hash was made with weaker parameters than these (rehash on next login).
    public func needsRehash(_ encoded: String) -> Bool {
        guard let params = encoded.split(separator: "$").dropFirst(2).first else { return true }
        var m: UInt32 = 0
        var t: UInt32 = 0
        for part in params.split(separator: ",") {
            let kv = part.split(separator: "=")
            guard kv.count == 2, let v = UInt32(kv[1]) else { continue }
            if kv[0] == "m" { m = v } else if kv[0] == "t" { t = v }
        }
        return m < memoryKiB || t < iterations
    }
}
