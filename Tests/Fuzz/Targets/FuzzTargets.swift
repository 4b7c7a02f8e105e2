import BazaarCore
import BazaarSMTP
import BazaarSchema
import BazaarWebProtos
import BazaarWire
import CBazaarHiredis
import CBazaarPQ
import ConformanceProtos
import Foundation
import ShopAPI
import ShopKit
import WellKnownTypes

// The fuzz targets: every parser that reads bytes from the network, one function each. The
// libFuzzer driver (Tests/Fuzz/Driver, `make fuzz`) runs them under AddressSanitizer; the
// replay test (Tests/FuzzReplayTests, in `make test`) feeds each its committed corpus
// (Tests/Fuzz/corpus/<target>/) and the inputs that once crashed (Tests/Fuzz/regressions/<target>/).
// A target returns normally for any input: it throws nothing and traps only on a real bug (a
// crash, or an invariant such as "what decodes re-encodes the same" broken).
@testable import BazaarAuth
@testable import BazaarGateway
@testable import BazaarPostgres
@testable import BazaarRedis
@testable import BazaarTransport
@testable import Web

public enum FuzzTargets {
    /// Each target by its name (the corpus folder and `FUZZ_TARGET`).
    public static let all: [String: @Sendable ([UInt8]) -> Void] = [
        "wire": wire, "http1": http1, "h2": h2, "grpc": grpc, "json": json, "jwt": jwt, "redis": redis, "text": text,
        "smtp": smtp, "postgres": postgres, "schema": schema, "web": web, "connect": connect,
    ]

    /// What the edge and the mesh servers read from a Connect request: the kind from method and content type, the
    /// envelopes of a streaming body (and each one's gzip), a GET's query, `connect-timeout-ms`,
    /// the encodings named in headers.
    static func connect(_ bytes: [UInt8]) {
        let s = String(decoding: bytes, as: UTF8.self)
        _ = ConnectWire.kind(method: "POST", contentType: s, query: "")
        _ = ConnectWire.kind(method: "GET", contentType: nil, query: s)
        if let envelopes = try? ConnectWire.envelopes(bytes, limit: 64 << 10) {
            var total = 0
            for e in envelopes {
                precondition(e.payload.count <= 64 << 10, "an envelope over the limit")
                total += 5 + e.payload.count
                if e.flags & ConnectWire.compressedFlag != 0,
                    let inflated = try? ConnectWire.inflate(e.payload, .gzip, limit: 64 << 10)
                {
                    precondition(inflated.count <= 64 << 10, "inflated over the limit")
                }
            }
            precondition(total == bytes.count, "envelopes that do not cover the body")
        }
        if let got = try? ConnectWire.getMessage(s, limit: 64 << 10) {
            precondition(got.message.count <= max(64 << 10, bytes.count), "a GET message over the limit")
        }
        if let t = try? ConnectWire.timeout(s) {
            precondition(t >= .zero, "a negative timeout")
        }
        _ = try? ConnectWire.compression(s)
        _ = ConnectWire.acceptsGzip(s)
        // What a channel speaking Connect reads from a server: error JSON, end-of-stream messages,
        // envelopes off a response, and google.rpc.Status details.
        let e = ConnectClient.error(httpStatus: "400", body: bytes, trailers: Metadata())
        precondition(e.code != .ok, "an error body read as success")
        _ = try? ConnectClient.endOfStream(bytes, trailers: Metadata(), into: nil)
        var buffer = bytes
        while let (_, payload) = try? ConnectClient.nextEnvelope(&buffer, limit: 64 << 10) {
            precondition(payload.count <= 64 << 10, "a response envelope over the limit")
        }
        _ = StatusDetails.decode(bytes)
    }

    /// What the storefront reads from a request (query strings and form bodies, path segments,
    /// cookies, where to go after sign-in), what it reads back from the session store, and what
    /// the edge reads from a web front end's answer (response parts, headers).
    static func web(_ bytes: [UInt8]) {
        if let form = try? FormData(encoded: bytes) {
            precondition(form.pairs.count <= FormData.maxPairs, "a form over the field limit")
            if let q = try? SearchQuery(form), let lo = q.minPrice, let hi = q.maxPrice {
                precondition(lo <= hi && lo >= 0, "a price range upside down")
            }
            for (name, value) in form.pairs {
                let escaped = HTML.escape(value) + HTML.escape(name)
                precondition(!escaped.contains { "<>\"'".contains($0) }, "escaping left markup")
                _ = HTML.isSafeURL(value)
            }
        }
        let s = String(decoding: bytes, as: UTF8.self)
        _ = try? FormData.decodePathSegment(Substring(s))
        _ = Cookies.parse(s)
        let next = Visit.nextPath(s)
        precondition(next == "/" || (next.hasPrefix("/") && !next.hasPrefix("//")), "a redirect off the site")
        if let session = WebSession(encoded: bytes) {
            // What the session store reads back is what it would write again.
            precondition(
                WebSession(encoded: Array(session.encoded.utf8)) == session, "a session that changes on a round trip")
        }
        _ = DemoArt.file(s)
        if HTML.isSafeURL(s) {
            precondition(s.hasPrefix("/") || s.lowercased().hasPrefix("http"), "an unsafe link passed")
        }
        if let part = try? Bazaar_Web_V1_HttpResponsePart(serializedBytes: bytes), case .head(let head)? = part.part {
            for h in head.headers where Gateway.isSafeHeader(h.name.lowercased(), h.value) {
                precondition(!h.value.utf8.contains { $0 == 10 || $0 == 13 }, "a header that splits the answer")
            }
        }
    }

