import BazaarAuth
import BazaarCore
import BazaarPostgres
import BazaarTelemetry
import Foundation
import ShopAPI
import ShopKit
import WellKnownTypes

/// `shop.v1.AccountsService` on PostgreSQL: users, argon2id passwords, EdDSA access tokens and
/// rotating refresh tokens.
///
/// A session is a family of refresh tokens. Each refresh retires the token it was given and
/// issues the next one of the family; a retired token presented again means it leaked (or a
/// client raced itself), so the whole family is revoked. Tokens are stored only as SHA-256.
public final class AccountsService: Shop_V1_AccountsService.ServiceProtocol {
    public struct Settings: Sendable {
        public var issuer = "bazaar"
        public var audience = "bazaar"
        public var accessTokenLifetime = 900
        public var refreshTokenLifetime = 30 * 24 * 3600
        /// Failed sign-ins for one email from one client address before each further attempt
        /// from that address is delayed.
        public var freeLoginFailures = 5
        /// Failed sign-ins from one client address, whatever the emails, before each further
        /// attempt from that address is delayed (credential stuffing across accounts).
        public var freeAddressFailures = 30
        /// The delay after the first extra failure; it doubles per failure up to `maxLoginDelay`.
        public var baseLoginDelay = 1
        public var maxLoginDelay = 900
        public init() {}
    }

    public let db: PostgresPool
    public let logger: Logger
    public let signingKey: JWTKey
    public let settings: Settings
    let hasher = PasswordHasher()
    /// Verified against when the email is unknown, so that a wrong email costs as much time as a
    /// wrong password and the timing does not tell which emails have accounts.
    let decoyHash: String

    public init(db: PostgresPool, logger: Logger, signingKey: JWTKey, settings: Settings = Settings()) throws {
        self.db = db
        self.logger = logger
        self.signingKey = signingKey
        self.settings = settings
        decoyHash = try PasswordHasher().hash(UUID().uuidString)
    }

    static let userColumns =
        "id::text AS id, email, display_name, to_jsonb(roles)::text AS roles, \(epochMicros("created_at", as: "created"))"

    static func user(_ row: PostgresRow) -> Shop_V1_User {
        var u = Shop_V1_User()
        u.id = row.text("id")
        u.email = row.text("email")
        u.displayName = row.text("display_name")
        u.roles = jsonStringList(row["roles"])
        u.createTime = row.micros("created")
        return u
    }

    static func normalizedEmail(_ email: String) throws(RPCError) -> String {
        let e = email.trimming(" ")
        try Check.that(!e.isEmpty, field: "email", reason: "REQUIRED", "email is required")
        try Check.email(e)
        return e
    }

    static func checkPassword(_ password: String, field: String) throws(RPCError) {
        try Check.that(
            password.count >= 8, field: field, reason: "STRING_TOO_SHORT", "\(field) must have at least 8 characters")
        try Check.that(
            password.utf8.count <= 1024, field: field, reason: "STRING_TOO_LONG", "\(field) is longer than 1024 bytes")
    }

    // MARK: sign-up and sign-in

    public func register(_ request: Shop_V1_RegisterRequest, context: ServerContext) async throws -> Shop_V1_User {
        let email = try Self.normalizedEmail(request.email)
        try Self.checkPassword(request.password, field: "password")
        try Check.text(request.displayName, "display_name", max: 100, required: false)
        let hash = try await hasher.hashInBackground(request.password)
        let name = request.displayName.isEmpty ? String(email.split(separator: "@")[0]) : request.displayName
        do {
            let row = try await db.query(
                """
                INSERT INTO users (email, display_name, password_hash, roles) VALUES ($1, $2, $3, ARRAY['customer'])
                RETURNING \(Self.userColumns)
                """, [email, name, hash]
            ).rows[0]
            logger.info("user registered", [("user_id", .string(row.text("id")))])
            return Self.user(row)
        } catch let e as PostgresError where e.isUniqueViolation {
            throw RPCError(.alreadyExists, "an account with this email exists")
        }
    }

