import BazaarCore
import CBazaarNghttp2

/// One gRPC call on a server connection: it reassembles request messages, runs the handler as a
/// task on the connection's loop, frames the responses and ends the stream with a status.
/// Touched only on the loop thread (the handler task runs there too, on the loop's executor).
final class ServerStream: GatedStream, @unchecked Sendable {
    // Strong: the connection drops its streams when they close or when it closes, which breaks the cycle.
    private let connection: ServerConnection
    let id: Int32
    private let acceptsGzip: Bool
    @exclusivity(unchecked) private var reader: MessageReader
    @exclusivity(unchecked) private var handler: RPCHandler?
    @exclusivity(unchecked) private var context: ServerContext?
    @exclusivity(unchecked) private var task: Task<Void, Never>?
    @exclusivity(unchecked) private var deadlineTimer: LoopTimer?
    /// Unary: the request message, once complete.
    @exclusivity(unchecked) private var unaryRequest: [UInt8]?
    /// Streaming: where request messages go.
    @exclusivity(unchecked) private var requests: RPCStream<[UInt8]>.Continuation?
    @exclusivity(unchecked) private var headersSent = false
    /// A unary handler's response, waiting to go out with the status.
    @exclusivity(unchecked) private var unaryResponse: [UInt8]?
    @exclusivity(unchecked) private(set) var isFinished = false
    @exclusivity(unchecked) private var requestDone = false
    @exclusivity(unchecked) private var writers = WriteGate()
    /// Set when the call came as Connect rather than gRPC: how to read and write it.
    @exclusivity(unchecked) var connect: ConnectCall?

    init(connection: ServerConnection, id: Int32, acceptsGzip: Bool) {
        self.connection = connection
        self.id = id
        self.acceptsGzip = acceptsGzip
        self.reader = MessageReader(maxMessageSize: connection.shared.configuration.maxReceiveMessageSize)
    }

    var loop: EventLoop { connection.loop }
    var hasWaitingWriters: Bool { !writers.isEmpty }

    // MARK: inbound

    func start(handler: RPCHandler, context: ServerContext) {
        self.handler = handler
        self.context = context
        if let deadline = context.deadline {
            deadlineTimer = loop.schedule(after: deadline - .now) { [weak self] in self?.deadlinePassed() }
        }
        if case .streaming = handler.body { launch() }
    }

    // MARK: inbound flow control (see InboundCredit)

    @exclusivity(unchecked) private var credit = InboundCredit()

    private func settleCredit() {
        let give = credit.settle(all: isFinished || requests == nil)
        guard give > 0 else { return }
        connection.h2.consume(stream: id, give)
        // Only when nghttp2 queued a WINDOW_UPDATE (it waits for half a window's worth).
        if connection.h2.hasPendingOutput { connection.scheduleFlush() }
    }

    /// The handler took a message (on any thread).
    private func taken() {
        if loop.inLoop { takenOnLoop() } else { loop.execute { self.takenOnLoop() } }
    }

    private func takenOnLoop() {
        credit.taken()
        settleCredit()
    }

    func received(_ bytes: [UInt8]) {
        credit.received(bytes.count)
        defer { settleCredit() }
        guard !isFinished, handler != nil else { return }
        if let call = connect, !call.streaming {
            // A unary Connect body is one message, read whole (within the message limit).
            guard call.body.count + bytes.count <= reader.maxMessageSize else {
                return fail(RPCError(.resourceExhausted, "the request is over \(reader.maxMessageSize) bytes"))
            }
            connect?.body.append(contentsOf: bytes)
            return
        }
        reader.append(bytes)
        do {
            while let message = try reader.next() {
                var payload: [UInt8]
                if message.compressed {
                    guard context?.requestCompressed == true else {
                        throw RPCError(
                            connect == nil ? .internal : .invalidArgument,
                            connect == nil
                                ? "compressed message without grpc-encoding"
                                : "compressed envelope without connect-content-encoding")
                    }
                    payload = try Gzip.decompress(message.payload, limit: reader.maxMessageSize)
                } else {
                    payload = message.payload
                }
                if let call = connect { payload = try call.request(payload) }
                if let requests {
                    credit.handedOver(wireSize: 5 + message.payload.count)
                    requests.yield(payload)
                } else if unaryRequest == nil {
                    unaryRequest = payload
                } else {
                    throw RPCError(.unimplemented, "more than one request message for a unary method")
                }
            }
        } catch {
            fail(error)
        }
    }

