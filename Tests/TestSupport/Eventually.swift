/// Waits for state the test cannot be woken by: another process's view (a server's client list,
/// a database's activity), or a counter the code under test keeps without a hook. Checks
/// `condition` until it holds; `timeout` only guards against a hang and is never the
/// synchronisation itself, so it is generous. Use `Watched` when the code under test can wake
/// the test directly.
public func eventually(
    _ what: String, timeout: Duration = .seconds(60), _ condition: () async throws -> Bool
) async throws {
    let clock = ContinuousClock()
    let give = clock.now + timeout
    while try await !condition() {
        guard clock.now < give else { throw WaitTimedOut(what: what, after: timeout) }
        try await Task.sleep(for: .milliseconds(10))
    }
}

/// What `eventually` throws when its condition never held: names what the test waited for.
public struct WaitTimedOut: Error, CustomStringConvertible {
    public let what: String
    public let after: Duration
    public var description: String { "waited \(after) for \(what)" }
}
