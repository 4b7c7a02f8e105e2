// libFuzzer target for the wire decoder: `make fuzz` (scripts/fuzz.sh) builds it with
// -sanitize=fuzzer,address and -DFUZZING. Built normally, it replays the files named on the
// command line through the same function, so that a crashing input can be checked in a debug build.
import BazaarWire
import ConformanceProtos
import ShopAPI

#if canImport(Glibc)
import Glibc
#endif

/// Decodes the input as several message kinds (recursive, proto2 with required fields, the shop's
/// order); whatever decodes must encode again and decode to the same bytes.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
    check(Conformance_V1_AllTypes.self, bytes)
    check(Conformance_V1_Proto2Types.self, bytes)
    check(Shop_V1_Order.self, bytes)
    return 0
}

func check<M: WireMessage>(_ type: M.Type, _ bytes: [UInt8]) {
    guard let m = try? M(serializedBytes: bytes), let out = try? m.serializedBytes() else { return }
    guard let again = try? M(serializedBytes: out), let out2 = try? again.serializedBytes(), out2 == out else {
        fatalError("\(M.protoMessageName): re-encoding is not stable")
    }
}

#if FUZZING
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(_ argc: UnsafeMutablePointer<CInt>,
                         _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
                         _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt) -> CInt

/// SwiftPM links an executable's entry point under this name; in fuzz builds it hands control to
/// libFuzzer's driver (libFuzzer's own `main` is then not linked).
@_cdecl("wire_decode_fuzzer_main")
func fuzzerMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var count = argc
    var vector = argv
    return LLVMFuzzerRunDriver(&count, &vector) { data, size in fuzzOne(data, size) }
}
#else
/// Without libFuzzer: replays the files named on the command line.
@main
enum Replay {
    static func main() {
        for path in CommandLine.arguments.dropFirst() {
            guard let f = fopen(path, "rb") else { print("cannot open \(path)"); continue }
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
