import CBazaarEvent
import Glibc
import Synchronization

/// Signals (SIGTERM, SIGINT, SIGHUP), through libevent, on one loop.
///
/// A watched signal must never meet its default action (terminate) while the process is up,
/// neither in the moment before libevent's handler is in place nor after the watcher is
/// cancelled. libevent restores, when an event is freed, the disposition it found when the event
/// was added; so before adding, a watcher puts ``DeferredSignals``'s handler in place of the
/// default, and that handler is what comes back afterwards. A signal that reaches it is recorded:
/// at registration the watcher acts on it; after a cancel that followed a fired signal the
/// process is on its way out because of one, and a repeat (a supervisor or kubelet sending
/// SIGTERM again, a second Ctrl-C) is dropped; after a cancel with nothing fired the default
/// action comes back and a signal recorded in between is raised again.
final class SignalWatcher: @unchecked Sendable {
    @exclusivity(unchecked) private var events: [OpaquePointer] = []
    private let signals: [Int32]
    private let fired = Atomic<Bool>(false)
    private let action: () -> Void
    private let loop: EventLoop

    init(loop: EventLoop, signals: [Int32], action: @escaping @Sendable () -> Void) {
        self.loop = loop
        self.signals = signals
        self.action = action
        _ = Unmanaged.passRetained(self)
        // Registered here and now, not on the loop later: the caller announces that it listens
        // right after, and a SIGTERM arriving before the registration would kill the process.
        // (libevent's bases are thread-safe: evthread_use_pthreads runs before any loop exists.)
        let me = Unmanaged.passUnretained(self).toOpaque()
        for sig in signals {
            DeferredSignals.coverDefault(sig)
            if let ev = event_new(
                loop.base, sig, Int16(EV_SIGNAL | EV_PERSIST),
                { _, _, arg in
                    Unmanaged<SignalWatcher>.fromOpaque(arg!).takeUnretainedValue().fire()
                }, me)
            {
                event_add(ev, nil)
                events.append(ev)
            }
        }
        // One that came between covering the default and libevent taking over.
        if signals.contains(where: DeferredSignals.take) { loop.execute { [self] in fire() } }
    }

    private func fire() {
        fired.store(true, ordering: .relaxed)
        action()
    }

    func cancel() {
        loop.execute { [self] in
            // Freeing the events puts DeferredSignals's handler back, which only records.
            for ev in events { event_free(ev) }
            events.removeAll()
            for sig in signals {
                if fired.load(ordering: .relaxed) {
                    DeferredSignals.coverDefault(sig)  // when libevent gave the default back
                } else {
                    DeferredSignals.uncover(sig)
                    if DeferredSignals.take(sig) { kill(getpid(), sig) }
                }
            }
            Unmanaged.passUnretained(self).release()
        }
    }
}

/// The process-wide stand-in for a watched signal's default action: records the signal and
/// returns (async-signal-safe: one atomic OR).
enum DeferredSignals {
    private static let pending = Atomic<UInt64>(0)

    private static let handler: @convention(c) (Int32) -> Void = { sig in
        DeferredSignals.pending.bitwiseOr(1 << UInt64(sig & 63), ordering: .relaxed)
    }

    /// Puts the recording handler in place when `sig` has its default action; leaves any other
    /// disposition (ignored by the parent, another watcher's libevent handler) alone.
    static func coverDefault(_ sig: Int32) {
        _ = pending.load(ordering: .relaxed)  // initialised before a handler can touch it
        var current = sigaction()
        guard sigaction(sig, nil, &current) == 0, current.__sigaction_handler.sa_handler == nil else { return }
        var mine = sigaction()
        mine.__sigaction_handler.sa_handler = handler
        sigemptyset(&mine.sa_mask)
        mine.sa_flags = SA_RESTART
        sigaction(sig, &mine, nil)
    }

    /// Gives `sig` its default action back if the recording handler holds it.
    static func uncover(_ sig: Int32) {
        var current = sigaction()
        guard sigaction(sig, nil, &current) == 0,
            let h = current.__sigaction_handler.sa_handler,
            unsafeBitCast(h, to: UInt.self) == unsafeBitCast(handler, to: UInt.self)
        else { return }
        signal(sig, SIG_DFL)
    }

    /// Whether `sig` arrived at the recording handler since the last call; clears it.
    static func take(_ sig: Int32) -> Bool {
        let bit: UInt64 = 1 << UInt64(sig & 63)
        return pending.bitwiseAnd(~bit, ordering: .relaxed).oldValue & bit != 0
    }
}
