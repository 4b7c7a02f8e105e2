/// The messages of a streaming call, one way: what a handler reads its requests from, and what a
/// client reads its responses from. Single consumer.
///
/// It pulls: a message is taken from the transport only when the reader asks for the next one,
/// and the transport learns of each take (``init(_:onTake:)``), which is how a server holds back
/// HTTP/2 flow-control credit until its handler has really read the data. Mapping (decoding
/// bytes into messages) happens lazily on the reader's side, so it adds no buffering.
public struct RPCStream<Element: Sendable>: AsyncSequence, Sendable {
    public typealias Continuation = AsyncThrowingStream<Element, any Error>.Continuation

    private let produce: @Sendable () -> AsyncIterator

    public struct AsyncIterator: AsyncIteratorProtocol {
        private let step: () async throws -> Element?

        init(_ step: @escaping () async throws -> Element?) { self.step = step }

        public mutating func next() async throws -> Element? { try await step() }
    }

    public func makeAsyncIterator() -> AsyncIterator { produce() }

    private init(produce: @escaping @Sendable () -> AsyncIterator) { self.produce = produce }

    /// A stream fed through a continuation; `onTake` runs each time the reader takes an element.
    public init(_ base: AsyncThrowingStream<Element, any Error>, onTake: (@Sendable () -> Void)? = nil) {
        produce = {
            var it = base.makeAsyncIterator()
            return AsyncIterator {
                let e = try await it.next()
                if e != nil { onTake?() }
                return e
            }
        }
    }

    /// A stream whose elements `build` yields (like `AsyncThrowingStream { continuation in ... }`).
    public init(_ build: (Continuation) -> Void) {
        let (s, c) = AsyncThrowingStream<Element, any Error>.makeStream()
        build(c)
        self.init(s)
    }

    /// A stream and the continuation that feeds it.
    public static func makeStream() -> (stream: RPCStream, continuation: Continuation) {
        let (s, c) = AsyncThrowingStream<Element, any Error>.makeStream()
        return (RPCStream(s), c)
    }

    /// Any async sequence, transformed element by element as the reader pulls.
    public init<Source: AsyncSequence & Sendable>(
        _ source: Source, transform: @escaping @Sendable (Source.Element) throws -> Element
    )
    where Source.Failure == any Error {
        produce = {
            var it = source.makeAsyncIterator()
            return AsyncIterator { try await it.next().map(transform) }
        }
    }

    /// This stream's elements transformed as they are pulled.
    public func map<T: Sendable>(_ transform: @escaping @Sendable (Element) throws -> T) -> RPCStream<T> {
        RPCStream<T>(self, transform: transform)
    }
}
