import BazaarCore

/// Access tokens void before they expire: per user, the moment before which their tokens no
/// longer count (a role change, a sign-out, a password change). The gateway keeps the list the
/// accounts service publishes (`ListRevocations`, polled by the process) and refuses such tokens
/// on every protocol; the web app refreshes a session whose token is on it. Entries older than any
/// token that could still be alive are dropped.
public final class RevocationList: Sendable {
    private let revokedBefore = Lock<[String: Double]>([:])
    /// Entries are kept this long after their moment (tokens live at most this long).
    public let keep: Double

    public init(keep: Double = JWT.defaultMaxLifetime + 300) { self.keep = keep }

    /// Records revocations (seconds since the Unix epoch); the latest moment per user wins.
    public func apply(_ entries: [(user: String, before: Double)], now: Double) {
        revokedBefore.withLock { map in
            for (user, before) in entries where before > map[user] ?? 0 { map[user] = before }
            map = map.filter { now - $0.value < keep }
        }
    }

    /// Whether `user`'s token was issued before its revocation. Bazaar's own tokens say when to
    /// the microsecond (`iat_us`, from the same clock as the revocation); a token with only the
    /// whole second of `iat` is revoked when issued in the revocation's second or before (it
    /// cannot prove it is newer), and one without `iat` always.
    public func isRevoked(_ user: UserIdentity) -> Bool {
        guard let before = revokedBefore.withLock({ $0[user.subject] }) else { return false }
        guard let issued = user.issuedAt else { return true }
        return user.issuedAtIsPrecise ? issued < before : issued <= before.rounded(.down)
    }

    public var count: Int { revokedBefore.withLock { $0.count } }
}
