import BazaarCore
import Glibc
import Synchronization

/// A client channel to one or more endpoints: one HTTP/2 connection per endpoint, calls spread
/// over the ready ones in turn and multiplexed as streams, reconnection with gRPC's backoff.
/// Generated clients take it as their transport.
///
/// ```swift
/// let channel = try GRPCChannel(configuration: .init(endpoints: [Endpoint("catalog:8443")!],
///                                                    security: .mutualTLS(tls)))
/// let catalog = Shop_V1_CatalogService.Client(transport: channel)
/// ```
public final class GRPCChannel: ClientTransport, @unchecked Sendable {
    public let configuration: ChannelConfiguration
    let loop: EventLoop
    private let ownedGroup: EventLoopGroup?
    private let tls: TLSCredentials?
    private let interceptors: [any RPCInterceptor]
    // Loop-confined state.
    @exclusivity(unchecked) private var subchannels: [Subchannel] = []
    @exclusivity(unchecked) private var nextPick = 0
    @exclusivity(unchecked) private var closed = false
    /// Reconnect after every loss and failure (with backoff) instead of waiting for the next call.
    @exclusivity(unchecked) private var keepConnected = false
    @exclusivity(unchecked) private var stateObserver: (@Sendable (ConnectivityState) -> Void)?
    private let published = Atomic<UInt8>(ConnectivityState.idle.rawValue)

    /// - Parameters:
    ///   - group: loops to run on (the channel takes one: the caller's when it runs on one of
    ///     them); by default the channel starts its own single loop.
    ///   - credentials: TLS material shared with other channels (with mutual TLS); by default the
    ///     channel loads its own from the configuration.
    public convenience init(
        configuration: ChannelConfiguration, interceptors: [any RPCInterceptor] = [], group: EventLoopGroup? = nil,
        credentials: TLSCredentials? = nil
    ) throws {
        if let group {
            try self.init(
                configuration: configuration, interceptors: interceptors, loop: group.preferredLoop(),
                ownedGroup: nil, credentials: credentials)
        } else {
            let own = EventLoopGroup(count: 1)
            try self.init(
                configuration: configuration, interceptors: interceptors, loop: own.loops[0], ownedGroup: own,
                credentials: credentials)
        }
    }

    /// A channel whose connections live on `loop`, one of a group the caller keeps running for
    /// as long as the channel is used: a mesh channel keeps one such channel per loop and
    /// endpoint, so that a call goes out and comes back on the thread that made it.
    public convenience init(
        configuration: ChannelConfiguration, interceptors: [any RPCInterceptor] = [], on loop: EventLoop,
        credentials: TLSCredentials? = nil
    ) throws {
        try self.init(
            configuration: configuration, interceptors: interceptors, loop: loop, ownedGroup: nil,
            credentials: credentials)
    }

    private init(
        configuration: ChannelConfiguration, interceptors: [any RPCInterceptor], loop: EventLoop,
        ownedGroup: EventLoopGroup?, credentials: TLSCredentials?
    ) throws {
        guard !configuration.endpoints.isEmpty else {
            ownedGroup?.shutdown()
            throw RPCError(.invalidArgument, "a channel needs at least one endpoint")
        }
        self.configuration = configuration
        self.interceptors = interceptors
        if case .mutualTLS(let c) = configuration.security {
            do {
                tls = try credentials ?? TLSCredentials(c, server: false)
            } catch {
                ownedGroup?.shutdown()
                throw error
            }
        } else {
            tls = nil
        }
        self.loop = loop
        self.ownedGroup = ownedGroup
        subchannels = configuration.endpoints.map { Subchannel(endpoint: $0) }
        tls?.watch(on: loop, every: configuration.tlsReloadInterval, onSIGHUP: false)
    }

    deinit { ownedGroup?.shutdown() }

    // MARK: connectivity

