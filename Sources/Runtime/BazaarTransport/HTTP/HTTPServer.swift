import BazaarCore
import Glibc
import Synchronization

/// The HTTP front door: HTTP/1.1 (keep-alive, chunked) and HTTP/2 on one port, with TLS
/// termination (ALPN `h2` or `http/1.1`) or in plaintext (HTTP/1.1, or h2c with prior
/// knowledge). Every request goes to one ``HTTPResponder``; the edge gateway is one.
///
/// ```swift
/// let server = HTTPServer(configuration: HTTPServerConfiguration(port: 8080), responder: gateway)
/// try await server.run()   // until cancelled, `shutdown()`, or SIGTERM with handleSignals
/// ```
public final class HTTPServer: Sendable {
    public let configuration: HTTPServerConfiguration
    private let shared: HTTPServerShared
    private let tls: TLSCredentials?
    private let sharedGroup: EventLoopGroup?
    private struct State {
        var listeners: [Listener] = []
        var shuttingDown = false
        var done: CheckedContinuation<Void, Never>?
        var finished = false
    }
    private let state = Lock(State())

    /// - Parameter group: the process's event loops (see ``EventLoopGroup``), left running when
    ///   the server stops; without one the server runs its own (``HTTPServerConfiguration/loopCount``).
    public init(configuration: HTTPServerConfiguration, responder: any HTTPResponder, group: EventLoopGroup? = nil)
        throws
    {
        self.configuration = configuration
        sharedGroup = group
        shared = HTTPServerShared(responder: responder, configuration: configuration)
        tls = try configuration.tls.map { try TLSCredentials($0, server: true) }
    }

    /// Listens (one socket per loop, SO_REUSEPORT) and serves until shut down; `onListening`
    /// gets the bound port.
    public func run(onListening: @Sendable (Int) -> Void = { _ in }) async throws {
        if state.withLock({ $0.shuttingDown }) || Task.isCancelled { return }
        let owned = sharedGroup == nil
        let group = sharedGroup ?? EventLoopGroup(count: configuration.loopCount ?? EventLoopGroup.coreCount)
        let shared = self.shared
        var signals: SignalWatcher?
        do {
            let (listeners, port) = try Listener.bindAll(
                on: group, host: configuration.host, port: configuration.port,
                tls: tls, limits: configuration.connections
            ) { loop, fd, peer, tls, onClose in
                HTTPServerConnection(loop: loop, fd: fd, peer: peer, shared: shared, tls: tls, onClose: onClose)
            }
            state.withLock { $0.listeners = listeners }
            for l in listeners { l.loop.execute { l.start() } }
            // Before the port is announced, as in RPCServer: a SIGTERM right after must drain, not kill.
            if configuration.handleSignals {
                signals = SignalWatcher(loop: group.loops[0], signals: [SIGTERM, SIGINT]) { [weak self] in
                    self?.shutdown()
                }
            }
            if let tls { tls.watch(on: group.loops[0], every: .seconds(10), onSIGHUP: configuration.handleSignals) }
            onListening(port)
        } catch {
            if owned { group.shutdown() }
            throw error
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (k: CheckedContinuation<Void, Never>) in
                let finishedAlready = state.withLock { s -> Bool in
                    if s.finished { return true }
                    s.done = k
                    return false
                }
                if finishedAlready { k.resume() }
            }
        } onCancel: {
            self.shutdown()
        }
        // Frees the handlers' events before the loops go, and ignores repeats of the signal that
        // started this shutdown (see SignalWatcher).
        signals?.cancel()
        tls?.stopWatching()
        if owned { group.shutdown() }
    }

    /// Stops accepting, lets requests in flight finish (up to the drain timeout), then ends `run`.
    public func shutdown() {
        let listeners = state.withLock { s -> [Listener] in
            if s.shuttingDown { return [] }
            s.shuttingDown = true
            return s.listeners
        }
        if listeners.isEmpty {
            finish()
            return
        }
        Listener.drainAll(listeners, timeout: configuration.drainTimeout) { self.finish() }
    }

    private func finish() {
        let k = state.withLock { s -> CheckedContinuation<Void, Never>? in
            s.finished = true
            defer { s.done = nil }
            return s.done
        }
        k?.resume()
    }
}
