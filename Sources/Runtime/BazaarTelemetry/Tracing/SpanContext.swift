import BazaarCore
import Synchronization

/// A W3C trace context: trace id, span id, flags (`traceparent`) and `tracestate`.
public struct SpanContext: Sendable, Hashable {
    public var traceIDHigh: UInt64
    public var traceIDLow: UInt64
    public var spanID: UInt64
    public var flags: UInt8
    /// The `tracestate` header as received, passed on unchanged.
    public var traceState: String

    public var sampled: Bool { flags & 1 == 1 }

    public init(traceIDHigh: UInt64, traceIDLow: UInt64, spanID: UInt64, flags: UInt8, traceState: String = "") {
        self.traceIDHigh = traceIDHigh
        self.traceIDLow = traceIDLow
        self.spanID = spanID
        self.flags = flags
        self.traceState = traceState
    }

    /// Parses `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`). Returns `nil` for anything invalid,
    /// as W3C says: the call then starts a new trace. A later version's extra fields are ignored.
    public init?(traceparent: String, tracestate: String? = nil) {
        let b = Array(traceparent.utf8)
        guard b.count >= 55, b[2] == 0x2D, b[35] == 0x2D, b[52] == 0x2D else { return nil }
        guard let version = Self.hex(b[0..<2]), version != 0xFF else { return nil }
        if version == 0 && b.count != 55 { return nil }
        if version > 0 && b.count > 55 && b[55] != 0x2D { return nil }
        guard let high = Self.hex(b[3..<19]), let low = Self.hex(b[19..<35]), let span = Self.hex(b[36..<52]),
            let flags = Self.hex(b[53..<55]), high | low != 0, span != 0
        else { return nil }
        self.init(traceIDHigh: high, traceIDLow: low, spanID: span, flags: UInt8(flags), traceState: tracestate ?? "")
    }

    /// Lower-case hex only, as the spec requires.
    private static func hex(_ s: ArraySlice<UInt8>) -> UInt64? {
        var v: UInt64 = 0
        for c in s {
            let d: UInt8
            switch c {
            case 0x30...0x39: d = c - 0x30
            case 0x61...0x66: d = c - 0x61 + 10
            default: return nil
            }
            v = v << 4 | UInt64(d)
        }
        return v
    }

    public var traceIDHex: String { Self.hex16(traceIDHigh) + Self.hex16(traceIDLow) }
    public var spanIDHex: String { Self.hex16(spanID) }

    /// The `traceparent` header value.
    public var traceparent: String {
        "00-\(traceIDHex)-\(spanIDHex)-\(flags < 16 ? "0" : "")\(String(flags, radix: 16))"
    }

    static func hex16(_ v: UInt64) -> String {
        let s = String(v, radix: 16)
        return String(repeating: "0", count: 16 - s.count) + s
    }

    var traceIDBytes: [UInt8] {
        withUnsafeBytes(of: (traceIDHigh.bigEndian, traceIDLow.bigEndian)) { Array($0) }
    }
    var spanIDBytes: [UInt8] { Self.bytes(spanID) }

    static func bytes(_ v: UInt64) -> [UInt8] {
        withUnsafeBytes(of: v.bigEndian) { Array($0) }
    }
}

/// Which traces are recorded (OpenTelemetry's samplers, as `OTEL_TRACES_SAMPLER` names them).
public indirect enum Sampler: Sendable, Equatable {
    case alwaysOn
    case alwaysOff
    /// A share of traces, decided from the trace id, so every service decides alike.
    case traceIDRatio(Double)
    /// Follow the caller's decision when there is one; otherwise `root` decides.
    case parentBased(root: Sampler)

    public func sample(traceIDLow: UInt64, parent: SpanContext?) -> Bool {
        switch self {
        case .alwaysOn: return true
        case .alwaysOff: return false
        case .traceIDRatio(let r):
            if r >= 1 { return true }
            if r <= 0 { return false }
            return traceIDLow >> 1 < UInt64(r * Double(UInt64.max >> 1))
        case .parentBased(let root):
            if let parent { return parent.sampled }
            return root.sample(traceIDLow: traceIDLow, parent: nil)
        }
    }

    /// From `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG`; unknown names are an error.
    public static func parse(_ name: String?, argument: String?) -> Sampler? {
        let ratio = argument.flatMap(Double.init).map { min(max($0, 0), 1) } ?? 1
        switch name ?? "parentbased_always_on" {
        case "always_on": return .alwaysOn
        case "always_off": return .alwaysOff
        case "traceidratio": return .traceIDRatio(ratio)
        case "parentbased_always_on": return .parentBased(root: .alwaysOn)
        case "parentbased_always_off": return .parentBased(root: .alwaysOff)
        case "parentbased_traceidratio": return .parentBased(root: .traceIDRatio(ratio))
        default: return nil
        }
    }
}
