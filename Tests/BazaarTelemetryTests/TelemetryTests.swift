import BazaarCore
import Synchronization
import Testing

@testable import BazaarTelemetry

@Suite struct TraceContextTests {
    @Test func validTraceparentsParseAndFormatBack() throws {
        let text = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        let c = try #require(SpanContext(traceparent: text, tracestate: "vendor=x"))
        #expect(c.traceIDHex == "4bf92f3577b34da6a3ce929d0e0e4736" && c.spanIDHex == "00f067aa0ba902b7")
        #expect(c.sampled && c.traceState == "vendor=x")
        #expect(c.traceparent == text)
        // A later version may add fields after a dash; they are ignored.
        #expect(
            SpanContext(traceparent: "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-whatever")?.sampled
                == false)
    }

    @Test func invalidTraceparentsAreRefused() {
        for bad in [
            "", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",  // too short
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",  // upper case
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  // zero trace id
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  // zero span id
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  // forbidden version
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",  // version 00 has no extra fields
            "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
        ] {
            #expect(SpanContext(traceparent: bad) == nil, "\(bad)")
        }
    }

    @Test func samplersFollowTheSpecification() {
        let sampledParent = SpanContext(traceIDHigh: 1, traceIDLow: 2, spanID: 3, flags: 1)
        let unsampledParent = SpanContext(traceIDHigh: 1, traceIDLow: 2, spanID: 3, flags: 0)
        #expect(Sampler.parentBased(root: .alwaysOff).sample(traceIDLow: 0, parent: sampledParent))
        #expect(!Sampler.parentBased(root: .alwaysOn).sample(traceIDLow: 0, parent: unsampledParent))
        #expect(Sampler.parentBased(root: .alwaysOn).sample(traceIDLow: 0, parent: nil))
        // A ratio keeps about that share of trace ids, and decides the same way for the same id.
        let ratio = Sampler.traceIDRatio(0.25)
        let ids = SplitMix64()
        let kept = (0..<20_000).filter { _ in ratio.sample(traceIDLow: ids.next(), parent: nil) }.count
        #expect(kept > 4_500 && kept < 5_500)
        #expect(ratio.sample(traceIDLow: 12345, parent: nil) == ratio.sample(traceIDLow: 12345, parent: nil))
        #expect(Sampler.parse("parentbased_traceidratio", argument: "0.01") == .parentBased(root: .traceIDRatio(0.01)))
        #expect(Sampler.parse(nil, argument: nil) == .parentBased(root: .alwaysOn))
        #expect(Sampler.parse("sometimes", argument: nil) == nil)
    }
}

@Suite struct MetricsTests {
    @Test func expositionFollowsTheTextFormat() {
        let r = MetricsRegistry()
        let calls = r.family("demo_calls_total", help: "Calls.\nSecond line", type: .counter, labels: ["method"])
        calls.counter("a\"b\\c\nd").increment(by: 3)
        r.family("demo_depth", help: "Depth.", type: .gauge).gauge().set(-2)
        let h = r.family("demo_seconds", help: "Time.", type: .histogram, bounds: [0.1, 1]).histogram()
        h.observe(0.05)
        h.observe(0.5)
        h.observe(7)
        #expect(
            r.exposition() == """
                # HELP demo_calls_total Calls.\\nSecond line
                # TYPE demo_calls_total counter
                demo_calls_total{method="a\\"b\\\\c\\nd"} 3
                # HELP demo_depth Depth.
                # TYPE demo_depth gauge
                demo_depth -2
                # HELP demo_seconds Time.
                # TYPE demo_seconds histogram
                demo_seconds_bucket{le="0.1"} 1
                demo_seconds_bucket{le="1"} 2
                demo_seconds_bucket{le="+Inf"} 3
                demo_seconds_sum 7.55
                demo_seconds_count 3

                """)
    }

    @Test func seriesAreResolvedOncePerMethodAndCountEveryCode() {
        let r = MetricsRegistry()
        let m = RPCMetrics(registry: r, side: "server")
        let method = MethodDescriptor(
            service: "x.Svc", method: "Do", kind: .serverStreaming, inputType: "a", outputType: "b")
        #expect(m.series(method) === m.series(method))
        m.preregister([method])
        m.series(method).handled[StatusCode.unavailable.rawValue].increment()
        let text = r.exposition()
        #expect(
            text.contains(
                "grpc_server_handled_total{grpc_type=\"server_stream\",grpc_service=\"x.Svc\",grpc_method=\"Do\",grpc_code=\"Unavailable\"} 1"
            ))
        #expect(text.contains("grpc_code=\"Canceled\"} 0"))
    }

    @Test func countersAddUpAcrossThreads() async {
        let c = Counter()
        await withTaskGroup(of: Void.self) { g in
            for _ in 0..<8 { g.addTask { for _ in 0..<10_000 { c.increment() } } }
        }
        #expect(c.count == 80_000)
    }
}

@Suite struct LoggingTests {
    final class Lines: Sendable {
        let lines = Lock<[String]>([])
        var sink: @Sendable (String) -> Void { { line in self.lines.withLock { $0.append(line) } } }
    }

    @Test func linesAreEscapedAndSecretsRedacted() {
        let out = Lines()
        let log = Logger(service: "svc\"1", level: .info, sink: out.sink)
        log.debug("not shown")
        log.info(
            "line\nwith \"quotes\" \u{1}",
            [("Authorization", "Bearer abc"), ("refresh_token", "r"), ("count", 3), ("ok", .bool(true))])
        let lines = out.lines.withLock { $0 }
        #expect(lines.count == 1)
        let line = lines[0]
        #expect(line.contains(#""service":"svc\"1""#))
        #expect(line.contains(#""message":"line\nwith \"quotes\" \u0001""#))
        #expect(line.contains(#""Authorization":"[redacted]""#) && line.contains(#""refresh_token":"[redacted]""#))
        #expect(!line.contains("Bearer abc"))
        #expect(line.contains(#""count":3"#) && line.contains(#""ok":true"#) && line.hasSuffix("}\n"))
        for (value, text) in [(0.0421, "0.042"), (12.5, "12.5"), (-3.0, "-3"), (Double.nan, "null"), (1e20, "null")] {
            var out: [UInt8] = []
            JSON.appendDecimal(value, to: &out)
            #expect(String(decoding: out, as: UTF8.self) == text)
        }
    }

    @Test func environmentErrorsNameTheVariable() {
        for (key, value) in [
            ("BAZAAR_LOG_LEVEL", "chatty"), ("BAZAAR_ACCESS_LOG_SAMPLE", "2"), ("OTEL_TRACES_SAMPLER", "x"),
            ("BAZAAR_METRICS_PORT", "-1"),
        ] {
            #expect(throws: RPCError.self) { try Telemetry.options(from: [key: value]) }
        }
        let o = try? Telemetry.options(from: ["OTEL_TRACES_EXPORTER": "none", "BAZAAR_METRICS_PORT": "off"])
        #expect(o?.tracesEndpoint == nil && o?.metricsPort == nil)
    }
}
