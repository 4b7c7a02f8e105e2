/// gRFC A8's keepalive for one connection, client or server side: after `interval` without
/// anything read, send a PING; when it is not acknowledged within `timeout`, the peer is gone
/// and the connection closes. Loop-confined.
final class KeepalivePinger {
    private let loop: EventLoop
    private let interval: Duration
    private let timeout: Duration
    private let sendPing: () -> Void
    private let peerGone: () -> Void
    @exclusivity(unchecked) private var timer: LoopTimer?
    @exclusivity(unchecked) private var ackTimer: LoopTimer?
    @exclusivity(unchecked) private var lastRead = ContinuousClock.now

    init(
        loop: EventLoop, interval: Duration, timeout: Duration, sendPing: @escaping () -> Void,
        peerGone: @escaping () -> Void
    ) {
        self.loop = loop
        self.interval = interval
        self.timeout = timeout
        self.sendPing = sendPing
        self.peerGone = peerGone
        arm()
    }

    func sawRead() { lastRead = .now }

    func sawAck() {
        ackTimer?.cancel()
        ackTimer = nil
    }

    func stop() {
        timer?.cancel()
        ackTimer?.cancel()
        timer = nil
        ackTimer = nil
    }

    private func arm() {
        timer = loop.schedule(after: interval) { [weak self] in
            guard let self else { return }
            if ContinuousClock.now - self.lastRead >= self.interval && self.ackTimer == nil {
                self.sendPing()
                self.ackTimer = self.loop.schedule(after: self.timeout) { [weak self] in self?.peerGone() }
            }
            self.arm()
        }
    }
}
