import Glibc
import Synchronization

/// Cheap random numbers for choices that need spread, not secrecy (load-balancer draws, trace and
/// span ids): splitmix64 over one atomic counter, seeded from the system once. The system
/// generator makes a getrandom(2) system call per number.
public final class SplitMix64: Sendable {
    private let state = Atomic<UInt64>(UInt64.random(in: 1...UInt64.max))

    public init() {}

    /// A well-mixed 64-bit number (never 0).
    public func next() -> UInt64 {
        var z = state.wrappingAdd(0x9E37_79B9_7F4A_7C15, ordering: .relaxed).newValue
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        z ^= z >> 31
        return z == 0 ? 1 : z
    }
}

/// The process's environment variables, read once per call (configuration is read at start-up).
public enum ProcessEnvironment {
    public static var current: [String: String] {
        var out: [String: String] = [:]
        var p = environ
        while let entry = p.pointee {
            let s = String(cString: entry)
            if let eq = s.firstIndex(of: "=") { out[String(s[..<eq])] = String(s[s.index(after: eq)...]) }
            p += 1
        }
        return out
    }
}

extension Duration {
    /// This duration in seconds, as a `Double`.
    public var inSeconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}

extension StringProtocol {
    /// The text without leading and trailing characters from `set` (e.g. `" \t\n"`).
    public func trimming(_ set: String) -> String {
        var s = Substring(self)
        while let f = s.first, set.contains(f) { s = s.dropFirst() }
        while let l = s.last, set.contains(l) { s = s.dropLast() }
        return String(s)
    }
}

/// The CPUs this process may use: the online cores, capped by the cgroup v2 quota (`cpu.max`),
/// so that a 2-CPU pod on a 64-core node runs 2 loops and 2 password hashes at once, not 64.
public enum CPUBudget {
    public static let count: Int = {
        let online = max(1, sysconf(Int32(_SC_NPROCESSORS_ONLN)))
        guard let quota = quota(cpuMax: readSmallFile("/sys/fs/cgroup/cpu.max")) else { return online }
        return max(1, min(online, quota))
    }()

    /// Whole CPUs from a `cpu.max` line (`200000 100000` -> 2, `150000 100000` -> 2,
    /// `max 100000` -> nil).
    public static func quota(cpuMax: String?) -> Int? {
        guard let parts = cpuMax?.split(separator: " "), parts.count == 2,
            let quota = Double(parts[0].trimming(" \n")), let period = Double(parts[1].trimming(" \n")), period > 0,
            quota > 0
        else { return nil }
        return Int((quota / period).rounded(.up))
    }

    static func readSmallFile(_ path: String) -> String? {
        guard let f = fopen(path, "r") else { return nil }
        defer { fclose(f) }
        var buffer = [CChar](repeating: 0, count: 128)
        guard fgets(&buffer, Int32(buffer.count), f) != nil else { return nil }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