    /// What server reflection answers, as the gateway and `bazaar call` use it: a
    /// FileDescriptorSet's files built into run-time descriptors and method tables, the routes and
    /// the OpenAPI document made from them, and the same bytes unpacked with every message built
    /// and mapped to JSON. A bad schema is refused with an error, never a trap.
    static func schema(_ bytes: [UInt8]) {
        guard let set = try? Google_Protobuf_FileDescriptorSet(serializedBytes: bytes),
            let schema = try? Schema(files: set.file)
        else { return }
        let upstream = UpstreamSchema(upstream: "fuzz", schema: schema)
        if let routes = try? RouteTable(schemas: [upstream]) {
            _ = OpenAPI.document(routes: routes, title: "fuzz").serialized()
        }
        for (_, d) in schema.pool.messages {
            _ = try? ProtoJSON.encode(bytes, as: d)
            _ = try? ProtoJSON.decode(.object([]), as: d)
        }
    }

    /// protobuf wire decoding of several message kinds; what decodes must re-encode stably.
    static func wire(_ bytes: [UInt8]) {
        roundTrip(Conformance_V1_AllTypes.self, bytes)
        roundTrip(Conformance_V1_Proto2Types.self, bytes)
        roundTrip(Shop_V1_Order.self, bytes)
    }

    static func roundTrip<M: WireMessage>(_ type: M.Type, _ bytes: [UInt8]) {
        guard let m = try? M(serializedBytes: bytes), let out = try? m.serializedBytes() else { return }
        guard let again = try? M(serializedBytes: out), let out2 = try? again.serializedBytes(), out2 == out else {
            fatalError("\(M.protoMessageName): re-encoding is not stable")
        }
    }

    /// The front door's HTTP/1.1 parser, fed in two pieces split by the first byte (so that
    /// every split point is tried), through pipelined requests until it fails or runs out.
    static func http1(_ bytes: [UInt8]) {
        guard let first = bytes.first else { return }
        let input = Array(bytes.dropFirst())
        let split = input.isEmpty ? 0 : Int(first) % (input.count + 1)
        let parser = HTTP1Parser()
        var pending = ArraySlice(input[..<split])
        var later = ArraySlice(input[split...])
        var rounds = 0
        while rounds < 10_000 {
            rounds += 1
            if pending.isEmpty {
                if later.isEmpty { return }
                pending = later
                later = []
            }
            let result: Result<Int, HTTP1Parser.Failure> = pending.withUnsafeBytes { b in
                do throws(HTTP1Parser.Failure) { return .success(try parser.feed(b)) } catch { return .failure(error) }
            }
            let used: Int
            switch result {
            case .success(let n): used = n
            case .failure(let f):
                precondition((400...499).contains(f.status), "a parse failure must be a 4xx, got \(f.status)")
                return
            }
            precondition(used <= pending.count, "the parser used more bytes than it was given")
            pending = pending.dropFirst(used)
            for case .head(let head) in parser.takeEvents() {
                precondition(!head.method.isEmpty, "a request without a method")
            }
            if parser.paused { parser.resume() } else if used == 0 { return }
        }
    }

