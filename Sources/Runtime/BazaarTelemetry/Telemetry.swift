import BazaarCore
import BazaarTransport
import Glibc
import Synchronization

/// Everything a service reports about itself: Prometheus metrics, JSON logs, and traces.
///
/// ```swift
/// let telemetry = try await Telemetry.start(service: "catalog")   // reads BAZAAR_* and OTEL_*
/// config.callObserver = telemetry.serverObserver
/// let server = try RPCServer(configuration: config, services: services)
/// let orders = try MeshChannel(target: ..., security: ..., observer: telemetry.clientObserver(upstream: "orders"))
/// ```
public final class Telemetry: Sendable {
    public let service: String
    public let registry: MetricsRegistry
    public let logger: Logger
    public let tracer: Tracer?
    public let serverMetrics: RPCMetrics
    public let clientMetrics: RPCMetrics
    /// The share of RPCs that get an access-log line (0...1).
    public let accessLogSampleRatio: Double
    let admin: AdminServer?
    private let accessSampler = SplitMix64()

    public struct Options: Sendable {
        public var metricsPort: Int? = 9464
        /// Loopback unless configured: metrics describe the process to whoever can reach them.
        public var metricsHost = "127.0.0.1"
        public var logLevel = LogLevel.info
        public var accessLogSampleRatio = 1.0
        /// `nil`: no tracing at all (no context is propagated either).
        public var tracesEndpoint: String? = "http://localhost:4317"
        public var sampler = Sampler.parentBased(root: .alwaysOn)
        public var logSink: (@Sendable (String) -> Void)?
        public init() {}
    }

    /// Starts telemetry with `options`: the admin endpoint, the transport observer, the exporter.
    /// `group` is the process's loops (the admin endpoint and the exporter's connection run on
    /// them); without one, each runs a loop of its own.
    public static func start(service: String, options: Options, group: EventLoopGroup? = nil) async throws
        -> Telemetry
    {
        let registry = MetricsRegistry()
        var admin: AdminServer?
        if let port = options.metricsPort {
            admin = try await AdminServer(registry: registry, host: options.metricsHost, port: port, group: group)
        }
        var tracer: Tracer?
        if let endpoint = options.tracesEndpoint {
            let exporter = try SpanExporter(endpoint: endpoint, serviceName: service, group: group)
            tracer = Tracer(serviceName: service, sampler: options.sampler, exporter: exporter)
        }
        let t = Telemetry(service: service, registry: registry, options: options, tracer: tracer, admin: admin)
        TransportEvents.install(TransportMetrics(registry: registry))
        // libevent's own messages (evdns: "Nameserver ... has failed") as JSON log lines too.
        let logger = t.logger
        LibraryLog.install { library, severity, message in
            let level: LogLevel =
                switch severity {
                case .debug: .debug
                case .message: .info
                case .warning: .warning
                case .error: .error
                }
            logger.log(level, message, [("library", .string(library))])
        }
        ProcessMetrics.register(in: registry)
        if let exporter = tracer?.exporter {
            registry.addCollector {
                [
                    CollectedSample(
                        name: "bazaar_spans_exported_total", help: "Spans the trace collector accepted.",
                        type: .counter,
                        value: Double(exporter.exported.count)),
                    CollectedSample(
                        name: "bazaar_spans_dropped_total",
                        help: "Spans dropped: export queue full or the collector unreachable.",
                        type: .counter, value: Double(exporter.dropped.count)),
                ]
            }
        }
        return t
    }

    /// Telemetry configured from the environment (see `docs/telemetry.md`):
    /// `BAZAAR_METRICS_PORT` (0 picks one, `off` disables), `BAZAAR_LOG_LEVEL`,
    /// `BAZAAR_ACCESS_LOG_SAMPLE`, `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_TRACES_EXPORTER=none`),
    /// `OTEL_SERVICE_NAME`, `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG`.
    public static func start(
        service: String, environment: [String: String] = currentEnvironment(), group: EventLoopGroup? = nil
    ) async throws -> Telemetry {
        try await start(
            service: environment["OTEL_SERVICE_NAME"] ?? service, options: options(from: environment), group: group)
    }

