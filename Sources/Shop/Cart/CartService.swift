import BazaarAuth
import BazaarCore
import BazaarRedis
import BazaarTelemetry
import ShopAPI
import ShopKit

/// `shop.v1.CartService` on Redis: one hash per user (`cart:<user id>`: product id -> units),
/// expiring `ttl` after its last change. Names and prices are never stored: reading a cart asks
/// the catalog for the current ones, so a cart cannot show a stale price.
public final class CartService: Shop_V1_CartService.ServiceProtocol {
    public let redis: RedisClient
    public let catalog: Shop_V1_CatalogService.Client
    public let logger: Logger
    public let ttl: Duration
    public let maxLines: Int
    public let maxUnitsPerLine: Int64

    public init(
        redis: RedisClient, catalog: Shop_V1_CatalogService.Client, logger: Logger,
        ttl: Duration = .seconds(30 * 24 * 3600),
        maxLines: Int = 50, maxUnitsPerLine: Int64 = 99
    ) {
        self.redis = redis
        self.catalog = catalog
        self.logger = logger
        self.ttl = ttl
        self.maxLines = maxLines
        self.maxUnitsPerLine = maxUnitsPerLine
    }

    static func key(_ user: String) -> String { "cart:\(user)" }

    /// Changes one line atomically (a script runs alone in Redis): the line cap and the unit cap
    /// hold even when one user's requests race. ARGV: product, units, mode ("add" or "set"),
    /// max lines, max units, ttl ms. Returns the new units, -1 when the cart is full, -2 when the
    /// line would pass the unit cap.
    static let changeLine = """
        local current = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
        local n = tonumber(ARGV[2])
        if ARGV[3] == 'add' then n = current + n end
        if n <= 0 then
          redis.call('HDEL', KEYS[1], ARGV[1])
          return 0
        end
        if current == 0 and redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[4]) then return -1 end
        if n > tonumber(ARGV[5]) then return -2 end
        redis.call('HSET', KEYS[1], ARGV[1], n)
        redis.call('PEXPIRE', KEYS[1], ARGV[6])
        return n
        """

    private func change(
        _ user: String, product: String, units: Int64, mode: String, known: Shop_V1_Product? = nil
    ) async throws -> Shop_V1_Cart {
        let ttlMs = ttl.components.seconds * 1000 + ttl.components.attoseconds / 1_000_000_000_000_000
        let reply = try await redis.send(
            "EVAL", Self.changeLine, "1", Self.key(user), product, String(units), mode,
            String(maxLines), String(maxUnitsPerLine), String(ttlMs))
        switch reply.integer {
        case -1: throw RPCError(.resourceExhausted, "the cart is full: at most \(maxLines) different products")
        case -2: throw RPCError(.outOfRange, "at most \(maxUnitsPerLine) units of one product")
        default: return try await cart(for: user, known: known.map { [$0] } ?? [])
        }
    }

    /// The cart's lines as stored: (product id, quantity), by product id.
    func lines(of user: String) async throws -> [(String, Int64)] {
        let fields = try await redis.send("HGETALL", Self.key(user)).array ?? []
        var units: [(String, Int64)] = []
        var i = 0
        while i + 1 < fields.count {
            if let p = fields[i].string, let q = fields[i + 1].string.flatMap({ Int64($0) }) { units.append((p, q)) }
            i += 2
        }
        return units.sorted { $0.0 < $1.0 }
    }

