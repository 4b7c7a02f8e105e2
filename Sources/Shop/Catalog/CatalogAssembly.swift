import BazaarCore
import ShopKit

/// The catalog service as a process runs it: its database, and the sweep that returns expired
/// stock reservations (BAZAAR_RESERVATION_TTL, BAZAAR_RESERVATION_SWEEP_INTERVAL).
public enum CatalogAssembly {
    public static func assemble(_ c: ShopContext) async throws -> ShopAssembly {
        let db = try await c.database(migrations: CatalogSchema.migrations)
        let catalog = CatalogService(
            db: db, logger: c.logger, reservationTTL: try c.env.duration("RESERVATION_TTL") ?? .seconds(900))
        let sweep = try c.env.duration("RESERVATION_SWEEP_INTERVAL") ?? .seconds(30)
        return ShopAssembly(
            service: catalog,
            background: [
                every(sweep, logger: c.logger, "reservation sweep") { try await catalog.sweepExpiredReservations() }
            ])
    }
}
