import BazaarAuth
import BazaarCore
import BazaarTelemetry
import ShopKit

/// The accounts service as a process runs it: its database, the token signing key
/// (BAZAAR_JWT_PRIVATE_KEY), token lifetimes and sign-in throttling, retention of spent rows, and
/// the argon2 queue's metrics.
public enum AccountsAssembly {
    public static func assemble(_ c: ShopContext) async throws -> ShopAssembly {
        let env = c.env
        let db = try await c.database(migrations: AccountsSchema.migrations)
        let retention = try RetentionJob(
            db: db,
            rules: [
                .init(
                    table: "login_throttle",
                    condition: """
                        last_failure_at < clock_timestamp() - make_interval(secs => $1) AND (locked_until IS NULL OR locked_until < clock_timestamp())
                        """, retention: .seconds(24 * 3600), setting: "RETAIN_LOGIN_THROTTLE"),
                .init(
                    table: "refresh_tokens", condition: "expires_at < clock_timestamp() - make_interval(secs => $1)",
                    retention: .seconds(7 * 24 * 3600), setting: "RETAIN_REFRESH_TOKENS"),
                // Older than any token that could still be alive (BAZAAR_JWT_MAX_LIFETIME).
                .init(
                    table: "revocations", condition: "recorded_at < clock_timestamp() - make_interval(secs => $1)",
                    retention: .seconds(2 * 3600), setting: "RETAIN_REVOCATIONS"),
            ], logger: c.logger
        ).configured(by: env.typed)
        let work = SecretWork.shared
        c.metrics.addCollector {
            [
                CollectedSample(
                    name: "bazaar_password_checks_shed_total",
                    help: "Password hashes refused because the argon2 queue was full.",
                    type: .counter, value: Double(work.shedCount)),
                CollectedSample(
                    name: "bazaar_password_checks_dropped_total",
                    help: "Queued password hashes dropped because their caller gave up.",
                    type: .counter, value: Double(work.droppedCount)),
            ]
        }
        let signing: JWTKey
        do {
            let key = try JWTKey(pem: try env.file("JWT_PRIVATE_KEY", default: ".run/jwt/jwt-key.pem"))
            signing = key.withKeyID(key.thumbprint)
        } catch let e as RPCError { throw e } catch {
            throw RPCError(.invalidArgument, "BAZAAR_JWT_PRIVATE_KEY: \(error)")
        }
        var settings = AccountsService.Settings()
        settings.issuer = env["JWT_ISSUER"] ?? "bazaar"
        settings.audience = env["JWT_AUDIENCE"] ?? "bazaar"
        if let ttl = try env.duration("ACCESS_TOKEN_TTL") { settings.accessTokenLifetime = Int(ttl.components.seconds) }
        guard Double(settings.accessTokenLifetime) <= (try env.tokenMaxLifetime()) else {
            throw RPCError(
                .invalidArgument,
                "BAZAAR_ACCESS_TOKEN_TTL is longer than BAZAAR_JWT_MAX_LIFETIME: every token would be refused")
        }
        if let ttl = try env.duration("REFRESH_TOKEN_TTL") {
            settings.refreshTokenLifetime = Int(ttl.components.seconds)
        }
        if let n = try env.int("LOGIN_FREE_FAILURES", 1...1000) { settings.freeLoginFailures = n }
        let accounts = try AccountsService(db: db, logger: c.logger, signingKey: signing, settings: settings)
        return ShopAssembly(service: accounts, background: [{ await retention.run() }])
    }
}
