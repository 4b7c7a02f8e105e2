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
    let telemetry: Telemetry
    let tracer: Tracer?

    init(next: Gateway, telemetry: Telemetry) {
        self.next = next
        tracer = telemetry.tracer
        logger = telemetry.logger
        requests = telemetry.registry.family(
            "bazaar_http_requests_total", help: "HTTP requests the gateway answered.", type: .counter,
            labels: ["route", "method", "code"])
        durations = telemetry.registry.family(
            "bazaar_http_request_duration_seconds", help: "Time to answer an HTTP request.",
            type: .histogram, labels: ["route", "method"])
        self.telemetry = telemetry
    }

    func respond(to request: HTTPRequest, writer: HTTPResponseWriter) async {
        let start = ContinuousClock.now
        let route: String
        if let tracer {
            // The edge's own server span: the root of the shop's trace for this request, with
            // the upstream calls as its children (a client's traceparent is only linked).
            let span = tracer.startSpan(request.method, kind: .server, parent: nil)
            if span.isRecording {
                span.setAttribute("http.request.method", request.method)
                span.setAttribute("url.path", request.path)
                span.setAttribute("client.address", Socket.host(of: request.remoteAddress))
            }
            route = await Span.$active.withValue(span) { await next.serve(request, writer) }
            if span.isRecording {
                span.name = "\(request.method) \(route)"
                span.setAttribute("http.route", route)
                span.setAttribute("http.response.status_code", Int64(writer.status))
            }
            span.end(error: writer.status >= 500 ? "HTTP \(writer.status)" : nil)
        } else {
            route = await next.serve(request, writer)
        }
        let seconds = (ContinuousClock.now - start).inSeconds
        let method =
            ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"].contains(request.method)
            ? request.method : "OTHER"
        requests.counter(route, method, String(writer.status)).increment()
        durations.histogram(route, method).observe(seconds)
        if telemetry.sampleAccessLog() {
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
