import BazaarCore
import BazaarWire
import Testing

@testable import BazaarTransport

/// A byte-level service for the Connect tests: echo with metadata, a failure with details, a
/// counted server stream that may end in an error, and a call that waits for its deadline.
final class ConnectProbe: RPCService, Sendable {
    static func method(_ name: String, _ kind: RPCKind) -> MethodDescriptor {
        MethodDescriptor(
            service: "test.ConnectProbe", method: name, kind: kind, inputType: "x", outputType: "x",
            options: MethodOptions(auth: AuthRequirement(level: .public)))
    }
    static let echo = method("Echo", .unary)
    static let refuse = method("Refuse", .unary)
    static let count = method("Count", .serverStreaming)
    static let wait = method("Wait", .unary)
    static let serviceDescriptor = ServiceDescriptor(
        name: "test.ConnectProbe", methods: [echo, refuse, count, wait],
        file: ProtoFile(path: "connect-probe.proto", dependencies: [], bytes: { [] }))

    static let refusal = RPCError(
        .failedPrecondition, "not now",
        details: [
            .errorInfo(ErrorInfo(reason: "BUSY", domain: "test", metadata: ["why": "tests"])),
            .retryInfo(delay: .seconds(2)),
        ])

    var handlers: [RPCHandler] {
        [
            RPCHandler(
                method: Self.echo,
                body: .unary { request, context in
                    context.response.initial.add("x-seen", context.metadata["x-tag"] ?? "none")
                    context.response.trailing.add("x-after", "done")
                    context.response.trailing.add("x-raw-bin", binary: [0, 1, 2, 255])
                    if request.count > 2000 { context.response.compression = .gzip }
                    return request
                }),
            RPCHandler(method: Self.refuse, body: .unary { _, _ in throw Self.refusal }),
            // Writes as many messages as the request's text says; an odd count ends in an error.
            RPCHandler(
                method: Self.count,
                body: .streaming { requests, responses, context in
                    var n = 0
                    for try await r in requests { n = Int(String(decoding: r, as: UTF8.self)) ?? 0 }
                    for i in 0..<n { try await responses.write(Array("m\(i)".utf8)) }
                    context.response.trailing.add("x-count", String(n))
                    if n % 2 == 1 { throw Self.refusal }
                }),
            RPCHandler(
                method: Self.wait,
                body: .unary { _, _ in
                    try await untilCancelled()
                    return []
                }),
        ]
    }
}

func one(_ message: [UInt8]) -> RPCStream<[UInt8]> {
    RPCStream { c in
        c.yield(message)
        c.finish()
    }
}

func connectChannel(_ port: Int) throws -> GRPCChannel {
    var c = ChannelConfiguration(endpoints: [Endpoint(host: "127.0.0.1", port: port)], security: .plaintext)
    c.rpcProtocol = .connect
    return try GRPCChannel(configuration: c)
}

/// A `GRPCChannel` speaking Connect to a Bazaar server (which real Connect clients are tested
/// against in Tests/Integration/test_connect.py): the same calls, statuses, details and metadata
/// as over gRPC.
@Suite(.serialized) struct ConnectLoopbackTests {
    @Test func unaryCallsCarryMetadataBothWays() async throws {
        try await withServer([ConnectProbe()]) { port in
            let ch = try connectChannel(port)
            defer { ch.close() }
            let response = ResponseMetadata()
            var options = CallOptions(timeout: .seconds(20))
            options.metadata.add("x-tag", "hello")
            options.responseMetadata = response
            let r = try await ch.unary(ConnectProbe.echo, request: Array("ping".utf8), options: options)
            #expect(r == Array("ping".utf8))
            #expect(response.initial["x-seen"] == "hello")
            #expect(response.trailing["x-after"] == "done")
            #expect(response.trailing.values("x-raw-bin") == [.binary([0, 1, 2, 255])])
            // An empty message is a message too.
            #expect(
                try await ch.unary(ConnectProbe.echo, request: [], options: CallOptions(timeout: .seconds(20))) == [])
        }
    }

    @Test func compressionBothWays() async throws {
        try await withServer([ConnectProbe()]) { port in
            let ch = try connectChannel(port)
            defer { ch.close() }
            let big = [UInt8](repeating: 7, count: 50_000)
            var options = CallOptions(timeout: .seconds(20))
            options.compression = .gzip
            #expect(try await ch.unary(ConnectProbe.echo, request: big, options: options) == big)
        }
    }

    @Test func errorsKeepTheirCodeMessageAndDetails() async throws {
        try await withServer([ConnectProbe()]) { port in
            let ch = try connectChannel(port)
            defer { ch.close() }
            do {
                _ = try await ch.unary(ConnectProbe.refuse, request: [], options: CallOptions(timeout: .seconds(20)))
                Issue.record("the call succeeded")
            } catch let e as RPCError {
                #expect(e.code == .failedPrecondition && e.message == "not now")
                #expect(e.details == ConnectProbe.refusal.details)
            }
            await #expect(throws: RPCError.self) {
                _ = try await ch.unary(
                    ConnectProbe.method("Missing", .unary), request: [], options: CallOptions(timeout: .seconds(20)))
            }
        }
    }

    @Test func serverStreamsEndWithTheirStatusAndTrailers() async throws {
        try await withServer([ConnectProbe()]) { port in
            let ch = try connectChannel(port)
            defer { ch.close() }
            let response = ResponseMetadata()
            var options = CallOptions(timeout: .seconds(20))
            options.responseMetadata = response
            var got: [String] = []
            for try await m in ch.streaming(ConnectProbe.count, requests: one(Array("4".utf8)), options: options) {
                got.append(String(decoding: m, as: UTF8.self))
            }
            #expect(got == ["m0", "m1", "m2", "m3"])
            #expect(response.trailing["x-count"] == "4")
            // An odd count: three messages, then the error with its details.
            var seen = 0
            do {
                for try await _ in ch.streaming(
                    ConnectProbe.count, requests: one(Array("3".utf8)), options: CallOptions(timeout: .seconds(20)))
                {
                    seen += 1
                }
                Issue.record("the stream ended without its error")
            } catch let e as RPCError {
                #expect(seen == 3 && e.code == .failedPrecondition && e.details == ConnectProbe.refusal.details)
                #expect(e.metadata["x-count"] == "3")
            }
        }
    }

    @Test func theDeadlineGoesAsConnectTimeoutMs() async throws {
        try await withServer([ConnectProbe()]) { port in
            let ch = try connectChannel(port)
            defer { ch.close() }
            do {
                _ = try await ch.unary(
                    ConnectProbe.wait, request: [], options: CallOptions(timeout: .milliseconds(300)))
                Issue.record("the call outlived its deadline")
            } catch let e as RPCError {
                #expect(e.code == .deadlineExceeded)
            }
        }
    }
}
