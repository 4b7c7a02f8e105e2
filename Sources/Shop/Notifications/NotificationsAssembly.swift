import BazaarCore
import BazaarSMTP
import BazaarTelemetry
import Foundation
import ShopAPI
import ShopKit

/// The notifications service as a process runs it: its database, accounts over the mesh, the
/// order-event consumer (Redis stream, BAZAAR_CONSUMER_NAME), the mailer (BAZAAR_SMTP_ADDR,
/// BAZAAR_MAIL_FROM), and retention.
public enum NotificationsAssembly {
    public static func assemble(_ c: ShopContext) async throws -> ShopAssembly {
        let env = c.env
        let db = try await c.database(migrations: NotificationsSchema.migrations)
        let notifications = NotificationsService(
            db: db, accounts: Shop_V1_AccountsService.Client(transport: try c.upstream("accounts")),
            logger: c.logger)
        let consumer = OrderEventConsumer(
            service: notifications, redis: try c.redis(),
            consumer: env["CONSUMER_NAME"] ?? ProcessInfo.processInfo.hostName)
        c.metrics.addCollector {
            [
                CollectedSample(
                    name: "bazaar_events_dead_lettered_total",
                    help: "Order events parked in the dead-letter stream (poison messages).",
                    type: .counter, value: Double(consumer.deadLettered))
            ]
        }
        var smtp: SMTPClient?
        if let (h, p) = try env.address("SMTP_ADDR") {
            smtp = SMTPClient(host: h, port: p)
        } else {
            c.logger.warning("BAZAAR_SMTP_ADDR is not set: email notifications are stored but not sent")
        }
        let mailer = Mailer(db: db, smtp: smtp, from: env["MAIL_FROM"] ?? "shop@bazaar.local", logger: c.logger)
        let retention = try RetentionJob(
            db: db,
            rules: [
                .init(
                    table: "processed_events",
                    condition: "processed_at < clock_timestamp() - make_interval(secs => $1)",
                    retention: .seconds(30 * 24 * 3600), setting: "RETAIN_PROCESSED_EVENTS")
            ], logger: c.logger
        ).configured(by: env.typed)
        return ShopAssembly(
            service: notifications,
            background: [
                { await consumer.run() }, { await retention.run() }, { await mailer.run() },
            ])
    }
}
