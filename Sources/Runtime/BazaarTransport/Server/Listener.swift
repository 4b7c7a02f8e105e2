import BazaarCore
import Glibc
import Synchronization

protocol AcceptedConnection: AnyObject {
    func accepted()
    func drain(grace: Duration)
}

extension ServerConnection: AcceptedConnection {
    func accepted() { start() }
}

/// How many connections a server holds at once: in all, and per client address. Shared by the
/// listeners of one server (one per loop), so the limits are per process.
public struct ConnectionLimits: Sendable {
    /// Accepted connections the process holds at most; beyond, new ones are closed at once.
    public var maxConnections: Int = 10_000
    /// Connections one client address holds at most (the peer of the socket: behind a proxy,
    /// the proxy, so exempt it with ``isExempt``).
    public var maxConnectionsPerAddress: Int = 256
    /// Addresses the per-address limit does not apply to (trusted proxies in front).
    public var isExempt: @Sendable (String) -> Bool = { _ in false }

    public init() {}
}

/// The counts behind ``ConnectionLimits``, for all the listeners of one server.
final class ConnectionAdmission: Sendable {
    let limits: ConnectionLimits
    private let caps: KeyedCaps

    init(_ limits: ConnectionLimits) {
        self.limits = limits
        caps = KeyedCaps(perKey: limits.maxConnectionsPerAddress, total: limits.maxConnections)
    }

    /// Takes a place for a connection from `address`, or says which limit refuses it.
    func admit(_ address: String) -> ConnectionShed? {
        switch caps.take(address, exempt: limits.isExempt(address)) {
        case nil: nil
        case .total: .processLimit
        case .perKey: .addressLimit
        }
    }

    func release(_ address: String) { caps.release(address) }

    var open: Int { caps.taken }
}

/// One listening socket on one loop: accepts connections (with a TLS engine each when the server
/// does TLS), keeps them until they close, and drains them. What a connection is (the gRPC
/// server's, the HTTP front door's) comes from `make`.
///
/// When `accept` fails for want of resources (EMFILE, ENFILE, ENOBUFS, ENOMEM) the pending
/// connection stays queued and the socket stays readable: retrying at once would spin the loop.
/// The listener stops watching for a moment instead (doubling up to a second while it keeps
/// failing) and the connections it has keep being served.
final class Listener: @unchecked Sendable {
    typealias Make = (
        _ loop: EventLoop, _ fd: Int32, _ peer: String, _ tls: TLSEngine?,
        _ onClose: @escaping (AnyObject) -> Void
    ) -> AcceptedConnection
    let loop: EventLoop
    @exclusivity(unchecked) private var fd: Int32
    private let tls: TLSCredentials?
    private let make: Make
    private let admission: ConnectionAdmission?
    @exclusivity(unchecked) private var watcher: IOWatcher?
    @exclusivity(unchecked) private var connections: [ObjectIdentifier: AcceptedConnection] = [:]
    @exclusivity(unchecked) private var drained: (() -> Void)?
    @exclusivity(unchecked) private var backoff: Duration = .zero
    @exclusivity(unchecked) private var backoffTimer: LoopTimer?

    init(loop: EventLoop, fd: Int32, tls: TLSCredentials?, admission: ConnectionAdmission?, make: @escaping Make) {
        self.loop = loop
        self.fd = fd
        self.tls = tls
        self.admission = admission
        self.make = make
    }

    /// One listener per loop of `group`, all on the same port (SO_REUSEPORT spreads connections
    /// over them); port 0 picks one for all. Nothing is left open when it throws. With `limits`,
    /// the listeners share one count of connections.
    static func bindAll(
        on group: EventLoopGroup, host: String, port: Int, tls: TLSCredentials?, limits: ConnectionLimits? = nil,
        make: @escaping Make
    ) throws -> (listeners: [Listener], port: Int) {
        var listeners: [Listener] = []
        var port = port
        let admission = limits.map(ConnectionAdmission.init)
        do {
            for loop in group.loops {
                let fd = try Socket.listen(host: host, port: port, reusePort: true)
                if port == 0 { port = Socket.localPort(fd) }
                listeners.append(Listener(loop: loop, fd: fd, tls: tls, admission: admission, make: make))
            }
        } catch {
            for l in listeners { l.loop.execute { l.stop() } }
            throw error
        }
        return (listeners, port)
    }

    func start() {
        watcher = IOWatcher(loop: loop, fd: fd, onReadable: { [weak self] in self?.acceptAll() }, onWritable: {})
        watcher?.setReading(true)
    }

    private func acceptAll() {
        for _ in 0..<64 {
            let cfd: Int32
            let peer: String
            switch Socket.accept(fd) {
            case .none:
                return
            case .failed(let error):
                if Socket.isResourceShortage(error) { pauseAccepting() }
                return
            case .accepted(let f, let p):
                (cfd, peer) = (f, p)
            }
            backoff = .zero
            let address = Socket.host(of: peer)
            if let admission, let refused = admission.admit(address) {
                // Closed at once: the client sees the connection end, and nothing was allocated.
                TransportEvents.observer?.connectionShed(reason: refused)
                Glibc.close(cfd)
                continue
            }
            let engine: TLSEngine?
            if let ctx = tls {
                guard let e = try? TLSEngine(context: ctx.current) else {
                    admission?.release(address)
                    Glibc.close(cfd)
                    continue
                }
                engine = e
            } else {
                engine = nil
            }
            // Weak, like every callback here: a late event must find nothing, not a freed object.
            let admission = self.admission
            let c = make(loop, cfd, peer, engine) { [weak self] c in
                admission?.release(address)
                self?.connections[ObjectIdentifier(c)] = nil
                self?.checkDrained()
            }
            connections[ObjectIdentifier(c)] = c
            c.accepted()
        }
    }

    /// Stops watching the listening socket for a while (see the type's comment).
    private func pauseAccepting() {
        TransportEvents.observer?.connectionShed(reason: .acceptFailed)
        guard backoffTimer == nil, let watcher else { return }
        backoff = min(max(backoff * 2, .milliseconds(50)), .seconds(1))
        watcher.setReading(false)
        backoffTimer = loop.schedule(after: backoff) { [weak self] in
            guard let self else { return }
            self.backoffTimer = nil
            guard self.fd >= 0 else { return }
            self.watcher?.setReading(true)
        }
    }

    func stop() {
        backoffTimer?.cancel()
        backoffTimer = nil
        watcher?.close()
        watcher = nil
        if fd >= 0 { Glibc.close(fd) }
        fd = -1
    }

    /// Drains several listeners (each on its own loop) and calls `done` once, when the last is done.
    static func drainAll(_ listeners: [Listener], timeout: Duration, done: @escaping @Sendable () -> Void) {
        let remaining = Atomic<Int>(listeners.count)
        for l in listeners {
            l.loop.execute {
                l.drain(timeout: timeout) {
                    if remaining.subtract(1, ordering: .acquiringAndReleasing).newValue == 0 { done() }
                }
            }
        }
    }

    /// Stops accepting, drains every connection, and calls `done` when all are closed.
    func drain(timeout: Duration, done: @escaping () -> Void) {
        stop()
        drained = done
        for c in connections.values { c.drain(grace: timeout) }
        checkDrained()
    }

    private func checkDrained() {
        guard connections.isEmpty, let d = drained else { return }
        drained = nil
        d()
    }
}
