/// HTTP/2 limits of a connection. The defaults suit a LAN mesh: windows large enough that a
/// 4 MiB message is not throttled by round trips, and limits that bound what one peer may cost.
public struct HTTP2Settings: Sendable {
    /// Receive window of the whole connection.
    public var connectionWindowSize: Int32 = 16 << 20
    /// Receive window of each stream (SETTINGS_INITIAL_WINDOW_SIZE).
    public var streamWindowSize: Int32 = 4 << 20
    /// Streams a peer may open at once (SETTINGS_MAX_CONCURRENT_STREAMS).
    public var maxConcurrentStreams: UInt32 = 1024
    /// Largest header list accepted (SETTINGS_MAX_HEADER_LIST_SIZE); gRPC's default is 8 KiB of metadata.
    public var maxHeaderListSize: UInt32 = 16 << 10
    /// SETTINGS_MAX_FRAME_SIZE advertised to the peer.
    public var maxFrameSize: UInt32 = 16 << 10

    public init() {}
}
