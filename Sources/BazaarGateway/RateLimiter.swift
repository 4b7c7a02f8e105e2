import Foundation
import Synchronization

/// A token bucket's size: `ratePerSecond` tokens refill per second, up to `burst`.
public struct RateLimit: Sendable {
    public var ratePerSecond: Double
    public var burst: Double

    public init(ratePerSecond: Double, burst: Double) {
        self.ratePerSecond = ratePerSecond
        self.burst = burst
    }
}

/// Token buckets by key (a user or a client address), in memory. Buckets untouched for a minute
/// are dropped, so the table stays bounded by the clients of the last minute.
final class RateLimiter: Sendable {
    private struct Bucket {
        var tokens: Double
        var at: ContinuousClock.Instant
    }
    private struct State {
        var buckets: [String: Bucket] = [:]
        var lastSweep = ContinuousClock.now
    }
    private let state = Mutex(State())

    /// Takes a token; `nil` when allowed, otherwise the seconds until one is available.
    func take(key: String, limit: RateLimit, now: ContinuousClock.Instant = .now) -> Double? {
        state.withLock { s in
            if now - s.lastSweep > .seconds(60) {
                s.buckets = s.buckets.filter { now - $0.value.at < .seconds(60) }
                s.lastSweep = now
            }
            var b = s.buckets[key] ?? Bucket(tokens: limit.burst, at: now)
            let elapsed = Double((now - b.at).components.seconds) + Double((now - b.at).components.attoseconds) / 1e18
            b.tokens = min(limit.burst, b.tokens + elapsed * limit.ratePerSecond)
            b.at = now
            defer { s.buckets[key] = b }
            if b.tokens >= 1 {
                b.tokens -= 1
                return nil
            }
            return limit.ratePerSecond > 0 ? (1 - b.tokens) / limit.ratePerSecond : 3600
        }
    }
}
