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
/// `bz_csrf` cookie that the form must repeat (a double submit; another site can neither read
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
    private let extraCookies = Mutex<[String]>([])

    static let sessionCookie = "bz_session"
    static let csrfCookie = "bz_csrf"

    init(_ request: WebRequest, session: WebSession?, form: FormData = FormData()) {
        self.request = request
        self.session = session
        self.form = form
        let cookie = Cookies.parse(request.header("cookie"))[Self.csrfCookie]
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
            out.append(("set-cookie", Cookies.set(Self.csrfCookie, anonymousToken, secure: request.secure)))
        }
        return out
    }

    /// Call options for the services: the user's access token, and the browser's address (which
    /// the services believe from the web app as they do from the gateway, for throttling).
    var options: CallOptions {
        var m = Metadata()
        if let session { m.add("authorization", "Bearer " + session.accessToken) }
        if !request.clientAddress.isEmpty { m.add(ForwardedIdentity.clientAddressKey, request.clientAddress) }
        if !request.requestID.isEmpty { m.add("x-request-id", request.requestID) }
        return CallOptions(metadata: m)
    }

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
    /// none or it ended (then the cookie is cleared, through `clear`).
    func resume(_ request: WebRequest, clear: (String) -> Void) async -> WebSession? {
        guard let reference = Cookies.parse(request.header("cookie"))[Visit.sessionCookie], !reference.isEmpty,
            reference.utf8.count <= 64
        else { return nil }
        do {
            guard var session = try await store.load(reference) else {
                clear(Cookies.set(Visit.sessionCookie, "", secure: request.secure, maxAge: 0))
                return nil
            }
            let now = Date().timeIntervalSince1970
            let revoked = session.isRevoked(by: revocations)
            if session.accessExpires - Self.refreshMargin > now, !revoked { return session }
            if try await store.leaseRefresh(reference) {
                let fresh: Shop_V1_Session?
                do {
                    fresh = try await accounts.refresh(
                        Shop_V1_RefreshRequest(refreshToken: session.refreshToken), options: forwarding(request))
                } catch let e as RPCError where e.code == .unauthenticated {
                    fresh = nil
                } catch {
                    try? await store.releaseRefresh(reference)
                    throw error
                }
                guard let fresh else {
                    // Signed out elsewhere, password changed, or expired: the session is over.
                    try await store.delete(reference)
                    clear(Cookies.set(Visit.sessionCookie, "", secure: request.secure, maxAge: 0))
                    return nil
                }
                session = WebSession(fresh, csrf: session.csrf, issued: now)
                try await store.save(session, as: reference)
                try await store.releaseRefresh(reference)
                return session
            }
            // Another page view of this browser is refreshing: its old token is good for a little
            // longer (the margin); past that, wait for the new one.
            if session.accessExpires > now + 1, !revoked { return session }
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

    /// Stores a new session for `s` (asked for at `issued`) and returns the cookie that refers
    /// to it.
    func begin(_ s: Shop_V1_Session, issued: Double, request: WebRequest) async throws -> String {
        let reference = try SecretToken.generate()
        let session = WebSession(s, csrf: try SecretToken.generate(), issued: issued)
        try await store.save(session, as: reference)
        let maxAge = max(0, Int(session.refreshExpires - Date().timeIntervalSince1970))
        return Cookies.set(Visit.sessionCookie, reference, secure: request.secure, maxAge: maxAge)
    }

    /// Replaces the tokens of the request's session (after a password change).
    func replace(_ s: Shop_V1_Session, issued: Double, in request: WebRequest, keeping old: WebSession) async throws {
        guard let reference = Cookies.parse(request.header("cookie"))[Visit.sessionCookie] else { return }
        try await store.save(WebSession(s, csrf: old.csrf, issued: issued), as: reference)
    }

    /// Ends the request's session: its refresh token revoked, the store's record gone, and the
    /// cookie that clears it returned.
    func end(_ request: WebRequest, _ session: WebSession?) async -> String {
        if let reference = Cookies.parse(request.header("cookie"))[Visit.sessionCookie] {
            if let session {
                _ = try? await accounts.logout(
                    Shop_V1_LogoutRequest(refreshToken: session.refreshToken), options: forwarding(request))
            }
            try? await store.delete(reference)
        }
        return Cookies.set(Visit.sessionCookie, "", secure: request.secure, maxAge: 0)
    }

    func forwarding(_ request: WebRequest) -> CallOptions {
        var m = Metadata()
        if !request.clientAddress.isEmpty { m.add(ForwardedIdentity.clientAddressKey, request.clientAddress) }
        return CallOptions(metadata: m)
    }
}
