import ArgumentParser
import BazaarAuth
import BazaarCore
import BazaarGateway
import BazaarMesh
import BazaarSchema
import BazaarTelemetry
import BazaarTransport
import Foundation
import ShopAPI
import ShopKit
import Synchronization

/// The shop's services as compiled into this program: for `--openapi` (docs/openapi.json) only;
/// the running gateway learns them from the services themselves.
let shopServices = ShopService.allCases.map(\.descriptor)

/// `bazaar gateway`: the edge gateway in front of the shop.
struct GatewayCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gateway",
        abstract:
            "Serve the services' REST/JSON API (routes learned from their IDL by reflection) and call them over the mesh.",
        discussion: """
            HTTP/1.1 and HTTP/2 on one port: HTTPS with BAZAAR_GATEWAY_TLS_CERT and BAZAAR_GATEWAY_TLS_KEY (ALPN h2 or \
            http/1.1), otherwise plaintext HTTP/1.1 and h2c. \
            Upstreams: BAZAAR_UPSTREAMS names them (default catalog,accounts,cart,orders,notifications); for each NAME, \
            BAZAAR_<NAME>_TARGET (host:port or dns:///name:port; the shop's default to 127.0.0.1:9101-9105), \
            BAZAAR_<NAME>_IDENTITY (default spiffe://<trust domain>/<name>) and, for a service without server reflection, \
            BAZAAR_<NAME>_DESCRIPTORS (a FileDescriptorSet file). Each upstream's services, routes and JSON mapping are read \
            through server reflection when it comes up, again when it reconnects and every BAZAAR_SCHEMA_REFRESH (60s); \
            a new service needs no change here. Calls go over mutual TLS as `gateway` (BAZAAR_TLS_DIR). Tokens: BAZAAR_JWT_PUBLIC_KEY, BAZAAR_JWT_ISSUER, BAZAAR_JWT_AUDIENCE. \
            Limits: BAZAAR_RATE_LIMIT (requests per second per user or address, default 50), BAZAAR_RATE_BURST (100), \
            BAZAAR_AUTH_RATE_LIMIT and BAZAAR_AUTH_RATE_BURST (1 and 20: sign-up, sign-in, password changes), \
            BAZAAR_TRUSTED_PROXIES (CIDRs whose X-Forwarded-For names the client address, e.g. the Ingress controller's), \
            BAZAAR_MAX_BODY (bytes, 1 MiB), BAZAAR_MAX_DEADLINE (30s), BAZAAR_MAX_CONNECTIONS (10000), \
            BAZAAR_MAX_CONNECTIONS_PER_CLIENT (256; trusted proxies are exempt), BAZAAR_MAX_STREAMS_PER_CONNECTION (100), \
            BAZAAR_MAX_STREAMS_PER_CLIENT (8 open SSE/NDJSON/gRPC streams per user or address), BAZAAR_MAX_OPEN_STREAMS (512). \
            Timeouts: BAZAAR_HANDSHAKE_TIMEOUT (10s), BAZAAR_HEADER_TIMEOUT (10s), BAZAAR_BODY_TIMEOUT (30s), \
            BAZAAR_IDLE_TIMEOUT (60s), BAZAAR_WRITE_TIMEOUT (30s), BAZAAR_REQUEST_TIMEOUT (the longest deadline + 30s). \
            BAZAAR_CORS_ORIGINS: comma-separated origins (or *). BAZAAR_REVOCATION_POLL (1s): how often revoked \
            tokens are fetched from accounts. \
            --openapi prints the OpenAPI 3.1 document of the shop's compiled services instead of serving.
            """)

    @Option(help: "Address to bind (BAZAAR_HOST).") var host: String?
    @Option(help: "Port (BAZAAR_GATEWAY_PORT, default 8080; 0 picks one).") var port: Int?
    @Flag(help: "Print the OpenAPI document and exit.") var openapi = false

    func run() throws {
        if openapi {
            let table = try RouteTable(services: shopServices)
            print(OpenAPI.document(routes: table, title: "Bazaar shop API").text)
            return
        }
        let env = ShopEnvironment(ProcessEnvironment.current)
        let host = self.host ?? env["HOST"] ?? "127.0.0.1"
        let port = try self.port ?? env.int("GATEWAY_PORT", 0...65535) ?? 8080
        try runBlocking {
            do {
                try await Self.serve(env: env, host: host, port: port)
            } catch let e as RPCError {
                diagnostic("bazaar: gateway cannot start: \(e.message)")
                throw ExitCode.failure
            } catch let e as RouteTable.BuildError {
                diagnostic("bazaar: gateway cannot start: \(e.description)")
                throw ExitCode.failure
            }
        }
    }

    static func serve(env: ShopEnvironment, host: String, port: Int) async throws {
        let telemetry = try await Telemetry.start(service: "gateway")
        let security = try MeshServerEnvironment.security(service: "gateway")
        let configured = try Self.upstreams(env)
        var upstreams: [String: any ClientTransport] = [:]
        var channels: [(Upstream, MeshChannel)] = []
        for u in configured {
            var tls = security
            if case .mutualTLS(var t) = security {
                t.expectedServerIdentity = u.identity
                tls = .mutualTLS(t)
            }
            let channel = try MeshChannel(
                target: u.target, security: tls, mesh: try .fromEnvironment(upstream: u.name),
                observer: telemetry.clientObserver(upstream: u.name))
            channels.append((u, channel))
            upstreams[u.name] = channel
        }
        var settings = Gateway.Settings()
        settings.keys = try env.verificationKeys()
        settings.issuer = env["JWT_ISSUER"] ?? "bazaar"
        settings.audience = env["JWT_AUDIENCE"] ?? "bazaar"
        settings.tokenMaxLifetime = try env.tokenMaxLifetime()
        settings.corsOrigins = (env["CORS_ORIGINS"] ?? "").split(separator: ",").map { String($0).trimming(" ") }.filter
        { !$0.isEmpty }
        if let rate = try env.int("RATE_LIMIT", 1...1_000_000) { settings.rateLimit.ratePerSecond = Double(rate) }
        if let burst = try env.int("RATE_BURST", 1...1_000_000) { settings.rateLimit.burst = Double(burst) }
        if let d = try env.duration("MAX_DEADLINE") { settings.maxDeadline = d }
        if let n = try env.int("MAX_STREAMS_PER_CLIENT", 1...10_000) { settings.maxStreamsPerCaller = n }
        if let n = try env.int("MAX_OPEN_STREAMS", 1...100_000) { settings.maxStreams = n }
        // Password checks cost tens of milliseconds of CPU each: sign-up, sign-in and password
        // changes get a bucket of their own, tighter than the rest.
        var passwords = RateLimit(ratePerSecond: 1, burst: 20)
        if let rate = try env.int("AUTH_RATE_LIMIT", 1...1_000_000) { passwords.ratePerSecond = Double(rate) }
        if let burst = try env.int("AUTH_RATE_BURST", 1...1_000_000) { passwords.burst = Double(burst) }
        for method in ["Register", "Login", "ChangePassword"] {
            settings.routeRateLimits["/shop.v1.AccountsService/\(method)"] = passwords
        }
        for entry in (env["TRUSTED_PROXIES"] ?? "").split(separator: ",").map({ String($0).trimming(" ") })
        where !entry.isEmpty {
            guard let network = IPNetwork(entry) else {
                throw RPCError(.invalidArgument, "BAZAAR_TRUSTED_PROXIES: '\(entry)' is not an address or CIDR network")
            }
            settings.trustedProxies.append(network)
        }
        // Ready once every upstream's schema is in and it has had a healthy endpoint, and from then
        // on: a later outage of one service must not take the gateway (and so every route) out of
        // its load balancer; its calls fail on their own while the mesh waits for it to come back.
        let watched = channels.map(\.1)
        let schemasIn = Lock<Set<String>>([])
        let warmedUp = Atomic<Bool>(false)
        let expected = Set(configured.map(\.name))
        let gateway = Gateway(
            upstreams: upstreams, settings: settings, title: "Bazaar shop API",
            ready: {
                if warmedUp.load(ordering: .relaxed) { return true }
                guard schemasIn.withLock({ $0 == expected }),
                    watched.allSatisfy({ $0.endpoints.contains { $0.healthy == true } })
                else { return false }
                warmedUp.store(true, ordering: .relaxed)
                return true
            })
        let schemaEvents = telemetry.registry.family(
            "bazaar_gateway_schema_events_total",
            help: "Upstream schemas installed, refused or unreadable, by upstream.",
            type: .counter, labels: ["upstream", "event"])
        let logger = telemetry.logger
        let onEvent: @Sendable (SchemaFollower.Event) -> Void = { event in
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
        let refresh = try env.duration("SCHEMA_REFRESH") ?? .seconds(60)
        guard refresh > .zero else {
            throw RPCError(.invalidArgument, "BAZAAR_SCHEMA_REFRESH must be longer than zero")
        }
        for (u, channel) in channels {
            let read: @Sendable () async throws -> [[UInt8]]
            if let files = u.descriptorFiles {
                read = { files }
            } else {
                let reflection = ReflectionClient(transport: channel)
                read = { try await reflection.schema(options: CallOptions(timeout: .seconds(10))).files }
            }
            var follower = SchemaFollower(
                upstream: u.name, read: read,
                connected: {
                    Set(
                        channel.endpoints.filter { $0.state == .ready || $0.healthy == true }.map {
                            $0.endpoint.description
                        })
                })
            follower.refresh = refresh
            followers.append(follower)
        }
        telemetry.registry.addCollector {
            [
                CollectedSample(
                    name: "bazaar_gateway_open_streams",
                    help: "Streams (SSE, NDJSON, streaming gRPC) open through the gateway.",
                    type: .gauge, value: Double(gateway.openStreams))
            ]
        }
        var config = HTTPServerConfiguration(host: host, port: port)
        if let cert = env["GATEWAY_TLS_CERT"] {
            guard let key = env["GATEWAY_TLS_KEY"] else {
                throw RPCError(.invalidArgument, "BAZAAR_GATEWAY_TLS_CERT needs BAZAAR_GATEWAY_TLS_KEY")
            }
            config.tls = .edge(certificateChainFile: cert, privateKeyFile: key)
        }
        if let max = try env.int("MAX_BODY", 1...(64 << 20)) { config.maxBodySize = max }
        try Self.applyLimits(env, settings: settings, to: &config)
        config.handleSignals = true
        let server = try HTTPServer(configuration: config, responder: AccessLog(next: gateway, telemetry: telemetry))
        let protocols = config.tls == nil ? "http, h2c" : "https: h2, http/1.1"
        if let port = telemetry.metricsPort { diagnostic("bazaar: gateway metrics on port \(port)") }
        let poll = try env.duration("REVOCATION_POLL") ?? .seconds(1)
        guard poll > .zero else { throw RPCError(.invalidArgument, "BAZAAR_REVOCATION_POLL must be longer than zero") }
        let accounts = upstreams["accounts"].map { Shop_V1_AccountsService.Client(transport: $0) }
        if accounts == nil {
            telemetry.logger.warning("no upstream named accounts: token revocations are not followed")
        }
        try await withThrowingTaskGroup(of: Void.self) { group in
            // Schemas and revocations follow the server's life: they stop when it has drained.
            for f in followers { group.addTask { await f.run(into: gateway, events: onEvent) } }
            if let accounts {
                group.addTask {
                    await Self.followRevocations(
                        gateway.revocations, from: accounts, every: poll, logger: telemetry.logger)
                }
            }
            try await server.run { p in
                diagnostic("bazaar: gateway listening on \(host):\(p) (\(protocols))")
            }
            group.cancelAll()
        }
        for (_, c) in channels { await c.shutdown() }
        await telemetry.shutdown()
        diagnostic("bazaar: gateway shut down cleanly")
    }
}

