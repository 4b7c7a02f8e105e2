// Codec benchmark: Bazaar's protobuf-c runtime against swift-protobuf 1.39 on one representative
// shop message (an order with 10 line items, strings, money and timestamps).
//
//   swift run -c release CodecBenchmark [--rounds 15] [--iterations 20000]
//   swift run -c release CodecBenchmark --only bazaar-encode --iterations 1000   (for callgrind)
//
// Rounds interleave the four measurements (A B C D A B C D ...) so that CPU steal on a shared
// machine hits all of them alike; the report uses medians and ratios from the same run.
import Foundation
import ShopAPI
import SwiftProtobuf
import SwiftProtobufShop
import WellKnownTypes

// Both libraries name their types alike; these aliases keep the two sides apart.
typealias BzOrder = ShopAPI.Shop_V1_Order
typealias BzItem = ShopAPI.Shop_V1_OrderItem
typealias BzMoney = ShopAPI.Shop_V1_Money
typealias BzAddress = ShopAPI.Shop_V1_Address
typealias BzTimestamp = WellKnownTypes.Google_Protobuf_Timestamp
typealias Shop_V1_Order_SP = SwiftProtobufShop.Shop_V1_Order

func bazaarOrder() -> BzOrder {
    var o: BzOrder = BzOrder(
        id: "ord_01HZX8K2M4N6P8Q0R2S4T6V8W0", userID: "usr_01HZX7A1B2C3D4E5F6G7H8J9K0", status: .paid)
    o.items = (0..<10).map { (i: Int) -> BzItem in
        let price: Int64 = 1299 + Int64(i) * 100
        let quantity = Int64(i % 3 + 1)
        let name = "Stoneware mug, speckled glaze, \(300 + i * 10) ml"
        return BzItem(
            productID: "prd_\(100_000 + i)", productName: name, quantity: quantity,
            unitPrice: BzMoney(currencyCode: "EUR", amountMinor: price),
            lineTotal: BzMoney(currencyCode: "EUR", amountMinor: price * quantity))
    }
    o.total = BzMoney(currencyCode: "EUR", amountMinor: 41_970)
    o.shippingAddress = BzAddress(
        recipient: "Ada Lovelace", lines: ["12 St James's Square", "Flat 3"],
        city: "London", postalCode: "SW1Y 4JH", countryCode: "GB")
    o.createTime = BzTimestamp(seconds: 1_763_856_000, nanos: 123_000_000)
    o.updateTime = BzTimestamp(seconds: 1_763_859_600, nanos: 456_000_000)
    return o
}

func swiftProtobufOrder() -> Shop_V1_Order_SP {
    var o = Shop_V1_Order_SP()
    o.id = "ord_01HZX8K2M4N6P8Q0R2S4T6V8W0"
    o.userID = "usr_01HZX7A1B2C3D4E5F6G7H8J9K0"
    o.status = .paid
    o.items = (0..<10).map { (i: Int) -> SwiftProtobufShop.Shop_V1_OrderItem in
        let price: Int64 = 1299 + Int64(i) * 100
        let quantity = Int64(i % 3 + 1)
        var item = SwiftProtobufShop.Shop_V1_OrderItem()
        item.productID = "prd_\(100_000 + i)"
        item.productName = "Stoneware mug, speckled glaze, \(300 + i * 10) ml"
        item.quantity = quantity
        item.unitPrice = .with {
            $0.currencyCode = "EUR"
            $0.amountMinor = price
        }
        item.lineTotal = .with {
            $0.currencyCode = "EUR"
            $0.amountMinor = price * quantity
        }
        return item
    }
    o.total = .with {
        $0.currencyCode = "EUR"
        $0.amountMinor = 41_970
    }
    o.shippingAddress = .with {
        $0.recipient = "Ada Lovelace"
        $0.lines = ["12 St James's Square", "Flat 3"]
        $0.city = "London"
        $0.postalCode = "SW1Y 4JH"
        $0.countryCode = "GB"
    }
    o.createTime = .with {
        $0.seconds = 1_763_856_000
        $0.nanos = 123_000_000
    }
    o.updateTime = .with {
        $0.seconds = 1_763_859_600
        $0.nanos = 456_000_000
    }
    return o
}

var rounds = 15
var iterations = 20_000
var only: String?
var args = CommandLine.arguments.dropFirst()
while let a = args.popFirst() {
    switch a {
    case "--rounds": rounds = Int(args.popFirst() ?? "") ?? rounds
    case "--iterations": iterations = Int(args.popFirst() ?? "") ?? iterations
    case "--only": only = args.popFirst()
    case "-h", "--help":
        print(
            "usage: CodecBenchmark [--rounds N] [--iterations N] [--only bazaar-encode|bazaar-decode|swift-protobuf-encode|swift-protobuf-decode]"
        )
        exit(0)
    default:
        FileHandle.standardError.write(Data("unknown argument \(a) (see --help)\n".utf8))
        exit(2)
    }
}

let bz = bazaarOrder()
let sp = swiftProtobufOrder()
let bzBytes = try bz.serializedBytes()
let spBytes: [UInt8] = try sp.serializedBytes()
// Both must describe the same message: equal bytes, and each decodes the other's.
precondition(bzBytes == spBytes, "the two encodings differ")
let bzFromSp = try BzOrder(serializedBytes: spBytes)
let spFromBz = try Shop_V1_Order_SP(serializedBytes: bzBytes)
precondition(bzFromSp == bz && spFromBz == sp, "the libraries decode each other's bytes differently")

@inline(never) func blackHole<T>(_ x: T) { withExtendedLifetime(x) {} }

let cases: [(String, () throws -> Void)] = [
    ("bazaar-encode", { blackHole(try bz.serializedBytes()) }),
    ("swift-protobuf-encode", { blackHole(try sp.serializedBytes() as [UInt8]) }),
    ("bazaar-decode", { blackHole(try BzOrder(serializedBytes: bzBytes)) }),
    ("swift-protobuf-decode", { blackHole(try Shop_V1_Order_SP(serializedBytes: bzBytes)) }),
]

if let only {
    guard let c = cases.first(where: { $0.0 == only }) else {
        FileHandle.standardError.write(Data("unknown case \(only)\n".utf8))
        exit(2)
    }
    for _ in 0..<iterations { try c.1() }
    exit(0)
}

FileHandle.standardError.write(
    Data("message: \(bzBytes.count) bytes; \(rounds) rounds x \(iterations) iterations\n".utf8))
var samples: [String: [Double]] = [:]
for r in 1...rounds {
    for (name, body) in cases {
        let start = ContinuousClock.now
        for _ in 0..<iterations { try body() }
        let elapsed = ContinuousClock.now - start
        let ns = Double(elapsed.components.seconds) * 1e9 + Double(elapsed.components.attoseconds) / 1e9
        samples[name, default: []].append(ns / Double(iterations))
    }
    FileHandle.standardError.write(Data("round \(r)/\(rounds)\r".utf8))
}
FileHandle.standardError.write(Data("\n".utf8))
func median(_ xs: [Double]) -> Double {
    let s = xs.sorted()
    return s[s.count / 2]
}
let m = samples.mapValues(median)
print("| operation | Bazaar (ns/op, median) | swift-protobuf (ns/op, median) | speed-up |")
print("|---|---|---|---|")
for op in ["encode", "decode"] {
    let b = m["bazaar-\(op)"]!
    let s = m["swift-protobuf-\(op)"]!
    print(String(format: "| %@ | %.0f | %.0f | %.2fx |", op, b, s, s / b))
}
