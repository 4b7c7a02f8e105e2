import BazaarCore

/// A value the code under test changes and a test waits on: `wait(until:)` returns once the
/// condition holds, woken by the change itself rather than by polling on a clock. It has no
/// timeout of its own: a suite that uses it declares a `.timeLimit`, which guards against a hang.
public final class Watched<Value: Sendable>: Sendable {
    private struct State {
        var value: Value
        var waiters: [(condition: @Sendable (Value) -> Bool, continuation: CheckedContinuation<Void, Never>)] = []
    }

    private let state: Lock<State>

    public init(_ value: Value) { state = Lock(State(value: value)) }

    /// Reads the value.
    public func withLock<R>(_ body: (Value) -> R) -> R { state.withLock { body($0.value) } }

    /// Changes the value and wakes every waiter whose condition now holds.
    public func update(_ body: (inout Value) -> Void) {
        let woken = state.withLock { s -> [CheckedContinuation<Void, Never>] in
            body(&s.value)
            let value = s.value
            let ready = s.waiters.filter { $0.condition(value) }.map(\.continuation)
            s.waiters.removeAll { $0.condition(value) }
            return ready
        }
        for k in woken { k.resume() }
    }

    /// Returns once `condition` holds for the value.
    public func wait(until condition: @escaping @Sendable (Value) -> Bool) async {
        await withCheckedContinuation { (k: CheckedContinuation<Void, Never>) in
            let now = state.withLock { s -> Bool in
                if condition(s.value) { return true }
                s.waiters.append((condition, k))
                return false
            }
            if now { k.resume() }
        }
    }
}
