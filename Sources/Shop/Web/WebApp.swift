import BazaarAuth
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
    let accounts: Shop_V1_AccountsService.Client
    let cart: Shop_V1_CartService.Client
    let orders: Shop_V1_OrdersService.Client
    let notifications: Shop_V1_NotificationsService.Client
    let sessions: SessionKeeper

    /// Body chunks sent to the edge are at most this large.
    static let chunkSize = 32 * 1024

    /// The pages over the services' transports (one transport may serve several), with sessions
    /// in `sessions`; `revocations` is kept current by the process (``RevocationFollower``).
    public init(
        catalog: any ClientTransport, accounts: any ClientTransport, cart: any ClientTransport,
        orders: any ClientTransport, notifications: any ClientTransport, sessions: any SessionStore,
        revocations: RevocationList = RevocationList()
    ) {
        self.catalog = Shop_V1_CatalogService.Client(transport: catalog)
        self.accounts = Shop_V1_AccountsService.Client(transport: accounts)
        self.cart = Shop_V1_CartService.Client(transport: cart)
        self.orders = Shop_V1_OrdersService.Client(transport: orders)
        self.notifications = Shop_V1_NotificationsService.Client(transport: notifications)
        self.sessions = SessionKeeper(store: sessions, accounts: self.accounts, revocations: revocations)
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
        if let events = answer.events {
            try await events { chunk in
                var p = Bazaar_Web_V1_HttpResponsePart()
                p.part = .body(chunk)
                try await responses.write(p)
            }
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
        let isPost = request.method == "POST"
        guard request.method == "GET" || request.method == "HEAD" || isPost else {
            let allow = Routes.takesPost(segments) ? "GET, HEAD, POST" : "GET, HEAD"
            return Pages.error(405, "This address does not take \(request.method).", headers: [("allow", allow)])
        }
        var form = FormData()
        if isPost {
            guard Routes.takesPost(segments) else {
                return Pages.error(405, "This address only shows a page.", headers: [("allow", "GET, HEAD")])
            }
            let type = request.header("content-type") ?? ""
            guard type.lowercased().hasPrefix("application/x-www-form-urlencoded") else {
                return Pages.error(415, "Send this form from its page.")
            }
            do { form = try FormData(encoded: request.body) } catch {
                return Pages.error(400, "The form is malformed: \(error.description).")
            }
        }
        var cleared: [String] = []
        let session = await sessions.resume(request, setCookie: { cleared.append($0) })
        let visit = Visit(request, session: session, form: form)
        for c in cleared { visit.setCookie(c) }
        var answer: WebResponse
        if isPost, !visit.csrfIsValid {
            answer = Pages.error(
                403, "This form has expired or did not come from this shop. Go back, reload the page and try again.",
                visit: visit)
        } else {
            answer = await Routes(app: self, visit: visit).answer(segments, post: isPost)
        }
        answer.headers += visit.cookieHeaders
        if session != nil {
            // A signed-in page is this user's alone: never kept by a shared cache.
            answer.headers.removeAll { $0.0 == "cache-control" }
            answer.headers.append(("cache-control", "no-store"))
        }
        return answer
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
    var clientAddress = ""

    init(_ r: Bazaar_Web_V1_HttpRequest) {
        method = r.method
        path = r.path
        query = r.query
        headers = r.headers.map { ($0.name, $0.value) }
        body = r.body
        secure = r.secure
        requestID = r.requestID
        clientAddress = r.clientAddress
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

/// One answer: status, headers and the whole body, or a body that goes on (server-sent events).
struct WebResponse: Sendable {
    var status: Int
    var headers: [(String, String)]
    var body: [UInt8]
    /// Writes the rest of the body, chunk by chunk, after `body` (a live stream); `nil` for a page.
    var events: (@Sendable (_ write: @Sendable ([UInt8]) async throws -> Void) async throws -> Void)?

    init(
        status: Int, headers: [(String, String)], body: [UInt8],
        events: (@Sendable (_ write: @Sendable ([UInt8]) async throws -> Void) async throws -> Void)? = nil
    ) {
        self.status = status
        self.headers = headers
        self.body = body
        self.events = events
    }

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

extension WebResponse {
    /// `303 See Other` to `path`: the answer to a form that did what it asked.
    static func redirect(_ path: String) -> WebResponse {
        WebResponse(
            status: 303, headers: [("location", path), ("cache-control", "no-store")], body: [])
    }
}
