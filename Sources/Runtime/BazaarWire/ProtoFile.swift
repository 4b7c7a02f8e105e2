/// A `.proto` file compiled into this program: its serialized `google.protobuf.FileDescriptorProto`
/// and those of the files it imports. Server reflection and the gateway read these at run time.
///
/// Generated code adds one static constant per file, e.g. `ProtoFile.shop_v1_catalog`.
public struct ProtoFile: Sendable {
    public let path: String
    public let dependencies: [ProtoFile]
    /// Every message type the file defines (nested ones included, map entries excluded).
    public let messageTypes: [any WireMessage.Type]
    /// Every enum type the file defines.
    public let enumTypes: [any WireEnum.Type]
    private let load: @Sendable () -> [UInt8]

    public init(
        path: String, dependencies: [ProtoFile], messageTypes: [any WireMessage.Type] = [],
        enumTypes: [any WireEnum.Type] = [], bytes: @escaping @Sendable () -> [UInt8]
    ) {
        self.path = path
        self.dependencies = dependencies
        self.messageTypes = messageTypes
        self.enumTypes = enumTypes
        self.load = bytes
    }

    /// Message types of this file and its imports, by fully-qualified protobuf name.
    public var messageTypesByName: [String: any WireMessage.Type] {
        var out: [String: any WireMessage.Type] = [:]
        for f in withDependencies { for t in f.messageTypes { out[t.protoMessageName] = t } }
        return out
    }

    /// The serialized `FileDescriptorProto`.
    public var serializedDescriptor: [UInt8] { load() }

    /// This file and everything it imports, each once, dependencies first.
    public var withDependencies: [ProtoFile] {
        var seen: Set<String> = []
        var out: [ProtoFile] = []
        func walk(_ f: ProtoFile) {
            guard seen.insert(f.path).inserted else { return }
            f.dependencies.forEach(walk)
            out.append(f)
        }
        walk(self)
        return out
    }
}
