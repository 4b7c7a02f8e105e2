import BazaarCore
import BazaarTransport
import GRPCProtos
import Synchronization

/// A client for one upstream service across all its replicas: the mesh's answer to a sidecar.
///
/// It resolves the target (``Target``), keeps one HTTP/2 connection per endpoint, watches each
/// endpoint's health, balances calls over the usable ones (``LoadBalancingPolicy``), retries
/// what is safe to retry under a budget (``RetryPolicy``, ``RetryThrottle``), ejects failing
/// endpoints and probes them back (``CircuitBreaker``), caps calls in flight (``Bulkhead``), and
/// gives calls made inside a handler the inbound call's remaining deadline. Generated clients take
/// it as their transport:
///
/// ```swift
/// let catalog = try MeshChannel(target: "dns:///catalog-headless:8443", security: .mutualTLS(tls),
///                               mesh: .fromEnvironment(upstream: "catalog"))
/// let client = Shop_V1_CatalogService.Client(transport: catalog)
/// ```
public final class MeshChannel: ClientTransport, Sendable {
    public let target: Target
    private let targetName: String
    public let configuration: MeshConfiguration
    private let connection: ChannelConfiguration
    /// The settings each endpoint's connection gets (for diagnostics and tests).
    var connectionConfiguration: ChannelConfiguration { connection }
    /// Loaded once and shared by the connections to every endpoint (and reloaded once).
    private let credentials: TLSCredentials?
    private let group: EventLoopGroup
    private let ownsGroup: Bool
    private let resolver: any Resolver
    private let interceptors: [any RPCInterceptor]
    private let observer: (any ClientCallObserver)?
    private let throttle: RetryThrottle
    private let bulkhead: Bulkhead
    private let state = Lock(State())
    private let ejected = Atomic<Int>(0)
    private let intervalTask = Lock<Task<Void, Never>?>(nil)

    private struct State {
        var subchannels: [Endpoint: Subchannel] = [:]
        var picker = Picker<Subchannel>(policy: .pickFirst, candidates: [])
        /// Bumped on every picker rebuild; waiters compare it to know they missed nothing.
        var epoch: UInt64 = 0
        var waiters: [UInt64: CheckedContinuation<Void, Never>] = [:]
        var nextWaiter: UInt64 = 0
        var resolutionError: RPCError?
        var resolved = false
        var closed = false
        /// When the last usable endpoint went (or the channel started without one); `nil` while
        /// some endpoint is usable. Calls wait for an endpoint until `unavailableGrace` after it.
        var unusableSince: ContinuousClock.Instant? = .now
    }

    /// - Parameters:
    ///   - target: `dns:///name:port`, `host:port[,host:port…]`; see ``Target``.
    ///   - security: mutual TLS (the default for the mesh) or plaintext, per connection.
    ///   - connection: HTTP/2, keepalive and backoff settings for every endpoint's connection;
    ///     its endpoints and security are replaced.
    ///   - observer: sees every call start and end (telemetry), cheaper than an interceptor.
    ///   - group: the process's loops. Each endpoint gets a connection from every loop, and a
    ///     call uses its caller's (a handler's outbound calls stay on its thread). By default the
    ///     channel runs one loop of its own.
    public init(
        target: String, security: TransportSecurity, mesh: MeshConfiguration = MeshConfiguration(),
        connection: ChannelConfiguration? = nil, interceptors: [any RPCInterceptor] = [],
        observer: (any ClientCallObserver)? = nil, group: EventLoopGroup? = nil
    ) throws {
        let parsed = try Target(parsing: target)
        self.target = parsed
        targetName = parsed.description
        configuration = mesh
        var base = connection ?? ChannelConfiguration(endpoints: [], security: security)
        if connection == nil { base.tlsReloadInterval = mesh.tlsReloadInterval }
        base.security = security
        if case .mutualTLS(var tls) = security, case .dns(let host, _, _) = parsed, tls.serverHostname == nil,
            tls.expectedServerIdentity == nil
        {
            // Endpoints are addresses; the certificate is checked against the name asked for.
            tls.serverHostname = host
            base.security = .mutualTLS(tls)
        }
        self.connection = base
        ownsGroup = group == nil
        self.group = group ?? EventLoopGroup(count: 1)
        if case .mutualTLS(let tls) = base.security {
            credentials = try TLSCredentials(tls)
            credentials?.watch(on: self.group.loops[0], every: base.tlsReloadInterval, onSIGHUP: false)
        } else {
            credentials = nil
        }
        self.interceptors = interceptors
        self.observer = observer
        throttle = RetryThrottle(maxTokens: mesh.retryBudgetTokens, tokenRatio: mesh.retryBudgetRatio)
        bulkhead = Bulkhead(limit: mesh.maxConcurrentCalls, overflow: mesh.bulkheadOverflow)
        switch parsed {
        case .dns(let host, let port, let ns):
            resolver = DNSResolver(
                host: host, port: port, nameserver: ns ?? mesh.dnsNameserver, interval: mesh.dnsRefreshInterval,
                minimumInterval: mesh.dnsMinimumRefreshInterval, loop: self.group.loops[0])
        case .endpoints(let list):
            resolver = StaticResolver(list)
        }
        state.withLock { $0.picker = Picker(policy: mesh.loadBalancing, candidates: []) }
        resolver.start { [weak self] result in self?.resolved(result) }
        if let policy = mesh.outlierDetection, policy.failureRateThreshold > 0 {
            let task = Task { [weak self] in
                while !Task.isCancelled {
                    try? await Task.sleep(for: policy.interval)
                    guard let self else { return }
                    self.endOutlierInterval()
                }
            }
            intervalTask.withLock { $0 = task }
        }
    }

