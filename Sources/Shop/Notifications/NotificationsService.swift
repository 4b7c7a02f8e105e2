import BazaarAuth
import BazaarCore
import BazaarPostgres
import BazaarSMTP
import BazaarTelemetry
import ShopAPI
import ShopKit

/// `shop.v1.NotificationsService` on PostgreSQL. Notifications come from other services (Send)
/// and from order events (``OrderEventConsumer``); every one is stored, and email ones are sent
/// by ``Mailer``.
public final class NotificationsService: Shop_V1_NotificationsService.ServiceProtocol {
    public let db: PostgresPool
    public let accounts: Shop_V1_AccountsService.Client
    public let logger: Logger
    public let pollInterval: Duration

    public init(
        db: PostgresPool, accounts: Shop_V1_AccountsService.Client, logger: Logger,
        pollInterval: Duration = .milliseconds(500)
    ) {
        self.db = db
        self.accounts = accounts
        self.logger = logger
        self.pollInterval = pollInterval
    }

    static let columns = """
        id::text AS id, user_id::text AS user_id, channel, subject, body, read, COALESCE(order_id::text, '') AS order_id,
        COALESCE(product_id::text, '') AS product_id, created_at::text AS created_text, \(epochMicros("created_at", as: "created"))
        """

    static func notification(_ row: PostgresRow) -> Shop_V1_Notification {
        var n = Shop_V1_Notification()
        n.id = row.text("id")
        n.userID = row.text("user_id")
        n.channel = row.text("channel") == "EMAIL" ? .email : .inApp
        n.subject = row.text("subject")
        n.body = row.text("body")
        n.read = row.bool("read") ?? false
        n.createTime = row.micros("created")
        if !row.text("order_id").isEmpty { n.subjectRef = .orderID(row.text("order_id")) }
        if !row.text("product_id").isEmpty { n.subjectRef = .productID(row.text("product_id")) }
        return n
    }

    /// Stores a notification once per id (a repeat is a no-op that returns the stored one). An
    /// email notification is queued for the mailer with the user's current address.
    func store(_ r: Shop_V1_SendNotificationRequest, email: String?, _ c: PostgresConnection? = nil) async throws
        -> Shop_V1_Notification
    {
        let insert =
            "INSERT INTO notifications \(Self.insertColumns) VALUES \(Self.insertValues) ON CONFLICT (id) DO NOTHING"
        let params = Self.insertParameters(r, email: email)
        let select = "SELECT \(Self.columns) FROM notifications WHERE id = $1::uuid"
        if let c {
            _ = try await c.query(insert, params)
            return Self.notification(try await c.query(select, [r.id]).rows[0])
        }
        _ = try await db.query(insert, params)
        return Self.notification(try await db.query(select, [r.id]).rows[0])
    }

    /// Records `eventID` as processed and, the first time only, stores `r` (when given): one
    /// statement, so one round trip and one commit per event. False when the event was seen before.
    func storeOnce(eventID: String, type: String, _ r: Shop_V1_SendNotificationRequest?, email: String?)
        async throws -> Bool
    {
        guard let r else {
            return try await db.query(
                "INSERT INTO processed_events (event_id, type) VALUES ($1::uuid, $2) ON CONFLICT DO NOTHING",
                [eventID, type]
            ).affectedRows == 1
        }
        let row = try await db.query(
            """
            WITH fresh AS (
                INSERT INTO processed_events (event_id, type) VALUES ($10::uuid, $11) ON CONFLICT DO NOTHING RETURNING 1),
            stored AS (
                INSERT INTO notifications \(Self.insertColumns) SELECT \(Self.insertValues.dropFirst().dropLast()) FROM fresh
                ON CONFLICT (id) DO NOTHING)
            SELECT count(*) AS fresh FROM fresh
            """, Self.insertParameters(r, email: email) + [eventID, type]
        ).rows.first
        return row?.int64("fresh") == 1
    }

    static let insertColumns = "(id, user_id, channel, subject, body, order_id, product_id, email_to, email_state)"
    static let insertValues = "($1::uuid, $2::uuid, $3, $4, $5, $6::uuid, $7::uuid, $8, $9)"

    static func insertParameters(_ r: Shop_V1_SendNotificationRequest, email: String?) -> [(any PostgresBindable)?] {
        var order: String?
        var product: String?
        switch r.subjectRef {
        case .orderID(let id)?: order = id
        case .productID(let id)?: product = id
        case nil: break
        }
        let channel = r.channel == .email ? "EMAIL" : "IN_APP"
        return [
            r.id, r.userID, channel, r.subject, r.body, order, product, email,
            channel == "EMAIL" ? (email == nil ? "failed" : "pending") : "none",
        ]
    }

    static func validate(_ r: Shop_V1_SendNotificationRequest) throws(RPCError) {
        // notifications.proto's rules (checked before this runs) bound the subject, the body and
        // the channel; what they cannot say: ids are UUIDs, a body holds no control characters.
        try Check.id(r.id, "id")
        try Check.id(r.userID, "user_id")
        try Check.text(r.body, "body", max: 10_000, multiline: true)
        switch r.subjectRef {
        case .orderID(let id)?: try Check.id(id, "order_id")
        case .productID(let id)?: try Check.id(id, "product_id")
        case nil: break
        }
    }

    /// The address to mail `user` at; `nil` when the account is gone.
    func emailAddress(of user: String) async throws -> String? {
        do {
            return try await accounts.getUser(Shop_V1_GetUserRequest(userID: user)).email
        } catch let e as RPCError where e.code == .notFound {
            return nil
        }
    }

