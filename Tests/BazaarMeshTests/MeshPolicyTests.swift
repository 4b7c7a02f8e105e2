import BazaarCore
import BazaarTransport
import Synchronization
import TestSupport
import Testing

@testable import BazaarMesh

@Suite struct RetryPolicyTests {
    @Test func backoffIsFullJitterUnderAGrowingCap() {
        let p = RetryPolicy(
            maxAttempts: 5, initialBackoff: .milliseconds(100), maxBackoff: .milliseconds(300), backoffMultiplier: 2)
        #expect(p.backoff(retry: 1, random: 0.999) < .milliseconds(100))
        #expect(p.backoff(retry: 2, random: 0.5) == .milliseconds(100))
        #expect(p.backoff(retry: 4, random: 0.5) == .milliseconds(150))  // capped at 300
        #expect(p.backoff(retry: 3, random: 0) == .zero)
    }

    @Test func onlyUncommittedRetryableFailuresWithinTheAttemptsAreRetried() {
        let p = RetryPolicy(maxAttempts: 3)
        #expect(p.allowsRetry(after: RPCError(.unavailable), attempt: 1))
        #expect(!p.allowsRetry(after: RPCError(.unavailable), attempt: 3))
        #expect(!p.allowsRetry(after: RPCError(.internal), attempt: 1))
        #expect(!p.allowsRetry(after: RPCError(.unavailable, responseStarted: true), attempt: 1))
        #expect(
            !p.allowsRetry(
                after: RPCError(.unavailable, metadata: Metadata([("grpc-retry-pushback-ms", "-1")])), attempt: 1))
        #expect(
            RetryPolicy.pushback(RPCError(.unavailable, metadata: Metadata([("grpc-retry-pushback-ms", "250")])))
                == .milliseconds(250))
        #expect(RetryPolicy(maxAttempts: 9).maxAttempts == 5)
    }

    @Test func throttleStopsRetriesWhenHalfTheTokensAreGoneAndSuccessesRefill() {
        let t = RetryThrottle(maxTokens: 10, tokenRatio: 0.5)
        for _ in 0..<4 { #expect(t.recordFailure()) }  // 9, 8, 7, 6 > 5
        #expect(!t.recordFailure())  // 5 is not above half
        #expect(!t.recordFailure())
        #expect(t.tokens == 4)
        for _ in 0..<3 { t.recordSuccess() }
        #expect(t.tokens == 5.5)
        #expect(!t.recordFailure())  // 4.5
        for _ in 0..<100 { t.recordSuccess() }
        #expect(t.tokens == 10)
    }
}

/// Runs a mutating call outside `#expect`, which cannot mutate what it captures.
func step<T>(_ b: inout CircuitBreaker, _ body: (inout CircuitBreaker) -> T) -> T { body(&b) }

@Suite struct CircuitBreakerTests {
    static let policy: OutlierDetectionPolicy = {
        var p = OutlierDetectionPolicy()
        p.consecutiveFailures = 3
        p.baseEjectionTime = .seconds(1)
        p.maxEjectionTime = .seconds(2)
        p.minimumRequests = 4
        p.failureRateThreshold = 0.5
        return p
    }()

    @Test func consecutiveFailuresOpenThenAProbeClosesOrReopensLonger() {
        var b = CircuitBreaker(policy: Self.policy)
        let t0 = ContinuousClock.now
        #expect(step(&b) { $0.record(failed: true, now: t0, mayEject: true) } == .none)
        #expect(step(&b) { $0.record(failed: false, now: t0, mayEject: true) } == .none)  // a success breaks the streak
        #expect(step(&b) { $0.record(failed: true, now: t0, mayEject: true) } == .none)
        #expect(step(&b) { $0.record(failed: true, now: t0, mayEject: true) } == .none)
        #expect(step(&b) { $0.record(failed: true, now: t0, mayEject: true) } == .eject(until: t0 + .seconds(1)))
        #expect(!step(&b) { $0.admit(now: t0 + .milliseconds(500)) })
        // Half-open: one probe at a time.
        #expect(step(&b) { $0.admit(now: t0 + .seconds(1)) })
        #expect(!step(&b) { $0.admit(now: t0 + .seconds(1)) })
        let t1 = t0 + .seconds(1)
        #expect(step(&b) { $0.record(failed: true, now: t1, mayEject: true) } == .eject(until: t1 + .seconds(2)))
        let t2 = t1 + .seconds(2)
        #expect(step(&b) { $0.admit(now: t2) })
        #expect(step(&b) { $0.record(failed: false, now: t2, mayEject: true) } == .restore)
        #expect(b.isAvailable && b.ejections == 0)
    }

