import BazaarCore

/// The errors about a product that several services give (the catalog, the cart, the orders'
/// reservations), made in one place so that a client sees the same reason and details whichever
/// service it called and over whichever protocol.
public enum ProductErrors {
    /// The domain of the reasons below (`google.rpc.ErrorInfo.domain`).
    public static let domain = "catalog.shop.bazaar"

    /// NOT_FOUND: no product has this id.
    public static func notFound(_ id: String) -> RPCError {
        RPCError(
            .notFound, "no product \(id)",
            details: [resource(id), reason("PRODUCT_NOT_FOUND", ["product_id": id])])
    }

    /// FAILED_PRECONDITION: the product was archived and is no longer sold.
    public static func notSold(_ id: String, name: String) -> RPCError {
        RPCError(
            .failedPrecondition, "\(name) is no longer sold",
            details: [resource(id), reason("PRODUCT_NOT_SOLD", ["product_id": id])])
    }

    /// FAILED_PRECONDITION: fewer units are in stock than were asked for.
    public static func outOfStock(_ id: String, name: String, available: Int64, requested: Int64) -> RPCError {
        RPCError(
            .failedPrecondition, "not enough stock of \(name): \(available) left, \(requested) wanted",
            details: [
                resource(id),
                reason(
                    "OUT_OF_STOCK",
                    ["product_id": id, "available": String(available), "requested": String(requested)]),
            ])
    }

    static func resource(_ id: String) -> ErrorDetail {
        .resourceInfo(ResourceInfo(type: "shop.v1.Product", name: id))
    }

    static func reason(_ reason: String, _ metadata: [String: String]) -> ErrorDetail {
        .errorInfo(ErrorInfo(reason: reason, domain: domain, metadata: metadata))
    }
}
