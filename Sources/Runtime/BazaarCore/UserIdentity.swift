/// The end user a call acts for: the verified subject of an access token. A server's
/// authenticating interceptor (BazaarAuth's `UserAuthenticator`) puts it in the call's
/// ``ServerContext/user``.
public struct UserIdentity: Sendable, Hashable {
    /// The user id (the token's `sub`).
    public var subject: String
    public var roles: [String]
    public var scopes: [String]
    /// When the token was issued (seconds since the Unix epoch), when it says: to the microsecond
    /// from Bazaar's own tokens (`iat_us`), else the whole second of `iat`.
    public var issuedAt: Double?
    /// Whether ``issuedAt`` is to the microsecond (otherwise it is a whole second).
    public var issuedAtIsPrecise = false

    public init(subject: String, roles: [String] = [], scopes: [String] = [], issuedAt: Double? = nil) {
        self.subject = subject
        self.roles = roles
        self.scopes = scopes
        self.issuedAt = issuedAt
    }

    public var isAdmin: Bool { roles.contains("admin") }

    /// The user of the call the current task serves (``ServerContext/user``); `nil` for public
    /// calls without credentials, service-to-service calls, and outside any call.
    public static var current: UserIdentity? { ServerContext.current?.user }

    /// The current user, or UNAUTHENTICATED (for a handler whose method the IDL marks
    /// authenticated this cannot fail, because the authenticator refused the call already).
    public static func required() throws(RPCError) -> UserIdentity {
        guard let current else { throw RPCError(.unauthenticated, "sign in first") }
        return current
    }
}
