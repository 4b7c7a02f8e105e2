import BazaarCore
import GRPCProtos

/// A failed expectation of an interop test case.
public struct InteropFailure: Error, CustomStringConvertible {
    public let description: String
    init(_ d: String) { description = d }
}

/// gRPC's interop client test cases (`doc/interop-test-descriptions.md`), run through a generated
/// client over any transport.
public struct InteropTestCases: Sendable {
    public let transport: any ClientTransport
    /// Whether the server verifies `expect_compressed` (grpcio servers cannot see compression,
    /// so the feature probe is skipped against them).
    public var serverChecksCompression: Bool

    public init(transport: any ClientTransport, serverChecksCompression: Bool = true) {
        self.transport = transport
        self.serverChecksCompression = serverChecksCompression
    }

    public static let all = [
        "empty_unary", "large_unary", "client_streaming", "server_streaming", "ping_pong", "empty_stream",
        "cancel_after_begin", "cancel_after_first_response", "timeout_on_sleeping_server", "custom_metadata",
        "status_code_and_message", "special_status_message", "unimplemented_method", "unimplemented_service",
        "client_compressed_unary", "server_compressed_unary", "client_compressed_streaming",
        "server_compressed_streaming",
    ]

    var client: Grpc_Testing_TestService.Client { .init(transport: transport) }
    static let timeout = CallOptions(timeout: .seconds(10))

    public func run(_ name: String) async throws {
        switch name {
        case "empty_unary": try await emptyUnary()
        case "large_unary": try await largeUnary()
        case "client_streaming": try await clientStreaming(compressed: false)
        case "server_streaming": try await serverStreaming(compressed: false)
        case "ping_pong": try await pingPong()
        case "empty_stream": try await emptyStream()
        case "cancel_after_begin": try await cancelAfterBegin()
        case "cancel_after_first_response": try await cancelAfterFirstResponse()
        case "timeout_on_sleeping_server": try await timeoutOnSleepingServer()
        case "custom_metadata": try await customMetadata()
        case "status_code_and_message": try await statusCodeAndMessage("test status message")
        case "special_status_message":
            try await statusCodeAndMessage("\t\ntest with whitespace\r\nand Unicode BMP ☺ and non-BMP 😈\t\n")
        case "unimplemented_method": try await unimplementedMethod()
        case "unimplemented_service": try await unimplementedService()
        case "client_compressed_unary": try await clientCompressedUnary()
        case "server_compressed_unary": try await serverCompressedUnary()
        case "client_compressed_streaming": try await clientStreaming(compressed: true)
        case "server_compressed_streaming": try await serverStreaming(compressed: true)
        default: throw InteropFailure("unknown test case \(name); known: \(Self.all.joined(separator: ", "))")
        }
    }

    static func expect(_ ok: Bool, _ what: @autoclosure () -> String) throws {
        if !ok { throw InteropFailure(what()) }
    }

    static func payload(_ n: Int) -> Grpc_Testing_Payload {
        Grpc_Testing_Payload(type: .compressable, body: [UInt8](repeating: 0, count: n))
    }

    /// Runs `body` and expects it to fail with `code`.
    static func expectError(_ code: StatusCode, message: String? = nil, _ body: () async throws -> Void) async throws {
        do {
            try await body()
        } catch let e as RPCError {
            try expect(e.code == code, "expected \(code), got \(e)")
            if let message {
                try expect(
                    e.message == message,
                    "expected message \(message.debugDescription), got \(e.message.debugDescription)")
            }
            return
        }
        throw InteropFailure("expected \(code), but the call succeeded")
    }

    func emptyUnary() async throws {
        _ = try await client.emptyCall(Grpc_Testing_Empty(), options: Self.timeout)
    }

    func largeUnary() async throws {
        var req = Grpc_Testing_SimpleRequest()
        req.responseSize = 314_159
        req.payload = Self.payload(271_828)
        let r = try await client.unaryCall(req, options: Self.timeout)
        try Self.expect(r.payload?.body.count == 314_159, "large_unary: got \(r.payload?.body.count ?? -1) bytes")
        try Self.expect(r.payload?.body.allSatisfy { $0 == 0 } == true, "large_unary: payload is not zeros")
    }

