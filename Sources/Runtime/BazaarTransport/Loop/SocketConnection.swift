import Glibc

/// One socket on one loop: reads bytes, runs them through TLS when there is a TLS engine, hands
/// plaintext to the subclass, and writes what the subclass produces. Server and client HTTP/2
/// connections build on it; nothing else in Bazaar reads or writes a socket.
class SocketConnection: @unchecked Sendable {
    let loop: EventLoop
    let fd: Int32
    let tls: TLSEngine?
    let peerAddress: String
    @exclusivity(unchecked) private var watcher: IOWatcher!
    @exclusivity(unchecked) private var outBuffer: [UInt8] = []
    @exclusivity(unchecked) private var outOffset = 0
    @exclusivity(unchecked) private var flushScheduled = false
    @exclusivity(unchecked) private(set) var isClosed = false
    @exclusivity(unchecked) private(set) var isReady = false
    /// Above this many unsent bytes, the subclass is not asked for more output until the socket drains.
    let writeHighWater = 1 << 20
    /// The subclass stopped reading (input back-pressure); see ``pauseReading()``.
    @exclusivity(unchecked) private(set) var readingPaused = false
    /// A peer that takes none of the pending output for this long is cut off (`nil`: never).
    /// Set by the subclass before ``start(connecting:)``.
    @exclusivity(unchecked) var writeStallTimeout: Duration?
    @exclusivity(unchecked) private var stallTimer: LoopTimer?
    @exclusivity(unchecked) private var lastWriteProgress = ContinuousClock.now

    init(loop: EventLoop, fd: Int32, tls: TLSEngine?, peerAddress: String) {
        self.loop = loop
        self.fd = fd
        self.tls = tls
        self.peerAddress = peerAddress
    }

    /// Which side of the mesh this connection is, for ``TransportObserver``.
    var isServerSide: Bool { false }
    @exclusivity(unchecked) private var observer: (any TransportObserver)?

    /// Registers the socket with the loop. Call on the loop thread.
    func start(connecting: Bool = false) {
        observer = TransportEvents.observer
        observer?.connectionOpened(server: isServerSide)
        watcher = IOWatcher(
            loop: loop, fd: fd, onReadable: { [weak self] in self?.readable() },
            onWritable: { [weak self] in self?.writable() })
        // The connection keeps itself alive while its socket is registered.
        _ = Unmanaged.passRetained(self)
        if connecting {
            watcher.setWriting(true)
        } else {
            socketConnected()
        }
    }

    @exclusivity(unchecked) private var connecting = true

    private func socketConnected() {
        connecting = false
        watcher.setReading(true)
        if let tls {
            tls.startHandshake()
            flush()
        } else {
            becomeReady()
        }
    }

    private func becomeReady() {
        isReady = true
        connectionReady()
        flush()
        tls?.trimBuffers()
    }

    // MARK: subclass hooks

    /// TLS (if any) is done; the peer identity is known.
    func connectionReady() {}
    /// Plaintext from the peer.
    func received(_ bytes: [UInt8]) {}
    /// Appends plaintext to send.
    func produceOutput(into out: inout [UInt8]) {}
    /// The socket is closed; `error` says why when it was not a clean end.
    func closed(error: String?) {}
    /// After output was written: the subclass may release writers waiting on back-pressure.
    func didWrite() {}

    // MARK: I/O

    /// Stops reading from the socket until ``resumeReading()``: the kernel's receive buffer
    /// fills and TCP stops the peer. For input the subclass cannot take yet.
    func pauseReading() {
        guard !readingPaused, !isClosed else { return }
        readingPaused = true
        watcher?.setReading(false)
    }

    func resumeReading() {
        guard readingPaused, !isClosed else { return }
        readingPaused = false
        watcher?.setReading(true)
        // Bytes that arrived while paused raise no new edge for a level-triggered watcher that
        // was off; read them now rather than wait for more.
        loop.execute { [weak self] in
            guard let self, !self.readingPaused, !self.isClosed, !self.lingering else { return }
            self.readable()
        }
    }

    /// Tells the observer that one of this connection's writers now waits for its peer to read.
    func noteWriterHeld() { observer?.writerHeld(server: isServerSide) }

    /// Tells the observer why the transport cut this connection, then closes it.
    func shed(_ reason: ConnectionShed, closing why: String) {
        report(shed: reason)
        close(error: why)
    }

    /// Counts a limit or timeout that cut a connection or a stream.
    func report(shed reason: ConnectionShed) {
        observer?.connectionShed(reason: reason)
    }

