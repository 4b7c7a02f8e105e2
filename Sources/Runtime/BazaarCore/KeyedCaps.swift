/// Places held per key, capped per key and in all: connections per client address, open streams
/// per caller. Thread-safe; a key's count disappears when it drops to zero, so the table holds
/// only the keys that hold places now.
public final class KeyedCaps: Sendable {
    public enum Refusal: Sendable, Equatable {
        /// All `total` places are taken.
        case total
        /// The key holds its `perKey` places.
        case perKey
    }

    public let perKey: Int
    public let total: Int
    private struct Counts {
        var total = 0
        var byKey: [String: Int] = [:]
    }
    private let counts = Lock(Counts())

    public init(perKey: Int, total: Int) {
        self.perKey = perKey
        self.total = total
    }

    /// Takes a place for `key` (an `exempt` key only counts towards the total), or says which cap
    /// refuses it.
    public func take(_ key: String, exempt: Bool = false) -> Refusal? {
        counts.withLock { c in
            if c.total >= total { return .total }
            let mine = c.byKey[key, default: 0]
            if !exempt && mine >= perKey { return .perKey }
            c.total += 1
            c.byKey[key] = mine + 1
            return nil
        }
    }

    /// Gives back a place `key` took.
    public func release(_ key: String) {
        counts.withLock { c in
            c.total -= 1
            let left = c.byKey[key, default: 1] - 1
            c.byKey[key] = left > 0 ? left : nil
        }
    }

    /// Places taken now.
    public var taken: Int { counts.withLock { $0.total } }
}
