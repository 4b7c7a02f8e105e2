/// The state of a client's connection to an endpoint (gRPC's connectivity states).
public enum ConnectivityState: UInt8, Sendable, Hashable, CustomStringConvertible {
    /// Not connected and not trying; the next call (or `connect()`) starts a connection.
    case idle
    case connecting
    case ready
    /// The last attempt failed; another follows after the backoff.
    case transientFailure
    /// Closed for good.
    case shutdown

    public var description: String {
        switch self {
        case .idle: "IDLE"
        case .connecting: "CONNECTING"
        case .ready: "READY"
        case .transientFailure: "TRANSIENT_FAILURE"
        case .shutdown: "SHUTDOWN"
        }
    }
}
