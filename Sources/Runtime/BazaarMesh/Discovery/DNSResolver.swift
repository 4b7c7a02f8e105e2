import BazaarCore
import BazaarTransport
import CBazaarEvent
import Glibc

/// Resolves `dns:///name:port` with libevent's asynchronous resolver (evdns) on an event loop:
/// A and AAAA records together, every `interval` and, at most once per `minimumInterval`, when
/// the channel asks after a failure. By default it reads `/etc/resolv.conf` (nameservers, search
/// domains, ndots) and `/etc/hosts`; a configured nameserver (`ip[:port]`) replaces them.
public final class DNSResolver: Resolver, @unchecked Sendable {
    public let host: String
    public let port: Int
    private let nameserver: String?
    private let interval: Duration
    private let minimumInterval: Duration
    private let loop: EventLoop
    // Loop-confined.
    private var dns: OpaquePointer?
    private var update: (@Sendable (Result<[Endpoint], RPCError>) -> Void)?
    private var timer: LoopTimer?
    private var inFlight = false
    private var lastStart: ContinuousClock.Instant?
    private var refreshTimer: LoopTimer?
    private var stopped = false
    // The round in progress: the two lookups and what they found.
    private var pending = 0
    private var found: [Endpoint] = []
    private var errors: [String] = []

    public init(
        host: String, port: Int, nameserver: String?, interval: Duration = .seconds(30),
        minimumInterval: Duration = .seconds(1), loop: EventLoop
    ) {
        self.host = host
        self.port = port
        self.nameserver = nameserver
        self.interval = interval
        self.minimumInterval = minimumInterval
        self.loop = loop
    }

    public func start(_ update: @escaping @Sendable (Result<[Endpoint], RPCError>) -> Void) {
        loop.execute { [self] in
            self.update = update
            // An address needs no lookup.
            if Self.isAddress(host) { return update(.success([Endpoint(host: host, port: port)])) }
            let flags = nameserver == nil ? EVDNS_BASE_INITIALIZE_NAMESERVERS : 0
            guard let base = evdns_base_new(loop.eventBase, flags | EVDNS_BASE_DISABLE_WHEN_INACTIVE) else {
                return update(.failure(RPCError(.unavailable, "dns: cannot start the resolver")))
            }
            dns = base
            if let nameserver {
                if evdns_base_nameserver_ip_add(base, nameserver) != 0 {
                    return update(
                        .failure(RPCError(.invalidArgument, "dns: nameserver '\(nameserver)' is not ip[:port]")))
                }
            }
            // Answers for a headless service change as pods come and go: no stale retries.
            _ = evdns_base_set_option(base, "timeout:", "2")
            _ = evdns_base_set_option(base, "attempts:", "2")
            resolve()
        }
    }

    public func refresh() {
        loop.execute { [self] in
            guard !stopped, dns != nil, refreshTimer == nil else { return }
            let wait = lastStart.map { minimumInterval - (ContinuousClock.now - $0) } ?? .zero
            if wait <= .zero { return resolve() }
            refreshTimer = loop.schedule(after: wait) { [weak self] in
                self?.refreshTimer = nil
                self?.resolve()
            }
        }
    }

    public func stop() {
        loop.execute { [self] in
            stopped = true
            timer?.cancel()
            refreshTimer?.cancel()
            update = nil
            if let dns { evdns_base_free(dns, 1) }
            dns = nil
        }
    }

    private func resolve() {
        guard !stopped, !inFlight, let dns else { return }
        inFlight = true
        lastStart = .now
        timer?.cancel()
        pending = 2
        found = []
        errors = []
        let me = Unmanaged.passRetained(self).toOpaque()
        let me2 = Unmanaged.passRetained(self).toOpaque()
        let callback: evdns_callback_type = { result, type, count, _, addresses, arg in
            Unmanaged<DNSResolver>.fromOpaque(arg!).takeRetainedValue().answer(
                result, Int32(type), Int(count), addresses)
        }
        if evdns_base_resolve_ipv4(dns, host, 0, callback, me) == nil {
            Unmanaged<DNSResolver>.fromOpaque(me).release()
            answer(DNS_ERR_UNKNOWN, DNS_IPv4_A, 0, nil)
        }
        if evdns_base_resolve_ipv6(dns, host, 0, callback, me2) == nil {
            Unmanaged<DNSResolver>.fromOpaque(me2).release()
            answer(DNS_ERR_UNKNOWN, DNS_IPv6_AAAA, 0, nil)
        }
    }

    private func answer(_ result: Int32, _ type: Int32, _ count: Int, _ addresses: UnsafeMutableRawPointer?) {
        if result == DNS_ERR_NONE, let addresses {
            let size = type == DNS_IPv4_A ? 4 : 16
            let family = type == DNS_IPv4_A ? AF_INET : AF_INET6
            var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
            for i in 0..<count {
                if inet_ntop(family, addresses + i * size, &text, socklen_t(text.count)) != nil {
                    found.append(Endpoint(host: String(cString: text), port: port))
                }
            }
        } else if result != DNS_ERR_NONE {
            errors.append(String(cString: evdns_err_to_string(result)))
        }
        pending -= 1
        guard pending == 0 else { return }
        inFlight = false
        guard !stopped, let update else { return }
        if found.isEmpty {
            // NXDOMAIN or no record of either kind: say so; the channel keeps what it has.
            update(
                .failure(
                    RPCError(
                        .unavailable,
                        "dns: \(host): \(errors.isEmpty ? "no A or AAAA record" : errors.joined(separator: ", "))")))
        } else {
            var seen = Set<Endpoint>()
            update(.success(found.filter { seen.insert($0).inserted }.sorted { $0.description < $1.description }))
        }
        timer = loop.schedule(after: interval) { [weak self] in self?.resolve() }
    }

    static func isAddress(_ host: String) -> Bool {
        var buf = [UInt8](repeating: 0, count: 16)
        return inet_pton(AF_INET, host, &buf) == 1 || inet_pton(AF_INET6, host, &buf) == 1
    }
}
