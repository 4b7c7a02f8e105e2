import BazaarCore
import BazaarTelemetry
import BazaarTransport

/// Per request: `bazaar_http_requests_total` and `bazaar_http_request_duration_seconds` by route
/// template, method and status, and one JSON log line (method, path without the query, status,
/// duration; no headers, so no credentials), sampled like the RPC access log.
struct AccessLog: HTTPResponder {
    let next: Gateway
    let logger: Logger
    let requests: MetricFamily
    let durations: MetricFamily
    let sample: Double

    init(next: Gateway, telemetry: Telemetry) {
        self.next = next
        logger = telemetry.logger
        requests = telemetry.registry.family(
            "bazaar_http_requests_total", help: "HTTP requests the gateway answered.", type: .counter,
            labels: ["route", "method", "code"])
        durations = telemetry.registry.family(
            "bazaar_http_request_duration_seconds", help: "Time to answer an HTTP request.",
            type: .histogram, labels: ["route", "method"])
        sample = telemetry.accessLogSampleRatio
    }

    func respond(to request: HTTPRequest, writer: HTTPResponseWriter) async {
        let start = ContinuousClock.now
        let route = await next.serve(request, writer)
        let seconds = (ContinuousClock.now - start).inSeconds
        let method =
            ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"].contains(request.method)
            ? request.method : "OTHER"
        requests.counter(route, method, String(writer.status)).increment()
        durations.histogram(route, method).observe(seconds)
        if sample >= 1 || Double.random(in: 0..<1) < sample {
            logger.info(
                "http request",
                [
                    ("method", .string(request.method)), ("path", .string(request.path)), ("route", .string(route)),
                    ("status", .int(Int64(writer.status))), ("version", .string(request.version)),
                    ("duration_ms", .double(seconds * 1000)), ("peer_address", .string(request.remoteAddress)),
                ])
        }
    }
}
