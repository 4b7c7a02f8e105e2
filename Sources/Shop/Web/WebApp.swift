import BazaarCore
import BazaarWebProtos
import ShopAPI

/// The storefront: HTML pages rendered from the shop's services, served to the edge as
/// `bazaar.web.v1.WebFront` (see docs/web.md).
///
/// Every page works without JavaScript. A failed call to a service becomes a page that says
/// what happened (404 for what does not exist, 503 when a service is down), never a bare error.
public struct WebApp: Bazaar_Web_V1_WebFront.ServiceProtocol {
    let catalog: Shop_V1_CatalogService.Client

    /// Body chunks sent to the edge are at most this large.
    static let chunkSize = 32 * 1024

    public init(catalog: any ClientTransport) {
        self.catalog = Shop_V1_CatalogService.Client(transport: catalog)
    }

    public func serve(
        _ request: Bazaar_Web_V1_HttpRequest, responses: RPCWriter<Bazaar_Web_V1_HttpResponsePart>,
        context: ServerContext
    ) async throws {
        let answer = await respond(to: WebRequest(request))
        var head = Bazaar_Web_V1_HttpResponseHead()
        head.status = UInt32(answer.status)
        head.headers = answer.headers.map { name, value in
            var h = Bazaar_Web_V1_HttpHeader()
            h.name = name
            h.value = value
            return h
        }
        var part = Bazaar_Web_V1_HttpResponsePart()
        part.part = .head(head)
        try await responses.write(part)
        guard request.method != "HEAD" else { return }
        var offset = 0
        while offset < answer.body.count {
            let end = min(offset + Self.chunkSize, answer.body.count)
            part.part = .body(Array(answer.body[offset..<end]))
            try await responses.write(part)
            offset = end
        }
    }

    /// The answer to one request.
    func respond(to request: WebRequest) async -> WebResponse {
        let segments: [String]
        do {
            segments = try request.path.split(separator: "/", omittingEmptySubsequences: true).map {
                (s: Substring) throws(FormData.Malformed) -> String in try FormData.decodePathSegment(s)
            }
        } catch {
            return Pages.error(400, "The address is malformed: \(error.description).")
        }
        if segments.first == "static" {
            return Assets.serve(segments.dropFirst().joined(separator: "/"), method: request.method)
        }
        guard request.method == "GET" || request.method == "HEAD" else {
            return Pages.error(405, "This address only shows a page.", headers: [("allow", "GET, HEAD")])
        }
        do {
            switch segments.count {
            case 0:
                return try await Pages.home(catalog)
            case 1 where segments[0] == "search":
                return try await Pages.search(catalog, try SearchQuery(try FormData(query: request.query)))
            case 2 where segments[0] == "products":
                return try await Pages.product(catalog, id: segments[1])
            case 2 where segments[0] == "categories":
                var query = try SearchQuery(try FormData(query: request.query))
                query.category = segments[1]
                return try await Pages.search(catalog, query)
            default:
                return Pages.error(404, "There is no page at this address.")
            }
        } catch let e as FormData.Malformed {
            return Pages.error(400, "The address is malformed: \(e.description).")
        } catch let e as SearchQuery.Invalid {
            return Pages.error(400, e.description)
        } catch {
            return Pages.failure(RPCError(error))
        }
    }
}

/// The parts of an HTTP request the pages read.
struct WebRequest: Sendable {
    var method: String
    var path: String
    var query: String
    var headers: [(String, String)]
    var body: [UInt8]
    var secure: Bool
    var requestID: String

    init(_ r: Bazaar_Web_V1_HttpRequest) {
        method = r.method
        path = r.path
        query = r.query
        headers = r.headers.map { ($0.name, $0.value) }
        body = r.body
        secure = r.secure
        requestID = r.requestID
    }

    init(method: String, target: String, headers: [(String, String)] = [], body: [UInt8] = []) {
        self.method = method
        if let q = target.firstIndex(of: "?") {
            path = String(target[..<q])
            query = String(target[target.index(after: q)...])
        } else {
            path = target
            query = ""
        }
        self.headers = headers
        self.body = body
        secure = false
        requestID = ""
    }

    func header(_ name: String) -> String? { headers.first { $0.0 == name }?.1 }
}

/// One answer: status, headers and the whole body.
struct WebResponse: Sendable {
    var status: Int
    var headers: [(String, String)]
    var body: [UInt8]

    /// Headers every page carries: what it is, and what a browser may do with it.
    static let pageHeaders: [(String, String)] = [
        ("content-type", "text/html; charset=utf-8"),
        (
            "content-security-policy",
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' https: data:; "
                + "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
        ),
        ("x-content-type-options", "nosniff"), ("referrer-policy", "same-origin"), ("x-frame-options", "DENY"),
    ]

    static func page(_ status: Int, _ html: HTML, cache: String = "no-cache") -> WebResponse {
        WebResponse(status: status, headers: pageHeaders + [("cache-control", cache)], body: Array(html.text.utf8))
    }
}
