import BazaarCore
import Synchronization

/// A counter, gauge or histogram sample set, as Prometheus sees it.
public enum MetricType: String, Sendable {
    case counter
    case gauge
    case histogram
}

/// A monotonically increasing count. Adding is one relaxed atomic add: no lock.
public final class Counter: Sendable {
    private let value = Atomic<UInt64>(0)
    public init() {}
    @inline(__always) public func increment(by n: UInt64 = 1) { value.add(n, ordering: .relaxed) }
    public var count: UInt64 { value.load(ordering: .relaxed) }
}

/// A value that goes up and down.
public final class Gauge: Sendable {
    private let value = Atomic<Int64>(0)
    public init() {}
    public func set(_ v: Int64) { value.store(v, ordering: .relaxed) }
    public func add(_ d: Int64) { value.add(d, ordering: .relaxed) }
    public var current: Int64 { value.load(ordering: .relaxed) }
}

/// A histogram with fixed bucket bounds: counts per bucket and a sum, each an atomic.
public final class Histogram: Sendable {
    public let bounds: [Double]
    private final class Cell: Sendable { let v = Atomic<UInt64>(0) }
    private let buckets: [Cell]  // one per bound, plus +Inf
    // The sum in billionths (nanoseconds for durations in seconds): an integer, so one atomic add.
    private let sumNanos = Atomic<UInt64>(0)

    /// gRPC's usual latency buckets, in seconds (go-grpc-prometheus's defaults).
    public static let latencyBounds: [Double] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]

    public init(bounds: [Double] = Histogram.latencyBounds) {
        self.bounds = bounds.sorted()
        buckets = (0...bounds.count).map { _ in Cell() }
    }

    public func observe(_ value: Double) {
        var i = 0
        while i < bounds.count && value > bounds[i] { i += 1 }
        buckets[i].v.add(1, ordering: .relaxed)
        if value > 0 { sumNanos.add(UInt64(value * 1e9), ordering: .relaxed) }
    }

    /// Cumulative counts per bound (the last is +Inf, the total), and the sum.
    public func snapshot() -> (cumulative: [UInt64], sum: Double) {
        var running: UInt64 = 0
        var out: [UInt64] = []
        for b in buckets {
            running += b.v.load(ordering: .relaxed)
            out.append(running)
        }
        return (out, Double(sumNanos.load(ordering: .relaxed)) / 1e9)
    }
}

/// One metric name with its help text, type and label names; its series by label values.
public final class MetricFamily: Sendable {
    public let name: String
    public let help: String
    public let type: MetricType
    public let labelNames: [String]
    let bounds: [Double]
    private struct Series {
        var list: [(labels: [String], metric: AnyObject & Sendable)] = []
        var index: [[String]: Int] = [:]
    }
    private let series = Lock(Series())

    init(name: String, help: String, type: MetricType, labelNames: [String], bounds: [Double]) {
        self.name = name
        self.help = help
        self.type = type
        self.labelNames = labelNames
        self.bounds = bounds
    }

    /// The series for these label values, made on first use. Look series up once and keep them:
    /// this takes a lock.
    func metric<M: AnyObject & Sendable>(_ values: [String], make: () -> M) -> M {
        precondition(values.count == labelNames.count, "\(name) takes labels \(labelNames)")
        return series.withLock { s in
            if let i = s.index[values] { return s.list[i].metric as! M }
            let m = make()
            s.index[values] = s.list.count
            s.list.append((values, m))
            return m
        }
    }

    public func counter(_ values: String...) -> Counter { metric(values) { Counter() } }
    public func counter(values: [String]) -> Counter { metric(values) { Counter() } }
    public func gauge(_ values: String...) -> Gauge { metric(values) { Gauge() } }
    public func histogram(_ values: String...) -> Histogram { metric(values) { Histogram(bounds: bounds) } }
    public func histogram(values: [String]) -> Histogram { metric(values) { Histogram(bounds: bounds) } }

    var allSeries: [(labels: [String], metric: AnyObject & Sendable)] { series.withLock { $0.list } }
}

/// A sample computed when scraped (process statistics, connection counts).
public struct CollectedSample: Sendable {
    public var name: String
    public var help: String
    public var type: MetricType
    public var labels: [(String, String)]
    public var value: Double

