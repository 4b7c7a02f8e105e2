import BazaarAuth
import BazaarCore
import BazaarRedis
import Foundation
import ShopAPI
import WellKnownTypes

/// A signed-in browser: who it is, the tokens the web app calls the services with on its behalf,
/// and the secret its forms carry against cross-site request forgery.
///
/// The browser holds only a random reference to it (the `bz_session` cookie); the tokens never
/// reach the browser. The store keys a session by the SHA-256 of that reference, so whoever can
/// read the store still cannot present a cookie.
public struct WebSession: Sendable, Equatable {
    public var userID: String
    public var email: String
    public var displayName: String
    public var roles: [String]
    public var accessToken: String
    /// Seconds since the Unix epoch.
    public var accessExpires: Double
    public var refreshToken: String
    /// Seconds since the Unix epoch; the session ends then.
    public var refreshExpires: Double
    /// The synchronizer token every form of this session carries.
    public var csrf: String
    /// When the access token was asked for (seconds since the Unix epoch): no later than it was
    /// issued, so a revocation after this moment voids it (see ``RevocationList``).
    public var issued: Double

    public var isAdmin: Bool { roles.contains("admin") }

    /// A session from the accounts service's answer to a sign-in or a refresh.
    init(_ s: Shop_V1_Session, csrf: String, issued: Double) {
        let user = s.user ?? Shop_V1_User()
        userID = user.id
        email = user.email
        displayName = user.displayName
        roles = user.roles
        accessToken = s.accessToken
        accessExpires = Self.seconds(s.accessExpireTime)
        refreshToken = s.refreshToken
        refreshExpires = Self.seconds(s.refreshExpireTime)
        self.csrf = csrf
        self.issued = issued
    }

    init(
        userID: String, email: String, displayName: String, roles: [String], accessToken: String,
        accessExpires: Double, refreshToken: String, refreshExpires: Double, csrf: String, issued: Double
    ) {
        self.userID = userID
        self.email = email
        self.displayName = displayName
        self.roles = roles
        self.accessToken = accessToken
        self.accessExpires = accessExpires
        self.refreshToken = refreshToken
        self.refreshExpires = refreshExpires
        self.csrf = csrf
        self.issued = issued
    }

    static func seconds(_ t: Google_Protobuf_Timestamp?) -> Double {
        guard let t else { return 0 }
        return Double(t.seconds) + Double(t.nanos) / 1e9
    }

    /// The session as one string (form encoding), as the store keeps it.
    var encoded: String {
        let pairs: [(String, String)] = [
            ("user", userID), ("email", email), ("name", displayName), ("roles", roles.joined(separator: ",")),
            ("access", accessToken), ("access_exp", String(accessExpires)), ("refresh", refreshToken),
            ("refresh_exp", String(refreshExpires)), ("csrf", csrf), ("issued", String(issued)),
        ]
        return pairs.map { URLText.component($0.0) + "=" + URLText.component($0.1) }.joined(separator: "&")
    }

    init?(encoded: some Collection<UInt8>) {
        guard let form = try? FormData(encoded: encoded), let user = form["user"], let access = form["access"],
            let refresh = form["refresh"], let csrf = form["csrf"],
            let accessExp = form["access_exp"].flatMap(Double.init),
            let refreshExp = form["refresh_exp"].flatMap(Double.init), accessExp.isFinite, refreshExp.isFinite
        else { return nil }
        let issued = form["issued"].flatMap(Double.init) ?? 0
        self.init(
            userID: user, email: form["email"] ?? "", displayName: form["name"] ?? "",
            roles: (form["roles"] ?? "").split(separator: ",").map(String.init), accessToken: access,
            accessExpires: accessExp, refreshToken: refresh, refreshExpires: refreshExp, csrf: csrf,
            issued: issued.isFinite ? issued : 0)
    }

    /// Whether `list` voids this session's access token (a role change, a sign-out elsewhere).
    func isRevoked(by list: RevocationList) -> Bool {
        var me = UserIdentity(subject: userID, issuedAt: issued)
        me.issuedAtIsPrecise = true
        return list.isRevoked(me)
    }
}

/// Where sessions live. ``RedisSessionStore`` in a running shop; ``MemorySessionStore`` in unit
/// tests of the pages.
public protocol SessionStore: Sendable {
    /// The session of a cookie's reference, `nil` when there is none (or it expired).
    func load(_ reference: String) async throws -> WebSession?
    /// Stores `session` under `reference` until its refresh token expires.
    func save(_ session: WebSession, as reference: String) async throws
    func delete(_ reference: String) async throws
    /// Takes a short lease on refreshing `reference`'s tokens: `true` for the one caller that
    /// should refresh, `false` while another holds it. Refresh tokens are single use, and a reused
    /// one ends the whole session, so two page views must never refresh at once.
    func leaseRefresh(_ reference: String) async throws -> Bool
    func releaseRefresh(_ reference: String) async throws
}

/// Sessions in Redis: one string per session under `web:session:<sha256 of the reference>`,
/// written with its expiry in one command (it ends with the refresh token), and a `…:refresh`
/// key as the refresh lease.
public struct RedisSessionStore: SessionStore {
    let redis: RedisClient

    public init(redis: RedisClient) { self.redis = redis }

    static func key(_ reference: String) -> String { "web:session:" + SecretToken.hash(reference) }

    public func load(_ reference: String) async throws -> WebSession? {
        guard case .bulk(let bytes) = try await redis.send("GET", Self.key(reference)) else { return nil }
        return WebSession(encoded: bytes)
    }

    public func save(_ session: WebSession, as reference: String) async throws {
        let ttl = max(1, Int(session.refreshExpires - Date().timeIntervalSince1970))
        _ = try await redis.send("SET", Self.key(reference), session.encoded, "EX", String(ttl))
    }

    public func delete(_ reference: String) async throws {
        _ = try await redis.send("DEL", Self.key(reference), Self.key(reference) + ":refresh")
    }

    public func leaseRefresh(_ reference: String) async throws -> Bool {
        let reply = try await redis.send("SET", Self.key(reference) + ":refresh", "1", "NX", "PX", "10000")
        return reply.string == "OK"
    }

    public func releaseRefresh(_ reference: String) async throws {
        _ = try await redis.send("DEL", Self.key(reference) + ":refresh")
    }
}

/// Sessions in this process's memory: for tests of the pages without Redis.
public final class MemorySessionStore: SessionStore {
    private let state = Lock<(sessions: [String: WebSession], leases: Set<String>)>(([:], []))

    public init() {}

    public func load(_ reference: String) async throws -> WebSession? { state.withLock { $0.sessions[reference] } }
    public func save(_ session: WebSession, as reference: String) async throws {
        state.withLock { $0.sessions[reference] = session }
    }
    public func delete(_ reference: String) async throws { state.withLock { $0.sessions[reference] = nil } }
    public func leaseRefresh(_ reference: String) async throws -> Bool {
        state.withLock { $0.leases.insert(reference).inserted }
    }
    public func releaseRefresh(_ reference: String) async throws { _ = state.withLock { $0.leases.remove(reference) } }

    /// How many sessions are stored (for tests).
    public var count: Int { state.withLock { $0.sessions.count } }
}
