/// gRPC metadata: ordered, case-insensitive keys, each with text or (for `-bin` keys) binary values.
public struct Metadata: Sendable, Hashable, Sequence {
    public enum Value: Sendable, Hashable {
        case text(String)
        case binary([UInt8])
    }

    public private(set) var entries: [(key: String, value: Value)] = []

    public init() {}

    public init(_ pairs: [(String, String)]) {
        for (k, v) in pairs { add(k, v) }
    }

    /// Adds a text value. Keys are stored lower-cased, as HTTP/2 requires.
    public mutating func add(_ key: String, _ value: String) { entries.append((key.lowercased(), .text(value))) }

    /// Adds a value under a key that is already lower-case (HTTP/2 guarantees it for received
    /// headers), skipping the lower-casing copy.
    public mutating func append(lowercasedKey key: String, _ value: Value) { entries.append((key, value)) }

    /// Removes every value of a key.
    public mutating func remove(_ key: String) {
        let k = key.lowercased()
        entries.removeAll { $0.key == k }
    }

    /// Adds a binary value; the key should end in `-bin`.
    public mutating func add(_ key: String, binary: [UInt8]) { entries.append((key.lowercased(), .binary(binary))) }

    /// The first text value of a key.
    public subscript(_ key: String) -> String? {
        let k = key.lowercased()
        for e in entries where e.key == k { if case .text(let s) = e.value { return s } }
        return nil
    }

    public func values(_ key: String) -> [Value] {
        let k = key.lowercased()
        return entries.filter { $0.key == k }.map(\.value)
    }

    public func makeIterator() -> IndexingIterator<[(key: String, value: Value)]> { entries.makeIterator() }

    public static func == (a: Metadata, b: Metadata) -> Bool {
        a.entries.count == b.entries.count
            && zip(a.entries, b.entries).allSatisfy { $0.key == $1.key && $0.value == $1.value }
    }

    public func hash(into h: inout Hasher) {
        for e in entries {
            h.combine(e.key)
            h.combine(e.value)
        }
    }
}