    public static func options(from env: [String: String]) throws(RPCError) -> Options {
        var o = Options()
        let bazaar = Environment(env, upstream: nil)
        if bazaar["METRICS_PORT"] == "off" {
            o.metricsPort = nil
        } else if let port = try bazaar.int("METRICS_PORT", 0...65535) {
            o.metricsPort = port
        }
        // Bound like the service (BAZAAR_HOST) unless set on its own: a service kept on loopback
        // must not publish its metrics to every interface.
        if let h = bazaar["METRICS_HOST"] ?? bazaar["HOST"] { o.metricsHost = h }
        if let l = bazaar["LOG_LEVEL"] {
            guard let level = LogLevel(name: l) else {
                throw RPCError(.invalidArgument, "BAZAAR_LOG_LEVEL='\(l)': expected debug, info, warning or error")
            }
            o.logLevel = level
        }
        o.accessLogSampleRatio = try bazaar.double("ACCESS_LOG_SAMPLE", 0...1) ?? o.accessLogSampleRatio
        if env["OTEL_TRACES_EXPORTER"] == "none" || env["OTEL_SDK_DISABLED"] == "true" {
            o.tracesEndpoint = nil
        } else if let e = env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] ?? env["OTEL_EXPORTER_OTLP_ENDPOINT"] {
            o.tracesEndpoint = e
        }
        guard let sampler = Sampler.parse(env["OTEL_TRACES_SAMPLER"], argument: env["OTEL_TRACES_SAMPLER_ARG"]) else {
            throw RPCError(
                .invalidArgument,
                "OTEL_TRACES_SAMPLER='\(env["OTEL_TRACES_SAMPLER"] ?? "")': expected always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off or parentbased_traceidratio"
            )
        }
        o.sampler = sampler
        return o
    }

    public static func currentEnvironment() -> [String: String] { ProcessEnvironment.current }

    init(service: String, registry: MetricsRegistry, options: Options, tracer: Tracer?, admin: AdminServer?) {
        self.service = service
        self.registry = registry
        logger = Logger(service: service, level: options.logLevel, sink: options.logSink)
        self.tracer = tracer
        serverMetrics = RPCMetrics(registry: registry, side: "server")
        clientMetrics = RPCMetrics(registry: registry, side: "client")
        accessLogSampleRatio = options.accessLogSampleRatio
        self.admin = admin
    }

    /// The admin endpoint's port, when it runs.
    public var metricsPort: Int? { admin?.port }

    /// For servers (``ServerConfiguration/callObserver``): metrics, a server span per call
    /// (continuing the caller's trace) and the access log. An observer rather than an
    /// interceptor: it sees every call with no async frame of its own.
    public var serverObserver: any ServerCallObserver { ServerTelemetryObserver(telemetry: self) }

    /// For ``MeshChannel``s (its `observer`): client metrics, a client span per call and the
    /// `traceparent` it sends. `upstream` names the peer in spans (`server.address`).
    public func clientObserver(upstream: String) -> any ClientCallObserver {
        ClientTelemetryObserver(telemetry: self, upstream: upstream)
    }

    /// For database pools and other clients that are not RPCs: a client span per operation, under
    /// the call being served (operations outside any call, such as background sweeps, get none).
    /// `system` is OpenTelemetry's `db.system.name` (`postgresql`), `namespace` the database.
    public func databaseObserver(system: String, namespace: String?) -> any OperationObserver {
        DatabaseTelemetryObserver(tracer: tracer, system: system, namespace: namespace)
    }

    /// Flushes spans and stops the admin endpoint.
    public func shutdown() async {
        await tracer?.exporter.shutdown()
        admin?.shutdown()
    }

    /// Whether this call or request gets an access-log line (by ``accessLogSampleRatio``), drawn
    /// from the cheap generator: `Double.random` would make a getrandom(2) call every time.
    public func sampleAccessLog() -> Bool {
        if accessLogSampleRatio >= 1 { return true }
        if accessLogSampleRatio <= 0 { return false }
        return Double(accessSampler.next() >> 11) / Double(1 << 53) < accessLogSampleRatio
    }

}

