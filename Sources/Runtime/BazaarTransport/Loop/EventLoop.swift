import BazaarCore
import CBazaarEvent
import Glibc
import Synchronization

/// One libevent `event_base` on its own thread. Every connection lives on one loop for its whole
/// life, and all of its state is touched only on that thread.
///
/// The loop is also a `TaskExecutor`: handlers started with `Task(executorPreference: loop)` run on
/// the loop thread, so a call is served without hopping to the global pool and back.
public final class EventLoop: TaskExecutor, @unchecked Sendable {
    private enum Job: Sendable {
        case closure(@Sendable () -> Void)
        case task(UnownedJob)
    }

    let base: OpaquePointer

    /// The libevent `event_base`, for C libraries that run their own events on this loop (evdns
    /// for DNS, hiredis's libevent adapter). Use it only on the loop thread.
    public var eventBase: OpaquePointer { base }
    public let index: Int
    /// Which ``EventLoopGroup`` made this loop (a process-unique number).
    let groupID: Int
    /// The kernel's id of the loop thread (`gettid`), once it runs: what traces record as
    /// `thread.id`, and what `/proc/<pid>/task` lists.
    public var threadID: Int32 { tid.load(ordering: .acquiring) }
    private let tid = Atomic<Int32>(0)
    /// One read buffer per loop, shared by its connections (reads are synchronous on the loop
    /// thread), so an idle connection holds no buffer of its own.
    let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 << 10, alignment: 16)
    private let queue = Lock<[Job]>([])
    private let wakeupPending = Atomic<Bool>(false)
    @exclusivity(unchecked) private var wakeup: OpaquePointer!
    @exclusivity(unchecked) private var thread: pthread_t?
    private let running = Atomic<Int>(0)  // 0 new, 1 running, 2 stopped

    private static let threadingOnce: Void = {
        _ = evthread_use_pthreads()
        _ = LibraryLog.callbackOnce
    }()

    /// The thread-local slot that tells a loop thread which loop it runs.
    private static let currentKey: pthread_key_t = {
        var key = pthread_key_t()
        precondition(pthread_key_create(&key, nil) == 0, "pthread_key_create failed")
        return key
    }()

    /// The loop whose thread is calling, or `nil` off every loop thread. Handlers, their database
    /// work and their outbound calls use it to stay on the loop they started on.
    public static var current: EventLoop? {
        guard let p = pthread_getspecific(currentKey) else { return nil }
        return Unmanaged<EventLoop>.fromOpaque(p).takeUnretainedValue()
    }

    init(index: Int, groupID: Int) {
        _ = Self.threadingOnce
        self.groupID = groupID
        guard let base = event_base_new() else { fatalError("event_base_new failed") }
        self.base = base
        self.index = index
        let me = Unmanaged.passUnretained(self).toOpaque()
        wakeup = event_new(
            base, -1, Int16(EV_PERSIST),
            { _, _, arg in
                Unmanaged<EventLoop>.fromOpaque(arg!).takeUnretainedValue().drain()
            }, me)
        // A persistent event with no fd and no timeout stays pending until activated by hand.
        event_add(wakeup, nil)
    }

    deinit {
        event_free(wakeup)
        event_base_free(base)
        scratch.deallocate()
    }

    /// Starts the loop thread.
    func start() {
        var attr = pthread_attr_t()
        pthread_attr_init(&attr)
        var tid = pthread_t()
        let rc = pthread_create(
            &tid, &attr,
            { arg in
                let loop = Unmanaged<EventLoop>.fromOpaque(arg!).takeRetainedValue()
                loop.runThread()
                return nil
            }, Unmanaged.passRetained(self).toOpaque())
        pthread_attr_destroy(&attr)
        precondition(rc == 0, "pthread_create failed")
        thread = tid
        // Loops start once per process; a short wait until the thread is inside the loop is fine.
        while running.load(ordering: .acquiring) == 0 { usleep(100) }
        if let observer = TransportEvents.observer { execute { self.startLagProbe(observer) } }
    }

    private func runThread() {
        pthread_setspecific(Self.currentKey, Unmanaged.passUnretained(self).toOpaque())
        // `top -H`, `ps -L` and debuggers show which threads are loops.
        bazaar_name_thread("bazaar-loop-\(index)")
        tid.store(Int32(bazaar_thread_id()), ordering: .releasing)
        running.store(1, ordering: .releasing)
        event_base_loop(base, EVLOOP_NO_EXIT_ON_EMPTY)
        drain()
        running.store(2, ordering: .releasing)
    }

    /// Stops the loop after the jobs already queued, and waits for its thread to end.
    func stopAndWait() {
        let base = UnsafeSendable(self.base)
        execute { event_base_loopbreak(base.value) }
        // A loop cannot wait for itself (a channel released on its own loop): it stops, and its
        // thread is detached so that the system reclaims it when it ends.
        guard let thread else { return }
        if inLoop { pthread_detach(thread) } else { pthread_join(thread, nil) }
    }

    /// Whether the caller runs on this loop's thread.
    public var inLoop: Bool {
        guard let thread else { return false }
        return pthread_equal(thread, pthread_self()) != 0
    }

    /// Runs `body` on the loop thread, after what is already queued.
    public func execute(_ body: @escaping @Sendable () -> Void) {
        enqueue(.closure(body))
    }

    /// Runs `body` now when already on the loop thread, otherwise queues it: work a task on the
    /// loop starts for its own connection costs no trip through the queue.
    public func run(_ body: @escaping @Sendable () -> Void) {
        if inLoop { body() } else { execute(body) }
    }

    public func enqueue(_ job: consuming ExecutorJob) {
        enqueue(.task(UnownedJob(job)))
    }

    private func enqueue(_ job: Job) {
        queue.withLock { $0.append(job) }
        // One activation covers every job queued before the loop drains.
        if !wakeupPending.exchange(true, ordering: .acquiringAndReleasing) {
            event_active(wakeup, EV_READ, 0)
        }
    }

    private func drain() {
        while true {
            wakeupPending.store(false, ordering: .releasing)
            let jobs = queue.withLock { q -> [Job] in
                let jobs = q
                q.removeAll(keepingCapacity: true)
                return jobs
            }
            if jobs.isEmpty { return }
            for job in jobs {
                switch job {
                case .closure(let body): body()
                case .task(let job): job.runSynchronously(on: asUnownedTaskExecutor())
                }
            }
        }
    }

    /// Runs `body` on the loop thread after `delay`, unless the returned timer is cancelled first.
    /// Call it on the loop thread.
    @discardableResult
    public func schedule(after delay: Duration, _ body: @escaping () -> Void) -> LoopTimer {
        precondition(inLoop)
        let timer = LoopTimer(loop: self, body: body)
        timer.arm(delay)
        return timer
    }
}

