import CBazaarOpenSSL
import Dispatch
import Foundation

/// Opaque secrets (refresh tokens): 256 random bits, stored only as their SHA-256. A fast hash is
/// right here, unlike for passwords: the secret has full entropy, so there is nothing to guess.
public enum SecretToken {
    /// A new token: 32 random bytes, base64url without padding.
    public static func generate() throws -> String {
        var bytes = [UInt8](repeating: 0, count: 32)
        guard RAND_bytes(&bytes, 32) == 1 else { throw JWTError("no random bytes for a token") }
        return JWT.base64url(bytes)
    }

    /// The hex SHA-256 of `token`, the form it is stored and looked up in.
    public static func hash(_ token: String) -> String {
        var digest = [UInt8](repeating: 0, count: 32)
        let bytes = Array(token.utf8)
        _ = SHA256(bytes, bytes.count, &digest)
        return digest.map { String(format: "%02x", $0) }.joined()
    }
}

extension PasswordHasher {
    /// argon2id is slow on purpose (tens of milliseconds and 19 MiB per hash). Run on an event loop,
    /// it would stall every connection of that loop; on the cooperative pool, other tasks. So hashes
    /// run on a queue of their own, at most one per core at a time.
    private static let queue = DispatchQueue(label: "bazaar.argon2", attributes: .concurrent)
    private static let slots = DispatchSemaphore(value: max(1, ProcessInfo.processInfo.activeProcessorCount))

    /// ``hash(_:)`` off the caller's thread.
    public func hashInBackground(_ password: String) async throws -> String {
        let hasher = self
        return try await Self.offload { try hasher.hash(password) }
    }

    /// ``verify(_:against:)`` off the caller's thread.
    public static func verifyInBackground(_ password: String, against encoded: String) async -> Bool {
        (try? await offload { verify(password, against: encoded) }) ?? false
    }

    private static func offload<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            queue.async {
                slots.wait()
                defer { slots.signal() }
                continuation.resume(with: Result { try work() })
            }
        }
    }
}
