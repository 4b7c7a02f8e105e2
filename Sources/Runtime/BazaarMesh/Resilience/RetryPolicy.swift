import BazaarCore
import Synchronization

/// When and how a failed call is tried again (gRFC A6).
///
/// A call is retried only when its method is retry-safe in the IDL (`idempotency_level`
/// `NO_SIDE_EFFECTS` or `IDEMPOTENT`) or has an explicit policy, its status is one of
/// ``retryableCodes``, the server had not sent response headers, the deadline has not passed and
/// the channel's ``RetryThrottle`` allows it.
public struct RetryPolicy: Sendable, Hashable {
    /// Attempts in all, the first included (A6 caps this at 5).
    public var maxAttempts: Int
    public var initialBackoff: Duration
    public var maxBackoff: Duration
    public var backoffMultiplier: Double
    public var retryableCodes: Set<StatusCode>

    public init(
        maxAttempts: Int = 3, initialBackoff: Duration = .milliseconds(50), maxBackoff: Duration = .seconds(1),
        backoffMultiplier: Double = 2, retryableCodes: Set<StatusCode> = [.unavailable]
    ) {
        self.maxAttempts = min(max(maxAttempts, 1), 5)
        self.initialBackoff = initialBackoff
        self.maxBackoff = maxBackoff
        self.backoffMultiplier = backoffMultiplier
        self.retryableCodes = retryableCodes
    }

    /// The wait before retry `n` (1 for the first retry): uniformly random between zero and
    /// `min(initial * multiplier^(n-1), max)`, A6's "full jitter".
    public func backoff(retry n: Int, random: Double = Double.random(in: 0..<1)) -> Duration {
        var ceiling = initialBackoff.inSeconds
        for _ in 1..<max(n, 1) { ceiling *= backoffMultiplier }
        ceiling = min(ceiling, maxBackoff.inSeconds)
        return .nanoseconds(Int64(ceiling * random * 1e9))
    }

    /// Whether a failed attempt may be followed by another (apart from the throttle and deadline).
    public func allowsRetry(after error: RPCError, attempt: Int) -> Bool {
        attempt < maxAttempts && retryableCodes.contains(error.code) && !error.responseStarted
            && !pushbackRefuses(error)
    }

    /// A server may say "do not retry" with `grpc-retry-pushback-ms` below zero (or not a number).
    private func pushbackRefuses(_ error: RPCError) -> Bool {
        guard let v = error.metadata["grpc-retry-pushback-ms"] else { return false }
        guard let ms = Int(v) else { return true }
        return ms < 0
    }

    /// A server's explicit pushback, when it gave one.
    public static func pushback(_ error: RPCError) -> Duration? {
        error.metadata["grpc-retry-pushback-ms"].flatMap(Int.init).flatMap { $0 >= 0 ? .milliseconds($0) : nil }
    }
}

/// A6's retry throttle: a token bucket that failures drain and successes refill, so that retries
/// stop when most calls fail and cannot multiply an outage. Retries are allowed while more than
/// half the tokens remain.
public final class RetryThrottle: Sendable {
    // Tokens in thousandths, so that the bucket is one atomic integer.
    private let milliTokens: Atomic<Int>
    private let maxMilli: Int
    private let ratioMilli: Int

    public init(maxTokens: Int = 10, tokenRatio: Double = 0.1) {
        maxMilli = max(maxTokens, 1) * 1000
        ratioMilli = Int((tokenRatio * 1000).rounded())
        milliTokens = Atomic(maxMilli)
    }

    public var tokens: Double { Double(milliTokens.load(ordering: .relaxed)) / 1000 }

    /// A call (or attempt) succeeded.
    public func recordSuccess() {
        guard ratioMilli > 0 else { return }
        var current = milliTokens.load(ordering: .relaxed)
        while current < maxMilli {
            let next = min(current + ratioMilli, maxMilli)
            let (done, seen) = milliTokens.compareExchange(expected: current, desired: next, ordering: .relaxed)
            if done { return }
            current = seen
        }
    }

    /// An attempt failed with a retryable status; returns whether a retry may follow.
    public func recordFailure() -> Bool {
        var current = milliTokens.load(ordering: .relaxed)
        while true {
            let next = max(current - 1000, 0)
            let (done, seen) = milliTokens.compareExchange(expected: current, desired: next, ordering: .relaxed)
            if done { return next > maxMilli / 2 }
            current = seen
        }
    }
}
