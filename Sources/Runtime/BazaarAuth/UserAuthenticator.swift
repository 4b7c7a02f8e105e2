import BazaarCore
import Foundation

/// Metadata keys by which the gateway forwards the identity it verified at the edge.
public enum ForwardedIdentity {
    /// The user id.
    public static let subjectKey = "x-bazaar-user-id"
    /// Comma-separated roles.
    public static let rolesKey = "x-bazaar-user-roles"
    /// Space-separated scopes.
    public static let scopesKey = "x-bazaar-user-scopes"
    /// The client's address as the gateway saw it (behind trusted proxies, from X-Forwarded-For).
    public static let clientAddressKey = "x-bazaar-client-address"
}

/// Bearer credentials and IDL auth rules, for every place that checks them (the services'
/// ``UserAuthenticator`` and the edge gateway), each turning the refusals into its own statuses.
public enum BearerAuth {
    /// The verified user of an `authorization` header value (`Bearer <access token>`).
    public static func user(
        authorization header: String, keys: [JWTKey], issuer: String?, audience: String?,
        maxLifetime: Double = JWT.defaultMaxLifetime
    ) throws(JWTError) -> UserIdentity {
        let parts = header.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else {
            throw JWTError("use authorization: Bearer <access token>")
        }
        let claims: JWT.Claims
        do {
            claims = try JWT.verify(
                String(parts[1]).trimming(" "), keys: keys, issuer: issuer, audience: audience, maxLifetime: maxLifetime
            )
        } catch let e as JWTError {
            throw e
        } catch {
            throw JWTError("invalid token")
        }
        guard let subject = claims.subject, !subject.isEmpty else { throw JWTError("no subject (sub)") }
        var user = UserIdentity(
            subject: subject, roles: claims.roles, scopes: claims.scopes,
            issuedAt: (claims.values["iat"] as? NSNumber)?.doubleValue)
        if let micros = (claims.values["iat_us"] as? NSNumber)?.int64Value {
            user.issuedAt = Double(micros) / 1e6
            user.issuedAtIsPrecise = true
        }
        return user
    }

    /// Why `user` may not call a method with `rule` (a missing role or scope), `nil` when it may.
    public static func refusal(_ user: UserIdentity, _ rule: AuthRequirement) -> String? {
        if !rule.roles.isEmpty, !rule.roles.contains(where: user.roles.contains) {
            return "this needs the role \(rule.roles.joined(separator: " or "))"
        }
        if !rule.scopes.isEmpty, !rule.scopes.allSatisfy(user.scopes.contains) {
            return "this needs the scopes \(rule.scopes.joined(separator: " "))"
        }
        return nil
    }
}

/// Enforces each method's IDL auth rule (`bazaar.options.v1.auth`) before the handler runs, and
/// puts the caller's ``UserIdentity`` (and its address, for throttling) in the call's
/// ``ServerContext``.
///
/// The user comes from one of two places:
/// - an `authorization: Bearer <access token>` header, verified here (EdDSA only; `exp`, `nbf`,
///   `iss`, `aud` checked), so clients can call a service directly;
/// - the gateway's forwarded identity (``ForwardedIdentity``), believed only when the call's mesh
///   identity (its client certificate) is one of `trustedForwarders`. From anyone else those
///   headers are ignored, so a service never trusts what a client claims about itself.
///
/// Public methods run with the user when valid credentials come along and without one otherwise;
/// a bad token on a public method is still refused, so a client learns its token is wrong.
/// Internal methods are left to the transport's ``IdentityPolicy`` (mesh callers only).
public struct UserAuthenticator: ServerInterceptor {
    public var keys: [JWTKey]
    public var issuer: String?
    public var audience: String?
    /// SPIFFE ids whose forwarded identity headers are believed (the gateway's).
    public var trustedForwarders: Set<String>
    /// The longest life an access token may have (`BAZAAR_JWT_MAX_LIFETIME`).
    public var maxTokenLifetime = JWT.defaultMaxLifetime
    /// Services open to every caller whatever their IDL says: the mesh's own health and
    /// reflection, whose protos (from grpc-proto) carry no Bazaar auth options.
    public var infrastructureServices: Set<String> = [
        "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection",
    ]

    public init(keys: [JWTKey], issuer: String?, audience: String?, trustedForwarders: Set<String>) {
        self.keys = keys
        self.issuer = issuer
        self.audience = audience
        self.trustedForwarders = trustedForwarders
    }

    public func intercept(_ context: ServerContext, next: @Sendable (ServerContext) async throws -> Void)
        async throws
    {
        let rule = context.method.options.auth
        if rule.level == .internal || infrastructureServices.contains(context.method.service) {
            return try await next(context)
        }
        let user = try authenticate(metadata: context.metadata, peerIdentity: context.peerIdentity)
        if rule.level == .authenticated {
            guard let user else {
                throw RPCError(
                    .unauthenticated,
                    "\(context.method.path) needs a signed-in user: send authorization: Bearer <access token>")
            }
            if let why = BearerAuth.refusal(user, rule) {
                throw RPCError(.permissionDenied, "\(context.method.path): \(why)")
            }
        }
        var context = context
        context.user = user
        if let peer = context.peerIdentity, trustedForwarders.contains(peer),
            let forwarded = context.metadata[ForwardedIdentity.clientAddressKey]
        {
            context.callerAddress = forwarded
        } else {
            context.callerAddress = context.peerIdentity.map { "mesh:" + $0 }
        }
        try await next(context)
    }

    /// The verified user of a call, `nil` when it carries no credentials.
    public func authenticate(metadata: Metadata, peerIdentity: String?) throws(RPCError) -> UserIdentity? {
        if let peer = peerIdentity, trustedForwarders.contains(peer),
            let subject = metadata[ForwardedIdentity.subjectKey]
        {
            let roles =
                metadata[ForwardedIdentity.rolesKey]?.split(separator: ",").map { String($0.trimming(" ")) } ?? []
            let scopes = metadata[ForwardedIdentity.scopesKey]?.split(separator: " ").map(String.init) ?? []
            return UserIdentity(subject: subject, roles: roles.filter { !$0.isEmpty }, scopes: scopes)
        }
        guard let header = metadata["authorization"] else { return nil }
        do {
            return try BearerAuth.user(
                authorization: header, keys: keys, issuer: issuer, audience: audience, maxLifetime: maxTokenLifetime)
        } catch {
            throw RPCError(.unauthenticated, "access token refused: \(error.description)")
        }
    }
}
