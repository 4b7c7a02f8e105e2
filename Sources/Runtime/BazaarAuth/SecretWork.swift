import BazaarCore
import CBazaarOpenSSL
import Dispatch
import Foundation
import Synchronization

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
    /// ``hash(_:)`` off the caller's thread, through ``SecretWork/shared``.
    public func hashInBackground(_ password: String) async throws -> String {
        let hasher = self
        return try await SecretWork.shared.run { try hasher.hash(password) }
    }

    /// ``verify(_:against:)`` off the caller's thread, through ``SecretWork/shared``. Throws
    /// only when the work was shed (RESOURCE_EXHAUSTED) or its caller gave up.
    public static func verifyInBackground(_ password: String, against encoded: String) async throws -> Bool {
        try await SecretWork.shared.run { verify(password, against: encoded) }
    }
}

/// Where password hashes run. argon2id is slow on purpose (tens of milliseconds and 19 MiB per
/// hash): on an event loop it would stall every connection of that loop, on the cooperative pool
/// other tasks. So hashes run on threads of their own, at most one per CPU the process may use
/// (``CPUBudget``), and at most `maxWaiting` wait for a turn. Beyond that a request is shed at
/// once with RESOURCE_EXHAUSTED (a flood of sign-ins must not queue minutes of CPU), and work
/// whose caller gave up (its task cancelled: the client left, the deadline passed) is dropped
/// before it starts.
public final class SecretWork: Sendable {
    /// The process's queue (slots from the CPU budget, `BAZAAR_ARGON2_QUEUE` waiting, default 8 per slot).
    public static let shared = SecretWork(
        slots: CPUBudget.count,
        maxWaiting: Int(ProcessEnvironment.current["BAZAAR_ARGON2_QUEUE"] ?? "") ?? 8 * CPUBudget.count)

    public let slots: Int
    public let maxWaiting: Int
    private struct Waiting {
        let id: UInt64
        let start: @Sendable () -> Void
        let cancel: @Sendable () -> Void
    }
    private struct State {
        var running = 0
        var waiting: [Waiting] = []
        var nextID: UInt64 = 0
        var shed = 0
        var dropped = 0
    }
    private let state = Lock(State())
    private enum Decision { case run, wait, shed, cancelled }

    public init(slots: Int, maxWaiting: Int) {
        self.slots = max(1, slots)
        self.maxWaiting = max(0, maxWaiting)
    }

    /// Requests refused because the queue was full, since the start.
    public var shedCount: Int { state.withLock { $0.shed } }
    /// Requests waiting for a slot now.
    public var waitingCount: Int { state.withLock { $0.waiting.count } }
    /// Requests dropped while waiting because their caller gave up, since the start.
    public var droppedCount: Int { state.withLock { $0.dropped } }

    /// Runs `work` on a thread of its own when a slot is free.
    public func run<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        let id = state.withLock { s -> UInt64 in
            s.nextID += 1
            return s.nextID
        }
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (k: CheckedContinuation<T, any Error>) in
                let start: @Sendable () -> Void = { [self] in
                    DispatchQueue.global().async {
                        let result = Result { try work() }
                        self.finished()
                        k.resume(with: result)
                    }
                }
                let cancel: @Sendable () -> Void = { k.resume(throwing: CancellationError()) }
                let decision = state.withLock { s -> Decision in
                    if Task.isCancelled { return .cancelled }
                    if s.running < slots {
                        s.running += 1
                        return .run
                    }
                    if s.waiting.count < maxWaiting {
                        s.waiting.append(Waiting(id: id, start: start, cancel: cancel))
                        return .wait
                    }
                    s.shed += 1
                    return .shed
                }
                switch decision {
                case .run: start()
                case .wait: break
                case .cancelled: cancel()
                case .shed:
                    k.resume(
                        throwing: RPCError(
                            .resourceExhausted, "the server is busy checking passwords; try again in a moment"))
                }
            }
        } onCancel: {
            // Still waiting: drop it. Running: it finishes (argon2 cannot be interrupted).
            let dropped = state.withLock { s -> Waiting? in
                guard let i = s.waiting.firstIndex(where: { $0.id == id }) else { return nil }
                s.dropped += 1
                return s.waiting.remove(at: i)
            }
            dropped?.cancel()
        }
    }

    private func finished() {
        let next = state.withLock { s -> Waiting? in
            if s.waiting.isEmpty {
                s.running -= 1
                return nil
            }
            return s.waiting.removeFirst()
        }
        next?.start()
    }
}
