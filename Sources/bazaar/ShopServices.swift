import ArgumentParser
import BazaarCore
import BazaarWebProtos
import ShopAPI

/// The shop's services: the one list `serve`, `gateway` (its default upstreams, `--openapi`) and
/// `shop` read.
enum ShopService: String, ExpressibleByArgument, CaseIterable, Sendable {
    case catalog, accounts, cart, orders, notifications
    /// The storefront: HTML pages for the edge (bazaar.web.v1.WebFront).
    case web

    /// The services behind the API, `--openapi`'s source. The gateway's default upstreams are
    /// all of them and the storefront.
    static let apiServices = allCases.filter { $0 != .web }

    /// Where `make up` runs it, and where the others look for it without BAZAAR_<NAME>_TARGET.
    var defaultPort: Int {
        switch self {
        case .catalog: 9101
        case .accounts: 9102
        case .cart: 9103
        case .orders: 9104
        case .notifications: 9105
        case .web: 9106
        }
    }

    /// Its API, as compiled into this program.
    var descriptor: ServiceDescriptor {
        switch self {
        case .catalog: Shop_V1_CatalogService.descriptor
        case .accounts: Shop_V1_AccountsService.descriptor
        case .cart: Shop_V1_CartService.descriptor
        case .orders: Shop_V1_OrdersService.descriptor
        case .notifications: Shop_V1_NotificationsService.descriptor
        case .web: Bazaar_Web_V1_WebFront.descriptor
        }
    }
}
