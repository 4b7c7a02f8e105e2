import BazaarCore
import ConformanceProtos
import ShopAPI
import Testing

/// The checks the generated code runs (common.proto's and orders.proto's rules), without a server;
/// every protocol's answer to the same requests is in Tests/Integration/test_error_model.py.
@Suite struct ValidationTests {
    static let address = Shop_V1_Address(
        recipient: "Ada", lines: ["1 Main St"], city: "Paris", postalCode: "75001", countryCode: "FR")

    func reasons(_ m: some ValidatedMessage) -> [String] { m.violations.map { "\($0.field) \($0.reason)" } }

    @Test func aValidRequestHasNoViolations() throws {
        let r = Shop_V1_PlaceOrderRequest(requestID: "r-1", shippingAddress: Self.address, paymentToken: "")
        #expect(r.violations.isEmpty)
        try r.validate()
    }

    @Test func everyBrokenRuleIsReportedWithItsPath() {
        var a = Self.address
        a.recipient = "  "
        a.lines = ["ok", "", "c", "d", "e", "f"]
        a.city = String(repeating: "x", count: 101)
        a.postalCode = "75\n001"
        a.countryCode = "fr"
        let r = Shop_V1_PlaceOrderRequest(requestID: "", shippingAddress: a, paymentToken: "")
        #expect(
            reasons(r) == [
                "request_id REQUIRED", "shipping_address.recipient REQUIRED", "shipping_address.lines TOO_MANY_ITEMS",
                "shipping_address.lines[1] STRING_TOO_SHORT", "shipping_address.city STRING_TOO_LONG",
                "shipping_address.postal_code CONTROL_CHARACTERS", "shipping_address.country_code PATTERN_MISMATCH",
            ])
    }

    @Test func aMissingMessageIsRequired() {
        #expect(
            reasons(Shop_V1_PlaceOrderRequest(requestID: "r", shippingAddress: nil, paymentToken: "")) == [
                "shipping_address REQUIRED"
            ])
    }

    @Test func theErrorIsInvalidArgumentWithABadRequest() {
        do {
            try Shop_V1_AddItemRequest(productID: "p", quantity: 0).validate()
            Issue.record("a quantity of 0 passed")
        } catch {
            #expect(error.code == .invalidArgument)
            #expect(error.message == "quantity must be at least 1")
            #expect(error.fieldViolations.map(\.reason) == ["NUMBER_TOO_SMALL"])
        }
    }

    @Test func numbersListsAndEnums() {
        #expect(reasons(Shop_V1_ReserveStockRequest(orderID: "o", lines: [])) == ["lines TOO_FEW_ITEMS"])
        let lines = [Shop_V1_StockLine(productID: "a", quantity: 1001), Shop_V1_StockLine(productID: "b", quantity: 1)]
        #expect(
            reasons(Shop_V1_ReserveStockRequest(orderID: "o", lines: lines)) == ["lines[0].quantity NUMBER_TOO_LARGE"])
        var list = Shop_V1_ListProductsRequest()
        list.sort = .unrecognized(42)
        list.minPriceMinor = -1
        #expect(reasons(list) == ["min_price_minor NUMBER_TOO_SMALL", "sort ENUM_UNDEFINED"])
    }

    @Test func theMessageNamesTheFirstViolationsAndCountsTheRest() {
        let v = (0..<5).map { FieldViolation(field: "f\($0)", description: "f\($0) is wrong") }
        #expect(RPCError.invalidArgument(v).message == "f0 is wrong; f1 is wrong; f2 is wrong (and 2 more)")
    }

    @Test func emailsAndControlCharacters() {
        #expect(FieldCheck.isEmail("ada@example.com"))
        #expect(!FieldCheck.isEmail("ada@example"))
        #expect(!FieldCheck.isEmail("a b@example.com"))
        #expect(FieldCheck.hasControlCharacters("a\u{2028}b", allowingLineBreaks: true))
        #expect(!FieldCheck.hasControlCharacters("a\nb", allowingLineBreaks: true))
        var out: [FieldViolation] = []
        FieldCheck.string("not-an-email", "email", email: true, into: &out)
        FieldCheck.string("", "email", email: true, into: &out)  // empty and optional: not given
        #expect(out.map(\.reason) == ["NOT_AN_EMAIL"])
    }

    @Test func aStreamOfRequestsIsCheckedAsItIsRead() async throws {
        var good = Shop_V1_SendNotificationRequest()
        good.channel = .email
        good.subject = "Hello"
        good.body = "Body"
        var bad = good
        bad.subject = "two\nlines"
        let stream = RPCStream<Shop_V1_SendNotificationRequest> { c in
            c.yield(good)
            c.yield(bad)
            c.yield(good)
            c.finish()
        }.validated()
        var taken = 0
        do {
            for try await _ in stream { taken += 1 }
            Issue.record("the invalid message passed")
        } catch let e as RPCError {
            #expect(taken == 1 && e.code == .invalidArgument && e.fieldViolations.map(\.field) == ["subject"])
        }
    }

    @Test func fieldsNamedLikeTheGeneratedParametersAreChecked() {
        var leaf = Validation_V1_Leaf()
        leaf.prefix = "abcd"
        leaf.out = 0
        var holder = Validation_V1_Holder()
        holder.leaf = leaf
        // The proto2 required message is a value, checked inside.
        #expect(reasons(holder) == ["leaf.prefix STRING_TOO_LONG", "leaf.out NUMBER_TOO_SMALL"])
    }

    @Test func closedEnumsAndExactSixtyFourBitBounds() {
        var holder = Validation_V1_Holder()
        holder.leaf = Validation_V1_Leaf()
        holder.kind = .unrecognized(7)
        holder.big = 10_000_000_000_000_001  // one over a bound a Double cannot tell apart
        holder.small = 3  // over max 2.5, rounded down to 2
        #expect(reasons(holder) == ["kind ENUM_UNDEFINED", "big NUMBER_TOO_LARGE", "small NUMBER_TOO_LARGE"])
        holder.big = 10_000_000_000_000_000
        holder.small = Int64.min
        holder.kind = .one
        #expect(reasons(holder).isEmpty)
    }

    @Test func messagesThatHoldEachOtherAreBothChecked() {
        var first = Validation_V1_First()
        first.name = ""
        var second = Validation_V1_Second()
        second.inner = first
        #expect(reasons(second) == ["inner.name STRING_TOO_SHORT"])
    }

    @Test func aFloodOfViolationsIsCapped() {
        var a = Self.address
        a.lines = [String](repeating: "", count: 1000)
        let e = RPCError.invalidArgument(
            Shop_V1_PlaceOrderRequest(requestID: "r", shippingAddress: a, paymentToken: "").violations)
        #expect(e.fieldViolations.count == FieldCheck.maxViolations)
        #expect(e.message.hasSuffix("more)"))
    }
}
