import BazaarCore
import Foundation
import ShopAPI

/// Signing up, in and out, and the account page (profile, password).
struct AccountPages: Sendable {
    let app: WebApp
    let visit: Visit

    var form: FormData { visit.form }

    // MARK: sign in

    func signInPage(email: String = "", problem: String? = nil, status: Int = 200) -> WebResponse {
        let next = Visit.nextPath(try? FormData(query: visit.request.query)["next"] ?? form["next"])
        return .page(
            status,
            Pages.layout(
                title: "Sign in",
                """
                <section class="narrow">
                <h1>Sign in</h1>
                \(Pages.problem(problem))
                <form method="post" action="/signin" class="stack">\(visit.csrfField)
                <input type="hidden" name="next" value="\(next)">
                <label for="email">Email</label>
                <input id="email" name="email" type="email" autocomplete="username" value="\(email)" required>
                <label for="password">Password</label>
                <input id="password" name="password" type="password" autocomplete="current-password" required>
                <button type="submit">Sign in</button>
                </form>
                <p>New here? <a href="/signup">Create an account</a>.</p>
                </section>
                """, visit: visit), cache: "no-store")
    }

    func signIn() async throws -> WebResponse {
        let email = try form.text("email", "Email", max: 320)
        let password = form["password"] ?? ""
        guard !password.isEmpty else { return signInPage(email: email, problem: "Enter your password.", status: 400) }
        let session: Shop_V1_Session
        let issued = Date().timeIntervalSince1970
        do {
            session = try await app.accounts.login(
                Shop_V1_LoginRequest(email: email, password: password), options: visit.request.callOptions())
        } catch let e as RPCError where e.code == .unauthenticated || e.code == .invalidArgument {
            return signInPage(email: email, problem: "The email or the password is wrong.", status: 401)
        } catch let e as RPCError where e.code == .resourceExhausted {
            return signInPage(email: email, problem: Pages.sentence(e.message), status: 429)
        }
        visit.setCookie(
            try await app.sessions.begin(session, issued: issued, request: visit.request, replacing: visit.session))
        return .redirect(Visit.nextPath(form["next"]))
    }

    // MARK: sign up

    func signUpPage(name: String = "", email: String = "", problem: String? = nil, status: Int = 200) -> WebResponse {
        .page(
            status,
            Pages.layout(
                title: "Create an account",
                """
                <section class="narrow">
                <h1>Create an account</h1>
                \(Pages.problem(problem))
                <form method="post" action="/signup" class="stack">\(visit.csrfField)
                <label for="name">Your name</label>
                <input id="name" name="name" autocomplete="name" maxlength="100" value="\(name)" required>
                <label for="email">Email</label>
                <input id="email" name="email" type="email" autocomplete="email" value="\(email)" required>
                <label for="password">Password <span class="hint">(at least 8 characters)</span></label>
                <input id="password" name="password" type="password" autocomplete="new-password" minlength="8" required>
                <button type="submit">Create account</button>
                </form>
                <p>Have an account? <a href="/signin">Sign in</a>.</p>
                </section>
                """, visit: visit), cache: "no-store")
    }

    func signUp() async throws -> WebResponse {
        let name = try form.text("name", "Your name", max: 100)
        let email = try form.text("email", "Email", max: 320)
        let password = form["password"] ?? ""
        guard password.count >= 8 else {
            return signUpPage(
                name: name, email: email, problem: "Choose a password of at least 8 characters.", status: 400)
        }
        do {
            _ = try await app.accounts.register(
                Shop_V1_RegisterRequest(email: email, password: password, displayName: name),
                options: visit.request.callOptions())
        } catch let e as RPCError where e.code == .alreadyExists {
            return signUpPage(
                name: name, email: email, problem: "An account with this email exists: sign in instead.", status: 409)
        } catch let e as RPCError where e.code == .invalidArgument {
            return signUpPage(name: name, email: email, problem: Pages.sentence(e.message), status: 400)
        }
        let issued = Date().timeIntervalSince1970
        let session = try await app.accounts.login(
            Shop_V1_LoginRequest(email: email, password: password), options: visit.request.callOptions())
        visit.setCookie(
            try await app.sessions.begin(session, issued: issued, request: visit.request, replacing: visit.session))
        return .redirect("/")
    }

