/// `BAZAAR_*` configuration variables, typed, with errors that name the variable. With an
/// upstream (`catalog`), `BAZAAR_CATALOG_<KEY>` wins over `BAZAAR_<KEY>`.
public struct Environment: Sendable {
    private let values: [String: String]
    private let upstream: String?

    public init(_ values: [String: String], upstream: String?) {
        self.values = values
        self.upstream = upstream.map {
            $0.uppercased().map { $0.isLetter || $0.isNumber ? $0 : "_" }.reduce("") { $0 + String($1) }
        }
    }

    /// This process's environment.
    public static var current: [String: String] { ProcessEnvironment.current }

    /// The variable a key is read from (the upstream's own, when it is set).
    public func name(_ key: String) -> String {
        if let upstream, values["BAZAAR_\(upstream)_\(key)"] != nil { return "BAZAAR_\(upstream)_\(key)" }
        return "BAZAAR_\(key)"
    }

    public subscript(_ key: String) -> String? {
        if let upstream, let v = values["BAZAAR_\(upstream)_\(key)"] { return v }
        return values["BAZAAR_\(key)"]
    }

    public func int(_ key: String, _ range: ClosedRange<Int>) throws(RPCError) -> Int? {
        guard let v = self[key] else { return nil }
        guard let n = Int(v), range.contains(n) else {
            throw RPCError(.invalidArgument, "\(name(key))='\(v)': expected a whole number in \(range)")
        }
        return n
    }

    public func double(_ key: String, _ range: ClosedRange<Double>) throws(RPCError) -> Double? {
        guard let v = self[key] else { return nil }
        guard let n = Double(v), range.contains(n) else {
            throw RPCError(.invalidArgument, "\(name(key))='\(v)': expected a number in \(range)")
        }
        return n
    }

    public func bool(_ key: String) throws(RPCError) -> Bool? {
        guard let v = self[key] else { return nil }
        switch v.lowercased() {
        case "1", "true", "yes", "on": return true
        case "0", "false", "no", "off": return false
        default: throw RPCError(.invalidArgument, "\(name(key))='\(v)': expected true or false")
        }
    }

    public func duration(_ key: String) throws(RPCError) -> Duration? {
        guard let v = self[key] else { return nil }
        guard let d = Self.parseDuration(v) else {
            throw RPCError(.invalidArgument, "\(name(key))='\(v)': expected a duration such as 250ms, 5s or 1m")
        }
        return d
    }

    /// `250ms`, `1.5s`, `2m`, `1h`, `0`.
    public static func parseDuration(_ text: String) -> Duration? {
        let t = text.trimming(" ")
        if t == "0" { return .zero }
        let units: [(String, Double)] = [("ms", 1e-3), ("us", 1e-6), ("s", 1), ("m", 60), ("h", 3600)]
        for (suffix, scale) in units where t.hasSuffix(suffix) {
            guard let n = Double(t.dropLast(suffix.count)), n >= 0, n.isFinite else { return nil }
            return .nanoseconds(Int64(n * scale * 1e9))
        }
        return nil
    }
}
