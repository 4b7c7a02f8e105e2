import CBazaarNghttp2

/// What every connection of an ``HTTPServer`` shares.
final class HTTPServerShared: Sendable {
    let responder: any HTTPResponder
    let configuration: HTTPServerConfiguration

    init(responder: any HTTPResponder, configuration: HTTPServerConfiguration) {
        self.responder = responder
        self.configuration = configuration
    }
}

/// One front-door connection: HTTP/1.1 (http-parser) or HTTP/2 (nghttp2), chosen by ALPN over
/// TLS, or in plaintext by whether the client opens with the HTTP/2 preface (h2c with prior
/// knowledge). Runs on its loop; responders run as tasks on the same loop.
///
/// What one client can make it hold is bounded (``HTTPServerConfiguration``): on HTTP/1.1 one
/// request in flight, ``HTTPServerConfiguration/maxPipelinedBytes`` read ahead (then reading
/// stops) and ``HTTPServerConfiguration/maxPendingOutput`` of answers not yet taken (then no
/// further request starts); on HTTP/2 the streams and windows of ``HTTP2Settings/edge``, with
/// credit returned only as bodies are handed over. Every phase has its timeout
/// (``HTTPTimeouts``): the handshake, each request's headers and body, idle keep-alive, a peer
/// that reads nothing, and the whole request.
final class HTTPServerConnection: SocketConnection, AcceptedConnection, @unchecked Sendable {
    override var isServerSide: Bool { true }
    let shared: HTTPServerShared
    private let onClose: (AnyObject) -> Void
    private enum Mode {
        case detecting([UInt8])
        case http1(HTTP1Parser)
        case http2(HTTP2Session)
    }
    @exclusivity(unchecked) private var mode = Mode.detecting([])
    @exclusivity(unchecked) private var draining = false
    /// The connection's one phase timer (HTTP/1.1 phases, HTTP/2 idle); see ``Phase``.
    @exclusivity(unchecked) private var phaseTimer: LoopTimer?
    private enum Phase {
        /// TLS handshake.
        case handshake
        /// Keep-alive, waiting for the next request's first byte.
        case idle
        /// A request's headers are arriving.
        case head
        /// A request's body is arriving.
        case body
        /// The request is handled and answered.
        case handling
        /// HTTP/2: streams are open (each has its own timer).
        case streams
    }
    @exclusivity(unchecked) private var phase = Phase.handshake
    /// When the current HTTP/1.1 request's first byte came.
    @exclusivity(unchecked) private var requestStarted = ContinuousClock.now

    // HTTP/1.1: one request at a time; bytes of later ones wait in `pending`.
    @exclusivity(unchecked) private var pending: [UInt8] = []
    @exclusivity(unchecked) private var exchange: H1Exchange?
    @exclusivity(unchecked) private var out: [UInt8] = []
    @exclusivity(unchecked) private var closeWhenFlushed = false
    @exclusivity(unchecked) private var requestsServed = 0
    /// A finished request left more output than the budget: the next waits for the client to read.
    @exclusivity(unchecked) private var waitingForDrain = false

    // HTTP/2
    @exclusivity(unchecked) private var streams: [Int32: H2Exchange] = [:]

