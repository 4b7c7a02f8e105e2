import CBazaarNghttp2
import Glibc

/// A header field as it crosses HTTP/2: raw bytes, because values may be any octets.
typealias HeaderField = (name: String, value: String)

/// What the peer did, as the session reports it after ``HTTP2Session/receive(_:)``.
enum HTTP2Event {
    /// A complete header block: request or response headers, or trailers.
    case headers(stream: Int32, fields: [HeaderField], endStream: Bool)
    case data(stream: Int32, bytes: [UInt8], endStream: Bool)
    /// The stream is gone; `errorCode` is non-zero when it was reset.
    case streamClosed(stream: Int32, errorCode: UInt32)
    case goAway(lastStream: Int32, errorCode: UInt32)
    /// A PING that is not an ACK (nghttp2 answers it itself).
    case ping
    case pingAck
}

/// nghttp2 as a bytes-in/bytes-out pump: ``receive(_:)`` takes bytes from the peer and returns
/// events; ``send(into:)`` appends the bytes to write. The session owns per-stream outbound
/// buffers, so callers queue DATA and trailers and nghttp2 pulls them as flow control allows.
/// Touch it only on its connection's loop thread.
final class HTTP2Session {
    /// What a stream has queued to send. A class so that the table holds it by reference and
    /// appending never copies the buffer.
    final class Outbound {
        @exclusivity(unchecked) var buffer: [UInt8] = []
        @exclusivity(unchecked) var offset = 0
        @exclusivity(unchecked) var ended = false
        @exclusivity(unchecked) var trailers: [HeaderField]?
        @exclusivity(unchecked) var trailersPrefix: HeaderBlock?
        @exclusivity(unchecked) var deferred = false
        var pending: Int { buffer.count - offset }
    }

    @exclusivity(unchecked) private var session: OpaquePointer!
    @exclusivity(unchecked) private var events: [HTTP2Event] = []
    /// The header block being received. HTTP/2 forbids interleaving header blocks on a
    /// connection (HEADERS + CONTINUATION are contiguous), so one buffer suffices.
    @exclusivity(unchecked) private var block: [HeaderField] = []
    @exclusivity(unchecked) private var blockBytes = 0
    @exclusivity(unchecked) private var blockStream: Int32 = 0
    @exclusivity(unchecked) private(set) var outbound = StreamMap<Outbound>()
    let isServer: Bool
    let settings: HTTP2Settings
    /// More values to intern (a server's method paths).
    let values: InternTable?
    /// Set when the peer broke the protocol badly enough that the connection must end.
    @exclusivity(unchecked) private(set) var fatalError: String?

    init(server: Bool, settings: HTTP2Settings, values: InternTable? = nil) {
        self.isServer = server
        self.settings = settings
        self.values = values
        var cbs: OpaquePointer?
        nghttp2_session_callbacks_new(&cbs)
        defer { nghttp2_session_callbacks_del(cbs) }
        nghttp2_session_callbacks_set_on_begin_headers_callback(cbs) { _, frame, user in
            let s = HTTP2Session.from(user)
            s.blockStream = frame!.pointee.hd.stream_id
            s.block.removeAll(keepingCapacity: true)
            s.blockBytes = 0
            return 0
        }
        nghttp2_session_callbacks_set_on_header_callback(cbs) { _, frame, name, namelen, value, valuelen, _, user in
            let s = HTTP2Session.from(user)
            s.blockBytes += namelen + valuelen + 32
            // Over the advertised header-list limit: reset this stream only.
            if s.blockBytes > Int(s.settings.maxHeaderListSize) {
                return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE.rawValue
            }
            let nameBytes = UnsafeBufferPointer(start: name, count: namelen)
            let valueBytes = UnsafeBufferPointer(start: value, count: valuelen)
            let n = HeaderInterning.name(nameBytes) ?? String(decoding: nameBytes, as: UTF8.self)
            let v =
                HeaderInterning.value(valueBytes) ?? s.values?.lookup(valueBytes)
                ?? String(decoding: valueBytes, as: UTF8.self)
            s.block.append((n, v))
            return 0
        }
        nghttp2_session_callbacks_set_on_frame_recv_callback(cbs) { _, frame, user in
            HTTP2Session.from(user).frameReceived(frame!)
            return 0
        }
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs) { _, _, id, data, len, user in
            let s = HTTP2Session.from(user)
            s.events.append(
                .data(stream: id, bytes: Array(UnsafeBufferPointer(start: data, count: len)), endStream: false))
            return 0
        }
        nghttp2_session_callbacks_set_on_stream_close_callback(cbs) { _, id, code, user in
            let s = HTTP2Session.from(user)
            s.outbound[id] = nil
            s.events.append(.streamClosed(stream: id, errorCode: code))
            return 0
        }

