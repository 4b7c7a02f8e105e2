/// The writers of one stream that wait for nghttp2 to take their data: outbound back-pressure,
/// shared by server and client streams. Loop-confined.
struct WriteGate {
    /// Bytes queued on a stream above which a writer waits for the peer to read.
    static let highWater = 256 << 10

    private var waiting: [CheckedContinuation<Void, any Error>] = []

    var isEmpty: Bool { waiting.isEmpty }

    /// Lets the writer go on, or parks it while `pending` bytes are over the mark. Returns whether
    /// it was parked (the owner then asks to be told when the socket drains).
    mutating func admit(_ c: CheckedContinuation<Void, any Error>, pending: Int) -> Bool {
        if pending > Self.highWater {
            waiting.append(c)
            return true
        }
        c.resume()
        return false
    }

    /// Lets every parked writer go on once `pending` is back under the mark.
    mutating func release(pending: Int) {
        guard pending <= Self.highWater else { return }
        let w = waiting
        waiting.removeAll()
        for c in w { c.resume() }
    }

    /// Fails every parked writer (the call ended).
    mutating func fail(_ error: any Error) {
        let w = waiting
        waiting.removeAll()
        for c in w { c.resume(throwing: error) }
    }
}

/// A stream with a ``WriteGate``: its parked writers can be let go when the socket drains.
protocol GatedStream: AnyObject {
    var hasWaitingWriters: Bool { get }
    func resumeWritersIfDrained()
}

/// The streams of one connection whose writers are parked, so that a drained socket wakes only
/// them, not every stream. Loop-confined.
struct BlockedStreams<Stream: GatedStream> {
    private var streams: [Stream] = []

    mutating func add(_ stream: Stream) {
        if !streams.contains(where: { $0 === stream }) { streams.append(stream) }
    }

    /// After a write: lets writers go where their stream drained; the rest stay parked.
    mutating func resume() {
        guard !streams.isEmpty else { return }
        let waiting = streams
        streams.removeAll()
        for s in waiting where s.hasWaitingWriters {
            s.resumeWritersIfDrained()
            if s.hasWaitingWriters { streams.append(s) }
        }
    }
}
