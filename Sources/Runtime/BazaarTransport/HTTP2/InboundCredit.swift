/// HTTP/2 flow-control credit of one stream whose session does not return credit by itself
/// (inbound back-pressure, for server and client streams alike).
///
/// Received bytes are given back (WINDOW_UPDATE) once consumed. Bytes of a message still being
/// reassembled are given back at once (a message may be larger than the window); bytes of
/// complete messages waiting for their reader are held until it takes them. So a reader that
/// stops reading stops its peer after one window of messages. Loop-confined.
struct InboundCredit {
    /// Bytes received and not yet given back.
    private var owed = 0
    /// Wire sizes of the messages handed to the reader and not yet taken, oldest first.
    private var queued: [Int] = []
    private var head = 0
    private var queuedBytes = 0

    mutating func received(_ count: Int) { owed += count }

    /// A complete message of `wireSize` bytes (prefix included) went to the reader.
    mutating func handedOver(wireSize: Int) {
        queued.append(wireSize)
        queuedBytes += wireSize
    }

    /// The reader took the oldest message.
    mutating func taken() {
        guard head < queued.count else { return }
        queuedBytes -= queued[head]
        head += 1
        if head == queued.count {
            queued.removeAll(keepingCapacity: true)
            head = 0
        }
    }

    /// Bytes to give back now: everything when `all` (the call is over, or nobody reads messages
    /// one by one), otherwise all but the bytes of messages still waiting for the reader.
    mutating func settle(all: Bool) -> Int {
        let give = all ? owed : owed - min(owed, queuedBytes)
        owed -= give
        return give
    }
}