    func signOut() async -> WebResponse {
        visit.setCookie(await app.sessions.end(visit.request, visit.session))
        return .redirect("/")
    }

    // MARK: the account

    func accountPage(notice: String? = nil, problem: String? = nil, status: Int = 200) async throws -> WebResponse {
        guard visit.user != nil else { return Routes(app: app, visit: visit).signInFirst() }
        let me = try await app.accounts.getMe(Shop_V1_GetMeRequest(), options: visit.options)
        let since = me.createTime.map { Pages.date($0) } ?? ""
        let changed = (try? FormData(query: visit.request.query))?["changed"] != nil
        let notice = notice ?? (changed ? "Your password was changed." : nil)
        return .page(
            status,
            Pages.layout(
                title: "Your account",
                """
                <h1>Your account</h1>
                \(Pages.notice(notice))\(Pages.problem(problem))
                <section class="panel" aria-labelledby="profile">
                <h2 id="profile">Profile</h2>
                <p>Email: <strong>\(me.email)</strong>. Customer since \(since).</p>
                <form method="post" action="/account/profile" class="stack">\(visit.csrfField)
                <label for="name">Your name</label>
                <input id="name" name="name" autocomplete="name" maxlength="100" value="\(me.displayName)" required>
                <button type="submit">Save</button>
                </form>
                </section>
                <section class="panel" aria-labelledby="pw">
                <h2 id="pw">Change password</h2>
                <form method="post" action="/account/password" class="stack">\(visit.csrfField)
                <label for="current">Current password</label>
                <input id="current" name="current" type="password" autocomplete="current-password" required>
                <label for="new">New password <span class="hint">(at least 8 characters)</span></label>
                <input id="new" name="new" type="password" autocomplete="new-password" minlength="8" required>
                <button type="submit">Change password</button>
                </form>
                <p class="hint">Changing it signs you out everywhere else.</p>
                </section>
                """, visit: visit), cache: "no-store")
    }

    func updateProfile() async throws -> WebResponse {
        guard visit.user != nil else { return Routes(app: app, visit: visit).signInFirst() }
        let name = try form.text("name", "Your name", max: 100)
        _ = try await app.accounts.updateMe(Shop_V1_UpdateMeRequest(displayName: name), options: visit.options)
        return .redirect("/account")
    }

    func changePassword() async throws -> WebResponse {
        guard let session = visit.user else { return Routes(app: app, visit: visit).signInFirst() }
        let current = form["current"] ?? ""
        let new = form["new"] ?? ""
        guard new.count >= 8 else {
            return try await accountPage(problem: "Choose a new password of at least 8 characters.", status: 400)
        }
        do {
            _ = try await app.accounts.changePassword(
                Shop_V1_ChangePasswordRequest(currentPassword: current, newPassword: new), options: visit.options)
        } catch let e as RPCError where e.code == .permissionDenied {
            return try await accountPage(problem: "The current password is wrong.", status: 400)
        } catch let e as RPCError where e.code == .invalidArgument {
            return try await accountPage(problem: Pages.sentence(e.message), status: 400)
        }
        // Changing the password ends every session, this one's tokens included: sign in again
        // with the new one, under a new cookie, so this browser stays signed in and a copy of the
        // old cookie (the reason to change a password) is worth nothing.
        let issued = Date().timeIntervalSince1970
        let fresh = try await app.accounts.login(
            Shop_V1_LoginRequest(email: session.email, password: new), options: visit.request.callOptions())
        visit.setCookie(try await app.sessions.begin(fresh, issued: issued, request: visit.request))
        return .redirect("/account?changed=1")
    }
}
