import BazaarCore
import Glibc
import Synchronization

/// The TLS material of a server or channel, reloadable while it runs: certificate rotation.
///
/// Each new handshake takes the current context; a reload swaps in a new `SSL_CTX` built from the
/// files as they are now, and connections made earlier keep the context they started with, so
/// rotation drops nothing. A reload that cannot build a usable context (a half-written file, a key
/// that does not match its certificate yet) keeps the old material and is tried again on the next
/// check. One set of credentials can serve many channels (the mesh shares one across the
/// connections to every replica of an upstream), so the files are loaded and watched once.
public final class TLSCredentials: Sendable {
    public let configuration: TLSConfiguration
    let isServer: Bool
    private let state: Lock<(context: TLSContext, stamps: [FileStamp])>
    private let watcher = Lock<TLSReloadWatcher?>(nil)

    /// Loads the files now; a missing file or a key that does not match throws ``TLSError``.
    public init(_ configuration: TLSConfiguration, server: Bool = false) throws {
        self.configuration = configuration
        self.isServer = server
        let stamps = Self.stamps(configuration)
        state = Lock((try TLSContext(configuration, server: server), stamps))
        Self.registry.withLock { list in
            list.removeAll { $0.value == nil }
            list.append(WeakCredentials(value: self))
        }
    }

    deinit { watcher.withLock { $0?.stop() } }

    /// Checks the files every `interval` (and on SIGHUP when asked) on `loop`. The first call
    /// starts the checks; later ones change nothing.
    public func watch(on loop: EventLoop, every interval: Duration?, onSIGHUP: Bool) {
        guard interval != nil || onSIGHUP else { return }
        watcher.withLock { w in
            if w == nil { w = TLSReloadWatcher(loop: loop, credentials: self, interval: interval, onSIGHUP: onSIGHUP) }
        }
    }

    public func stopWatching() {
        watcher.withLock { w in
            w?.stop()
            w = nil
        }
    }

    private struct WeakCredentials: @unchecked Sendable { weak var value: TLSCredentials? }
    /// Every live set of credentials in the process, so that one SIGHUP reloads the server's and
    /// the channels' alike (libevent delivers a signal to one loop only).
    private static let registry = Lock<[WeakCredentials]>([])
    static var all: [TLSCredentials] { registry.withLock { $0.compactMap(\.value) } }

    /// The context new connections use.
    var current: TLSContext { state.withLock { $0.context } }

    enum ReloadOutcome: Equatable {
        case unchanged
        case reloaded
        case failed(String)
    }

    /// Rebuilds the context when a file changed since the last load (or always, when `force`).
    func reload(force: Bool = false) -> ReloadOutcome {
        let now = Self.stamps(configuration)
        let changed = state.withLock { $0.stamps != now }
        guard changed || force else { return .unchanged }
        do {
            let context = try TLSContext(configuration, server: isServer)
            state.withLock { $0 = (context, now) }
            return .reloaded
        } catch {
            return .failed("\(error)")
        }
    }

    /// What identifies a file's content without reading it: a rename (Kubernetes swaps a symlink)
    /// changes the inode, a rewrite the modification time or size.
    struct FileStamp: Equatable {
        var device: UInt64 = 0, inode: UInt64 = 0, size: Int64 = 0, seconds: Int = 0, nanoseconds: Int = 0
    }

    private static func stamps(_ c: TLSConfiguration) -> [FileStamp] {
        [c.certificateChainFile, c.privateKeyFile, c.trustRootsFile].map { path in
            var st = stat()
            guard let path, stat(path, &st) == 0 else { return FileStamp() }
            return FileStamp(
                device: UInt64(st.st_dev), inode: UInt64(st.st_ino), size: Int64(st.st_size),
                seconds: st.st_mtim.tv_sec, nanoseconds: st.st_mtim.tv_nsec)
        }
    }
}

/// Checks TLS files for changes on a timer and on SIGHUP, on one loop, and reloads them.
final class TLSReloadWatcher: @unchecked Sendable {
    private let loop: EventLoop
    // Weak: the credentials own their watcher.
    @exclusivity(unchecked) private weak var credentials: TLSCredentials?
    private let interval: Duration?
    @exclusivity(unchecked) private var timer: LoopTimer?
    @exclusivity(unchecked) private var signal: SignalWatcher?
    @exclusivity(unchecked) private var stopped = false

    init(loop: EventLoop, credentials: TLSCredentials, interval: Duration?, onSIGHUP: Bool) {
        self.loop = loop
        self.credentials = credentials
        self.interval = interval
        loop.execute { [self] in
            if onSIGHUP {
                signal = SignalWatcher(loop: loop, signals: [SIGHUP]) {
                    for c in TLSCredentials.all { Self.check(c, force: true) }
                }
            }
            arm()
        }
    }

    private func arm() {
        guard let interval, !stopped else { return }
        timer = loop.schedule(after: interval) { [weak self] in
            guard let self, let credentials = self.credentials else { return }
            Self.check(credentials, force: false)
            self.arm()
        }
    }

    private static func check(_ credentials: TLSCredentials, force: Bool) {
        let role = credentials.isServer ? "server" : "client"
        switch credentials.reload(force: force) {
        case .unchanged: break
        case .reloaded:
            diagnostic(
                "tls: reloaded the \(role) certificate from \(credentials.configuration.certificateChainFile ?? "-")")
        case .failed(let why): diagnostic("tls: kept the previous \(role) certificate: \(why)")
        }
    }

    func stop() {
        loop.execute { [self] in
            stopped = true
            timer?.cancel()
            timer = nil
            signal?.cancel()
            signal = nil
        }
    }
}

/// One line on stderr, in one write, for events an operator must see before or without
/// structured logging (TLS reloads; the test tools' status lines).
public func diagnostic(_ line: String) {
    let bytes = Array((line + "\n").utf8)
    _ = bytes.withUnsafeBytes { Glibc.write(2, $0.baseAddress, $0.count) }
}
