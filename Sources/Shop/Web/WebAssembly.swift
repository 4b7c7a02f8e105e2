import BazaarAuth
import BazaarCore
import ShopAPI
import ShopKit

/// The web app as a process runs it: the pages, the services they are made from
/// (BAZAAR_<SERVICE>_TARGET for catalog, accounts, cart, orders and notifications), the
/// sessions in Redis (BAZAAR_REDIS_ADDR), and the accounts service's token revocations, followed
/// every BAZAAR_REVOCATION_POLL (default 1s) as the gateway does.
public enum WebAssembly {
    public static func assemble(_ c: ShopContext) async throws -> ShopAssembly {
        let poll = try c.env.duration("REVOCATION_POLL") ?? .seconds(1)
        guard poll > .zero else { throw RPCError(.invalidArgument, "BAZAAR_REVOCATION_POLL must be longer than zero") }
        let accounts = try c.upstream("accounts")
        let revocations = RevocationList()
        let client = Shop_V1_AccountsService.Client(transport: accounts)
        let logger = c.logger
        return ShopAssembly(
            service: WebApp(
                catalog: try c.upstream("catalog"), accounts: accounts, cart: try c.upstream("cart"),
                orders: try c.upstream("orders"), notifications: try c.upstream("notifications"),
                sessions: RedisSessionStore(redis: try c.redis()), revocations: revocations),
            background: [{ await RevocationFollower.follow(revocations, from: client, every: poll, logger: logger) }])
    }
}
