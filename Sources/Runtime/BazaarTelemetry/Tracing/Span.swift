import BazaarCore
import BazaarTransport
import CBazaarEvent
import Glibc

/// One operation of a trace: a call served or made. A span that is not sampled still carries
/// its context (so the trace id reaches logs and the next hop) but records nothing.
///
/// A span belongs to the task that started it; only that task sets attributes and ends it.
public final class Span: @unchecked Sendable {
    public enum Kind: Int32, Sendable {
        case internalOperation = 1
        case server = 2
        case client = 3
    }

    /// The server span of the call the current task serves (kept in the call's
    /// ``ServerContext/observation``), or else the span the task runs under (``active``), so that
    /// logs and outbound calls continue its trace.
    public static var current: Span? { (ServerContext.current?.observation as? CallRecord)?.span ?? active }

    /// A span that work outside any RPC runs under: the edge's HTTP request, with the calls it
    /// makes as its children.
    @TaskLocal public static var active: Span?

    public let context: SpanContext
    public let parentSpanID: UInt64
    /// Settable by the task that started the span: an HTTP span is named by its route, which is
    /// known only once the request has been routed.
    public var name: String
    public let kind: Kind
    let startNanos: UInt64
    private(set) var endNanos: UInt64 = 0
    private(set) var attributes: [(String, AttributeValue)] = []
    /// Spans this one relates to without being their child (see ``addLink(_:)``).
    private(set) var links: [SpanContext] = []
    private(set) var error: String?
    private let tracer: Tracer?

    public enum AttributeValue: Sendable {
        case string(String)
        case int(Int64)
    }

    init(context: SpanContext, parentSpanID: UInt64, name: String, kind: Kind, tracer: Tracer?) {
        self.context = context
        self.parentSpanID = parentSpanID
        self.name = name
        self.kind = kind
        self.tracer = context.sampled ? tracer : nil
        startNanos = context.sampled ? Span.unixNanos() : 0
        if context.sampled { recordThread(start: true) }
    }

    /// Which thread a recorded span started on (`thread.id`, `thread.name` for an event loop)
    /// and ended on (`bazaar.thread.end.id`): traces show where a call's work
    /// ran, and a hop between threads shows as the two ids differing.
    private func recordThread(start: Bool) {
        let loop = EventLoop.current
        let id = Int64(loop?.threadID ?? Int32(bazaar_thread_id()))
        if start {
            attributes.append(("thread.id", .int(id)))
            if let loop { attributes.append(("thread.name", .string("bazaar-loop-\(loop.index)"))) }
        } else {
            attributes.append(("bazaar.thread.end.id", .int(id)))
        }
    }

    public var isRecording: Bool { tracer != nil }

    public func setAttribute(_ key: String, _ value: String) {
        if isRecording { attributes.append((key, .string(value))) }
    }

    public func setAttribute(_ key: String, _ value: Int64) {
        if isRecording { attributes.append((key, .int(value))) }
    }

    /// Relates this span to another trace it does not continue: at the edge, the trace a client
    /// began (its `traceparent` does not decide what the shop records, but stays findable).
    public func addLink(_ other: SpanContext) {
        if isRecording && links.count < 8 { links.append(other) }
    }

    /// Ends the span; an error status marks it failed. Only the first call counts.
    public func end(error: String? = nil) {
        guard let tracer, endNanos == 0 else { return }
        endNanos = Span.unixNanos()
        recordThread(start: false)
        self.error = error
        tracer.exporter.enqueue(self)
    }

    static func unixNanos() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }
}

/// Starts spans for one service: ids, sampling, and where finished spans go.
public final class Tracer: Sendable {
    public let serviceName: String
    public let sampler: Sampler
    let exporter: SpanExporter
    /// Trace and span ids, without a system call each.
    private let ids = SplitMix64()

    public init(serviceName: String, sampler: Sampler, exporter: SpanExporter) {
        self.serviceName = serviceName
        self.sampler = sampler
        self.exporter = exporter
    }

    /// A span under `parent` (same trace), or the root of a new trace.
    public func startSpan(_ name: String, kind: Span.Kind, parent: SpanContext?) -> Span {
        let high = parent?.traceIDHigh ?? ids.next()
        let low = parent?.traceIDLow ?? ids.next()
        let sampled = sampler.sample(traceIDLow: low, parent: parent)
        let context = SpanContext(
            traceIDHigh: high, traceIDLow: low, spanID: ids.next(), flags: sampled ? 1 : 0,
            traceState: parent?.traceState ?? "")
        return Span(context: context, parentSpanID: parent?.spanID ?? 0, name: name, kind: kind, tracer: self)
    }
}