    deinit {
        intervalTask.withLock { $0?.cancel() }
        resolver.stop()
        if ownsGroup { group.shutdown() }
    }

    /// The endpoints the channel knows, with their state; for diagnostics and tests.
    public var endpoints: [(endpoint: Endpoint, state: ConnectivityState, healthy: Bool?, ejected: Bool)] {
        state.withLock { s in
            s.subchannels.values.sorted { $0.endpoint.description < $1.endpoint.description }.map {
                ($0.endpoint, $0.connectivity, $0.healthy, $0.isEjected)
            }
        }
    }

    /// Closes every connection; calls in flight fail with `UNAVAILABLE`.
    public func shutdown() async {
        intervalTask.withLock { $0?.cancel() }
        resolver.stop()
        let (subs, waiters) = state.withLock { s -> ([Subchannel], [CheckedContinuation<Void, Never>]) in
            s.closed = true
            defer {
                s.subchannels = [:]
                s.waiters = [:]
            }
            return (Array(s.subchannels.values), Array(s.waiters.values))
        }
        for w in waiters { w.resume() }
        for s in subs {
            s.healthTask?.cancel()
            for lane in s.lanes { await lane.shutdown() }
        }
        if ownsGroup { group.shutdown() }
    }

    // MARK: endpoints

    /// One endpoint: a connection to it from every loop of the group (its lanes), so that a call
    /// goes out and its answer comes back on the loop of the task that made it.
    final class Subchannel: PickCandidate, @unchecked Sendable {
        let endpoint: Endpoint
        let lanes: [GRPCChannel]
        /// The lane health checks use.
        var transport: GRPCChannel { lanes[0] }
        private let inFlight = Atomic<Int>(0)
        /// Set once the endpoint left the resolver's list; closed when its last call ends.
        let removed = Atomic<Bool>(false)
        /// Cheap check on the hot path: only a breaker that tripped needs its lock.
        let tripped = Atomic<Bool>(false)
        /// Calls this endpoint has answered so far: a call that timed out while this moved was
        /// the caller's (or its method's) slowness, not a hung endpoint (see `blamesEndpoint`).
        let answered = Atomic<UInt64>(0)
        let breaker: Lock<CircuitBreaker>
        // Guarded by the channel's state lock.
        var connectivity = ConnectivityState.idle
        /// `nil` until the first health answer (when health checking is on).
        var healthy: Bool?
        var healthTask: Task<Void, Never>?

        init(endpoint: Endpoint, lanes: [GRPCChannel], outlier: OutlierDetectionPolicy?, healthCheck: Bool) {
            self.endpoint = endpoint
            self.lanes = lanes
            breaker = Lock(CircuitBreaker(policy: outlier ?? OutlierDetectionPolicy()))
            healthy = healthCheck ? nil : true
        }