    /// Signs in. Failed attempts are throttled per (email, client address) and per client address,
    /// never per email alone: whoever guesses at an account slows only themselves, and its owner
    /// signs in from anywhere else at once, the admin included. (Clients behind one address, a
    /// NAT, share its throttle.) The client address is the one the gateway forwards
    /// (``ServerContext/callerAddress``); a direct mesh caller is its mesh identity.
    public func login(_ request: Shop_V1_LoginRequest, context: ServerContext) async throws -> Shop_V1_Session {
        let email = try Self.normalizedEmail(request.email)
        try Check.that(
            !request.password.isEmpty && request.password.utf8.count <= 1024, field: "password", reason: "REQUIRED",
            "password is required")
        let key = email.lowercased()
        let address = ServerContext.current?.callerAddress ?? "unknown"
        // A mesh caller (an internal tool) is one identity, not a crowd: only its pairs count.
        let keys = (pair: "pair:\(key)|\(address)", address: address.hasPrefix("mesh:") ? "none" : "addr:\(address)")
        let throttle =
            try await db.query(
                """
                SELECT COALESCE(max(GREATEST(0, ceil(extract(epoch FROM locked_until - clock_timestamp())))), 0)::int8 AS wait
                FROM login_throttle WHERE key = $1 OR key = $2
                """, [keys.pair, keys.address]
            ).rows.first?.int64("wait") ?? 0
        if throttle > 0 {
            var error = RPCError(
                .resourceExhausted, "too many failed sign-ins from your address; try again in \(throttle) s")
            error.metadata.add("retry-after", String(throttle))
            throw error
        }
        let row = try await db.query(
            "SELECT \(Self.userColumns), password_hash FROM users WHERE lower(email) = $1", [key]
        ).rows.first
        let ok = try await PasswordHasher.verifyInBackground(
            request.password, against: row?.text("password_hash") ?? decoyHash)
        guard let row, ok else {
            try await recordFailure(keys)
            throw RPCError(.unauthenticated, "wrong email or password")
        }
        // The address's own count stays: a signed-in account of the attacker's must not reset it.
        _ = try await db.query("DELETE FROM login_throttle WHERE key = $1", [keys.pair])
        if hasher.needsRehash(row.text("password_hash")) {
            let rehashed = try await hasher.hashInBackground(request.password)
            _ = try await db.query("UPDATE users SET password_hash = $2 WHERE id = $1", [row.text("id"), rehashed])
        }
        let user = Self.user(row)
        return try await db.transaction { tx in
            try await self.newSession(for: user, family: nil, tx)
        }
    }

    /// Counts a failed sign-in for the (email, address) pair and for the address; past the free
    /// ones, the next attempt from there waits base * 2^(n - free - 1), at most the maximum.
    private func recordFailure(_ keys: (pair: String, address: String)) async throws {
        _ = try await db.query(
            """
            INSERT INTO login_throttle (key, failures, last_failure_at)
            SELECT k, 1, clock_timestamp() FROM unnest(ARRAY[$1, $2]::text[]) AS k WHERE k <> 'none'
            ON CONFLICT (key) DO UPDATE SET failures = login_throttle.failures + 1, last_failure_at = clock_timestamp(),
              locked_until = CASE WHEN login_throttle.failures + 1 > (CASE WHEN login_throttle.key = $1 THEN $3::int ELSE $4::int END)
                THEN clock_timestamp() + make_interval(secs => LEAST($6::float8, $5::float8 * power(2,
                  login_throttle.failures - (CASE WHEN login_throttle.key = $1 THEN $3::int ELSE $4::int END))))
                ELSE NULL END
            """,
            [
                keys.pair, keys.address, settings.freeLoginFailures, settings.freeAddressFailures,
                settings.baseLoginDelay,
                settings.maxLoginDelay,
            ])
        logger.warning("sign-in failed", [])
    }

    private func newSession(for user: Shop_V1_User, family: String?, _ tx: PostgresConnection) async throws
        -> Shop_V1_Session
    {
        let refresh = try SecretToken.generate()
        let row = try await tx.query(
            """
            INSERT INTO refresh_tokens (user_id, family_id, token_hash, expires_at)
            VALUES ($1, COALESCE($2::uuid, gen_random_uuid()), $3, clock_timestamp() + make_interval(secs => $4))
            RETURNING \(epochMicros("expires_at", as: "expires"))
            """, [user.id, family, SecretToken.hash(refresh), settings.refreshTokenLifetime]
        ).rows[0]
        let now = Date().timeIntervalSince1970
        var session = Shop_V1_Session()
        // iat_us: when, to the microsecond, so that a revocation in the same second is told apart.
        session.accessToken = try JWT.issue(
            subject: user.id, issuer: settings.issuer, audience: settings.audience,
            lifetime: settings.accessTokenLifetime, roles: user.roles,
            extra: ["iat_us": Int64(now * 1_000_000)], key: signingKey, now: now)
        session.accessExpireTime = Google_Protobuf_Timestamp(
            micros: Int64(now + Double(settings.accessTokenLifetime)) * 1_000_000)
        session.refreshToken = refresh
        session.refreshExpireTime = row.micros("expires")
        session.tokenType = "Bearer"
        session.user = user
        return session
    }

