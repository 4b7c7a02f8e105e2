import ArgumentParser
import BazaarCore
import BazaarMesh
import BazaarTelemetry
import BazaarTransport
import ConformanceProtos
import Glibc
import Synchronization

/// Drives the mesh's integration tests with real processes: replicas to balance over, kill and
/// fault, and a client that puts steady load on them through a ``MeshChannel``.
@main
struct MeshTestCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mesh-test",
        abstract: "Replicas and load for the mesh's integration tests and failover measurements.",
        discussion: """
            Mesh behaviour (load balancing, retries, outlier detection, DNS, deadlines) comes from the BAZAAR_* \
            environment variables in docs/mesh.md, as in the services.
            """,
        subcommands: [Serve.self, Load.self, Bench.self])
}

/// TLS flags shared by both sides.
struct TLSOptions: ParsableArguments {
    @Option(name: .customLong("tls-dir"), help: "Folder made by `bazaar certs`; without it, plaintext h2c.")
    var dir: String?

    @Option(name: .customLong("tls-name"), help: "Whose certificate in --tls-dir to use.")
    var name: String = "server"

    var security: TransportSecurity {
        guard let dir else { return .plaintext }
        return .mutualTLS(.mesh(directory: dir, service: name))
    }
}

/// Appends one line per event to a file, with O_APPEND, so that the record survives `kill -9`.
final class CallLog: Sendable {
    private let fd: Int32

    init?(path: String?) {
        guard let path else { return nil }
        fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        if fd < 0 { return nil }
    }

    func write(_ line: String) {
        let bytes = Array((line + "\n").utf8)
        _ = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
    }
}

final class MeshTestService: Meshtest_V1_MeshTest.ServiceProtocol {
    let name: String
    let log: CallLog?
    let next: Meshtest_V1_MeshTest.Client?
    private let served = Atomic<UInt64>(0)
    private let fault = Atomic<Int32>(0)

    init(name: String, log: CallLog?, next: MeshChannel?) {
        self.name = name
        self.log = log
        self.next = next.map { Meshtest_V1_MeshTest.Client(transport: $0) }
    }

    private func serve(_ method: String, _ id: String) async throws -> Meshtest_V1_MeshReply {
        switch Meshtest_V1_FaultRequest.Fault(rawValue: fault.load(ordering: .relaxed)) {
        case .unavailable:
            log?.write("\(method)-refused \(id)")
            throw RPCError(.unavailable, "\(name) is failing on purpose")
        case .hang:
            log?.write("\(method)-hung \(id)")
            try await Task.sleep(for: .seconds(3600))
        default: break
        }
        log?.write("\(method) \(id)")
        return Meshtest_V1_MeshReply(replica: name, served: served.add(1, ordering: .relaxed).newValue)
    }

    func get(_ request: Meshtest_V1_MeshRequest, context: ServerContext) async throws -> Meshtest_V1_MeshReply {
        try await serve("get", request.id)
    }

    func add(_ request: Meshtest_V1_MeshRequest, context: ServerContext) async throws -> Meshtest_V1_MeshReply {
        try await serve("add", request.id)
    }

    func relay(_ request: Meshtest_V1_RelayRequest, context: ServerContext) async throws -> Meshtest_V1_RelayReply {
        let left =
            context.deadline.map { d -> Int64 in
                let c = (d - .now).components
                return c.seconds * 1000 + c.attoseconds / 1_000_000_000_000_000
            } ?? -1
        log?.write("relay \(request.id) deadline_ms=\(left)")
        let hop = Meshtest_V1_Hop(replica: name, deadlineMs: left)
        if let next {
            // No timeout and no context passed: the mesh carries the deadline and cancellation.
            var reply = try await next.relay(request)
            reply.hops.insert(hop, at: 0)
            return reply
        }
        if request.hang {
            do {
                try await Task.sleep(for: .seconds(3600))
            } catch {
                log?.write("relay-cancelled \(request.id)")
                throw RPCError(.cancelled, "cancelled")
            }
        }
        return Meshtest_V1_RelayReply(hops: [hop])
    }

    func setFault(_ request: Meshtest_V1_FaultRequest, context: ServerContext) async throws -> Meshtest_V1_MeshReply {
        fault.store(request.fault.rawValue, ordering: .relaxed)
        log?.write("fault \(request.fault)")
        return Meshtest_V1_MeshReply(replica: name, served: served.load(ordering: .relaxed))
    }
}

struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve meshtest.v1.MeshTest, grpc.health.v1.Health and server reflection.",
        discussion:
            "Prints `mesh-test: listening on HOST:PORT` when ready. SIGTERM drains (health turns NOT_SERVING first, for BAZAAR_DRAIN_DELAY); SIGHUP reloads the TLS files."
    )

    @Option(help: "This replica's name, returned in every reply.")
    var name: String = "replica"

    @Option(help: "Address to bind.")
    var host: String = "127.0.0.1"

    @Option(help: "Port (0 picks one).")
    var port: Int = 0

    @Option(help: "Target of the next hop for Relay (e.g. 127.0.0.1:9001 or dns:///name:port).")
    var next: String?

    @Option(name: .customLong("call-log"), help: "Append a line per call to this file.")
    var callLog: String?

    @Flag(help: "Metrics, JSON logs and traces as a service has them (BAZAAR_METRICS_PORT, BAZAAR_LOG_LEVEL, OTEL_*).")
    var telemetry = false

    @OptionGroup var tls: TLSOptions

    func run() throws {
        try runBlocking {
            // One loop, shared by the server, the channel to the next hop and telemetry, as a
            // service process has it (its spans show a relayed call staying on that thread).
            try await withEventLoopGroup(count: 1) { loops in
                var config = ServerConfiguration(host: host, port: port, security: tls.security)
                config.handleSignals = true
                try MeshServerEnvironment.apply(to: &config)
                let telemetry = self.telemetry ? try await Telemetry.start(service: name, group: loops) : nil
                config.callObserver = telemetry?.serverObserver
                if let port = telemetry?.metricsPort { diagnostic("mesh-test: metrics on port \(port)") }
                let nextChannel = try next.map { target in
                    try MeshChannel(
                        target: target, security: tls.security, mesh: try .fromEnvironment(),
                        observer: telemetry?.clientObserver(upstream: target), group: loops)
                }
                let mesh = MeshTestService(name: name, log: CallLog(path: callLog), next: nextChannel)
                let (_, services) = try MeshServerEnvironment.standardServices(serving: [mesh])
                let server = try RPCServer(configuration: config, services: services, group: loops)
                try await server.run { port in
                    diagnostic("mesh-test: listening on \(host):\(port)")
                }
                await nextChannel?.shutdown()
                await telemetry?.shutdown()
                diagnostic("mesh-test: shut down cleanly")
            }
        }
    }
}

struct Load: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Put steady load on a target through the mesh and report what happened.",
        discussion: """
            Prints a progress line every --report-every (calls that succeeded and failed, which replicas answered, \
            the channel's endpoints), then one final line starting with RESULT. With --trace, writes one line per \
            call: start and end (Unix ms), replica (or the status code), so that failover gaps can be measured.
            """)

    @Option(help: "Where to send the calls (see docs/mesh.md for target syntax).")
    var target: String

    @Option(help: "get (retry-safe) or add (not retry-safe).")
    var method: String = "get"

    @Option(help: "Calls in flight at once.")
    var concurrency: Int = 8

    @Option(help: "How long to run, in seconds.")
    var duration: Double = 5

    @Option(name: .customLong("timeout-ms"), help: "Deadline of each call.")
    var timeoutMs: Int = 2000

    @Option(name: .customLong("report-every"), help: "Seconds between progress lines.")
    var reportEvery: Double = 0.5

    @Option(help: "Write one line per call to this file.")
    var trace: String?

    @OptionGroup var tls: TLSOptions

    mutating func validate() throws {
        guard ["get", "add"].contains(method) else { throw ValidationError("--method must be get or add") }
        guard concurrency > 0, duration > 0, timeoutMs > 0, reportEvery > 0 else {
            throw ValidationError("--concurrency, --duration, --timeout-ms and --report-every must be positive")
        }
    }

    struct Tally {
        var ok = 0
        var failed: [String: Int] = [:]
        var replicas: Set<String> = []
        var maxLatencyMs = 0.0
    }

    func run() throws {
        try runBlocking {
            let channel = try MeshChannel(target: target, security: tls.security, mesh: try .fromEnvironment())
            let client = Meshtest_V1_MeshTest.Client(transport: channel)
            let tally = Shared(Tally())
            let traceLog = CallLog(path: trace)
            let add = method == "add"
            let end = ContinuousClock.now + .milliseconds(Int64(duration * 1000))
            let options = CallOptions(timeout: .milliseconds(timeoutMs))
            let reportEvery = self.reportEvery
            let reporter = Task {
                while !Task.isCancelled {
                    do { try await Task.sleep(for: .milliseconds(Int64(reportEvery * 1000))) } catch { return }
                    let t = tally.value.withLock { t -> Tally in
                        defer { t.replicas = [] }
                        return t
                    }
                    let endpoints = channel.endpoints.map {
                        "\($0.endpoint)=\($0.state)\($0.healthy == false ? "/NOT_SERVING" : "")\($0.ejected ? "/EJECTED" : "")"
                    }
                    print(
                        "progress ok=\(t.ok) failed=\(t.failed.values.reduce(0, +)) replicas=\(t.replicas.sorted().joined(separator: ",")) endpoints=\(endpoints.joined(separator: ","))"
                    )
                    fflush(nil)
                }
            }
            let concurrency = self.concurrency
            await withTaskGroup(of: Void.self) { group in
                for worker in 0..<concurrency {
                    group.addTask {
                        var i = 0
                        while ContinuousClock.now < end {
                            i += 1
                            let id = "w\(worker)-\(i)"
                            let started = unixMillis()
                            let t0 = ContinuousClock.now
                            var outcome: String
                            do {
                                let request = Meshtest_V1_MeshRequest(id: id)
                                let reply =
                                    add
                                    ? try await client.add(request, options: options)
                                    : try await client.get(request, options: options)
                                outcome = reply.replica
                                tally.value.withLock {
                                    $0.ok += 1
                                    $0.replicas.insert(reply.replica)
                                }
                            } catch {
                                let code = (error as? RPCError)?.code.description ?? "\(error)"
                                outcome = "!" + code
                                tally.value.withLock { $0.failed[code, default: 0] += 1 }
                                diagnostic("mesh-test: \(id) failed: \(error)")
                            }
                            let ms = (ContinuousClock.now - t0).inSeconds * 1000
                            tally.value.withLock { $0.maxLatencyMs = max($0.maxLatencyMs, ms) }
                            traceLog?.write("\(id) \(started) \(unixMillis()) \(outcome)")
                        }
                    }
                }
            }
            reporter.cancel()
            let t = tally.value.withLock { $0 }
            let failures = t.failed.sorted { $0.key < $1.key }.map { "\"\($0.key)\": \($0.value)" }.joined(
                separator: ", ")
            print(
                "RESULT {\"ok\": \(t.ok), \"failed\": \(t.failed.values.reduce(0, +)), \"codes\": {\(failures)}, \"max_latency_ms\": \(Int(t.maxLatencyMs))}"
            )
            fflush(nil)
            await channel.shutdown()
        }
    }
}

