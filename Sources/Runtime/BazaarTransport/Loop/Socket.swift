import Glibc

/// A socket error with the call that failed and `errno`'s text.
public struct SocketError: Error, CustomStringConvertible, Sendable {
    public let call: String
    public let code: Int32
    public var description: String { "\(call): \(String(cString: strerror(code)))" }
    init(_ call: String, _ code: Int32 = errno) {
        self.call = call
        self.code = code
    }
}

/// Thin helpers over the BSD socket calls. The transport is the only owner of file descriptors.
package enum Socket {
    /// Resolves `host:port` to socket addresses (numeric or by name), IPv4 and IPv6.
    static func resolve(host: String, port: Int, passive: Bool = false) throws -> [(family: Int32, addr: [UInt8])] {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_family = AF_UNSPEC
        if passive { hints.ai_flags = AI_PASSIVE }
        var list: UnsafeMutablePointer<addrinfo>?
        let node: String? = host.isEmpty ? nil : host
        let rc = getaddrinfo(node, String(port), &hints, &list)
        guard rc == 0, let first = list else {
            throw SocketError("getaddrinfo(\(host))", rc == EAI_SYSTEM ? errno : EHOSTUNREACH)
        }
        defer { freeaddrinfo(first) }
        var out: [(Int32, [UInt8])] = []
        var p: UnsafeMutablePointer<addrinfo>? = first
        while let ai = p {
            let bytes = UnsafeRawBufferPointer(start: ai.pointee.ai_addr, count: Int(ai.pointee.ai_addrlen))
            out.append((ai.pointee.ai_family, Array(bytes)))
            p = ai.pointee.ai_next
        }
        return out
    }

    static func setNonBlocking(_ fd: Int32) {
        let flags = fcntl(fd, F_GETFL)
        _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK)
    }

    static func setNoDelay(_ fd: Int32) {
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
    }

    /// A non-blocking listening socket. With `reusePort`, every loop binds its own listener to the
    /// same port and the kernel spreads connections among them.
    static func listen(host: String, port: Int, reusePort: Bool, backlog: Int32 = 1024) throws -> Int32 {
        let addrs = try resolve(host: host, port: port, passive: true)
        var lastError = SocketError("bind", EADDRNOTAVAIL)
        for (family, addr) in addrs {
            let fd = socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            if fd < 0 {
                lastError = SocketError("socket")
                continue
            }
            var one: Int32 = 1
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
            if reusePort { setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, socklen_t(MemoryLayout<Int32>.size)) }
            let ok = addr.withUnsafeBytes { raw in
                bind(fd, raw.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t(raw.count)) == 0
            }
            if !ok || Glibc.listen(fd, backlog) != 0 {
                lastError = SocketError(ok ? "listen" : "bind \(host):\(port)")
                close(fd)
                continue
            }
            setNonBlocking(fd)
            return fd
        }
        throw lastError
    }

    /// The port a socket is bound to (for listeners on port 0).
    static func localPort(_ fd: Int32) -> Int {
        var storage = sockaddr_storage()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        return port(of: storage)
    }

    static func port(of storage: sockaddr_storage) -> Int {
        var s = storage
        switch Int32(s.ss_family) {
        case AF_INET:
            return withUnsafePointer(to: &s) {
                $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { Int(UInt16(bigEndian: $0.pointee.sin_port)) }
            }
        case AF_INET6:
            return withUnsafePointer(to: &s) {
                $0.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) {
                    Int(UInt16(bigEndian: $0.pointee.sin6_port))
                }
            }
        default: return 0
        }
    }

    /// `ip:port` of an address, for logs and handlers.
    static func describe(_ storage: sockaddr_storage) -> String {
        var s = storage
        var buf = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN) + 1)
        switch Int32(s.ss_family) {
        case AF_INET:
            withUnsafePointer(to: &s) {
                $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) {
                    var a = $0.pointee.sin_addr
                    _ = inet_ntop(AF_INET, &a, &buf, socklen_t(buf.count))
                }
            }
            return
                "\(String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)):\(port(of: storage))"
        case AF_INET6:
            withUnsafePointer(to: &s) {
                $0.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) {
                    var a = $0.pointee.sin6_addr
                    _ = inet_ntop(AF_INET6, &a, &buf, socklen_t(buf.count))
                }
            }
            return
                "[\(String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))]:\(port(of: storage))"
        default:
            return "unknown"
        }
    }

    enum Accepted {
        case accepted(fd: Int32, peer: String)
        /// Nothing is waiting.
        case none
        /// `accept` failed with this errno.
        case failed(Int32)
    }

    /// Accepts one pending connection, non-blocking.
    static func accept(_ listener: Int32) -> Accepted {
        var storage = sockaddr_storage()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let fd = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.accept(listener, $0, &len)
            }
        }
        if fd < 0 {
            let e = errno
            // A connection that was reset before we took it, or a signal: just try the next.
            if e == EAGAIN || e == EWOULDBLOCK || e == EINTR || e == ECONNABORTED || e == EPROTO { return .none }
            return .failed(e)
        }
        setNonBlocking(fd)
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        setNoDelay(fd)
        return .accepted(fd: fd, peer: describe(storage))
    }

    /// Whether an `accept` error means the process or system ran out of something (descriptors,
    /// buffers, memory), so the pending connection stays queued and retrying at once would spin.
    static func isResourceShortage(_ error: Int32) -> Bool {
        error == EMFILE || error == ENFILE || error == ENOBUFS || error == ENOMEM
    }

    /// The address part of a peer as ``describe(_:)`` writes it (`1.2.3.4:5` -> `1.2.3.4`,
    /// `[::1]:5` -> `::1`), by bytes (it runs per call in telemetry). The one copy the listener,
    /// the gateway and telemetry share.
    package static func host(of peer: String) -> String {
        var bytes = Array(peer.utf8)
        if let colon = bytes.lastIndex(of: 0x3A) { bytes.removeSubrange(colon...) }
        if bytes.first == 0x5B && bytes.last == 0x5D { bytes = Array(bytes.dropFirst().dropLast()) }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Starts a non-blocking connect; the socket becomes writable when it completes.
    static func startConnect(family: Int32, addr: [UInt8]) throws -> Int32 {
        let fd = socket(
            family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        if fd < 0 { throw SocketError("socket") }
        let rc = addr.withUnsafeBytes { raw in
            connect(fd, raw.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t(raw.count))
        }
        if rc != 0 && errno != EINPROGRESS {
            let e = SocketError("connect")
            close(fd)
            throw e
        }
        setNoDelay(fd)
        return fd
    }

    /// The pending error of a socket (after a non-blocking connect).
    static func pendingError(_ fd: Int32) -> Int32 {
        var err: Int32 = 0
        var len = socklen_t(MemoryLayout<Int32>.size)
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len)
        return err
    }
}
