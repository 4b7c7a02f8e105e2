import BazaarCore
import GRPCProtos

/// `grpc.testing.TestService` as gRPC's interop spec (`doc/interop-test-descriptions.md`) asks a
/// test server to behave: payload sizes, echoed status and metadata, compression checks.
public struct TestServiceImpl: Grpc_Testing_TestService.ServiceProtocol {
    public init() {}

    static let echoInitial = "x-grpc-test-echo-initial"
    static let echoTrailing = "x-grpc-test-echo-trailing-bin"

    /// Copies the echo headers of the request into the response's headers and trailers.
    static func echoMetadata(_ context: ServerContext) {
        var initial = Metadata()
        for v in context.metadata.values(echoInitial) {
            if case .text(let s) = v { initial.add(echoInitial, s) }
        }
        var trailing = Metadata()
        for v in context.metadata.values(echoTrailing) {
            if case .binary(let b) = v { trailing.add(echoTrailing, binary: b) }
        }
        if !initial.entries.isEmpty { context.response.initial = initial }
        if !trailing.entries.isEmpty { context.response.trailing = trailing }
    }

    static func payload(_ size: Int32) throws -> Grpc_Testing_Payload {
        guard size >= 0 else { throw RPCError(.invalidArgument, "negative payload size \(size)") }
        return Grpc_Testing_Payload(type: .compressable, body: [UInt8](repeating: 0, count: Int(size)))
    }

    static func check(_ status: Grpc_Testing_EchoStatus?) throws {
        guard let status, status.code != 0 else { return }
        throw RPCError(StatusCode(rawValue: Int(status.code)) ?? .unknown, status.message)
    }

    public func emptyCall(_ request: Grpc_Testing_Empty, context: ServerContext) async throws -> Grpc_Testing_Empty {
        Self.echoMetadata(context)
        return Grpc_Testing_Empty()
    }

    public func unaryCall(_ request: Grpc_Testing_SimpleRequest, context: ServerContext) async throws
        -> Grpc_Testing_SimpleResponse
    {
        Self.echoMetadata(context)
        if request.expectCompressed?.value == true && !context.requestCompressed {
            throw RPCError(.invalidArgument, "expected a compressed request")
        }
        try Self.check(request.responseStatus)
        if request.responseCompressed?.value == true { context.response.compression = .gzip }
        var response = Grpc_Testing_SimpleResponse()
        response.payload = try Self.payload(request.responseSize)
        if request.fillUsername, let id = context.peerIdentity { response.username = id }
        return response
    }

    public func cacheableUnaryCall(_ request: Grpc_Testing_SimpleRequest, context: ServerContext) async throws
        -> Grpc_Testing_SimpleResponse
    {
        try await unaryCall(request, context: context)
    }

    public func streamingOutputCall(
        _ request: Grpc_Testing_StreamingOutputCallRequest,
        responses: RPCWriter<Grpc_Testing_StreamingOutputCallResponse>, context: ServerContext
    ) async throws {
        Self.echoMetadata(context)
        try await Self.respond(to: request, responses, context)
        try Self.check(request.responseStatus)
    }

    static func respond(
        to request: Grpc_Testing_StreamingOutputCallRequest,
        _ responses: RPCWriter<Grpc_Testing_StreamingOutputCallResponse>, _ context: ServerContext
    ) async throws {
        for p in request.responseParameters {
            if p.intervalUs > 0 { try await Task.sleep(for: .microseconds(Int(p.intervalUs))) }
            context.response.compression = p.compressed?.value == true ? .gzip : .identity
            try await responses.write(Grpc_Testing_StreamingOutputCallResponse(payload: try payload(p.size)))
        }
    }

    public func streamingInputCall(
        _ requests: RPCStream<Grpc_Testing_StreamingInputCallRequest>,
        context: ServerContext
    ) async throws -> Grpc_Testing_StreamingInputCallResponse {
        var total: Int32 = 0
        for try await r in requests {
            if r.expectCompressed?.value == true && !context.requestCompressed {
                throw RPCError(.invalidArgument, "expected a compressed request")
            }
            total += Int32(r.payload?.body.count ?? 0)
        }
        return Grpc_Testing_StreamingInputCallResponse(aggregatedPayloadSize: total)
    }

    public func fullDuplexCall(
        _ requests: RPCStream<Grpc_Testing_StreamingOutputCallRequest>,
        responses: RPCWriter<Grpc_Testing_StreamingOutputCallResponse>, context: ServerContext
    ) async throws {
        Self.echoMetadata(context)
        for try await r in requests {
            try Self.check(r.responseStatus)
            try await Self.respond(to: r, responses, context)
        }
    }

    public func halfDuplexCall(
        _ requests: RPCStream<Grpc_Testing_StreamingOutputCallRequest>,
        responses: RPCWriter<Grpc_Testing_StreamingOutputCallResponse>, context: ServerContext
    ) async throws {
        var all: [Grpc_Testing_StreamingOutputCallRequest] = []
        for try await r in requests { all.append(r) }
        for r in all { try await Self.respond(to: r, responses, context) }
    }

    public func unimplementedCall(_ request: Grpc_Testing_Empty, context: ServerContext) async throws
        -> Grpc_Testing_Empty
    {
        throw RPCError(.unimplemented, "UnimplementedCall is not implemented, on purpose")
    }
}

/// `grpc.testing.BenchmarkService`: what gRPC's QPS benchmarks and the h2load comparison call.
public struct BenchmarkServiceImpl: Grpc_Testing_BenchmarkService.ServiceProtocol {
    public init() {}

    static func response(_ request: Grpc_Testing_SimpleRequest) -> Grpc_Testing_SimpleResponse {
        Grpc_Testing_SimpleResponse(
            payload: Grpc_Testing_Payload(
                type: request.responseType,
                body: [UInt8](repeating: 0, count: Int(max(0, request.responseSize)))))
    }

    public func unaryCall(_ request: Grpc_Testing_SimpleRequest, context: ServerContext) async throws
        -> Grpc_Testing_SimpleResponse
    {
        Self.response(request)
    }

    public func streamingCall(
        _ requests: RPCStream<Grpc_Testing_SimpleRequest>,
        responses: RPCWriter<Grpc_Testing_SimpleResponse>, context: ServerContext
    ) async throws {
        for try await r in requests { try await responses.write(Self.response(r)) }
    }

    public func streamingFromClient(
        _ requests: RPCStream<Grpc_Testing_SimpleRequest>,
        context: ServerContext
    ) async throws -> Grpc_Testing_SimpleResponse {
        var last = Grpc_Testing_SimpleRequest()
        for try await r in requests { last = r }
        return Self.response(last)
    }

    public func streamingFromServer(
        _ request: Grpc_Testing_SimpleRequest,
        responses: RPCWriter<Grpc_Testing_SimpleResponse>, context: ServerContext
    ) async throws {
        while !Task.isCancelled { try await responses.write(Self.response(request)) }
    }

    public func streamingBothWays(
        _ requests: RPCStream<Grpc_Testing_SimpleRequest>,
        responses: RPCWriter<Grpc_Testing_SimpleResponse>, context: ServerContext
    ) async throws {
        for try await r in requests { try await responses.write(Self.response(r)) }
    }
}