    /// The channel's connectivity: READY when any endpoint has a usable connection, else
    /// CONNECTING, TRANSIENT_FAILURE or IDLE, as its endpoints are. Readable from any thread.
    public var connectivity: ConnectivityState {
        ConnectivityState(rawValue: published.load(ordering: .acquiring)) ?? .idle
    }

    /// Connects now, and from then on keeps a connection to every endpoint: lost connections are
    /// replaced at once and failed attempts retried with the backoff. Load balancers use this
    /// for their subchannels; calls alone connect lazily. `onChange` hears every state change
    /// (on the channel's loop; keep it short).
    public func connect(onChange: (@Sendable (ConnectivityState) -> Void)? = nil) {
        loop.execute { [self] in
            keepConnected = true
            if let onChange { stateObserver = onChange }
            for s in subchannels where s.connection == nil && !s.connecting && s.retryTimer == nil && !closed {
                connect(s)
            }
            publishState()
        }
    }

    private func computeState() -> ConnectivityState {
        if closed { return .shutdown }
        if subchannels.contains(where: { $0.connection?.isUsable == true && !$0.connecting }) { return .ready }
        if subchannels.contains(where: { $0.connecting }) { return .connecting }
        if subchannels.contains(where: { $0.lastError != nil }) { return .transientFailure }
        return .idle
    }

    private func publishState() {
        let state = computeState()
        let old = published.exchange(state.rawValue, ordering: .acquiringAndReleasing)
        if old != state.rawValue { stateObserver?(state) }
    }

    /// The loop this channel's connections live on. Callers that make many calls can run as tasks
    /// preferring it (`Task(executorPreference: channel.eventLoop)`) to avoid thread hops.
    public var eventLoop: EventLoop { loop }

    /// Closes every connection; calls in flight fail with `UNAVAILABLE`. Returns at once.
    public func close() {
        loop.execute { [self] in
            closed = true
            for s in subchannels { s.shutdown() }
            publishState()
        }
    }

