import BazaarCodeGen
import Foundation
import Testing

/// The generator must handle real-world protos: Debian's grpc-proto package and protobuf's
/// well-known types, parsing and generating C and Swift for all of them.
@Suite("Real-world corpus")
struct CorpusTests {
    static let grpcRoot = "/usr/share/grpc-proto"
    static let wktRoot = "/usr/include"

    static func protos(under root: String, prefix: String = "") -> [String] {
        let base = root + (prefix.isEmpty ? "" : "/" + prefix)
        guard let e = FileManager.default.enumerator(atPath: base) else { return [] }
        return e.compactMap { $0 as? String }.filter { $0.hasSuffix(".proto") }
            .map { prefix.isEmpty ? $0 : prefix + "/" + $0 }.sorted()
    }

    /// Imports that Debian does not ship (googleapis' google/rpc, Envoy's xDS): protoc fails the same way.
    static let unavailableImports = ["google/rpc/", "envoy/", "udpa/", "xds/", "validate/"]

    @Test("every grpc-proto file parses, resolves and generates")
    func grpcProto() throws {
        let files = Self.protos(under: Self.grpcRoot)
        #expect(files.count >= 25)
        var generated = 0
        for file in files {
            var options = Options()
            options.protoPaths = [Self.grpcRoot, Self.wktRoot]
            options.files = [file]
            options.cOut = "/tmp/unused-c"
            options.swiftOut = "/tmp/unused-swift"
            do {
                let out = try Generator(options: options).generate()
                #expect(out.count == 3, "\(file): expected a header, a source and a Swift file")
                generated += 1
            } catch let e as CompileErrors {
                // Only a missing third-party import is acceptable, and it must be named precisely.
                let ok = e.diagnostics.allSatisfy { d in
                    d.message.hasPrefix("file '") && d.message.contains("not found")
                        && Self.unavailableImports.contains { d.message.contains("'" + $0) }
                }
                #expect(ok, "\(file): \(e)")
            }
        }
        #expect(generated >= files.count - 2)
    }

    @Test("every well-known type parses, resolves and generates")
    func wellKnownTypes() throws {
        let files = Self.protos(under: Self.wktRoot, prefix: "google/protobuf").filter { !$0.contains("/compiler/") }
        #expect(files.count >= 10)
        var options = Options()
        options.protoPaths = [Self.wktRoot]
        options.files = files
        options.cOut = "/tmp/unused-c"
        options.swiftOut = "/tmp/unused-swift"
        options.descriptorSetOut = "/tmp/unused.pb"
        let out = try Generator(options: options).generate()
        #expect(out.count == files.count * 3 + 1)
    }
}
