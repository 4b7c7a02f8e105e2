import BazaarCore
import Dispatch
import Testing

@testable import BazaarAuth

/// The argon2 queue: bounded, shedding with RESOURCE_EXHAUSTED, dropping work whose caller left.
/// A blocked "hash" (a semaphore) holds the only slot, so every outcome is decided by the queue,
/// not by how fast anything runs.
@Suite struct SecretWorkTests {
    /// Work that blocks until released, and says when it started.
    final class Gate: @unchecked Sendable {
        let started = DispatchSemaphore(value: 0)
        let release = DispatchSemaphore(value: 0)
        func work() -> Int {
            started.signal()
            release.wait()
            return 1
        }
    }

    @Test func aFullQueueShedsAndFreesAsWorkEnds() async throws {
        let work = SecretWork(slots: 1, maxWaiting: 1)
        let gate = Gate()
        let running = Task { try await work.run { gate.work() } }
        await withCheckedContinuation { k in
            DispatchQueue.global().async {
                gate.started.wait()
                k.resume()
            }
        }
        let waiting = Task { try await work.run { 2 } }
        while work.waitingCount < 1 { await Task.yield() }
        // The one waiting place is taken: the next is shed at once.
        var shed: RPCError?
        do { _ = try await work.run { 3 } } catch let e as RPCError { shed = e }
        #expect(shed?.code == .resourceExhausted)
        #expect(work.shedCount == 1)
        gate.release.signal()
        #expect(try await running.value == 1)
        #expect(try await waiting.value == 2)
        // With the slot free again, work runs.
        #expect(try await work.run { 4 } == 4)
    }

    @Test func workWhoseCallerLeftIsDroppedBeforeItRuns() async throws {
        let work = SecretWork(slots: 1, maxWaiting: 4)
        let gate = Gate()
        let running = Task { try await work.run { gate.work() } }
        await withCheckedContinuation { k in
            DispatchQueue.global().async {
                gate.started.wait()
                k.resume()
            }
        }
        let ran = ManagedAtomicFlag()
        let abandoned = Task { try await work.run { ran.set() } }
        while work.waitingCount < 1 { await Task.yield() }
        abandoned.cancel()
        await #expect(throws: CancellationError.self) { try await abandoned.value }
        gate.release.signal()
        #expect(try await running.value == 1)
        #expect(try await work.run { 5 } == 5)
        #expect(!ran.isSet)
        #expect(work.droppedCount == 1)
    }
}

/// A flag set from any thread.
final class ManagedAtomicFlag: @unchecked Sendable {
    private let lock = DispatchSemaphore(value: 1)
    private var value = false
    func set() {
        lock.wait()
        value = true
        lock.signal()
    }
    var isSet: Bool {
        lock.wait()
        defer { lock.signal() }
        return value
    }
}