    func requestEnded() {
        guard !requestDone else { return }
        requestDone = true
        guard !isFinished, handler != nil else { return }
        if let call = connect, !call.streaming {
            // The whole body is the message (an empty body is a message with every field unset).
            guard unaryRequest == nil else { return launch() }
            do {
                let body = try ConnectWire.inflate(call.body, call.requestCompression, limit: reader.maxMessageSize)
                unaryRequest = try call.request(body)
            } catch {
                return fail(error)
            }
            connect?.body = []
            return launch()
        }
        if reader.bufferedBytes > 0 {
            // gRPC calls a cut message the peer's fault in INTERNAL; Connect's text says invalid_argument.
            fail(
                RPCError(
                    connect == nil ? .internal : .invalidArgument,
                    "request ended inside a message (\(reader.bufferedBytes) stray bytes)"))
            return
        }
        if let requests {
            requests.finish()
        } else if unaryRequest == nil {
            fail(RPCError(.unimplemented, "missing request message for a unary method"))
        } else {
            launch()
        }
    }

    /// Tells the call observer how the call ended, once.
    private func reportEnd(_ status: RPCError) {
        guard let context else { return }
        connection.shared.pipeline.end(context, status: status)
    }

    /// The client reset the stream or the connection went away: the handler is cancelled.
    func peerReset() {
        guard !isFinished else { return }
        reportEnd(RPCError(.cancelled, "the client cancelled the call"))
        isFinished = true
        deadlineTimer?.cancel()
        task?.cancel()
        task = nil
        requests?.finish(throwing: RPCError(.cancelled, "the client cancelled the call"))
        requests = nil
        settleCredit()
        failWriters(RPCError(.cancelled, "the client cancelled the call"))
    }

    // MARK: handler

    private func launch() {
        guard let handler, let context else { return }
        let body = handler.body
        let pipeline = connection.shared.pipeline
        let inbound: RPCStream<[UInt8]>?
        if case .streaming = body {
            let (base, continuation) = AsyncThrowingStream<[UInt8], any Error>.makeStream()
            requests = continuation
            inbound = RPCStream(base, onTake: { [weak self] in self?.taken() })
        } else {
            inbound = nil
        }
        let unaryRequest = self.unaryRequest
        self.unaryRequest = nil
        let outbound = inbound == nil ? nil : RPCWriter<[UInt8]> { [self] in try await self.write($0) }
        // The handler starts right here on the loop thread and runs until it first suspends; a
        // handler that never suspends answers within this read, with no executor hop at all.
        task = Task.immediate(executorPreference: loop) { [self] in
            do {
                let response = try await pipeline.invoke(
                    body, context, request: unaryRequest, requests: inbound, responses: outbound)
                if let response {
                    // Sent together with the status, in one HEADERS + DATA + HEADERS burst.
                    if loop.inLoop { unaryResponse = response } else { loop.execute { self.unaryResponse = response } }
                }
                self.finishOnLoop(RPCError(.ok))
            } catch {
                self.finishOnLoop(RPCError(error))
            }
        }
    }

    /// The handler task normally runs on the loop already; only then is no closure allocated.
    private func finishOnLoop(_ status: RPCError) {
        if loop.inLoop { finish(status) } else { loop.execute { self.finish(status) } }
    }

    // MARK: outbound

    /// `grpc-encoding` of the response, fixed when the headers go out.
    @exclusivity(unchecked) private var responseEncoding = MessageCompression.identity