    static let preface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)

    init(
        loop: EventLoop, fd: Int32, peer: String, shared: HTTPServerShared, tls: TLSEngine?,
        onClose: @escaping (AnyObject) -> Void
    ) {
        self.shared = shared
        self.onClose = onClose
        super.init(loop: loop, fd: fd, tls: tls, peerAddress: peer)
    }

    private var timeouts: HTTPTimeouts { shared.configuration.timeouts }

    func accepted() {
        writeStallTimeout = timeouts.write
        if tls != nil { enter(.handshake) }
        start()
    }

    override func connectionReady() {
        if let tls {
            mode = tls.negotiatedProtocol == "h2" ? .http2(makeH2()) : .http1(HTTP1Parser())
        }
        // The first request's headers are due from now; HTTP/2 gets the idle timeout until its
        // first stream.
        if case .http2 = mode { enter(.idle) } else { startRequest() }
    }

    private func makeH2() -> HTTP2Session {
        var settings = shared.configuration.http2
        // A stream's window holds one whole body and a frame more, so that an oversized body
        // shows as such (413) instead of stalling on a closed window.
        settings.streamWindowSize = Int32(
            min(shared.configuration.maxBodySize + Int(settings.maxFrameSize), Int(Int32.max)))
        return HTTP2Session(server: true, settings: settings)
    }

    // MARK: phases and their timeouts

    private func enter(_ next: Phase) {
        phase = next
        let limit: Duration
        switch next {
        case .handshake: limit = timeouts.handshake
        case .idle: limit = timeouts.idle
        case .head: limit = timeouts.header
        case .body: limit = timeouts.body
        case .handling: limit = max(.zero, timeouts.request - (ContinuousClock.now - requestStarted))
        case .streams:
            phaseTimer?.cancel()
            return
        }
        // One timer per connection, re-armed at each phase (several per request).
        let expired: () -> Void = { [weak self] in self?.phaseExpired(next) }
        if let timer = phaseTimer {
            timer.reschedule(after: limit, expired)
        } else {
            phaseTimer = loop.schedule(after: limit, expired)
        }
    }

    private func startRequest() {
        requestStarted = .now
        enter(.head)
    }

    private func phaseExpired(_ expired: Phase) {
        guard !isClosed, phase == expired else { return }
        switch expired {
        case .handshake:
            shed(.handshakeTimeout, closing: "the TLS handshake did not finish within \(timeouts.handshake)")
        case .idle:
            // Not a failure: an idle keep-alive connection is closed quietly.
            if exchange == nil && streams.isEmpty { close(error: nil) } else { enter(phase) }
        case .head:
            report(shed: .headerTimeout)
            if case .detecting = mode { return close(error: "no request within \(timeouts.header)") }
            if pending.isEmpty && exchange == nil && requestsServed > 0 { return close(error: nil) }
            failH1(408, "the request headers did not arrive within \(timeouts.header)")
        case .body:
            report(shed: .bodyTimeout)
            failH1(408, "the request body did not arrive within \(timeouts.body)")
        case .handling:
            shed(.requestTimeout, closing: "the request took longer than \(timeouts.request)")
        case .streams:
            break
        }
    }

    override func received(_ bytes: [UInt8]) {
        switch mode {
        case .detecting(var buffered):
            buffered += bytes
            let n = min(buffered.count, Self.preface.count)
            if Array(buffered.prefix(n)) == Array(Self.preface.prefix(n)) {
                if n < Self.preface.count {
                    mode = .detecting(buffered)
                    return
                }
                let h2 = makeH2()
                mode = .http2(h2)
                enter(.idle)
                receiveH2(h2, buffered)
            } else {
                mode = .http1(HTTP1Parser())
                pending = buffered
                parseH1()
            }
        case .http1:
            pending += bytes
            if phase == .idle { startRequest() }
            // Read-ahead beyond the budget waits in the kernel (and then in the client).
            if pending.count > shared.configuration.maxPipelinedBytes { pauseReading() }
            parseH1()
        case .http2(let h2):
            receiveH2(h2, bytes)
        }
    }

    override func produceOutput(into output: inout [UInt8]) {
        switch mode {
        case .http2(let h2):
            if !h2.send(into: &output) {
                let why = h2.fatalError
                loop.execute { [self] in close(error: why) }
            }
            for event in h2.takeEvents() { handleH2(h2, event) }
        default:
            if !out.isEmpty {
                output += out
                out = []
            }
        }
    }

    override func didWrite() {
        if closeWhenFlushed && out.isEmpty && pendingWrite == 0 { close(error: nil) }
        if waitingForDrain && !isClosed && out.count + pendingWrite <= shared.configuration.maxPendingOutput {
            waitingForDrain = false
            parseH1()
        }
        if case .http2(let h2) = mode, !h2.isAlive || (draining && streams.isEmpty && !h2.hasPendingOutput),
            pendingWrite == 0
        {
            close(error: nil)
        }
    }

    override func closed(error: String?) {
        phaseTimer?.cancel()
        phaseTimer = nil
        exchange?.task?.cancel()
        exchange?.gone = true
        for s in streams.values {
            s.gone = true
            s.timer?.cancel()
            s.task?.cancel()
        }
        streams = [:]
        onClose(self)
    }

    func drain(grace: Duration) {
        draining = true
        switch mode {
        case .http2(let h2):
            h2.goAway(graceful: false)
            scheduleFlush()
            if streams.isEmpty { closeWhenFlushed = true }
        default:
            if exchange == nil { close(error: nil) } else { closeWhenFlushed = false }
        }
        _ = loop.schedule(after: grace) { [weak self] in self?.close(error: "drain timeout") }
    }

    private func request(
        _ method: String, _ target: String, _ headers: [(name: String, value: String)], _ body: [UInt8],
        _ version: String
    ) -> HTTPRequest {
        HTTPRequest(
            method: method, target: target, headers: headers, body: body, version: version, remoteAddress: peerAddress,
            isSecure: tls != nil)
    }

    private func launch(_ request: HTTPRequest, sink: any HTTPResponseSink, finished: @escaping @Sendable () -> Void)
        -> Task<Void, Never>
    {
        let writer = HTTPResponseWriter(sink: sink, loop: loop)
        let responder = shared.responder
        let loop = self.loop
        return Task(executorPreference: loop) {
            await responder.respond(to: request, writer: writer)
            // A responder that did not finish its response: end it (500 if nothing was sent).
            loop.execute {
                if !sink.ended {
                    if !sink.headSent { sink.head(status: 500, headers: [("content-length", "0")]) }
                    sink.end(trailers: [])
                }
                finished()
            }
        }
    }

    // MARK: HTTP/1.1

    private func parseH1() {
        defer {
            if readingPaused && pending.count <= shared.configuration.maxPipelinedBytes / 2 && !closeWhenFlushed {
                resumeReading()
            }
        }
        guard case .http1(let parser) = mode, exchange?.dispatched != true, !closeWhenFlushed else { return }
        if exchange == nil && out.count + pendingWrite > shared.configuration.maxPendingOutput {
            // The client has not taken the last answers: the next request waits (and so, past
            // the read-ahead budget, does reading).
            waitingForDrain = true
            return
        }
        if phase == .idle && !pending.isEmpty { startRequest() }
        while !pending.isEmpty && !parser.paused {
            let result: Result<Int, HTTP1Parser.Failure> = pending.withUnsafeBytes { b in
                do throws(HTTP1Parser.Failure) { return .success(try parser.feed(b)) } catch { return .failure(error) }
            }
            guard case .success(let used) = result else {
                if case .failure(let f) = result { failH1(f.status, f.reason) }
                return
            }
            pending.removeFirst(used)
            for event in parser.takeEvents() {
                guard handleH1(event) else { return }
            }
            if used == 0 { break }
        }
    }

    /// False when the connection is being closed.
    private func handleH1(_ event: HTTP1Parser.Event) -> Bool {
        switch event {
        case .head(let head):
            let e = H1Exchange(head: head)
            exchange = e
            enter(.body)
            if let length = head.contentLength, length > UInt64(shared.configuration.maxBodySize) {
                failH1(413, "the request body is larger than \(shared.configuration.maxBodySize) bytes")
                return false
            }
            if head.headers.contains(where: { $0.name == "expect" && $0.value.lowercased() == "100-continue" }) {
                out += Array("HTTP/1.1 100 Continue\r\n\r\n".utf8)
                scheduleFlush()
            }
        case .body(let bytes):
            guard let e = exchange else { return true }
            e.body += bytes
            if e.body.count > shared.configuration.maxBodySize {
                failH1(413, "the request body is larger than \(shared.configuration.maxBodySize) bytes")
                return false
            }
        case .end:
            guard let e = exchange else { return true }
            e.dispatched = true
            enter(.handling)
            let h = e.head
            requestsServed += 1
            let keepAlive = h.keepAlive && !draining && requestsServed < shared.configuration.maxRequestsPerConnection
            let sink = H1Sink(connection: self, isHead: h.method == "HEAD", keepAlive: keepAlive, version: h.version)
            e.sink = sink
            e.task = launch(request(h.method, h.target, h.headers, e.body, h.version), sink: sink) { [weak self] in
                self?.h1Finished()
            }
        }
        return true
    }

    /// A malformed or refused request: a short error response, then the connection closes
    /// (the rest of the byte stream cannot be trusted).
    private func failH1(_ status: Int, _ reason: String) {
        let body = Array(
            "{\"code\":\(status == 413 ? 8 : 3),\"message\":\"\(reason.replacingOccurrences(of: "\"", with: "'"))\",\"details\":[]}"
                .utf8)
        out += Array(
            "HTTP/1.1 \(status) \(reasonPhrase(status))\r\ncontent-type: application/json\r\ncontent-length: \(body.count)\r\nconnection: close\r\n\r\n"
                .utf8)
        out += body
        exchange = nil
        pending = []
        closeWhenFlushed = true
        phaseTimer?.cancel()
        phaseTimer = nil
        scheduleFlush()
    }

    fileprivate func h1Write(_ bytes: [UInt8]) {
        out += bytes
        scheduleFlush()
    }

    private func h1Finished() {
        let keepAlive = exchange?.sink?.keepAlive ?? false
        exchange = nil
        if !keepAlive || draining {
            closeWhenFlushed = true
            phaseTimer?.cancel()
            phaseTimer = nil
            scheduleFlush()
            return
        }
        enter(.idle)
        if case .http1(let parser) = mode {
            parser.resume()
            parseH1()
        }
    }

    // MARK: HTTP/2

    private func receiveH2(_ h2: HTTP2Session, _ bytes: [UInt8]) {
        guard let events = bytes.withUnsafeBytes({ h2.receive($0) }) else {
            flush()
            close(error: h2.fatalError)
            return
        }
        for event in events { handleH2(h2, event) }
        scheduleFlush()
    }

    private func handleH2(_ h2: HTTP2Session, _ event: HTTP2Event) {
        switch event {
        case .headers(let id, let fields, let endStream):
            if let s = streams[id] {
                if endStream { dispatchH2(h2, s) }
                return
            }
            if draining {
                h2.reset(stream: id, code: NGHTTP2_REFUSED_STREAM.rawValue)
                return
            }
            var method = ""
            var path = ""
            var authority: String?
            var headers: [(name: String, value: String)] = []
            for f in fields {
                switch f.name {
                case ":method": method = f.value
                case ":path": path = f.value
                case ":authority": authority = f.value
                case ":scheme": break
                default: if !f.name.hasPrefix(":") { headers.append((f.name, f.value)) }
                }
            }
            if let authority, !headers.contains(where: { $0.name == "host" }) { headers.append(("host", authority)) }
            let s = H2Exchange(id: id, method: method, target: path, headers: headers)
            streams[id] = s
            if phase != .streams { enter(.streams) }
            if method.isEmpty || path.isEmpty {
                h2.reset(stream: id, code: NGHTTP2_PROTOCOL_ERROR.rawValue)
                return
            }
            if let length = headers.first(where: { $0.name == "content-length" }).flatMap({ UInt64($0.value) }),
                length > UInt64(shared.configuration.maxBodySize)
            {
                refuseOversized(h2, s)
                return
            }
            if endStream {
                dispatchH2(h2, s)
            } else {
                armStreamTimer(h2, s, timeouts.body, .bodyTimeout)
            }
        case .data(let id, let bytes, let endStream):
            guard let s = streams[id], !s.dispatched else {
                // Data nobody will read (a refused or answered stream): the credit goes straight back.
                if !bytes.isEmpty { h2.consume(stream: id, bytes.count) }
                return
            }
            // Held, with its credit, until the body is handed over: a stream holds at most its
            // window, a connection at most the connection window.
            s.body += bytes
            if s.body.count > shared.configuration.maxBodySize {
                refuseOversized(h2, s)
                return
            }
            if endStream { dispatchH2(h2, s) }
        case .streamClosed(let id, _):
            if let s = streams.removeValue(forKey: id) {
                s.gone = true
                s.timer?.cancel()
                s.task?.cancel()
                // Body bytes never handed over: give the connection's credit back.
                if !s.dispatched && !s.body.isEmpty { h2.consume(stream: id, s.body.count) }
            }
            if streams.isEmpty {
                if draining { closeWhenFlushed = true } else { enter(.idle) }
            }
        case .goAway, .ping, .pingAck:
            break
        }
    }

    /// 413 for a body over the limit; what it sent so far is dropped and its credit returned.
    private func refuseOversized(_ h2: HTTP2Session, _ s: H2Exchange) {
        s.dispatched = true
        s.timer?.cancel()
        if !s.body.isEmpty { h2.consume(stream: s.id, s.body.count) }
        s.body = []
        let sink = H2Sink(connection: self, h2: h2, stream: s.id, isHead: false)
        let body = Array(
            "{\"code\":8,\"message\":\"the request body is larger than \(shared.configuration.maxBodySize) bytes\",\"details\":[]}"
                .utf8)
        sink.head(status: 413, headers: [("content-type", "application/json"), ("content-length", String(body.count))])
        sink.body(body)
        sink.end(trailers: [])
    }

    /// A stream's own deadline: its body (until dispatched), then the whole request. Overstaying
    /// resets the stream (CANCEL); the connection and its other streams go on.
    private func armStreamTimer(_ h2: HTTP2Session, _ s: H2Exchange, _ after: Duration, _ reason: ConnectionShed) {
        s.timer?.cancel()
        s.timer = loop.schedule(after: max(after, .zero)) { [weak self, weak s, weak h2] in
            guard let self, let s, let h2, !self.isClosed, self.streams[s.id] === s else { return }
            self.report(shed: reason)
            s.timer = nil
            h2.reset(stream: s.id, code: NGHTTP2_CANCEL.rawValue)
            self.scheduleFlush()
        }
    }

    private func dispatchH2(_ h2: HTTP2Session, _ s: H2Exchange) {
        guard !s.dispatched else { return }
        s.dispatched = true
        // The body is the responder's now: its bytes' credit goes back to the client.
        if !s.body.isEmpty { h2.consume(stream: s.id, s.body.count) }
        armStreamTimer(h2, s, timeouts.request - (ContinuousClock.now - s.opened), .requestTimeout)
        let sink = H2Sink(connection: self, h2: h2, stream: s.id, isHead: s.method == "HEAD")
        s.sink = sink
        s.task = launch(request(s.method, s.target, s.headers, s.body, "HTTP/2"), sink: sink) {}
    }

    fileprivate func h2Flush() { scheduleFlush() }
}

