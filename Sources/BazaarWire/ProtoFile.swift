/// A `.proto` file compiled into this program: its serialized `google.protobuf.FileDescriptorProto`
/// and those of the files it imports. Server reflection and the gateway read these at run time.
///
/// Generated code adds one static constant per file, e.g. `ProtoFile.shop_v1_catalog`.
public struct ProtoFile: Sendable {
    public let path: String
    public let dependencies: [ProtoFile]
    private let load: @Sendable () -> [UInt8]

    public init(path: String, dependencies: [ProtoFile], bytes: @escaping @Sendable () -> [UInt8]) {
        self.path = path
        self.dependencies = dependencies
        self.load = bytes
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