/// One configured upstream of the gateway.
struct Upstream: Sendable {
    var name: String
    var target: String
    /// The SPIFFE identity its certificate must carry.
    var identity: String
    /// Its schema from a descriptor-set file instead of server reflection.
    var descriptorFiles: [[UInt8]]?
}

extension GatewayCommand {
    /// BAZAAR_UPSTREAMS and each upstream's settings; every problem names its variable.
    static func upstreams(_ env: ShopEnvironment) throws -> [Upstream] {
        let list = (env["UPSTREAMS"] ?? ShopService.allCases.map(\.rawValue).joined(separator: ","))
            .split(whereSeparator: { $0 == "," || $0 == " " }).map(String.init)
        guard !list.isEmpty else { throw RPCError(.invalidArgument, "BAZAAR_UPSTREAMS names no upstream") }
        var out: [Upstream] = []
        for name in list {
            guard name.allSatisfy({ $0.isASCII && ($0.isLowercase || $0.isNumber || $0 == "-") }),
                name.first?.isLetter == true
            else {
                throw RPCError(
                    .invalidArgument, "BAZAAR_UPSTREAMS: '\(name)' is not a name (lowercase letters, digits and '-')")
            }
            guard !out.contains(where: { $0.name == name }) else {
                throw RPCError(.invalidArgument, "BAZAAR_UPSTREAMS names \(name) twice")
            }
            let key = name.uppercased().replacingOccurrences(of: "-", with: "_")
            let fallback = ShopService(rawValue: name).map { "127.0.0.1:\($0.defaultPort)" }
            guard let target = env["\(key)_TARGET"] ?? fallback else {
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
            out.append(
                Upstream(
                    name: name, target: target,
                    identity: env["\(key)_IDENTITY"] ?? "spiffe://\(env.trustDomain)/\(name)",
                    descriptorFiles: files))
        }
        return out
    }

    /// Keeps `list` current: every `every`, the revocations the accounts service recorded since
    /// the last answer (with five seconds of overlap, for transactions that committed late).
    /// While accounts cannot be reached, the list stays as it was; a warning says so once it has
    /// lasted ten seconds (not at startup, when accounts may simply not be ready yet).
    static func followRevocations(
        _ list: RevocationList, from accounts: Shop_V1_AccountsService.Client, every: Duration, logger: Logger
    ) async {
        var since: Int64 = 0
        var lastSuccess = ContinuousClock.now
        var warned = false
        while !Task.isCancelled {
            do {
                let r = try await accounts.listRevocations(
                    Shop_V1_ListRevocationsRequest(sinceMicros: max(0, since - 5_000_000)),
                    options: CallOptions(timeout: .seconds(2)))
                list.apply(
                    r.revocations.map { ($0.userID, Double($0.revokedBeforeMicros) / 1e6) },
                    now: Double(r.nowMicros) / 1e6)
                since = r.nowMicros
                lastSuccess = .now
                if warned { logger.warning("token revocations are followed again") }
                warned = false
            } catch {
                if !warned && ContinuousClock.now - lastSuccess > .seconds(10) {
                    logger.warning(
                        "cannot fetch token revocations from accounts for 10 s; revoked tokens may pass meanwhile",
                        [("error", .string("\(error)"))])
                    warned = true
                }
            }
            try? await Task.sleep(for: every)
        }
    }

    /// The front door's connection limits and timeouts from the environment (`docs/security.md`).
    static func applyLimits(
        _ env: ShopEnvironment, settings: Gateway.Settings, to config: inout HTTPServerConfiguration
    ) throws {
        if let n = try env.int("MAX_CONNECTIONS", 1...1_000_000) { config.connections.maxConnections = n }
        if let n = try env.int("MAX_CONNECTIONS_PER_CLIENT", 1...1_000_000) {
            config.connections.maxConnectionsPerAddress = n
        }
        // Behind an Ingress every connection comes from the controller: the per-address limit
        // would cut the whole internet off at once.
        let proxies = settings.trustedProxies
        config.connections.isExempt = { address in proxies.contains { $0.contains(address) } }
        if let n = try env.int("MAX_STREAMS_PER_CONNECTION", 1...10_000) {
            config.http2.maxConcurrentStreams = UInt32(n)
        }
        // A request may last as long as its longest call, and the answer some time to go out.
        config.timeouts.request = settings.maxDeadline + .seconds(30)
        let timeouts: [(String, WritableKeyPath<HTTPTimeouts, Duration>)] = [
            ("HANDSHAKE_TIMEOUT", \.handshake), ("HEADER_TIMEOUT", \.header), ("BODY_TIMEOUT", \.body),
            ("IDLE_TIMEOUT", \.idle), ("WRITE_TIMEOUT", \.write), ("REQUEST_TIMEOUT", \.request),
        ]
        for (key, path) in timeouts {
            guard let d = try env.duration(key) else { continue }
            guard d > .zero else { throw RPCError(.invalidArgument, "BAZAAR_\(key) must be longer than zero") }
            config.timeouts[keyPath: path] = d
        }
    }
}

/// Per request: `bazaar_http_requests_total` and `bazaar_http_request_duration_seconds` by route
/// template, method and status, and one JSON log line (method, path without the query, status,
/// duration; no headers, so no credentials), sampled like the RPC access log.
struct AccessLog: HTTPResponder {
    let next: Gateway
    let logger: Logger
    let requests: MetricFamily
    let durations: MetricFamily
    let sample: Double

