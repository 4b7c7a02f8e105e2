import BazaarCore
import CBazaarNghttp2

/// One call on a client connection. It frames requests, reassembles responses and turns the
/// response headers and trailers into a status. Touched only on the loop thread.
final class ClientStream: GatedStream, @unchecked Sendable {
    // Strong: the connection drops its streams when they close or when it closes, which breaks the cycle.
    let connection: ClientConnection
    @exclusivity(unchecked) var id: Int32 = 0
    @exclusivity(unchecked) private var reader: MessageReader
    @exclusivity(unchecked) private var responseEncoding: String?
    @exclusivity(unchecked) private var status: RPCError?
    @exclusivity(unchecked) private var sawHeaders = false
    /// Response headers (not a Trailers-Only status) arrived: the call is committed (gRFC A6).
    @exclusivity(unchecked) private var responseStarted = false
    @exclusivity(unchecked) private var deadlineTimer: LoopTimer?
    private let responseMetadata: ResponseMetadata?
    private let compression: MessageCompression
    /// Receives each response message.
    private let onMessage: ([UInt8]) -> Void
    /// Receives the final status (code `.ok` on success), once.
    @exclusivity(unchecked) private var onFinish: ((RPCError) -> Void)?
    @exclusivity(unchecked) private var writers = WriteGate()

    /// Flow-control credit of the responses (see InboundCredit).
    @exclusivity(unchecked) private var credit = InboundCredit()
    /// Streaming calls hold credit until the caller takes each response; unary calls do not.
    private let countsTakes: Bool
    /// The call speaks Connect (`ChannelConfiguration.rpcProtocol`), not gRPC.
    private let connect: Bool
    /// Connect: the HTTP status, and a unary answer's body (or any error body) as it arrives.
    @exclusivity(unchecked) private var httpStatus = ""
    @exclusivity(unchecked) private var body: [UInt8] = []
    @exclusivity(unchecked) private var bodyEncoding: String?
    @exclusivity(unchecked) private var connectTrailers = Metadata()
    /// The server ended its side with END_STREAM: a close after it is a complete answer, a close
    /// before it (RST_STREAM NO_ERROR mid-body) a cut one.
    @exclusivity(unchecked) private var sawEndStream = false

    init(
        connection: ClientConnection, options: CallOptions, maxReceive: Int, countsTakes: Bool,
        onMessage: @escaping ([UInt8]) -> Void, onFinish: @escaping (RPCError) -> Void
    ) {
        self.connection = connection
        self.countsTakes = countsTakes
        self.reader = MessageReader(maxMessageSize: maxReceive)
        self.responseMetadata = options.responseMetadata
        self.compression = options.compression
        self.connect = connection.configuration.rpcProtocol == .connect
        self.onMessage = onMessage
        self.onFinish = onFinish
    }

    var isFinished: Bool { onFinish == nil }
    /// The server never processed this stream (REFUSED_STREAM, or above a GOAWAY's last id), so
    /// the call may be sent again on another connection.
    @exclusivity(unchecked) private(set) var refused = false
    var hasWaitingWriters: Bool { !writers.isEmpty }

    func armDeadline(_ deadline: ContinuousClock.Instant) {
        deadlineTimer = connection.loop.schedule(after: deadline - .now) { [weak self] in
            self?.cancel(RPCError(.deadlineExceeded, "deadline exceeded"))
        }
    }

    // MARK: requests

    func frame(_ message: [UInt8]) throws(RPCError) -> [UInt8] {
        // A unary Connect request is the bare message (compressed whole); streams are enveloped
        // with gRPC's prefix.
        if connect && !countsTakes { return compression == .gzip ? try Gzip.compress(message) : message }
        return try MessageWriter.frame(message, compression: compression)
    }

    /// Queues a request message; waits while too much is unsent. Call on the loop.
    func write(_ message: [UInt8], _ c: CheckedContinuation<Void, any Error>) {
        guard !isFinished else {
            c.resume(throwing: status ?? RPCError(.cancelled, "call ended"))
            return
        }
        do {
            connection.h2.enqueue(stream: id, try frame(message))
        } catch {
            c.resume(throwing: error)
            return
        }
        connection.scheduleFlush()
        if writers.admit(c, pending: connection.h2.pendingBytes(stream: id)) { connection.writerBlocked(self) }
    }

    func endRequests() {
        guard !isFinished else { return }
        connection.h2.enqueue(stream: id, [], end: true)
        connection.scheduleFlush()
    }

    func resumeWritersIfDrained() {
        writers.release(pending: connection.h2.pendingBytes(stream: id))
    }