        /// The lane for a call from the calling thread: its own loop's when that is ready, else
        /// any ready one (a hop, while the local connection is still being made), else its own.
        func lane(in group: EventLoopGroup) -> GRPCChannel {
            if lanes.count == 1 { return lanes[0] }
            let here = group.currentLoop?.index ?? 0
            if lanes[here].connectivity == .ready { return lanes[here] }
            return lanes.first { $0.connectivity == .ready } ?? lanes[here]
        }

        /// The endpoint's state over its lanes: READY when any lane is.
        var laneConnectivity: ConnectivityState {
            let states = lanes.map(\.connectivity)
            for s in [ConnectivityState.ready, .connecting, .transientFailure, .idle] where states.contains(s) {
                return s
            }
            return .shutdown
        }

        func close() { for l in lanes { l.close() } }

        var outstanding: Int { inFlight.load(ordering: .relaxed) }
        func begin() { inFlight.add(1, ordering: .relaxed) }
        /// Returns whether the subchannel is now idle.
        func end() -> Bool { inFlight.subtract(1, ordering: .relaxed).newValue == 0 }

        var isEjected: Bool {
            guard tripped.load(ordering: .relaxed) else { return false }
            return breaker.withLock {
                if case .open(let until) = $0.state { return .now < until } else { return false }
            }
        }

        /// Whether a call may go here now (a half-open breaker admits one probe at a time).
        func admit() -> Bool {
            guard tripped.load(ordering: .relaxed) else { return true }
            return breaker.withLock { $0.admit(now: .now) }
        }
    }

    private func resolved(_ result: Result<[Endpoint], RPCError>) {
        // Channels for new endpoints are made outside the lock; they cannot fail, since the TLS
        // material is already loaded.
        let known = state.withLock { Set($0.subchannels.keys) }
        var fresh: [Endpoint: Subchannel] = [:]
        if case .success(let list) = result {
            for e in list where !known.contains(e) && fresh[e] == nil {
                var c = connection
                c.endpoints = [e]
                let lanes = group.loops.compactMap {
                    try? GRPCChannel(configuration: c, on: $0, credentials: credentials)
                }
                guard lanes.count == group.loops.count else {
                    for l in lanes { l.close() }
                    continue
                }
                fresh[e] = Subchannel(
                    endpoint: e, lanes: lanes, outlier: configuration.outlierDetection,
                    healthCheck: configuration.healthCheck)
            }
        }
        var added: [Subchannel] = []
        var gone: [Subchannel] = []
        var unused: [Subchannel] = []
        state.withLock { s in
            guard !s.closed else {
                unused = Array(fresh.values)
                return
            }
            s.resolved = true
            switch result {
            case .failure(let e):
                s.resolutionError = e
                if !s.subchannels.isEmpty { return }  // keep what we have
            case .success(let list):
                s.resolutionError = nil
                let wanted = Set(list)
                for (e, sub) in s.subchannels where !wanted.contains(e) {
                    s.subchannels[e] = nil
                    gone.append(sub)
                }
                for (e, sub) in fresh {
                    if s.subchannels[e] == nil {
                        s.subchannels[e] = sub
                        added.append(sub)
                    } else {
                        unused.append(sub)  // another update added it meanwhile
                    }
                }
            }
            rebuildPicker(&s)
        }
        for sub in unused { sub.close() }
        for sub in gone {
            sub.removed.store(true, ordering: .relaxed)
            sub.healthTask?.cancel()
            // An ejected endpoint that leaves no longer counts against the ejection cap.
            if sub.tripped.exchange(false, ordering: .relaxed) { ejected.subtract(1, ordering: .relaxed) }
            if sub.outstanding == 0 { sub.close() }
        }
        for sub in added {
            for lane in sub.lanes {
                lane.connect { [weak self, weak sub] _ in
                    guard let self, let sub else { return }
                    self.connectivityChanged(sub, sub.laneConnectivity)
                }
            }
        }
    }