    init(next: Gateway, telemetry: Telemetry) {
        self.next = next
        logger = telemetry.logger
        requests = telemetry.registry.family(
            "bazaar_http_requests_total", help: "HTTP requests the gateway answered.", type: .counter,
            labels: ["route", "method", "code"])
        durations = telemetry.registry.family(
            "bazaar_http_request_duration_seconds", help: "Time to answer an HTTP request.",
            type: .histogram, labels: ["route", "method"])
        sample = telemetry.accessLogSampleRatio
    }

    func respond(to request: HTTPRequest, writer: HTTPResponseWriter) async {
        let start = ContinuousClock.now
        let route = await next.serve(request, writer)
        let seconds = (ContinuousClock.now - start).inSeconds
        let method =
            ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"].contains(request.method)
            ? request.method : "OTHER"
        requests.counter(route, method, String(writer.status)).increment()
        durations.histogram(route, method).observe(seconds)
        if sample >= 1 || Double.random(in: 0..<1) < sample {
            logger.info(
                "http request",
                [
                    ("method", .string(request.method)), ("path", .string(request.path)), ("route", .string(route)),
                    ("status", .int(Int64(writer.status))), ("version", .string(request.version)),
                    ("duration_ms", .double(seconds * 1000)), ("peer_address", .string(request.remoteAddress)),
                ])
        }
    }
}
