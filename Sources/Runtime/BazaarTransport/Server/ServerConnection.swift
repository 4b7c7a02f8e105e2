import BazaarCore
import CBazaarNghttp2

/// What every connection of a server shares: the method table and the settings. Immutable.
final class ServerShared: Sendable {
    /// Method table, identity check, observer, interceptors, error mapping: shared with the
    /// in-process transport.
    let pipeline: ServerPipeline
    let configuration: ServerConfiguration
    let tls: TLSCredentials?
    /// The served paths, so that `:path` arrives as an existing string.
    let paths: InternTable

    init(pipeline: ServerPipeline, configuration: ServerConfiguration, tls: TLSCredentials?) {
        self.pipeline = pipeline
        self.paths = InternTable(Array(pipeline.handlers.keys))
        self.configuration = configuration
        self.tls = tls
    }
}

/// One HTTP/2 connection of a server: nghttp2 session, gRPC streams, keepalive and draining.
/// Everything here runs on the connection's loop thread; handlers run as tasks on the same loop.
final class ServerConnection: SocketConnection, @unchecked Sendable {
    override var isServerSide: Bool { true }
    let shared: ServerShared
    let h2: HTTP2Session
    @exclusivity(unchecked) var streams = StreamMap<ServerStream>()
    private let onClose: (ServerConnection) -> Void
    @exclusivity(unchecked) private(set) var draining = false
    /// The GOAWAY naming the last accepted stream is out: once no stream is left, close.
    @exclusivity(unchecked) private var finalGoAwaySent = false
    @exclusivity(unchecked) var idleTimer: LoopTimer?
    @exclusivity(unchecked) private var ageTimer: LoopTimer?
    @exclusivity(unchecked) private var lastPingAt: ContinuousClock.Instant?
    /// The server's own keepalive: finds clients that vanished without closing.
    @exclusivity(unchecked) private var keepalive: KeepalivePinger?
    @exclusivity(unchecked) private var pingStrikes = 0

    init(
        loop: EventLoop, fd: Int32, peer: String, shared: ServerShared, tls: TLSEngine?,
        onClose: @escaping (ServerConnection) -> Void
    ) {
        self.shared = shared
        self.h2 = HTTP2Session(server: true, settings: shared.configuration.http2, values: shared.paths)
        self.onClose = onClose
        super.init(loop: loop, fd: fd, tls: tls, peerAddress: peer)
    }

    var peerIdentity: String? { tls?.peerIdentity }

    override func connectionReady() {
        let k = shared.configuration.keepalive
        if let interval = k.interval {
            keepalive = KeepalivePinger(
                loop: loop, interval: interval, timeout: k.timeout,
                sendPing: { [weak self] in
                    self?.h2.ping()
                    self?.scheduleFlush()
                },
                peerGone: { [weak self] in self?.close(error: "keepalive ping not acknowledged") })
        }
        if let age = k.maxConnectionAge {
            // ±10% jitter so that connections made together do not all reconnect together (A9).
            let jittered = age * Double.random(in: 0.9...1.1)
            ageTimer = loop.schedule(after: jittered) { [weak self] in
                self?.drain(grace: k.maxConnectionAgeGrace)
            }
        }
        armIdleTimer()
    }

    private func armIdleTimer() {
        idleTimer?.cancel()
        idleTimer = nil
        guard let idle = shared.configuration.keepalive.maxConnectionIdle, streams.isEmpty, !isClosed else { return }
        idleTimer = loop.schedule(after: idle) { [weak self] in
            guard let self, self.streams.isEmpty else { return }
            self.drain(grace: .seconds(1))
        }
    }

    override func received(_ bytes: [UInt8]) {
        keepalive?.sawRead()
        guard let events = bytes.withUnsafeBytes({ h2.receive($0) }) else {
            // nghttp2 queued a GOAWAY; send it, then close.
            flush()
            close(error: h2.fatalError)
            return
        }
        for event in events { handle(event) }
    }

    override func produceOutput(into out: inout [UInt8]) {
        if !h2.send(into: &out) {
            loop.execute { [self] in close(error: h2.fatalError) }
        }
        for event in h2.takeEvents() { handle(event) }
    }

    /// Streams whose writers wait for nghttp2 to take their data (back-pressure).
    @exclusivity(unchecked) private var blocked = BlockedStreams<ServerStream>()

    func writerBlocked(_ stream: ServerStream) {
        blocked.add(stream)
        noteWriterHeld()
    }

    override func didWrite() {
        blocked.resume()
        if draining && finalGoAwaySent && streams.isEmpty && !h2.hasPendingOutput && pendingWrite == 0 {
            close(error: nil)
        } else if !h2.isAlive && pendingWrite == 0 {
            close(error: nil)
        }
    }

    override func closed(error: String?) {
        keepalive?.stop()
        idleTimer?.cancel()
        ageTimer?.cancel()
        drainTimer?.cancel()
        for stream in streams.allValues {
            stream.peerReset()
            stream.streamClosed()
        }
        streams.removeAll()
        onClose(self)
    }

