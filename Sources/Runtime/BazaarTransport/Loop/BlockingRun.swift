import Dispatch

/// Runs async work from a synchronous `main` and blocks the calling thread until it ends.
///
/// Executables use this instead of an `async` main so that the main thread is not parked in
/// `dispatch_main()`: valgrind 3.19 (Debian 12) cannot run processes that do that, and callgrind
/// instruction counts are how the transport's cost per call is tracked.
public func runBlocking(_ body: @escaping @Sendable () async throws -> Void) throws {
    let done = DispatchSemaphore(value: 0)
    let box = ErrorBox()
    Task {
        do { try await body() } catch { box.error = error }
        done.signal()
    }
    done.wait()
    if let error = box.error { throw error }
}

private final class ErrorBox: @unchecked Sendable {
    @exclusivity(unchecked) var error: (any Error)?
}
