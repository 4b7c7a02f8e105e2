import Accounts
import ArgumentParser
import BazaarAuth
import BazaarCore
import BazaarPostgres
import BazaarTelemetry
import BazaarTransport
import Catalog
import Foundation
import ShopKit

/// `bazaar seed`: demo data, written straight into the catalog and accounts databases.
struct Seed: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Load demo data: products across categories, an admin and a customer.",
        discussion: """
            Applies the services' migrations first (waiting for PostgreSQL to come up with --wait), so it works before the services ever ran. Running it again adds \
            nothing twice: products are keyed by SKU, and users that exist are left as they are (a password is never \
            overwritten). With BAZAAR_ENV=production there is no default admin password (give --admin-password-file) \
            and no demo customer: that is how a production shop gets its first admin (docs/deployment.md). \
            Prints a progress line per batch of products.
            """)

    @Option(name: .customLong("catalog-db"), help: "libpq conninfo of the catalog database.")
    var catalogDB: String

    @Option(name: .customLong("accounts-db"), help: "libpq conninfo of the accounts database.")
    var accountsDB: String

    @Option(help: "How many products.")
    var products: Int = 1000

    @Option(
        help:
            "How long to wait for PostgreSQL to come up, e.g. 60s (beside a database that is starting: Compose); by default it fails at once."
    )
    var wait: String = "0s"

    @Option(name: .customLong("admin-email")) var adminEmail = "admin@bazaar.local"
    @Option(
        name: .customLong("admin-password"),
        help: "The admin's password (at least 8 characters; development default admin-pass-123).")
    var adminPasswordOption: String?
    @Option(
        name: .customLong("admin-password-file"),
        help: "A file holding the admin's password (kept out of the process list).")
    var adminPasswordFile: String?
    @Option(name: .customLong("customer-email")) var customerEmail = "customer@bazaar.local"
    @Option(name: .customLong("customer-password")) var customerPassword = "customer-pass-123"

    /// The profile as every process reads it (BAZAAR_ENV, validated).
    var production: Bool {
        get throws { try ShopEnvironment(ProcessEnvironment.current).isProduction() }
    }

    /// The admin's password: given, read from a file, or (in development only) the demo one.
    func adminPassword() throws -> String {
        if let path = adminPasswordFile {
            guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
                throw ValidationError("cannot read --admin-password-file \(path)")
            }
            return text.trimming("\n\r")
        }
        if let p = adminPasswordOption { return p }
        if try production {
            throw ValidationError(
                "BAZAAR_ENV=production has no default admin password: give --admin-password-file (or --admin-password)")
        }
        return "admin-pass-123"
    }

    func validate() throws {
        guard Environment.parseDuration(wait) != nil else { throw ValidationError("--wait \(wait): expected e.g. 60s") }
        guard (0...100_000).contains(products) else { throw ValidationError("--products must be between 0 and 100000") }
        guard try adminPassword().count >= 8, customerPassword.count >= 8 else {
            throw ValidationError("passwords need at least 8 characters")
        }
    }

    static let categories = [
        "books", "kitchen", "garden", "toys", "music", "sports", "office", "outdoor", "home", "electronics",
    ]
    static let adjectives = [
        "Classic", "Compact", "Deluxe", "Everyday", "Handmade", "Lightweight", "Modern", "Rustic", "Sturdy", "Vintage",
    ]
    static let nouns: [String: [String]] = [
        "books": ["Novel", "Cookbook", "Atlas", "Notebook"], "kitchen": ["Mug", "Kettle", "Pan", "Knife"],
        "garden": ["Trowel", "Planter", "Hose", "Rake"], "toys": ["Puzzle", "Kite", "Robot", "Yo-yo"],
        "music": ["Ukulele", "Harmonica", "Metronome", "Drumsticks"],
        "sports": ["Ball", "Racket", "Jump Rope", "Water Bottle"],
        "office": ["Stapler", "Desk Lamp", "Pen Set", "Organizer"],
        "outdoor": ["Tent", "Lantern", "Backpack", "Hammock"],
        "home": ["Blanket", "Candle", "Vase", "Clock"], "electronics": ["Headphones", "Charger", "Speaker", "Cable"],
    ]
    static let colors = ["red", "blue", "green", "black", "white", "yellow"]

    /// Product `n` of the demo set: the same every run.
    static func product(_ n: Int) -> [String: Any] {
        let category = categories[n % categories.count]
        let noun = nouns[category]![(n / categories.count) % 4]
        let adjective = adjectives[(n / 40) % adjectives.count]
        let color = colors[n % colors.count]
        return [
            "sku": String(format: "DEMO-%05d", n), "name": "\(adjective) \(noun) \(n)",
            "description": "A \(adjective.lowercased()) \(noun.lowercased()) in \(color), from our \(category) range.",
            "price_minor": 199 + (n * 7919) % 19_800, "stock": 20 + (n * 31) % 180, "categories": [category],
            "image_urls": ["/static/demo/\(color)-\(n % 8).svg"], "attributes": ["color": color],
        ]
    }

    func run() throws {
        let (products, adminEmail, adminPassword, customerEmail, customerPassword) = (
            self.products, self.adminEmail, try self.adminPassword(),
            self.customerEmail, self.customerPassword
        )
        let production = try self.production
        let (catalogDB, accountsDB) = (self.catalogDB, self.accountsDB)
        let wait = Environment.parseDuration(self.wait) ?? .zero
        try runBlocking {
            let catalog = PostgresPool(conninfo: catalogDB, maxConnections: 1)
            let accounts = PostgresPool(conninfo: accountsDB, maxConnections: 1)
            defer {
                catalog.close()
                accounts.close()
            }
            // Started beside the database (Compose), it may not be up yet: wait as the services do.
            for db in [catalog, accounts] {
                var told = false
                try await db.waitUntilReachable(timeout: wait) { error in
                    if !told { print("seed: waiting for PostgreSQL (\(error.message))") }
                    told = true
                }
            }
            try await Migrator.migrate(catalog, CatalogSchema.migrations)
            try await Migrator.migrate(accounts, AccountsSchema.migrations)
            var added = 0
            for start in stride(from: 0, to: products, by: 250) {
                let batch = (start..<min(products, start + 250)).map(Self.product)
                let json = String(decoding: try JSONSerialization.data(withJSONObject: batch), as: UTF8.self)
                // One statement per batch, the whole batch one JSON parameter.
                let r = try await catalog.query(
                    """
                    INSERT INTO products (sku, name, description, currency, price_minor, stock, categories, image_urls, attributes)
                    SELECT p.sku, p.name, p.description, 'EUR', p.price_minor, p.stock,
                           ARRAY(SELECT jsonb_array_elements_text(p.categories)), ARRAY(SELECT jsonb_array_elements_text(p.image_urls)), p.attributes
                    FROM jsonb_to_recordset($1::jsonb) AS p(sku text, name text, description text, price_minor bigint, stock bigint,
                                                            categories jsonb, image_urls jsonb, attributes jsonb)
                    ON CONFLICT (sku) DO NOTHING
                    """, [json])
                added += r.affectedRows
                print("seed: products \(min(products, start + 250))/\(products) (\(added) new)")
            }
            let logger = Logger(service: "seed", level: .warning)
            let key = try JWTKey.generate()  // only to build the service; seeding issues no tokens
            let service = try AccountsService(db: accounts, logger: logger, signingKey: key)
            let admin = try await service.ensureUser(
                email: adminEmail, password: adminPassword, displayName: "Admin", roles: ["admin", "customer"])
            print("seed: admin \(adminEmail) \(admin ? "created" : "exists already; left as it is")")
            if !production {
                let customer = try await service.ensureUser(
                    email: customerEmail, password: customerPassword, displayName: "Customer", roles: ["customer"])
                print("seed: customer \(customerEmail) \(customer ? "created" : "exists already; left as it is")")
            }
        }
    }
}