    private func handle(_ event: HTTP2Event) {
        switch event {
        case .headers(let id, let fields, let endStream):
            if let stream = streams[id] {
                // Client trailers carry nothing gRPC uses; they only end the request.
                if endStream { stream.requestEnded() }
            } else {
                open(stream: id, fields: fields, endStream: endStream)
            }
        case .data(let id, let bytes, let endStream):
            guard let stream = streams[id] else {
                // Data for a stream already answered (or refused): give the credit straight back.
                if !bytes.isEmpty {
                    h2.consume(stream: id, bytes.count)
                    scheduleFlush()
                }
                return
            }
            pingStrikes = 0
            if !bytes.isEmpty { stream.received(bytes) }
            if endStream { stream.requestEnded() }
        case .streamClosed(let id, let code):
            if let stream = streams.removeValue(forKey: id) {
                if code != 0 || !stream.isFinished { stream.peerReset() }
                stream.streamClosed()
            }
            armIdleTimer()
        case .ping:
            checkPingPolicy()
        case .pingAck:
            keepalive?.sawAck()
        case .goAway:
            break
        }
    }

    /// gRFC A8: a client that pings more often than allowed earns strikes, then GOAWAY.
    private func checkPingPolicy() {
        let k = shared.configuration.keepalive
        let now = ContinuousClock.now
        defer { lastPingAt = now }
        let allowed = streams.isEmpty && !k.permitWithoutCalls ? Duration.seconds(7200) : k.minimumClientPingInterval
        if let last = lastPingAt, now - last < allowed {
            pingStrikes += 1
            if pingStrikes > k.maxPingStrikes {
                h2.finishGoAway(code: NGHTTP2_ENHANCE_YOUR_CALM.rawValue, debug: "too_many_pings")
                draining = true
                finalGoAwaySent = true
                scheduleFlush()
            }
        }
    }

    private func open(stream id: Int32, fields: [HeaderField], endStream: Bool) {
        var method = ""
        var path = ""
        var contentType = ""
        var encoding: String?
        var acceptEncoding = ""
        var timeout: String?
        for f in fields {
            // Length first: most headers are then settled by one comparison.
            switch f.name.utf8.count {
            case 7 where f.name == ":method": method = f.value
            case 5 where f.name == ":path": path = f.value
            case 12 where f.name == "content-type": contentType = f.value
            case 12 where f.name == "grpc-timeout": timeout = f.value
            case 13 where f.name == "grpc-encoding": encoding = f.value
            case 20 where f.name == "grpc-accept-encoding": acceptEncoding = f.value
            default: break
            }
        }
        guard
            contentType == "application/grpc" || contentType.hasPrefix("application/grpc+")
                || contentType.hasPrefix("application/grpc;")
        else {
            // Connect, for clients and balancers that speak plain HTTP; anything else gets 415.
            let (bare, query) = Self.splitQuery(path)
            if let kind = ConnectWire.kind(method: method, contentType: contentType, query: query) {
                return openConnect(
                    stream: id, kind: kind, method: method, path: bare, query: query, fields: fields,
                    endStream: endStream)
            }
            h2.submitTrailersOnly(
                stream: id,
                headers: [
                    (":status", "415"), ("content-type", "text/plain"),
                    (
                        "accept-post",
                        "application/grpc, application/proto, application/json, application/connect+proto, application/connect+json"
                    ),
                ])
            return
        }
        guard method == "POST" else {
            h2.submitTrailersOnly(stream: id, headers: [(":status", "405"), ("allow", "POST")])
            return
        }
        let deadline = timeout.flatMap(GRPCHeaders.parseTimeout).map { ContinuousClock.now.advanced(by: $0) }
        let stream = ServerStream(connection: self, id: id, acceptsGzip: GRPCHeaders.listsGzip(acceptEncoding))
        streams[id] = stream
        // A call is open: the connection is not idle.
        idleTimer?.cancel()
        idleTimer = nil

        if let encoding, encoding != "identity", encoding != "gzip" {
            stream.fail(RPCError(.unimplemented, "grpc-encoding \(encoding) is not supported (use gzip or identity)"))
            return
        }
        let handler: RPCHandler
        switch shared.pipeline.route(path, peerIdentity: peerIdentity) {
        case .success(let h): handler = h
        case .failure(let refusal):
            stream.fail(refusal)
            return
        }
        var context = ServerContext(
            method: handler.method, metadata: GRPCHeaders.metadata(fields), deadline: deadline,
            peerIdentity: peerIdentity, peerAddress: peerAddress)
        context.requestCompressed = encoding == "gzip"
        context.executor = loop
        shared.pipeline.start(&context)
        stream.start(handler: handler, context: context)
        if endStream { stream.requestEnded() }
    }

    static func splitQuery(_ path: String) -> (String, String) {
        guard let q = path.firstIndex(of: "?") else { return (path, "") }
        return (String(path[..<q]), String(path[path.index(after: q)...]))
    }

    // MARK: draining

    @exclusivity(unchecked) private var drainTimer: LoopTimer?

    /// Graceful close: GOAWAY so the client sends no new calls, let in-flight calls finish, and
    /// close when they have (or when `grace` runs out).
    func drain(grace: Duration) {
        guard !draining, !isClosed else { return }
        draining = true
        // Two steps (RFC 9113 §6.8), even with no call open: a GOAWAY naming the largest stream id
        // first, so that requests already on their way are still served, and one round trip later
        // the GOAWAY naming the last stream accepted. A single GOAWAY would refuse calls the
        // client had sent before it saw the GOAWAY.
        h2.goAway(graceful: true)
        scheduleFlush()
        loop.schedule(after: .milliseconds(100)) { [weak self] in
            guard let self, !self.isClosed else { return }
            self.h2.finishGoAway()
            self.finalGoAwaySent = true
            self.flush()
        }
        drainTimer = loop.schedule(after: grace) { [weak self] in
            guard let self, !self.isClosed else { return }
            for stream in self.streams.allValues { stream.fail(RPCError(.unavailable, "server is shutting down")) }
            self.flush()
            self.close(error: nil)
        }
    }
}
