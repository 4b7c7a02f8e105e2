import BazaarCore
import BazaarTransport
import OTLPProtos
import Synchronization

/// Collects finished spans and sends them in batches over OTLP/gRPC
/// (`opentelemetry.proto.collector.trace.v1.TraceService/Export`), to the OpenTelemetry Collector,
/// Jaeger or anything else that speaks it.
///
/// Ending a span never waits: it is appended to a bounded queue. A background task sends a batch
/// every `interval`, or sooner when `batchSize` spans wait. When the queue is full or an export
/// fails (the collector is down), spans are dropped and counted in `dropped`.
public final class SpanExporter: Sendable {
    public let endpoint: String
    let resource: Opentelemetry_Proto_Resource_V1_Resource
    private let queue = Lock<[Span]>([])
    private let capacity: Int
    private let batchSize: Int
    private let interval: Duration
    private let channel: GRPCChannel?
    private let task = Lock<Task<Void, Never>?>(nil)
    /// The export task's wake-up: a waiting continuation, or a wake-up that came first.
    private let wake = Lock<(waiting: CheckedContinuation<Void, Never>?, pending: Bool)>((nil, false))
    /// Spans dropped: queue full, or their export failed.
    public let dropped = Counter()
    /// Spans the collector accepted.
    public let exported = Counter()

    /// - Parameters:
    ///   - endpoint: `http://host:4317` (h2c) or `https://host:4317` (TLS with `tls`); `nil` keeps
    ///     spans nowhere (they are counted as dropped).
    ///   - group: the process's loops, for the connection to the collector; by default its own.
    public init(
        endpoint: String?, serviceName: String, tls: TLSConfiguration? = nil, capacity: Int = 4096,
        batchSize: Int = 512, interval: Duration = .seconds(1), group: EventLoopGroup? = nil
    ) throws {
        self.endpoint = endpoint ?? ""
        self.capacity = capacity
        self.batchSize = batchSize
        self.interval = interval
        resource = Opentelemetry_Proto_Resource_V1_Resource(attributes: [
            .init(key: "service.name", value: .init(value: .stringValue(serviceName))),
            .init(key: "telemetry.sdk.name", value: .init(value: .stringValue("bazaar"))),
            .init(key: "telemetry.sdk.language", value: .init(value: .stringValue("swift"))),
        ])
        if let endpoint {
            var text = Substring(endpoint)
            var secure = false
            if text.hasPrefix("https://") {
                text = text.dropFirst(8)
                secure = true
            } else if text.hasPrefix("http://") {
                text = text.dropFirst(7)
            }
            while text.hasSuffix("/") { text = text.dropLast() }
            guard let e = Endpoint(String(text)) else {
                throw RPCError(
                    .invalidArgument,
                    "OTEL_EXPORTER_OTLP_ENDPOINT='\(endpoint)': expected http://host:port or https://host:port")
            }
            var config = ChannelConfiguration(
                endpoints: [e],
                security: secure ? .mutualTLS(tls ?? TLSConfiguration(requireClientCertificate: false)) : .plaintext)
            // A collector that is down must not be hammered: keep retrying slowly.
            config.backoff.maximum = .seconds(30)
            channel = try GRPCChannel(configuration: config, group: group)
        } else {
            channel = nil
        }
        let t = Task.detached { [weak self] in _ = await self?.run() }
        task.withLock { $0 = t }
    }

    /// Sends what is queued and stops the background task. The exporter otherwise lives as long
    /// as the process.
    public func shutdown() async {
        task.withLock { $0?.cancel() }
        signal()  // let the export task see the cancellation
        await exportBatch()
        await channel?.shutdown()
    }

    func enqueue(_ span: Span) {
        let (accepted, full) = queue.withLock { q -> (Bool, Bool) in
            guard q.count < capacity else { return (false, false) }
            q.append(span)
            return (true, q.count >= batchSize)
        }
        if !accepted { dropped.increment() }
        if full { signal() }
    }

    /// Sends what is queued now, and waits for the answer (for shutdown).
    public func flush() async {
        await exportBatch()
    }

    private func signal() {
        let c = wake.withLock { w -> CheckedContinuation<Void, Never>? in
            if let c = w.waiting {
                w.waiting = nil
                return c
            }
            w.pending = true
            return nil
        }
        c?.resume()
    }

    private func waitForWake() async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let now = wake.withLock { w -> Bool in
                if w.pending {
                    w.pending = false
                    return true
                }
                w.waiting = c
                return false
            }
            if now { c.resume() }
        }
    }

    private func run() async {
        while !Task.isCancelled {
            // Sleep for the interval, or until a full batch wakes us. A wake-up that arrives
            // before the wait is kept (`pending`), so none is lost.
            let timer = Task.detached { [interval] in
                try? await Task.sleep(for: interval)
                if !Task.isCancelled { self.signal() }
            }
            await waitForWake()
            timer.cancel()
            await exportBatch()
        }
    }

    private func exportBatch() async {
        let spans = queue.withLock { q -> [Span] in
            let batch = Array(q.prefix(batchSize))
            q.removeFirst(batch.count)
            return batch
        }
        guard !spans.isEmpty else { return }
        guard let channel else {
            dropped.increment(by: UInt64(spans.count))
            return
        }
        let request = Opentelemetry_Proto_Collector_Trace_V1_ExportTraceServiceRequest(resourceSpans: [
            .init(
                resource: resource,
                scopeSpans: [.init(scope: .init(name: "bazaar", version: "0.1"), spans: spans.map(Self.encode))])
        ])
        do {
            let reply = try await Opentelemetry_Proto_Collector_Trace_V1_TraceService.Client(transport: channel)
                .export(request, options: CallOptions(timeout: .seconds(5)))
            let rejected = UInt64(max(reply.partialSuccess?.rejectedSpans ?? 0, 0))
            exported.increment(by: UInt64(spans.count) - min(rejected, UInt64(spans.count)))
            dropped.increment(by: rejected)
        } catch {
            dropped.increment(by: UInt64(spans.count))
        }
    }

    static func encode(_ span: Span) -> Opentelemetry_Proto_Trace_V1_Span {
        var s = Opentelemetry_Proto_Trace_V1_Span()
        s.traceID = span.context.traceIDBytes
        s.spanID = span.context.spanIDBytes
        s.traceState = span.context.traceState
        if span.parentSpanID != 0 { s.parentSpanID = SpanContext.bytes(span.parentSpanID) }
        s.name = span.name
        s.kind = span.kind == .server ? .server : span.kind == .client ? .client : .internal
        s.startTimeUnixNano = span.startNanos
        s.endTimeUnixNano = span.endNanos
        s.flags = UInt32(span.context.flags)
        s.attributes = span.attributes.map { key, value in
            switch value {
            case .string(let v): .init(key: key, value: .init(value: .stringValue(v)))
            case .int(let v): .init(key: key, value: .init(value: .intValue(v)))
            }
        }
        s.links = span.links.map { l in
            var link = Opentelemetry_Proto_Trace_V1_Span.Link()
            link.traceID = l.traceIDBytes
            link.spanID = l.spanIDBytes
            link.traceState = l.traceState
            link.flags = UInt32(l.flags)
            return link
        }
        if let error = span.error {
            s.status = .init(message: error, code: .error)
        }
        return s
    }
}
