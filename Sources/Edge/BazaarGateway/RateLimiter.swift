import BazaarCore
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
    private let state = Lock(State())

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

/// Long-lived calls (SSE and NDJSON watches, gRPC streams through the proxy) each hold an HTTP/2
/// stream on the gateway's connection to a service for as long as they last. Without a cap, a
/// few clients opening watches fill the connection's streams and every short call to that
/// service waits behind them. So they are counted per caller (user or address) and in all, and
/// the total stays well under a connection's stream limit, leaving room for unary calls.
final class StreamBudget: Sendable {
    private let caps: KeyedCaps

    init(perCaller: Int, total: Int) { caps = KeyedCaps(perKey: perCaller, total: total) }

    /// Takes a place for `caller`, or says why there is none.
    func take(_ caller: String) -> String? {
        switch caps.take(caller) {
        case nil: nil
        case .total: "the gateway holds its maximum of \(caps.total) open streams; try again later"
        case .perKey: "at most \(caps.perKey) open streams per client; close one first"
        }
    }

    func release(_ caller: String) { caps.release(caller) }

    var open: Int { caps.taken }
}
