import BazaarCore

/// Server-streaming "watch" calls poll their store: it works the same with one replica or many
/// (PostgreSQL LISTEN would tie a stream to the replica that made the change). Each poll is one
/// indexed read; `interval` bounds how late a change is seen.
public enum Watch {
    /// Calls `fetch` every `interval` and writes each value that differs from the last one written,
    /// until `isFinal` says the value is the last, the caller goes away (the task is cancelled), or
    /// the call's deadline passes (the transport ends it).
    public static func poll<Value: Equatable & Sendable>(
        every interval: Duration, fetch: () async throws -> Value?, write: (Value) async throws -> Void,
        isFinal: (Value) -> Bool = { _ in false }
    ) async throws {
        var last: Value?
        while !Task.isCancelled {
            if let value = try await fetch(), value != last {
                try await write(value)
                if isFinal(value) { return }
                last = value
            }
            try await Task.sleep(for: interval)
        }
    }
}
