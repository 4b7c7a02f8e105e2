import BazaarCore
import BazaarRedis
import Foundation
import ShopAPI

/// Which page answers which address, for one visit. The pages themselves are in the files of
/// their area (`Pages`, `AccountPages`, `ShoppingPages`, `AdminPages`).
struct Routes: Sendable {
    let app: WebApp
    let visit: Visit

    /// The addresses that take a form `POST`.
    static func takesPost(_ s: [String]) -> Bool {
        switch s.count {
        case 1: ["signin", "signup", "signout", "checkout"].contains(s[0])
        case 2:
            (s[0] == "account" && ["profile", "password"].contains(s[1]))
                || (s[0] == "cart" && ["add", "set", "remove"].contains(s[1]))
                || (s[0] == "admin" && s[1] == "products")
        case 3:
            (s[0] == "orders" && s[2] == "cancel") || (s[0] == "notifications" && s[2] == "read")
                || (s[0] == "admin" && s[1] == "products")
        case 4:
            s[0] == "admin"
                && ((s[1] == "products" && s[3] == "archive")
                    || (s[1] == "orders" && ["status", "cancel"].contains(s[3])))
        default: false
        }
    }

    func answer(_ s: [String], post: Bool) async -> WebResponse {
        do {
            if s.first == "admin" {
                guard let user = visit.user else { return signInFirst() }
                // The services refuse a customer's token too; this keeps the pages themselves
                // (and their forms) from ever being shown.
                guard user.isAdmin else {
                    return Pages.error(403, "The back office is for the shop's staff.", visit: visit)
                }
                return try await AdminPages(app: app, visit: visit).answer(Array(s.dropFirst()), post: post)
            }
            if post { return try await posted(s) }
            return try await page(s)
        } catch let e as FormData.Malformed {
            return Pages.error(400, "The address is malformed: \(e.description).", visit: visit)
        } catch let e as SearchQuery.Invalid {
            return Pages.error(400, e.description, visit: visit)
        } catch let e as FormProblem {
            return Pages.error(400, e.message, visit: visit)
        } catch is RedisError {
            return Pages.error(
                503, "Part of the shop is not answering right now. Please try again in a moment.", visit: visit)
        } catch {
            let e = RPCError(error)
            // The session ended on the way (signed out elsewhere): sign in again.
            if e.code == .unauthenticated { return signInFirst() }
            return Pages.failure(e, visit: visit)
        }
    }

    func page(_ s: [String]) async throws -> WebResponse {
        let catalog = app.catalog
        switch s.count {
        case 0: return try await Pages.home(catalog, visit: visit)
        case 1:
            switch s[0] {
            case "search":
                return try await Pages.search(
                    catalog, try SearchQuery(try FormData(query: visit.request.query)), visit: visit)
            case "signin": return AccountPages(app: app, visit: visit).signInPage()
            case "signup": return AccountPages(app: app, visit: visit).signUpPage()
            case "account": return try await AccountPages(app: app, visit: visit).accountPage()
            case "cart": return try await ShoppingPages(app: app, visit: visit).cartPage()
            case "checkout": return try await ShoppingPages(app: app, visit: visit).checkoutPage()
            case "orders": return try await ShoppingPages(app: app, visit: visit).ordersPage()
            case "notifications": return try await ShoppingPages(app: app, visit: visit).notificationsPage()
            default: break
            }
        case 2:
            switch s[0] {
            case "products": return try await Pages.product(catalog, id: s[1], visit: visit)
            case "categories":
                var query = try SearchQuery(try FormData(query: visit.request.query))
                query.category = s[1]
                return try await Pages.search(catalog, query, visit: visit)
            case "orders": return try await ShoppingPages(app: app, visit: visit).orderPage(s[1])
            default: break
            }
        case 3 where s[0] == "orders" && s[2] == "events":
            return try await ShoppingPages(app: app, visit: visit).orderEvents(s[1])
        default: break
        }
        return Pages.error(404, "There is no page at this address.", visit: visit)
    }

    func posted(_ s: [String]) async throws -> WebResponse {
        let account = AccountPages(app: app, visit: visit)
        let shopping = ShoppingPages(app: app, visit: visit)
        switch s.count {
        case 1:
            switch s[0] {
            case "signin": return try await account.signIn()
            case "signup": return try await account.signUp()
            case "signout": return await account.signOut()
            case "checkout": return try await shopping.checkout()
            default: break
            }
        case 2 where s[0] == "account":
            return s[1] == "profile" ? try await account.updateProfile() : try await account.changePassword()
        case 2 where s[0] == "cart":
            return try await shopping.changeCart(s[1])
        case 3 where s[0] == "orders":
            return try await shopping.cancelOrder(s[1])
        case 3 where s[0] == "notifications":
            return try await shopping.markRead(s[1])
        default: break
        }
        return Pages.error(404, "There is no page at this address.", visit: visit)
    }

    /// The sign-in page, coming back here afterwards.
    func signInFirst() -> WebResponse {
        let r = visit.request
        let back = r.method == "GET" ? r.path + (r.query.isEmpty ? "" : "?" + r.query) : "/"
        return .redirect("/signin" + URLText.query([("next", Visit.nextPath(back))]))
    }
}

/// A form field that is missing or not what it should be: the form is refused with this message.
struct FormProblem: Error {
    let message: String
    init(_ message: String) { self.message = message }
}

extension FormData {
    /// A required text field, trimmed, at most `max` characters.
    func text(_ name: String, _ label: String, max: Int = 200, required: Bool = true) throws(FormProblem) -> String {
        let v = (self[name] ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
        if required, v.isEmpty { throw FormProblem("\(label) is required.") }
        if v.count > max { throw FormProblem("\(label) is longer than \(max) characters.") }
        return v
    }

    /// A whole number field within `range`.
    func integer(_ name: String, _ label: String, _ range: ClosedRange<Int64>) throws(FormProblem) -> Int64 {
        guard let v = Int64((self[name] ?? "").trimmingCharacters(in: .whitespaces)), range.contains(v) else {
            throw FormProblem("\(label) must be a whole number from \(range.lowerBound) to \(range.upperBound).")
        }
        return v
    }
}
