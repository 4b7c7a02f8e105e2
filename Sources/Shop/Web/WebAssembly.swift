import BazaarCore
import ShopKit

/// The web app as a process runs it: the pages, the services they are made from
/// (BAZAAR_<SERVICE>_TARGET for catalog, accounts, cart, orders and notifications) and the
/// sessions in Redis (BAZAAR_REDIS_ADDR).
public enum WebAssembly {
    public static func assemble(_ c: ShopContext) async throws -> ShopAssembly {
        ShopAssembly(
            service: WebApp(
                catalog: try c.upstream("catalog"), accounts: try c.upstream("accounts"), cart: try c.upstream("cart"),
                orders: try c.upstream("orders"), notifications: try c.upstream("notifications"),
                sessions: RedisSessionStore(redis: try c.redis())))
    }
}