    public func refresh(_ request: Shop_V1_RefreshRequest, context: ServerContext) async throws -> Shop_V1_Session {
        try Check.text(request.refreshToken, "refresh_token", max: 100)
        let hash = SecretToken.hash(request.refreshToken)
        let outcome: Result<Shop_V1_Session, RPCError> = try await db.transaction { tx in
            guard
                let t = try await tx.query(
                    """
                    SELECT id::text AS id, family_id::text AS family_id, user_id::text AS user_id, used_at IS NOT NULL AS used,
                           revoked_at IS NOT NULL AS revoked, expires_at < clock_timestamp() AS expired
                    FROM refresh_tokens WHERE token_hash = $1 FOR UPDATE
                    """, [hash]
                ).rows.first
            else { return .failure(RPCError(.unauthenticated, "unknown refresh token")) }
            if t.bool("revoked") == true { return .failure(RPCError(.unauthenticated, "the session was ended")) }
            if t.bool("used") == true {
                // Reuse of a retired token: someone else has (had) it. End the whole session.
                _ = try await tx.query(
                    "UPDATE refresh_tokens SET revoked_at = clock_timestamp() WHERE family_id = $1::uuid AND revoked_at IS NULL",
                    [t.text("family_id")])
                self.logger.warning("refresh token reused; session revoked", [("user_id", .string(t.text("user_id")))])
                return .failure(RPCError(.unauthenticated, "refresh token already used; the session was ended"))
            }
            if t.bool("expired") == true {
                return .failure(RPCError(.unauthenticated, "the refresh token expired; sign in again"))
            }
            _ = try await tx.query(
                "UPDATE refresh_tokens SET used_at = clock_timestamp() WHERE id = $1::uuid", [t.text("id")])
            guard
                let u = try await tx.query(
                    "SELECT \(Self.userColumns) FROM users WHERE id = $1::uuid", [t.text("user_id")]
                ).rows.first
            else {
                return .failure(RPCError(.unauthenticated, "the account no longer exists"))
            }
            return .success(try await self.newSession(for: Self.user(u), family: t.text("family_id"), tx))
        }
        // The revocation above must commit, so the refusal is returned rather than thrown inside.
        return try outcome.get()
    }

    public func logout(_ request: Shop_V1_LogoutRequest, context: ServerContext) async throws -> Shop_V1_LogoutResponse
    {
        try Check.text(request.refreshToken, "refresh_token", max: 100)
        // Revokes the token's whole family: every token the session ever had. Unknown tokens are
        // not an error (logging out twice is fine).
        let revoked = try await db.query(
            """
            UPDATE refresh_tokens SET revoked_at = clock_timestamp()
            WHERE family_id = (SELECT family_id FROM refresh_tokens WHERE token_hash = $1) AND revoked_at IS NULL
            RETURNING user_id::text AS user_id
            """, [SecretToken.hash(request.refreshToken)]
        ).rows
        // The access tokens out there go too (on every device: they get new ones by refreshing).
        if let user = revoked.first?.text("user_id") { try await revokeAccessTokens(of: user) }
        return Shop_V1_LogoutResponse()
    }

    /// Voids every access token of `user` issued until now: the gateway learns it within its
    /// poll interval (``listRevocations(_:context:)``) and refuses them.
    func revokeAccessTokens(of user: String, _ c: PostgresConnection? = nil) async throws {
        // The moment comes from this process's clock, as the tokens' `iat_us` does.
        let now = Int64(Date().timeIntervalSince1970 * 1_000_000)
        let sql = """
            INSERT INTO revocations (user_id, revoked_before) VALUES ($1::uuid, to_timestamp($2::float8 / 1000000))
            ON CONFLICT (user_id) DO UPDATE SET revoked_before = EXCLUDED.revoked_before, recorded_at = clock_timestamp()
            """
        if let c {
            _ = try await c.query(sql, [user, Double(now)])
        } else {
            _ = try await db.query(sql, [user, Double(now)])
        }
    }

    public func listRevocations(_ request: Shop_V1_ListRevocationsRequest, context: ServerContext) async throws
        -> Shop_V1_ListRevocationsResponse
    {
        // One statement whether or not there is anything new (the gateway asks every second): the
        // server's time comes on a row of its own, the revocations (if any) beside it.
        let rows = try await db.query(
            """
            SELECT r.user_id::text AS user_id, \(epochMicros("r.revoked_before", as: "before")), \(epochMicros("n.t", as: "now"))
            FROM (SELECT clock_timestamp() AS t) n
            LEFT JOIN LATERAL (SELECT * FROM revocations WHERE recorded_at > to_timestamp($1::float8 / 1000000)
                               ORDER BY recorded_at LIMIT 100000) r ON true
            """, [Double(request.sinceMicros)]
        ).rows
        var response = Shop_V1_ListRevocationsResponse()
        response.revocations = rows.filter { $0["user_id"] != nil }
            .map { Shop_V1_Revocation(userID: $0.text("user_id"), revokedBeforeMicros: $0.int64("before")) }
        response.nowMicros = rows[0].int64("now")
        return response
    }

