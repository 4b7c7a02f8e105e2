import BazaarAuth
import BazaarCore
import BazaarMesh
import BazaarSchema
import BazaarTelemetry
import BazaarTransport
import Foundation
import Synchronization

/// Everything the edge needs to run: where it listens, its upstreams, the gateway's settings and
/// the front door's limits. ``fromEnvironment(_:defaultTargets:)`` reads the `BAZAAR_*` variables
/// of `docs/gateway.md`; every bad value is refused naming its variable.
public struct EdgeConfiguration: Sendable {
    /// One upstream: a name, where it is, the identity its certificate must carry, and (for a
    /// service without server reflection) its schema from a descriptor set.
    public struct Upstream: Sendable {
        public var name: String
        public var target: String
        public var identity: String
        public var descriptorFiles: [[UInt8]]?

        public init(name: String, target: String, identity: String, descriptorFiles: [[UInt8]]? = nil) {
            self.name = name
            self.target = target
            self.identity = identity
            self.descriptorFiles = descriptorFiles
        }
    }

    public var upstreams: [Upstream]
    public var settings = Gateway.Settings()
    public var http: HTTPServerConfiguration
    /// How this process secures its mesh calls (its own identity).
    public var security: TransportSecurity
    /// How often schemas are read again besides reconnections.
    public var schemaRefresh: Duration = .seconds(60)
    /// The title of the OpenAPI document.
    public var title = "Bazaar API"

    public init(upstreams: [Upstream], http: HTTPServerConfiguration, security: TransportSecurity) {
        self.upstreams = upstreams
        self.http = http
        self.security = security
    }