    /// Closes every connection and, when the channel runs its own loop, waits for that loop to
    /// stop, so that nothing of the channel runs after this returns.
    public func shutdown() async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            loop.execute { [self] in
                closed = true
                for s in subchannels { s.shutdown() }
                publishState()
                c.resume()
            }
        }
        ownedGroup?.shutdown()
    }

    // MARK: connections

    private final class Waiter {
        let waitForReady: Bool
        let body: (Result<ClientConnection, RPCError>) -> Void
        @exclusivity(unchecked) var timer: LoopTimer?
        init(waitForReady: Bool, body: @escaping (Result<ClientConnection, RPCError>) -> Void) {
            self.waitForReady = waitForReady
            self.body = body
        }
    }

    private final class Subchannel {
        let endpoint: Endpoint
        @exclusivity(unchecked) var connection: ClientConnection?
        @exclusivity(unchecked) var connecting = false
        @exclusivity(unchecked) var attempts = 0
        @exclusivity(unchecked) var lastError: String?
        @exclusivity(unchecked) var retryTimer: LoopTimer?
        init(endpoint: Endpoint) { self.endpoint = endpoint }

        func shutdown() {
            retryTimer?.cancel()
            connection?.close(error: "channel closed")
            connection = nil
        }
    }

    @exclusivity(unchecked) private var waiters: [Waiter] = []

    /// Finds a ready connection, or connects and waits (on the loop).
    private func withConnection(
        waitForReady: Bool, deadline: ContinuousClock.Instant?,
        _ body: @escaping (Result<ClientConnection, RPCError>) -> Void
    ) {
        if closed { return body(.failure(RPCError(.unavailable, "the channel is closed"))) }
        let n = subchannels.count
        for i in 0..<n {
            let s = subchannels[(nextPick + i) % n]
            if let c = s.connection, c.isUsable {
                nextPick = (nextPick + i + 1) % n
                return body(.success(c))
            }
        }
        for s in subchannels where s.connection == nil && !s.connecting && s.retryTimer == nil { connect(s) }
        let anyConnecting = subchannels.contains { $0.connecting }
        if !waitForReady && !anyConnecting {
            return body(.failure(unavailable()))
        }
        let w = Waiter(waitForReady: waitForReady, body: body)
        if let deadline {
            w.timer = loop.schedule(after: deadline - .now) { [weak self, weak w] in
                guard let self, let w, let i = self.waiters.firstIndex(where: { $0 === w }) else { return }
                self.waiters.remove(at: i)
                w.body(.failure(RPCError(.deadlineExceeded, "deadline exceeded while waiting for a connection")))
            }
        }
        waiters.append(w)
    }

    private func unavailable() -> RPCError {
        let why = subchannels.compactMap { s in s.lastError.map { "\(s.endpoint): \($0)" } }.joined(separator: "; ")
        return RPCError(.unavailable, why.isEmpty ? "no connection is ready" : why)
    }

    private func connect(_ s: Subchannel) {
        s.connecting = true
        s.retryTimer = nil
        let fail: (String) -> Void = { [weak self, weak s] why in
            guard let self, let s else { return }
            s.connecting = false
            s.connection = nil
            s.lastError = why
            s.attempts += 1
            self.connectFailed()
            self.publishState()
            if !self.closed && (self.keepConnected || self.waiters.contains(where: { $0.waitForReady })) {
                s.retryTimer = self.loop.schedule(after: self.configuration.backoff.delay(attempt: s.attempts)) {
                    [weak self, weak s] in
                    guard let self, let s else { return }
                    s.retryTimer = nil
                    self.connect(s)
                }
            } else {
                // Not retried now; the next call may try again after the backoff.
                s.retryTimer = self.loop.schedule(after: self.configuration.backoff.delay(attempt: s.attempts)) {
                    [weak s] in
                    s?.retryTimer = nil
                }
            }
        }
        let addrs: [(family: Int32, addr: [UInt8])]
        do { addrs = try Socket.resolve(host: s.endpoint.host, port: s.endpoint.port) } catch {
            return fail("\(error)")
        }
        guard let first = addrs.first else { return fail("no address") }
        let fd: Int32
        do { fd = try Socket.startConnect(family: first.family, addr: first.addr) } catch {
            return fail("\(error)")
        }
        let engine: TLSEngine?
        do { engine = try tls.map { try TLSEngine(context: $0.current, serverName: s.endpoint.host) } } catch {
            Glibc.close(fd)
            return fail("\(error)")
        }
        let c = ClientConnection(loop: loop, fd: fd, endpoint: s.endpoint, configuration: configuration, tls: engine)
        s.connection = c
        let timeout = loop.schedule(after: configuration.backoff.minimumConnectTimeout) { [weak c] in
            c?.close(error: "connect timed out")
        }
        c.onConnect = { [weak self, weak s] error in
            timeout.cancel()
            guard let self, let s else { return }
            if let error { return fail(error) }
            s.connecting = false
            s.lastError = nil
            self.connectionReady()
            self.publishState()
        }
        c.onUnusable = { [weak self, weak s, weak c] in
            guard let self, let s, let c else { return }
            if s.connection === c && !s.connecting {
                // A peer that closes before it speaks HTTP/2 (a TLS port called in plaintext, a
                // port that is not gRPC) has refused us: back off, or we would reconnect in a
                // tight loop. One that worked and went away is replaced at once.
                guard c.peerSpokeHTTP2 else { return fail("the server closed the connection before speaking HTTP/2") }
                s.attempts = 0
                s.connection = nil
                if self.keepConnected && !self.closed && s.retryTimer == nil { self.connect(s) }
            }
            self.publishState()
        }
        c.start(connecting: true)
        publishState()
    }

    private func connectionReady() {
        let ready = waiters
        waiters.removeAll()
        for w in ready {
            w.timer?.cancel()
            withConnection(waitForReady: w.waitForReady, deadline: nil, w.body)
        }
    }

    private func connectFailed() {
        guard !subchannels.contains(where: { $0.connecting }) else { return }
        // Fail-fast calls fail now; wait-for-ready calls keep waiting (until their deadline).
        let failing = waiters.filter { !$0.waitForReady }
        waiters.removeAll { !$0.waitForReady }
        let error = unavailable()
        for w in failing {
            w.timer?.cancel()
            w.body(.failure(error))
        }
    }

    // MARK: calls

    private func effectiveTimeout(_ method: MethodDescriptor, _ options: CallOptions) -> Duration? {
        options.timeout ?? method.options.defaultDeadline
    }

    /// A handle that lets a task cancel a call that lives on the loop.
    private final class CallHandle: @unchecked Sendable {
        @exclusivity(unchecked) var stream: ClientStream?
        @exclusivity(unchecked) var cancelled = false
    }

    /// Starts a call on the loop: connection, stream, deadline.
    private func start(
        _ method: MethodDescriptor, metadata: Metadata, options: CallOptions, deadline: ContinuousClock.Instant?,
        unaryRequest: [UInt8]?, handle: CallHandle,
        onMessage: @escaping ([UInt8]) -> Void, onFinish: @escaping (RPCError) -> Void,
        onOpen: @escaping (ClientStream) -> Void = { _ in }
    ) {
        withConnection(waitForReady: options.waitForReady, deadline: deadline) { [self] result in
            switch result {
            case .failure(let e):
                onFinish(e)
            case .success(let connection):
                if handle.cancelled { return onFinish(RPCError(.cancelled, "call cancelled")) }
                let stream = ClientStream(
                    connection: connection, options: options, maxReceive: configuration.maxReceiveMessageSize,
                    countsTakes: unaryRequest == nil, onMessage: onMessage, onFinish: onFinish)
                handle.stream = stream
                let timeout = deadline.map { $0 - .now }
                if let timeout, timeout <= .zero {
                    return onFinish(RPCError(.deadlineExceeded, "deadline exceeded before the call started"))
                }
                if let e = connection.open(
                    stream, method: method, metadata: metadata, timeout: timeout,
                    compression: options.compression, unaryRequest: unaryRequest)
                {
                    return stream.cancel(e)
                }
                if let deadline { stream.armDeadline(deadline) }
                onOpen(stream)
            }
        }
    }

    private func cancel(_ handle: CallHandle) {
        loop.execute {
            handle.cancelled = true
            handle.stream?.cancel(RPCError(.cancelled, "call cancelled by the client"))
        }
    }

    public func unary(_ method: MethodDescriptor, request: [UInt8], options: CallOptions) async throws -> [UInt8] {
        let timeout = effectiveTimeout(method, options)
        let deadline = timeout.map { ContinuousClock.now.advanced(by: $0) }
        let head = RPCCallHead(method: method, metadata: options.metadata, deadline: deadline, peerIdentity: nil)
        if interceptors.isEmpty { return try await rawUnary(method, request, head.metadata, options, deadline) }
        let result = Lock<[UInt8]?>(nil)
        try await interceptors.run(head) { head in
            let r = try await self.rawUnary(method, request, head.metadata, options, deadline)
            result.withLock { $0 = r }
        }
        return result.withLock { $0 } ?? []
    }

    private func rawUnary(
        _ method: MethodDescriptor, _ request: [UInt8], _ metadata: Metadata, _ options: CallOptions,
        _ deadline: ContinuousClock.Instant?
    ) async throws -> [UInt8] {
        let handle = CallHandle()
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (c: CheckedContinuation<[UInt8], any Error>) in
                // A caller on the channel's loop starts the call here and now.
                loop.run { [self] in
                    attemptUnary(method, request, metadata, options, deadline, handle, c, attempt: 1)
                }
            }
        } onCancel: {
            cancel(handle)
        }
    }

    /// One attempt of a unary call (on the loop). A stream the server never processed (refused, or
    /// cut by a GOAWAY) is sent once more on another connection: gRPC's transparent retry, safe for
    /// any method because the server did not see the call.
    private func attemptUnary(
        _ method: MethodDescriptor, _ request: [UInt8], _ metadata: Metadata, _ options: CallOptions,
        _ deadline: ContinuousClock.Instant?, _ handle: CallHandle,
        _ c: CheckedContinuation<[UInt8], any Error>, attempt: Int
    ) {
        var response: [UInt8]?
        var count = 0
        start(
            method, metadata: metadata, options: options, deadline: deadline, unaryRequest: request, handle: handle,
            onMessage: { m in
                count += 1
                if count == 1 { response = m }
            },
            onFinish: { [self] status in
                if status.code != .ok {
                    if attempt == 1, handle.stream?.refused == true, !handle.cancelled {
                        return attemptUnary(method, request, metadata, options, deadline, handle, c, attempt: 2)
                    }
                    return c.resume(throwing: status)
                }
                guard count == 1, let response else {
                    return c.resume(
                        throwing: RPCError(
                            count == 0 ? .unimplemented : .internal,
                            "unary call got \(count) response messages"))
                }
                c.resume(returning: response)
            })
    }

    /// Carries "the caller took a response" from the caller's thread to the call's stream.
    private final class TakeRelay: @unchecked Sendable {
        @exclusivity(unchecked) weak var stream: ClientStream?  // set and read on the loop only
    }

    public func streaming(_ method: MethodDescriptor, requests: RPCStream<[UInt8]>, options: CallOptions) -> RPCStream<
        [UInt8]
    > {
        let (base, continuation) = AsyncThrowingStream<[UInt8], any Error>.makeStream()
        let relay = TakeRelay()
        let loop = self.loop
        // Responses are credited to the server as the caller takes them: inbound back-pressure.
        let out = RPCStream(base, onTake: { loop.run { relay.stream?.responseTaken() } })
        let timeout = effectiveTimeout(method, options)
        let deadline = timeout.map { ContinuousClock.now.advanced(by: $0) }
        let head = RPCCallHead(method: method, metadata: options.metadata, deadline: deadline, peerIdentity: nil)
        let task = Task {
            do {
                try await self.interceptors.run(head) { head in
                    try await self.rawStreaming(method, requests, head.metadata, options, deadline, continuation, relay)
                }
                continuation.finish()
            } catch {
                continuation.finish(throwing: error)
            }
        }
        continuation.onTermination = { reason in
            if case .cancelled = reason { task.cancel() }
        }
        return out
    }

    private func rawStreaming(
        _ method: MethodDescriptor, _ requests: RPCStream<[UInt8]>, _ metadata: Metadata,
        _ options: CallOptions, _ deadline: ContinuousClock.Instant?,
        _ responses: RPCStream<[UInt8]>.Continuation, _ relay: TakeRelay
    ) async throws {
        let handle = CallHandle()
        try await withTaskCancellationHandler {
            let (opened, openedContinuation) = AsyncStream<ClientStream?>.makeStream()
            let pump = Task {
                var it = opened.makeAsyncIterator()
                guard let stream = await it.next() ?? nil else { return }
                do {
                    for try await message in requests {
                        try await withCheckedThrowingContinuation { c in
                            self.loop.execute { stream.write(message, c) }
                        }
                    }
                    self.loop.execute { stream.endRequests() }
                } catch {
                    let e = error as? RPCError ?? RPCError(.cancelled, "request stream failed: \(error)")
                    self.loop.execute { stream.cancel(e) }
                }
            }
            defer { pump.cancel() }
            try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, any Error>) in
                loop.execute { [self] in
                    start(
                        method, metadata: metadata, options: options, deadline: deadline, unaryRequest: nil,
                        handle: handle,
                        onMessage: { responses.yield($0) },
                        onFinish: { status in
                            openedContinuation.yield(nil)
                            openedContinuation.finish()
                            if status.code == .ok { c.resume() } else { c.resume(throwing: status) }
                        },
                        onOpen: { stream in
                            relay.stream = stream
                            openedContinuation.yield(stream)
                            openedContinuation.finish()
                        })
                }
            }
        } onCancel: {
            cancel(handle)
        }
    }
}
