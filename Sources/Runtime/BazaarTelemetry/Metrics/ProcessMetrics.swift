import BazaarTransport
import Glibc

/// `process_*` metrics as Prometheus' client libraries name them (resident memory, CPU time,
/// open and maximum file descriptors, start time), read from /proc at each scrape.
enum ProcessMetrics {
    static func register(in registry: MetricsRegistry) {
        let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
        let pageSize = Double(sysconf(Int32(_SC_PAGESIZE)))
        let bootTime = readBootTime()
        registry.addCollector {
            var out: [CollectedSample] = []
            if let stat = readFile("/proc/self/stat"), let close = stat.lastIndex(of: ")") {
                // Fields after the command name, which may itself hold spaces and parentheses.
                let f = stat[stat.index(after: close)...].split(separator: " ")
                // f[0] is field 3 (state): utime is field 14, stime 15, starttime 22, rss 24.
                if f.count > 21, let ut = Double(f[11]), let st = Double(f[12]), let start = Double(f[19]),
                    let rss = Double(f[21])
                {
                    out.append(
                        .init(
                            name: "process_cpu_seconds_total", help: "User and system CPU time, in seconds.",
                            type: .counter,
                            value: (ut + st) / ticks))
                    out.append(
                        .init(
                            name: "process_resident_memory_bytes", help: "Resident memory, in bytes.", type: .gauge,
                            value: rss * pageSize))
                    out.append(
                        .init(
                            name: "process_start_time_seconds", help: "Start time, in seconds since the Unix epoch.",
                            type: .gauge, value: bootTime + start / ticks))
                }
            }
            out.append(
                .init(
                    name: "process_open_fds", help: "Open file descriptors.", type: .gauge,
                    value: Double(countOpenFDs())))
            var limit = rlimit()
            if getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 {
                out.append(
                    .init(
                        name: "process_max_fds", help: "The limit on open file descriptors.", type: .gauge,
                        value: Double(limit.rlim_cur)))
            }
            return out
        }
    }

    static func readFile(_ path: String) -> String? {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var data: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = read(fd, &buf, buf.count)
            if n <= 0 { break }
            data += buf[0..<n]
        }
        return String(decoding: data, as: UTF8.self)
    }

    static func readBootTime() -> Double {
        guard let stat = readFile("/proc/stat") else { return 0 }
        for line in stat.split(separator: "\n") where line.hasPrefix("btime ") {
            return Double(line.dropFirst(6)) ?? 0
        }
        return 0
    }

    static func countOpenFDs() -> Int {
        guard let dir = opendir("/proc/self/fd") else { return 0 }
        defer { closedir(dir) }
        var n = 0
        while let entry = readdir(dir) {
            if entry.pointee.d_name.0 != 0x2E { n += 1 }  // skip "." and ".."
        }
        return max(n - 1, 0)  // the directory stream's own descriptor
    }
}

/// Connection counts, TLS handshake failures and event-loop lag, from the transport.
final class TransportMetrics: TransportObserver {
    let serverConnections: Gauge
    let clientConnections: Gauge
    let serverHandshakeFailures: Counter
    let clientHandshakeFailures: Counter
    let lag: Histogram
    let shed: [ConnectionShed: Counter]
    let serverWritersHeld: Counter
    let clientWritersHeld: Counter

    init(registry: MetricsRegistry) {
        let shedFamily = registry.family(
            "bazaar_connections_shed_total",
            help: "Connections refused or closed by the transport's own limits and timeouts, by reason.",
            type: .counter, labels: ["reason"])
        shed = Dictionary(uniqueKeysWithValues: ConnectionShed.allCases.map { ($0, shedFamily.counter($0.rawValue)) })
        let open = registry.family(
            "bazaar_connections_open", help: "Open HTTP/2 connections, by side.", type: .gauge, labels: ["side"])
        serverConnections = open.gauge("server")
        clientConnections = open.gauge("client")
        let failures = registry.family(
            "bazaar_tls_handshake_failures_total", help: "TLS handshakes that failed, by side.",
            type: .counter, labels: ["side"])
        serverHandshakeFailures = failures.counter("server")
        clientHandshakeFailures = failures.counter("client")
        let held = registry.family(
            "bazaar_stream_writers_held_total",
            help: "Times a stream's writer waited because its peer read slower than it wrote (flow control), by side.",
            type: .counter, labels: ["side"])
        serverWritersHeld = held.counter("server")
        clientWritersHeld = held.counter("client")
        lag = registry.family(
            "bazaar_event_loop_lag_seconds", help: "How late event-loop timers fire, in seconds.", type: .histogram,
            bounds: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1]
        ).histogram()
    }

    func connectionOpened(server: Bool) { (server ? serverConnections : clientConnections).add(1) }
    func connectionClosed(server: Bool) { (server ? serverConnections : clientConnections).add(-1) }
    func tlsHandshakeFailed(server: Bool) { (server ? serverHandshakeFailures : clientHandshakeFailures).increment() }
    func loopLag(seconds: Double, loop: Int) { lag.observe(seconds) }
    func connectionShed(reason: ConnectionShed) { shed[reason]?.increment() }
    func writerHeld(server: Bool) { (server ? serverWritersHeld : clientWritersHeld).increment() }
}
