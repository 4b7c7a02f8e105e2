import BazaarCore
import BazaarWire
import GRPCProtos

/// gRPC server reflection, `grpc.reflection.v1` and `grpc.reflection.v1alpha`, answered from the
/// file descriptors compiled into the program, so that grpcurl-style tools can list the services,
/// describe methods and messages, and build requests.
///
/// Both versions are the same protocol on the wire, so one implementation serves both paths.
public final class ReflectionService: Grpc_Reflection_V1_ServerReflection.ServiceProtocol {
    private let serviceNames: [String]
    private let files: [String: ProtoFile]
    private let fileOfSymbol: [String: String]

    /// - Parameter services: what the server serves; reflection and health describe themselves
    ///   too when they are among them.
    public init(services: [ServiceDescriptor]) {
        var files: [String: ProtoFile] = [:]
        var symbols: [String: String] = [:]
        var names: [String] = []
        for service in services + [
            Grpc_Reflection_V1_ServerReflection.descriptor, Grpc_Reflection_V1alpha_ServerReflection.descriptor,
        ] {
            if !names.contains(service.name) { names.append(service.name) }
            symbols[service.name] = service.file.path
            for m in service.methods { symbols["\(service.name).\(m.method)"] = service.file.path }
            for f in service.file.withDependencies {
                files[f.path] = f
                for t in f.messageTypes where symbols[t.protoMessageName] == nil {
                    symbols[t.protoMessageName] = f.path
                }
                for e in f.enumTypes where symbols[e.protoEnumName] == nil { symbols[e.protoEnumName] = f.path }
            }
        }
        serviceNames = names
        self.files = files
        fileOfSymbol = symbols
    }

    /// Reflection over every service of `services`, plus itself.
    public convenience init(serving services: [any RPCService]) {
        self.init(services: services.map { type(of: $0).serviceDescriptor })
    }

    public var handlers: [RPCHandler] {
        let body:
            @Sendable (
                RPCStream<Grpc_Reflection_V1_ServerReflectionRequest>,
                RPCWriter<Grpc_Reflection_V1_ServerReflectionResponse>,
                ServerContext
            ) async throws -> Void = { try await self.serverReflectionInfo($0, responses: $1, context: $2) }
        return [
            .bidirectionalStreaming(Grpc_Reflection_V1_ServerReflection.Method.serverReflectionInfo, body),
            .bidirectionalStreaming(Grpc_Reflection_V1alpha_ServerReflection.Method.serverReflectionInfo, body),
        ]
    }

    public func serverReflectionInfo(
        _ requests: RPCStream<Grpc_Reflection_V1_ServerReflectionRequest>,
        responses: RPCWriter<Grpc_Reflection_V1_ServerReflectionResponse>, context: ServerContext
    ) async throws {
        for try await request in requests {
            var response = Grpc_Reflection_V1_ServerReflectionResponse()
            response.validHost = request.host
            response.originalRequest = request
            response.messageResponse = answer(request.messageRequest)
            try await responses.write(response)
        }
    }

    func answer(_ request: Grpc_Reflection_V1_ServerReflectionRequest.MessageRequest?)
        -> Grpc_Reflection_V1_ServerReflectionResponse.MessageResponse
    {
        switch request {
        case .listServices:
            return .listServicesResponse(
                .init(service: serviceNames.map { Grpc_Reflection_V1_ServiceResponse(name: $0) }))
        case .fileByFilename(let name):
            guard let file = files[name] else { return error(.notFound, "file '\(name)' not found") }
            return fileResponse(file)
        case .fileContainingSymbol(let symbol):
            let trimmed = symbol.hasPrefix(".") ? String(symbol.dropFirst()) : symbol
            guard let path = fileOfSymbol[trimmed], let file = files[path] else {
                return error(.notFound, "symbol '\(symbol)' not found")
            }
            return fileResponse(file)
        case .fileContainingExtension(let e):
            return error(.notFound, "no extension \(e.extensionNumber) of '\(e.containingType)' is known")
        case .allExtensionNumbersOfType(let type):
            guard fileOfSymbol[type] != nil else { return error(.notFound, "type '\(type)' not found") }
            return .allExtensionNumbersResponse(.init(baseTypeName: type, extensionNumber: []))
        case nil:
            return error(.invalidArgument, "empty reflection request")
        }
    }

    /// The file and everything it imports, so that a client can build the types in one round trip.
    private func fileResponse(_ file: ProtoFile) -> Grpc_Reflection_V1_ServerReflectionResponse.MessageResponse {
        .fileDescriptorResponse(
            .init(fileDescriptorProto: file.withDependencies.reversed().map(\.serializedDescriptor)))
    }

    private func error(_ code: StatusCode, _ message: String)
        -> Grpc_Reflection_V1_ServerReflectionResponse.MessageResponse
    {
        .errorResponse(.init(errorCode: Int32(code.rawValue), errorMessage: message))
    }
}
