import BazaarCore
import GRPCProtos
import ShopAPI
import Testing

/// grpc.testing.TestService implemented through the generated protocol and called through the
/// generated client, over the in-process transport: all four RPC kinds, errors and options.
struct TestServiceImpl: Grpc_Testing_TestService.ServiceProtocol {
    func emptyCall(_ request: Grpc_Testing_Empty, context: ServerContext) async throws -> Grpc_Testing_Empty { .init() }

    func unaryCall(_ request: Grpc_Testing_SimpleRequest, context: ServerContext) async throws
        -> Grpc_Testing_SimpleResponse
    {
        if let status = request.responseStatus, status.code != 0 {
            throw RPCError(StatusCode(rawValue: Int(status.code)) ?? .unknown, status.message)
        }
        var r = Grpc_Testing_SimpleResponse()
        r.payload = Grpc_Testing_Payload(body: Array(repeating: 0, count: Int(request.responseSize)))
        r.username = context.metadata["x-user"] ?? ""
        return r
    }

    func cacheableUnaryCall(_ request: Grpc_Testing_SimpleRequest, context: ServerContext) async throws
        -> Grpc_Testing_SimpleResponse
    {
        try await unaryCall(request, context: context)
    }

    func streamingOutputCall(
        _ request: Grpc_Testing_StreamingOutputCallRequest,
        responses: RPCWriter<Grpc_Testing_StreamingOutputCallResponse>, context: ServerContext
    ) async throws {
        for p in request.responseParameters {
            try await responses.write(
                .init(payload: Grpc_Testing_Payload(body: Array(repeating: 1, count: Int(p.size)))))
        }
    }

    func streamingInputCall(
        _ requests: RPCStream<Grpc_Testing_StreamingInputCallRequest>,
        context: ServerContext
    ) async throws -> Grpc_Testing_StreamingInputCallResponse {
        var total: Int32 = 0
        for try await r in requests { total += Int32(r.payload?.body.count ?? 0) }
        return .init(aggregatedPayloadSize: total)
    }

    func fullDuplexCall(
        _ requests: RPCStream<Grpc_Testing_StreamingOutputCallRequest>,
        responses: RPCWriter<Grpc_Testing_StreamingOutputCallResponse>, context: ServerContext
    ) async throws {
        for try await r in requests {
            for p in r.responseParameters {
                try await responses.write(
                    .init(payload: Grpc_Testing_Payload(body: Array(repeating: 2, count: Int(p.size)))))
            }
        }
    }

    func halfDuplexCall(
        _ requests: RPCStream<Grpc_Testing_StreamingOutputCallRequest>,
        responses: RPCWriter<Grpc_Testing_StreamingOutputCallResponse>, context: ServerContext
    ) async throws {
        var all: [Grpc_Testing_StreamingOutputCallRequest] = []
        for try await r in requests { all.append(r) }
        for r in all {
            for p in r.responseParameters {
                try await responses.write(.init(payload: .init(body: Array(repeating: 3, count: Int(p.size)))))
            }
        }
    }

    func unimplementedCall(_ request: Grpc_Testing_Empty, context: ServerContext) async throws -> Grpc_Testing_Empty {
        throw RPCError(.unimplemented)
    }
}

func requests<T: Sendable>(_ items: [T]) -> RPCStream<T> {
    RPCStream { c in
        for i in items { c.yield(i) }
        c.finish()
    }
}

@Suite("Generated service code over the in-process transport")
struct GeneratedServiceTests {
    let client = Grpc_Testing_TestService.Client(transport: InProcessTransport(services: [TestServiceImpl()]))

    @Test("unary, with metadata")
    func unary() async throws {
        var options = CallOptions()
        options.metadata.add("x-user", "ada")
        let r = try await client.unaryCall(.init(responseSize: 7), options: options)
        #expect(r.payload?.body.count == 7 && r.username == "ada")
    }

    @Test("server streaming")
    func serverStreaming() async throws {
        let req = Grpc_Testing_StreamingOutputCallRequest(responseParameters: [1, 2, 3].map { .init(size: $0) })
        var sizes: [Int] = []
        for try await r in client.streamingOutputCall(req) { sizes.append(r.payload?.body.count ?? -1) }
        #expect(sizes == [1, 2, 3])
    }

    @Test("client streaming")
    func clientStreaming() async throws {
        let r = try await client.streamingInputCall(
            requests(
                [4, 5, 6].map {
                    Grpc_Testing_StreamingInputCallRequest(payload: .init(body: Array(repeating: 0, count: $0)))
                }))
        #expect(r.aggregatedPayloadSize == 15)
    }

    @Test("bidirectional streaming")
    func bidi() async throws {
        let reqs = requests([
            Grpc_Testing_StreamingOutputCallRequest(responseParameters: [.init(size: 1), .init(size: 2)]),
            Grpc_Testing_StreamingOutputCallRequest(responseParameters: [.init(size: 3)]),
        ])
        var sizes: [Int] = []
        for try await r in client.fullDuplexCall(reqs) { sizes.append(r.payload?.body.count ?? -1) }
        #expect(sizes == [1, 2, 3])
    }

    @Test("errors carry their status")
    func errors() async throws {
        await #expect(throws: RPCError(.notFound, "no such thing")) {
            _ = try await client.unaryCall(.init(responseStatus: .init(code: 5, message: "no such thing")))
        }
        await #expect(throws: RPCError(.unimplemented)) { _ = try await client.unimplementedCall(.init()) }
        let other = Grpc_Testing_UnimplementedService.Client(
            transport: InProcessTransport(services: [TestServiceImpl()]))
        await #expect(
            throws: RPCError(
                .unimplemented, "Service not found: /grpc.testing.UnimplementedService/UnimplementedCall")
        ) {
            _ = try await other.unimplementedCall(.init())
        }
    }

    @Test("method table carries the IDL options")
    func methodTable() {
        let get = Shop_V1_CatalogService.Method.getProduct
        #expect(get.path == "/shop.v1.CatalogService/GetProduct" && get.kind == .unary)
        // additional_bindings follow the main rule.
        #expect(
            get.options.http == [
                HTTPRule(method: "GET", path: "/v1/products/{id}"), HTTPRule(method: "GET", path: "/v1/skus/{sku}"),
            ])
        #expect(get.options.auth.level == .public && get.options.idempotency == .noSideEffects)
        #expect(get.options.defaultDeadline == .milliseconds(2000))
        let create = Shop_V1_CatalogService.Method.createProduct
        #expect(create.options.auth == AuthRequirement(level: .authenticated, roles: ["admin"]))
        #expect(create.options.successStatus == 201 && create.options.http.first?.body == "product")
        let status = Shop_V1_OrdersService.Method.updateOrderStatus
        #expect(status.options.http.map(\.method) == ["POST", "PATCH"])
        let send = Shop_V1_NotificationsService.Method.send
        #expect(send.options.auth.level == .internal && send.options.auth.callers == ["orders", "accounts"])
        #expect(Shop_V1_NotificationsService.Method.sendBatch.kind == .clientStreaming)
        #expect(Shop_V1_CartService.descriptor.methods.count == 7)
    }
}