    public func send(_ request: Shop_V1_SendNotificationRequest, context: ServerContext) async throws
        -> Shop_V1_Notification
    {
        try Self.validate(request)
        let email = request.channel == .email ? try await emailAddress(of: request.userID) : nil
        return try await store(request, email: email)
    }

    public func sendBatch(_ requests: RPCStream<Shop_V1_SendNotificationRequest>, context: ServerContext) async throws
        -> Shop_V1_SendBatchResponse
    {
        var sent: Int32 = 0
        for try await r in requests {
            try Self.validate(r)
            try Check.that(
                sent < 10_000, field: "requests", reason: "TOO_MANY_ITEMS", "at most 10000 notifications per batch")
            let email = r.channel == .email ? try await emailAddress(of: r.userID) : nil
            _ = try await store(r, email: email)
            sent += 1
        }
        return Shop_V1_SendBatchResponse(sent: sent)
    }

    public func listNotifications(_ request: Shop_V1_ListNotificationsRequest, context: ServerContext) async throws
        -> Shop_V1_ListNotificationsResponse
    {
        let me = try UserIdentity.required().subject
        let size = try PageToken.size(request.page)
        var params: [(any PostgresBindable)?] = [me]
        var conditions = ["user_id = $1::uuid"]
        if request.unreadOnly { conditions.append("NOT read") }
        if let c = try PageToken.decode(request.page?.pageToken, count: 2) {
            guard Check.isID(c[1]) else {
                throw RPCError(.invalidArgument, "page.page_token is not a token this service issued")
            }
            params += [c[0], c[1]]
            conditions.append("(created_at, id) < ($2::timestamptz, $3::uuid)")
        }
        let rows = try await db.query(
            """
            SELECT \(Self.columns) FROM notifications WHERE \(conditions.joined(separator: " AND ")) ORDER BY created_at DESC, id DESC LIMIT \(size + 1)
            """, params
        ).rows
        var response = Shop_V1_ListNotificationsResponse()
        response.notifications = rows.prefix(size).map(Self.notification)
        if rows.count > size, let last = rows.prefix(size).last {
            response.nextPageToken = PageToken.encode([last.text("created_text"), last.text("id")])
        }
        return response
    }

    public func markRead(_ request: Shop_V1_MarkReadRequest, context: ServerContext) async throws
        -> Shop_V1_Notification
    {
        let me = try UserIdentity.required().subject
        try Check.id(request.id, "id")
        guard
            let row = try await db.query(
                "UPDATE notifications SET read = true WHERE id = $1::uuid AND user_id = $2::uuid RETURNING \(Self.columns)",
                [request.id, me]
            ).rows.first
        else { throw RPCError(.notFound, "no notification \(request.id)") }
        return Self.notification(row)
    }

    public func subscribe(
        _ request: Shop_V1_SubscribeRequest, responses: RPCWriter<Shop_V1_Notification>, context: ServerContext
    ) async throws {
        let me = try UserIdentity.required().subject
        // Everything stored after the subscription starts, in order, each once.
        var cursor = try await db.query("SELECT clock_timestamp()::text AS now").rows[0].text("now")
        var lastID = "00000000-0000-0000-0000-000000000000"
        while !Task.isCancelled {
            let rows = try await db.query(
                """
                SELECT \(Self.columns) FROM notifications WHERE user_id = $1::uuid AND (created_at, id) > ($2::timestamptz, $3::uuid)
                ORDER BY created_at, id LIMIT 100
                """, [me, cursor, lastID]
            ).rows
            for row in rows {
                try await responses.write(Self.notification(row))
                cursor = row.text("created_text")
                lastID = row.text("id")
            }
            if rows.count < 100 { try await Task.sleep(for: pollInterval) }
        }
    }
}

/// The notifications database.
public enum NotificationsSchema {
    public static let migrations: [Migration] = [
        Migration(
            version: 1, name: "notifications and processed events",
            sql: """
                CREATE TABLE notifications (
                    id             uuid PRIMARY KEY,
                    user_id        uuid NOT NULL,
                    channel        text NOT NULL CHECK (channel IN ('IN_APP', 'EMAIL')),
                    subject        text NOT NULL,
                    body           text NOT NULL,
                    order_id       uuid,
                    product_id     uuid,
                    read           boolean NOT NULL DEFAULT false,
                    created_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
                    email_to       text,
                    -- none: not an email; pending: to send; sent; failed: undeliverable; skipped: no SMTP server configured
                    email_state    text NOT NULL DEFAULT 'none' CHECK (email_state IN ('none', 'pending', 'sent', 'failed', 'skipped')),
                    email_attempts integer NOT NULL DEFAULT 0,
                    email_error    text,
                    next_attempt_at timestamptz NOT NULL DEFAULT clock_timestamp(),
                    sent_at        timestamptz
                );
                CREATE INDEX notifications_user ON notifications (user_id, created_at DESC, id DESC);
                CREATE INDEX notifications_outgoing ON notifications (next_attempt_at) WHERE email_state = 'pending';
                -- Events already turned into notifications: the stream delivers at least once.
                CREATE TABLE processed_events (
                    event_id     uuid PRIMARY KEY,
                    type         text NOT NULL,
                    processed_at timestamptz NOT NULL DEFAULT clock_timestamp()
                );
                """)
    ]
}
