import BazaarCore
import CBazaarNghttp2

/// One HTTP/2 connection from a channel to one endpoint. Calls are multiplexed on it as streams.
/// Everything here runs on the channel's loop thread.
final class ClientConnection: SocketConnection, @unchecked Sendable {
    let h2: HTTP2Session
    let configuration: ChannelConfiguration
    let authority: String
    @exclusivity(unchecked) private var streams = StreamMap<ClientStream>()
    /// Told once: `nil` when the connection became ready, or why it failed before that.
    @exclusivity(unchecked) var onConnect: ((String?) -> Void)?
    /// Told when the connection stops taking new calls (GOAWAY) or closes.
    @exclusivity(unchecked) var onUnusable: (() -> Void)?
    @exclusivity(unchecked) private(set) var goingAway = false
    @exclusivity(unchecked) private var keepalive: KeepalivePinger?

    init(loop: EventLoop, fd: Int32, endpoint: Endpoint, configuration: ChannelConfiguration, tls: TLSEngine?) {
        self.h2 = HTTP2Session(server: false, settings: configuration.http2)
        self.configuration = configuration
        self.authority = configuration.authority ?? endpoint.description
        super.init(loop: loop, fd: fd, tls: tls, peerAddress: endpoint.description)
    }

    var isUsable: Bool { isReady && !isClosed && !goingAway }
    /// Whether the server has sent valid HTTP/2 (its preface is a SETTINGS frame): until then a
    /// connection that closes counts as a failed attempt, not as the loss of a working one.
    var peerSpokeHTTP2: Bool { h2.receivedFrame }
    var peerIdentity: String? { tls?.peerIdentity }

    override func connectionReady() {
        let c = onConnect
        onConnect = nil
        c?(nil)
        if let interval = configuration.keepalive.interval {
            keepalive = KeepalivePinger(
                loop: loop, interval: interval, timeout: configuration.keepalive.timeout,
                sendPing: { [weak self] in
                    self?.h2.ping()
                    self?.scheduleFlush()
                },
                peerGone: { [weak self] in self?.close(error: "keepalive ping not acknowledged") })
        }
    }

    override func received(_ bytes: [UInt8]) {
        keepalive?.sawRead()
        guard let events = bytes.withUnsafeBytes({ h2.receive($0) }) else {
            flush()
            close(error: "HTTP/2 error: \(h2.fatalError ?? "unknown")")
            return
        }
        for e in events { handle(e) }
        if goingAway && streams.isEmpty { close(error: nil) }
    }

    override func produceOutput(into out: inout [UInt8]) {
        if !h2.send(into: &out) {
            loop.execute { [self] in close(error: "HTTP/2 error: \(h2.fatalError ?? "unknown")") }
        }
        for e in h2.takeEvents() { handle(e) }
    }

    private func handle(_ e: HTTP2Event) {
        switch e {
        case .headers(let id, let fields, let end):
            streams[id]?.headers(fields, endStream: end)
        case .data(let id, let bytes, let end):
            // Connect's unary answer and stream end with the body (END_STREAM on DATA), not trailers.
            if end { streams[id]?.bodyEnded() }
            guard !bytes.isEmpty else { return }
            if let stream = streams[id] {
                stream.data(bytes)
            } else {
                // A stream already ended on our side: give the credit straight back.
                h2.consume(stream: id, bytes.count)
                scheduleFlush()
            }
        case .streamClosed(let id, let code):
            streams.removeValue(forKey: id)?.closed(errorCode: code)
        case .goAway:
            goingAway = true
            onUnusable?()
        case .pingAck:
            keepalive?.sawAck()
        case .ping:
            break
        }
    }

    /// Streams whose writers wait for nghttp2 to take their data (back-pressure).
    @exclusivity(unchecked) private var blocked = BlockedStreams<ClientStream>()

    func writerBlocked(_ stream: ClientStream) {
        blocked.add(stream)
        noteWriterHeld()
    }

    override func didWrite() { blocked.resume() }

    override func closed(error: String?) {
        keepalive?.stop()
        if let c = onConnect {
            onConnect = nil
            c(error ?? "connection closed during setup")
        }
        let all = streams.allValues
        streams.removeAll()
        for s in all { s.connectionLost(error ?? "the server closed the connection") }
        onUnusable?()
        onUnusable = nil
    }

    /// Opens a stream for a call. Unary requests go out whole with END_STREAM.
    func open(
        _ stream: ClientStream, method: MethodDescriptor, metadata: Metadata, timeout: Duration?,
        compression: MessageCompression, unaryRequest: [UInt8]?
    ) -> RPCError? {
        var headers: [HeaderField]
        if configuration.rpcProtocol == .connect {
            headers = ConnectClient.requestHeaders(
                path: method.path, scheme: tls == nil ? "http" : "https", authority: authority,
                userAgent: configuration.userAgent, unary: unaryRequest != nil, timeout: timeout,
                compression: compression, metadata: metadata)
        } else {
            headers = [
                (":method", "POST"), (":scheme", tls == nil ? "http" : "https"), (":path", method.path),
                (":authority", authority), ("content-type", "application/grpc"), ("te", "trailers"),
                ("user-agent", configuration.userAgent), ("grpc-accept-encoding", "gzip,identity"),
            ]
            if compression == .gzip { headers.append(("grpc-encoding", "gzip")) }
            if let timeout { headers.append(("grpc-timeout", GRPCHeaders.encodeTimeout(timeout))) }
            headers += GRPCHeaders.fields(metadata)
        }
        let id = h2.submitRequest(headers: headers)
        guard id > 0 else {
            return RPCError(.unavailable, "cannot open a stream: \(String(cString: nghttp2_strerror(id)))")
        }
        stream.id = id
        streams[id] = stream
        if let unaryRequest {
            do {
                h2.enqueue(stream: id, try stream.frame(unaryRequest), end: true)
            } catch {
                stream.cancel(error)
            }
        }
        scheduleFlush()
        return nil
    }
}
