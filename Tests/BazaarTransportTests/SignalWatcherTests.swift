import Glibc
import Testing

@testable import BazaarTransport

/// Signal dispositions are process-wide, so these run one at a time and use SIGUSR2, which
/// nothing else in the process watches. A broken watcher shows as the test process dying.
@Suite(.serialized) struct SignalWatcherTests {
    static func handlerIsDefault(_ sig: Int32) -> Bool {
        var current = sigaction()
        sigaction(sig, nil, &current)
        return current.__sigaction_handler.sa_handler == nil
    }

    /// Delivers `sig` to the calling thread before returning. Test tasks run on threads that
    /// block signals (libdispatch's workers), so the mask is opened for the moment.
    static func raiseHere(_ sig: Int32) {
        var only = sigset_t()
        var saved = sigset_t()
        sigemptyset(&only)
        sigaddset(&only, sig)
        pthread_sigmask(SIG_UNBLOCK, &only, &saved)
        raise(sig)
        pthread_sigmask(SIG_SETMASK, &saved, nil)
    }

    /// Waits until what is queued on `loop` so far has run.
    static func drain(_ loop: EventLoop) async {
        await withCheckedContinuation { c in loop.execute { c.resume() } }
    }

    @Test func aSignalThatCameBeforeLibeventTookOverIsActedOn() async {
        let group = EventLoopGroup(count: 1)
        defer { group.shutdown() }
        // The moment between covering the default and event_add, made to last.
        DeferredSignals.coverDefault(SIGUSR2)
        Self.raiseHere(SIGUSR2)
        let (fired, note) = AsyncStream<Void>.makeStream()
        let watcher = SignalWatcher(loop: group.loops[0], signals: [SIGUSR2]) { note.yield() }
        for await _ in fired { break }
        watcher.cancel()
        await Self.drain(group.loops[0])
        #expect(!Self.handlerIsDefault(SIGUSR2))  // it fired: repeats are dropped from now on
    }

    @Test func aRepeatAfterTheWatcherFiredAndWasCancelledIsDropped() async {
        let group = EventLoopGroup(count: 1)
        defer { group.shutdown() }
        let (fired, note) = AsyncStream<Void>.makeStream()
        let watcher = SignalWatcher(loop: group.loops[0], signals: [SIGUSR2]) { note.yield() }
        Self.raiseHere(SIGUSR2)
        for await _ in fired { break }
        watcher.cancel()
        await Self.drain(group.loops[0])
        #expect(!Self.handlerIsDefault(SIGUSR2))
        Self.raiseHere(SIGUSR2)  // with the default action this would end the test process
        #expect(DeferredSignals.take(SIGUSR2))
    }

    @Test func aWatcherThatNeverFiredGivesTheDefaultActionBack() async {
        let group = EventLoopGroup(count: 1)
        defer { group.shutdown() }
        let watcher = SignalWatcher(loop: group.loops[0], signals: [SIGUSR2]) {}
        #expect(!Self.handlerIsDefault(SIGUSR2))
        watcher.cancel()
        await Self.drain(group.loops[0])
        #expect(Self.handlerIsDefault(SIGUSR2))
    }
}
