import BazaarCore
import Synchronization

/// Hears what the transport does, for telemetry: connections opening and closing, failed TLS
/// handshakes, and how late each event loop runs its timers (its lag). Calls come from loop
/// threads; keep them cheap (an atomic add).
public protocol TransportObserver: Sendable {
    func connectionOpened(server: Bool)
    func connectionClosed(server: Bool)
    func tlsHandshakeFailed(server: Bool)
    /// How much later than asked a loop's probe timer fired, every ``TransportEvents/lagProbeInterval``.
    func loopLag(seconds: Double, loop: Int)
    /// A connection was refused or cut by a limit, a timeout or an `accept` failure: `reason` is
    /// one of a few fixed words (``ConnectionShed``), so it can be a metric label.
    func connectionShed(reason: ConnectionShed)
    /// A stream's writer was made to wait: its peer reads slower than it writes and the bytes
    /// queued for it passed the high-water mark (HTTP/2 flow control at work, not a fault).
    func writerHeld(server: Bool)
}

/// Why the transport refused or closed a connection on its own.
public enum ConnectionShed: String, Sendable, CaseIterable {
    /// The process already holds its maximum of accepted connections.
    case processLimit = "process_limit"
    /// One client address already holds its maximum.
    case addressLimit = "address_limit"
    /// `accept` failed (EMFILE, ENFILE, ENOBUFS, ENOMEM): the listener backs off for a moment.
    case acceptFailed = "accept_failed"
    /// The TLS handshake (or, in plaintext, the first request) did not arrive in time.
    case handshakeTimeout = "handshake_timeout"
    /// A request's headers did not arrive in time.
    case headerTimeout = "header_timeout"
    /// A request's body did not arrive in time.
    case bodyTimeout = "body_timeout"
    /// The peer took nothing of what was written to it for too long.
    case writeTimeout = "write_timeout"
    /// A request (read, handling and answer) outlived the longest one allowed.
    case requestTimeout = "request_timeout"
}

extension TransportObserver {
    public func connectionShed(reason: ConnectionShed) {}
    public func writerHeld(server: Bool) {}
}

/// The process's one ``TransportObserver``. Install it before servers and channels start: loops
/// started earlier do not measure their lag.
public enum TransportEvents {
    private static let installed = Lock<(any TransportObserver)?>(nil)
    public static let lagProbeInterval = Duration.milliseconds(500)

    public static func install(_ observer: any TransportObserver) {
        installed.withLock { $0 = observer }
    }

    static var observer: (any TransportObserver)? { installed.withLock { $0 } }
}

extension EventLoop {
    /// Measures the loop's lag: a timer asked for every half second reports how late it fired.
    func startLagProbe(_ observer: any TransportObserver) {
        let asked = ContinuousClock.now + TransportEvents.lagProbeInterval
        schedule(after: TransportEvents.lagProbeInterval) { [weak self] in
            guard let self else { return }
            let late = ContinuousClock.now - asked
            observer.loopLag(
                seconds: max(0, Double(late.components.seconds) + Double(late.components.attoseconds) / 1e18),
                loop: self.index)
            self.startLagProbe(observer)
        }
    }
}
