import CBazaarHTTPParser

/// http-parser (Debian's libhttp-parser) as a bytes-in/events-out pump for HTTP/1.x requests.
/// It stops after each complete request, so that requests on a keep-alive connection are
/// answered one at a time and in order; ``resume()`` lets it read the next one.
final class HTTP1Parser {
    struct Head {
        var method: String
        var target: String
        var version: String
        var headers: [(name: String, value: String)]
        var keepAlive: Bool
        /// `Content-Length`, when the request has one.
        var contentLength: UInt64?
    }

    enum Event {
        case head(Head)
        case body([UInt8])
        case end
    }

    struct Failure: Error {
        let status: Int
        let reason: String
    }

    @exclusivity(unchecked) private var parser = http_parser()
    @exclusivity(unchecked) private var settings = http_parser_settings()
    @exclusivity(unchecked) private var events: [Event] = []
    @exclusivity(unchecked) private var url: [UInt8] = []
    @exclusivity(unchecked) private var field: [UInt8] = []
    @exclusivity(unchecked) private var value: [UInt8] = []
    @exclusivity(unchecked) private var headers: [(name: String, value: String)] = []
    @exclusivity(unchecked) private var inValue = false
    @exclusivity(unchecked) private(set) var paused = false

    init() {
        http_parser_init(&parser, HTTP_REQUEST)
        settings.on_url = { p, at, n in
            HTTP1Parser.from(p).url.append(contentsOf: UnsafeRawBufferPointer(start: at, count: n))
            return 0
        }
        settings.on_header_field = { p, at, n in
            let s = HTTP1Parser.from(p)
            if s.inValue { s.finishHeader() }
            s.field.append(contentsOf: UnsafeRawBufferPointer(start: at, count: n))
            return 0
        }
        settings.on_header_value = { p, at, n in
            let s = HTTP1Parser.from(p)
            s.inValue = true
            s.value.append(contentsOf: UnsafeRawBufferPointer(start: at, count: n))
            return 0
        }
        settings.on_headers_complete = { p in
            let s = HTTP1Parser.from(p)
            if s.inValue || !s.field.isEmpty { s.finishHeader() }
            let pp = p!.pointee
            let method = String(cString: http_method_str(http_method(rawValue: pp.method)))
            let hasLength = s.headers.contains { $0.name == "content-length" }
            s.events.append(
                .head(
                    Head(
                        method: method, target: String(decoding: s.url, as: UTF8.self),
                        version: "HTTP/\(pp.http_major).\(pp.http_minor)", headers: s.headers,
                        keepAlive: http_should_keep_alive(p) != 0,
                        contentLength: hasLength ? pp.content_length : nil)))
            return 0
        }
        settings.on_body = { p, at, n in
            HTTP1Parser.from(p).events.append(.body(Array(UnsafeRawBufferPointer(start: at, count: n))))
            return 0
        }
        settings.on_message_complete = { p in
            let s = HTTP1Parser.from(p)
            s.events.append(.end)
            s.url = []
            s.headers = []
            s.paused = true
            http_parser_pause(p, 1)
            return 0
        }
    }

    private static func from(_ p: UnsafeMutablePointer<http_parser>?) -> HTTP1Parser {
        Unmanaged<HTTP1Parser>.fromOpaque(p!.pointee.data).takeUnretainedValue()
    }

    private func finishHeader() {
        headers.append((String(decoding: field, as: UTF8.self).lowercased(), String(decoding: value, as: UTF8.self)))
        field = []
        value = []
        inValue = false
    }

    /// Parses as much of `bytes` as it can; returns how many bytes it used (fewer than given when
    /// a request ended: the rest is the next request's). Throws on malformed input.
    func feed(_ bytes: UnsafeRawBufferPointer) throws(Failure) -> Int {
        if paused || bytes.isEmpty { return 0 }
        parser.data = Unmanaged.passUnretained(self).toOpaque()
        let used = bytes.withMemoryRebound(to: CChar.self) {
            http_parser_execute(&parser, &settings, $0.baseAddress, $0.count)
        }
        let errno = http_errno(rawValue: parser.http_errno)
        if errno != HPE_OK && errno != HPE_PAUSED {
            let why = String(cString: http_errno_description(errno))
            throw Failure(status: errno == HPE_HEADER_OVERFLOW ? 431 : 400, reason: why)
        }
        if parser.upgrade != 0 { throw Failure(status: 400, reason: "protocol upgrades are not supported") }
        return used
    }

    /// After a complete request: read the next one.
    func resume() {
        paused = false
        http_parser_pause(&parser, 0)
    }

    func takeEvents() -> [Event] {
        defer { events = [] }
        return events
    }
}