/// A one-shot timer on a loop. Touch it only on its loop's thread.
public final class LoopTimer {
    @exclusivity(unchecked) private var event: OpaquePointer?
    @exclusivity(unchecked) private var body: (() -> Void)?
    /// Keeps the loop's event_base alive as long as this event exists: a timer released after
    /// its loop stopped (a channel dropped after its group shut down) must not free its event
    /// into a freed base.
    private let loop: EventLoop

    init(loop: EventLoop, body: @escaping () -> Void) {
        self.body = body
        self.loop = loop
        event = event_new(
            loop.base, -1, 0,
            { _, _, arg in
                // The pending timer holds one retain on itself; firing gives it back.
                let timer = Unmanaged<LoopTimer>.fromOpaque(arg!).takeRetainedValue()
                timer.fire()
            }, Unmanaged.passUnretained(self).toOpaque())
    }

    deinit { if let event { event_free(event) } }

    fileprivate func arm(_ delay: Duration) {
        var tv = timeval(delay)
        _ = Unmanaged.passRetained(self)
        event_add(event, &tv)
    }

    private func fire() {
        let body = self.body
        self.body = nil
        body?()
    }

    /// Runs `body` after `delay` instead of whatever was pending: the same libevent event, re-armed,
    /// which is cheaper than a new timer for a connection that moves from phase to phase.
    public func reschedule(after delay: Duration, _ body: @escaping () -> Void) {
        precondition(loop.inLoop)
        cancel()
        self.body = body
        arm(delay)
    }

    /// Stops the timer; its body will not run.
    public func cancel() {
        guard body != nil else { return }
        body = nil
        if event_del(event) == 0 { Unmanaged.passUnretained(self).release() }
    }
}

/// Calls back when a file descriptor is readable or writable. Touch it only on its loop's thread.
/// Public for the data layer, whose C clients (libpq) own their sockets: the loop watches them.
public final class IOWatcher {
    @exclusivity(unchecked) private var readEvent: OpaquePointer?
    @exclusivity(unchecked) private var writeEvent: OpaquePointer?
    private let onReadable: () -> Void
    private let onWritable: () -> Void
    @exclusivity(unchecked) private var reading = false
    @exclusivity(unchecked) private var writing = false
    /// Keeps the event_base alive while the events exist (see ``LoopTimer``).
    private let loop: EventLoop

