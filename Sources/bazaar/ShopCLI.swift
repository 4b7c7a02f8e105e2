import ArgumentParser
import BazaarCore
import BazaarMesh
import BazaarTransport
import Foundation
import Orders
import ShopAPI
import WellKnownTypes

/// `bazaar shop ...`: the shop from the command line, through the generated clients over the
/// mesh (mutual TLS with the `client` certificate), for trying the flows and for scripts.
struct ShopCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "shop",
        abstract: "Use the running shop: browse, sign in, fill a cart, check out, follow orders.",
        discussion: """
            Talks to the services `make up` starts (127.0.0.1:9101-9105; override with BAZAAR_<SERVICE>_TARGET) over \
            mutual TLS with .run/certs/client.pem (--certs, --identity). `login` keeps the session in .run/session.json; \
            later commands send its access token and refresh it when it has expired.
            """,
        subcommands: [
            Register.self, Login.self, Logout.self, Me.self, Products.self, Product.self, CartCommand.self,
            Checkout.self, Orders.self, OrderCommand.self, Cancel.self, Watch.self, Notifications.self, Admin.self,
        ])
}

struct ShopOptions: ParsableArguments {
    @Option(help: "Folder of the mesh certificates.") var certs = ".run/certs"
    @Option(help: "Whose certificate to present.") var identity = "client"
    @Option(help: "Where the session is kept.") var session = ".run/session.json"
    @Option(name: .customLong("timeout"), help: "Seconds each call may take.") var timeout = 10.0
}

/// Connections to the services and the saved session.
final class ShopConnection: @unchecked Sendable {
    let options: ShopOptions
    private var channels: [ShopService: MeshChannel] = [:]
    /// One loop for every channel the command opens.
    private let loops = EventLoopGroup(count: 1)

    init(_ options: ShopOptions) { self.options = options }

    func channel(_ service: ShopService) throws -> MeshChannel {
        if let c = channels[service] { return c }
        let target =
            ProcessEnvironment.current["BAZAAR_\(service.rawValue.uppercased())_TARGET"]
            ?? "127.0.0.1:\(service.defaultPort)"
        var mesh = MeshConfiguration()
        mesh.healthCheck = false
        let c = try MeshChannel(
            target: target, security: .mutualTLS(.mesh(directory: options.certs, service: options.identity)),
            mesh: mesh,
            group: loops)
        channels[service] = c
        return c
    }

    var catalog: Shop_V1_CatalogService.Client { get throws { .init(transport: try channel(.catalog)) } }
    var accounts: Shop_V1_AccountsService.Client { get throws { .init(transport: try channel(.accounts)) } }
    var cart: Shop_V1_CartService.Client { get throws { .init(transport: try channel(.cart)) } }
    var orders: Shop_V1_OrdersService.Client { get throws { .init(transport: try channel(.orders)) } }
    var notifications: Shop_V1_NotificationsService.Client {
        get throws { .init(transport: try channel(.notifications)) }
    }

    func shutdown() async {
        for c in channels.values { await c.shutdown() }
        loops.shutdown()
    }

    // MARK: the session file

    struct Saved: Codable {
        var accessToken: String
        var refreshToken: String
        var email: String
    }

    func load() -> Saved? {
        guard let data = FileManager.default.contents(atPath: options.session) else { return nil }
        return try? JSONDecoder().decode(Saved.self, from: data)
    }

    func save(_ s: Shop_V1_Session, email: String) throws {
        let data = try JSONEncoder().encode(
            Saved(accessToken: s.accessToken, refreshToken: s.refreshToken, email: email))
        let url = URL(fileURLWithPath: options.session)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        FileManager.default.createFile(atPath: options.session, contents: data, attributes: [.posixPermissions: 0o600])
    }

    var timeout: Duration { .milliseconds(Int(options.timeout * 1000)) }

    func options(signedIn: Bool) throws -> CallOptions {
        var o = CallOptions(timeout: timeout, waitForReady: true)
        if signedIn {
            guard let s = load() else { throw ValidationError("not signed in: run `bazaar shop login` first") }
            o.metadata.add("authorization", "Bearer \(s.accessToken)")
        }
        return o
    }

