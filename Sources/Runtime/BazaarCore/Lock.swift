import Glibc

/// A value behind a lock, on a `pthread_mutex_t`: what Bazaar uses instead of the standard
/// library's `Mutex`.
///
/// Why not `Mutex`: on Linux it hands a contended lock over through the kernel (priority-
/// inheritance futexes), a step ThreadSanitizer cannot see, so TSan builds reported every
/// contended critical section as a data race and real races drowned in them. pthread mutexes are
/// intercepted by TSan, and cost the same when uncontended (an atomic exchange in glibc).
///
/// ```swift
/// let counts = Lock([String: Int]())
/// counts.withLock { $0["a", default: 0] += 1 }
/// ```
public final class Lock<Value>: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private var value: Value

    public init(_ value: Value) {
        self.value = value
        pthread_mutex_init(mutex, nil)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    /// Runs `body` with the value, holding the lock. Keep it short: no `await`, no I/O.
    @inline(__always)
    public func withLock<Result, E: Error>(_ body: (inout Value) throws(E) -> Result) throws(E) -> Result {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&value)
    }
}
