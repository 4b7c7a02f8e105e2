import BazaarCore
import GRPCProtos
import Synchronization

/// `grpc.health.v1.Health`: Check and Watch, with a status per service that the application sets.
///
/// The overall status (service name `""`) starts SERVING. When the server begins a graceful
/// shutdown every status turns NOT_SERVING and stays so, which Kubernetes' gRPC probes and the
/// mesh's health-checking clients see before any connection is told to go away. Watches then end
/// (after sending NOT_SERVING), so that a long-lived watch does not hold the drain open until its
/// timeout; clients watch again with backoff, and get NOT_SERVING and the end at once.
public final class HealthService: Grpc_Health_V1_Health.ServiceProtocol, ServerDrainObserver {
    public typealias Status = Grpc_Health_V1_HealthCheckResponse.ServingStatus

    private struct State {
        var statuses: [String: Status] = [:]
        var watchers: [UInt64: (service: String, continuation: AsyncStream<Status>.Continuation)] = [:]
        var nextWatcher: UInt64 = 0
        var draining = false
    }

    private let state = Lock(State())

    /// - Parameter services: service names (e.g. `shop.v1.CatalogService`) that start SERVING
    ///   along with the overall status.
    public init(services: [String] = []) {
        state.withLock { s in
            s.statuses[""] = .serving
            for name in services { s.statuses[name] = .serving }
        }
    }

    /// Sets the status of one service (`""` for the whole server) and tells its watchers. After a
    /// drain has begun nothing turns SERVING again.
    public func setStatus(_ status: Status, for service: String = "") {
        let notify = state.withLock { s -> [AsyncStream<Status>.Continuation] in
            let status = s.draining && status == .serving ? .notServing : status
            guard s.statuses[service] != status else { return [] }
            s.statuses[service] = status
            return s.watchers.values.filter { $0.service == service }.map(\.continuation)
        }
        for c in notify { c.yield(status) }
    }

    /// The current status of a service, if it is known.
    public func status(of service: String = "") -> Status? { state.withLock { $0.statuses[service] } }

    public func serverWillDrain() {
        let changed = state.withLock { s -> [AsyncStream<Status>.Continuation] in
            s.draining = true
            for key in s.statuses.keys { s.statuses[key] = .notServing }
            return s.watchers.values.map(\.continuation)
        }
        for c in changed {
            c.yield(.notServing)
            c.finish()
        }
    }

    public func check(_ request: Grpc_Health_V1_HealthCheckRequest, context: ServerContext) async throws
        -> Grpc_Health_V1_HealthCheckResponse
    {
        guard let status = status(of: request.service) else {
            throw RPCError(.notFound, "unknown service '\(request.service)'")
        }
        return Grpc_Health_V1_HealthCheckResponse(status: status)
    }

    public func watch(
        _ request: Grpc_Health_V1_HealthCheckRequest, responses: RPCWriter<Grpc_Health_V1_HealthCheckResponse>,
        context: ServerContext
    ) async throws {
        // Newest value wins: a slow watcher skips statuses it no longer needs.
        let (updates, continuation) = AsyncStream<Status>.makeStream(bufferingPolicy: .bufferingNewest(1))
        let id = state.withLock { s -> UInt64 in
            s.nextWatcher += 1
            s.watchers[s.nextWatcher] = (request.service, continuation)
            continuation.yield(s.statuses[request.service] ?? .serviceUnknown)
            if s.draining { continuation.finish() }
            return s.nextWatcher
        }
        defer { _ = state.withLock { $0.watchers.removeValue(forKey: id) } }
        try await withTaskCancellationHandler {
            var last: Status?
            for await status in updates where status != last {
                last = status
                try await responses.write(Grpc_Health_V1_HealthCheckResponse(status: status))
            }
        } onCancel: {
            continuation.finish()
        }
        // A watch ends when the caller goes away, or with OK when the server drains.
        if Task.isCancelled { throw RPCError(.cancelled, "watch cancelled") }
    }
}
