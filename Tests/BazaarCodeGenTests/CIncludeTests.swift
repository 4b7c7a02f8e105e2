import BazaarCodeGen
import Foundation
import Testing

/// A generated C header includes only the headers of the files its messages use, so a package
/// that imports `google/api/annotations.proto` for its HTTP bindings never needs
/// `descriptor.pb-c.h` (which only Bazaar's own targets can reach).
@Suite struct CIncludeTests {
    @Test func headersIncludeOnlyTheFilesTheirFieldsUse() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("bazaar-cinclude-\(UUID().uuidString)")
        try FileManager.default.createDirectory(
            at: dir.appendingPathComponent("x/v1"), withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        try """
        syntax = "proto3";
        package x.v1;
        import "google/api/annotations.proto";
        import "google/protobuf/timestamp.proto";
        import "google/protobuf/duration.proto";
        service S {
          rpc Get(Req) returns (Req) { option (google.api.http) = { get: "/v1/{id}" }; }
        }
        message Req { string id = 1; google.protobuf.Timestamp at = 2; }
        """.write(to: dir.appendingPathComponent("x/v1/s.proto"), atomically: true, encoding: .utf8)
        var options = Options()
        options.protoPaths = [dir.path, repoRoot + "/proto", "/usr/include"]
        options.files = ["x/v1/s.proto"]
        options.cOut = dir.path + "/c"
        let header = try #require(try Generator(options: options).generate().first { $0.path.hasSuffix(".pb-c.h") })
        let includes = String(decoding: header.contents, as: UTF8.self).split(separator: "\n").filter {
            $0.hasPrefix("#include")
        }
        #expect(includes == ["#include <protobuf-c/protobuf-c.h>", "#include \"google/protobuf/timestamp.pb-c.h\""])
    }
}