final class H1Exchange {
    let head: HTTP1Parser.Head
    @exclusivity(unchecked) var body: [UInt8] = []
    @exclusivity(unchecked) var dispatched = false
    @exclusivity(unchecked) var gone = false
    @exclusivity(unchecked) var task: Task<Void, Never>?
    @exclusivity(unchecked) var sink: H1Sink?

    init(head: HTTP1Parser.Head) { self.head = head }
}

final class H2Exchange {
    let id: Int32
    let method: String
    let target: String
    let headers: [(name: String, value: String)]
    @exclusivity(unchecked) var body: [UInt8] = []
    @exclusivity(unchecked) var dispatched = false
    @exclusivity(unchecked) var gone = false
    @exclusivity(unchecked) var task: Task<Void, Never>?
    @exclusivity(unchecked) var sink: H2Sink?
    /// The stream's body, then request, deadline.
    @exclusivity(unchecked) var timer: LoopTimer?
    let opened = ContinuousClock.now

    init(id: Int32, method: String, target: String, headers: [(name: String, value: String)]) {
        self.id = id
        self.method = method
        self.target = target
        self.headers = headers
    }
}

/// An HTTP/1.1 response: status line and headers, then the body as given (with a
/// `content-length`) or chunked.
final class H1Sink: HTTPResponseSink, @unchecked Sendable {
    /// Weak: a responder may still write after the client went away and the connection is gone.
    @exclusivity(unchecked) private weak var connection: HTTPServerConnection?
    let isHead: Bool
    @exclusivity(unchecked) private(set) var keepAlive: Bool
    let version: String
    @exclusivity(unchecked) private var chunked = false
    @exclusivity(unchecked) private(set) var headSent = false
    @exclusivity(unchecked) private(set) var ended = false

