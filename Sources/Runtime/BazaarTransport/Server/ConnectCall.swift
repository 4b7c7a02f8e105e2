import BazaarCore
import BazaarWire

/// A Connect call served by a mesh server (connectrpc.com/docs/protocol): the same handlers and
/// pipeline as gRPC, reached with plain HTTP semantics, for clients and load balancers that do
/// not speak gRPC. What differs from gRPC is only the framing, which ``ServerStream`` applies
/// from this: a unary call's body is its one message and its answer a plain HTTP response (status
/// from the code, errors as JSON, trailers as `trailer-` headers); a streaming call carries
/// envelopes each way and ends with an end-of-stream envelope instead of HTTP trailers. JSON is
/// mapped to and from the protobuf bytes the handler takes with the method's message types.
struct ConnectCall {
    let codec: ConnectWire.Codec
    let streaming: Bool
    /// How the request is compressed: the body (`content-encoding`) for unary calls, each
    /// envelope flagged compressed (`connect-content-encoding`) for streams.
    let requestCompression: MessageCompression
    /// Whether the client takes gzip answers.
    let acceptsGzip: Bool
    let schemas: (request: MessageSchema, response: MessageSchema)?
    /// A unary POST's body as it arrives.
    var body: [UInt8] = []
    /// The HTTP status of a unary error when it is not the code's own.
    var httpStatus: Int?

    /// Answers over this many bytes go compressed when the client takes gzip.
    static let compressAbove = 1024

    var contentType: String { streaming ? "application/connect+\(codec.rawValue)" : "application/\(codec.rawValue)" }

    /// A request message as the handler takes it: protobuf bytes.
    func request(_ bytes: [UInt8]) throws(RPCError) -> [UInt8] {
        guard codec == .json else { return bytes }
        guard let schemas else { throw RPCError(.unimplemented, "this method takes no JSON") }
        do {
            return try ProtoJSON.decode(try JSONValue.parse(bytes), as: schemas.request.descriptor)
        } catch let e as JSONMappingError {
            throw RPCError(.invalidArgument, "the request is not a valid message: \(e.description)")
        } catch {
            throw RPCError(.invalidArgument, "the request is not valid JSON")
        }
    }

    /// A response message as the client asked for it.
    func response(_ bytes: [UInt8]) throws(RPCError) -> [UInt8] {
        guard codec == .json else { return bytes }
        guard let schemas else { throw RPCError(.internal, "this method has no JSON form") }
        do {
            return try ProtoJSON.encode(bytes, as: schemas.response.descriptor).serialized()
        } catch {
            throw RPCError(.internal, "the answer could not be written as JSON: \(error.description)")
        }
    }

    /// Metadata a client sends that is the protocol's own, not the call's.
    static func isProtocolHeader(_ name: String) -> Bool {
        name.hasPrefix("connect-") || name == "content-encoding" || name == "accept-encoding"
            || name == "content-length"
    }

    /// Response headers for metadata (binary values base64, unpadded), `prefix` before each name.
    static func headers(_ m: Metadata, prefix: String = "") -> [HeaderField] {
        m.entries.compactMap { key, value in
            guard !key.hasPrefix("grpc-"), !ConnectClient.isReserved(key) else { return nil }
            switch value {
            case .text(let s): return (prefix + key, s)
            case .binary(let b): return (prefix + key, Base64.encode(b, padding: false))
            }
        }
    }
}

extension ServerConnection {
    /// Opens a Connect call (the request is not gRPC): checks what the protocol asks of the
    /// headers, routes it through the same pipeline as gRPC, and starts the stream.
    func openConnect(
        stream id: Int32, kind: ConnectWire.Kind, method: String, path: String, query: String,
        fields: [HeaderField], endStream: Bool
    ) {
        func header(_ name: String) -> String? { fields.first { $0.name == name }?.value }
        let limit = shared.configuration.maxReceiveMessageSize
        var get: (codec: ConnectWire.Codec?, encoding: String, message: [UInt8])?
        var codec: ConnectWire.Codec = .json
        var streaming = false
        switch kind {
        case .unary(let c): codec = c
        case .stream(let c):
            codec = c
            streaming = true
        case .unaryGet: break
        }
        // What can be refused before a handler exists is answered as the protocol's error.
        var refusal: RPCError?
        var requestCompression = MessageCompression.identity
        var deadline: ContinuousClock.Instant?
        do throws(RPCError) {
            try ConnectWire.checkVersion(header("connect-protocol-version"))
            if let t = try ConnectWire.timeout(header("connect-timeout-ms")) { deadline = .now.advanced(by: t) }
            if kind == .unaryGet {
                let got = try ConnectWire.getMessage(query, limit: limit)
                guard let c = got.codec else {
                    throw RPCError(.unimplemented, "encoding \(got.encoding) is not supported (use proto or json)")
                }
                codec = c
                get = got
            } else {
                requestCompression = try ConnectWire.compression(
                    header(streaming ? "connect-content-encoding" : "content-encoding"))
            }
        } catch {
            refusal = error
        }
        let accepts = ConnectWire.acceptsGzip(header(streaming ? "connect-accept-encoding" : "accept-encoding"))
        var call = ConnectCall(
            codec: codec, streaming: streaming, requestCompression: requestCompression, acceptsGzip: accepts,
            schemas: nil)
        let stream = ServerStream(connection: self, id: id, acceptsGzip: false)
        stream.connect = call
        streams[id] = stream
        idleTimer?.cancel()
        idleTimer = nil
        if let refusal { return stream.fail(refusal) }

        let handler: RPCHandler
        switch shared.pipeline.route(path, peerIdentity: peerIdentity) {
        case .success(let h): handler = h
        case .failure(let e):
            // An unknown procedure is HTTP 404 (as the edge answers it), a refused caller 403.
            if e.code == .unimplemented { stream.connect?.httpStatus = 404 }
            return stream.fail(e)
        }
        let isUnary = handler.method.kind == .unary
        if isUnary == streaming {
            return stream.fail(
                RPCError(
                    .unimplemented,
                    isUnary
                        ? "\(path) is unary: call it with application/proto or application/json"
                        : "\(path) streams: call it with application/connect+proto or application/connect+json"))
        }
        if kind == .unaryGet, handler.method.options.idempotency != .noSideEffects {
            return stream.fail(RPCError(.unimplemented, "GET is only for methods without side effects; use POST"))
        }
        call = ConnectCall(
            codec: codec, streaming: streaming, requestCompression: requestCompression, acceptsGzip: accepts,
            schemas: handler.schemas)
        stream.connect = call
        var metadata = Metadata()
        for (key, value) in GRPCHeaders.metadata(fields) where !ConnectCall.isProtocolHeader(key) {
            metadata.append(lowercasedKey: key, value)
        }
        var context = ServerContext(
            method: handler.method, metadata: metadata, deadline: deadline, peerIdentity: peerIdentity,
            peerAddress: peerAddress)
        context.requestCompressed = requestCompression == .gzip
        context.executor = loop
        shared.pipeline.start(&context)
        stream.start(handler: handler, context: context)
        if let get {
            stream.connectGet(get.message)
        } else if endStream {
            stream.requestEnded()
        }
    }
}