    /// Issue 15, item 11: a caller's own short deadline, or a stream reaching its lifetime, is not
    /// the endpoint's failure; an endpoint that fails a call it had time for is.
    @Test func onlyFailuresTheEndpointCausedCount() {
        typealias P = OutlierDetectionPolicy
        // A hung endpoint answers nothing while the call waits: its deadline counts.
        #expect(P.blamesEndpoint(.deadlineExceeded, answeredMeanwhile: false))
        // An endpoint that kept answering others: the caller's short deadline, not a fault.
        #expect(!P.blamesEndpoint(.deadlineExceeded, answeredMeanwhile: true))
        #expect(!P.blamesEndpoint(.deadlineExceeded, answeredMeanwhile: false, streaming: true))
        #expect(P.blamesEndpoint(.unavailable, answeredMeanwhile: true, streaming: true))
        #expect(!P.blamesEndpoint(.invalidArgument, answeredMeanwhile: false))
        #expect(!P.blamesEndpoint(.cancelled, answeredMeanwhile: false))
        #expect(!P.blamesEndpoint(.resourceExhausted, answeredMeanwhile: false))
        // A deadline not blamed is no answer either: it must not break a run of failures (nor
        // make other calls waiting on a hung endpoint look answered).
        #expect(P.verdict(.deadlineExceeded, answeredMeanwhile: true) == .neutral)
        #expect(P.verdict(.notFound, answeredMeanwhile: false) == .answered)
        #expect(P.verdict(.ok, answeredMeanwhile: false) == .answered)
        #expect(P.verdict(.unavailable, answeredMeanwhile: true) == .failed)
    }

    @Test func aNeutralProbeLetsTheNextProbeThrough() {
        var b = CircuitBreaker(policy: Self.policy)
        let t0 = ContinuousClock.now
        for _ in 0..<3 { _ = step(&b) { $0.record(failed: true, now: t0, mayEject: true) } }
        let t1 = t0 + .seconds(1)
        #expect(step(&b) { $0.admit(now: t1) })
        #expect(!step(&b) { $0.admit(now: t1) })
        // The probe's caller gave up: another probe may go.
        step(&b) { $0.recordNeutral() }
        #expect(step(&b) { $0.admit(now: t1) })
        #expect(!b.isAvailable)
    }

    @Test func theEjectionCapIsRespected() {
        var b = CircuitBreaker(policy: Self.policy)
        let now = ContinuousClock.now
        for _ in 0..<10 { #expect(b.record(failed: true, now: now, mayEject: false) == .none) }
        #expect(b.isAvailable)
    }

    @Test func failureRateOverAnIntervalEjects() {
        var p = Self.policy
        p.consecutiveFailures = 0
        var b = CircuitBreaker(policy: p)
        let now = ContinuousClock.now
        for failed in [true, false, true, false, true] { _ = b.record(failed: failed, now: now, mayEject: true) }
        #expect(step(&b) { $0.endInterval(now: now, mayEject: true) } == .eject(until: now + .seconds(1)))
        var quiet = CircuitBreaker(policy: p)
        for failed in [true, true, true] { _ = quiet.record(failed: failed, now: now, mayEject: true) }
        #expect(step(&quiet) { $0.endInterval(now: now, mayEject: true) } == .none)  // too few calls to judge
    }
}

final class FakeCandidate: PickCandidate, @unchecked Sendable {
    let name: String
    var outstanding: Int
    init(_ name: String, outstanding: Int = 0) {
        self.name = name
        self.outstanding = outstanding
    }
}

@Suite struct PickerTests {
    @Test func roundRobinVisitsEveryoneInTurn() {
        let cs = ["a", "b", "c"].map { FakeCandidate($0) }
        let p = Picker(policy: .roundRobin, candidates: cs)
        let names = (0..<6).compactMap { _ in p.pick()?.name }
        #expect(Set(names[0..<3]) == ["a", "b", "c"])
        #expect(Array(names[0..<3]) == Array(names[3..<6]))
    }

    @Test func pickFirstSticksToTheFirstAdmitted() {
        let cs = ["a", "b"].map { FakeCandidate($0) }
        let p = Picker(policy: .pickFirst, candidates: cs)
        #expect((0..<5).allSatisfy { _ in p.pick()?.name == "a" })
        #expect(p.pick(admit: { $0.name != "a" })?.name == "b")
        #expect(p.pick(admit: { _ in false }) == nil)
    }

