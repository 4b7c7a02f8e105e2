import Glibc
import Testing

@testable import BazaarTransport

/// The nghttp2 pump driven with no sockets: a client session and a server session exchange bytes
/// in memory.
@Suite struct HTTP2SessionTests {
    /// Moves bytes both ways until neither side has anything to send; returns every event seen.
    static func pump(_ client: HTTP2Session, _ server: HTTP2Session) -> (client: [HTTP2Event], server: [HTTP2Event]) {
        var clientEvents: [HTTP2Event] = []
        var serverEvents: [HTTP2Event] = []
        for _ in 0..<20 {
            var c2s: [UInt8] = []
            var s2c: [UInt8] = []
            client.send(into: &c2s)
            clientEvents += client.takeEvents()
            server.send(into: &s2c)
            serverEvents += server.takeEvents()
            if c2s.isEmpty && s2c.isEmpty { break }
            serverEvents += c2s.withUnsafeBytes { server.receive($0) } ?? []
            clientEvents += s2c.withUnsafeBytes { client.receive($0) } ?? []
        }
        return (clientEvents, serverEvents)
    }

    static func closed(_ events: [HTTP2Event]) -> [Int32] {
        events.compactMap { if case .streamClosed(let id, _) = $0 { id } else { nil } }
    }

    /// Regression: a stream that the server closes by *sending* END_STREAM is reported by
    /// `takeEvents()`. Before, only events raised while receiving were seen, so the server kept
    /// every finished call (and its task) until the connection closed: 670 MB after 200k calls.
    @Test func streamsClosedBySendingAreReported() {
        let client = HTTP2Session(server: false, settings: HTTP2Settings())
        let server = HTTP2Session(server: true, settings: HTTP2Settings())
        var ids: [Int32] = []
        for _ in 0..<3 {
            let id = client.submitRequest(headers: [
                (":method", "POST"), (":scheme", "http"), (":path", "/a.B/C"),
                (":authority", "x"), ("content-type", "application/grpc"),
            ])
            client.enqueue(stream: id, [0, 0, 0, 0, 0], end: true)
            ids.append(id)
        }
        let first = Self.pump(client, server)
        let requests = first.server.compactMap { if case .headers(let id, _, _) = $0 { id } else { nil } }
        #expect(requests == ids)
        for id in ids {
            server.submitResponse(stream: id, headers: [], prefix: HeaderBlock.grpcResponse)
            server.enqueue(stream: id, [0, 0, 0, 0, 0], end: true, trailersPrefix: HeaderBlock.statusOK)
        }
        let second = Self.pump(client, server)
        #expect(Self.closed(second.server).sorted() == ids)
        #expect(Self.closed(second.client).sorted() == ids)
        #expect(server.outbound.isEmpty)
        let trailers = second.client.compactMap { e -> [HeaderField]? in
            if case .headers(_, let f, true) = e { f } else { nil }
        }
        #expect(
            trailers.count == 3 && trailers.allSatisfy { $0.contains { $0.name == "grpc-status" && $0.value == "0" } })
    }

    @Test func headerListOverTheLimitResetsOnlyThatStream() {
        var small = HTTP2Settings()
        small.maxHeaderListSize = 1024
        let client = HTTP2Session(server: false, settings: HTTP2Settings())
        let server = HTTP2Session(server: true, settings: small)
        let big = client.submitRequest(
            headers: [(":method", "POST"), (":scheme", "http"), (":path", "/a.B/C"), (":authority", "x")]
                + (0..<20).map { ("x-h\($0)", String(repeating: "v", count: 100)) })
        let ok = client.submitRequest(headers: [
            (":method", "POST"), (":scheme", "http"), (":path", "/a.B/C"), (":authority", "x"),
        ])
        let events = Self.pump(client, server)
        let served = events.server.compactMap { if case .headers(let id, _, _) = $0 { id } else { nil } }
        #expect(served == [ok])
        #expect(Self.closed(events.client).contains(big))
    }
}

@Suite struct StreamMapTests {
    final class Box {
        let v: Int32
        init(_ v: Int32) { self.v = v }
    }

    /// Random inserts and removals against a Dictionary, including the probe-run shifts.
    @Test func behavesLikeADictionary() {
        var map = StreamMap<Box>()
        var reference: [Int32: Int32] = [:]
        var rng = SystemRandomNumberGenerator()
        for step in 0..<20_000 {
            let id = Int32(Int.random(in: 0..<600, using: &rng)) * 2 + 1
            if Bool.random(using: &rng) || step < 200 {
                map[id] = Box(id)
                reference[id] = id
            } else {
                #expect(map.removeValue(forKey: id)?.v == reference.removeValue(forKey: id))
            }
            #expect(map.count == reference.count)
        }
        for (k, v) in reference { #expect(map[k]?.v == v) }
        #expect(map.allValues.count == reference.count)
        #expect(map[999_999] == nil)
    }
}