    private func connectivityChanged(_ sub: Subchannel, _ newState: ConnectivityState) {
        var startHealth = false
        var refresh = false
        state.withLock { s in
            guard s.subchannels[sub.endpoint] === sub else { return }
            let old = sub.connectivity
            sub.connectivity = newState
            if newState == .ready && configuration.healthCheck && sub.healthTask == nil { startHealth = true }
            // A failure or a lost connection may mean the replica moved: look again.
            if newState == .transientFailure || (old == .ready && newState != .ready) { refresh = true }
            rebuildPicker(&s)
        }
        if refresh { resolver.refresh() }
        if startHealth { startHealthWatch(sub) }
    }

    /// Watches `grpc.health.v1.Health` on one endpoint for as long as it is in use (gRFC A17).
    private func startHealthWatch(_ sub: Subchannel) {
        let service = configuration.healthServiceName
        let task = Task { [weak self, weak sub] in
            var pause = Duration.milliseconds(100)
            while !Task.isCancelled {
                guard let sub else { return }
                let client = Grpc_Health_V1_Health.Client(transport: sub.transport)
                do {
                    for try await answer in client.watch(
                        .init(service: service), options: CallOptions(waitForReady: true))
                    {
                        self?.setHealth(sub, answer.status == .serving)
                        pause = .milliseconds(100)
                    }
                    // The server ended the watch (it does when it drains, after NOT_SERVING): the
                    // last answer stands until a new watch answers.
                } catch let e as RPCError where e.code == .unimplemented {
                    // The server has no health service: take it as healthy, and stop asking.
                    self?.setHealth(sub, true)
                    return
                } catch {
                    // The watch failed (connection lost): unknown until it answers again.
                    self?.setHealth(sub, nil)
                }
                try? await Task.sleep(for: pause)
                pause = min(pause * 2, .seconds(5))
            }
        }
        state.withLock { _ in sub.healthTask = task }
    }

    private func setHealth(_ sub: Subchannel, _ healthy: Bool?) {
        state.withLock { s in
            guard sub.healthy != healthy else { return }
            sub.healthy = healthy
            rebuildPicker(&s)
        }
    }

    /// Recomputes the usable endpoints (ready, healthy, not ejected) and wakes waiting calls.
    private func rebuildPicker(_ s: inout State) {
        let now = ContinuousClock.now
        let live = s.subchannels.values.sorted { $0.endpoint.description < $1.endpoint.description }
            .filter { $0.connectivity == .ready && $0.healthy == true }
        var usable = live.filter { sub in
            !sub.tripped.load(ordering: .relaxed)
                || sub.breaker.withLock { b in
                    if case .open(let until) = b.state { return now >= until }
                    return true
                }
        }
        // Never refuse every endpoint because of ejections alone ("panic mode").
        if usable.isEmpty { usable = live }
        s.picker = Picker(policy: configuration.loadBalancing, candidates: usable)
        s.epoch &+= 1
        if usable.isEmpty {
            if s.unusableSince == nil { s.unusableSince = now }
        } else {
            s.unusableSince = nil
        }
        if !usable.isEmpty || allFailed(s) {
            for w in s.waiters.values { w.resume() }
            s.waiters.removeAll()
        }
    }

    /// Nothing is usable and nothing is on its way: fail-fast calls fail now.
    private func allFailed(_ s: State) -> Bool {
        if s.closed { return true }
        if !s.resolved { return false }
        if s.subchannels.isEmpty { return s.resolutionError != nil }
        return s.subchannels.values.allSatisfy { $0.connectivity == .transientFailure || $0.connectivity == .shutdown }
    }

    private func unavailable(_ s: State) -> RPCError {
        if s.closed { return RPCError(.unavailable, "the channel to \(target) is closed") }
        if let e = s.resolutionError, s.subchannels.isEmpty { return e }
        if s.subchannels.isEmpty { return RPCError(.unavailable, "\(target): no endpoints") }
        let states = s.subchannels.values.map {
            "\($0.endpoint) \($0.connectivity)\($0.healthy == false ? " NOT_SERVING" : "")"
        }
        return RPCError(.unavailable, "\(target): no endpoint is usable (\(states.sorted().joined(separator: ", ")))")
    }