    func clientStreaming(compressed: Bool) async throws {
        let sizes = [27182, 8, 1828, 45904]
        if compressed && serverChecksCompression {
            // Feature probe: an uncompressed message that claims compression must be refused.
            var probe = Grpc_Testing_StreamingInputCallRequest()
            probe.expectCompressed = Grpc_Testing_BoolValue(value: true)
            probe.payload = Self.payload(27182)
            try await Self.expectError(.invalidArgument) {
                _ = try await client.streamingInputCall(
                    RPCStream {
                        $0.yield(probe)
                        $0.finish()
                    }, options: Self.timeout)
            }
        }
        let requests = RPCStream<Grpc_Testing_StreamingInputCallRequest> { c in
            for n in sizes {
                var r = Grpc_Testing_StreamingInputCallRequest()
                r.payload = Self.payload(n)
                if compressed { r.expectCompressed = Grpc_Testing_BoolValue(value: true) }
                c.yield(r)
            }
            c.finish()
        }
        var options = Self.timeout
        if compressed { options.compression = .gzip }
        let r = try await client.streamingInputCall(requests, options: options)
        try Self.expect(
            r.aggregatedPayloadSize == 74922, "client_streaming: aggregated \(r.aggregatedPayloadSize), expected 74922")
    }

    func serverStreaming(compressed: Bool) async throws {
        let sizes: [Int32] = compressed ? [31415, 92653] : [31415, 9, 2653, 58979]
        var req = Grpc_Testing_StreamingOutputCallRequest()
        req.responseParameters = sizes.enumerated().map { i, n in
            var p = Grpc_Testing_ResponseParameters()
            p.size = n
            if compressed { p.compressed = Grpc_Testing_BoolValue(value: i == 0) }
            return p
        }
        var got: [Int] = []
        for try await r in client.streamingOutputCall(req, options: Self.timeout) {
            got.append(r.payload?.body.count ?? -1)
        }
        try Self.expect(got == sizes.map(Int.init), "server_streaming: got sizes \(got), expected \(sizes)")
    }

    func pingPong() async throws {
        let pairs: [(Int32, Int)] = [(31415, 27182), (9, 8), (2653, 1828), (58979, 45904)]
        let (requests, input) = RPCStream<Grpc_Testing_StreamingOutputCallRequest>.makeStream()
        func request(_ i: Int) -> Grpc_Testing_StreamingOutputCallRequest {
            var r = Grpc_Testing_StreamingOutputCallRequest()
            r.responseParameters = [Grpc_Testing_ResponseParameters(size: pairs[i].0)]
            r.payload = Self.payload(pairs[i].1)
            return r
        }
        input.yield(request(0))
        var i = 0
        for try await r in client.fullDuplexCall(requests, options: Self.timeout) {
            try Self.expect(
                r.payload?.body.count == Int(pairs[i].0),
                "ping_pong: response \(i) has \(r.payload?.body.count ?? -1) bytes")
            i += 1
            if i < pairs.count { input.yield(request(i)) } else { input.finish() }
        }
        try Self.expect(i == pairs.count, "ping_pong: got \(i) responses")
    }

    func emptyStream() async throws {
        var n = 0
        for try await _ in client.fullDuplexCall(RPCStream { $0.finish() }, options: Self.timeout) { n += 1 }
        try Self.expect(n == 0, "empty_stream: got \(n) responses")
    }

    func cancelAfterBegin() async throws {
        let (requests, input) = RPCStream<Grpc_Testing_StreamingInputCallRequest>.makeStream()
        let client = self.client
        let call = Task { try await client.streamingInputCall(requests, options: Self.timeout) }
        try await Task.sleep(for: .milliseconds(50))
        call.cancel()
        try await Self.expectError(.cancelled) { _ = try await call.value }
        input.finish()
    }

    func cancelAfterFirstResponse() async throws {
        let (requests, input) = RPCStream<Grpc_Testing_StreamingOutputCallRequest>.makeStream()
        var r = Grpc_Testing_StreamingOutputCallRequest()
        r.responseParameters = [Grpc_Testing_ResponseParameters(size: 31415)]
        r.payload = Self.payload(27182)
        input.yield(r)
        let client = self.client
        let call = Task {
            var it = client.fullDuplexCall(requests, options: Self.timeout).makeAsyncIterator()
            _ = try await it.next()
            withUnsafeCurrentTask { $0?.cancel() }
            while try await it.next() != nil {}
            // A cancelled iteration ends quietly; the caller knows why.
            if Task.isCancelled { throw RPCError(.cancelled, "call cancelled") }
            throw InteropFailure("the call ended normally after cancellation")
        }
        try await Self.expectError(.cancelled) { try await call.value }
        input.finish()
    }

