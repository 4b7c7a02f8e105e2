/// A table of per-stream objects keyed by HTTP/2 stream id. Stream ids of one side are odd (or
/// even) and ascending, so the id itself is a perfect hash: lookups cost a shift and a mask
/// instead of `Dictionary`'s SipHash (about a thousand instructions per call, measured).
/// Open addressing with linear probing and backward-shift deletion.
struct StreamMap<Value: AnyObject> {
    private var keys: [Int32]
    private var values: [Value?]
    private(set) var count = 0

    init() {
        keys = Array(repeating: 0, count: 16)
        values = Array(repeating: nil, count: 16)
    }

    var isEmpty: Bool { count == 0 }
    private var mask: Int { keys.count - 1 }
    private func slot(_ id: Int32) -> Int { Int(id >> 1) & mask }

    subscript(id: Int32) -> Value? {
        get {
            var i = slot(id)
            while keys[i] != 0 {
                if keys[i] == id { return values[i] }
                i = (i + 1) & mask
            }
            return nil
        }
        set {
            if let newValue { insert(id, newValue) } else { _ = removeValue(forKey: id) }
        }
    }

    private mutating func insert(_ id: Int32, _ value: Value) {
        precondition(id != 0, "stream 0 is the connection")
        if (count + 1) * 4 > keys.count * 3 { grow() }
        var i = slot(id)
        while keys[i] != 0 && keys[i] != id { i = (i + 1) & mask }
        if keys[i] == 0 { count += 1 }
        keys[i] = id
        values[i] = value
    }

    @discardableResult
    mutating func removeValue(forKey id: Int32) -> Value? {
        var i = slot(id)
        while keys[i] != id {
            if keys[i] == 0 { return nil }
            i = (i + 1) & mask
        }
        let removed = values[i]
        keys[i] = 0
        values[i] = nil
        count -= 1
        // Shift later entries of the probe run back, so that lookups never stop at a false hole.
        var j = (i + 1) & mask
        while keys[j] != 0 {
            let home = slot(keys[j])
            let between = i <= j ? (home > i && home <= j) : (home > i || home <= j)
            if !between {
                keys[i] = keys[j]
                values[i] = values[j]
                keys[j] = 0
                values[j] = nil
                i = j
            }
            j = (j + 1) & mask
        }
        return removed
    }

    private mutating func grow() {
        let oldKeys = keys
        let oldValues = values
        keys = Array(repeating: 0, count: oldKeys.count * 2)
        values = Array(repeating: nil, count: oldKeys.count * 2)
        count = 0
        for (k, v) in zip(oldKeys, oldValues) where k != 0 { insert(k, v!) }
    }

    mutating func removeAll() {
        for i in keys.indices {
            keys[i] = 0
            values[i] = nil
        }
        count = 0
    }

    /// The values, in no particular order.
    var allValues: [Value] { values.compactMap { $0 } }
}
