import BazaarCore
import Synchronization

/// A cap on the calls in flight to one upstream, so that one slow dependency cannot take every
/// task and connection of the caller. Past the cap a call fails at once with
/// `RESOURCE_EXHAUSTED`, or waits for a slot until its deadline, as configured.
public final class Bulkhead: Sendable {
    public enum Overflow: String, Sendable, Hashable {
        case fail
        case wait
    }

    public let limit: Int
    public let overflow: Overflow
    private let inUse = Atomic<Int>(0)
    private struct Waiter {
        let id: UInt64
        let continuation: CheckedContinuation<Bool, Never>
    }
    private let waiters = Lock<(next: UInt64, queue: [Waiter])>((0, []))

    /// - Parameter limit: calls in flight at most; 0 means no cap.
    public init(limit: Int, overflow: Overflow) {
        self.limit = limit
        self.overflow = overflow
    }

    public var inFlight: Int { inUse.load(ordering: .relaxed) }
    /// Callers queued for a slot now (in `.wait` mode).
    public var waiting: Int { waiters.withLock { $0.queue.count } }

    /// Takes a slot, or fails (`RESOURCE_EXHAUSTED`, or `DEADLINE_EXCEEDED` after waiting).
    public func acquire(deadline: ContinuousClock.Instant?, upstream: @autoclosure () -> String) async throws {
        guard limit > 0 else { return }
        if inUse.add(1, ordering: .acquiring).newValue <= limit { return }
        inUse.subtract(1, ordering: .releasing)
        if overflow == .fail {
            throw RPCError(.resourceExhausted, "\(upstream()): \(limit) calls in flight already (bulkhead)")
        }
        try await waitForSlot(deadline: deadline, upstream: upstream())
    }

    public func release() {
        guard limit > 0 else { return }
        // A waiter takes the slot over directly, so that newcomers cannot overtake the queue.
        let next = waiters.withLock { w -> CheckedContinuation<Bool, Never>? in
            w.queue.isEmpty ? nil : w.queue.removeFirst().continuation
        }
        if let next { next.resume(returning: true) } else { inUse.subtract(1, ordering: .releasing) }
    }

    private func waitForSlot(deadline: ContinuousClock.Instant?, upstream: String) async throws {
        let id = waiters.withLock { w -> UInt64 in
            w.next += 1
            return w.next
        }
        let timeout = deadline.map { d in
            Task {
                try? await Task.sleep(until: d, clock: .continuous)
                self.abandon(id)
            }
        }
        let got = await withTaskCancellationHandler {
            await withCheckedContinuation { (c: CheckedContinuation<Bool, Never>) in
                let immediate = waiters.withLock { w -> Bool? in
                    // A slot may have freed up between the failed attempt and now.
                    if inUse.add(1, ordering: .acquiring).newValue <= limit { return true }
                    inUse.subtract(1, ordering: .releasing)
                    // A timeout that fired before this waiter was queued woke nobody: check here.
                    // So does a cancellation that came before.
                    if Task.isCancelled { return false }
                    if let deadline, ContinuousClock.now >= deadline { return false }
                    w.queue.append(Waiter(id: id, continuation: c))
                    return nil
                }
                if let immediate { c.resume(returning: immediate) }
            }
        } onCancel: {
            self.abandon(id)
        }
        timeout?.cancel()
        if !got {
            if Task.isCancelled { throw RPCError(.cancelled, "call cancelled while waiting for a slot") }
            throw RPCError(
                .deadlineExceeded, "\(upstream): deadline exceeded waiting for one of \(limit) slots (bulkhead)")
        }
    }

    private func abandon(_ id: UInt64) {
        let c = waiters.withLock { w -> CheckedContinuation<Bool, Never>? in
            guard let i = w.queue.firstIndex(where: { $0.id == id }) else { return nil }
            return w.queue.remove(at: i).continuation
        }
        c?.resume(returning: false)
    }
}