/// What telemetry keeps for one call, served or made: its metrics, start time, span, and (on the
/// server, for the access log) its head.
final class CallRecord: @unchecked Sendable {
    let series: RPCMetrics.MethodSeries
    let head: RPCCallHead?
    let start: ContinuousClock.Instant
    let span: Span?

    init(series: RPCMetrics.MethodSeries, head: RPCCallHead?, start: ContinuousClock.Instant, span: Span?) {
        self.series = series
        self.head = head
        self.start = start
        self.span = span
    }

    /// Counts the outcome, times it, and ends the span; returns the call's duration in seconds.
    func finish(_ status: RPCError) -> Double {
        let code = status.code
        let elapsed = (ContinuousClock.now - start).inSeconds
        series.handled[code.rawValue].increment()
        series.seconds.observe(elapsed)
        if let span, span.isRecording {
            span.setAttribute("rpc.grpc.status_code", Int64(code.rawValue))
            span.end(error: code == .ok ? nil : (status.message.isEmpty ? "\(code)" : status.message))
        }
        return elapsed
    }
}

extension Tracer {
    /// A span for an RPC, with OpenTelemetry's `rpc.*` attributes when it records.
    func startRPCSpan(_ method: MethodDescriptor, kind: Span.Kind, parent: SpanContext?) -> Span {
        let s = startSpan(method.spanName, kind: kind, parent: parent)
        if s.isRecording {
            s.setAttribute("rpc.system", "grpc")
            s.setAttribute("rpc.service", method.service)
            s.setAttribute("rpc.method", method.method)
        }
        return s
    }
}

/// The server side: metrics, a server span continuing the caller's trace, and the access log,
/// as a ``ServerCallObserver`` (synchronous, no async frame per call).
struct ServerTelemetryObserver: ServerCallObserver {
    let telemetry: Telemetry

    func callStarted(_ context: ServerContext) -> AnyObject? {
        // What the access log needs at the end (not the context itself: it holds this record).
        let head = RPCCallHead(
            method: context.method, metadata: context.metadata, deadline: context.deadline,
            peerIdentity: context.peerIdentity, peerAddress: context.peerAddress)
        let series = telemetry.serverMetrics.series(head.method)
        series.started.increment()
        var span: Span?
        if let tracer = telemetry.tracer {
            let parent = head.metadata["traceparent"].flatMap {
                SpanContext(traceparent: $0, tracestate: head.metadata["tracestate"])
            }
            let s = tracer.startRPCSpan(head.method, kind: .server, parent: parent)
            if s.isRecording {
                if let address = head.peerAddress { s.setAttribute("client.address", Socket.host(of: address)) }
                if let identity = head.peerIdentity { s.setAttribute("bazaar.peer.identity", identity) }
            }
            span = s
        }
        if telemetry.logger.enabled(.debug) {
            // Every header, by name; the logger redacts credentials (authorization, tokens, ...).
            var fields: [(String, LogValue)] = [("method", .string(head.method.path))]
            for (key, value) in head.metadata {
                if case .text(let text) = value { fields.append(("metadata.\(key)", .string(text))) }
            }
            telemetry.logger.log(.debug, "rpc started", fields, span: span?.context)
        }
        return CallRecord(series: series, head: head, start: .now, span: span)
    }

