import BazaarAuth
import BazaarCore
import Foundation
import ShopAPI
import Synchronization

/// One page view: the request, the browser's session when it is signed in, and the cookies the
/// answer must carry besides the page.
///
/// Forms are protected against cross-site request forgery with a synchronizer token: a signed-in
/// session's own secret, or, before sign-in (the sign-in and sign-up forms), a random value in the
/// `bz_csrf` cookie (`__Host-bz_csrf` over TLS) that the form must repeat (a double submit; another site can neither read
/// nor set that cookie). A `POST` whose `_csrf` field does not match is refused before it does
/// anything.
final class Visit: Sendable {
    let request: WebRequest
    /// The signed-in session, `nil` for a visitor.
    let session: WebSession?
    /// The form body of a `POST`.
    let form: FormData
    /// The anonymous form token: the browser's `bz_csrf` cookie, or a new one.
    private let anonymousToken: String
    private let anonymousTokenIsNew: Bool
    private let tokenShown = Atomic<Bool>(false)
    private let extraCookies = Lock<[String]>([])

    /// The cookies' names. Over TLS they carry the `__Host-` prefix: browsers then take them
    /// only with `Secure`, `Path=/` and no `Domain`, so a sibling subdomain cannot plant one (a
    /// planted form token would allow sign-in forgery, a planted session would sign the victim
    /// into someone else's account).
    static func sessionCookie(secure: Bool) -> String { secure ? "__Host-bz_session" : "bz_session" }
    static func csrfCookie(secure: Bool) -> String { secure ? "__Host-bz_csrf" : "bz_csrf" }

    /// The session reference the request's cookie holds, if it is one.
    static func reference(_ request: WebRequest) -> String? {
        guard let r = Cookies.parse(request.header("cookie"))[sessionCookie(secure: request.secure)], !r.isEmpty,
            r.utf8.count <= 64
        else { return nil }
        return r
    }

    init(_ request: WebRequest, session: WebSession?, form: FormData = FormData()) {
        self.request = request
        self.session = session
        self.form = form
        let cookie = Cookies.parse(request.header("cookie"))[Self.csrfCookie(secure: request.secure)]
        if let cookie, cookie.utf8.count >= 32, cookie.utf8.count <= 64 {
            anonymousToken = cookie
            anonymousTokenIsNew = false
        } else {
            anonymousToken = (try? SecretToken.generate()) ?? UUID().uuidString
            anonymousTokenIsNew = true
        }
    }

    var user: WebSession? { session }
    var isAdmin: Bool { session?.isAdmin ?? false }

    /// The token this visit's forms carry.
    var csrf: String {
        tokenShown.store(true, ordering: .relaxed)
        return session?.csrf ?? anonymousToken
    }

    /// The hidden field every `POST` form starts with.
    var csrfField: HTML { "<input type=\"hidden\" name=\"_csrf\" value=\"\(csrf)\">" }

    /// Whether the posted form carries this browser's token.
    var csrfIsValid: Bool {
        guard let sent = form["_csrf"], !sent.isEmpty else { return false }
        if let session { return Self.same(sent, session.csrf) }
        return !anonymousTokenIsNew && Self.same(sent, anonymousToken)
    }

    /// Compares without stopping at the first difference, so timing tells nothing of the token.
    static func same(_ a: String, _ b: String) -> Bool {
        let x = Array(a.utf8)
        let y = Array(b.utf8)
        guard x.count == y.count else { return false }
        var diff: UInt8 = 0
        for i in x.indices { diff |= x[i] ^ y[i] }
        return diff == 0
    }

    /// Adds a `set-cookie` to the answer.
    func setCookie(_ value: String) { extraCookies.withLock { $0.append(value) } }

    /// The `set-cookie` headers the answer carries.
    var cookieHeaders: [(String, String)] {
        var out = extraCookies.withLock { $0 }.map { ("set-cookie", $0) }
        if anonymousTokenIsNew, session == nil, tokenShown.load(ordering: .relaxed) {
            out.append(
                (
                    "set-cookie",
                    Cookies.set(Self.csrfCookie(secure: request.secure), anonymousToken, secure: request.secure)
                ))
        }
        return out
    }

    /// Call options for the services as this visit's user (see ``WebRequest/callOptions(bearer:)``).
    var options: CallOptions { request.callOptions(bearer: session?.accessToken) }

    /// A same-site path to go on to after signing in, from a `next` field; `/` when absent or
    /// anything but a path on this site (no open redirects).
    static func nextPath(_ s: String?) -> String {
        guard let s, s.hasPrefix("/"), !s.hasPrefix("//"), !s.contains("\\"), s.utf8.count <= 512,
            s.unicodeScalars.allSatisfy({ $0.value > 0x20 && $0.value < 0x7F })
        else { return "/" }
        return s
    }
}

/// Starts, resumes and ends sessions: the cookie, the store, and the accounts service that
/// issues and refreshes the tokens.
struct SessionKeeper: Sendable {
    let store: any SessionStore
    let accounts: Shop_V1_AccountsService.Client
    /// Access tokens the accounts service has voided: a session holding one is refreshed at once
    /// (new roles after a role change), not when its token expires.
    let revocations: RevocationList
    /// Tokens are refreshed this long before they expire, so a page never calls with one that
    /// runs out on the way.
    static let refreshMargin = 60.0

