import BazaarCore
import Synchronization

/// A map that many threads read without a lock and that rarely grows: readers load the current
/// snapshot through one atomic pointer; a writer copies it, adds, and publishes the copy. Old
/// snapshots are never freed (a reader may still hold one), which is fine for what it keys: the
/// methods of a program, a bounded set.
final class PublishedTable<Value: AnyObject & Sendable>: @unchecked Sendable {
    private final class Snapshot: @unchecked Sendable {
        let map: [ObjectIdentifier: Value]
        init(_ map: [ObjectIdentifier: Value]) { self.map = map }
    }

    private let current: Atomic<UnsafeRawPointer?>
    private let writer = Lock<Void>(())

    init() {
        current = Atomic(UnsafeRawPointer(Unmanaged.passRetained(Snapshot([:])).toOpaque()))
    }

    private var snapshot: Snapshot {
        Unmanaged<Snapshot>.fromOpaque(current.load(ordering: .acquiring)!).takeUnretainedValue()
    }

    /// The value for `key`, made by `make` on first use.
    func value(for key: AnyObject, make: () -> Value) -> Value {
        let id = ObjectIdentifier(key)
        if let v = snapshot.map[id] { return v }
        return writer.withLock { _ in
            let old = snapshot
            if let v = old.map[id] { return v }
            let v = make()
            var map = old.map
            map[id] = v
            // Published, and deliberately leaked along with the old one (see above).
            current.store(UnsafeRawPointer(Unmanaged.passRetained(Snapshot(map)).toOpaque()), ordering: .releasing)
            return v
        }
    }
}

/// go-grpc-prometheus' names for a status code (`grpc_code` label).
extension StatusCode {
    var prometheusName: String {
        switch self {
        case .ok: "OK"
        case .cancelled: "Canceled"
        case .unknown: "Unknown"
        case .invalidArgument: "InvalidArgument"
        case .deadlineExceeded: "DeadlineExceeded"
        case .notFound: "NotFound"
        case .alreadyExists: "AlreadyExists"
        case .permissionDenied: "PermissionDenied"
        case .resourceExhausted: "ResourceExhausted"
        case .failedPrecondition: "FailedPrecondition"
        case .aborted: "Aborted"
        case .outOfRange: "OutOfRange"
        case .unimplemented: "Unimplemented"
        case .internal: "Internal"
        case .unavailable: "Unavailable"
        case .dataLoss: "DataLoss"
        case .unauthenticated: "Unauthenticated"
        }
    }
}

extension RPCKind {
    /// go-grpc-prometheus' `grpc_type` label.
    var prometheusType: String {
        switch self {
        case .unary: "unary"
        case .clientStreaming: "client_stream"
        case .serverStreaming: "server_stream"
        case .bidirectionalStreaming: "bidi_stream"
        }
    }
}

/// Per-method RPC metrics under go-grpc-prometheus' names, so that its dashboards work:
/// `grpc_{server,client}_started_total`, `grpc_{server,client}_handled_total{grpc_code}` and the
/// `grpc_{server,client}_handling_seconds` histogram, labelled `grpc_type`, `grpc_service`,
/// `grpc_method`. Each method's series are resolved once; a call then costs a few atomic adds.
public final class RPCMetrics: Sendable {
    final class MethodSeries: Sendable {
        let started: Counter
        let handled: [Counter]  // by status code
        let seconds: Histogram

        init(_ method: MethodDescriptor, started: MetricFamily, handled: MetricFamily, seconds: MetricFamily) {
            let labels = [method.kind.prometheusType, method.service, method.method]
            self.started = started.counter(values: labels)
            self.handled = StatusCode.allCases.map { handled.counter(values: labels + [$0.prometheusName]) }
            self.seconds = seconds.histogram(values: labels)
        }
    }

    private let started: MetricFamily
    private let handled: MetricFamily
    private let seconds: MetricFamily
    private let table = PublishedTable<MethodSeries>()

    /// - Parameter side: `server` or `client`.
    public init(registry: MetricsRegistry, side: String) {
        let labels = ["grpc_type", "grpc_service", "grpc_method"]
        let who = side == "server" ? "on the server" : "by the client"
        started = registry.family(
            "grpc_\(side)_started_total", help: "RPCs started \(who).", type: .counter, labels: labels)
        handled = registry.family(
            "grpc_\(side)_handled_total", help: "RPCs completed \(who), by status code.", type: .counter,
            labels: labels + ["grpc_code"])
        seconds = registry.family(
            "grpc_\(side)_handling_seconds", help: "Time to complete RPCs \(who), in seconds.",
            type: .histogram, labels: labels)
    }

    /// Makes every series of these methods exist now (at zero), as go-grpc-prometheus'
    /// `InitializeMetrics` does, so that rates work from the first scrape.
    public func preregister(_ methods: [MethodDescriptor]) {
        for m in methods { _ = series(m) }
    }

    func series(_ method: MethodDescriptor) -> MethodSeries {
        table.value(for: method) { MethodSeries(method, started: started, handled: handled, seconds: seconds) }
    }
}