        var opt: OpaquePointer?
        nghttp2_option_new(&opt)
        defer { nghttp2_option_del(opt) }
        nghttp2_option_set_max_continuations(opt, 8)
        nghttp2_option_set_max_send_header_block_length(opt, 64 << 10)
        nghttp2_option_set_no_closed_streams(opt, 1)
        // Credit goes back as readers consume (InboundCredit), not on receipt.
        nghttp2_option_set_no_auto_window_update(opt, 1)
        var s: OpaquePointer?
        let me = Unmanaged.passUnretained(self).toOpaque()
        if server {
            nghttp2_session_server_new2(&s, cbs, me, opt)
        } else {
            nghttp2_session_client_new2(&s, cbs, me, opt)
        }
        session = s

        var iv = [
            nghttp2_settings_entry(
                settings_id: Int32(NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS.rawValue),
                value: settings.maxConcurrentStreams),
            nghttp2_settings_entry(
                settings_id: Int32(NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE.rawValue),
                value: UInt32(settings.streamWindowSize)),
            nghttp2_settings_entry(
                settings_id: Int32(NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE.rawValue), value: settings.maxHeaderListSize),
            nghttp2_settings_entry(
                settings_id: Int32(NGHTTP2_SETTINGS_MAX_FRAME_SIZE.rawValue), value: settings.maxFrameSize),
        ]
        if !server {
            iv.append(nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_ENABLE_PUSH.rawValue), value: 0))
        }
        nghttp2_submit_settings(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), &iv, iv.count)
        nghttp2_session_set_local_window_size(
            session, UInt8(NGHTTP2_FLAG_NONE.rawValue), 0, settings.connectionWindowSize)
    }

    deinit { nghttp2_session_del(session) }

    private static func from(_ user: UnsafeMutableRawPointer?) -> HTTP2Session {
        Unmanaged<HTTP2Session>.fromOpaque(user!).takeUnretainedValue()
    }

    /// Whether a whole, valid frame has come from the peer (for a client, nghttp2 checks that the
    /// first is the server's SETTINGS): the peer speaks HTTP/2.
    @exclusivity(unchecked) private(set) var receivedFrame = false

    private func frameReceived(_ frame: UnsafePointer<nghttp2_frame>) {
        receivedFrame = true
        let hd = frame.pointee.hd
        let endStream = hd.flags & UInt8(NGHTTP2_FLAG_END_STREAM.rawValue) != 0
        switch Int(hd.type) {
        case Int(NGHTTP2_HEADERS.rawValue):
            let fields = hd.stream_id == blockStream ? block : []
            block.removeAll(keepingCapacity: true)
            events.append(.headers(stream: hd.stream_id, fields: fields, endStream: endStream))
        case Int(NGHTTP2_DATA.rawValue):
            if endStream { events.append(.data(stream: hd.stream_id, bytes: [], endStream: true)) }
        case Int(NGHTTP2_GOAWAY.rawValue):
            events.append(
                .goAway(lastStream: frame.pointee.goaway.last_stream_id, errorCode: frame.pointee.goaway.error_code))
        case Int(NGHTTP2_PING.rawValue):
            events.append(hd.flags & UInt8(NGHTTP2_FLAG_ACK.rawValue) != 0 ? .pingAck : .ping)
        default:
            break
        }
    }

    /// Feeds bytes from the peer. Returns what happened, or `nil` with ``fatalError`` set when the
    /// connection must be closed (nghttp2 has then queued a GOAWAY to send).
    func receive(_ bytes: UnsafeRawBufferPointer) -> [HTTP2Event]? {
        let rc = nghttp2_session_mem_recv(session, bytes.baseAddress?.assumingMemoryBound(to: UInt8.self), bytes.count)
        if rc < 0 {
            fatalError = String(cString: nghttp2_strerror(Int32(rc)))
            return nil
        }
        return takeEvents()
    }

    /// Events raised outside ``receive(_:)``: sending END_STREAM or RST_STREAM closes streams too,
    /// and their close must reach the connection (or it keeps every finished call forever).
    func takeEvents() -> [HTTP2Event] {
        guard !events.isEmpty else { return [] }
        let taken = events
        events = []
        return taken
    }

    /// Appends the frames nghttp2 wants to send. Returns `false` on a fatal session error.
    @discardableResult
    func send(into out: inout [UInt8]) -> Bool {
        while true {
            var ptr: UnsafePointer<UInt8>?
            let n = nghttp2_session_mem_send(session, &ptr)
            if n < 0 {
                fatalError = String(cString: nghttp2_strerror(Int32(n)))
                return false
            }
            if n == 0 { return true }
            out.append(contentsOf: UnsafeBufferPointer(start: ptr, count: n))
        }
    }

    /// Whether nghttp2 still wants to read or write; when neither, the connection may close.
    var isAlive: Bool { nghttp2_session_want_read(session) != 0 || nghttp2_session_want_write(session) != 0 }

    var hasPendingOutput: Bool { nghttp2_session_want_write(session) != 0 }

    // MARK: submitting

    private func withNV<R>(
        _ fields: [HeaderField], prefix: HeaderBlock? = nil, _ body: (UnsafePointer<nghttp2_nv>, Int) -> R
    ) -> R {
        if let prefix {
            if fields.isEmpty { return body(prefix.nva, prefix.count) }
            return withNV(fields) { extra, n in
                let all = UnsafeMutablePointer<nghttp2_nv>.allocate(capacity: prefix.count + n)
                defer { all.deallocate() }
                all.initialize(from: prefix.nva, count: prefix.count)
                (all + prefix.count).initialize(from: extra, count: n)
                return body(all, prefix.count + n)
            }
        }
        var storage: [UInt8] = []
        storage.reserveCapacity(fields.reduce(0) { $0 + $1.name.utf8.count + $1.value.utf8.count })
        var spans: [(Int, Int, Int, Int)] = []
        for f in fields {
            let n0 = storage.count
            storage.append(contentsOf: f.name.utf8)
            let v0 = storage.count
            storage.append(contentsOf: f.value.utf8)
            spans.append((n0, v0 - n0, v0, storage.count - v0))
        }
        return storage.withUnsafeMutableBufferPointer { buf in
            let base = buf.baseAddress ?? UnsafeMutablePointer<UInt8>.allocate(capacity: 0)
            let nva = spans.map { s in
                nghttp2_nv(
                    name: base + s.0, value: base + s.2, namelen: s.1, valuelen: s.3,
                    flags: UInt8(NGHTTP2_NV_FLAG_NONE.rawValue))
            }
            return nva.withUnsafeBufferPointer { body($0.baseAddress!, $0.count) }
        }
    }

    private static let readCallback: nghttp2_data_source_read_callback = { _, id, buf, length, flags, _, user in
        HTTP2Session.from(user).readOutbound(stream: id, into: buf!, length: length, flags: flags!)
    }

    private func readOutbound(
        stream id: Int32, into buf: UnsafeMutablePointer<UInt8>, length: Int,
        flags: UnsafeMutablePointer<UInt32>
    ) -> Int {
        guard let o = outbound[id] else {
            flags.pointee |= NGHTTP2_DATA_FLAG_EOF.rawValue
            return 0
        }
        let n = min(length, o.pending)
        if n > 0 {
            o.buffer.withUnsafeBufferPointer { src in buf.update(from: src.baseAddress! + o.offset, count: n) }
            o.offset += n
            if o.offset == o.buffer.count {
                o.buffer.removeAll(keepingCapacity: true)
                o.offset = 0
            } else if o.offset > 64 << 10 {
                o.buffer.removeFirst(o.offset)
                o.offset = 0
            }
        }
        if o.pending == 0 {
            if o.ended {
                flags.pointee |= NGHTTP2_DATA_FLAG_EOF.rawValue
                if o.trailers != nil || o.trailersPrefix != nil {
                    flags.pointee |= NGHTTP2_DATA_FLAG_NO_END_STREAM.rawValue
                    withNV(o.trailers ?? [], prefix: o.trailersPrefix) {
                        _ = nghttp2_submit_trailer(session, id, $0, $1)
                    }
                }
                return n
            }
            if n == 0 {
                o.deferred = true
                return Int(NGHTTP2_ERR_DEFERRED.rawValue)
            }
        }
        return n
    }

    private func dataProvider() -> nghttp2_data_provider {
        nghttp2_data_provider(source: nghttp2_data_source(ptr: nil), read_callback: Self.readCallback)
    }

    /// Server: sends response headers; DATA follows from ``enqueue(stream:_:end:trailers:)``.
    func submitResponse(stream id: Int32, headers: [HeaderField], prefix: HeaderBlock? = nil) {
        outbound[id] = Outbound()
        var prd = dataProvider()
        withNV(headers, prefix: prefix) { _ = nghttp2_submit_response(session, id, $0, $1, &prd) }
    }

    /// Server: a response that is a single HEADERS frame with END_STREAM (gRPC's Trailers-Only).
    func submitTrailersOnly(stream id: Int32, headers: [HeaderField], prefix: HeaderBlock? = nil) {
        withNV(headers, prefix: prefix) { _ = nghttp2_submit_response(session, id, $0, $1, nil) }
    }

    /// Client: opens a stream. Returns its id, or a negative nghttp2 error.
    func submitRequest(headers: [HeaderField]) -> Int32 {
        var prd = dataProvider()
        let id = withNV(headers) { nghttp2_submit_request(session, nil, $0, $1, &prd, nil) }
        if id > 0 { outbound[id] = Outbound() }
        return id
    }

    /// Queues DATA bytes, and with `end` the end of the stream (after `trailers`, if any).
    func enqueue(
        stream id: Int32, _ bytes: [UInt8], end: Bool = false, trailers: [HeaderField]? = nil,
        trailersPrefix: HeaderBlock? = nil
    ) {
        guard let o = outbound[id] else { return }
        if o.buffer.isEmpty { o.buffer = bytes } else { o.buffer.append(contentsOf: bytes) }
        if end {
            o.ended = true
            o.trailers = trailers
            o.trailersPrefix = trailersPrefix
        }
        let resume = o.deferred
        o.deferred = false
        if resume { nghttp2_session_resume_data(session, id) }
    }

    /// Bytes queued on a stream and not yet taken by nghttp2 (for back-pressure).
    func pendingBytes(stream id: Int32) -> Int { outbound[id]?.pending ?? 0 }

    func reset(stream id: Int32, code: UInt32 = NGHTTP2_CANCEL.rawValue) {
        nghttp2_submit_rst_stream(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), id, code)
    }

    /// Tells nghttp2 the application took `count` bytes, reopening the windows (inbound back-pressure).
    func consume(stream id: Int32, _ count: Int) {
        nghttp2_session_consume(session, id, count)
    }

    func ping() {
        nghttp2_submit_ping(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), nil)
    }

    /// Sends GOAWAY. With `graceful`, first the "shutdown notice" (max stream id), so that streams
    /// already in flight are still accepted; ``finishGoAway(code:)`` then names the last stream.
    func goAway(code: UInt32 = NGHTTP2_NO_ERROR.rawValue, debug: String = "", graceful: Bool) {
        if graceful && isServer {
            nghttp2_submit_shutdown_notice(session)
        } else {
            finishGoAway(code: code, debug: debug)
        }
    }

    func finishGoAway(code: UInt32 = NGHTTP2_NO_ERROR.rawValue, debug: String = "") {
        let last = nghttp2_session_get_last_proc_stream_id(session)
        var d = Array(debug.utf8)
        nghttp2_submit_goaway(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), last, code, &d, d.count)
    }
}