/// A lock-protected value that closures can share.
final class Shared<Value: Sendable>: Sendable {
    let value: Lock<Value>
    init(_ v: Value) { value = Lock(v) }
}

func unixMillis() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
}

/// Passes every call through unchanged: the cost of having an interceptor at all.
struct PassThroughInterceptor: RPCInterceptor {
    func intercept(_ head: RPCCallHead, next: @Sendable (RPCCallHead) async throws -> Void) async throws {
        try await next(head)
    }
}

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Make a fixed number of Get calls, for instruction counts under callgrind.",
        discussion: """
            --client bare uses the transport's GRPCChannel alone; --client mesh adds everything a service gets \
            (resolution, p2c balancing, health checking, retries with their throttle, outlier detection, deadline \
            propagation) and --interceptor one pass-through interceptor. Run it twice with different --calls under \
            valgrind and divide the difference: scripts/bench-mesh.sh does.
            """)

    @Option(help: "Where to send the calls.")
    var target: String

    @Option(help: "bare or mesh.")
    var client: String = "mesh"

    @Flag(help: "Add a pass-through interceptor.")
    var interceptor = false

    @Flag(help: "With --client mesh: client metrics through the telemetry observer (no endpoint, no tracing).")
    var telemetry = false

    @Option(help: "Calls to make.")
    var calls: Int = 1000

    @Option(help: "Calls in flight at once.")
    var concurrency: Int = 4

    @OptionGroup var tls: TLSOptions

    mutating func validate() throws {
        guard ["bare", "mesh"].contains(client) else { throw ValidationError("--client must be bare or mesh") }
        guard calls > 0, concurrency > 0 else { throw ValidationError("--calls and --concurrency must be positive") }
    }

    func run() throws {
        try runBlocking {
            let interceptors: [any RPCInterceptor] = interceptor ? [PassThroughInterceptor()] : []
            let transport: any ClientTransport
            var closeBare: GRPCChannel?
            var closeMesh: MeshChannel?
            if client == "bare" {
                guard case .endpoints(let list) = try Target(parsing: target) else {
                    throw ValidationError("--client bare needs host:port")
                }
                let c = try GRPCChannel(
                    configuration: ChannelConfiguration(endpoints: list, security: tls.security),
                    interceptors: interceptors)
                transport = c
                closeBare = c
            } else {
                var options = Telemetry.Options()
                options.metricsPort = nil
                options.tracesEndpoint = nil
                let observer =
                    telemetry
                    ? try await Telemetry.start(service: "bench", options: options).clientObserver(upstream: target)
                    : nil
                let c = try MeshChannel(
                    target: target, security: tls.security, mesh: try .fromEnvironment(), interceptors: interceptors,
                    observer: observer)
                transport = c
                closeMesh = c
            }
            let api = Meshtest_V1_MeshTest.Client(transport: transport)
            let perWorker = (calls + concurrency - 1) / concurrency
            let options = CallOptions(waitForReady: true)
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<concurrency {
                    group.addTask {
                        for _ in 0..<perWorker {
                            _ = try await api.get(Meshtest_V1_MeshRequest(id: "b"), options: options)
                        }
                    }
                }
                try await group.waitForAll()
            }
            print("bench: \(perWorker * concurrency) calls done")
            await closeBare?.shutdown()
            await closeMesh?.shutdown()
        }
    }
}