    @Test func powerOfTwoChoicesAvoidsTheBusyEndpoint() {
        let cs = [FakeCandidate("idle"), FakeCandidate("busy", outstanding: 50)]
        let p = Picker(policy: .p2c, candidates: cs)
        #expect((0..<50).allSatisfy { _ in p.pick()?.name == "idle" })
        // With three, the busiest is never chosen: it loses every pair it is drawn in.
        let three = Picker(
            policy: .p2c,
            candidates: [
                FakeCandidate("a", outstanding: 1), FakeCandidate("b", outstanding: 2),
                FakeCandidate("c", outstanding: 9),
            ])
        #expect((0..<200).allSatisfy { _ in three.pick()?.name != "c" })
        #expect(Picker<FakeCandidate>(policy: .p2c, candidates: []).pick() == nil)
    }
}

@Suite struct TargetAndEnvironmentTests {
    @Test func targetsParse() throws {
        #expect(try Target(parsing: "dns:///catalog:8443") == .dns(host: "catalog", port: 8443, nameserver: nil))
        #expect(
            try Target(parsing: "dns://10.0.0.10:53/catalog.shop.svc:8443")
                == .dns(host: "catalog.shop.svc", port: 8443, nameserver: "10.0.0.10:53"))
        #expect(try Target(parsing: "dns:///catalog") == .dns(host: "catalog", port: 443, nameserver: nil))
        #expect(
            try Target(parsing: "10.0.0.1:1, 10.0.0.2:2")
                == .endpoints([Endpoint(host: "10.0.0.1", port: 1), Endpoint(host: "10.0.0.2", port: 2)]))
        #expect(try Target(parsing: "static:///[::1]:9") == .endpoints([Endpoint(host: "::1", port: 9)]))
        #expect(throws: RPCError.self) { try Target(parsing: "") }
        #expect(throws: RPCError.self) { try Target(parsing: "dns://no-slash") }
        #expect(throws: RPCError.self) { try Target(parsing: "host:99999") }
    }

    @Test func environmentOverridesDefaultsAndUpstreamOverridesGlobal() throws {
        let env = [
            "BAZAAR_LB_POLICY": "round_robin", "BAZAAR_RETRY_MAX_ATTEMPTS": "4",
            "BAZAAR_RETRY_CODES": "UNAVAILABLE,RESOURCE_EXHAUSTED",
            "BAZAAR_OUTLIER_BASE_EJECTION": "250ms", "BAZAAR_CATALOG_MAX_CONCURRENT_CALLS": "7",
            "BAZAAR_MAX_CONCURRENT_CALLS": "100", "BAZAAR_BULKHEAD_OVERFLOW": "wait",
            "BAZAAR_DEADLINE_PROPAGATION": "false", "BAZAAR_UNAVAILABLE_GRACE": "0s",
        ]
        let c = try MeshConfiguration.fromEnvironment(upstream: "catalog", environment: env)
        #expect(c.loadBalancing == .roundRobin)
        #expect(c.retry.maxAttempts == 4)
        #expect(c.retry.retryableCodes == [.unavailable, .resourceExhausted])
        #expect(c.outlierDetection?.baseEjectionTime == .milliseconds(250))
        #expect(c.maxConcurrentCalls == 7)
        #expect(c.bulkheadOverflow == .wait)
        #expect(c.deadlineMargin == nil)
        #expect(c.unavailableGrace == .zero)
        #expect(try MeshConfiguration.fromEnvironment(upstream: "cart", environment: env).maxConcurrentCalls == 100)
        let d = try MeshConfiguration.fromEnvironment(environment: [:])
        #expect(d.loadBalancing == .p2c && d.retry.maxAttempts == 3 && d.deadlineMargin == .milliseconds(5))
        #expect(d.unavailableGrace == .seconds(3))
    }

    /// BAZAAR_TLS_RELOAD_INTERVAL used to reach servers only: the channel side's reader was never
    /// called, so channels always checked their files every 10 s whatever the setting said.
    @Test func channelsTakeTheTLSReloadIntervalFromTheEnvironment() throws {
        let env = ["BAZAAR_TLS_RELOAD_INTERVAL": "2s", "BAZAAR_CART_TLS_RELOAD_INTERVAL": "0"]
        let c = try MeshConfiguration.fromEnvironment(upstream: "catalog", environment: env)
        #expect(c.tlsReloadInterval == .seconds(2))
        #expect(try MeshConfiguration.fromEnvironment(upstream: "cart", environment: env).tlsReloadInterval == nil)
        #expect(MeshConfiguration().tlsReloadInterval == .seconds(10))
        let channel = try MeshChannel(target: "127.0.0.1:1", security: .plaintext, mesh: c)
        #expect(channel.connectionConfiguration.tlsReloadInterval == .seconds(2))
    }

    @Test func badValuesNameTheVariable() {
        for (key, value) in [
            ("BAZAAR_LB_POLICY", "random"), ("BAZAAR_RETRY_MAX_ATTEMPTS", "x"), ("BAZAAR_RETRY_CODES", "NOPE"),
            ("BAZAAR_DNS_REFRESH", "5 parsecs"), ("BAZAAR_HEALTH_CHECK", "maybe"),
        ] {
            do {
                _ = try MeshConfiguration.fromEnvironment(environment: [key: value])
                Issue.record("\(key)=\(value) was accepted")
            } catch {
                #expect(error.message.contains(key))
            }
        }
        #expect(throws: RPCError.self) {
            try MeshServerEnvironment.security(service: "x", environment: ["BAZAAR_PLAINTEXT": "perhaps"])
        }
        #expect(Environment.parseDuration("1.5s") == .milliseconds(1500))
        #expect(Environment.parseDuration("2m") == .seconds(120))
        #expect(Environment.parseDuration("-1s") == nil)
    }
}

