import Foundation
import Testing

/// Committed generated code must be exactly what the generator makes from the .proto files.
@Suite("Generated code has not drifted")
struct GeneratedCodeTests {
    @Test("scripts/generate.sh --check finds nothing to change")
    func noDrift() throws {
        let codegen = ProcessInfo.processInfo.environment["BAZAAR_CODEGEN"]
            ?? repoRoot + "/.build/debug/bazaar-codegen"
        guard FileManager.default.isExecutableFile(atPath: codegen) else {
            Issue.record("\(codegen) is missing: build the bazaar-codegen product first")
            return
        }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/bash")
        p.arguments = [repoRoot + "/scripts/generate.sh", codegen, "--check"]
        let err = Pipe()
        p.standardError = err
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        let output = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        #expect(p.terminationStatus == 0, "run `make generate`: \(output)")
    }
}