    // MARK: responses

    func headers(_ fields: [HeaderField], endStream: Bool) {
        if connect { return connectHeaders(fields, endStream: endStream) }
        if !sawHeaders {
            sawHeaders = true
            var httpStatus = ""
            var contentType = ""
            for f in fields {
                switch f.name {
                case ":status": httpStatus = f.value
                case "content-type": contentType = f.value
                case "grpc-encoding": responseEncoding = f.value
                default: break
                }
            }
            if httpStatus != "200" {
                fail(RPCError(Self.code(forHTTPStatus: httpStatus), "HTTP status \(httpStatus) from the server"))
                return
            }
            if !contentType.hasPrefix("application/grpc") {
                fail(RPCError(.unknown, "response content-type '\(contentType)' is not gRPC"))
                return
            }
            if endStream {
                // Trailers-Only: the one header block carries the status.
                trailers(fields)
            } else {
                responseStarted = true
                responseMetadata?.initial = GRPCHeaders.metadata(fields)
            }
        } else {
            trailers(fields)
        }
    }

    private func trailers(_ fields: [HeaderField]) {
        var code: StatusCode?
        var message = ""
        for f in fields {
            if f.name == "grpc-status" { code = Int(f.value).flatMap { StatusCode(rawValue: $0) } ?? .unknown }
            if f.name == "grpc-message" { message = GRPCHeaders.percentDecode(f.value) }
        }
        let metadata = GRPCHeaders.metadata(fields)
        responseMetadata?.trailing = metadata
        guard let code else {
            finish(RPCError(.internal, "the server ended the call without grpc-status"))
            return
        }
        if reader.bufferedBytes > 0 && code == .ok {
            finish(RPCError(.internal, "response ended inside a message"))
            return
        }
        var status = RPCError(code, message, metadata: metadata)
        if code != .ok, let details = StatusDetails.details(in: fields) { status.details = details }
        finish(status)
    }

    /// The caller took a response message (on the loop).
    func responseTaken() {
        credit.taken()
        settleCredit()
    }

    private func settleCredit() {
        let give = credit.settle(all: isFinished || !countsTakes)
        guard give > 0 else { return }
        connection.h2.consume(stream: id, give)
        // Only when nghttp2 queued a WINDOW_UPDATE (it waits for half a window's worth).
        if connection.h2.hasPendingOutput { connection.scheduleFlush() }
    }

    func data(_ bytes: [UInt8]) {
        credit.received(bytes.count)
        defer { settleCredit() }
        guard !isFinished else { return }
        if connect { return connectData(bytes) }
        reader.append(bytes)
        do {
            while let m = try reader.next() {
                if countsTakes { credit.handedOver(wireSize: 5 + m.payload.count) }
                if m.compressed {
                    guard responseEncoding == "gzip" else {
                        throw RPCError(
                            .internal, "compressed response with grpc-encoding \(responseEncoding ?? "(none)")")
                    }
                    onMessage(try Gzip.decompress(m.payload, limit: reader.maxMessageSize))
                } else {
                    onMessage(m.payload)
                }
            }
        } catch {
            fail(error as? RPCError ?? RPCError(.internal, "\(error)"))
        }
    }

    /// The stream closed. Without a status, it was reset or the connection went away.
    func closed(errorCode: UInt32) {
        guard !isFinished else { return }
        if connect && errorCode == 0 {
            if sawEndStream { return connectEnded() }
            return finish(RPCError(.internal, "the stream was reset before the answer ended"))
        }
        switch errorCode {
        case NGHTTP2_REFUSED_STREAM.rawValue:
            // Also how nghttp2 ends streams above a GOAWAY's last stream id: never processed.
            refused = true
            finish(RPCError(.unavailable, "the server refused the stream"))
        case NGHTTP2_CANCEL.rawValue:
            finish(RPCError(.cancelled, "the server cancelled the call"))
        case NGHTTP2_ENHANCE_YOUR_CALM.rawValue:
            finish(RPCError(.resourceExhausted, "the server asked to enhance your calm"))
        case 0:
            finish(RPCError(.internal, "the stream ended without a status"))
        default:
            finish(RPCError(.internal, "the stream was reset (HTTP/2 error \(errorCode))"))
        }
    }

    func connectionLost(_ why: String) {
        finish(RPCError(.unavailable, "connection lost: \(why)"))
    }

    // MARK: ending

    /// Ends the call from this side (deadline, cancellation, a bad response): RST_STREAM and a status.
    func cancel(_ error: RPCError) {
        guard !isFinished else { return }
        if id > 0 {
            connection.h2.reset(stream: id, code: NGHTTP2_CANCEL.rawValue)
            connection.scheduleFlush()
        }
        finish(error)
    }

