import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// An SMTP failure: the server's reply, or the connection's.
public struct SMTPError: Error, CustomStringConvertible, Sendable {
    /// The reply code (e.g. 550), 0 for connection problems.
    public let code: Int
    public let message: String
    /// 4xx replies and connection failures may succeed later; 5xx will not.
    public var isTransient: Bool { code == 0 || (400..<500).contains(code) }
    public var description: String { code == 0 ? "SMTP: \(message)" : "SMTP \(code): \(message)" }
}

/// One email.
public struct EmailMessage: Sendable {
    public var from: String
    public var to: String
    public var subject: String
    public var body: String
    /// The Message-ID (without angle brackets): stable per notification, so a receiver can drop a
    /// resend after a crash.
    public var messageID: String

    public init(from: String, to: String, subject: String, body: String, messageID: String) {
        self.from = from
        self.to = to
        self.subject = subject
        self.body = body
        self.messageID = messageID
    }
}

/// Sends mail over SMTP (RFC 5321) to a relay: EHLO, MAIL FROM, RCPT TO, DATA, QUIT, one
/// connection per message. Plain TCP only, for a relay on the local network or a sidecar; it does
/// not do STARTTLS or AUTH.
///
/// Mail is low-volume and may wait, so the dialogue runs with blocking socket calls (bounded by
/// `timeout`) on a thread of its own rather than on an event loop.
public struct SMTPClient: Sendable {
    public let host: String
    public let port: Int
    public let heloName: String
    public let timeout: Duration

    public init(host: String, port: Int, heloName: String = "bazaar.local", timeout: Duration = .seconds(10)) {
        self.host = host
        self.port = port
        self.heloName = heloName
        self.timeout = timeout
    }

    public func send(_ message: EmailMessage) async throws {
        let client = self
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            let thread = Thread { continuation.resume(with: Result { try client.sendBlocking(message) }) }
            thread.start()
        }
    }

    /// Header-safe text: no CR or LF, so no header can be injected through a subject or address.
    static func headerSafe(_ s: String) -> String {
        String(s.unicodeScalars.filter { $0 != "\r" && $0 != "\n" }.map(Character.init))
    }

    /// The DATA section: headers, a blank line, the body with CRLF line ends and leading dots
    /// doubled (RFC 5321 4.5.2), ended by a line with a single dot.
    static func data(_ m: EmailMessage, date: Date = Date()) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss '+0000'"
        let subject = headerSafe(m.subject)
        // Non-ASCII subjects as an RFC 2047 encoded word.
        let encodedSubject =
            subject.allSatisfy(\.isASCII) ? subject : "=?UTF-8?B?\(Data(subject.utf8).base64EncodedString())?="
        var lines = [
            "From: \(headerSafe(m.from))", "To: \(headerSafe(m.to))", "Subject: \(encodedSubject)",
            "Date: \(formatter.string(from: date))", "Message-ID: <\(headerSafe(m.messageID))>",
            "MIME-Version: 1.0", "Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: 8bit", "",
        ]
        for line in m.body.replacingOccurrences(of: "\r\n", with: "\n").split(
            separator: "\n", omittingEmptySubsequences: false)
        {
            lines.append(line.hasPrefix(".") ? "." + line : String(line))
        }
        return lines.joined(separator: "\r\n") + "\r\n.\r\n"
    }

    /// Whether an address can go into an SMTP command as it is. Stripping a line break out of one
    /// would join its halves into another address (another customer's), so such an address is
    /// refused instead, as a permanent failure.
    static func isSendable(_ address: String) -> Bool {
        !address.isEmpty && address.utf8.count <= 254
            && address.unicodeScalars.allSatisfy { $0.value > 0x20 && $0.value != 0x7F && $0 != "<" && $0 != ">" }
    }

    func sendBlocking(_ m: EmailMessage) throws {
        for (role, address) in [("sender", m.from), ("recipient", m.to)] where !Self.isSendable(address) {
            throw SMTPError(
                code: 553, message: "the \(role) address holds spaces, control characters or angle brackets; not sent")
        }
        let conn = try Connection(host: host, port: port, timeout: timeout)
        defer { conn.close() }
        try conn.expect(220)
        try conn.command("EHLO \(Self.headerSafe(heloName))", expect: 250)
        try conn.command("MAIL FROM:<\(Self.headerSafe(m.from))>", expect: 250)
        try conn.command("RCPT TO:<\(Self.headerSafe(m.to))>", expect: 250, alsoOK: 251)
        try conn.command("DATA", expect: 354)
        try conn.write(Self.data(m))
        try conn.expect(250)
        try? conn.command("QUIT", expect: 221)
    }

    /// A blocking TCP connection with read and write timeouts.
    final class Connection {
        let fd: Int32
        var buffer: [UInt8] = []

        init(host: String, port: Int, timeout: Duration) throws {
            var hints = addrinfo()
            hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
            var result: UnsafeMutablePointer<addrinfo>?
            guard getaddrinfo(host, String(port), &hints, &result) == 0, let first = result else {
                throw SMTPError(code: 0, message: "cannot resolve \(host)")
            }
            defer { freeaddrinfo(result) }
            var tv = timeval(tv_sec: Int(timeout.components.seconds), tv_usec: 0)
            var ai: UnsafeMutablePointer<addrinfo>? = first
            var connected: Int32 = -1
            while let a = ai, connected < 0 {
                let s = socket(a.pointee.ai_family, a.pointee.ai_socktype, a.pointee.ai_protocol)
                if s >= 0 {
                    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
                    setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
                    if Glibc.connect(s, a.pointee.ai_addr, a.pointee.ai_addrlen) == 0 {
                        connected = s
                    } else {
                        Glibc.close(s)
                    }
                }
                ai = a.pointee.ai_next
            }
            guard connected >= 0 else { throw SMTPError(code: 0, message: "cannot connect to \(host):\(port)") }
            fd = connected
        }

        func close() { Glibc.close(fd) }

        func write(_ text: String) throws {
            var bytes = Array(text.utf8)[...]
            while !bytes.isEmpty {
                let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                guard n > 0 else { throw SMTPError(code: 0, message: "connection lost while sending") }
                bytes = bytes.dropFirst(n)
            }
        }

        func command(_ line: String, expect code: Int, alsoOK: Int? = nil) throws {
            try write(line + "\r\n")
            try expect(code, alsoOK: alsoOK)
        }

        var replies = SMTPReplyReader()

        /// Reads one reply and checks its code.
        func expect(_ code: Int, alsoOK: Int? = nil) throws {
            while true {
                if let reply = try replies.next() {
                    guard reply.code == code || reply.code == alsoOK else {
                        throw SMTPError(code: reply.code, message: reply.text)
                    }
                    return
                }
                var chunk = [UInt8](repeating: 0, count: 1024)
                let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                guard n > 0 else {
                    throw SMTPError(
                        code: 0,
                        message: n == 0 ? "the server closed the connection" : "timed out waiting for the server")
                }
                replies.feed(chunk[..<n])
            }
        }
    }
}

