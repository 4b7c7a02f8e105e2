import BazaarCore
import BazaarPostgres
import Foundation

/// What a payment provider answered.
public enum ChargeOutcome: Sendable, Equatable {
    case succeeded(chargeID: String)
    case declined(reason: String)
}

/// A payment provider, as the checkout needs it. Every call carries an idempotency key (the order
/// id): charging twice with one key charges once, as real providers promise, so a checkout that
/// is retried or recovered after a crash can ask again safely.
public protocol PaymentProvider: Sendable {
    /// Charges `amountMinor` for `key`; throws when the provider cannot be reached (the outcome is
    /// then unknown, and ``lookup(key:)`` tells later).
    func charge(key: String, amountMinor: Int64, currency: String, token: String) async throws -> ChargeOutcome
    /// What a charge with `key` came to, `nil` when there was none.
    func lookup(key: String) async throws -> ChargeOutcome?
    /// Refunds a charge in full; refunding twice is a no-op.
    func refund(chargeID: String) async throws
}

/// The built-in test provider: a ledger table in the orders database. Token `tok_declined` is
/// declined, `tok_error` fails as if the provider were unreachable (nothing is recorded), any
/// other token succeeds. `latency` stands for the provider's answer on its way back: the charge is
/// recorded first, so a crash meanwhile leaves a charge the orders service has not heard of (what
/// the recovery loop must find).
public struct TestPaymentProvider: PaymentProvider {
    public let db: PostgresPool
    public let latency: Duration

    public init(db: PostgresPool, latency: Duration = .zero) {
        self.db = db
        self.latency = latency
    }

    public func charge(key: String, amountMinor: Int64, currency: String, token: String) async throws -> ChargeOutcome {
        if token == "tok_error" { throw RPCError(.unavailable, "the payment provider is unavailable") }
        let declined = token == "tok_declined"
        let fresh = try await db.query(
            """
            INSERT INTO test_payments (idempotency_key, charge_id, amount_minor, currency, status)
            VALUES ($1, $2, $3, $4, $5) ON CONFLICT (idempotency_key) DO NOTHING RETURNING charge_id, status
            """,
            [key, "ch_" + UUID().uuidString.lowercased(), amountMinor, currency, declined ? "declined" : "succeeded"]
        ).rows.first
        if latency > .zero { try await Task.sleep(for: latency) }
        // A repeated key answers with the first charge, as real providers do.
        guard let fresh else { return try await lookup(key: key)! }
        return Self.outcome(fresh)
    }

    static func outcome(_ row: PostgresRow) -> ChargeOutcome {
        row["status"] == "declined" ? .declined(reason: "card declined") : .succeeded(chargeID: row["charge_id"] ?? "")
    }

    public func lookup(key: String) async throws -> ChargeOutcome? {
        guard
            let row = try await db.query(
                "SELECT charge_id, status FROM test_payments WHERE idempotency_key = $1", [key]
            ).rows.first
        else {
            return nil
        }
        return Self.outcome(row)
    }

    public func refund(chargeID: String) async throws {
        if latency > .zero { try await Task.sleep(for: latency) }
        _ = try await db.query(
            "UPDATE test_payments SET status = 'refunded', refunded_at = clock_timestamp() WHERE charge_id = $1 AND status = 'succeeded'",
            [chargeID])
    }
}
