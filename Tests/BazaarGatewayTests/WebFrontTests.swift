import BazaarCore
import BazaarWebProtos
import ShopAPI
import Synchronization
import Testing

@testable import BazaarGateway
@testable import BazaarTransport

/// What a client receives, as the front door's sink would write it.
final class RecordingSink: HTTPResponseSink, @unchecked Sendable {
    struct Answer {
        var status = 0
        var headers: [(String, String)] = []
        var body: [UInt8] = []
        var ended = false
    }
    let answer = Lock(Answer())
    let done: AsyncStream<Void>.Continuation
    let finished: AsyncStream<Void>

    init() { (finished, done) = AsyncStream<Void>.makeStream() }

    func head(status: Int, headers: [(String, String)]) {
        answer.withLock {
            $0.status = status
            $0.headers = headers
        }
    }
    func body(_ bytes: [UInt8]) { answer.withLock { $0.body += bytes } }
    func end(trailers: [(String, String)]) {
        answer.withLock { $0.ended = true }
        done.yield()
    }
    var isGone: Bool { false }
    var headSent: Bool { answer.withLock { $0.status != 0 } }
    var ended: Bool { answer.withLock { $0.ended } }
}

/// A web front end that echoes what it got, and misbehaves on request.
struct EchoFront: Bazaar_Web_V1_WebFront.ServiceProtocol {
    func serve(
        _ request: Bazaar_Web_V1_HttpRequest, responses: RPCWriter<Bazaar_Web_V1_HttpResponsePart>,
        context: ServerContext
    ) async throws {
        func part(_ p: Bazaar_Web_V1_HttpResponsePart.Part) -> Bazaar_Web_V1_HttpResponsePart {
            var m = Bazaar_Web_V1_HttpResponsePart()
            m.part = p
            return m
        }
        func header(_ name: String, _ value: String) -> Bazaar_Web_V1_HttpHeader {
            var h = Bazaar_Web_V1_HttpHeader()
            h.name = name
            h.value = value
            return h
        }
        switch request.path {
        case "/fail":
            throw RPCError(.unavailable, "down for a moment")
        case "/body-first":
            try await responses.write(part(.body(Array("x".utf8))))
        default:
            var head = Bazaar_Web_V1_HttpResponseHead()
            head.status = request.path == "/missing" ? 404 : 200
            head.headers = [
                header("content-type", "text/plain"), header("set-cookie", "a=b; HttpOnly"),
                header("x-split", "a\r\nx-evil: 1"), header("transfer-encoding", "chunked"),
            ]
            try await responses.write(part(.head(head)))
            let seen = request.headers.map { "\($0.name)=\($0.value)" }.joined(separator: ";")
            try await responses.write(part(.body(Array("\(request.method) \(request.path)?\(request.query)\n".utf8))))
            try await responses.write(
                part(.body(Array("\(seen)\n\(String(decoding: request.body, as: UTF8.self))".utf8))))
        }
    }
}

@Suite struct WebFrontTests {
    static func ask(_ gateway: Gateway, _ request: HTTPRequest) async -> RecordingSink.Answer {
        let group = EventLoopGroup(count: 1)
        defer { group.shutdown() }
        let sink = RecordingSink()
        let writer = HTTPResponseWriter(sink: sink, loop: group.loops[0])
        _ = await gateway.serve(request, writer)
        for await _ in sink.finished { break }
        return sink.answer.withLock { $0 }
    }

    static func gateway(_ front: some RPCService) throws -> Gateway {
        let transport = InProcessTransport(services: [front], peerIdentity: "spiffe://bazaar.local/gateway")
        let catalog = Shop_V1_CatalogService.descriptor
        return try Gateway(
            services: [Bazaar_Web_V1_WebFront.descriptor, catalog],
            upstreams: [Bazaar_Web_V1_WebFront.descriptor.name: transport, catalog.name: transport],
            settings: Gateway.Settings())
    }

    @Test func whatNoRouteTakesGoesToTheWebFrontWithItsHeadersAndBody() async throws {
        let gateway = try Self.gateway(EchoFront())
        let answer = await Self.ask(
            gateway,
            HTTPRequest(
                method: "POST", target: "/cart/add?x=1",
                headers: [
                    ("cookie", "bz_session=s1"), ("content-type", "application/x-www-form-urlencoded"),
                    ("x-bazaar-user-id", "forged"), ("connection", "keep-alive"), ("content-length", "9"),
                ], body: Array("product=7".utf8)))
        #expect(answer.status == 200)
        let text = String(decoding: answer.body, as: UTF8.self)
        #expect(text.hasPrefix("POST /cart/add?x=1\n"))
        #expect(text.contains("cookie=bz_session=s1"))
        #expect(text.contains("content-type=application/x-www-form-urlencoded"))
        #expect(!text.contains("forged") && !text.contains("keep-alive") && !text.contains("content-length"))
        #expect(text.hasSuffix("\nproduct=7"))
        let names = answer.headers.map(\.0)
        #expect(names.contains("x-request-id") && names.contains("set-cookie") && names.contains("content-type"))
        // A header that would split the answer, and framing the edge owns, stay out.
        #expect(!names.contains("x-split") && !names.contains("transfer-encoding"))
        #expect(answer.ended)
    }

    @Test func theWebFrontsStatusAndFailuresReachTheClient() async throws {
        let gateway = try Self.gateway(EchoFront())
        #expect(await Self.ask(gateway, HTTPRequest(method: "GET", target: "/missing")).status == 404)
        #expect(await Self.ask(gateway, HTTPRequest(method: "GET", target: "/fail")).status == 503)
        #expect(await Self.ask(gateway, HTTPRequest(method: "GET", target: "/body-first")).status == 502)
        let head = await Self.ask(gateway, HTTPRequest(method: "HEAD", target: "/"))
        #expect(head.status == 200 && head.body.isEmpty)
        // An unknown path under the API's root is an API client's mistake: the API's JSON 404.
        let api = await Self.ask(gateway, HTTPRequest(method: "GET", target: "/v1/nope"))
        #expect(api.status == 404 && api.headers.contains { $0 == ("content-type", "application/json") })
        #expect(await Self.ask(gateway, HTTPRequest(method: "GET", target: "/v1x")).status == 200)
        // The edge's own paths stay the edge's.
        #expect(await Self.ask(gateway, HTTPRequest(method: "GET", target: "/healthz")).status == 200)
    }

    @Test func withoutAWebFrontAnUnroutedPathIsStillA404() async throws {
        let gateway = try Gateway(services: [], upstreams: [:], settings: Gateway.Settings())
        #expect(await Self.ask(gateway, HTTPRequest(method: "GET", target: "/")).status == 404)
    }
}
