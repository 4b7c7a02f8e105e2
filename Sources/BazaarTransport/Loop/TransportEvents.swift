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
}

/// The process's one ``TransportObserver``. Install it before servers and channels start: loops
/// started earlier do not measure their lag.
public enum TransportEvents {
    private static let installed = Mutex<(any TransportObserver)?>(nil)
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
            observer.loopLag(seconds: max(0, Double(late.components.seconds) + Double(late.components.attoseconds) / 1e18), loop: self.index)
            self.startLagProbe(observer)
        }
    }
}