    /// The session of the request's cookie, its tokens refreshed when due; `nil` when there is
    /// none or it ended. `setCookie` receives what the answer must set: the cookie cleared when
    /// the session ended, or renewed (a later `Max-Age`) when its refresh token was.
    func resume(_ request: WebRequest, setCookie: (String) -> Void) async -> WebSession? {
        guard let reference = Visit.reference(request) else { return nil }
        let name = Visit.sessionCookie(secure: request.secure)
        do {
            guard let session = try await store.load(reference) else {
                setCookie(Cookies.set(name, "", secure: request.secure, maxAge: 0))
                return nil
            }
            let now = Date().timeIntervalSince1970
            if !needsRefresh(session, now: now) { return session }
            if try await store.leaseRefresh(reference) {
                // Another page view may have refreshed between our read and our lease: its
                // tokens are the current ones, and ours is spent (presenting it again would end
                // the whole session).
                if let current = try await store.load(reference), !needsRefresh(current, now: now) {
                    try await store.releaseRefresh(reference)
                    return current
                }
                // Run apart from this request: once the refresh token is spent, the new one must
                // reach the store even if the browser goes away meanwhile.
                let keeper = self
                let outcome = await Task {
                    await keeper.refresh(session, reference: reference, request: request, now: now)
                }.value
                switch outcome {
                case .refreshed(let fresh):
                    setCookie(Cookies.set(name, reference, secure: request.secure, maxAge: Self.maxAge(fresh)))
                    return fresh
                case .ended:
                    setCookie(Cookies.set(name, "", secure: request.secure, maxAge: 0))
                    return nil
                case .failed:
                    return session.accessExpires > now + 1 && !session.isRevoked(by: revocations) ? session : nil
                }
            }
            // Another page view of this browser is refreshing: its old token is good for a little
            // longer (the margin); past that, wait for the new one.
            if session.accessExpires > now + 1, !session.isRevoked(by: revocations) { return session }
            for _ in 0..<40 {
                try await Task.sleep(for: .milliseconds(50))
                if let s = try await store.load(reference), s.accessExpires > now + 1, !s.isRevoked(by: revocations) {
                    return s
                }
            }
            return nil
        } catch {
            return nil
        }
    }

    func needsRefresh(_ s: WebSession, now: Double) -> Bool {
        s.accessExpires - Self.refreshMargin <= now || s.isRevoked(by: revocations)
    }

    enum Refresh: Sendable {
        case refreshed(WebSession)
        /// The accounts service refused the refresh token: the session is over.
        case ended
        /// Accounts or the store could not be reached; the session is as it was.
        case failed
    }

    /// Trades the session's refresh token for new tokens and stores them, holding the lease.
    func refresh(_ session: WebSession, reference: String, request: WebRequest, now: Double) async -> Refresh {
        let outcome: Refresh
        do {
            let fresh = try await accounts.refresh(
                Shop_V1_RefreshRequest(refreshToken: session.refreshToken), options: request.callOptions())
            let next = WebSession(fresh, csrf: session.csrf, issued: now)
            try await store.save(next, as: reference)
            outcome = .refreshed(next)
        } catch let e as RPCError where e.code == .unauthenticated {
            // Signed out elsewhere, password changed, or expired.
            try? await store.delete(reference)
            outcome = .ended
        } catch {
            outcome = .failed
        }
        try? await store.releaseRefresh(reference)
        return outcome
    }

    static func maxAge(_ s: WebSession) -> Int { max(0, Int(s.refreshExpires - Date().timeIntervalSince1970)) }

    /// Stores a new session for `s` (asked for at `issued`) and returns the cookie that refers
    /// to it. A session the browser already had is ended first (no fixation, nothing left behind).
    func begin(_ s: Shop_V1_Session, issued: Double, request: WebRequest, replacing old: WebSession? = nil)
        async throws -> String
    {
        if let reference = Visit.reference(request) {
            if let old {
                _ = try? await accounts.logout(
                    Shop_V1_LogoutRequest(refreshToken: old.refreshToken), options: request.callOptions())
            }
            try await store.delete(reference)
        }
        let reference = try SecretToken.generate()
        let session = WebSession(s, csrf: try SecretToken.generate(), issued: issued)
        try await store.save(session, as: reference)
        return Cookies.set(
            Visit.sessionCookie(secure: request.secure), reference, secure: request.secure, maxAge: Self.maxAge(session)
        )
    }

    /// Ends the request's session: its refresh token revoked, the store's record gone, and the
    /// cookie that clears it returned.
    func end(_ request: WebRequest, _ session: WebSession?) async -> String {
        if let reference = Visit.reference(request) {
            if let session {
                _ = try? await accounts.logout(
                    Shop_V1_LogoutRequest(refreshToken: session.refreshToken), options: request.callOptions())
            }
            try? await store.delete(reference)
        }
        return Cookies.set(Visit.sessionCookie(secure: request.secure), "", secure: request.secure, maxAge: 0)
    }
}

extension WebRequest {
    /// Options for a call made for this request: the browser's address (which the services
    /// believe from the web app as they do from the gateway, for throttling), the request id, and
    /// the user's access token when there is one. Calls wait for a connection within their
    /// deadline rather than failing at once: the first page after the web app or a service
    /// (re)starts would otherwise be a 503 while the channel connects (seen in the Compose test).
    func callOptions(bearer token: String? = nil) -> CallOptions {
        var m = Metadata()
        if let token { m.add("authorization", "Bearer " + token) }
        if !clientAddress.isEmpty { m.add(ForwardedIdentity.clientAddressKey, clientAddress) }
        if !requestID.isEmpty { m.add("x-request-id", requestID) }
        return CallOptions(metadata: m, waitForReady: true)
    }
}
