import ArgumentParser
import BazaarCore
import BazaarGateway
import BazaarTelemetry
import BazaarTransport
import ShopAPI
import ShopKit

/// The shop's services as compiled into this program: for `--openapi` (docs/openapi.json) only;
/// the running gateway learns them from the services themselves.
let shopServices = ShopService.apiServices.map(\.descriptor)

/// `bazaar gateway`: the edge gateway in front of the shop.
struct GatewayCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gateway",
        abstract:
            "Serve the services' REST/JSON API (routes learned from their IDL by reflection) and call them over the mesh.",
        discussion: """
            HTTP/1.1 and HTTP/2 on one port: HTTPS with BAZAAR_GATEWAY_TLS_CERT and BAZAAR_GATEWAY_TLS_KEY (ALPN h2 or \
            http/1.1), otherwise plaintext HTTP/1.1 and h2c. \
            Upstreams: BAZAAR_UPSTREAMS names them (default catalog,accounts,cart,orders,notifications,web); for each NAME, \
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
        let host = self.host
        let port = self.port
        try runBlocking {
            do {
                try await Self.serve(host: host, port: port)
            } catch let e as RPCError {
                diagnostic("bazaar: gateway cannot start: \(e.message)")
                throw ExitCode.failure
            } catch let e as RouteTable.BuildError {
                diagnostic("bazaar: gateway cannot start: \(e.description)")
                throw ExitCode.failure
            }
        }
    }

    static func serve(host: String?, port: Int?) async throws {
        // One loop per core for the whole process: front door, upstream channels, metrics.
        try await withEventLoopGroup { loops in try await serve(host: host, port: port, loops: loops) }
    }

    static func serve(host: String?, port: Int?, loops: EventLoopGroup) async throws {
        let env = ShopEnvironment(ProcessEnvironment.current)
        let telemetry = try await Telemetry.start(service: "gateway", group: loops)
        var config = try EdgeConfiguration.fromEnvironment(
            defaultTargets: ShopService.allCases.map { ($0.rawValue, "127.0.0.1:\($0.defaultPort)") })
        if let host { config.http.host = host }
        if let port { config.http.port = port }
        config.title = "Bazaar shop API"
        // Password checks cost tens of milliseconds of CPU each: sign-up, sign-in and password
        // changes get a bucket of their own, tighter than the rest.
        var passwords = RateLimit(ratePerSecond: 1, burst: 20)
        if let rate = try env.int("AUTH_RATE_LIMIT", 1...1_000_000) { passwords.ratePerSecond = Double(rate) }
        if let burst = try env.int("AUTH_RATE_BURST", 1...1_000_000) { passwords.burst = Double(burst) }
        for method in ["Register", "Login", "ChangePassword"] {
            config.settings.routeRateLimits["/shop.v1.AccountsService/\(method)"] = passwords
        }
        let poll = try env.duration("REVOCATION_POLL") ?? .seconds(1)
        guard poll > .zero else { throw RPCError(.invalidArgument, "BAZAAR_REVOCATION_POLL must be longer than zero") }

        let edge = try EdgeServer(configuration: config, telemetry: telemetry, group: loops)
        if let port = telemetry.metricsPort { diagnostic("bazaar: gateway metrics on port \(port)") }
        var background: [@Sendable () async -> Void] = []
        if let accounts = edge.upstream("accounts").map({ Shop_V1_AccountsService.Client(transport: $0) }) {
            let list = edge.gateway.revocations
            background.append {
                await RevocationFollower.follow(list, from: accounts, every: poll, logger: telemetry.logger)
            }
        } else {
            telemetry.logger.warning("no upstream named accounts: token revocations are not followed")
        }
        let boundHost = "\(config.http.host)"
        let protocols = config.http.tls == nil ? "http, h2c" : "https: h2, http/1.1"
        try await edge.run(background: background) { p in
            diagnostic("bazaar: gateway listening on \(boundHost):\(p) (\(protocols))")
        }
        await telemetry.shutdown()
        diagnostic("bazaar: gateway shut down cleanly")
    }
}
