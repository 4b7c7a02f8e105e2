import BazaarCore
import Foundation
import Orders
import ShopAPI
import ShopKit
import Testing
import WellKnownTypes

@testable import BazaarSMTP

@Suite struct PageTokenTests {
    @Test func roundTripsAndRefusesForgeries() throws {
        let t = PageToken.encode(["2026-01-01 00:00:00+00", "3f1e9b1e-0000-4000-8000-000000000000"])
        #expect(
            try PageToken.decode(t, count: 2) == ["2026-01-01 00:00:00+00", "3f1e9b1e-0000-4000-8000-000000000000"])
        #expect(try PageToken.decode("", count: 2) == nil)
        for bad in ["%%%", "bm90IGEgdG9rZW4", PageToken.encode(["only one"]), String(repeating: "A", count: 600)] {
            #expect(throws: RPCError.self) { try PageToken.decode(bad, count: 2) }
        }
    }

    @Test func pageSizesAreCapped() throws {
        #expect(try PageToken.size(nil) == 20)
        #expect(try PageToken.size(Shop_V1_PageRequest(pageSize: 5, pageToken: "")) == 5)
        #expect(try PageToken.size(Shop_V1_PageRequest(pageSize: 5000, pageToken: "")) == 100)
        #expect(throws: RPCError.self) { try PageToken.size(Shop_V1_PageRequest(pageSize: -1, pageToken: "")) }
    }
}

@Suite struct OrderLifecycleTests {
    @Test func onlyTheDocumentedMovesAreAllowed() {
        let all: [Shop_V1_OrderStatus] = [.pending, .paid, .shipped, .delivered, .cancelled]
        var allowed: [String] = []
        for actor in [OrderLifecycle.Actor.checkout, .customer, .admin] {
            for from in all {
                for to in all where from != to && OrderLifecycle.refusal(from: from, to: to, by: actor) == nil {
                    allowed.append("\(actor):\(OrderLifecycle.name(from))->\(OrderLifecycle.name(to))")
                }
            }
        }
        #expect(
            allowed.sorted() == [
                "admin:PAID->CANCELLED", "admin:PAID->SHIPPED", "admin:SHIPPED->DELIVERED",
                "checkout:PENDING->CANCELLED", "checkout:PENDING->PAID", "customer:PAID->CANCELLED",
            ])
        #expect(OrderLifecycle.refusal(from: .shipped, to: .cancelled, by: .customer)?.code == .failedPrecondition)
        #expect(OrderLifecycle.refusal(from: .paid, to: .shipped, by: .customer)?.code == .permissionDenied)
    }
}

@Suite struct ValueTests {
    @Test func timestampsFromMicros() {
        let t = Google_Protobuf_Timestamp(micros: 1_700_000_000_123_456)
        #expect(t.seconds == 1_700_000_000 && t.nanos == 123_456_000)
        let before = Google_Protobuf_Timestamp(micros: -1)
        #expect(before.seconds == -1 && before.nanos == 999_999_000)
    }

    @Test func textChecks() {
        #expect(throws: RPCError.self) { try Check.text("", "name") }
        #expect(throws: RPCError.self) { try Check.text("a\u{0}b", "name") }
        #expect(throws: RPCError.self) { try Check.text(String(repeating: "x", count: 201), "name") }
        #expect(throws: Never.self) { try Check.text("Robert'); DROP TABLE products;--", "name") }
        #expect(throws: RPCError.self) { try Check.id("1 OR 1=1", "id") }
    }
}

@Suite struct SMTPTests {
    @Test func dataIsDotStuffedAndHeadersCannotBeInjected() {
        let m = EmailMessage(
            from: "shop@x", to: "a@x\r\nBcc: evil@x", subject: "Hi\r\nBcc: evil@x", body: "line\n.hidden\n..two",
            messageID: "n1@bazaar")
        let data = SMTPClient.data(m, date: Date(timeIntervalSince1970: 0))
        #expect(!data.contains("\r\nBcc:"))
        #expect(data.contains("\r\n..hidden\r\n...two\r\n.\r\n"))
        #expect(data.contains("Message-ID: <n1@bazaar>"))
        #expect(data.contains("Date: Thu, 01 Jan 1970 00:00:00 +0000"))
        let utf = SMTPClient.data(
            EmailMessage(from: "a", to: "b", subject: "Bestellung bestätigt", body: "", messageID: "m"))
        #expect(utf.contains("Subject: =?UTF-8?B?"))
    }

    @Test func refusedConnectionsAreTransientErrors() async {
        // Nothing listens on port 1 of loopback.
        do {
            try await SMTPClient(host: "127.0.0.1", port: 1, timeout: .seconds(2))
                .send(EmailMessage(from: "a@x", to: "b@x", subject: "s", body: "b", messageID: "m"))
            Issue.record("sent to a closed port")
        } catch let e as SMTPError {
            #expect(e.isTransient && e.code == 0)
        } catch {
            Issue.record("unexpected \(error)")
        }
    }
}
