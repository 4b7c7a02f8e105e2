import BazaarCore
import BazaarPostgres
import BazaarRedis
import BazaarSMTP
import BazaarTelemetry
import Foundation
import ShopAPI
import ShopKit

/// Reads order events from the Redis stream the orders outbox relay writes, as one consumer of
/// the `notifications` group, and turns them into notifications.
///
/// Delivery is at least once: an entry is acknowledged (XACK) only after its notification is
/// committed, and an entry seen twice (a relay or consumer crashed between the two steps) is
/// recognised by its `event_id` in `processed_events`, in the same transaction as the
/// notification. After a restart the consumer first re-reads its own unacknowledged entries; every
/// `claimIdle` it also takes over entries another consumer left unacknowledged for that long.
///
/// An entry that fails `maxDeliveries` times for a reason of its own (not a store that is down)
/// is a poison message: it is copied to the dead-letter stream (`<stream>:dead`, with the error)
/// and acknowledged, so that it cannot stall every entry behind it. `deadLettered` counts them
/// (`bazaar_events_dead_lettered_total`; the BazaarDeadLetteredEvents alert fires on any).
public struct OrderEventConsumer: Sendable {
    public let service: NotificationsService
    /// A connection of its own: XREADGROUP BLOCK holds it while waiting.
    public let redis: RedisClient
    public let stream: String
    public let group: String
    public let consumer: String
    public var claimIdle: Duration = .seconds(60)
    /// Failed deliveries of one entry before it is parked in the dead-letter stream.
    public var maxDeliveries = 5
    private let failures = Lock<[String: Int]>([:])
    private let parked = Lock(0)

    /// Entries moved to the dead-letter stream since the start.
    public var deadLettered: Int { parked.withLock { $0 } }
    public var deadLetterStream: String { stream + ":dead" }

    public init(
        service: NotificationsService, redis: RedisClient, stream: String = "bazaar:order-events",
        group: String = "notifications",
        consumer: String
    ) {
        self.service = service
        self.redis = redis
        self.stream = stream
        self.group = group
        self.consumer = consumer
    }

    var logger: Logger { service.logger }

    /// Creates the group at the start of the stream (so events published before the first start
    /// are not skipped).
    public func createGroup() async throws {
        do {
            _ = try await redis.send("XGROUP", "CREATE", stream, group, "0", "MKSTREAM")
        } catch let e as RedisError where e.message.hasPrefix("BUSYGROUP") {
            // It exists.
        }
    }

    /// Consumes until cancelled.
    public func run() async {
        var readPending = true
        var lastClaim = ContinuousClock.now
        while !Task.isCancelled {
            do {
                try await createGroup()
                if ContinuousClock.now - lastClaim > claimIdle / 2 {
                    lastClaim = .now
                    try await claimAbandoned()
                }
                // "0": this consumer's delivered-but-unacknowledged entries; ">": new ones.
                let handled = try await readOnce(pending: readPending)
                if readPending && handled == 0 { readPending = false }
            } catch {
                logger.warning("event consumer round failed; retrying", [("error", .string("\(error)"))])
                readPending = true
                try? await Task.sleep(for: .seconds(1))
            }
        }
    }

    /// One XREADGROUP; returns how many entries it got.
    @discardableResult
    public func readOnce(pending: Bool, block: Duration = .seconds(2)) async throws -> Int {
        var args = ["XREADGROUP", "GROUP", group, consumer, "COUNT", "50"]
        if !pending { args += ["BLOCK", String(block.components.seconds * 1000)] }
        args += ["STREAMS", stream, pending ? "0" : ">"]
        // A blocking read waits on the server by design: its reply timeout is the block and a margin.
        let reply = try await redis.send(
            args.map { Array($0.utf8) }, timeout: pending ? nil : block + RedisConnection.commandTimeout)
        let entries = reply.array?.first?.array?.dropFirst().first?.array ?? []
        for entry in entries { try await handle(entry) }
        return entries.count
    }

    /// Takes over entries idle longer than `claimIdle` in other consumers (which died).
    func claimAbandoned() async throws {
        let ms = String(claimIdle.components.seconds * 1000)
        let reply = try await redis.send("XAUTOCLAIM", stream, group, consumer, ms, "0-0", "COUNT", "50")
        for entry in reply.array?.dropFirst().first?.array ?? [] { try await handle(entry) }
    }