    /// Runs `call` as the signed-in user; on UNAUTHENTICATED trades the refresh token for new
    /// tokens once and tries again.
    func signedIn<T>(_ call: (CallOptions) async throws -> T) async throws -> T {
        do {
            return try await call(try options(signedIn: true))
        } catch let e as RPCError where e.code == .unauthenticated {
            guard let s = load() else { throw e }
            let fresh = try await accounts.refresh(
                Shop_V1_RefreshRequest(refreshToken: s.refreshToken),
                options: CallOptions(timeout: timeout, waitForReady: true))
            try save(fresh, email: s.email)
            return try await call(try options(signedIn: true))
        }
    }
}

/// Runs a command body with a connection, printing RPC errors as one line.
func shopRun(_ options: ShopOptions, _ body: @escaping @Sendable (ShopConnection) async throws -> Void) throws {
    let conn = ShopConnection(options)
    try runBlocking {
        do {
            try await body(conn)
            await conn.shutdown()
        } catch let e as RPCError {
            await conn.shutdown()
            print("error: \(e.code): \(e.message)")
            throw ExitCode.failure
        }
    }
}

func money(_ m: Shop_V1_Money?) -> String {
    guard let m else { return "-" }
    let sign = m.amountMinor < 0 ? "-" : ""
    let a = abs(m.amountMinor)
    return "\(sign)\(a / 100).\(String(format: "%02lld", a % 100)) \(m.currencyCode)"
}

func describe(_ o: Shop_V1_Order) -> String {
    var lines = [
        "order \(o.id)  \(OrderLifecycle.name(o.status))  total \(money(o.total))\(o.cancelReason.isEmpty ? "" : "  (\(o.cancelReason))")"
    ]
    for i in o.items {
        lines.append("  \(i.quantity) x \(i.productName)  \(money(i.unitPrice))  = \(money(i.lineTotal))")
    }
    return lines.joined(separator: "\n")
}

extension ShopCommand {
    struct Register: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create an account.")
        @OptionGroup var options: ShopOptions
        @Option var email: String
        @Option(help: "At least 8 characters.") var password: String
        @Option var name: String = ""