    // MARK: the signed-in user

    private func fetch(_ id: String) async throws -> Shop_V1_User {
        guard Check.isID(id),
            let row = try await db.query("SELECT \(Self.userColumns) FROM users WHERE id = $1::uuid", [id]).rows.first
        else {
            throw RPCError(.notFound, "no user \(id)")
        }
        return Self.user(row)
    }

    public func getMe(_ request: Shop_V1_GetMeRequest, context: ServerContext) async throws -> Shop_V1_User {
        try await fetch(try UserIdentity.required().subject)
    }

    public func updateMe(_ request: Shop_V1_UpdateMeRequest, context: ServerContext) async throws -> Shop_V1_User {
        let me = try UserIdentity.required()
        try Check.text(request.displayName, "display_name", max: 100)
        guard
            let row = try await db.query(
                "UPDATE users SET display_name = $2, updated_at = clock_timestamp() WHERE id = $1::uuid RETURNING \(Self.userColumns)",
                [me.subject, request.displayName]
            ).rows.first
        else { throw RPCError(.notFound, "no user \(me.subject)") }
        return Self.user(row)
    }

    public func changePassword(_ request: Shop_V1_ChangePasswordRequest, context: ServerContext) async throws
        -> Shop_V1_ChangePasswordResponse
    {
        let me = try UserIdentity.required()
        try Self.checkPassword(request.newPassword, field: "new_password")
        guard
            let row = try await db.query("SELECT password_hash FROM users WHERE id = $1::uuid", [me.subject]).rows.first
        else {
            throw RPCError(.notFound, "no user \(me.subject)")
        }
        guard try await PasswordHasher.verifyInBackground(request.currentPassword, against: row.text("password_hash"))
        else {
            throw RPCError(.permissionDenied, "current_password is wrong")
        }
        let hash = try await hasher.hashInBackground(request.newPassword)
        try await db.transaction { tx in
            _ = try await tx.query(
                "UPDATE users SET password_hash = $2, updated_at = clock_timestamp() WHERE id = $1::uuid",
                [me.subject, hash])
            _ = try await tx.query(
                "UPDATE refresh_tokens SET revoked_at = clock_timestamp() WHERE user_id = $1::uuid AND revoked_at IS NULL",
                [me.subject])
            try await self.revokeAccessTokens(of: me.subject, tx)
        }
        logger.info("password changed; sessions revoked", [("user_id", .string(me.subject))])
        return Shop_V1_ChangePasswordResponse()
    }

    // MARK: admin and internal

    public func listUsers(_ request: Shop_V1_ListUsersRequest, context: ServerContext) async throws
        -> Shop_V1_ListUsersResponse
    {
        let size = try PageToken.size(request.page)
        var params: [(any PostgresBindable)?] = []
        var condition = "true"
        if let c = try PageToken.decode(request.page?.pageToken, count: 2) {
            guard Check.isID(c[1]) else {
                throw RPCError(.invalidArgument, "page.page_token is not a token this service issued")
            }
            params = [c[0], c[1]]
            condition = "(created_at, id) > ($1::timestamptz, $2::uuid)"
        }
        let rows = try await db.query(
            "SELECT \(Self.userColumns), created_at::text AS created_text FROM users WHERE \(condition) ORDER BY created_at, id LIMIT \(size + 1)",
            params
        ).rows
        var response = Shop_V1_ListUsersResponse()
        response.users = rows.prefix(size).map(Self.user)
        if rows.count > size, let last = rows.prefix(size).last {
            response.nextPageToken = PageToken.encode([last.text("created_text"), last.text("id")])
        }
        return response
    }

    static let knownRoles: Set<String> = ["customer", "admin"]

