import BazaarCore
import BazaarTransport
import Glibc

/// Everything the mesh does on the client side, besides the connection itself: discovery, load
/// balancing, health checking, retries, outlier detection, deadlines and bulkheads.
///
/// Build it in Swift, or from the environment with ``fromEnvironment(upstream:environment:)``;
/// `docs/mesh.md` has the table of variables.
public struct MeshConfiguration: Sendable {
    public var loadBalancing: LoadBalancingPolicy = .p2c
    /// Nameserver for `dns:///` targets (`ip[:port]`); `nil` reads `/etc/resolv.conf`.
    public var dnsNameserver: String?
    /// How often DNS targets are resolved again.
    public var dnsRefreshInterval: Duration = .seconds(30)
    /// The least time between two resolutions asked for by connection failures.
    public var dnsMinimumRefreshInterval: Duration = .seconds(1)
    /// Retries for retry-safe methods; `maxAttempts` 1 turns retries off.
    public var retry = RetryPolicy()
    /// Methods (`pkg.Service/Method`) or whole services (`pkg.Service`) retried under ``retry``
    /// even though their IDL does not declare them idempotent.
    public var retryMethods: Set<String> = []
    /// The retry throttle (gRFC A6): its token count and the share a success gives back.
    public var retryBudgetTokens = 10
    public var retryBudgetRatio = 0.1
    /// Ejection of failing endpoints; `nil` turns it off.
    public var outlierDetection: OutlierDetectionPolicy? = OutlierDetectionPolicy()
    /// Watch `grpc.health.v1.Health` on every endpoint and send calls only to SERVING ones.
    public var healthCheck = true
    /// The service name the health watch asks about (`""`: the whole server).
    public var healthServiceName = ""
    /// Calls made inside a handler inherit its deadline, shortened by this margin (the time the
    /// answer needs to travel back). `nil` turns propagation off.
    public var deadlineMargin: Duration? = .milliseconds(5)
    /// Calls in flight to this upstream at most (0: no cap), and what happens past the cap.
    public var maxConcurrentCalls = 0
    public var bulkheadOverflow = Bulkhead.Overflow.fail
    /// How often the channel's certificate, key and CA files are checked for changes; `nil`: never.
    public var tlsReloadInterval: Duration? = .seconds(10)
    /// How long calls wait for an endpoint when every known endpoint is failing (the only replica
    /// restarting, a service started after its callers) before they fail fast with UNAVAILABLE:
    /// a call that was never sent is held, within its deadline, instead of failed at once. Counted
    /// from when the last endpoint stopped being usable; `.zero` fails at once (gRPC's fail-fast).
    /// Not applied when the name does not resolve.
    public var unavailableGrace: Duration = .seconds(3)

    public init() {}

    /// A configuration read from environment variables; an unset variable keeps the default.
    ///
    /// With an `upstream` name (e.g. `catalog`), `BAZAAR_CATALOG_<NAME>` overrides
    /// `BAZAAR_<NAME>` for that upstream only.
    public static func fromEnvironment(upstream: String? = nil, environment: [String: String] = Environment.current)
        throws(RPCError) -> MeshConfiguration
    {
        let env = Environment(environment, upstream: upstream)
        var c = MeshConfiguration()
        if let v = env["LB_POLICY"] {
            guard let p = LoadBalancingPolicy(rawValue: v) else {
                throw RPCError(
                    .invalidArgument,
                    "\(env.name("LB_POLICY"))='\(v)': expected one of \(LoadBalancingPolicy.allCases.map(\.rawValue).joined(separator: ", "))"
                )
            }
            c.loadBalancing = p
        }
        if let v = env["TLS_RELOAD_INTERVAL"] {
            c.tlsReloadInterval = v == "0" ? nil : try env.duration("TLS_RELOAD_INTERVAL")
        }
        c.dnsNameserver = env["DNS_SERVER"]
        c.dnsRefreshInterval = try env.duration("DNS_REFRESH") ?? c.dnsRefreshInterval
        c.dnsMinimumRefreshInterval = try env.duration("DNS_MIN_REFRESH") ?? c.dnsMinimumRefreshInterval
        var codes = c.retry.retryableCodes
        if let list = env["RETRY_CODES"] {
            codes = []
            for name in list.split(separator: ",").map({ $0.trimming(" ") }) where !name.isEmpty {
                guard let code = StatusCode.allCases.first(where: { $0.description == name.uppercased() }) else {
                    throw RPCError(
                        .invalidArgument,
                        "\(env.name("RETRY_CODES")): '\(name)' is not a gRPC status name such as UNAVAILABLE")
                }
                codes.insert(code)
            }
        }
        c.retry = RetryPolicy(
            maxAttempts: try env.int("RETRY_MAX_ATTEMPTS", 1...5) ?? c.retry.maxAttempts,
            initialBackoff: try env.duration("RETRY_INITIAL_BACKOFF") ?? c.retry.initialBackoff,
            maxBackoff: try env.duration("RETRY_MAX_BACKOFF") ?? c.retry.maxBackoff,
            backoffMultiplier: try env.double("RETRY_BACKOFF_MULTIPLIER", 1...10) ?? c.retry.backoffMultiplier,
            retryableCodes: codes)
        if let list = env["RETRY_METHODS"] {
            c.retryMethods = Set(list.split(separator: ",").map { $0.trimming(" ") }.filter { !$0.isEmpty })
        }
        c.retryBudgetTokens = try env.int("RETRY_BUDGET_TOKENS", 1...1000) ?? c.retryBudgetTokens
        c.retryBudgetRatio = try env.double("RETRY_BUDGET_RATIO", 0...1) ?? c.retryBudgetRatio
        if try env.bool("OUTLIER_DETECTION") == false {
            c.outlierDetection = nil
        } else {
            var o = OutlierDetectionPolicy()
            o.consecutiveFailures = try env.int("OUTLIER_CONSECUTIVE_FAILURES", 0...10_000) ?? o.consecutiveFailures
            o.failureRateThreshold = try env.double("OUTLIER_FAILURE_RATE", 0...1) ?? o.failureRateThreshold
            o.minimumRequests = try env.int("OUTLIER_MIN_REQUESTS", 1...1_000_000) ?? o.minimumRequests
            o.interval = try env.duration("OUTLIER_INTERVAL") ?? o.interval
            o.baseEjectionTime = try env.duration("OUTLIER_BASE_EJECTION") ?? o.baseEjectionTime
            o.maxEjectionTime = try env.duration("OUTLIER_MAX_EJECTION") ?? o.maxEjectionTime
            o.maxEjectionPercent = try env.int("OUTLIER_MAX_EJECTION_PERCENT", 0...100) ?? o.maxEjectionPercent
            c.outlierDetection = o
        }
        c.healthCheck = try env.bool("HEALTH_CHECK") ?? c.healthCheck
        c.healthServiceName = env["HEALTH_SERVICE"] ?? c.healthServiceName
        if let margin = try env.duration("DEADLINE_MARGIN") { c.deadlineMargin = margin }
        if let grace = try env.duration("UNAVAILABLE_GRACE") { c.unavailableGrace = grace }
        if try env.bool("DEADLINE_PROPAGATION") == false { c.deadlineMargin = nil }
        c.maxConcurrentCalls = try env.int("MAX_CONCURRENT_CALLS", 0...1_000_000) ?? c.maxConcurrentCalls
        if let v = env["BULKHEAD_OVERFLOW"] {
            guard let o = Bulkhead.Overflow(rawValue: v) else {
                throw RPCError(.invalidArgument, "\(env.name("BULKHEAD_OVERFLOW"))='\(v)': expected fail or wait")
            }
            c.bulkheadOverflow = o
        }
        return c
    }
}

