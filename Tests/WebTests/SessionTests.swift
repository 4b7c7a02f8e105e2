import BazaarAuth
import BazaarCore
import Foundation
import ShopAPI
import Synchronization
import Testing
import WellKnownTypes

@testable import Web

/// An accounts service that knows one customer (`shopper@example.com` / `correct horse`) and
/// one admin: enough to sign in and out through the pages. The browser tests run the real one.
struct FakeAccounts: Shop_V1_AccountsService.ServiceProtocol {
    let refreshes = Counter()
    let logouts = Counter()

    final class Counter: Sendable {
        let value = Lock(0)
        func add() { value.withLock { $0 += 1 } }
        var count: Int { value.withLock { $0 } }
    }

    static func session(_ email: String, roles: [String], accessLife: Int64 = 900) -> Shop_V1_Session {
        let now = Int64(Date().timeIntervalSince1970)
        var s = Shop_V1_Session()
        s.user = Shop_V1_User(id: "u-" + email, email: email, displayName: "Sam", roles: roles)
        s.accessToken = "access-\(UUID().uuidString)"
        s.accessExpireTime = Google_Protobuf_Timestamp(seconds: now + accessLife)
        s.refreshToken = "refresh-\(UUID().uuidString)"
        s.refreshExpireTime = Google_Protobuf_Timestamp(seconds: now + 86400)
        return s
    }

    func login(_ r: Shop_V1_LoginRequest, context: ServerContext) async throws -> Shop_V1_Session {
        guard r.password == "correct horse" else { throw RPCError(.unauthenticated, "wrong email or password") }
        return Self.session(r.email, roles: r.email.hasPrefix("admin") ? ["admin"] : ["customer"])
    }
    func refresh(_ r: Shop_V1_RefreshRequest, context: ServerContext) async throws -> Shop_V1_Session {
        refreshes.add()
        return Self.session("shopper@example.com", roles: ["customer"])
    }
    func logout(_ r: Shop_V1_LogoutRequest, context: ServerContext) async throws -> Shop_V1_LogoutResponse {
        logouts.add()
        return Shop_V1_LogoutResponse()
    }
    func register(_ r: Shop_V1_RegisterRequest, context: ServerContext) async throws -> Shop_V1_User {
        throw RPCError(.unimplemented, "")
    }
    func getMe(_ r: Shop_V1_GetMeRequest, context: ServerContext) async throws -> Shop_V1_User {
        throw RPCError(.unimplemented, "")
    }
    func updateMe(_ r: Shop_V1_UpdateMeRequest, context: ServerContext) async throws -> Shop_V1_User {
        throw RPCError(.unimplemented, "")
    }
    func changePassword(_ r: Shop_V1_ChangePasswordRequest, context: ServerContext) async throws
        -> Shop_V1_ChangePasswordResponse
    { throw RPCError(.unimplemented, "") }
    func listUsers(_ r: Shop_V1_ListUsersRequest, context: ServerContext) async throws -> Shop_V1_ListUsersResponse {
        throw RPCError(.unimplemented, "")
    }
    func setUserRoles(_ r: Shop_V1_SetUserRolesRequest, context: ServerContext) async throws -> Shop_V1_User {
        throw RPCError(.unimplemented, "")
    }
    func getUser(_ r: Shop_V1_GetUserRequest, context: ServerContext) async throws -> Shop_V1_User {
        throw RPCError(.unimplemented, "")
    }
    func listRevocations(_ r: Shop_V1_ListRevocationsRequest, context: ServerContext) async throws
        -> Shop_V1_ListRevocationsResponse
    { throw RPCError(.unimplemented, "") }
    func getPublicKeys(_ r: Shop_V1_GetPublicKeysRequest, context: ServerContext) async throws -> Shop_V1_PublicKeys {
        throw RPCError(.unimplemented, "")
    }
}

/// Sessions, sign-in and sign-out, and the refusals that keep forms and the back office safe.
@Suite struct SessionTests {
    let store = MemorySessionStore()
    let accounts = FakeAccounts()
    let revocations = RevocationList()

