import Foundation
import Glibc
import Synchronization
import TestSupport
import Testing

@testable import BazaarTransport

/// `/slow` requests: how many arrived, whether the test lets them answer yet (it does once their
/// clients have gone), and how many answered.
struct SlowRequests: Sendable {
    var arrived = 0
    var released = false
    var answered = 0
}
let slowRequests = Watched(SlowRequests())

/// Echoes what it got: method, target, version, a header and the body, as text.
struct EchoResponder: HTTPResponder {
    func respond(to request: HTTPRequest, writer: HTTPResponseWriter) async {
        if request.path == "/stream" {
            // Chunked on HTTP/1.1, DATA frames on HTTP/2.
            writer.writeHead(status: 200, headers: [("content-type", "text/plain")])
            for n in 1...3 {
                writer.writeBody(Array("part \(n)\n".utf8))
                try? await Task.sleep(for: .milliseconds(10))
            }
            writer.end(trailers: [("x-done", "yes")])
            return
        }
        if request.path == "/forget" { return }  // the server must still answer
        if request.path == "/split" {  // a header value that tries to start a header of its own
            return writer.respond(status: 200, headers: [("x-value", "a\r\nx-evil: 1\nx-evil2: 2")], body: [])
        }
        if request.path == "/slow" {
            slowRequests.update { $0.arrived += 1 }
            await slowRequests.wait { $0.released }
        }
        let text =
            "\(request.method) \(request.target) \(request.version) x-test=\(request.header("X-Test") ?? "-") body=\(String(decoding: request.body, as: UTF8.self))"
        writer.respond(
            status: request.path == "/created" ? 201 : 200, headers: [("content-type", "text/plain")],
            body: Array(text.utf8))
        if request.path == "/slow" { slowRequests.update { $0.answered += 1 } }
    }
}

