import BazaarCore
import ShopKit

/// The web app as a process runs it: the pages, and the services they are made from
/// (BAZAAR_CATALOG_TARGET).
public enum WebAssembly {
    public static func assemble(_ c: ShopContext) async throws -> ShopAssembly {
        ShopAssembly(service: WebApp(catalog: try c.upstream("catalog")))
    }
}
