import BazaarCore

/// When an endpoint counts as an outlier and for how long it is ejected.
public struct OutlierDetectionPolicy: Sendable, Hashable {
    /// Eject after this many failures in a row (0 disables this check).
    public var consecutiveFailures: Int = 5
    /// Eject when, within one ``interval``, at least ``minimumRequests`` calls were made and this
    /// fraction of them failed (0 disables this check).
    public var failureRateThreshold: Double = 0.5
    public var minimumRequests: Int = 20
    public var interval: Duration = .seconds(10)
    /// The first ejection lasts this long; each further one in a row is longer (times the count),
    /// up to ``maxEjectionTime``.
    public var baseEjectionTime: Duration = .seconds(5)
    public var maxEjectionTime: Duration = .seconds(60)
    /// At most this share of the endpoints is ejected at once (at least one may be).
    public var maxEjectionPercent: Int = 50

    public init() {}

    /// Statuses that may say the endpoint, not the request, is at fault.
    public static let failureCodes: Set<StatusCode> = [.unavailable, .deadlineExceeded, .internal, .unknown, .dataLoss]

    /// Whether a call that ended with `code` counts as the endpoint's failure. Only failures the
    /// endpoint caused count, so that clients cannot eject healthy replicas:
    /// - a unary call's DEADLINE_EXCEEDED counts only when the endpoint answered no call at all
    ///   while this one waited (`answeredMeanwhile` false): a hung endpoint answers nothing, while
    ///   a caller's own short `grpc-timeout` (or one slow method) runs out on an endpoint that
    ///   keeps answering everyone else;
    /// - a stream's deadline is its lifetime, so a stream that reaches it (a watch ending at its
    ///   maximum) never counts.
    public static func blamesEndpoint(_ code: StatusCode, answeredMeanwhile: Bool, streaming: Bool = false) -> Bool {
        guard failureCodes.contains(code) else { return false }
        if code == .deadlineExceeded { return !streaming && !answeredMeanwhile }
        return true
    }

    /// What a finished call says about its endpoint.
    public enum Verdict: Sendable, Equatable {
        /// The endpoint answered (a success, or a status of its own such as NOT_FOUND).
        case answered
        /// The endpoint failed (see ``blamesEndpoint(_:answeredMeanwhile:streaming:)``).
        case failed
        /// Nothing either way: the caller's deadline or cancellation ended the call first. It
        /// neither counts as a failure nor, as an answer would, breaks a run of failures.
        case neutral
    }

    public static func verdict(_ code: StatusCode, answeredMeanwhile: Bool, streaming: Bool = false) -> Verdict {
        if code == .ok { return .answered }
        if blamesEndpoint(code, answeredMeanwhile: answeredMeanwhile, streaming: streaming) { return .failed }
        return code == .deadlineExceeded || code == .cancelled ? .neutral : .answered
    }
}

/// The circuit breaker of one endpoint: closed (serving), open (ejected until a time), half-open
/// (one probe call allowed; its outcome closes or reopens the breaker). A pure state machine: the
/// caller passes the clock and acts on the answers.
public struct CircuitBreaker: Sendable {
    public enum State: Sendable, Equatable {
        case closed
        case open(until: ContinuousClock.Instant)
        case halfOpen
    }

    public private(set) var state: State = .closed
    /// Ejections in a row without a successful probe between them.
    public private(set) var ejections = 0
    private var consecutiveFailures = 0
    private var intervalCalls = 0
    private var intervalFailures = 0
    private var probeInFlight = false
    private let policy: OutlierDetectionPolicy

    public init(policy: OutlierDetectionPolicy) { self.policy = policy }

    /// What the caller should do after recording an outcome.
    public enum Transition: Sendable, Equatable {
        case none
        /// The endpoint must leave the picker (open).
        case eject(until: ContinuousClock.Instant)
        /// The endpoint is back (a probe succeeded).
        case restore
    }

    /// Whether a call may go to this endpoint now; a half-open breaker lets one probe through.
    public mutating func admit(now: ContinuousClock.Instant) -> Bool {
        switch state {
        case .closed: return true
        case .open(let until):
            guard now >= until else { return false }
            state = .halfOpen
            probeInFlight = true
            return true
        case .halfOpen:
            if probeInFlight { return false }
            probeInFlight = true
            return true
        }
    }

    public var isAvailable: Bool {
        if case .closed = state { return true }
        return false
    }

    /// Records the outcome of a call. `mayEject` says whether the share of ejected endpoints
    /// allows one more.
    public mutating func record(failed: Bool, now: ContinuousClock.Instant, mayEject: Bool) -> Transition {
        switch state {
        case .halfOpen:
            probeInFlight = false
            if failed { return open(now) }
            state = .closed
            ejections = 0
            resetCounts()
            return .restore
        case .open:
            return .none  // a call admitted before the ejection ended
        case .closed:
            intervalCalls += 1
            if failed {
                consecutiveFailures += 1
                intervalFailures += 1
            } else {
                consecutiveFailures = 0
            }
            if failed && mayEject && policy.consecutiveFailures > 0 && consecutiveFailures >= policy.consecutiveFailures
            {
                return open(now)
            }
            return .none
        }
    }

    /// A call that says nothing about the endpoint (its caller's deadline or cancellation ended
    /// it): no state changes, but a half-open breaker lets the next probe through (else a probe
    /// ended that way would keep the endpoint out for good).
    public mutating func recordNeutral() {
        if case .halfOpen = state { probeInFlight = false }
    }

    /// A success while closed: the same as `record(failed: false, …)` in that state, without the
    /// clock (the hot path of every call).
    public mutating func recordSuccessWhileClosed() {
        guard case .closed = state else { return }
        intervalCalls += 1
        consecutiveFailures = 0
    }

    /// The end of a counting interval: checks the failure rate, then starts a new interval.
    public mutating func endInterval(now: ContinuousClock.Instant, mayEject: Bool) -> Transition {
        defer {
            intervalCalls = 0
            intervalFailures = 0
        }
        guard case .closed = state, mayEject, policy.failureRateThreshold > 0, intervalCalls >= policy.minimumRequests
        else { return .none }
        if Double(intervalFailures) / Double(intervalCalls) >= policy.failureRateThreshold { return open(now) }
        return .none
    }

    private mutating func open(_ now: ContinuousClock.Instant) -> Transition {
        ejections += 1
        var time = policy.baseEjectionTime * ejections
        if time > policy.maxEjectionTime { time = policy.maxEjectionTime }
        let until = now + time
        state = .open(until: until)
        probeInFlight = false
        resetCounts()
        return .eject(until: until)
    }

    private mutating func resetCounts() {
        consecutiveFailures = 0
        intervalCalls = 0
        intervalFailures = 0
    }
}