/// The front door against real clients: curl (with nghttp2 and OpenSSL) for HTTP/1.1, h2c and
/// HTTPS with either protocol; raw sockets for malformed requests.
@Suite(.serialized, .timeLimit(.minutes(3))) struct HTTPServerTests {
    static func curl(_ args: [String]) throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/curl")
        p.arguments = ["-sS", "--max-time", "10"] + args
        let out = Pipe()
        p.standardOutput = out
        p.standardError = out
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return String(decoding: data, as: UTF8.self)
    }

    static func withServer(
        tls: TLSConfiguration? = nil, maxBody: Int = 1 << 20, _ body: @escaping @Sendable (Int) async throws -> Void
    ) async throws {
        var config = HTTPServerConfiguration(host: "127.0.0.1", port: 0, tls: tls)
        config.loopCount = 1
        config.maxBodySize = maxBody
        let server = try HTTPServer(configuration: config, responder: EchoResponder())
        let port = Watched(0)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await server.run { p in port.update { $0 = p } } }
            await port.wait { $0 != 0 }
            try await body(port.withLock { $0 })
            server.shutdown()
            try await group.waitForAll()
        }
    }

    @Test func http1KeepAliveChunkedAndH2c() async throws {
        try await Self.withServer { port in
            let base = "http://127.0.0.1:\(port)"
            // Two requests on one connection (curl reuses it), and a chunked request body.
            let two = try Self.curl([
                "-H", "X-Test: a", "\(base)/one?x=1", "\(base)/two", "-w", " [%{http_code} %{num_connects}]\n",
            ])
            #expect(two.contains("GET /one?x=1 HTTP/1.1 x-test=a body= [200 1]"))
            #expect(two.contains("GET /two HTTP/1.1 x-test=a body= [200 0]"))
            let chunked = try Self.curl([
                "-H", "Transfer-Encoding: chunked", "--data-binary", "hello", "\(base)/created", "-w", " %{http_code}",
            ])
            #expect(chunked == "POST /created HTTP/1.1 x-test=- body=hello 201")
            let streamed = try Self.curl(["-i", "\(base)/stream"])
            #expect(
                streamed.lowercased().contains("transfer-encoding: chunked")
                    && streamed.contains("part 1\npart 2\npart 3\n"))
            let h2c = try Self.curl(["--http2-prior-knowledge", "--data", "x=y", "\(base)/p", "-w", " %{http_version}"])
            #expect(h2c == "POST /p HTTP/2 x-test=- body=x=y 2")
            let forgot = try Self.curl(["\(base)/forget", "-w", "%{http_code}", "-o", "/dev/null"])
            #expect(forgot == "500")
            // Line breaks never leave a header value (a CRLF pair is one Swift Character, which a
            // filter on "\r" and "\n" let through).
            let split = try Self.curl(["-i", "\(base)/split"])
            #expect(split.contains("x-value: ax-evil: 1x-evil2: 2"), "\(split)")
            #expect(!split.lowercased().contains("\nx-evil"), "\(split)")
        }
    }

    @Test func tlsWithALPN() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("http-tls-\(UUID().uuidString)").path
        _ = try DevelopmentPKI(directory: dir).issue(services: ["gateway"])
        let tls = TLSConfiguration.edge(
            certificateChainFile: "\(dir)/gateway.pem", privateKeyFile: "\(dir)/gateway-key.pem")
        try await Self.withServer(tls: tls) { port in
            let url = "https://127.0.0.1:\(port)/secure"
            let h2 = try Self.curl(["--cacert", "\(dir)/ca.pem", url, "-w", " %{http_version}"])
            #expect(h2 == "GET /secure HTTP/2 x-test=- body= 2")
            let h1 = try Self.curl(["--http1.1", "--cacert", "\(dir)/ca.pem", url, "-w", " %{http_version}"])
            #expect(h1 == "GET /secure HTTP/1.1 x-test=- body= 1.1")
        }
    }

    static func raw(_ port: Int, _ request: String) throws -> String {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(port).bigEndian
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var tv = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        _ = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        _ = Array(request.utf8).withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = recv(fd, &buf, buf.count, 0)
            if n <= 0 { break }
            out += buf[..<n]
        }
        return String(decoding: out, as: UTF8.self)
    }

    @Test func malformedAndOversizedRequestsFailAlone() async throws {
        try await Self.withServer(maxBody: 16) { port in
            #expect(try Self.raw(port, "GARBAGE\r\n\r\n").hasPrefix("HTTP/1.1 400 "))
            #expect(
                try Self.raw(port, "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999\r\n\r\n").hasPrefix(
                    "HTTP/1.1 413 "))
            let big = try Self.curl([
                "--data-binary", String(repeating: "x", count: 100), "http://127.0.0.1:\(port)/x", "-w",
                " %{http_code}",
            ])
            #expect(big.hasSuffix(" 413"))
            let bigH2 = try Self.curl([
                "--http2-prior-knowledge", "--data-binary", String(repeating: "x", count: 100),
                "http://127.0.0.1:\(port)/x", "-w", " %{http_code}",
            ])
            #expect(bigH2.hasSuffix(" 413"))
            // Pipelined requests are answered in order; the server still serves afterwards.
            let pipelined = try Self.raw(
                port, "GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            #expect(pipelined.range(of: "GET /a")!.lowerBound < pipelined.range(of: "GET /b")!.lowerBound)
            #expect(try Self.curl(["http://127.0.0.1:\(port)/ok", "-w", " %{http_code}"]).hasSuffix(" 200"))
        }
    }

    /// Regression: a responder answering after its client disconnected wrote through a released
    /// connection (a crash under wrk, whose connections close at the end of a run).
    @Test func answersAfterTheClientLeftAreDropped() async throws {
        try await Self.withServer { port in
            for (n, h2) in [false, true].enumerated() {
                let p = Process()
                p.executableURL = URL(fileURLWithPath: "/usr/bin/curl")
                p.arguments = ["-sS"] + (h2 ? ["--http2-prior-knowledge"] : []) + ["http://127.0.0.1:\(port)/slow"]
                p.standardOutput = FileHandle.nullDevice
                p.standardError = FileHandle.nullDevice
                try p.run()
                // The request is in the responder's hands; then its client goes.
                await slowRequests.wait { $0.arrived == n + 1 }
                // SIGKILL: children inherit the test runner's blocked signals, SIGTERM among them.
                kill(p.processIdentifier, SIGKILL)
                p.waitUntilExit()
            }
            // Both clients have gone: now the responders answer, into closed connections.
            slowRequests.update { $0.released = true }
            await slowRequests.wait { $0.answered == 2 }
            #expect(try Self.curl(["http://127.0.0.1:\(port)/after", "-w", " %{http_code}"]).hasSuffix(" 200"))
        }
    }
}