    var app: WebApp {
        let t = InProcessTransport(services: [FakeCatalog(products: WebAppTests.products), accounts])
        return WebApp(
            catalog: t, accounts: t, cart: t, orders: t, notifications: t, sessions: store, revocations: revocations)
    }

    func send(_ method: String, _ target: String, cookie: String? = nil, form: String? = nil, secure: Bool = false)
        async -> WebResponse
    {
        var headers: [(String, String)] = []
        if let cookie { headers.append(("cookie", cookie)) }
        if form != nil { headers.append(("content-type", "application/x-www-form-urlencoded")) }
        var r = WebRequest(method: method, target: target, headers: headers, body: Array((form ?? "").utf8))
        r.secure = secure
        return await app.respond(to: r)
    }

    static func cookies(_ r: WebResponse) -> [String] { r.headers.filter { $0.0 == "set-cookie" }.map(\.1) }
    static func header(_ r: WebResponse, _ name: String) -> String? { r.headers.first { $0.0 == name }?.1 }

    /// The anonymous form token: set as a cookie by the page that shows the form.
    func formToken(secure: Bool = false) async -> (cookie: String, token: String) {
        let page = await send("GET", "/signin", secure: secure)
        let name = secure ? "__Host-bz_csrf=" : "bz_csrf="
        let set = Self.cookies(page).first { $0.hasPrefix(name) }!
        let value = String(set.dropFirst(name.count).prefix { $0 != ";" })
        return (name + value, value)
    }

    func signIn(_ email: String = "shopper@example.com") async -> String {
        let (cookie, token) = await formToken()
        let r = await send(
            "POST", "/signin", cookie: cookie,
            form: "_csrf=\(token)&email=\(email)&password=correct+horse&next=%2Forders")
        #expect(r.status == 303)
        #expect(Self.header(r, "location") == "/orders")
        let set = Self.cookies(r).first { $0.hasPrefix("bz_session=") }!
        return String(set.prefix { $0 != ";" })
    }

    @Test func theFormCookieCarriesTheSafeAttributes() async {
        let page = await send("GET", "/signin")
        let set = Self.cookies(page).first { $0.hasPrefix("bz_csrf=") }
        #expect(set != nil)
        #expect(set!.contains("; HttpOnly") && set!.contains("; SameSite=Lax") && set!.contains("; Path=/"))
        #expect(!set!.contains("Secure"))
        // Over TLS: Secure, and the __Host- prefix (no sibling subdomain can plant one).
        let overTLS = await send("GET", "/signin", secure: true)
        #expect(Self.cookies(overTLS).first { $0.hasPrefix("__Host-bz_csrf=") }!.contains("; Secure"))
        // A page without a form sets nothing.
        #expect(Self.cookies(await send("GET", "/products/2")).isEmpty)
    }

