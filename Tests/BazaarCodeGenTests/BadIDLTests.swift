import BazaarCodeGen
import Foundation
import Testing

let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().path
let badIDL = repoRoot + "/Tests/Fixtures/bad-idl"

struct BadIDLCase: CustomStringConvertible, Sendable {
    var file: String
    var expected: String
    var description: String { file }
}

func badIDLCases() -> [BadIDLCase] {
    let files = (try? FileManager.default.contentsOfDirectory(atPath: badIDL)) ?? []
    return files.filter { $0.hasSuffix(".proto") }.sorted().compactMap { file in
        guard let text = try? String(contentsOfFile: badIDL + "/" + file, encoding: .utf8),
            let first = text.split(separator: "\n").first, first.hasPrefix("// expect: ")
        else { return nil }
        var expected = String(first.dropFirst("// expect: ".count))
        if !expected.contains(".proto:") { expected = file + ":" + expected }
        // "file:L:C: message" -> "file:L:C: error: message"
        let parts = expected.split(separator: ":", maxSplits: 3, omittingEmptySubsequences: false)
        expected = "\(parts[0]):\(parts[1]):\(parts[2]): error:\(parts[3])"
        return BadIDLCase(file: file, expected: expected)
    }
}

@Suite("Bad IDL: every broken file fails with its position and message")
struct BadIDLTests {
    @Test("there are enough cases")
    func enoughCases() {
        #expect(badIDLCases().count >= 20)
    }

    @Test("diagnostic", arguments: badIDLCases())
    func diagnostic(_ c: BadIDLCase) {
        let compiler = Compiler(protoPaths: [badIDL, repoRoot + "/proto", "/usr/include"])
        do {
            _ = try compiler.compile([c.file])
            Issue.record("\(c.file) compiled, but should fail with: \(c.expected)")
        } catch {
            let lines = error.diagnostics.map(\.description)
            #expect(lines.contains { $0.hasPrefix(c.expected) }, "got: \(lines.joined(separator: " | "))")
            // One line each, never a crash.
            #expect(lines.allSatisfy { !$0.contains("\n") })
        }
    }
}
