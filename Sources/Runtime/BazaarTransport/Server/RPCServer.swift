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
    /// The process's loops, when the caller passed them; otherwise `run` makes its own.
    private let sharedGroup: EventLoopGroup?
    private let state = Lock(State())

    private struct State {
        var listeners: [Listener] = []
        var shuttingDown = false
        var done: CheckedContinuation<Void, Never>?
        var port = 0
    }

    /// - Parameter group: the process's event loops, shared with its channels and pools (see
    ///   ``EventLoopGroup``); the server listens on every loop of it and leaves it running when it
    ///   stops. Without one, the server runs a group of its own (``ServerConfiguration/loopCount``).
    public init(
        configuration: ServerConfiguration, services: [any RPCService], interceptors: [any ServerInterceptor] = [],
        group: EventLoopGroup? = nil
    ) throws {
        self.configuration = configuration
        sharedGroup = group
        let pipeline = try ServerPipeline(
            services: services, interceptors: interceptors, authorization: configuration.authorization,
            observer: configuration.callObserver)
        var tls: TLSCredentials?
        if case .mutualTLS(let c) = configuration.security { tls = try TLSCredentials(c, server: true) }
        drainObservers = services.compactMap { $0 as? any ServerDrainObserver }
        shared = ServerShared(pipeline: pipeline, configuration: configuration, tls: tls)
    }

    /// The bound port, once listening.
    public var port: Int { state.withLock { $0.port } }

    /// Serves until the calling task is cancelled or a shutdown signal arrives; returns after the
    /// graceful shutdown. `onListening` receives the bound port (useful with port 0).
    public func run(onListening: @Sendable (Int) -> Void = { _ in }) async throws {
        // Shut down (or cancelled) before it started: there is nothing to serve or to drain.
        if state.withLock({ $0.shuttingDown }) || Task.isCancelled { return }
        let owned = sharedGroup == nil
        let group = sharedGroup ?? EventLoopGroup(count: configuration.loopCount ?? EventLoopGroup.coreCount)
        var listeners: [Listener] = []
        let shared = self.shared
        do {
            let port: Int
            (listeners, port) = try Listener.bindAll(
                on: group, host: configuration.host, port: configuration.port,
                tls: shared.tls
            ) { loop, fd, peer, tls, onClose in
                ServerConnection(loop: loop, fd: fd, peer: peer, shared: shared, tls: tls) { onClose($0) }
            }
            let stoppedMeanwhile = state.withLock { s -> Bool in
                s.listeners = listeners
                s.port = port
                return s.shuttingDown
            }
            if stoppedMeanwhile {
                // shutdown() ran while the listeners were being made: close them, serve nothing.
                for l in listeners { l.loop.execute { l.stop() } }
                if owned { group.shutdown() }
                return
            }
            for l in listeners { l.loop.execute { l.start() } }
            var signals: SignalWatcher?
            if configuration.handleSignals {
                signals = SignalWatcher(loop: group.loops[0], signals: [SIGTERM, SIGINT]) { [weak self] in
                    self?.shutdown()
                }
            }
            shared.tls?.watch(
                on: group.loops[0], every: configuration.tlsReloadInterval, onSIGHUP: configuration.handleSignals)
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
            if owned { group.shutdown() }
            throw error
        }
        if owned { group.shutdown() }
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