    private func handle(_ entry: RedisValue) async throws {
        guard let parts = entry.array, let id = parts.first?.string else { return }
        var fields: [String: String] = [:]
        let list = parts.dropFirst().first?.array ?? []
        var i = 0
        while i + 1 < list.count {
            if let k = list[i].string, let v = list[i + 1].string { fields[k] = v }
            i += 2
        }
        // An entry trimmed from the stream while pending comes back without fields: just ack it.
        if !fields.isEmpty {
            do {
                try await process(fields)
            } catch  where !Self.isTransient(error) {
                let n = failures.withLock { f -> Int in
                    f[id, default: 0] += 1
                    return f[id]!
                }
                guard n >= maxDeliveries else { throw error }
                var args = [
                    "XADD", deadLetterStream, "MAXLEN", "~", "100000", "*", "source_id", id, "error", "\(error)",
                ]
                for (k, v) in fields.sorted(by: { $0.key < $1.key }) { args += [k, v] }
                _ = try await redis.send(args.map { Array($0.utf8) })
                parked.withLock { $0 += 1 }
                logger.error(
                    "order event parked in the dead-letter stream after \(n) failed deliveries",
                    [("entry_id", .string(id)), ("stream", .string(deadLetterStream)), ("error", .string("\(error)"))])
            }
            failures.withLock { f in if !f.isEmpty { f[id] = nil } }
        }
        _ = try await redis.send("XACK", stream, group, id)
    }

    /// Failures that say a store or a peer is down (the entry is fine and will go through later).
    static func isTransient(_ error: any Error) -> Bool {
        switch error {
        case let e as PostgresError:
            return e.isConnectionError || ["57014", "53300", "40001", "40P01", "57P01", "57P03"].contains(e.sqlState)
        case is RedisError: return true
        case let e as RPCError:
            return [.unavailable, .deadlineExceeded, .cancelled, .resourceExhausted, .aborted].contains(e.code)
        case is CancellationError: return true
        default: return false
        }
    }

    /// Turns one event into (at most) one notification, exactly once per event id.
    func process(_ fields: [String: String]) async throws {
        guard let eventID = fields["event_id"], Check.isID(eventID), let type = fields["type"] else {
            logger.warning("skipping a malformed event", [("fields", .int(Int64(fields.count)))])
            return
        }
        let payload = jsonStringMap(fields["payload"])
        let message = Self.message(type: type, payload: payload)
        var notification: Shop_V1_SendNotificationRequest?
        var email: String?
        if let message, let user = payload["user_id"], Check.isID(user) {
            // Asked before the statement that records the event (a repeat, which the relay may
            // send, costs this one call and then changes nothing).
            email = try await service.emailAddress(of: user)
            var r = Shop_V1_SendNotificationRequest()
            r.id = eventID  // one notification per event, under the event's id
            r.userID = user
            r.channel = .email
            r.subject = message.subject
            r.body = message.body
            if let order = payload["order_id"], Check.isID(order) { r.subjectRef = .orderID(order) }
            notification = r
        }
        _ = try await service.storeOnce(eventID: eventID, type: type, notification, email: email)
    }

    /// What to tell the customer about an order event; `nil` for events that need no message.
    static func message(type: String, payload: [String: String]) -> (subject: String, body: String)? {
        let order = payload["order_id"] ?? ""
        let short = String(order.prefix(8))
        let total = Self.amount(payload["total_minor"], payload["currency"])
        switch type {
        case "order.paid":
            return (
                "Order \(short) confirmed",
                "Thank you for your order \(order).\nWe received your payment of \(total) and will ship soon."
            )
        case "order.shipped":
            return ("Order \(short) shipped", "Your order \(order) is on its way.")
        case "order.delivered":
            return ("Order \(short) delivered", "Your order \(order) was delivered. Enjoy!")
        case "order.cancelled":
            let reason = payload["reason"].map { "\nReason: \($0)" } ?? ""
            return (
                "Order \(short) cancelled",
                "Your order \(order) was cancelled.\(reason)\nAny payment taken is refunded."
            )
        default:
            return nil
        }
    }

    static func amount(_ minor: String?, _ currency: String?) -> String {
        guard let m = minor.flatMap({ Int64($0) }) else { return "" }
        return String(format: "%lld.%02lld %@", m / 100, m % 100, currency ?? "")
    }
}