/// A header list encoded once for nghttp2 and reused for every response (`:status 200`,
/// `content-type`, `grpc-status: 0`...), so the hot path builds no header arrays.
final class HeaderBlock: @unchecked Sendable {
    let nva: UnsafeMutablePointer<nghttp2_nv>
    let count: Int
    private let storage: UnsafeMutablePointer<UInt8>

    init(_ fields: [HeaderField]) {
        let total = fields.reduce(0) { $0 + $1.name.utf8.count + $1.value.utf8.count }
        storage = .allocate(capacity: max(1, total))
        nva = .allocate(capacity: max(1, fields.count))
        count = fields.count
        var p = storage
        for (i, f) in fields.enumerated() {
            let n = Array(f.name.utf8)
            let v = Array(f.value.utf8)
            p.initialize(from: n, count: n.count)
            (p + n.count).initialize(from: v, count: v.count)
            nva[i] = nghttp2_nv(
                name: p, value: p + n.count, namelen: n.count, valuelen: v.count,
                flags: UInt8(NGHTTP2_NV_FLAG_NO_COPY_NAME.rawValue | NGHTTP2_NV_FLAG_NO_COPY_VALUE.rawValue))
            p += n.count + v.count
        }
    }

    deinit {
        storage.deallocate()
        nva.deallocate()
    }

