/// Connects generated clients straight to service implementations in the same process, with no
/// network: for tests of services and of generated code. Errors thrown by handlers reach the
/// caller as `RPCError` (other errors become `UNKNOWN`), as they would over the wire.
public struct InProcessTransport: ClientTransport {
    private let handlers: [String: RPCHandler]

    public init(services: [any RPCService]) {
        var table: [String: RPCHandler] = [:]
        for s in services { for h in s.handlers { table[h.method.path] = h } }
        handlers = table
    }

    private func handler(_ method: MethodDescriptor) throws -> RPCHandler {
        guard let h = handlers[method.path] else {
            throw RPCError(.unimplemented, "method \(method.path) is not served")
        }
        return h
    }

    private func context(_ method: MethodDescriptor, _ options: CallOptions) -> ServerContext {
        let timeout = options.timeout ?? method.options.defaultDeadline
        return ServerContext(
            method: method, metadata: options.metadata,
            deadline: timeout.map { ContinuousClock.now.advanced(by: $0) }, peerIdentity: nil)
    }

    public func unary(_ method: MethodDescriptor, request: [UInt8], options: CallOptions) async throws -> [UInt8] {
        let h = try handler(method)
        do {
            switch h.body {
            case .unary(let body):
                return try await body(request, context(method, options))
            case .streaming(let body):
                let (out, continuation) = RPCStream<[UInt8]>.makeStream()
                try await body(
                    RPCStream {
                        $0.yield(request)
                        $0.finish()
                    }, RPCWriter { continuation.yield($0) },
                    context(method, options))
                continuation.finish()
                var it = out.makeAsyncIterator()
                guard let first = try await it.next() else { throw RPCError(.internal, "no response message") }
                return first
            }
        } catch {
            throw RPCError(error)
        }
    }

    public func streaming(_ method: MethodDescriptor, requests: RPCStream<[UInt8]>, options: CallOptions) -> RPCStream<
        [UInt8]
    > {
        let (out, continuation) = RPCStream<[UInt8]>.makeStream()
        let ctx = context(method, options)
        let h: RPCHandler
        do { h = try handler(method) } catch {
            continuation.finish(throwing: error)
            return out
        }
        let task = Task {
            do {
                switch h.body {
                case .unary(let body):
                    var it = requests.makeAsyncIterator()
                    guard let first = try await it.next() else {
                        throw RPCError(.invalidArgument, "missing request message")
                    }
                    continuation.yield(try await body(first, ctx))
                case .streaming(let body):
                    try await body(requests, RPCWriter { continuation.yield($0) }, ctx)
                }
                continuation.finish()
            } catch {
                continuation.finish(throwing: RPCError(error))
            }
        }
        continuation.onTermination = { _ in task.cancel() }
        return out
    }
}