    private func sendHeaders() {
        headersSent = true
        if let call = connect {
            // A Connect stream's head: its content type, and gzip per envelope if the client takes it.
            var fields: [HeaderField] = [(":status", "200"), ("content-type", call.contentType)]
            if call.acceptsGzip, let context, context.response.compression == .gzip {
                responseEncoding = .gzip
                fields.append(("connect-content-encoding", "gzip"))
            }
            fields.append(("connect-accept-encoding", "gzip"))
            fields += context.map { ConnectCall.headers($0.response.initial) } ?? []
            connection.h2.submitResponse(stream: id, headers: fields)
            return
        }
        var prefix = HeaderBlock.grpcResponse
        if acceptsGzip, let context, context.response.compression == .gzip {
            responseEncoding = .gzip
            prefix = HeaderBlock.grpcResponseGzip
        }
        let metadata = context.map { GRPCHeaders.fields($0.response.initial) } ?? []
        connection.h2.submitResponse(stream: id, headers: metadata, prefix: prefix)
    }

    private func frame(_ message: [UInt8]) throws(RPCError) -> [UInt8] {
        // Each message may go compressed or not, within the encoding the headers named. A Connect
        // envelope has gRPC's prefix (flag 0x01: compressed), so one writer frames both.
        let compress = responseEncoding == .gzip && context?.response.compression == .gzip
        let payload = try connect.map { call throws(RPCError) in try call.response(message) } ?? message
        return try MessageWriter.frame(payload, compression: compress ? .gzip : .identity)
    }