    public func setUserRoles(_ request: Shop_V1_SetUserRolesRequest, context: ServerContext) async throws
        -> Shop_V1_User
    {
        try Check.id(request.userID, "user_id")
        let unknown = Set(request.roles).subtracting(Self.knownRoles)
        try Check.that(
            unknown.isEmpty, field: "roles", reason: "UNKNOWN_ROLE",
            "unknown roles: \(unknown.sorted().joined(separator: ", ")) (known: admin, customer)")
        guard
            let row = try await db.query(
                """
                UPDATE users SET roles = ARRAY(SELECT DISTINCT jsonb_array_elements_text($2::jsonb) ORDER BY 1), updated_at = clock_timestamp()
                WHERE id = $1::uuid RETURNING \(Self.userColumns)
                """, [request.userID, jsonText(request.roles)]
            ).rows.first
        else { throw RPCError(.notFound, "no user \(request.userID)") }
        // Tokens carrying the old roles stop counting now, not when they expire.
        try await revokeAccessTokens(of: request.userID)
        logger.info(
            "roles changed",
            [("user_id", .string(request.userID)), ("by", .string(UserIdentity.current?.subject ?? ""))])
        return Self.user(row)
    }

    public func getUser(_ request: Shop_V1_GetUserRequest, context: ServerContext) async throws -> Shop_V1_User {
        try Check.id(request.userID, "user_id")
        return try await fetch(request.userID)
    }

    public func getPublicKeys(_ request: Shop_V1_GetPublicKeysRequest, context: ServerContext) async throws
        -> Shop_V1_PublicKeys
    {
        var key = Shop_V1_PublicKey()
        key.kty = "OKP"
        key.crv = "Ed25519"
        key.kid = signingKey.keyID
        key.x = JWT.base64url(signingKey.rawPublicKey)
        key.alg = "EdDSA"
        key.use = "sig"
        var keys = Shop_V1_PublicKeys()
        keys.keys = [key]
        return keys
    }

    /// Creates a user with the given roles, or gives an existing one those roles and password
    /// (for `bazaar seed`). Returns the user id.
    /// Creates a user unless one with this email exists; an existing user (and its password) is
    /// never touched. Returns whether it was created.
    @discardableResult
    public func ensureUser(email: String, password: String, displayName: String, roles: [String]) async throws -> Bool {
        let hash = try await hasher.hashInBackground(password)
        return try await db.query(
            """
            INSERT INTO users (email, display_name, password_hash, roles) VALUES ($1, $2, $3, ARRAY(SELECT jsonb_array_elements_text($4::jsonb)))
            ON CONFLICT ((lower(email))) DO NOTHING
            RETURNING id::text AS id
            """, [email, displayName, hash, jsonText(roles)]
        ).rows.count == 1
    }
}

/// The accounts database.
public enum AccountsSchema {
    public static let migrations: [Migration] = [
        Migration(
            version: 1, name: "users, refresh tokens, sign-in throttling",
            sql: """
                CREATE TABLE users (
                    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
                    email         text NOT NULL,
                    display_name  text NOT NULL,
                    password_hash text NOT NULL,
                    roles         text[] NOT NULL DEFAULT ARRAY['customer'],
                    created_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
                    updated_at    timestamptz NOT NULL DEFAULT clock_timestamp()
                );
                CREATE UNIQUE INDEX users_email ON users (lower(email));
                CREATE INDEX users_created ON users (created_at, id);
                CREATE TABLE refresh_tokens (
                    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
                    family_id   uuid NOT NULL,
                    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
                    token_hash  text NOT NULL UNIQUE,
                    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
                    expires_at  timestamptz NOT NULL,
                    used_at     timestamptz,
                    revoked_at  timestamptz
                );
                CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
                CREATE INDEX refresh_tokens_user ON refresh_tokens (user_id);
                CREATE TABLE login_failures (
                    email_key       text PRIMARY KEY,
                    failures        integer NOT NULL,
                    last_failure_at timestamptz NOT NULL,
                    locked_until    timestamptz
                );
                """),
        // Throttling per email locked anyone out of any account; now per (email, address) and per address.
        Migration(
            version: 2, name: "sign-in throttling per client address",
            sql: """
                DROP TABLE login_failures;
                CREATE TABLE login_throttle (
                    key             text PRIMARY KEY,
                    failures        integer NOT NULL,
                    last_failure_at timestamptz NOT NULL,
                    locked_until    timestamptz
                );
                CREATE INDEX login_throttle_last_failure ON login_throttle (last_failure_at);
                """),
        // Access tokens void before they expire (role changes, sign-outs, password changes).
        Migration(
            version: 3, name: "access-token revocations",
            sql: """
                CREATE TABLE revocations (
                    user_id        uuid PRIMARY KEY,
                    revoked_before timestamptz NOT NULL,
                    recorded_at    timestamptz NOT NULL DEFAULT clock_timestamp()
                );
                CREATE INDEX revocations_recorded ON revocations (recorded_at);
                """),
    ]
}