    /// An endpoint for the next attempt, waiting while connections are on their way, and while
    /// every endpoint fails for less than ``MeshConfiguration/unavailableGrace``.
    private func pick(waitForReady: Bool, deadline: ContinuousClock.Instant?) async throws -> Subchannel {
        while true {
            let (picker, epoch) = state.withLock { ($0.picker, $0.epoch) }
            if let sub = picker.pick(admit: { $0.admit() }) { return sub }
            // The slow path: nothing usable now. Fail fast, or wait for the picker to change.
            let (error, closed, holdUntil) = state.withLock {
                s -> (RPCError?, Bool, ContinuousClock.Instant?) in
                (allFailed(s) ? unavailable(s) : nil, s.closed, graceEnd(s))
            }
            if let error, !waitForReady {
                let now = ContinuousClock.now
                guard !closed, let holdUntil, now < holdUntil else { throw error }
                // The call's time ran out while every endpoint failed: UNAVAILABLE is the cause
                // (and what callers and retry policies act on), not the deadline.
                if let deadline, now >= deadline { throw error }
                // Every endpoint fails, but not for long yet: wait for one to come back, for the
                // grace to end or for the deadline (the next turn then fails fast).
                try await waitForChange(
                    after: epoch, deadline: nil, wakeAt: deadline.map { min($0, holdUntil) } ?? holdUntil)
                continue
            }
            if let error, closed { throw error }
            try await waitForChange(after: epoch, deadline: deadline)
        }
    }

    /// Until when a call waits for an endpoint while every known one fails; `nil` when it should
    /// not (no grace configured, the channel closed, or the name does not resolve: a wrong name
    /// does not come back within seconds).
    private func graceEnd(_ s: State) -> ContinuousClock.Instant? {
        guard configuration.unavailableGrace > .zero, !s.closed, !s.subchannels.isEmpty, let since = s.unusableSince
        else { return nil }
        return since + configuration.unavailableGrace
    }