    private func fail(_ error: RPCError) { cancel(error) }

    private func finish(_ s: RPCError) {
        guard let f = onFinish else { return }
        onFinish = nil
        var s = s
        if responseStarted { s.responseStarted = true }
        status = s
        deadlineTimer?.cancel()
        writers.fail(s.code == .ok ? RPCError(.cancelled, "the server ended the call") : s)
        settleCredit()
        f(s)
    }

    /// gRPC's table for servers (or proxies) that answer with a non-200 HTTP status.
    static func code(forHTTPStatus s: String) -> StatusCode {
        switch s {
        case "400": .internal
        case "401": .unauthenticated
        case "403": .permissionDenied
        case "404": .unimplemented
        case "429", "502", "503", "504": .unavailable
        default: .unknown
        }
    }

    // MARK: Connect

    /// The server sent END_STREAM (on DATA; on HEADERS it comes with ``headers(_:endStream:)``).
    func bodyEnded() { sawEndStream = true }

    private func connectHeaders(_ fields: [HeaderField], endStream: Bool) {
        guard !sawHeaders else { return }  // HTTP trailers are not Connect's; a stream's status is in its last envelope
        sawHeaders = true
        var contentType = ""
        var initial = Metadata()
        for f in fields {
            switch f.name {
            case ":status": httpStatus = f.value
            case "content-type": contentType = f.value
            case "content-encoding", "connect-content-encoding": bodyEncoding = f.value
            default:
                if f.name.hasPrefix(":") || ConnectClient.isProtocolHeader(f.name) { continue }
                if f.name.hasPrefix("trailer-") {
                    ConnectClient.add(String(f.name.dropFirst(8)), f.value, to: &connectTrailers)
                } else {
                    ConnectClient.add(f.name, f.value, to: &initial)
                }
            }
        }
        if httpStatus == "200" {
            let expected = countsTakes ? "application/connect+proto" : "application/proto"
            guard contentType.split(separator: ";").first.map(String.init) == expected else {
                return fail(RPCError(.unknown, "response content-type '\(contentType)' is not \(expected)"))
            }
            responseStarted = true
        }
        responseMetadata?.initial = initial
        if endStream {
            sawEndStream = true
            connectEnded()
        }
    }

    private func connectData(_ bytes: [UInt8]) {
        // A unary answer (or an error's JSON) is read whole, within the message limit.
        if !countsTakes || httpStatus != "200" {
            guard body.count + bytes.count <= reader.maxMessageSize else {
                return fail(RPCError(.resourceExhausted, "the answer is over \(reader.maxMessageSize) bytes"))
            }
            body.append(contentsOf: bytes)
            return
        }
        body.append(contentsOf: bytes)
        do {
            while let (flags, payload) = try ConnectClient.nextEnvelope(&body, limit: reader.maxMessageSize) {
                credit.handedOver(wireSize: 5 + payload.count)
                var message = payload
                if flags & ConnectWire.compressedFlag != 0 {
                    guard bodyEncoding == "gzip" else {
                        throw RPCError(
                            .internal, "compressed envelope with connect-content-encoding \(bodyEncoding ?? "(none)")")
                    }
                    message = try Gzip.decompress(payload, limit: reader.maxMessageSize)
                }
                if flags & ConnectWire.endStreamFlag != 0 {
                    guard body.isEmpty else { throw RPCError(.internal, "data after the end-of-stream message") }
                    return finish(
                        try ConnectClient.endOfStream(message, trailers: connectTrailers, into: responseMetadata))
                }
                onMessage(message)
            }
        } catch {
            fail(error as? RPCError ?? RPCError(.internal, "\(error)"))
        }
    }

    /// The stream ended (END_STREAM): a unary answer is complete; a stream without its
    /// end-of-stream message is broken.
    private func connectEnded() {
        guard !isFinished else { return }
        if httpStatus != "200" {
            return finish(ConnectClient.error(httpStatus: httpStatus, body: body, trailers: connectTrailers))
        }
        if countsTakes { return finish(RPCError(.internal, "the stream ended without its end-of-stream message")) }
        responseMetadata?.trailing = connectTrailers
        do {
            onMessage(
                try ConnectWire.inflate(body, try ConnectWire.compression(bodyEncoding), limit: reader.maxMessageSize))
        } catch {
            return finish(error as? RPCError ?? RPCError(.internal, "\(error)"))
        }
        body = []
        finish(RPCError(.ok))
    }
}
