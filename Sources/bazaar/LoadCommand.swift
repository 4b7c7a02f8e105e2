import ArgumentParser
import BazaarAuth
import BazaarCore
import BazaarMesh
import BazaarTransport
import Foundation
import ShopAPI
import Synchronization

/// `bazaar load checkout`: sustained checkouts against a running shop, for BENCHMARKS.md.
struct Load: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Put load on a running shop and report throughput and latency.",
        subcommands: [CheckoutLoad.self])
}

struct CheckoutLoad: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "checkout",
        abstract:
            "Checkouts as fast as the shop takes them: each worker adds a product to its cart and places an order, again and again.",
        discussion: """
            Users are synthetic: their access tokens are signed here with the accounts service's key (--jwt-key), so no \
            sign-in (and no argon2) is in the loop. An admin token creates the benchmark product with a large stock. \
            Prints a progress line every second and a final line starting with RESULT (orders/s; PlaceOrder latency \
            percentiles in ms; errors by status). Warm-up calls are not counted.
            """)

    @OptionGroup var shop: ShopOptions
    @Option(name: .customLong("jwt-key"), help: "The accounts service's private key (to mint users' tokens).")
    var jwtKey = ".run/jwt/jwt-key.pem"
    @Option(help: "Checkouts in flight at once (one synthetic user each).") var concurrency = 32
    @Option(help: "Seconds to measure.") var duration = 20.0
    @Option(help: "Seconds of warm-up before measuring.") var warmup = 3.0
    @Option(name: .customLong("payment-token")) var paymentToken = "tok_visa"
    @Option(help: "Products to spread the orders over (one hot product serialises every reservation on its row lock).")
    var products = 200

    func validate() throws {
        guard (1...4096).contains(concurrency) else { throw ValidationError("--concurrency must be 1 to 4096") }
        guard duration > 0, warmup >= 0 else {
            throw ValidationError("--duration must be positive and --warmup not negative")
        }
        guard (1...10_000).contains(products) else { throw ValidationError("--products must be 1 to 10000") }
    }

    final class Stats: Sendable {
        struct State {
            var latencies: [Double] = []
            var addLatencies: [Double] = []
            var errors: [String: Int] = [:]
            var done = 0
        }
        let state = Lock(State())
        let measuring = Atomic<Bool>(false)
    }

    func run() throws {
        let pem = try String(contentsOfFile: jwtKey, encoding: .utf8)
        let key = try JWTKey(pem: pem)
        let signing = key.withKeyID(key.thumbprint)
        let (concurrency, duration, warmup, token, productCount) = (
            concurrency, duration, warmup, paymentToken, products
        )
        let conn = ShopConnection(shop)
        try runBlocking {
            func bearer(_ subject: String, roles: [String]) throws -> CallOptions {
                var o = CallOptions(timeout: .seconds(10), waitForReady: true)
                o.metadata.add(
                    "authorization",
                    "Bearer \(try JWT.issue(subject: subject, issuer: "bazaar", audience: "bazaar", lifetime: 3600, roles: roles, key: signing))"
                )
                return o
            }
            let admin = try bearer(UUID().uuidString.lowercased(), roles: ["admin"])
            var productIDs: [String] = []
            let run = UUID().uuidString.prefix(8)
            for n in 0..<productCount {
                var p = Shop_V1_Product()
                p.sku = "LOAD-\(run)-\(n)"
                p.name = "Load test widget \(n)"
                p.price = Shop_V1_Money(currencyCode: "EUR", amountMinor: 999 + Int64(n))
                p.stock = 1_000_000_000
                p.categories = ["load"]
                productIDs.append(
                    try await conn.catalog.createProduct(Shop_V1_CreateProductRequest(product: p), options: admin).id)
            }
            let ids = productIDs
            let stats = Stats()
            let address = Shop_V1_Address(
                recipient: "Load", lines: ["1 Bench St"], city: "Berlin", postalCode: "10115", countryCode: "DE")
            let (cart, orders) = (try conn.cart, try conn.orders)
            let start = ContinuousClock.now
            let measureFrom = start + .milliseconds(Int(warmup * 1000))
            let end = measureFrom + .milliseconds(Int(duration * 1000))
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<concurrency {
                    let user = try bearer(UUID().uuidString.lowercased(), roles: ["customer"])
                    group.addTask {
                        while ContinuousClock.now < end {
                            let counted = ContinuousClock.now >= measureFrom
                            let t0 = ContinuousClock.now
                            do {
                                _ = try await cart.addItem(
                                    Shop_V1_AddItemRequest(productID: ids.randomElement()!, quantity: 1), options: user)
                                let t1 = ContinuousClock.now
                                _ = try await orders.placeOrder(
                                    Shop_V1_PlaceOrderRequest(
                                        requestID: UUID().uuidString, shippingAddress: address,
                                        paymentToken: token), options: user)
                                let t2 = ContinuousClock.now
                                if counted && t2 <= end {
                                    stats.state.withLock {
                                        $0.addLatencies.append((t1 - t0).inSeconds * 1000)
                                        $0.latencies.append((t2 - t1).inSeconds * 1000)
                                        $0.done += 1
                                    }
                                }
                            } catch {
                                let code = RPCError(error).code
                                if counted { stats.state.withLock { $0.errors["\(code)", default: 0] += 1 } }
                                try? await Task.sleep(for: .milliseconds(50))
                            }
                        }
                    }
                }
                group.addTask {
                    var last = 0
                    while ContinuousClock.now < end {
                        try await Task.sleep(for: .seconds(1))
                        let (done, errors) = stats.state.withLock { ($0.done, $0.errors.values.reduce(0, +)) }
                        let phase = ContinuousClock.now < measureFrom ? "warm-up" : "measuring"
                        print(
                            "load: \(phase): \(done - last) orders in the last second, \(done) in all, \(errors) errors"
                        )
                        last = done
                    }
                }
                try await group.waitForAll()
            }
            let s = stats.state.withLock { $0 }
            func pct(_ values: [Double], _ q: Double) -> Double {
                let sorted = values.sorted()
                return sorted.isEmpty ? 0 : sorted[min(sorted.count - 1, Int(Double(sorted.count) * q))]
            }
            let mean = s.latencies.isEmpty ? 0 : s.latencies.reduce(0, +) / Double(s.latencies.count)
            let errors = s.errors.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",")
            print(
                String(
                    format:
                        "RESULT orders_per_s=%.1f place_mean_ms=%.2f place_p50_ms=%.2f place_p90_ms=%.2f place_p99_ms=%.2f place_max_ms=%.2f add_p50_ms=%.2f concurrency=%d errors=%@",
                    Double(s.done) / duration, mean, pct(s.latencies, 0.5), pct(s.latencies, 0.9),
                    pct(s.latencies, 0.99),
                    s.latencies.max() ?? 0, pct(s.addLatencies, 0.5), concurrency, errors.isEmpty ? "none" : errors))
            await conn.shutdown()
        }
    }
}
