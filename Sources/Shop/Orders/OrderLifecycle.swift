import BazaarCore
import ShopAPI

/// Who may move an order from one status to another: the rules, apart from any storage.
///
/// ```
/// PENDING -> PAID       checkout, after the charge succeeds
/// PENDING -> CANCELLED  checkout, when the charge is declined or the checkout is interrupted
/// PAID -> SHIPPED -> DELIVERED   admins
/// PAID -> CANCELLED     the customer (or an admin), before shipping: stock released, payment refunded
/// ```
public enum OrderLifecycle {
    public enum Actor: Sendable { case checkout, customer, admin }

    /// `nil` when `actor` may move an order from `from` to `to`, otherwise why not.
    public static func refusal(from: Shop_V1_OrderStatus, to: Shop_V1_OrderStatus, by actor: Actor) -> RPCError? {
        switch (from, to, actor) {
        case (.pending, .paid, .checkout), (.pending, .cancelled, .checkout): return nil
        case (.paid, .shipped, .admin), (.shipped, .delivered, .admin): return nil
        case (.paid, .cancelled, .customer), (.paid, .cancelled, .admin): return nil
        case (.pending, .cancelled, _):
            return RPCError(.failedPrecondition, "the order is still being placed; try again in a moment")
        case (.shipped, .cancelled, _), (.delivered, .cancelled, _):
            return RPCError(.failedPrecondition, "the order has shipped and can no longer be cancelled")
        case (.cancelled, .cancelled, _): return nil
        case (_, _, .customer): return RPCError(.permissionDenied, "only the shop moves an order to \(name(to))")
        default:
            if from == to { return nil }
            return RPCError(.failedPrecondition, "an order cannot go from \(name(from)) to \(name(to))")
        }
    }

    public static func isFinal(_ status: Shop_V1_OrderStatus) -> Bool { status == .delivered || status == .cancelled }

    public static func name(_ s: Shop_V1_OrderStatus) -> String {
        switch s {
        case .pending: "PENDING"
        case .paid: "PAID"
        case .shipped: "SHIPPED"
        case .delivered: "DELIVERED"
        case .cancelled: "CANCELLED"
        case .unspecified: "UNSPECIFIED"
        case .unrecognized(let n): "status \(n)"
        }
    }

    public static func status(named text: String) -> Shop_V1_OrderStatus {
        switch text {
        case "PENDING": .pending
        case "PAID": .paid
        case "SHIPPED": .shipped
        case "DELIVERED": .delivered
        case "CANCELLED": .cancelled
        default: .unspecified
        }
    }
}
