import BazaarCore
import BazaarWire
import GRPCProtos
import WellKnownTypes

/// Reads a server's schema through gRPC server reflection: `grpc.reflection.v1`, or `v1alpha`
/// for servers that only have the older one (the two are the same protocol on the wire). The
/// gateway learns its upstreams' APIs this way, and `bazaar call` the API it calls.
///
/// One call per question set: the questions go down one stream, so a load-balanced target
/// answers them all from the same replica.
public struct ReflectionClient: Sendable {
    public let transport: any ClientTransport

    public init(transport: any ClientTransport) { self.transport = transport }

    /// What a server serves: its services (as listed) and the `FileDescriptorProto`s that define
    /// them with everything they import, each file once, dependencies first.
    public struct Answer: Sendable {
        public var services: [String]
        public var files: [[UInt8]]
    }

    /// Lists the services and fetches the files of each, except those in `skipping`.
    public func schema(skipping: Set<String> = [], options: CallOptions = CallOptions(timeout: .seconds(10)))
        async throws -> Answer
    {
        do {
            return try await ask(Grpc_Reflection_V1_ServerReflection.Method.serverReflectionInfo, skipping, options)
        } catch let e as RPCError where e.code == .unimplemented {
            return try await ask(
                Grpc_Reflection_V1alpha_ServerReflection.Method.serverReflectionInfo, skipping, options)
        }
    }

    /// The files that define `symbol` (a service, method, message or enum), with their imports.
    public func files(containing symbol: String, options: CallOptions = CallOptions(timeout: .seconds(10))) async throws
        -> [[UInt8]]
    {
        do {
            return try await ask(
                Grpc_Reflection_V1_ServerReflection.Method.serverReflectionInfo, symbol: symbol, options)
        } catch let e as RPCError where e.code == .unimplemented {
            return try await ask(
                Grpc_Reflection_V1alpha_ServerReflection.Method.serverReflectionInfo, symbol: symbol, options)
        }
    }

    /// One reflection stream: ask, read the answer, ask the next.
    final class Conversation: @unchecked Sendable {
        let requests: RPCStream<Grpc_Reflection_V1_ServerReflectionRequest>.Continuation
        var responses: RPCStream<Grpc_Reflection_V1_ServerReflectionResponse>.AsyncIterator

        init(_ transport: any ClientTransport, _ method: MethodDescriptor, _ options: CallOptions) {
            let (stream, continuation) = RPCStream<Grpc_Reflection_V1_ServerReflectionRequest>.makeStream()
            requests = continuation
            responses = transport.bidirectionalStreaming(method, stream, options: options).makeAsyncIterator()
        }

        func ask(_ request: Grpc_Reflection_V1_ServerReflectionRequest.MessageRequest) async throws
            -> Grpc_Reflection_V1_ServerReflectionResponse.MessageResponse
        {
            var r = Grpc_Reflection_V1_ServerReflectionRequest()
            r.messageRequest = request
            requests.yield(r)
            guard let answer = try await responses.next() else {
                throw RPCError(.unavailable, "the reflection stream ended early")
            }
            if case .errorResponse(let e)? = answer.messageResponse {
                throw RPCError(StatusCode(rawValue: Int(e.errorCode)) ?? .unknown, e.errorMessage)
            }
            guard let response = answer.messageResponse else { throw RPCError(.internal, "an empty reflection answer") }
            return response
        }

        func files(_ symbol: String) async throws -> [[UInt8]] {
            guard case .fileDescriptorResponse(let f) = try await ask(.fileContainingSymbol(symbol)) else {
                throw RPCError(.internal, "reflection answered a symbol question with something else")
            }
            return f.fileDescriptorProto
        }

        func close() { requests.finish() }
    }

    func ask(_ method: MethodDescriptor, _ skipping: Set<String>, _ options: CallOptions) async throws -> Answer {
        let c = Conversation(transport, method, options)
        defer { c.close() }
        guard case .listServicesResponse(let list) = try await c.ask(.listServices("*")) else {
            throw RPCError(.internal, "reflection answered list_services with something else")
        }
        let services = list.service.map(\.name).filter { !skipping.contains($0) }
        var files = FileSet()
        for s in services { try files.add(try await c.files(s)) }
        return Answer(services: services, files: files.ordered)
    }

    func ask(_ method: MethodDescriptor, symbol: String, _ options: CallOptions) async throws -> [[UInt8]] {
        let c = Conversation(transport, method, options)
        defer { c.close() }
        var files = FileSet()
        try files.add(try await c.files(symbol))
        return files.ordered
    }

    /// Files by name, each once, in an order where a file's imports come before it.
    struct FileSet {
        var byName: [String: (Google_Protobuf_FileDescriptorProto, [UInt8])] = [:]
        var arrival: [String] = []

        mutating func add(_ serialized: [[UInt8]]) throws {
            for bytes in serialized {
                let file: Google_Protobuf_FileDescriptorProto
                do {
                    file = try Google_Protobuf_FileDescriptorProto(serializedBytes: bytes)
                } catch {
                    throw RPCError(.internal, "reflection sent a FileDescriptorProto that does not decode: \(error)")
                }
                let name = file.name ?? ""
                if byName[name] == nil { arrival.append(name) }
                byName[name] = (file, bytes)
            }
        }

        var ordered: [[UInt8]] {
            var seen: Set<String> = []
            var out: [[UInt8]] = []
            func visit(_ name: String) {
                guard let (file, bytes) = byName[name], seen.insert(name).inserted else { return }
                for d in file.dependency { visit(d) }
                out.append(bytes)
            }
            for name in arrival { visit(name) }
            return out
        }
    }
}