    static let grpcResponse = HeaderBlock([
        (":status", "200"), ("content-type", "application/grpc"),
        ("grpc-accept-encoding", "gzip,identity"),
    ])
    static let grpcResponseGzip = HeaderBlock([
        (":status", "200"), ("content-type", "application/grpc"),
        ("grpc-accept-encoding", "gzip,identity"), ("grpc-encoding", "gzip"),
    ])
    static let trailersOnlyPrefix = HeaderBlock([(":status", "200"), ("content-type", "application/grpc")])
    static let statusOK = HeaderBlock([("grpc-status", "0")])
}

/// A set of strings looked up by their bytes without building a `String`: header names and
/// values that every call carries, and a server's method paths.
struct InternTable: Sendable {
    /// Candidates bucketed by length, so a lookup compares bytes of same-length entries only.
    private let buckets: [[(bytes: [UInt8], string: String)]]

    init(_ strings: [String]) {
        var t = [[(bytes: [UInt8], string: String)]](repeating: [], count: (strings.map(\.utf8.count).max() ?? 0) + 1)
        for s in strings { t[s.utf8.count].append((Array(s.utf8), s)) }
        buckets = t
    }

    func lookup(_ b: UnsafeBufferPointer<UInt8>) -> String? {
        guard b.count > 0, b.count < buckets.count, let base = b.baseAddress else { return nil }
        let first = base[0]
        let last = base[b.count - 1]
        for candidate in buckets[b.count] where candidate.bytes[0] == first && candidate.bytes[b.count - 1] == last {
            if candidate.bytes.withUnsafeBufferPointer({ memcmp($0.baseAddress!, base, b.count) }) == 0 {
                return candidate.string
            }
        }
        return nil
    }
}

/// The header names and values every gRPC request and response carries, as constant strings:
/// receiving them then builds no new `String`s.
enum HeaderInterning {
    static let names = InternTable([
        ":method", ":path", ":scheme", ":authority", ":status", "content-type", "te", "user-agent",
        "grpc-timeout", "grpc-encoding", "grpc-accept-encoding", "grpc-status", "grpc-message", "accept-encoding",
    ])
    static let values = InternTable([
        "POST", "http", "https", "application/grpc", "trailers", "200", "0", "gzip", "identity", "gzip,identity",
        "identity,deflate,gzip",
    ])

    static func name(_ b: UnsafeBufferPointer<UInt8>) -> String? { names.lookup(b) }
    static func value(_ b: UnsafeBufferPointer<UInt8>) -> String? { values.lookup(b) }
}
