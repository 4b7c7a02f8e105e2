// Closed-loop load client for grpc.testing.BenchmarkService/UnaryCall over Bazaar's GRPCChannel,
// for comparing the Bazaar client+server pair with grpc C++'s pair over mutual TLS.
//
//   rpc-load-client --target HOST:PORT [--connections 4] [--concurrency 32] [--duration 8]
//                   [--warmup 1] [--request-size 16] [--response-size 16]
//                   [--ca CA [--cert CERT --key KEY] [--authority NAME]] [--threads N]
//
// --connections channels (one HTTP/2 connection each), --concurrency outstanding calls per
// connection (each re-issued when the previous completes). Every response is checked (status OK,
// payload size). Prints a detail line and, last:
//   RESULT rps=<ok calls/s in the measured window> p50_us=... p99_us=... errors=<n>
// Exit 0 iff no call failed and at least one succeeded. The flags and the RESULT line match the
// C++ load client that the comparison scripts drive, so either can be plugged in.
import BazaarCore
import BazaarTransport
import GRPCProtos
import Glibc
import Synchronization

struct Options {
    var target = "127.0.0.1:50400", connections = 4, concurrency = 32, duration = 8.0, warmup = 1.0
    var requestSize = 16, responseSize = 16, threads = 1
    var ca: String?, cert: String?, key: String?, authority: String?
}

func parse() -> Options {
    var o = Options()
    var args = CommandLine.arguments.dropFirst()
    func value(_ flag: String) -> String {
        guard let v = args.popFirst() else { fatalError("\(flag) needs a value") }
        return v
    }
    while let a = args.popFirst() {
        switch a {
        case "--target": o.target = value(a)
        case "--connections": o.connections = Int(value(a))!
        case "--concurrency": o.concurrency = Int(value(a))!
        case "--duration": o.duration = Double(value(a))!
        case "--warmup": o.warmup = Double(value(a))!
        case "--request-size": o.requestSize = Int(value(a))!
        case "--response-size": o.responseSize = Int(value(a))!
        case "--ca": o.ca = value(a)
        case "--cert": o.cert = value(a)
        case "--key": o.key = value(a)
        case "--authority": o.authority = value(a)
        case "--threads": o.threads = Int(value(a))!
        default:
            print("unknown flag \(a); see the header of Benchmarks/Sources/RPCLoadClient/main.swift")
            exit(2)
        }
    }
    return o
}

final class Stats: Sendable {
    struct State {
        var latencies: [Double] = []
        var ok = 0
        var errors = 0
        var firstError: String?
    }
    let state = Mutex(State())
}

let o = parse()
guard let endpoint = Endpoint(o.target) else { fatalError("bad --target \(o.target)") }
let security: TransportSecurity =
    o.ca.map {
        .mutualTLS(
            TLSConfiguration(
                certificateChainFile: o.cert, privateKeyFile: o.key, trustRootsFile: $0, serverHostname: o.authority))
    } ?? .plaintext
let group = EventLoopGroup(count: o.threads)
let channels = try (0..<o.connections).map { _ in
    try GRPCChannel(configuration: ChannelConfiguration(endpoints: [endpoint], security: security), group: group)
}
var request = Grpc_Testing_SimpleRequest()
request.responseSize = Int32(o.responseSize)
request.payload = Grpc_Testing_Payload(body: [UInt8](repeating: 0, count: o.requestSize))
let stats = Stats()
let clock = ContinuousClock()
let start = clock.now
let measureFrom = start + .milliseconds(Int(o.warmup * 1000))
let end = measureFrom + .milliseconds(Int(o.duration * 1000))
let expected = o.responseSize
let req = request

try runBlocking {
    await withTaskGroup(of: Void.self) { group in
        for channel in channels {
            let client = Grpc_Testing_BenchmarkService.Client(transport: channel)
            for _ in 0..<o.concurrency {
                // Each caller runs on its channel's loop: no thread hop between the call and its I/O.
                group.addTask(executorPreference: channel.eventLoop) {
                    var local: [Double] = []
                    var ok = 0
                    var errors = 0
                    var firstError: String?
                    while true {
                        let t0 = clock.now
                        if t0 >= end { break }
                        do {
                            let r = try await client.unaryCall(req, options: CallOptions(timeout: .seconds(10)))
                            if r.payload?.body.count != expected {
                                throw RPCError(.internal, "payload of \(r.payload?.body.count ?? -1) bytes")
                            }
                            if t0 >= measureFrom {
                                ok += 1
                                let d = (clock.now - t0).components
                                local.append(Double(d.seconds) * 1e6 + Double(d.attoseconds) / 1e12)
                            }
                        } catch {
                            errors += 1
                            if firstError == nil { firstError = "\(error)" }
                        }
                    }
                    stats.state.withLock {
                        $0.latencies += local
                        $0.ok += ok
                        $0.errors += errors
                        if $0.firstError == nil { $0.firstError = firstError }
                    }
                }
            }
        }
    }
}
for c in channels { c.close() }
let s = stats.state.withLock { $0 }
let sorted = s.latencies.sorted()
func pct(_ p: Double) -> Int { sorted.isEmpty ? 0 : Int(sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))]) }
let rps = Int(Double(s.ok) / o.duration)
print(
    "bazaar load client: \(o.connections) connections x \(o.concurrency) concurrent, \(s.ok) ok in \(o.duration) s"
        + (s.firstError.map { ", first error: \($0)" } ?? ""))
print("RESULT rps=\(rps) p50_us=\(pct(0.5)) p99_us=\(pct(0.99)) errors=\(s.errors)")
exit(s.errors == 0 && s.ok > 0 ? 0 : 1)