    init(connection: HTTPServerConnection, isHead: Bool, keepAlive: Bool, version: String) {
        self.connection = connection
        self.isHead = isHead
        self.keepAlive = keepAlive
        self.version = version
    }

    var isGone: Bool { connection?.isClosed ?? true }

    func head(status: Int, headers: [(String, String)]) {
        guard !headSent, let connection, !connection.isClosed else { return }
        headSent = true
        // Written straight into bytes: this runs for every response.
        var text: [UInt8] = []
        text.reserveCapacity(128 + headers.reduce(0) { $0 + $1.0.utf8.count + $1.1.utf8.count + 4 })
        text += "HTTP/1.1 ".utf8
        text += String(status).utf8
        text.append(UInt8(ascii: " "))
        text += reasonPhrase(status).utf8
        text += "\r\n".utf8
        var hasLength = false
        for (name, value) in headers {
            if Self.named(name, "content-length") { hasLength = true }
            if Self.named(name, "connection") || Self.named(name, "transfer-encoding") { continue }
            text += name.utf8
            text += ": ".utf8
            // Header values never carry line breaks (no response splitting).
            for b in value.utf8 where b != 13 && b != 10 { text.append(b) }
            text += "\r\n".utf8
        }
        let bodyAllowed = !isHead && status != 204 && status != 304 && status >= 200
        if !hasLength && bodyAllowed {
            if version == "HTTP/1.0" {
                keepAlive = false
            } else {
                chunked = true
                text += "transfer-encoding: chunked\r\n".utf8
            }
        }
        if !keepAlive { text += "connection: close\r\n".utf8 }
        text += "\r\n".utf8
        connection.h1Write(text)
    }

