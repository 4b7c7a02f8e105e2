import BazaarWire

/// The byte-level client side of the mesh. Generated clients serialize with protobuf-c and call
/// these; the HTTP/2 transport and the in-process transport implement them.
public protocol ClientTransport: Sendable {
    /// One request message in, one response message out.
    func unary(_ method: MethodDescriptor, request: [UInt8], options: CallOptions) async throws -> [UInt8]
    /// Any number of messages each way (client, server and bidirectional streaming).
    func streaming(_ method: MethodDescriptor, requests: RPCStream<[UInt8]>, options: CallOptions) -> RPCStream<[UInt8]>
}

/// A service implementation as the server sees it: a method table of byte-level handlers.
/// Generated service protocols provide `handlers` from their typed methods.
public protocol RPCService: Sendable {
    static var serviceDescriptor: ServiceDescriptor { get }
    var handlers: [RPCHandler] { get }
}

/// A byte-level handler for one method. Unary calls get their own case so that transports can
/// serve them without building streams.
public struct RPCHandler: Sendable {
    public enum Body: Sendable {
        case unary(@Sendable (_ request: [UInt8], _ context: ServerContext) async throws -> [UInt8])
        case streaming(
            @Sendable (_ requests: RPCStream<[UInt8]>, _ responses: RPCWriter<[UInt8]>, _ context: ServerContext)
                async throws -> Void)
    }

    public let method: MethodDescriptor
    public let body: Body
    /// The request and response message types, for transports that map other codecs (Connect's
    /// JSON) to the protobuf bytes the body takes; `nil` for a handler made from bytes alone.
    public let schemas: (request: MessageSchema, response: MessageSchema)?

    public init(
        method: MethodDescriptor, body: Body, schemas: (request: MessageSchema, response: MessageSchema)? = nil
    ) {
        self.method = method
        self.body = body
        self.schemas = schemas
    }
}

/// Decoding failures of a request become `INVALID_ARGUMENT` (the caller sent bad bytes); of a
/// response, `INTERNAL` (the server did).
@usableFromInline
func decode<M: WireMessage>(_ type: M.Type, _ bytes: [UInt8], request: Bool) throws -> M {
    do {
        return try M(serializedBytes: bytes)
    } catch {
        throw RPCError(request ? .invalidArgument : .internal, "cannot decode \(M.protoMessageName): \(error)")
    }
}

@usableFromInline
func encode<M: WireMessage>(_ message: M) throws -> [UInt8] {
    do {
        return try message.serializedBytes()
    } catch {
        throw RPCError(.internal, "cannot encode \(M.protoMessageName): \(error)")
    }
}

/// Maps a typed stream to bytes (or back) as the reader pulls: no task, no extra buffer, so
/// back-pressure reaches the transport.
func mapStream<In: Sendable, Out: Sendable>(
    _ input: some AsyncSequence<In, any Error> & Sendable,
    _ transform: @escaping @Sendable (In) throws -> Out
) -> RPCStream<Out> {
    RPCStream(input, transform: transform)
}

extension RPCHandler {
    public static func unary<Req: WireMessage, Resp: WireMessage>(
        _ method: MethodDescriptor, _ body: @escaping @Sendable (Req, ServerContext) async throws -> Resp
    ) -> RPCHandler {
        RPCHandler(
            method: method,
            body: .unary { bytes, context in
                try encode(try await body(try decode(Req.self, bytes, request: true), context))
            }, schemas: (MessageSchema(Req.self), MessageSchema(Resp.self)))
    }

    public static func serverStreaming<Req: WireMessage, Resp: WireMessage>(
        _ method: MethodDescriptor,
        _ body: @escaping @Sendable (Req, RPCWriter<Resp>, ServerContext) async throws -> Void
    ) -> RPCHandler {
        RPCHandler(
            method: method,
            body: .streaming { requests, responses, context in
                var iterator = requests.makeAsyncIterator()
                guard let first = try await iterator.next() else {
                    throw RPCError(.invalidArgument, "missing request message")
                }
                if try await iterator.next() != nil {
                    throw RPCError(.invalidArgument, "more than one request message")
                }
                try await body(
                    try decode(Req.self, first, request: true), RPCWriter { try await responses.write(try encode($0)) },
                    context)
            }, schemas: (MessageSchema(Req.self), MessageSchema(Resp.self)))
    }

    public static func clientStreaming<Req: WireMessage, Resp: WireMessage>(
        _ method: MethodDescriptor, _ body: @escaping @Sendable (RPCStream<Req>, ServerContext) async throws -> Resp
    ) -> RPCHandler {
        RPCHandler(
            method: method,
            body: .streaming { requests, responses, context in
                let typed = mapStream(requests) { try decode(Req.self, $0, request: true) }
                try await responses.write(try encode(try await body(typed, context)))
            }, schemas: (MessageSchema(Req.self), MessageSchema(Resp.self)))
    }

    public static func bidirectionalStreaming<Req: WireMessage, Resp: WireMessage>(
        _ method: MethodDescriptor,
        _ body: @escaping @Sendable (RPCStream<Req>, RPCWriter<Resp>, ServerContext) async throws -> Void
    ) -> RPCHandler {
        RPCHandler(
            method: method,
            body: .streaming { requests, responses, context in
                let typed = mapStream(requests) { try decode(Req.self, $0, request: true) }
                try await body(typed, RPCWriter { try await responses.write(try encode($0)) }, context)
            }, schemas: (MessageSchema(Req.self), MessageSchema(Resp.self)))
    }
}

extension ClientTransport {
    public func unary<Req: WireMessage, Resp: WireMessage>(
        _ method: MethodDescriptor, _ request: Req,
        options: CallOptions
    ) async throws -> Resp {
        try decode(Resp.self, try await unary(method, request: try encode(request), options: options), request: false)
    }

    public func serverStreaming<Req: WireMessage, Resp: WireMessage>(
        _ method: MethodDescriptor, _ request: Req,
        options: CallOptions
    ) -> RPCStream<Resp> {
        let requests: RPCStream<[UInt8]>
        do {
            let bytes = try encode(request)
            requests = RPCStream {
                $0.yield(bytes)
                $0.finish()
            }
        } catch {
            requests = RPCStream { $0.finish(throwing: error) }
        }
        return mapStream(streaming(method, requests: requests, options: options)) {
            try decode(Resp.self, $0, request: false)
        }
    }

    public func clientStreaming<Req: WireMessage, Resp: WireMessage>(
        _ method: MethodDescriptor, _ requests: some AsyncSequence<Req, any Error> & Sendable, options: CallOptions
    ) async throws -> Resp {
        let responses = streaming(method, requests: mapStream(requests) { try encode($0) }, options: options)
        var iterator = responses.makeAsyncIterator()
        guard let first = try await iterator.next() else {
            // A cancelled consumer sees the end of the stream rather than an error.
            if Task.isCancelled { throw RPCError(.cancelled, "call cancelled") }
            throw RPCError(.internal, "no response message")
        }
        return try decode(Resp.self, first, request: false)
    }

    public func bidirectionalStreaming<Req: WireMessage, Resp: WireMessage>(
        _ method: MethodDescriptor, _ requests: some AsyncSequence<Req, any Error> & Sendable, options: CallOptions
    ) -> RPCStream<Resp> {
        mapStream(streaming(method, requests: mapStream(requests) { try encode($0) }, options: options)) {
            try decode(Resp.self, $0, request: false)
        }
    }
}