    /// From the environment: BAZAAR_UPSTREAMS (default: the names of `defaultTargets`) and each
    /// upstream's BAZAAR_<NAME>_TARGET (default from `defaultTargets`), _IDENTITY and _DESCRIPTORS;
    /// BAZAAR_HOST and BAZAAR_GATEWAY_PORT; the edge TLS files; tokens, limits and timeouts.
    public static func fromEnvironment(
        _ environment: [String: String] = Environment.current, defaultTargets: [(name: String, target: String)] = []
    ) throws(RPCError) -> EdgeConfiguration {
        let env = Environment(environment, upstream: nil)
        let trustDomain = env["TRUST_DOMAIN"] ?? IdentityPolicy().trustDomain
        let list = (env["UPSTREAMS"] ?? defaultTargets.map(\.name).joined(separator: ","))
            .split(whereSeparator: { $0 == "," || $0 == " " }).map(String.init)
        guard !list.isEmpty else { throw RPCError(.invalidArgument, "BAZAAR_UPSTREAMS names no upstream") }
        var upstreams: [Upstream] = []
        for name in list {
            guard name.allSatisfy({ $0.isASCII && ($0.isLowercase || $0.isNumber || $0 == "-") }),
                name.first?.isLetter == true
            else {
                throw RPCError(
                    .invalidArgument, "BAZAAR_UPSTREAMS: '\(name)' is not a name (lowercase letters, digits and '-')")
            }
            guard !upstreams.contains(where: { $0.name == name }) else {
                throw RPCError(.invalidArgument, "BAZAAR_UPSTREAMS names \(name) twice")
            }
            let key = name.uppercased().replacingOccurrences(of: "-", with: "_")
            guard let target = env["\(key)_TARGET"] ?? defaultTargets.first(where: { $0.name == name })?.target else {
                throw RPCError(
                    .invalidArgument, "upstream \(name) needs BAZAAR_\(key)_TARGET (host:port or dns:///host:port)")
            }
            var files: [[UInt8]]?
            if let path = env["\(key)_DESCRIPTORS"] {
                guard let data = FileManager.default.contents(atPath: path) else {
                    throw RPCError(.invalidArgument, "BAZAAR_\(key)_DESCRIPTORS: cannot read \(path)")
                }
                do {
                    files = try Schema(descriptorSet: Array(data)).pool.files.map { try $0.serializedBytes() }
                } catch {
                    throw RPCError(.invalidArgument, "BAZAAR_\(key)_DESCRIPTORS: \(path): \(error)")
                }
            }
            upstreams.append(
                Upstream(
                    name: name, target: target, identity: env["\(key)_IDENTITY"] ?? "spiffe://\(trustDomain)/\(name)",
                    descriptorFiles: files))
        }

        var settings = Gateway.Settings()
        settings.keys = try JWTKey.verificationKeys(env)
        settings.issuer = env["JWT_ISSUER"] ?? "bazaar"
        settings.audience = env["JWT_AUDIENCE"] ?? "bazaar"
        settings.tokenMaxLifetime = try JWT.maxLifetime(env)
        settings.corsOrigins = (env["CORS_ORIGINS"] ?? "").split(separator: ",").map { String($0).trimming(" ") }
            .filter { !$0.isEmpty }
        if let rate = try env.int("RATE_LIMIT", 1...1_000_000) { settings.rateLimit.ratePerSecond = Double(rate) }
        if let burst = try env.int("RATE_BURST", 1...1_000_000) { settings.rateLimit.burst = Double(burst) }
        if let d = try env.duration("MAX_DEADLINE") { settings.maxDeadline = d }
        if let n = try env.int("MAX_STREAMS_PER_CLIENT", 1...10_000) { settings.maxStreamsPerCaller = n }
        if let n = try env.int("CONNECT_GET_MAX_AGE", 0...86_400) { settings.connectGetMaxAge = n }
        if let n = try env.int("MAX_OPEN_STREAMS", 1...100_000) { settings.maxStreams = n }
        for entry in (env["TRUSTED_PROXIES"] ?? "").split(separator: ",").map({ String($0).trimming(" ") })
        where !entry.isEmpty {
            guard let network = IPNetwork(entry) else {
                throw RPCError(.invalidArgument, "BAZAAR_TRUSTED_PROXIES: '\(entry)' is not an address or CIDR network")
            }
            settings.trustedProxies.append(network)
        }

        var http = HTTPServerConfiguration(
            host: env["HOST"] ?? "127.0.0.1", port: try env.int("GATEWAY_PORT", 0...65535) ?? 8080)
        if let cert = env["GATEWAY_TLS_CERT"] {
            guard let key = env["GATEWAY_TLS_KEY"] else {
                throw RPCError(.invalidArgument, "BAZAAR_GATEWAY_TLS_CERT needs BAZAAR_GATEWAY_TLS_KEY")
            }
            http.tls = .edge(certificateChainFile: cert, privateKeyFile: key)
        }
        if let max = try env.int("MAX_BODY", 1...(64 << 20)) { http.maxBodySize = max }
        if let n = try env.int("MAX_CONNECTIONS", 1...1_000_000) { http.connections.maxConnections = n }
        if let n = try env.int("MAX_CONNECTIONS_PER_CLIENT", 1...1_000_000) {
            http.connections.maxConnectionsPerAddress = n
        }
        // Behind an Ingress every connection comes from the controller: the per-address limit
        // would cut the whole internet off at once.
        let proxies = settings.trustedProxies
        http.connections.isExempt = { address in proxies.contains { $0.contains(address) } }
        if let n = try env.int("MAX_STREAMS_PER_CONNECTION", 1...10_000) {
            http.http2.maxConcurrentStreams = UInt32(n)
        }
        // A request may last as long as its longest call, and the answer some time to go out.
        http.timeouts.request = settings.maxDeadline + .seconds(30)
        let timeouts: [(String, WritableKeyPath<HTTPTimeouts, Duration>)] = [
            ("HANDSHAKE_TIMEOUT", \.handshake), ("HEADER_TIMEOUT", \.header), ("BODY_TIMEOUT", \.body),
            ("IDLE_TIMEOUT", \.idle), ("WRITE_TIMEOUT", \.write), ("REQUEST_TIMEOUT", \.request),
        ]
        for (key, path) in timeouts {
            guard let d = try env.duration(key) else { continue }
            guard d > .zero else { throw RPCError(.invalidArgument, "BAZAAR_\(key) must be longer than zero") }
            http.timeouts[keyPath: path] = d
        }
        http.handleSignals = true

        var c = EdgeConfiguration(
            upstreams: upstreams, http: http,
            security: try MeshServerEnvironment.security(service: "gateway", environment: environment))
        c.settings = settings
        c.schemaRefresh = try env.duration("SCHEMA_REFRESH") ?? .seconds(60)
        guard c.schemaRefresh > .zero else {
            throw RPCError(.invalidArgument, "BAZAAR_SCHEMA_REFRESH must be longer than zero")
        }
        return c
    }
}

/// The edge gateway as a process runs it: a mesh channel per upstream (mTLS, the upstream's
/// identity required), a ``SchemaFollower`` per upstream installing what it serves, the
/// ``Gateway`` behind the HTTP front door with an access log and metrics, and readiness.
///
/// ```swift
/// let edge = try EdgeServer(configuration: try .fromEnvironment(), telemetry: telemetry)
/// try await edge.run()   // until SIGTERM: then the front door drains and the channels close
/// ```
public final class EdgeServer: Sendable {
    public let configuration: EdgeConfiguration
    public let gateway: Gateway
    let channels: [(EdgeConfiguration.Upstream, MeshChannel)]
    let server: HTTPServer
    let followers: [SchemaFollower]
    let onEvent: @Sendable (SchemaFollower.Event) -> Void
    let loops: EventLoopGroup?