    private func readable() {
        if lingering {
            drainLinger()
            return
        }
        guard !isClosed, !readingPaused else { return }
        var rounds = 0
        while rounds < 16 {
            rounds += 1
            let buffer = loop.scratch
            let n = read(fd, buffer.baseAddress, buffer.count)
            if n > 0 {
                if let tls {
                    tls.feed(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
                    var plaintext: [UInt8] = []
                    switch tls.readPlaintext(into: &plaintext, scratch: buffer) {
                    case .ok:
                        if !isReady && tls.handshakeComplete { becomeReady() }
                        if !plaintext.isEmpty { received(plaintext) }
                    case .closed:
                        if !plaintext.isEmpty { received(plaintext) }
                        close(error: nil)
                        return
                    case .failed(let why):
                        if !tls.handshakeComplete { observer?.tlsHandshakeFailed(server: isServerSide) }
                        // Send the alert OpenSSL queued, then close.
                        var out: [UInt8] = []
                        tls.takeCiphertext(into: &out)
                        if !out.isEmpty { _ = out.withUnsafeBytes { sendBytes($0.baseAddress!, $0.count) } }
                        close(error: why)
                        return
                    }
                } else {
                    received(Array(UnsafeRawBufferPointer(rebasing: buffer[0..<n])))
                }
                if isClosed { return }
                if n < buffer.count || readingPaused { break }
            } else if n == 0 {
                close(error: nil)
                return
            } else {
                if errno == EAGAIN || errno == EINTR { break }
                close(error: String(cString: strerror(errno)))
                return
            }
        }
        flush()
    }

    private func writable() {
        guard !isClosed else { return }
        if connecting {
            let err = Socket.pendingError(fd)
            if err != 0 {
                close(error: "connect: \(String(cString: strerror(err)))")
                return
            }
            watcher.setWriting(false)
            socketConnected()
            return
        }
        flush()
    }

    /// Coalesces output: everything queued during this loop turn goes out in one write.
    func scheduleFlush() {
        guard !flushScheduled, !isClosed else { return }
        flushScheduled = true
        loop.execute { [self] in
            flushScheduled = false
            flush()
        }
    }

    /// Takes the subclass's output, encrypts it, and writes as much as the socket accepts.
    func flush() {
        guard !isClosed else { return }
        if outBuffer.count - outOffset < writeHighWater && (isReady || tls == nil) {
            var plain: [UInt8] = []
            produceOutput(into: &plain)
            if let tls {
                if !plain.isEmpty { _ = plain.withUnsafeBytes { tls.writePlaintext($0) } }
            } else if !plain.isEmpty {
                append(plain)
            }
        }
        if let tls {
            var cipher: [UInt8] = []
            tls.takeCiphertext(into: &cipher)
            if !cipher.isEmpty { append(cipher) }
        }
        while outOffset < outBuffer.count {
            let n = outBuffer.withUnsafeBytes { sendBytes($0.baseAddress! + outOffset, $0.count - outOffset) }
            if n > 0 {
                outOffset += n
                lastWriteProgress = .now
            } else if n < 0 && (errno == EAGAIN || errno == EINTR) {
                break
            } else {
                close(error: String(cString: strerror(errno)))
                return
            }
        }
        if outOffset == outBuffer.count {
            outBuffer.removeAll(keepingCapacity: outBuffer.count < 256 << 10)
            outOffset = 0
            watcher.setWriting(false)
            stallTimer?.cancel()
            stallTimer = nil
        } else {
            watcher.setWriting(true)
            if stallTimer == nil {
                // Output just became pending: the peer's clock starts now.
                lastWriteProgress = .now
                armStallTimer()
            }
        }
        didWrite()
    }

    /// Output is waiting for the peer: cut it off once it has taken nothing for
    /// ``writeStallTimeout`` (a client that never reads must not hold its answers forever).
    private func armStallTimer() {
        guard stallTimer == nil, let limit = writeStallTimeout, !isClosed else { return }
        let wait = limit - (ContinuousClock.now - lastWriteProgress)
        stallTimer = loop.schedule(after: max(wait, .milliseconds(10))) { [weak self] in
            guard let self, !self.isClosed else { return }
            self.stallTimer = nil
            guard self.pendingWrite > 0 else { return }
            if ContinuousClock.now - self.lastWriteProgress >= limit {
                self.shed(.writeTimeout, closing: "the peer read nothing for \(limit)")
            } else {
                self.armStallTimer()
            }
        }
    }

    private func append(_ bytes: [UInt8]) {
        if outOffset == outBuffer.count {
            outBuffer.removeAll(keepingCapacity: true)
            outOffset = 0
        }
        outBuffer.append(contentsOf: bytes)
    }

    /// `send` with MSG_NOSIGNAL: writing to a socket the peer has closed must fail that write
    /// (EPIPE), not kill the process with SIGPIPE.
    private func sendBytes(_ p: UnsafeRawPointer, _ n: Int) -> Int {
        send(fd, p, n, Int32(MSG_NOSIGNAL))
    }

    /// Unsent bytes.
    var pendingWrite: Int { outBuffer.count - outOffset }

    /// Closes the connection (after trying to write what is pending). A clean close lingers: it
    /// shuts down the sending side and reads (and drops) until the peer closes too, for at most
    /// two seconds. Closing at once while the peer still sends would answer with a TCP reset, and
    /// a reset can destroy the GOAWAY the peer has not read yet.
    func close(error: String?) {
        guard !isClosed else { return }
        if error == nil && pendingWrite > 0 {
            _ = outBuffer.withUnsafeBytes { sendBytes($0.baseAddress! + outOffset, $0.count - outOffset) }
        }
        isClosed = true
        stallTimer?.cancel()
        stallTimer = nil
        observer?.connectionClosed(server: isServerSide)
        closed(error: error)
        if error == nil && watcher != nil {
            lingering = true
            shutdown(fd, Int32(SHUT_WR))
            watcher.setWriting(false)
            watcher.setReading(true)
            lingerTimer = loop.schedule(after: .seconds(2)) { [weak self] in self?.release() }
        } else {
            release()
        }
    }

    @exclusivity(unchecked) private var lingering = false
    @exclusivity(unchecked) private var lingerTimer: LoopTimer?

    /// Reads and drops what a closing peer still sends, until it closes.
    private func drainLinger() {
        let buffer = loop.scratch
        while true {
            let n = read(fd, buffer.baseAddress, buffer.count)
            if n > 0 { continue }
            if n < 0 && (errno == EAGAIN || errno == EINTR) { return }
            release()
            return
        }
    }

    @exclusivity(unchecked) private var released = false

    /// Frees the socket and gives back the connection's hold on itself.
    private func release() {
        guard !released else { return }
        released = true
        lingerTimer?.cancel()
        watcher?.close()
        Glibc.close(fd)
        Unmanaged.passUnretained(self).release()
    }
}
