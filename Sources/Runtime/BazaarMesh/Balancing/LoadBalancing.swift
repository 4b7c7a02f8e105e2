import BazaarCore
import Synchronization

/// How a channel spreads calls over the endpoints it can use.
public enum LoadBalancingPolicy: String, Sendable, Hashable, CaseIterable {
    /// The first usable endpoint in resolver order takes every call; the next one when it fails.
    case pickFirst = "pick_first"
    /// Each usable endpoint in turn.
    case roundRobin = "round_robin"
    /// Power of two choices: of two endpoints drawn at random, the one with fewer calls in flight.
    /// It follows load as it is, where round robin assumes every call costs the same.
    case p2c
}

/// Something a picker can choose: it knows its calls in flight.
public protocol PickCandidate: AnyObject, Sendable {
    var outstanding: Int { get }
}

/// An immutable choice among the usable endpoints, rebuilt whenever that set changes and read
/// by every call without a lock (only the round-robin cursor is shared, as one atomic).
public final class Picker<Candidate: PickCandidate>: Sendable {
    public let policy: LoadBalancingPolicy
    public let candidates: [Candidate]
    private let cursor = Atomic<Int>(0)
    /// p2c's random draws (see ``SplitMix64``: no system call per draw).
    private let random = SplitMix64()

    public init(policy: LoadBalancingPolicy, candidates: [Candidate]) {
        self.policy = policy
        self.candidates = candidates
        // Start each new picker somewhere else, so that rebuilds do not all favour the first.
        if !candidates.isEmpty { cursor.store(Int.random(in: 0..<candidates.count), ordering: .relaxed) }
    }

    /// The endpoint for the next call, or `nil` when there is none. `admit` may refuse a
    /// candidate (a half-open breaker already probing); the next one is tried.
    public func pick(admit: (Candidate) -> Bool = { _ in true }) -> Candidate? {
        let n = candidates.count
        guard n > 0 else { return nil }
        switch policy {
        case .pickFirst:
            for c in candidates where admit(c) { return c }
            return nil
        case .roundRobin:
            let start = cursor.wrappingAdd(1, ordering: .relaxed).oldValue
            for i in 0..<n {
                let c = candidates[((start & 0x3fff_ffff_ffff_ffff) + i) % n]
                if admit(c) { return c }
            }
            return nil
        case .p2c:
            if n == 1 { return admit(candidates[0]) ? candidates[0] : nil }
            let r = random.next()
            let a = Int(r % UInt64(n))
            var b = Int((r >> 32) % UInt64(n - 1))
            if b >= a { b += 1 }
            let (first, second) = candidates[a].outstanding <= candidates[b].outstanding ? (a, b) : (b, a)
            if admit(candidates[first]) { return candidates[first] }
            if admit(candidates[second]) { return candidates[second] }
            for c in candidates where admit(c) { return c }
            return nil
        }
    }
}