    @Test func aFormPostWithoutTheRightTokenIsRefusedBeforeAnythingHappens() async {
        let (cookie, token) = await formToken()
        let form = "email=shopper%40example.com&password=correct+horse"
        #expect(await send("POST", "/signin", cookie: cookie, form: form).status == 403)
        #expect(await send("POST", "/signin", cookie: cookie, form: form + "&_csrf=wrong").status == 403)
        // The token without its cookie (another site cannot set it) is refused too.
        #expect(await send("POST", "/signin", form: form + "&_csrf=\(token)").status == 403)
        #expect(store.count == 0)
        // Signed in, the anonymous token is no longer enough: the session's own is needed.
        let session = await signIn()
        #expect(
            await send("POST", "/signout", cookie: "\(session); \(cookie)", form: "_csrf=\(token)").status == 403)
        #expect(accounts.logouts.count == 0 && store.count == 1)
        // A form that is not a form is refused as such.
        #expect(await send("POST", "/signin", cookie: cookie, form: nil).status == 415)
    }

    @Test func signInStoresASessionBehindAnHttpOnlyCookieAndSignOutEndsIt() async throws {
        let wrong = await formToken()
        let refused = await send(
            "POST", "/signin", cookie: wrong.cookie, form: "_csrf=\(wrong.token)&email=a%40b.c&password=nope")
        #expect(refused.status == 401)
        #expect(String(decoding: refused.body, as: UTF8.self).contains("The email or the password is wrong."))

        let (cookie, token) = await formToken(secure: true)
        let r = await send(
            "POST", "/signin", cookie: cookie,
            form: "_csrf=\(token)&email=shopper%40example.com&password=correct+horse",
            secure: true)
        let set = Self.cookies(r).first { $0.hasPrefix("__Host-bz_session=") }!
        #expect(set.contains("; HttpOnly") && set.contains("; SameSite=Lax") && set.contains("; Secure"))
        #expect(set.contains("; Max-Age=") && set.contains("; Path=/") && !set.contains("Domain"))
        let session = String(set.prefix { $0 != ";" })
        #expect(store.count == 1)
        // The same cookie over plain HTTP is not this session's (its name says TLS).
        #expect(!String(decoding: await send("GET", "/", cookie: session).body, as: UTF8.self).contains("Sign out"))

        // The pages know the user; the tokens never reach the browser.
        let home = await send("GET", "/", cookie: session, secure: true)
        let html = String(decoding: home.body, as: UTF8.self)
        #expect(html.contains("Sign out") && !html.contains("access-") && !html.contains("refresh-"))
        #expect(Self.header(home, "cache-control") == "no-store")

        let stored = try #require(try await store.load(String(session.dropFirst("__Host-bz_session=".count))))
        let out = await send("POST", "/signout", cookie: session, form: "_csrf=\(stored.csrf)", secure: true)
        #expect(out.status == 303)
        #expect(Self.cookies(out).contains { $0.hasPrefix("__Host-bz_session=;") && $0.contains("Max-Age=0") })
        #expect(store.count == 0 && accounts.logouts.count == 1)
        // The old cookie is now nobody's.
        let after = String(decoding: await send("GET", "/", cookie: session, secure: true).body, as: UTF8.self)
        #expect(after.contains("Sign in") && !after.contains("Sign out"))
    }

    @Test func anExpiringAccessTokenIsRefreshedOnce() async throws {
        let session = await signIn()
        let reference = String(session.dropFirst("bz_session=".count))
        var s = try #require(try await store.load(reference))
        s.accessExpires = Date().timeIntervalSince1970 + 10  // inside the refresh margin
        try await store.save(s, as: reference)
        let refreshed = await send("GET", "/", cookie: session)
        #expect(refreshed.status == 200)
        #expect(accounts.refreshes.count == 1)
        // The cookie is renewed with the new refresh token's life.
        #expect(Self.cookies(refreshed).contains { $0.hasPrefix("\(session);") && $0.contains("Max-Age=") })
        let fresh = try #require(try await store.load(reference))
        #expect(fresh.accessToken != s.accessToken && fresh.csrf == s.csrf)
        #expect(await send("GET", "/", cookie: session).status == 200)
        #expect(accounts.refreshes.count == 1)
    }

    @Test func aRevokedAccessTokenIsRefreshedAtOnceNotWhenItExpires() async throws {
        let session = await signIn()
        let reference = String(session.dropFirst("bz_session=".count))
        let before = try #require(try await store.load(reference))
        #expect(await send("GET", "/", cookie: session).status == 200)
        #expect(accounts.refreshes.count == 0)
        // A role change (or a sign-out elsewhere) voids the user's tokens issued until now.
        let now = Date().timeIntervalSince1970
        revocations.apply([(user: before.userID, before: now)], now: now)
        #expect(await send("GET", "/", cookie: session).status == 200)
        #expect(accounts.refreshes.count == 1)
        let after = try #require(try await store.load(reference))
        #expect(after.accessToken != before.accessToken && after.issued >= now)
        #expect(await send("GET", "/", cookie: session).status == 200)
        #expect(accounts.refreshes.count == 1)
    }

    @Test func theBackOfficeRefusesCustomersAndSendsVisitorsToSignIn() async {
        let visitor = await send("GET", "/admin/")
        #expect(visitor.status == 303)
        #expect(Self.header(visitor, "location") == "/signin?next=%2Fadmin%2F")
        let customer = await signIn()
        for target in ["/admin/", "/admin/products", "/admin/orders", "/admin/customers", "/admin/products/new"] {
            let r = await send("GET", target, cookie: customer)
            #expect(r.status == 403, "\(target)")
            #expect(!String(decoding: r.body, as: UTF8.self).contains("<form method=\"post\" action=\"/admin"))
        }
        let admin = await signIn("admin@example.com")
        let home = await send("GET", "/admin/", cookie: admin)
        #expect(home.status == 200)
        #expect(String(decoding: home.body, as: UTF8.self).contains("Back office"))
    }

    @Test func aStoredSessionReadsBackAsWrittenAndGarbageReadsAsNone() {
        let s = WebSession(
            userID: "u1", email: "a&b@example.com", displayName: "Sam = Sam", roles: ["customer", "admin"],
            accessToken: "a.b.c", accessExpires: 1_800_000_000.5, refreshToken: "r", refreshExpires: 1_800_086_400,
            csrf: "c", issued: 1_799_999_000.25)
        #expect(WebSession(encoded: Array(s.encoded.utf8)) == s)
        #expect(WebSession(encoded: Array("user=u&access=a&refresh=r&csrf=c&access_exp=nan&refresh_exp=1".utf8)) == nil)
        #expect(WebSession(encoded: Array("user=u&access=a".utf8)) == nil)
        #expect(WebSession(encoded: Array("%zz".utf8)) == nil)
    }

    @Test func aRefreshThatAnotherPageViewAlreadyMadeIsNotMadeAgain() async throws {
        let session = await signIn()
        let reference = String(session.dropFirst("bz_session=".count))
        var stale = try #require(try await store.load(reference))
        stale.accessExpires = Date().timeIntervalSince1970 + 10
        // Another page view refreshed meanwhile: the store holds its new tokens.
        var current = stale
        current.accessToken = "access-current"
        current.refreshToken = "refresh-current"
        current.accessExpires = Date().timeIntervalSince1970 + 900
        try await store.save(current, as: reference)
        let keeper = SessionKeeper(
            store: StaleFirstStore(store, stale: stale, reference: reference), accounts: app.accounts,
            revocations: revocations)
        var r = WebRequest(method: "GET", target: "/", headers: [("cookie", session)])
        r.secure = false
        let resumed = await keeper.resume(r, setCookie: { _ in })
        #expect(resumed?.accessToken == "access-current")
        #expect(accounts.refreshes.count == 0)
    }

    @Test func nextPathsStayOnThisSite() {
        #expect(Visit.nextPath("/orders?x=1") == "/orders?x=1")
        for bad in ["//evil.example", "https://evil.example", "/\\evil.example", "javascript:alert(1)", nil, "/a b"] {
            #expect(Visit.nextPath(bad) == "/", "\(String(describing: bad))")
        }
    }
}

/// A store whose first read answers an old copy of the session: the moment between a page view's
/// read and its refresh lease in which another page view refreshed.
final class StaleFirstStore: SessionStore {
    let inner: MemorySessionStore
    let stale: WebSession
    let reference: String
    let first = Lock(true)

    init(_ inner: MemorySessionStore, stale: WebSession, reference: String) {
        self.inner = inner
        self.stale = stale
        self.reference = reference
    }

    func load(_ reference: String) async throws -> WebSession? {
        if first.withLock({
            let was = $0
            $0 = false
            return was
        }) {
            return stale
        }
        return try await inner.load(reference)
    }
    func save(_ session: WebSession, as reference: String) async throws { try await inner.save(session, as: reference) }
    func delete(_ reference: String) async throws { try await inner.delete(reference) }
    func leaseRefresh(_ reference: String) async throws -> Bool { try await inner.leaseRefresh(reference) }
    func releaseRefresh(_ reference: String) async throws { try await inner.releaseRefresh(reference) }
}