    public init(name: String, help: String, type: MetricType, labels: [(String, String)] = [], value: Double) {
        self.name = name
        self.help = help
        self.type = type
        self.labels = labels
        self.value = value
    }
}

/// The metrics of a process, exposed in Prometheus' text format by ``exposition()``.
///
/// Recording never takes a lock: callers resolve their series once (at startup, or per method on
/// first use) and then only add to atomics. Scrapes take the registry's locks.
public final class MetricsRegistry: Sendable {
    private let families = Lock<[MetricFamily]>([])
    private let collectors = Lock<[@Sendable () -> [CollectedSample]]>([])

    public init() {}

    /// The family of this name, made on first use (name, type and labels must then agree).
    public func family(
        _ name: String, help: String, type: MetricType, labels: [String] = [],
        bounds: [Double] = Histogram.latencyBounds
    ) -> MetricFamily {
        families.withLock { list in
            if let f = list.first(where: { $0.name == name }) {
                precondition(f.type == type && f.labelNames == labels, "metric \(name) registered twice, differently")
                return f
            }
            let f = MetricFamily(name: name, help: help, type: type, labelNames: labels, bounds: bounds)
            list.append(f)
            return f
        }
    }

    /// Adds samples computed at each scrape.
    public func addCollector(_ collect: @escaping @Sendable () -> [CollectedSample]) {
        collectors.withLock { $0.append(collect) }
    }

    /// Prometheus text exposition format 0.0.4.
    public func exposition() -> String {
        var out = ""
        for f in families.withLock({ $0 }) {
            out += "# HELP \(f.name) \(Self.escapeHelp(f.help))\n# TYPE \(f.name) \(f.type.rawValue)\n"
            for (values, metric) in f.allSeries {
                let labels = zip(f.labelNames, values).map { ($0, $1) }
                switch metric {
                case let c as Counter: out += Self.line(f.name, labels, Double(c.count))
                case let g as Gauge: out += Self.line(f.name, labels, Double(g.current))
                case let h as Histogram:
                    let (cumulative, sum) = h.snapshot()
                    for (i, bound) in h.bounds.enumerated() {
                        out += Self.line(
                            f.name + "_bucket", labels + [("le", Self.number(bound))], Double(cumulative[i]))
                    }
                    out += Self.line(f.name + "_bucket", labels + [("le", "+Inf")], Double(cumulative.last!))
                    out += Self.line(f.name + "_sum", labels, sum)
                    out += Self.line(f.name + "_count", labels, Double(cumulative.last!))
                default: break
                }
            }
        }
        var seen: Set<String> = []
        for collect in collectors.withLock({ $0 }) {
            for s in collect() {
                if seen.insert(s.name).inserted {
                    out += "# HELP \(s.name) \(Self.escapeHelp(s.help))\n# TYPE \(s.name) \(s.type.rawValue)\n"
                }
                out += Self.line(s.name, s.labels, s.value)
            }
        }
        return out
    }

    static func line(_ name: String, _ labels: [(String, String)], _ value: Double) -> String {
        var s = name
        if !labels.isEmpty {
            s += "{" + labels.map { "\($0.0)=\"\(escapeLabel($0.1))\"" }.joined(separator: ",") + "}"
        }
        return s + " " + number(value) + "\n"
    }

    static func number(_ v: Double) -> String {
        if v.isNaN { return "NaN" }
        if v.isInfinite { return v > 0 ? "+Inf" : "-Inf" }
        if v == v.rounded() && abs(v) < 1e15 { return String(Int64(v)) }
        return "\(v)"
    }

    static func escapeLabel(_ s: String) -> String {
        var out = ""
        for c in s {
            switch c {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "\n": out += "\\n"
            default: out.append(c)
            }
        }
        return out
    }

    static func escapeHelp(_ s: String) -> String {
        s.replacingAll("\\", "\\\\").replacingAll("\n", "\\n")
    }
}

extension String {
    func replacingAll(_ a: Character, _ b: String) -> String {
        var out = ""
        for c in self { if c == a { out += b } else { out.append(c) } }
        return out
    }
}