@Suite struct BulkheadTests {
    @Test func failModeRefusesPastTheCap() async throws {
        let b = Bulkhead(limit: 2, overflow: .fail)
        try await b.acquire(deadline: nil, upstream: "u")
        try await b.acquire(deadline: nil, upstream: "u")
        await #expect(throws: RPCError.self) { try await b.acquire(deadline: nil, upstream: "u") }
        b.release()
        try await b.acquire(deadline: nil, upstream: "u")
        #expect(b.inFlight == 2)
    }

    @Test func waitModeQueuesUntilASlotOrTheDeadline() async throws {
        let b = Bulkhead(limit: 1, overflow: .wait)
        try await b.acquire(deadline: nil, upstream: "u")
        do {
            try await b.acquire(deadline: .now + .milliseconds(50), upstream: "u")
            Issue.record("acquired past the cap")
        } catch let e as RPCError {
            #expect(e.code == .deadlineExceeded)
        }
        let waiter = Task { try await b.acquire(deadline: .now + .seconds(60), upstream: "u") }
        try await eventually("the second caller to queue") { b.waiting == 1 }
        b.release()  // hands the slot to the waiter
        try await waiter.value
        #expect(b.inFlight == 1)
        b.release()
        #expect(b.inFlight == 0)
    }
}

@Suite struct ServerEnvironmentTests {
    @Test func mutualTLSUnlessPlaintextIsAskedFor() throws {
        guard case .mutualTLS(let tls) = try MeshServerEnvironment.security(service: "catalog", environment: [:]) else {
            Issue.record("plaintext by default")
            return
        }
        #expect(tls.certificateChainFile == ".run/certs/catalog.pem" && tls.trustRootsFile == ".run/certs/ca.pem")
        guard
            case .mutualTLS(let custom) = try MeshServerEnvironment.security(
                service: "catalog", environment: ["BAZAAR_TLS_DIR": "/certs", "BAZAAR_TLS_CA": "/ca/bundle.pem"])
        else {
            Issue.record("plaintext")
            return
        }
        #expect(custom.privateKeyFile == "/certs/catalog-key.pem" && custom.trustRootsFile == "/ca/bundle.pem")
        guard
            case .plaintext = try MeshServerEnvironment.security(
                service: "catalog", environment: ["BAZAAR_PLAINTEXT": "true"])
        else {
            Issue.record("BAZAAR_PLAINTEXT=true ignored")
            return
        }
    }

    @Test func healthAlwaysAndReflectionUnlessTurnedOff() throws {
        let (health, all) = try MeshServerEnvironment.standardServices(serving: [], environment: [:])
        #expect(all.count == 2 && health.status() == .serving)
        let (_, without) = try MeshServerEnvironment.standardServices(
            serving: [], environment: ["BAZAAR_REFLECTION": "false"])
        #expect(without.count == 1)
    }

    @Test func drainAndReloadSettings() throws {
        var c = ServerConfiguration(port: 0, security: .plaintext)
        try MeshServerEnvironment.apply(
            to: &c, environment: ["BAZAAR_DRAIN_DELAY": "5s", "BAZAAR_TLS_RELOAD_INTERVAL": "0"])
        #expect(c.drainDelay == .seconds(5) && c.tlsReloadInterval == nil)
    }
}