    /// HTTP/2 as a server reads it (nghttp2 and the session's glue: header lists, stream
    /// bookkeeping, metadata from header fields), after the client preface, with the edge's
    /// limits; then whatever the session answers is produced.
    static func h2(_ bytes: [UInt8]) {
        let session = HTTP2Session(server: true, settings: .edge)
        let input = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8) + bytes
        guard let events = input.withUnsafeBytes({ session.receive($0) }) else { return }
        for case .headers(_, let fields, _) in events + session.takeEvents() {
            _ = GRPCHeaders.metadata(fields)
            for f in fields where f.name == "grpc-timeout" { _ = GRPCHeaders.parseTimeout(f.value) }
        }
        var out: [UInt8] = []
        _ = session.send(into: &out)
    }

    /// gRPC: the length-prefixed framing (within a 64 KiB limit), `grpc-timeout`, metadata
    /// percent-decoding and gRPC-Web text (base64) framing.
    static func grpc(_ bytes: [UInt8]) {
        var reader = MessageReader(maxMessageSize: 64 << 10)
        reader.append(bytes)
        var total = 0
        do throws(RPCError) {
            while let m = try reader.next() {
                precondition(m.payload.count <= 64 << 10, "a message over the limit was accepted")
                total += m.payload.count + 5
            }
        } catch {}
        precondition(total <= bytes.count, "framing produced more bytes than it read")
        let text = String(decoding: bytes.prefix(64), as: UTF8.self)
        if let d = GRPCHeaders.parseTimeout(text) { precondition(d >= .zero, "a negative grpc-timeout") }
        _ = GRPCHeaders.percentDecode(text)
        // gRPC-Web text: base64 (whitespace allowed), then the same framing.
        if let decoded = Data(base64Encoded: String(decoding: bytes, as: UTF8.self).filter { !$0.isWhitespace }) {
            var web = MessageReader(maxMessageSize: 64 << 10)
            web.append(Array(decoded))
            do throws(RPCError) { while try web.next() != nil {} } catch {}
        }
    }

    /// JSON from clients: parsing with its limits, then the proto3 mapping onto request messages.
    static func json(_ bytes: [UInt8]) {
        guard let value = try? JSONValue.parse(bytes) else { return }
        _ = value.serialized()
        for descriptor in [
            Shop_V1_Product.protobufCDescriptor, Shop_V1_PlaceOrderRequest.protobufCDescriptor,
            Conformance_V1_AllTypes.protobufCDescriptor,
        ] {
            let builder = ProtoJSON.Builder(descriptor)
            if (try? builder.merge(value)) != nil { _ = builder.serialized() }
        }
    }

    /// Bearer tokens: any text must be refused cleanly by the verifier (never accepted: no key
    /// signed it).
    static func jwt(_ bytes: [UInt8]) {
        let token = String(decoding: bytes, as: UTF8.self)
        if (try? JWT.verify(token, keys: [fuzzKey], issuer: nil, audience: nil)) != nil {
            fatalError("a token nobody signed was accepted")
        }
        _ = try? BearerAuth.user(authorization: "Bearer " + token, keys: [fuzzKey], issuer: nil, audience: nil)
    }

    static let fuzzKey: JWTKey = try! JWTKey.generate(keyID: "fuzz")

    /// Redis replies (RESP) through hiredis's reader, as the connection reads them.
    static func redis(_ bytes: [UInt8]) {
        guard let reader = redisReaderCreate() else { return }
        defer { redisReaderFree(reader) }
        _ = bytes.withUnsafeBufferPointer { b in
            b.baseAddress!.withMemoryRebound(to: CChar.self, capacity: max(b.count, 1)) {
                redisReaderFeed(reader, $0, b.count)
            }
        }
        for _ in 0..<1000 {
            var reply: UnsafeMutableRawPointer?
            guard redisReaderGetReply(reader, &reply) == REDIS_OK, let reply else { return }
            _ = RedisConnection.value(reply.assumingMemoryBound(to: redisReply.self))
            freeReplyObject(reply)
        }
    }

    /// SMTP replies as the mail client reads them, fed in two pieces.
    static func smtp(_ bytes: [UInt8]) {
        var reader = SMTPReplyReader()
        let half = bytes.count / 2
        for piece in [bytes[..<half], bytes[half...]] {
            reader.feed(piece)
            do throws(SMTPError) {
                while let reply = try reader.next() {
                    precondition((0...999).contains(reply.code), "a reply code out of range")
                }
            } catch { return }
        }
    }

    /// PostgreSQL text results as the services read them: a result built with libpq from the input
    /// (values split at NUL bytes, three columns), read through every typed reader.
    static func postgres(_ bytes: [UInt8]) {
        guard let res = PQmakeEmptyPGresult(nil, PGRES_TUPLES_OK) else { return }
        defer { PQclear(res) }
        let columns: [String] = ["a", "b", "c"]
        let names: [UnsafeMutablePointer<CChar>] = columns.map { (name: String) in strdup(name)! }
        defer { for name in names { free(name) } }
        var attrs = names.map {
            PGresAttDesc(name: $0, tableid: 0, columnid: 0, format: 0, typid: 25, typlen: -1, atttypmod: -1)
        }
        guard PQsetResultAttrs(res, 3, &attrs) == 1 else { return }
        let values = bytes.split(separator: 0, omittingEmptySubsequences: false).prefix(30)
        for (i, v) in values.enumerated() {
            var text = Array(v).map { CChar(bitPattern: $0) }
            _ = PQsetvalue(res, Int32(i / 3), Int32(i % 3), &text, Int32(text.count))
        }
        let result = PostgresResult(res)
        for row in result.rows {
            for column in ["a", "b", "c"] {
                _ = row.int(column)
                _ = row.bool(column)
                _ = row.double(column)
                _ = row.int64(column)
                _ = row.micros(column)
                _ = jsonStringMap(row[column])
                _ = jsonStringList(row[column])
            }
        }
    }

    /// Text fields and tokens clients send to the shop: page tokens, emails, one-line text.
    static func text(_ bytes: [UInt8]) {
        let s = String(decoding: bytes, as: UTF8.self)
        _ = try? PageToken.decode(s, count: 3)
        if (try? Check.email(s)) != nil {
            precondition(
                !s.unicodeScalars.contains { $0.value < 0x20 || $0.value == 0x7F },
                "an email with control characters passed")
        }
        _ = try? Check.text(s, "f", max: 200)
    }
}
