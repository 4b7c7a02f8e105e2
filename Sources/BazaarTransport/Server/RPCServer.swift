import BazaarCore
import CBazaarEvent
import Glibc
import Synchronization

/// A gRPC server: generated service protocols register on it, and ``run(onListening:)`` serves
/// them until the task is cancelled (or SIGTERM/SIGINT arrives, when configured), then shuts
/// down gracefully: listeners close, connections get GOAWAY, in-flight calls finish, and after
/// ``ServerConfiguration/drainTimeout`` whatever remains is closed.
///
/// ```swift
/// let server = try RPCServer(configuration: config, services: [CatalogService()])
/// try await server.run()
/// ```
public final class RPCServer: Sendable {
    public let configuration: ServerConfiguration
    private let shared: ServerShared
    private let drainObservers: [any ServerDrainObserver]
    private let state = Mutex(State())

    private struct State {
        var group: EventLoopGroup?
        var listeners: [Listener] = []
        var shuttingDown = false
        var done: CheckedContinuation<Void, Never>?
        var port = 0
    }

    public init(configuration: ServerConfiguration, services: [any RPCService], interceptors: [any RPCInterceptor] = []) throws {
        self.configuration = configuration
        var table: [String: RPCHandler] = [:]
        for service in services {
            for h in service.handlers {
                if table[h.method.path] != nil { throw RPCError(.alreadyExists, "method \(h.method.path) is registered twice") }
                table[h.method.path] = h
            }
        }
        var tls: TLSCredentials?
        if case .mutualTLS(let c) = configuration.security { tls = try TLSCredentials(c, server: true) }
        drainObservers = services.compactMap { $0 as? any ServerDrainObserver }
        shared = ServerShared(handlers: table, configuration: configuration, interceptors: interceptors, tls: tls)
    }

    /// The bound port, once listening.
    public var port: Int { state.withLock { $0.port } }

    /// Serves until the calling task is cancelled or a shutdown signal arrives; returns after the
    /// graceful shutdown. `onListening` receives the bound port (useful with port 0).
    public func run(onListening: @Sendable (Int) -> Void = { _ in }) async throws {
        // Shut down (or cancelled) before it started: there is nothing to serve or to drain.
        if state.withLock({ $0.shuttingDown }) || Task.isCancelled { return }
        let group = EventLoopGroup(count: configuration.loopCount ?? EventLoopGroup.coreCount)
        var listeners: [Listener] = []
        let shared = self.shared
        do {
            let port: Int
            (listeners, port) = try Listener.bindAll(on: group, host: configuration.host, port: configuration.port,
                                                     tls: shared.tls) { loop, fd, peer, tls, onClose in
                ServerConnection(loop: loop, fd: fd, peer: peer, shared: shared, tls: tls) { onClose($0) }
            }
            let stoppedMeanwhile = state.withLock { s -> Bool in
                s.group = group
                s.listeners = listeners
                s.port = port
                return s.shuttingDown
            }
            if stoppedMeanwhile {
                // shutdown() ran while the listeners were being made: close them, serve nothing.
                for l in listeners { l.loop.execute { l.stop() } }
                group.shutdown()
                return
            }
            for l in listeners { l.loop.execute { l.start() } }
            var signals: SignalWatcher?
            if configuration.handleSignals {
                signals = SignalWatcher(loop: group.loops[0], signals: [SIGTERM, SIGINT]) { [weak self] in self?.shutdown() }
            }
            shared.tls?.watch(on: group.loops[0], every: configuration.tlsReloadInterval, onSIGHUP: configuration.handleSignals)
            onListening(port)
            await withTaskCancellationHandler {
                await withCheckedContinuation { c in
                    let already = state.withLock { s -> Bool in
                        if s.shuttingDown && s.listeners.isEmpty { return true }
                        s.done = c
                        return false
                    }
                    if already { c.resume() }
                }
            } onCancel: {
                self.shutdown()
            }
            signals?.cancel()
            shared.tls?.stopWatching()
        } catch {
            for l in listeners { l.loop.execute { l.stop() } }
            group.shutdown()
            throw error
        }
        group.shutdown()
    }

    /// Starts the graceful shutdown. ``run(onListening:)`` returns when it is done.
    ///
    /// Services that observe draining (health) hear of it first; then, after
    /// ``ServerConfiguration/drainDelay``, listeners close and connections get GOAWAY.
    public func shutdown() {
        let listeners = state.withLock { s -> [Listener] in
            guard !s.shuttingDown else { return [] }
            s.shuttingDown = true
            return s.listeners
        }
        guard !listeners.isEmpty else { return }
        for o in drainObservers { o.serverWillDrain() }
        let delay = configuration.drainDelay
        if delay > .zero {
            let loop = listeners[0].loop
            loop.execute { _ = loop.schedule(after: delay) { self.closeListeners(listeners) } }
        } else {
            closeListeners(listeners)
        }
    }