    /// Whether header `name` is `lower` (given in lowercase), ignoring ASCII case.
    static func named(_ name: String, _ lower: StaticString) -> Bool {
        guard name.utf8.count == lower.utf8CodeUnitCount else { return false }
        var i = 0
        let l = lower.utf8Start
        for b in name.utf8 {
            let folded = b >= 65 && b <= 90 ? b | 0x20 : b
            if folded != l[i] { return false }
            i += 1
        }
        return true
    }

    func body(_ bytes: [UInt8]) {
        guard headSent, !ended, !isHead, !bytes.isEmpty, let connection, !connection.isClosed else { return }
        if chunked {
            connection.h1Write(Array((String(bytes.count, radix: 16) + "\r\n").utf8) + bytes + [13, 10])
        } else {
            connection.h1Write(bytes)
        }
    }

    func end(trailers: [(String, String)]) {
        guard headSent, !ended else { return }
        ended = true
        guard let connection, !connection.isClosed else { return }
        if chunked && !isHead { connection.h1Write(Array("0\r\n\r\n".utf8)) }
    }
}

/// An HTTP/2 response: HEADERS, DATA as it comes, and the end (with trailers, if any).
final class H2Sink: HTTPResponseSink, @unchecked Sendable {
    @exclusivity(unchecked) private weak var connection: HTTPServerConnection?
    private let h2: HTTP2Session
    let stream: Int32
    let isHead: Bool
    @exclusivity(unchecked) private(set) var headSent = false
    @exclusivity(unchecked) private(set) var ended = false