    /// Queues one response message, waiting while the stream holds too much unsent data.
    func write(_ message: [UInt8]) async throws {
        try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, any Error>) in
            loop.run { [self] in
                guard !isFinished else {
                    c.resume(throwing: RPCError(.cancelled, "the call has ended"))
                    return
                }
                if !headersSent { sendHeaders() }
                let framed: [UInt8]
                do { framed = try frame(message) } catch {
                    c.resume(throwing: error)
                    return
                }
                connection.h2.enqueue(stream: id, framed)
                connection.scheduleFlush()
                if writers.admit(c, pending: connection.h2.pendingBytes(stream: id)) { connection.writerBlocked(self) }
            }
        }
    }

    func resumeWritersIfDrained() {
        writers.release(pending: connection.h2.pendingBytes(stream: id))
    }

    private func failWriters(_ error: RPCError) {
        writers.fail(error)
    }

    /// The call's deadline: a call still running fails; a call that has answered but whose peer
    /// has not taken the answer (a closed flow-control window) loses it: the stream is reset, so
    /// a reader that never reads holds nothing past the deadline it asked for.
    private func deadlinePassed() {
        deadlineTimer = nil
        guard isFinished else { return fail(RPCError(.deadlineExceeded, "deadline exceeded")) }
        guard !connection.isClosed, connection.h2.pendingBytes(stream: id) > 0 else { return }
        connection.h2.reset(stream: id, code: NGHTTP2_CANCEL.rawValue)
        connection.scheduleFlush()
    }

    /// The stream is closed (answered and taken, or reset): nothing more to watch.
    func streamClosed() {
        deadlineTimer?.cancel()
        deadlineTimer = nil
    }

    /// Fails the call with `error` (from the transport: deadline, bad input, refusal).
    func fail(_ error: any Error) {
        guard !isFinished else { return }
        task?.cancel()
        requests?.finish(throwing: RPCError(.cancelled, "call ended: \(error)"))
        finish(RPCError(error))
        // Stop the rest of the request if the client is still sending: RST_STREAM(NO_ERROR), but
        // only after the status went out, because nghttp2 drops frames still queued on a reset stream.
        if !requestDone {
            let connection = self.connection
            let id = self.id
            loop.execute {
                if connection.h2.pendingBytes(stream: id) == 0 && !connection.isClosed {
                    connection.h2.reset(stream: id, code: NGHTTP2_NO_ERROR.rawValue)
                    connection.scheduleFlush()
                }
            }
        }
    }

    /// Ends the stream with a status: trailers after the messages, or Trailers-Only.
    private func finish(_ status: RPCError) {
        guard !isFinished else { return }
        if let call = connect { return finishConnect(status, call) }
        var status = status
        var message: [UInt8]?
        if status.code == .ok, let response = unaryResponse {
            if !headersSent { sendHeaders() }
            do { message = try frame(response) } catch { status = error }
        }
        unaryResponse = nil
        reportEnd(status)
        isFinished = true
        // The task's closure holds this stream: dropping the task here breaks that cycle.
        task = nil
        requests = nil
        settleCredit()
        // The deadline timer stays: it drops the answer if the peer has not taken it by then.
        failWriters(RPCError(.cancelled, "the call has ended"))
        var trailers: [HeaderField] = []
        var prefix: HeaderBlock? = nil
        if status.code == .ok && status.message.isEmpty {
            prefix = HeaderBlock.statusOK
        } else {
            trailers.append(("grpc-status", String(status.code.rawValue)))
            if !status.message.isEmpty { trailers.append(("grpc-message", GRPCHeaders.percentEncode(status.message))) }
        }
        // A failure's details go out as grpc-status-details-bin.
        if status.code != .ok, let details = StatusDetails.field(status) { trailers.append(details) }
        trailers += GRPCHeaders.fields(status.metadata)
        if let context { trailers += GRPCHeaders.fields(context.response.trailing) }
        if headersSent {
            connection.h2.enqueue(stream: id, message ?? [], end: true, trailers: trailers, trailersPrefix: prefix)
        } else {
            var fields = context.map { GRPCHeaders.fields($0.response.initial) } ?? []
            if prefix != nil { fields.append(("grpc-status", "0")) }
            connection.h2.submitTrailersOnly(
                stream: id, headers: fields + trailers, prefix: HeaderBlock.trailersOnlyPrefix)
        }
        connection.scheduleFlush()
    }

    // MARK: Connect

    /// A unary GET's message, from the query: the call runs at once.
    func connectGet(_ message: [UInt8]) {
        guard !isFinished, let call = connect else { return }
        do { unaryRequest = try call.request(message) } catch { return fail(error) }
        requestDone = true
        launch()
    }

    /// Ends a Connect call: a unary one as a plain HTTP response (the message, or the error as
    /// JSON with its HTTP status; metadata as headers, trailers as `trailer-` headers), a stream
    /// with its end-of-stream envelope.
    private func finishConnect(_ status: RPCError, _ call: ConnectCall) {
        var status = status
        let response = unaryResponse
        unaryResponse = nil
        var body: [UInt8] = []
        var compressed = false
        if !call.streaming, status.code == .ok {
            do {
                body = try call.response(response ?? [])
                if call.acceptsGzip, body.count > ConnectCall.compressAbove, context?.response.compression != .identity
                {
                    body = try Gzip.compress(body)
                    compressed = true
                }
            } catch {
                status = error
            }
        }
        reportEnd(status)
        isFinished = true
        task = nil
        requests = nil
        settleCredit()
        failWriters(RPCError(.cancelled, "the call has ended"))
        var trailing = status.metadata
        if let context { for (key, value) in context.response.trailing { trailing.append(lowercasedKey: key, value) } }
        let initial = context.map { ConnectCall.headers($0.response.initial) } ?? []
        if call.streaming {
            if !headersSent { sendHeaders() }
            connection.h2.enqueue(stream: id, ConnectWire.endOfStream(status, trailers: trailing), end: true)
        } else if status.code == .ok {
            var fields: [HeaderField] = [(":status", "200"), ("content-type", call.contentType)]
            if compressed { fields.append(("content-encoding", "gzip")) }
            fields += initial + ConnectCall.headers(trailing, prefix: "trailer-")
            connection.h2.submitResponse(stream: id, headers: fields)
            connection.h2.enqueue(stream: id, body, end: true)
        } else {
            var fields: [HeaderField] = [
                (":status", String(call.httpStatus ?? ConnectWire.httpStatus(status.code))),
                ("content-type", "application/json"),
            ]
            fields += initial + ConnectCall.headers(trailing, prefix: "trailer-")
            connection.h2.submitResponse(stream: id, headers: fields)
            connection.h2.enqueue(stream: id, ConnectWire.errorJSON(status).serialized(), end: true)
        }
        connection.scheduleFlush()
    }
}
