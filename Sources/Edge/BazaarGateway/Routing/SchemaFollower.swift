import BazaarCore
import BazaarSchema

/// Keeps one upstream's schema installed in a gateway, so that a service needs no change to the
/// gateway: the schema is read (server reflection, or a descriptor-set file) until a read succeeds
/// (every second: the read itself connects a channel that does not keep its connections up), read
/// again whenever one of its endpoints (re)connects and every `refresh`, and installed when it
/// changed. A refused schema (a conflict with another upstream, a bad binding)
/// leaves the last good one serving; an upstream that is lost keeps its routes, and their calls
/// fail with `UNAVAILABLE` until it is back.
public struct SchemaFollower: Sendable {
    public enum Event: Sendable {
        /// A schema now serves: how many services and routes the upstream has.
        case installed(upstream: String, services: [String], routes: Int)
        /// A schema was read but not installed; the previous one (if any) still serves.
        case refused(upstream: String, reason: String)
        /// The schema could not be read; retried.
        case unreadable(upstream: String, reason: String)
    }

    public let upstream: String
    /// Reads the upstream's `FileDescriptorProto`s (dependencies first).
    public let read: @Sendable () async throws -> [[UInt8]]
    /// The endpoints that are connected now (any stable names): a new one means (re)connected.
    public let connected: @Sendable () -> Set<String>
    public var refresh: Duration = .seconds(60)
    /// How often `connected` is looked at.
    public var poll: Duration = .milliseconds(250)

    public init(
        upstream: String, read: @escaping @Sendable () async throws -> [[UInt8]],
        connected: @escaping @Sendable () -> Set<String>
    ) {
        self.upstream = upstream
        self.read = read
        self.connected = connected
    }

    /// Follows the upstream until the task is cancelled.
    public func run(into gateway: Gateway, events: @escaping @Sendable (Event) -> Void) async {
        var installed: [[UInt8]]?
        var refused: [[UInt8]]?
        var seen: Set<String> = []
        var due = ContinuousClock.now
        var failing = false
        while !Task.isCancelled {
            let now = connected()
            let reconnected = !now.subtracting(seen).isEmpty
            seen = now
            if reconnected || ContinuousClock.now >= due {
                do {
                    let files = try await read()
                    failing = false
                    // Until a schema is in, a refused one is read again soon; after, at the refresh.
                    due = ContinuousClock.now + (installed == nil ? min(refresh, .seconds(5)) : refresh)
                    if files != installed {
                        do {
                            let schema = UpstreamSchema(upstream: upstream, schema: try Schema(serializedFiles: files))
                            try gateway.install(schema)
                            installed = files
                            refused = nil
                            due = ContinuousClock.now + refresh
                            let routes = gateway.routes.routes.filter { $0.upstream == upstream }.count
                            events(
                                .installed(upstream: upstream, services: schema.services.map(\.name), routes: routes))
                        } catch {
                            // Said once per distinct schema, not at every retry.
                            if files != refused { events(.refused(upstream: upstream, reason: "\(error)")) }
                            refused = files
                        }
                    }
                } catch {
                    if !failing { events(.unreadable(upstream: upstream, reason: "\(error)")) }
                    failing = true
                    due = ContinuousClock.now + .seconds(1)
                }
            }
            try? await Task.sleep(for: poll)
        }
    }
}