    func callEnded(_ observation: AnyObject?, status: RPCError) {
        guard let record = observation as? CallRecord, let head = record.head else { return }
        let code = status.code
        let elapsed = record.finish(status)
        if telemetry.logger.enabled(.info) && telemetry.sampleAccessLog() {
            var fields: [(String, LogValue)] = [
                ("kind", "access"), ("method", .string(head.method.path)), ("code", .string(code.description)),
                ("duration_ms", .double((elapsed * 1e6).rounded() / 1e3)),
            ]
            if let p = head.peerIdentity { fields.append(("peer", .string(p))) }
            if let a = head.peerAddress { fields.append(("peer_address", .string(a))) }
            telemetry.logger.log(
                code == .ok ? .info : .warning, "rpc served", fields, span: record.span?.context, checkNames: false)
        }
    }
}

extension MethodDescriptor {
    /// `pkg.Service/Method`, the span name OpenTelemetry's RPC conventions ask for.
    var spanName: String { String(path.utf8.dropFirst())! }
}

/// Database statements as client spans, children of the current server span.
struct DatabaseTelemetryObserver: OperationObserver {
    let tracer: Tracer?
    let system: String
    let namespace: String?

    func operationStarted(_ name: String, statement: String?, connectionThread: Int32) -> AnyObject? {
        guard let tracer, let parent = Span.current, parent.isRecording else { return nil }
        let s = tracer.startSpan(namespace.map { "\(name) \($0)" } ?? name, kind: .client, parent: parent.context)
        s.setAttribute("db.system.name", system)
        s.setAttribute("db.operation.name", name)
        if let namespace { s.setAttribute("db.namespace", namespace) }
        // Parameterised text only: values never reach a span.
        if let statement { s.setAttribute("db.query.text", String(statement.prefix(2048))) }
        s.setAttribute("bazaar.io.thread.id", Int64(connectionThread))
        return s
    }

    func operationEnded(_ observation: AnyObject?, error: (any Error)?) {
        guard let span = observation as? Span else { return }
        span.end(error: error.map { "\($0)" })
    }
}

/// The trace a client began, as the edge passes it to its own client span: a link, not a parent.
public enum ClientTrace {
    /// Metadata the gateway sets on its outbound call and the client observer takes off again.
    public static let metadataKey = "x-bazaar-client-traceparent"
}

/// The client side: metrics under go-grpc-prometheus' client names, a client span under the
/// current server span, and the `traceparent` that carries the trace to the next hop.
struct ClientTelemetryObserver: ClientCallObserver {
    let telemetry: Telemetry
    let upstream: String

    func callStarted(_ head: inout RPCCallHead) -> AnyObject? {
        let series = telemetry.clientMetrics.series(head.method)
        series.started.increment()
        var span: Span?
        // The edge's note of the trace its client began: kept as a link, never sent on (whether
        // or not this process traces).
        let clientTrace = head.metadata[ClientTrace.metadataKey]
        if clientTrace != nil { head.metadata.remove(ClientTrace.metadataKey) }
        if let tracer = telemetry.tracer {
            let s = tracer.startRPCSpan(head.method, kind: .client, parent: Span.current?.context)
            if s.isRecording { s.setAttribute("server.address", upstream) }
            if let clientTrace, let context = SpanContext(traceparent: clientTrace) { s.addLink(context) }
            // Sent whether sampled or not: the next hop continues the same trace.
            head.metadata.add("traceparent", s.context.traceparent)
            if !s.context.traceState.isEmpty { head.metadata.add("tracestate", s.context.traceState) }
            span = s
        }
        return CallRecord(series: series, head: nil, start: .now, span: span)
    }

    func callRouted(_ observation: AnyObject?, connectionThread: Int32) {
        guard let span = (observation as? CallRecord)?.span, span.isRecording else { return }
        span.setAttribute("bazaar.io.thread.id", Int64(connectionThread))
    }

    func callEnded(_ observation: AnyObject?, status: RPCError) {
        guard let record = observation as? CallRecord else { return }
        _ = record.finish(status)
    }
}