    /// The cart with current names and prices. Lines whose product is gone from the catalog are
    /// dropped (and removed). Products in `known` were just read from the catalog (the one an
    /// add checked): only the others are asked for, and a one-product cart needs no call.
    func cart(for user: String, known: [Shop_V1_Product] = []) async throws -> Shop_V1_Cart {
        let units = try await lines(of: user)
        var cart = Shop_V1_Cart()
        cart.userID = user
        if units.isEmpty { return cart }
        var byID = Dictionary(known.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        let missing = units.map(\.0).filter { byID[$0] == nil }
        if !missing.isEmpty {
            for p in try await catalog.batchGetProducts(Shop_V1_BatchGetProductsRequest(ids: missing)).products {
                byID[p.id] = p
            }
        }
        var currency: String?
        var subtotal: Int64 = 0
        for (id, quantity) in units {
            guard let p = byID[id] else {
                _ = try? await redis.send("HDEL", Self.key(user), id)
                continue
            }
            var item = Shop_V1_CartItem()
            item.productID = id
            item.productName = p.name
            item.quantity = quantity
            item.unitPrice = p.price
            cart.items.append(item)
            currency = currency ?? p.price?.currencyCode
            if p.price?.currencyCode == currency {
                subtotal = try MoneyMath.sum(subtotal, MoneyMath.line(quantity, p.price?.amountMinor ?? 0))
            }
        }
        if let currency { cart.subtotal = Shop_V1_Money(currency, subtotal) }
        return cart
    }

    /// The product, if it exists and is sold.
    @discardableResult
    private func checkProduct(_ id: String) async throws -> Shop_V1_Product {
        try Check.id(id, "product_id")
        let product: Shop_V1_Product
        do {
            product = try await catalog.getProduct(Shop_V1_GetProductRequest(id: id, sku: ""))
        } catch let e as RPCError where e.code == .notFound {
            throw ProductErrors.notFound(id)
        }
        if !product.active { throw ProductErrors.notSold(id, name: product.name) }
        return product
    }

    public func getCart(_ request: Shop_V1_GetCartRequest, context: ServerContext) async throws -> Shop_V1_Cart {
        try await cart(for: try UserIdentity.required().subject)
    }

    public func addItem(_ request: Shop_V1_AddItemRequest, context: ServerContext) async throws -> Shop_V1_Cart {
        let user = try UserIdentity.required().subject
        try Check.that(
            request.quantity <= maxUnitsPerLine, field: "quantity", reason: "LINE_LIMIT",
            "quantity must be at most \(maxUnitsPerLine)")
        let product = try await checkProduct(request.productID)
        return try await change(user, product: request.productID, units: request.quantity, mode: "add", known: product)
    }

    public func setItemQuantity(_ request: Shop_V1_SetItemQuantityRequest, context: ServerContext) async throws
        -> Shop_V1_Cart
    {
        let user = try UserIdentity.required().subject
        try Check.that(
            request.quantity <= maxUnitsPerLine, field: "quantity", reason: "LINE_LIMIT",
            "quantity must be at most \(maxUnitsPerLine)")
        if request.quantity > 0 {
            try await checkProduct(request.productID)
        } else {
            try Check.id(request.productID, "product_id")
        }
        return try await change(user, product: request.productID, units: request.quantity, mode: "set")
    }

    public func removeItem(_ request: Shop_V1_RemoveItemRequest, context: ServerContext) async throws -> Shop_V1_Cart {
        let user = try UserIdentity.required().subject
        try Check.id(request.productID, "product_id")
        _ = try await redis.send("HDEL", Self.key(user), request.productID)
        return try await cart(for: user)
    }

    public func clearCart(_ request: Shop_V1_ClearCartRequest, context: ServerContext) async throws -> Shop_V1_Cart {
        let user = try UserIdentity.required().subject
        _ = try await redis.send("DEL", Self.key(user))
        return Shop_V1_Cart(userID: user, items: [], subtotal: nil)
    }

    public func getCartForUser(_ request: Shop_V1_GetCartForUserRequest, context: ServerContext) async throws
        -> Shop_V1_Cart
    {
        try Check.id(request.userID, "user_id")
        // Product ids and quantities only: the checkout prices every line from its stock
        // reservation, so asking the catalog for names and prices here would be a wasted call.
        var cart = Shop_V1_Cart()
        cart.userID = request.userID
        cart.items = try await lines(of: request.userID).map { id, quantity in
            var item = Shop_V1_CartItem()
            item.productID = id
            item.quantity = quantity
            return item
        }
        return cart
    }

    public func clearCartForUser(_ request: Shop_V1_ClearCartForUserRequest, context: ServerContext) async throws
        -> Shop_V1_Cart
    {
        try Check.id(request.userID, "user_id")
        _ = try await redis.send("DEL", Self.key(request.userID))
        return Shop_V1_Cart(userID: request.userID, items: [], subtotal: nil)
    }
}