    /// Waits until the picker changes after `epoch`, the call is cancelled, or `wakeAt` (by
    /// default the call's deadline) comes; throws when the call's deadline has passed.
    private func waitForChange(
        after epoch: UInt64, deadline: ContinuousClock.Instant?, wakeAt: ContinuousClock.Instant? = nil
    ) async throws {
        let wakeAt = wakeAt ?? deadline
        let id = state.withLock { s -> UInt64 in
            s.nextWaiter &+= 1
            return s.nextWaiter
        }
        let timer = wakeAt.map { d in
            Task { [weak self] in
                try? await Task.sleep(until: d, clock: .continuous)
                self?.wake(id)
            }
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                let now = state.withLock { s -> Bool in
                    // The deadline and cancellation are checked here too: a timer that fired (or a
                    // cancellation that came) before this waiter was registered woke nobody, and
                    // the call would wait for ever (a load that never ended under ThreadSanitizer).
                    if s.epoch != epoch || s.closed || Task.isCancelled
                        || wakeAt.map({ ContinuousClock.now >= $0 }) == true
                    {
                        return true
                    }
                    s.waiters[id] = c
                    return false
                }
                if now { c.resume() }
            }
        } onCancel: {
            self.wake(id)
        }
        timer?.cancel()
        if Task.isCancelled { throw RPCError(.cancelled, "call cancelled while waiting for an endpoint") }
        if let deadline, ContinuousClock.now >= deadline {
            throw RPCError(.deadlineExceeded, "deadline exceeded while waiting for an endpoint of \(target)")
        }
    }

    private func wake(_ id: UInt64) {
        state.withLock { $0.waiters.removeValue(forKey: id) }?.resume()
    }

    // MARK: outcomes

    private func record(_ sub: Subchannel, _ verdict: OutlierDetectionPolicy.Verdict) {
        if sub.end() && sub.removed.load(ordering: .relaxed) { sub.close() }
        if verdict == .answered { sub.answered.add(1, ordering: .relaxed) }
        guard let policy = configuration.outlierDetection else { return }
        if verdict == .neutral {
            // A half-open probe that says nothing must still free the probe's place.
            if sub.tripped.load(ordering: .relaxed) { sub.breaker.withLock { $0.recordNeutral() } }
            return
        }
        let failed = verdict == .failed
        if !failed && !sub.tripped.load(ordering: .relaxed) {
            // The common case: a success on a closed breaker only counts, and needs no clock.
            sub.breaker.withLock { $0.recordSuccessWhileClosed() }
            return
        }
        // Evaluated before the breaker's lock is taken: `mayEject` takes the channel's state lock,
        // and the picker takes the breakers' locks while holding that one; taking them the other
        // way round deadlocked the channel (a hung replica's calls ending while it was ejected).
        let may = mayEject(policy)
        let transition = sub.breaker.withLock { $0.record(failed: failed, now: .now, mayEject: may) }
        apply(transition, sub)
    }

    private func mayEject(_ policy: OutlierDetectionPolicy) -> Bool {
        let total = state.withLock { $0.subchannels.count }
        let allowed = max(1, total * policy.maxEjectionPercent / 100)
        return policy.maxEjectionPercent > 0 && ejected.load(ordering: .relaxed) < allowed
    }

    private func apply(_ transition: CircuitBreaker.Transition, _ sub: Subchannel) {
        switch transition {
        case .none:
            return
        case .eject(let until):
            if !sub.tripped.exchange(true, ordering: .relaxed) { ejected.add(1, ordering: .relaxed) }
            state.withLock { rebuildPicker(&$0) }
            // Back in the picker, half-open, when the ejection ends.
            Task { [weak self] in
                try? await Task.sleep(until: until, clock: .continuous)
                self?.state.withLock { self?.rebuildPicker(&$0) }
            }
        case .restore:
            if sub.tripped.exchange(false, ordering: .relaxed) { ejected.subtract(1, ordering: .relaxed) }
            state.withLock { rebuildPicker(&$0) }
        }
    }

    private func endOutlierInterval() {
        guard let policy = configuration.outlierDetection else { return }
        let subs = state.withLock { Array($0.subchannels.values) }
        for sub in subs {
            let may = mayEject(policy)  // outside the breaker's lock (see `record`)
            let t = sub.breaker.withLock { $0.endInterval(now: .now, mayEject: may) }
            apply(t, sub)
        }
    }

    // MARK: calls

    /// The call's deadline: its own timeout (or the IDL default), but never later than the
    /// inbound call's deadline minus the margin, when this runs inside a handler.
    private func deadline(_ method: MethodDescriptor, _ options: CallOptions) -> ContinuousClock.Instant? {
        var deadline = (options.timeout ?? method.options.defaultDeadline).map { ContinuousClock.now + $0 }
        if let margin = configuration.deadlineMargin, let inbound = ServerContext.current?.deadline {
            let inherited = inbound - margin
            if deadline.map({ inherited < $0 }) ?? true { deadline = inherited }
        }
        return deadline
    }

    private func retryPolicy(_ method: MethodDescriptor) -> RetryPolicy? {
        guard configuration.retry.maxAttempts > 1, method.kind == .unary else { return nil }
        if method.options.idempotency.isRetrySafe { return configuration.retry }
        if configuration.retryMethods.contains(method.path.dropFirst().description)
            || configuration.retryMethods.contains(method.service)
        {
            return configuration.retry
        }
        return nil
    }

    private static func remaining(_ deadline: ContinuousClock.Instant?) throws -> Duration? {
        guard let deadline else { return nil }
        let left = deadline - .now
        if left <= .zero { throw RPCError(.deadlineExceeded, "deadline exceeded") }
        return left
    }

    public func unary(_ method: MethodDescriptor, request: [UInt8], options: CallOptions) async throws -> [UInt8] {
        var options = options
        var observation: AnyObject?
        if let observer {
            var head = RPCCallHead(method: method, metadata: options.metadata, deadline: nil, peerIdentity: nil)
            observation = observer.callStarted(&head)
            options.metadata = head.metadata
        }
        let deadline = deadline(method, options)
        do {
            // Without a cap (the default) the bulkhead costs one branch.
            if bulkhead.limit > 0 { try await bulkhead.acquire(deadline: deadline, upstream: targetName) }
            defer { if bulkhead.limit > 0 { bulkhead.release() } }
            let response: [UInt8]
            if interceptors.isEmpty {
                response = try await attempts(method, request, options, deadline, observation)
            } else {
                response = try await intercepted(method, request, options, deadline, observation)
            }
            observer?.callEnded(observation, status: RPCError(.ok))
            return response
        } catch {
            observer?.callEnded(observation, status: RPCError(error))
            throw error
        }
    }

    /// Interceptors run once per call, around all its attempts.
    private func intercepted(
        _ method: MethodDescriptor, _ request: [UInt8], _ options: CallOptions,
        _ deadline: ContinuousClock.Instant?, _ observation: AnyObject?
    ) async throws -> [UInt8] {
        let observation = UnsafeSendable(observation)
        let head = RPCCallHead(method: method, metadata: options.metadata, deadline: deadline, peerIdentity: nil)
        let result = Lock<[UInt8]?>(nil)
        try await interceptors.run(head) { head in
            var options = options
            options.metadata = head.metadata
            let r = try await self.attempts(method, request, options, deadline, observation.value)
            result.withLock { $0 = r }
        }
        return result.withLock { $0 } ?? []
    }

    private func attempts(
        _ method: MethodDescriptor, _ request: [UInt8], _ options: CallOptions,
        _ deadline: ContinuousClock.Instant?, _ observation: AnyObject?
    ) async throws -> [UInt8] {
        let policy = retryPolicy(method)
        var attempt = 1
        while true {
            var options = options
            let sub = try await pick(waitForReady: options.waitForReady, deadline: deadline)
            sub.begin()
            // After the pick: time spent waiting for an endpoint comes out of the call's budget.
            do {
                options.timeout = try Self.remaining(deadline)
            } catch {
                record(sub, .neutral)
                throw error
            }
            let answeredBefore = sub.answered.load(ordering: .relaxed)
            do {
                let lane = sub.lane(in: group)
                if let observer { observer.callRouted(observation, connectionThread: lane.eventLoop.threadID) }
                let response = try await lane.unary(method, request: request, options: options)
                record(sub, .answered)
                if policy != nil { throttle.recordSuccess() }
                return response
            } catch let error as RPCError {
                let answeredMeanwhile = sub.answered.load(ordering: .relaxed) != answeredBefore
                record(sub, OutlierDetectionPolicy.verdict(error.code, answeredMeanwhile: answeredMeanwhile))
                guard let policy, policy.retryableCodes.contains(error.code) else { throw error }
                let throttleAllows = throttle.recordFailure()
                guard throttleAllows, policy.allowsRetry(after: error, attempt: attempt), !Task.isCancelled else {
                    throw error
                }
                let pause = RetryPolicy.pushback(error) ?? policy.backoff(retry: attempt)
                if let deadline, ContinuousClock.now + pause >= deadline { throw error }
                try? await Task.sleep(for: pause)
                attempt += 1
            }
        }
    }

    /// Streaming calls are balanced and bounded like unary ones, but not retried.
    public func streaming(_ method: MethodDescriptor, requests: RPCStream<[UInt8]>, options: CallOptions) -> RPCStream<
        [UInt8]
    > {
        let deadline = deadline(method, options)
        let call = StreamingCall(
            channel: self, method: method, requests: requests, options: options, deadline: deadline)
        return RPCStream(call, transform: { $0 })
    }

    /// Starts on the first read: picks an endpoint, then passes the transport's stream through,
    /// and gives the bulkhead slot and the endpoint's in-flight count back when it ends.
    private struct StreamingCall: AsyncSequence, Sendable {
        typealias Element = [UInt8]
        typealias Failure = any Error
        let channel: MeshChannel
        let method: MethodDescriptor
        let requests: RPCStream<[UInt8]>
        let options: CallOptions
        let deadline: ContinuousClock.Instant?

        final class Iterator: AsyncIteratorProtocol {
            let call: StreamingCall
            var inner: RPCStream<[UInt8]>.AsyncIterator?
            var sub: Subchannel?
            var holdsSlot = false
            var done = false
            var intercepted: InterceptedCall?
            var observation: AnyObject?
            init(call: StreamingCall) { self.call = call }

            func next() async throws -> [UInt8]? {
                if done { return nil }
                do {
                    if inner == nil { try await start() }
                    if let m = try await inner?.next() { return m }
                    finish(.answered)
                    return nil
                } catch {
                    let code = (error as? RPCError)?.code ?? .unknown
                    finish(
                        OutlierDetectionPolicy.verdict(code, answeredMeanwhile: false, streaming: true), error: error)
                    throw error
                }
            }

            private func start() async throws {
                let c = call.channel
                var options = call.options
                if let observer = c.observer {
                    var head = RPCCallHead(
                        method: call.method, metadata: options.metadata, deadline: call.deadline, peerIdentity: nil)
                    observation = observer.callStarted(&head)
                    options.metadata = head.metadata
                }
                try await c.bulkhead.acquire(deadline: call.deadline, upstream: c.targetName)
                holdsSlot = true
                let sub = try await c.pick(waitForReady: options.waitForReady, deadline: call.deadline)
                sub.begin()
                // After the pick: time spent waiting for an endpoint comes out of the call's budget.
                do {
                    options.timeout = try MeshChannel.remaining(call.deadline)
                } catch {
                    c.record(sub, .neutral)
                    throw error
                }
                self.sub = sub
                let transport = sub.lane(in: c.group)
                c.observer?.callRouted(observation, connectionThread: transport.eventLoop.threadID)
                let method = call.method
                let requests = call.requests
                let interceptors = c.interceptors
                if !interceptors.isEmpty {
                    // Interceptors wrap the call's whole life: the head now, the outcome at the end.
                    let head = RPCCallHead(
                        method: method, metadata: options.metadata, deadline: call.deadline, peerIdentity: nil)
                    let wrapper = InterceptedCall()
                    intercepted = wrapper
                    options.metadata = try await wrapper.begin(interceptors, head)
                }
                inner = transport.streaming(method, requests: requests, options: options).makeAsyncIterator()
            }

            func finish(_ verdict: OutlierDetectionPolicy.Verdict, error: (any Error)? = nil) {
                guard !done else { return }
                done = true
                intercepted?.end(error)
                call.channel.observer?.callEnded(observation, status: error.map(RPCError.init) ?? RPCError(.ok))
                if let sub { call.channel.record(sub, verdict) }
                sub = nil
                if holdsSlot { call.channel.bulkhead.release() }
                holdsSlot = false
            }

            deinit { finish(.neutral, error: RPCError(.cancelled, "the caller stopped reading")) }
        }

        func makeAsyncIterator() -> Iterator { Iterator(call: self) }
    }
}

