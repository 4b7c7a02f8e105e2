import Foundation
import FuzzTargets
import Testing

/// Replays every committed fuzz input (the seed corpora and the regressions, `Tests/Fuzz/`)
/// through its target: fast, with no time threshold. An input that crashes kills this test
/// process, which fails the run.
@Suite struct FuzzReplayTests {
    static let fuzz = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fuzz")

    static func inputs(_ target: String) -> [URL] {
        ["corpus", "regressions"].flatMap { folder -> [URL] in
            let dir = fuzz.appendingPathComponent(folder).appendingPathComponent(target)
            return ((try? FileManager.default.contentsOfDirectory(at: dir, includingPropertiesForKeys: nil)) ?? [])
                .sorted { $0.path < $1.path }
        }
    }

    @Test(arguments: FuzzTargets.all.keys.sorted())
    func theCorpusReplaysCleanly(target: String) throws {
        let files = Self.inputs(target)
        #expect(files.count >= 3, "Tests/Fuzz/corpus/\(target) holds the target's seeds")
        for file in files {
            FuzzTargets.all[target]!(Array(try Data(contentsOf: file)))
        }
    }
}