/// Server settings the mesh reads from the environment: the drain delay during which health says
/// NOT_SERVING, the drain timeout, and the TLS reload interval.
public enum MeshServerEnvironment {
    public static func apply(to c: inout ServerConfiguration, environment: [String: String] = Environment.current)
        throws(RPCError)
    {
        let env = Environment(environment, upstream: nil)
        c.drainDelay = try env.duration("DRAIN_DELAY") ?? c.drainDelay
        c.drainTimeout = try env.duration("DRAIN_TIMEOUT") ?? c.drainTimeout
        if let v = env["TLS_RELOAD_INTERVAL"] {
            c.tlsReloadInterval = v == "0" ? nil : try env.duration("TLS_RELOAD_INTERVAL")
        }
    }

    /// How this process secures its connections: mutual TLS with the files named by
    /// `BAZAAR_TLS_CERT`, `BAZAAR_TLS_KEY` and `BAZAAR_TLS_CA`, or by default those `bazaar certs`
    /// makes for `service` in `BAZAAR_TLS_DIR` (`.run/certs`). Plaintext h2c only when
    /// `BAZAAR_PLAINTEXT=true` says so.
    public static func security(service: String, environment: [String: String] = Environment.current) throws(RPCError)
        -> TransportSecurity
    {
        let env = Environment(environment, upstream: nil)
        if try env.bool("PLAINTEXT") == true { return .plaintext }
        let dir = env["TLS_DIR"] ?? ".run/certs"
        var tls = TLSConfiguration.mesh(directory: dir, service: service)
        if let cert = env["TLS_CERT"] { tls.certificateChainFile = cert }
        if let key = env["TLS_KEY"] { tls.privateKeyFile = key }
        if let ca = env["TLS_CA"] { tls.trustRootsFile = ca }
        return .mutualTLS(tls)
    }

    /// The services every mesh server adds to its own: health (always) and reflection (unless
    /// `BAZAAR_REFLECTION=false`). The health service is returned too, for the application to set
    /// statuses on.
    /// A plaintext server with only the health service, on `BAZAAR_HEALTH_PORT`, for probes that
    /// cannot present a mesh certificate (Kubernetes' native gRPC probes). It answers from the
    /// same `HealthService` as the main server, so a drain shows there too. `nil` when unset.
    /// `group` is the process's loops (the probe listens on them too); without one it runs one loop.
    public static func healthProbeServer(
        _ health: HealthService, host: String,
        environment: [String: String] = Environment.current, group: EventLoopGroup? = nil
    ) throws(RPCError) -> RPCServer? {
        let env = Environment(environment, upstream: nil)
        guard let port = try env.int("HEALTH_PORT", 1...65535) else { return nil }
        var config = ServerConfiguration(host: host, port: port, security: .plaintext)
        config.loopCount = 1
        do {
            return try RPCServer(configuration: config, services: [health], group: group)
        } catch {
            throw RPCError(.invalidArgument, "BAZAAR_HEALTH_PORT=\(port): \(error)")
        }
    }

    public static func standardServices(
        serving services: [any RPCService],
        environment: [String: String] = Environment.current
    ) throws(RPCError)
        -> (health: HealthService, services: [any RPCService])
    {
        let env = Environment(environment, upstream: nil)
        let health = HealthService(services: services.map { type(of: $0).serviceDescriptor.name })
        var all = services + [health as any RPCService]
        if try env.bool("REFLECTION") ?? true { all.append(ReflectionService(serving: all)) }
        return (health, all)
    }
}
