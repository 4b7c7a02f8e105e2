import BazaarCore
import BazaarPostgres
import BazaarTelemetry
import ShopAPI
import ShopKit

/// The orders service as a process runs it: its database, catalog and cart over the mesh, the
/// payment provider, checkout recovery, the outbox relay to Redis, and retention.
public enum OrdersAssembly {
    public static func assemble(_ c: ShopContext) async throws -> ShopAssembly {
        let env = c.env
        let db = try await c.database(migrations: OrdersSchema.migrations)
        // Commits that need not wait for the disk: what a crash may lose here is rebuilt (see
        // docs/services.md, "Durability").
        let relaxed = try await c.relaxedDatabase()
        var settings = OrdersService.Settings()
        if let d = try env.duration("CHECKOUT_RECOVER_AFTER") { settings.recoverAfter = d }
        let orders = OrdersService(
            db: db, catalog: Shop_V1_CatalogService.Client(transport: try c.upstream("catalog")),
            cart: Shop_V1_CartService.Client(transport: try c.upstream("cart")),
            payments: try paymentProvider(env, db: relaxed, logger: c.logger),
            logger: c.logger, settings: settings, relaxed: relaxed)
        var background: [@Sendable () async -> Void] = [
            every(try env.duration("RECOVERY_INTERVAL") ?? .seconds(5), logger: c.logger, "order recovery round") {
                try await orders.recover()
            }
        ]
        let retention = try RetentionJob(
            db: db,
            rules: [
                .init(
                    table: "checkouts",
                    condition:
                        "state IN ('done', 'failed') AND updated_at < clock_timestamp() - make_interval(secs => $1)",
                    retention: .seconds(30 * 24 * 3600), setting: "RETAIN_CHECKOUTS"),
                .init(
                    table: "outbox", condition: "published_at < clock_timestamp() - make_interval(secs => $1)",
                    retention: .seconds(30 * 24 * 3600), setting: "RETAIN_OUTBOX"),
            ], logger: c.logger
        ).configured(by: env.typed)
        background.append { await retention.run() }
        if try env.bool("OUTBOX_RELAY") ?? true {
            let relay = OutboxRelay(db: relaxed, redis: try c.redis(), logger: c.logger)
            background.append { await relay.run() }
        }
        return ShopAssembly(service: orders, background: background)
    }

    /// The payment provider (BAZAAR_PAYMENT_PROVIDER). The only one built in is `test`, which
    /// pays every order without charging anyone: the default in development, refused in
    /// production unless BAZAAR_ALLOW_TEST_PAYMENTS=true (a staging cluster, a load test).
    public static func paymentProvider(_ env: ShopEnvironment, db: PostgresPool, logger: Logger) throws(RPCError)
        -> any PaymentProvider
    {
        let production = try env.isProduction()
        guard let name = env["PAYMENT_PROVIDER"] ?? (production ? nil : "test") else {
            throw RPCError(.invalidArgument, "BAZAAR_PAYMENT_PROVIDER is required with BAZAAR_ENV=production")
        }
        switch name {
        case "test":
            if production {
                guard try env.bool("ALLOW_TEST_PAYMENTS") == true else {
                    throw RPCError(
                        .invalidArgument,
                        "BAZAAR_PAYMENT_PROVIDER=test accepts every card without charging it; "
                            + "BAZAAR_ENV=production refuses it unless BAZAAR_ALLOW_TEST_PAYMENTS=true")
                }
                logger.warning(
                    "the test payment provider is on in production (BAZAAR_ALLOW_TEST_PAYMENTS=true): orders are not charged"
                )
            }
            return TestPaymentProvider(db: db, latency: try env.duration("PAYMENT_LATENCY") ?? .zero)
        default:
            throw RPCError(.invalidArgument, "BAZAAR_PAYMENT_PROVIDER='\(name)': the providers built in are: test")
        }
    }
}