    public init(loop: EventLoop, fd: Int32, onReadable: @escaping () -> Void, onWritable: @escaping () -> Void) {
        self.loop = loop
        self.onReadable = onReadable
        self.onWritable = onWritable
        let me = Unmanaged.passUnretained(self).toOpaque()
        readEvent = event_new(
            loop.base, fd, Int16(EV_READ | EV_PERSIST),
            { _, _, arg in
                Unmanaged<IOWatcher>.fromOpaque(arg!).takeUnretainedValue().onReadable()
            }, me)
        writeEvent = event_new(
            loop.base, fd, Int16(EV_WRITE | EV_PERSIST),
            { _, _, arg in
                Unmanaged<IOWatcher>.fromOpaque(arg!).takeUnretainedValue().onWritable()
            }, me)
    }

    deinit { close() }

    public func setReading(_ on: Bool) {
        guard on != reading, let readEvent else { return }
        reading = on
        if on { event_add(readEvent, nil) } else { event_del(readEvent) }
    }

    public func setWriting(_ on: Bool) {
        guard on != writing, let writeEvent else { return }
        writing = on
        if on { event_add(writeEvent, nil) } else { event_del(writeEvent) }
    }

    /// Removes both events; the watcher calls back no more.
    public func close() {
        if let readEvent { event_free(readEvent) }
        if let writeEvent { event_free(writeEvent) }
        readEvent = nil
        writeEvent = nil
    }
}

/// The loops of a process: by default one per core.
///
/// A process makes one group and hands it to everything that does I/O (servers, channels, the
/// database pool, Redis, the metrics endpoint), so that a call and all the work it causes stay on
/// the loop thread it arrived on: see ``preferredLoop()``. Whoever makes the group shuts it down,
/// after everything that uses it has closed.
public final class EventLoopGroup: Sendable {
    public let loops: [EventLoop]
    /// Process-unique, so that a loop knows whether it belongs to this group.
    let id: Int
    private let next = Atomic<Int>(0)
    private let isShutDown = Atomic<Bool>(false)
    private static let ids = Atomic<Int>(0)

    public init(count: Int = EventLoopGroup.coreCount) {
        let id = Self.ids.add(1, ordering: .relaxed).newValue
        self.id = id
        loops = (0..<max(1, count)).map { EventLoop(index: $0, groupID: id) }
        for loop in loops { loop.start() }
    }

    /// The calling thread's loop when it is one of this group's, else `nil`.
    public var currentLoop: EventLoop? {
        guard let loop = EventLoop.current, loop.groupID == id else { return nil }
        return loop
    }

    /// Where new work for the caller should live: the caller's own loop when it runs on one of
    /// this group's (a handler opening a database connection or an outbound call keeps it on its
    /// thread), otherwise the loops in turn.
    public func preferredLoop() -> EventLoop { currentLoop ?? nextLoop() }

    /// The number of online cores.
    /// One loop per CPU the process may use (the cgroup quota counts: ``CPUBudget``).
    public static var coreCount: Int { CPUBudget.count }

    /// Loops in turn, for spreading new connections.
    public func nextLoop() -> EventLoop {
        loops[next.add(1, ordering: .relaxed).oldValue % loops.count]
    }

    /// Stops every loop and waits for the threads to end. Later calls do nothing.
    public func shutdown() {
        guard !isShutDown.exchange(true, ordering: .acquiringAndReleasing) else { return }
        for loop in loops { loop.stopAndWait() }
    }
}

extension timeval {
    init(_ d: Duration) {
        let (s, atto) = d.components
        let us = max(0, atto / 1_000_000_000_000)
        self.init(tv_sec: Int(max(0, s)), tv_usec: Int(us))
    }
}

/// A value the compiler cannot prove `Sendable` but that is only used on one thread at a time.
package struct UnsafeSendable<T>: @unchecked Sendable {
    package let value: T
    package init(_ value: T) { self.value = value }
}

/// Runs `body` with the process's event loops, made for it and stopped when it returns or throws:
/// the structured way for an executable to own its one group. Everything made inside on the group
/// (servers, channels, pools) must be closed before `body` ends.
///
/// ```swift
/// try await withEventLoopGroup { loops in
///     let db = PostgresPool(conninfo: url, group: loops)
///     try await RPCServer(configuration: config, services: [Catalog(db: db)], group: loops).run()
///     db.close()
/// }
/// ```
public func withEventLoopGroup<T>(
    count: Int = EventLoopGroup.coreCount, _ body: (EventLoopGroup) async throws -> T
) async rethrows -> T {
    let group = EventLoopGroup(count: count)
    defer { group.shutdown() }
    return try await body(group)
}
