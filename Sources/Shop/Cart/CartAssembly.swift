import BazaarCore
import ShopAPI
import ShopKit

/// The cart service as a process runs it: Redis, and the catalog over the mesh
/// (BAZAAR_CART_TTL, BAZAAR_CART_MAX_LINES).
public enum CartAssembly {
    public static func assemble(_ c: ShopContext) async throws -> ShopAssembly {
        let catalog = Shop_V1_CatalogService.Client(transport: try c.upstream("catalog"))
        let cart = CartService(
            redis: try c.redis(), catalog: catalog, logger: c.logger,
            ttl: try c.env.duration("CART_TTL") ?? .seconds(30 * 24 * 3600),
            maxLines: try c.env.int("CART_MAX_LINES", 1...1000) ?? 50)
        return ShopAssembly(service: cart)
    }
}