    func timeoutOnSleepingServer() async throws {
        let (requests, input) = RPCStream<Grpc_Testing_StreamingOutputCallRequest>.makeStream()
        var r = Grpc_Testing_StreamingOutputCallRequest()
        r.payload = Self.payload(27182)
        input.yield(r)
        try await Self.expectError(.deadlineExceeded) {
            for try await _ in client.fullDuplexCall(requests, options: CallOptions(timeout: .milliseconds(1))) {}
        }
        input.finish()
    }

    func customMetadata() async throws {
        var md = Metadata()
        md.add("x-grpc-test-echo-initial", "test_initial_metadata_value")
        md.add("x-grpc-test-echo-trailing-bin", binary: [0xab, 0xab, 0xab])
        func check(_ m: ResponseMetadata, _ what: String) throws {
            try Self.expect(
                m.initial["x-grpc-test-echo-initial"] == "test_initial_metadata_value",
                "\(what): initial metadata \(m.initial.entries)")
            try Self.expect(
                m.trailing.values("x-grpc-test-echo-trailing-bin") == [.binary([0xab, 0xab, 0xab])],
                "\(what): trailing metadata \(m.trailing.entries)")
        }
        let unary = ResponseMetadata()
        var req = Grpc_Testing_SimpleRequest()
        req.responseSize = 314_159
        req.payload = Self.payload(271_828)
        _ = try await client.unaryCall(
            req, options: CallOptions(timeout: .seconds(10), metadata: md, responseMetadata: unary))
        try check(unary, "custom_metadata (unary)")

        let streaming = ResponseMetadata()
        var sreq = Grpc_Testing_StreamingOutputCallRequest()
        sreq.responseParameters = [Grpc_Testing_ResponseParameters(size: 314_159)]
        sreq.payload = Self.payload(271_828)
        for try await _ in client.fullDuplexCall(
            RPCStream {
                $0.yield(sreq)
                $0.finish()
            },
            options: CallOptions(timeout: .seconds(10), metadata: md, responseMetadata: streaming))
        {}
        try check(streaming, "custom_metadata (full duplex)")
    }

    func statusCodeAndMessage(_ message: String) async throws {
        var req = Grpc_Testing_SimpleRequest()
        req.responseStatus = Grpc_Testing_EchoStatus(code: 2, message: message)
        try await Self.expectError(.unknown, message: message) {
            _ = try await client.unaryCall(req, options: Self.timeout)
        }
        var sreq = Grpc_Testing_StreamingOutputCallRequest()
        sreq.responseStatus = Grpc_Testing_EchoStatus(code: 2, message: message)
        try await Self.expectError(.unknown, message: message) {
            for try await _ in client.fullDuplexCall(
                RPCStream {
                    $0.yield(sreq)
                    $0.finish()
                }, options: Self.timeout)
            {}
        }
    }

    func unimplementedMethod() async throws {
        try await Self.expectError(.unimplemented) {
            _ = try await client.unimplementedCall(Grpc_Testing_Empty(), options: Self.timeout)
        }
    }

    func unimplementedService() async throws {
        let other = Grpc_Testing_UnimplementedService.Client(transport: transport)
        try await Self.expectError(.unimplemented) {
            _ = try await other.unimplementedCall(Grpc_Testing_Empty(), options: Self.timeout)
        }
    }

    func clientCompressedUnary() async throws {
        var req = Grpc_Testing_SimpleRequest()
        req.responseSize = 314_159
        req.payload = Self.payload(271_828)
        req.expectCompressed = Grpc_Testing_BoolValue(value: true)
        if serverChecksCompression {
            try await Self.expectError(.invalidArgument) { _ = try await client.unaryCall(req, options: Self.timeout) }
        }
        var gzip = Self.timeout
        gzip.compression = .gzip
        let r = try await client.unaryCall(req, options: gzip)
        try Self.expect(
            r.payload?.body.count == 314_159, "client_compressed_unary: \(r.payload?.body.count ?? -1) bytes")
        req.expectCompressed = Grpc_Testing_BoolValue(value: false)
        _ = try await client.unaryCall(req, options: Self.timeout)
    }

    func serverCompressedUnary() async throws {
        for compressed in [true, false] {
            var req = Grpc_Testing_SimpleRequest()
            req.responseSize = 314_159
            req.payload = Self.payload(271_828)
            req.responseCompressed = Grpc_Testing_BoolValue(value: compressed)
            let r = try await client.unaryCall(req, options: Self.timeout)
            try Self.expect(
                r.payload?.body.count == 314_159, "server_compressed_unary: \(r.payload?.body.count ?? -1) bytes")
        }
    }
}