    /// - Parameter group: the process's loops, for the front door and every upstream channel (a
    ///   request and the call it makes stay on one thread); without one, each runs its own.
    public init(configuration: EdgeConfiguration, telemetry: Telemetry, group: EventLoopGroup? = nil) throws {
        self.configuration = configuration
        loops = group
        var upstreams: [String: any ClientTransport] = [:]
        var channels: [(EdgeConfiguration.Upstream, MeshChannel)] = []
        for u in configuration.upstreams {
            var tls = configuration.security
            if case .mutualTLS(var t) = tls {
                t.expectedServerIdentity = u.identity
                tls = .mutualTLS(t)
            }
            let channel = try MeshChannel(
                target: u.target, security: tls, mesh: try .fromEnvironment(upstream: u.name),
                observer: telemetry.clientObserver(upstream: u.name), group: group)
            channels.append((u, channel))
            upstreams[u.name] = channel
        }
        self.channels = channels

        // Ready once every upstream's schema is in and it has had a healthy endpoint, and from then
        // on: a later outage of one service must not take the gateway (and so every route) out of
        // its load balancer; its calls fail on their own while the mesh waits for it to come back.
        let watched = channels.map(\.1)
        let schemasIn = Lock<Set<String>>([])
        let warmedUp = Atomic<Bool>(false)
        let expected = Set(configuration.upstreams.map(\.name))
        let gateway = Gateway(
            upstreams: upstreams, settings: configuration.settings, title: configuration.title,
            ready: {
                if warmedUp.load(ordering: .relaxed) { return true }
                guard schemasIn.withLock({ $0 == expected }),
                    watched.allSatisfy({ $0.endpoints.contains { $0.healthy == true } })
                else { return false }
                warmedUp.store(true, ordering: .relaxed)
                return true
            })
        self.gateway = gateway

        let schemaEvents = telemetry.registry.family(
            "bazaar_gateway_schema_events_total",
            help: "Upstream schemas installed, refused or unreadable, by upstream.",
            type: .counter, labels: ["upstream", "event"])
        let logger = telemetry.logger
        onEvent = { event in
            switch event {
            case .installed(let upstream, let services, let routes):
                schemasIn.withLock { _ = $0.insert(upstream) }
                schemaEvents.counter(upstream, "installed").increment()
                logger.info(
                    "upstream schema installed",
                    [
                        ("upstream", .string(upstream)), ("services", .string(services.joined(separator: ","))),
                        ("routes", .int(Int64(routes))),
                    ])
            case .refused(let upstream, let reason):
                schemaEvents.counter(upstream, "refused").increment()
                logger.error(
                    "upstream schema refused; the previous one (if any) still serves",
                    [("upstream", .string(upstream)), ("reason", .string(reason))])
            case .unreadable(let upstream, let reason):
                schemaEvents.counter(upstream, "unreadable").increment()
                logger.warning(
                    "cannot read the upstream's schema yet",
                    [("upstream", .string(upstream)), ("reason", .string(reason))])
            }
        }
        var followers: [SchemaFollower] = []
        for (u, channel) in channels {
            let read: @Sendable () async throws -> [[UInt8]]
            if let files = u.descriptorFiles {
                read = { files }
            } else {
                let reflection = ReflectionClient(transport: channel)
                read = {
                    try await reflection.schema(
                        skipping: UpstreamSchema.plumbing, options: CallOptions(timeout: .seconds(10))
                    ).files
                }
            }
            var follower = SchemaFollower(
                upstream: u.name, read: read,
                connected: {
                    Set(
                        channel.endpoints.filter { $0.state == .ready || $0.healthy == true }.map {
                            $0.endpoint.description
                        })
                })
            follower.refresh = configuration.schemaRefresh
            followers.append(follower)
        }
        self.followers = followers

        telemetry.registry.addCollector {
            [
                CollectedSample(
                    name: "bazaar_gateway_open_streams",
                    help: "Streams (SSE, NDJSON, streaming gRPC) open through the gateway.",
                    type: .gauge, value: Double(gateway.openStreams))
            ]
        }
        server = try HTTPServer(
            configuration: configuration.http, responder: AccessLog(next: gateway, telemetry: telemetry), group: group)
    }

    /// The channel to an upstream, by name (for the application's own calls, e.g. revocations).
    public func upstream(_ name: String) -> (any ClientTransport)? { channels.first { $0.0.name == name }?.1 }

    /// Serves until SIGTERM, SIGINT or cancellation; `background` work (and the schema followers)
    /// run for as long as the front door does. The channels are closed at the end.
    public func run(background: [@Sendable () async -> Void] = [], onListening: @Sendable (Int) -> Void = { _ in })
        async throws
    {
        let followers = self.followers
        let gateway = self.gateway
        let onEvent = self.onEvent
        let loops = self.loops
        try await withThrowingTaskGroup(of: Void.self) { group in
            // On the process's loops when it has them: their calls then need no hop either.
            for f in followers {
                group.addTask(executorPreference: loops?.nextLoop()) { await f.run(into: gateway, events: onEvent) }
            }
            for job in background { group.addTask(executorPreference: loops?.nextLoop()) { await job() } }
            try await server.run(onListening: onListening)
            group.cancelAll()
        }
        for (_, c) in channels { await c.shutdown() }
    }
}