/// Runs interceptors around a call whose end comes later than its start (a streaming call read
/// by its caller): `begin` returns once every interceptor has passed the head on, and the
/// innermost `next` returns (or throws) when `end` reports the outcome, so interceptors observe
/// it as they do for unary calls.
final class InterceptedCall: Sendable {
    private struct State {
        var headDelivered = false
        var waiting: CheckedContinuation<Void, any Error>?
        var outcome: Result<Void, any Error>?
    }

    private let state = Lock(State())

    func begin(_ interceptors: [any RPCInterceptor], _ head: RPCCallHead) async throws -> Metadata {
        try await withCheckedThrowingContinuation { (started: CheckedContinuation<Metadata, any Error>) in
            Task {
                do {
                    try await interceptors.run(head) { head in
                        self.state.withLock { $0.headDelivered = true }
                        started.resume(returning: head.metadata)
                        try await self.waitForEnd()
                    }
                } catch {
                    // Refused before the call started: that is the caller's error. Afterwards the
                    // stream's own error has already reached the caller.
                    let refused = self.state.withLock { !$0.headDelivered }
                    if refused { started.resume(throwing: error) }
                }
            }
        }
    }

    private func waitForEnd() async throws {
        try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, any Error>) in
            let outcome = state.withLock { s -> Result<Void, any Error>? in
                if s.outcome == nil { s.waiting = c }
                return s.outcome
            }
            if let outcome { c.resume(with: outcome) }
        }
    }

    /// The call ended, with `error` or successfully.
    func end(_ error: (any Error)?) {
        let outcome: Result<Void, any Error> = error.map { .failure($0) } ?? .success(())
        let waiting = state.withLock { s -> CheckedContinuation<Void, any Error>? in
            s.outcome = outcome
            defer { s.waiting = nil }
            return s.waiting
        }
        waiting?.resume(with: outcome)
    }
}