    init(connection: HTTPServerConnection, h2: HTTP2Session, stream: Int32, isHead: Bool) {
        self.connection = connection
        self.h2 = h2
        self.stream = stream
        self.isHead = isHead
    }

    var isGone: Bool { connection?.isClosed ?? true }

    func head(status: Int, headers: [(String, String)]) {
        guard !headSent, let connection, !connection.isClosed else { return }
        headSent = true
        var fields: [HeaderField] = [(":status", String(status))]
        for (name, value) in headers {
            let n = name.lowercased()
            // Connection-specific headers are not allowed in HTTP/2.
            if ["connection", "transfer-encoding", "keep-alive", "upgrade"].contains(n) { continue }
            fields.append((n, value))
        }
        h2.submitResponse(stream: stream, headers: fields)
        connection.h2Flush()
    }

    func body(_ bytes: [UInt8]) {
        guard headSent, !ended, !isHead, let connection, !connection.isClosed else { return }
        h2.enqueue(stream: stream, bytes)
        connection.h2Flush()
    }

    func end(trailers: [(String, String)]) {
        guard headSent, !ended else { return }
        ended = true
        guard let connection, !connection.isClosed else { return }
        h2.enqueue(
            stream: stream, [], end: true, trailers: trailers.isEmpty ? nil : trailers.map { ($0.0.lowercased(), $0.1) }
        )
        connection.h2Flush()
    }
}