    private func closeListeners(_ listeners: [Listener]) {
        Listener.drainAll(listeners, timeout: configuration.drainTimeout) { self.finished() }
    }

    private func finished() {
        let c = state.withLock { s -> CheckedContinuation<Void, Never>? in
            s.listeners = []
            defer { s.done = nil }
            return s.done
        }
        c?.resume()
    }
}

/// One listening socket on one loop (SO_REUSEPORT spreads connections over the loops), and the
/// connections it accepted.
/// A connection a ``Listener`` accepted: started at once, drained at shutdown.
protocol AcceptedConnection: AnyObject {
    func accepted()
    func drain(grace: Duration)
}

extension ServerConnection: AcceptedConnection {
    func accepted() { start() }
}

/// One listening socket on one loop: accepts connections (with a TLS engine each when the server
/// does TLS), keeps them until they close, and drains them. What a connection is (the gRPC
/// server's, the HTTP front door's) comes from `make`.
final class Listener: @unchecked Sendable {
    typealias Make = (_ loop: EventLoop, _ fd: Int32, _ peer: String, _ tls: TLSEngine?,
                      _ onClose: @escaping (AnyObject) -> Void) -> AcceptedConnection
    let loop: EventLoop
    private var fd: Int32
    private let tls: TLSCredentials?
    private let make: Make
    private var watcher: IOWatcher?
    private var connections: [ObjectIdentifier: AcceptedConnection] = [:]
    private var drained: (() -> Void)?

    init(loop: EventLoop, fd: Int32, tls: TLSCredentials?, make: @escaping Make) {
        self.loop = loop
        self.fd = fd
        self.tls = tls
        self.make = make
    }

    /// One listener per loop of `group`, all on the same port (SO_REUSEPORT spreads connections
    /// over them); port 0 picks one for all. Nothing is left open when it throws.
    static func bindAll(on group: EventLoopGroup, host: String, port: Int, tls: TLSCredentials?,
                        make: @escaping Make) throws -> (listeners: [Listener], port: Int)
    {
        var listeners: [Listener] = []
        var port = port
        do {
            for loop in group.loops {
                let fd = try Socket.listen(host: host, port: port, reusePort: true)
                if port == 0 { port = Socket.localPort(fd) }
                listeners.append(Listener(loop: loop, fd: fd, tls: tls, make: make))
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
            guard let (cfd, peer) = Socket.accept(fd) else { return }
            let engine: TLSEngine?
            if let ctx = tls {
                guard let e = try? TLSEngine(context: ctx.current) else {
                    Glibc.close(cfd)
                    continue
                }
                engine = e
            } else {
                engine = nil
            }
            // Weak, like every callback here: a late event must find nothing, not a freed object.
            let c = make(loop, cfd, peer, engine) { [weak self] c in
                self?.connections[ObjectIdentifier(c)] = nil
                self?.checkDrained()
            }
            connections[ObjectIdentifier(c)] = c
            c.accepted()
        }
    }

    func stop() {
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

/// Signals (SIGTERM, SIGINT, SIGHUP), through libevent, on one loop.
///
/// Once a watched signal has fired, `cancel()` leaves those signals ignored instead of restoring
/// their default action: the process is on its way out because of one, and a repeat (a
/// supervisor or kubelet sending SIGTERM again, a second Ctrl-C) must not kill it between the end
/// of the drain and a clean exit.
final class SignalWatcher: @unchecked Sendable {
    private var events: [OpaquePointer] = []
    private let signals: [Int32]
    private let fired = Atomic<Bool>(false)
    private let action: () -> Void
    private let loop: EventLoop

    init(loop: EventLoop, signals: [Int32], action: @escaping @Sendable () -> Void) {
        self.loop = loop
        self.signals = signals
        self.action = action
        _ = Unmanaged.passRetained(self)
        // Registered here and now, not on the loop later: the caller announces that it listens
        // right after, and a SIGTERM arriving before the registration would kill the process.
        // (libevent's bases are thread-safe: evthread_use_pthreads runs before any loop exists.)
        let me = Unmanaged.passUnretained(self).toOpaque()
        for sig in signals {
            if let ev = event_new(loop.base, sig, Int16(EV_SIGNAL | EV_PERSIST), { _, _, arg in
                let watcher = Unmanaged<SignalWatcher>.fromOpaque(arg!).takeUnretainedValue()
                watcher.fired.store(true, ordering: .relaxed)
                watcher.action()
            }, me) {
                event_add(ev, nil)
                events.append(ev)
            }
        }
    }

    func cancel() {
        loop.execute { [self] in
            for ev in events { event_free(ev) }
            events.removeAll()
            // Freeing the events restored the previous dispositions (the default: terminate).
            if fired.load(ordering: .relaxed) {
                for sig in signals { Glibc.signal(sig, SIG_IGN) }
            }
            Unmanaged.passUnretained(self).release()
        }
    }
}