/// Sends queued email notifications over SMTP, each until it is accepted (transient failures are
/// retried with growing delays; a permanent refusal marks it failed). Several mailers may run:
/// each round leases its rows in one short statement (`FOR UPDATE SKIP LOCKED` inside it, the
/// lease being a later `next_attempt_at`), then talks SMTP outside any transaction: a slow mail
/// relay must not hold row locks and a database connection.
///
/// A crash after the server accepted a message but before it was marked sent sends it once more
/// when the lease runs out; the Message-ID is the notification id, by which receivers can drop
/// that repeat.
public struct Mailer: Sendable {
    public let db: PostgresPool
    /// `nil`: no SMTP server configured; queued mail is marked skipped.
    public let smtp: SMTPClient?
    public let from: String
    public let logger: Logger

    public init(db: PostgresPool, smtp: SMTPClient?, from: String, logger: Logger) {
        self.db = db
        self.smtp = smtp
        self.from = from
        self.logger = logger
    }

    /// Sends what is due; returns how many it handled.
    /// How long a round owns the rows it took: every message may take the SMTP client's whole
    /// timeout.
    var lease: Duration { (smtp?.timeout ?? .seconds(10)) * 10 + .seconds(30) }

    public func sendDue() async throws -> Int {
        let rows = try await db.query(
            """
            UPDATE notifications SET next_attempt_at = clock_timestamp() + make_interval(secs => $1)
            WHERE id IN (SELECT id FROM notifications WHERE email_state = 'pending' AND next_attempt_at <= clock_timestamp()
                         ORDER BY next_attempt_at LIMIT 10 FOR UPDATE SKIP LOCKED)
            RETURNING id::text AS id, email_to, subject, body, email_attempts, \(epochMicros("created_at", as: "created"))
            """, [lease.inSeconds]
        ).rows
        // In the order they were written: UPDATE ... RETURNING follows no ORDER BY, and a customer
        // must not get "delivered" before "shipped" when both are due in one round.
        let ordered = rows.sorted { ($0.int64("created"), $0.text("id")) < ($1.int64("created"), $1.text("id")) }
        // Sent mail is marked in one statement at the end of the round (a crash before it sends
        // those again when the lease runs out; the Message-ID lets receivers drop the repeat).
        var sent: [String] = []
        do {
            try await deliver(ordered, sent: &sent)
        } catch {
            try? await markSent(sent)
            throw error
        }
        try await markSent(sent)
        return rows.count
    }

    private func markSent(_ ids: [String]) async throws {
        guard !ids.isEmpty else { return }
        _ = try await db.query(
            """
            UPDATE notifications SET email_state = 'sent', sent_at = clock_timestamp(), email_attempts = email_attempts + 1
            WHERE id = ANY(ARRAY(SELECT jsonb_array_elements_text($1::jsonb))::uuid[])
            """, [jsonText(ids)])
    }

    private func deliver(_ ordered: [PostgresRow], sent: inout [String]) async throws {
        for row in ordered {
            let id = row.text("id")
            guard let smtp else {
                _ = try await db.query("UPDATE notifications SET email_state = 'skipped' WHERE id = $1::uuid", [id])
                continue
            }
            do {
                try await smtp.send(
                    EmailMessage(
                        from: from, to: row.text("email_to"), subject: row.text("subject"), body: row.text("body"),
                        messageID: "\(id)@bazaar"))
                sent.append(id)
            } catch let e as SMTPError {
                let attempts = row.int64("email_attempts") + 1
                let giveUp = !e.isTransient || attempts >= 20
                _ = try await db.query(
                    """
                    UPDATE notifications SET email_state = $2, email_attempts = $3::int, email_error = $4,
                        next_attempt_at = clock_timestamp() + make_interval(secs => LEAST(3600, power(2, $3::int))::float8)
                    WHERE id = $1::uuid
                    """, [id, giveUp ? "failed" : "pending", attempts, e.description])
                logger.warning(
                    "email not sent",
                    [("notification_id", .string(id)), ("error", .string(e.description)), ("gave_up", .bool(giveUp))])
            }
        }
    }

    public func run(idle: Duration = .milliseconds(500)) async {
        while !Task.isCancelled {
            do {
                if try await sendDue() > 0 { continue }
            } catch {
                logger.warning("mailer round failed; retrying", [("error", .string("\(error)"))])
            }
            try? await Task.sleep(for: idle)
        }
    }
}