        func run() throws {
            let (email, password, name) = (email, password, name)
            try shopRun(options) { c in
                let u = try await c.accounts.register(
                    Shop_V1_RegisterRequest(email: email, password: password, displayName: name),
                    options: try c.options(signedIn: false))
                print("registered \(u.email) as user \(u.id)")
            }
        }
    }

    struct Login: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Sign in and keep the session.")
        @OptionGroup var options: ShopOptions
        @Option var email: String
        @Option var password: String

        func run() throws {
            let (email, password) = (email, password)
            try shopRun(options) { c in
                let s = try await c.accounts.login(
                    Shop_V1_LoginRequest(email: email, password: password), options: try c.options(signedIn: false))
                try c.save(s, email: email)
                print("signed in as \(s.user?.email ?? email) (roles: \(s.user?.roles.joined(separator: ", ") ?? ""))")
            }
        }
    }

    struct Logout: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "End the session (its refresh token is revoked).")
        @OptionGroup var options: ShopOptions

        func run() throws {
            try shopRun(options) { c in
                guard let s = c.load() else {
                    print("not signed in")
                    return
                }
                _ = try await c.accounts.logout(
                    Shop_V1_LogoutRequest(refreshToken: s.refreshToken), options: try c.options(signedIn: false))
                try? FileManager.default.removeItem(atPath: c.options.session)
                print("signed out")
            }
        }
    }

    struct Me: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show the signed-in user.")
        @OptionGroup var options: ShopOptions

        func run() throws {
            try shopRun(options) { c in
                let u = try await c.signedIn { try await c.accounts.getMe(Shop_V1_GetMeRequest(), options: $0) }
                print("\(u.email)  \(u.displayName)  roles: \(u.roles.joined(separator: ", "))  id \(u.id)")
            }
        }
    }

    struct Products: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List or search products.")
        @OptionGroup var options: ShopOptions
        @Option(help: "Full-text search.") var query = ""
        @Option var category = ""
        @Option(name: .customLong("min-price"), help: "In minor units (cents).") var minPrice: Int64 = 0
        @Option(name: .customLong("max-price"), help: "In minor units (cents).") var maxPrice: Int64 = 0
        @Option(help: "newest, price-asc, price-desc, name or relevance.") var sort = ""
        @Option var limit: Int32 = 10
        @Option(name: .customLong("page-token")) var pageToken = ""

        func run() throws {
            let sorts: [String: Shop_V1_ProductSort] = [
                "": .unspecified, "newest": .newest, "price-asc": .priceAsc, "price-desc": .priceDesc,
                "name": .name, "relevance": .relevance,
            ]
            guard let order = sorts[sort] else {
                throw ValidationError("--sort must be newest, price-asc, price-desc, name or relevance")
            }
            var r = Shop_V1_ListProductsRequest()
            r.query = query
            r.category = category
            r.minPriceMinor = minPrice
            r.maxPriceMinor = maxPrice
            r.sort = order
            r.page = Shop_V1_PageRequest(pageSize: limit, pageToken: pageToken)
            let request = r
            try shopRun(options) { c in
                let page = try await c.catalog.listProducts(request, options: try c.options(signedIn: false))
                for p in page.products {
                    print(
                        "\(p.id)  \(money(p.price))  stock \(p.stock)  \(p.name)  [\(p.categories.joined(separator: ", "))]"
                    )
                }
                if page.products.isEmpty { print("no products") }
                if !page.nextPageToken.isEmpty { print("more: --page-token \(page.nextPageToken)") }
            }
        }
    }

    struct Product: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show one product (by id, or --sku).")
        @OptionGroup var options: ShopOptions
        @Argument var id: String = ""
        @Option var sku: String = ""

        func run() throws {
            let request = Shop_V1_GetProductRequest(id: id, sku: sku)
            try shopRun(options) { c in
                let p = try await c.catalog.getProduct(request, options: try c.options(signedIn: false))
                print(
                    "\(p.name)  \(money(p.price))  stock \(p.stock)\(p.active ? "" : "  (no longer sold)")\nSKU \(p.sku)  id \(p.id)\n\(p.description_p)"
                )
                for (k, v) in p.attributes.sorted(by: { $0.key < $1.key }) { print("  \(k): \(v)") }
            }
        }
    }

    struct CartCommand: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "cart", abstract: "Show or change the cart.",
            subcommands: [Show.self, Add.self, Set.self, Remove.self, Clear.self], defaultSubcommand: Show.self)

        static func print(_ cart: Shop_V1_Cart) {
            if cart.items.isEmpty {
                Swift.print("the cart is empty")
                return
            }
            for i in cart.items {
                Swift.print("  \(i.quantity) x \(i.productName)  \(money(i.unitPrice))  (\(i.productID))")
            }
            Swift.print("subtotal \(money(cart.subtotal))")
        }

        struct Show: ParsableCommand {
            @OptionGroup var options: ShopOptions
            func run() throws {
                try shopRun(options) { c in
                    CartCommand.print(
                        try await c.signedIn { try await c.cart.getCart(Shop_V1_GetCartRequest(), options: $0) })
                }
            }
        }

        struct Add: ParsableCommand {
            @OptionGroup var options: ShopOptions
            @Argument var product: String
            @Option var quantity: Int64 = 1
            func run() throws {
                let r = Shop_V1_AddItemRequest(productID: product, quantity: quantity)
                try shopRun(options) { c in
                    CartCommand.print(try await c.signedIn { try await c.cart.addItem(r, options: $0) })
                }
            }
        }

        struct Set: ParsableCommand {
            @OptionGroup var options: ShopOptions
            @Argument var product: String
            @Argument var quantity: Int64
            func run() throws {
                let r = Shop_V1_SetItemQuantityRequest(productID: product, quantity: quantity)
                try shopRun(options) { c in
                    CartCommand.print(try await c.signedIn { try await c.cart.setItemQuantity(r, options: $0) })
                }
            }
        }

        struct Remove: ParsableCommand {
            @OptionGroup var options: ShopOptions
            @Argument var product: String
            func run() throws {
                let r = Shop_V1_RemoveItemRequest(productID: product)
                try shopRun(options) { c in
                    CartCommand.print(try await c.signedIn { try await c.cart.removeItem(r, options: $0) })
                }
            }
        }

        struct Clear: ParsableCommand {
            @OptionGroup var options: ShopOptions
            func run() throws {
                try shopRun(options) { c in
                    CartCommand.print(
                        try await c.signedIn { try await c.cart.clearCart(Shop_V1_ClearCartRequest(), options: $0) })
                }
            }
        }
    }

    struct Checkout: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Place an order from the cart.")
        @OptionGroup var options: ShopOptions
        @Option(name: .customLong("payment-token"), help: "tok_declined declines, tok_error fails; anything else pays.")
        var paymentToken = "tok_visa"
        @Option(
            name: .customLong("request-id"), help: "Idempotency key (default: a new UUID); repeat it to retry safely.")
        var requestID = UUID().uuidString
        @Option var recipient = "Ada Lovelace"
        @Option var street = "12 Analytical Row"
        @Option var city = "London"
        @Option(name: .customLong("postal-code")) var postalCode = "N1 9GU"
        @Option(help: "ISO 3166-1 alpha-2.") var country = "GB"

        func run() throws {
            let address = Shop_V1_Address(
                recipient: recipient, lines: [street], city: city, postalCode: postalCode, countryCode: country)
            let r = Shop_V1_PlaceOrderRequest(
                requestID: requestID, shippingAddress: address, paymentToken: paymentToken)
            try shopRun(options) { c in
                Swift.print(describe(try await c.signedIn { try await c.orders.placeOrder(r, options: $0) }))
            }
        }
    }

    struct Orders: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List your orders (admins: --all for everyone's).")
        @OptionGroup var options: ShopOptions
        @Flag var all = false
        func run() throws {
            let all = all
            try shopRun(options) { c in
                let page = try await c.signedIn { o in
                    all
                        ? try await c.orders.listAllOrders(Shop_V1_ListOrdersRequest(), options: o)
                        : try await c.orders.listOrders(Shop_V1_ListOrdersRequest(), options: o)
                }
                for o in page.orders { print(describe(o)) }
                if page.orders.isEmpty { print("no orders") }
            }
        }
    }

    struct OrderCommand: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "order", abstract: "Show one order.")
        @OptionGroup var options: ShopOptions
        @Argument var id: String
        func run() throws {
            let r = Shop_V1_GetOrderRequest(id: id)
            try shopRun(options) { c in
                print(describe(try await c.signedIn { try await c.orders.getOrder(r, options: $0) }))
            }
        }
    }

    struct Cancel: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Cancel an order that has not shipped (refunds it).")
        @OptionGroup var options: ShopOptions
        @Argument var id: String
        @Option var reason = ""
        func run() throws {
            let r = Shop_V1_CancelOrderRequest(id: id, reason: reason)
            try shopRun(options) { c in
                print(describe(try await c.signedIn { try await c.orders.cancelOrder(r, options: $0) }))
            }
        }
    }

    struct Watch: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print an order's status each time it changes, until it is delivered or cancelled.")
        @OptionGroup var options: ShopOptions
        @Argument var id: String
        @Option(help: "Stop after this many seconds.") var seconds = 3600.0
        func run() throws {
            let (id, seconds) = (id, seconds)
            try shopRun(options) { c in
                var o = try c.options(signedIn: true)
                o.timeout = .milliseconds(Int(seconds * 1000))
                for try await order in try c.orders.watchOrder(Shop_V1_WatchOrderRequest(id: id), options: o) {
                    print("\(Date())  \(OrderLifecycle.name(order.status))")
                }
            }
        }
    }

    struct Notifications: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List your notifications, newest first.")
        @OptionGroup var options: ShopOptions
        func run() throws {
            try shopRun(options) { c in
                let page = try await c.signedIn {
                    try await c.notifications.listNotifications(Shop_V1_ListNotificationsRequest(), options: $0)
                }
                for n in page.notifications { print("\(n.read ? " " : "*") \(n.subject)  (\(n.id))") }
                if page.notifications.isEmpty { print("no notifications") }
            }
        }
    }

    struct Admin: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Move an order along (admins only).", subcommands: [Ship.self, Deliver.self])

        static func move(_ options: ShopOptions, _ id: String, _ status: Shop_V1_OrderStatus) throws {
            let r = Shop_V1_UpdateOrderStatusRequest(id: id, status: status)
            try shopRun(options) { c in
                print(describe(try await c.signedIn { try await c.orders.updateOrderStatus(r, options: $0) }))
            }
        }

        struct Ship: ParsableCommand {
            @OptionGroup var options: ShopOptions
            @Argument var id: String
            func run() throws { try Admin.move(options, id, .shipped) }
        }

        struct Deliver: ParsableCommand {
            @OptionGroup var options: ShopOptions
            @Argument var id: String
            func run() throws { try Admin.move(options, id, .delivered) }
        }
    }
}
