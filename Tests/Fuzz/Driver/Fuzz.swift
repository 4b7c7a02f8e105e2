// libFuzzer driver for the fuzz targets (Tests/Fuzz/Targets): `make fuzz` (scripts/fuzz.sh) builds
// it with -sanitize=fuzzer,address and -DFUZZING and picks the target with FUZZ_TARGET. Built
// normally, it replays the files named on the command line through the target, so that a
// crashing input can be checked in a debug build: `FUZZ_TARGET=http1 bazaar-fuzz crash-...`.
import FuzzTargets

#if canImport(Glibc)
    import Glibc
#endif

/// The target FUZZ_TARGET names (`wire` when unset); exits with the list when it names none.
func chosenTarget() -> @Sendable ([UInt8]) -> Void {
    let name = getenv("FUZZ_TARGET").map { String(cString: $0) } ?? "wire"
    guard let target = FuzzTargets.all[name] else {
        print("FUZZ_TARGET=\(name): the targets are \(FuzzTargets.all.keys.sorted().joined(separator: ", "))")
        exit(2)
    }
    return target
}

nonisolated(unsafe) var current: (@Sendable ([UInt8]) -> Void)?

/// libFuzzer's entry point (its own `main` object refers to it even though the driver below runs).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    current!(data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? [])
    return 0
}

#if FUZZING
    // swift-format-ignore: AlwaysUseLowerCamelCase
    // (libFuzzer's entry point keeps its C name.)
    @_silgen_name("LLVMFuzzerRunDriver")
    func LLVMFuzzerRunDriver(
        _ argc: UnsafeMutablePointer<CInt>,
        _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
        _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt
    ) -> CInt

    /// SwiftPM links an executable's entry point under this name; in fuzz builds it hands control to
    /// libFuzzer's driver (libFuzzer's own `main` is then not linked).
    @_cdecl("bazaar_fuzz_main")
    func fuzzerMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
        current = chosenTarget()
        var count = argc
        var vector = argv
        return LLVMFuzzerRunDriver(&count, &vector) { data, size in fuzzOne(data, size) }
    }
#else
    /// Without libFuzzer: replays the files named on the command line.
    @main
    enum Replay {
        static func main() {
            current = chosenTarget()
            for path in CommandLine.arguments.dropFirst() {
                guard let f = fopen(path, "rb") else {
                    print("cannot open \(path)")
                    continue
                }
                var buffer = [UInt8]()
                var chunk = [UInt8](repeating: 0, count: 65536)
                while true {
                    let n = fread(&chunk, 1, chunk.count, f)
                    if n <= 0 { break }
                    buffer += chunk[0..<n]
                }
                fclose(f)
                _ = buffer.withUnsafeBufferPointer { fuzzOne($0.baseAddress, $0.count) }
                print("ok \(path)")
            }
        }
    }
#endif