/// SMTP replies from bytes, without I/O: lines end with LF (CR LF or LF), `250-...` continues a
/// reply and `250 ...` (or a bare `250`) ends it. Bounded: a line over 4,096 bytes or a reply over
/// 100 lines is an error, as is a line that does not start with a three-digit code.
public struct SMTPReplyReader: Sendable {
    private var buffer: [UInt8] = []
    private var lines: [String] = []

    public init() {}

    public mutating func feed<Bytes: Sequence>(_ bytes: Bytes) where Bytes.Element == UInt8 { buffer += bytes }

    /// The next complete reply, `nil` until more bytes arrive.
    public mutating func next() throws(SMTPError) -> (code: Int, text: String)? {
        while let i = buffer.firstIndex(of: UInt8(ascii: "\n")) {
            var raw = Array(buffer[..<i])
            buffer.removeFirst(i + 1)
            if raw.last == UInt8(ascii: "\r") { raw.removeLast() }
            let line = String(decoding: raw, as: UTF8.self)
            let digits = raw.prefix(3)
            guard digits.count == 3, digits.allSatisfy({ (48...57).contains($0) }),
                let code = Int(String(decoding: digits, as: UTF8.self))
            else {
                throw SMTPError(code: 0, message: "malformed reply: \(line.prefix(80))")
            }
            lines.append(String(line.dropFirst(4)))
            guard lines.count <= 100 else { throw SMTPError(code: 0, message: "a reply of more than 100 lines") }
            if raw.count == 3 || raw[3] == UInt8(ascii: " ") {
                defer { lines = [] }
                return (code, lines.joined(separator: " "))
            }
        }
        guard buffer.count <= 4096 else { throw SMTPError(code: 0, message: "reply line too long") }
        return nil
    }
}
