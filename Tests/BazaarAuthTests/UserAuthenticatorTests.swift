import BazaarAuth
import BazaarCore
import ShopAPI
import Testing

/// The IDL-driven user check, without a server: contexts in, decisions out.
@Suite struct UserAuthenticatorTests {
    let key: JWTKey
    let auth: UserAuthenticator

    init() throws {
        key = try JWTKey.generate(keyID: "k")
        auth = UserAuthenticator(
            keys: [key], issuer: "bazaar", audience: "bazaar", trustedForwarders: ["spiffe://bazaar.local/gateway"])
    }

    func head(
        _ method: MethodDescriptor, _ metadata: [(String, String)] = [], peer: String? = "spiffe://bazaar.local/client"
    ) -> ServerContext {
        ServerContext(method: method, metadata: Metadata(metadata), peerIdentity: peer)
    }

    func token(roles: [String] = ["customer"], audience: String = "bazaar") throws -> String {
        try JWT.issue(subject: "u1", issuer: "bazaar", audience: audience, lifetime: 60, roles: roles, key: key)
    }

    /// Runs the interceptor; returns the user the handler saw, or the status it was refused with.
    func run(_ h: ServerContext) async -> Result<UserIdentity?, RPCError> {
        do {
            let seen = SeenUser()
            try await auth.intercept(h) { context in seen.user = context.user }
            return .success(seen.user)
        } catch {
            return .failure(RPCError(error))
        }
    }

    final class SeenUser: @unchecked Sendable { var user: UserIdentity? }

    @Test func authenticatedMethodsNeedAValidBearerToken() async throws {
        let m = Shop_V1_CartService.Method.getCart
        guard case .failure(let none) = await run(head(m)) else {
            Issue.record("no token was accepted")
            return
        }
        #expect(none.code == .unauthenticated)
        let ok = await run(head(m, [("authorization", "Bearer \(try token())")]))
        #expect((try? ok.get())??.subject == "u1")
        for bad in ["Bearer x.y.z", "Basic dTpw", "Bearer \(try token(audience: "other"))"] {
            guard case .failure(let e) = await run(head(m, [("authorization", bad)])) else {
                Issue.record("accepted \(bad)")
                continue
            }
            #expect(e.code == .unauthenticated)
        }
    }

    @Test func rolesFromTheIDLAreEnforced() async throws {
        let m = Shop_V1_CatalogService.Method.createProduct
        guard case .failure(let e) = await run(head(m, [("authorization", "Bearer \(try token())")])) else {
            Issue.record("customer created a product")
            return
        }
        #expect(e.code == .permissionDenied)
        #expect(
            (try? await run(head(m, [("authorization", "Bearer \(try token(roles: ["admin"]))")])).get())??.isAdmin
                == true)
    }

    @Test func forwardedIdentityIsBelievedOnlyFromTheGateway() async throws {
        let m = Shop_V1_CartService.Method.getCart
        let forwarded = [(ForwardedIdentity.subjectKey, "u9"), (ForwardedIdentity.rolesKey, "customer, admin")]
        let viaGateway = await run(head(m, forwarded, peer: "spiffe://bazaar.local/gateway"))
        #expect((try? viaGateway.get())??.subject == "u9")
        #expect((try? viaGateway.get())??.roles == ["customer", "admin"])
        guard case .failure(let e) = await run(head(m, forwarded)) else {
            Issue.record("a client's own claim was believed")
            return
        }
        #expect(e.code == .unauthenticated)
    }

    @Test func publicMethodsRunWithOrWithoutAUser() async throws {
        let m = Shop_V1_CatalogService.Method.listProducts
        guard case .success(nil) = await run(head(m)) else {
            Issue.record("an anonymous public call was refused")
            return
        }
        #expect((try? await run(head(m, [("authorization", "Bearer \(try token())")])).get())??.subject == "u1")
        guard case .failure = await run(head(m, [("authorization", "Bearer garbage")])) else {
            Issue.record("a bad token passed")
            return
        }
    }

    @Test func thumbprintIsStableAndNamesTheKey() throws {
        let pub = try JWTKey(pem: key.publicKeyPEM)
        #expect(pub.thumbprint == key.thumbprint)
        #expect(key.rawPublicKey.count == 32)
        #expect(key.withKeyID("x").keyID == "x")
    }
}

/// Regression: `JWTKey(pem:)` handed OpenSSL a pointer to a temporary array, which a memory BIO
/// reads later; release builds freed it first and every key was "not a PEM key".
@Suite struct PEMLoadingTests {
    @Test func keysLoadFromFreshlyBuiltStringsManyTimes() throws {
        let key = try JWTKey.generate()
        for n in 0..<200 {
            // A new String each time, built piecewise, with other allocations in between.
            let pem = String(key.privateKeyPEM!.map { $0 }) + String(repeating: "\n", count: n % 3)
            _ = [UInt8](repeating: UInt8(n % 256), count: 4096)
            let loaded = try JWTKey(pem: pem)
            #expect(loaded.isPrivate && loaded.thumbprint == key.thumbprint)
            #expect(try JWTKey(pem: String(key.publicKeyPEM.map { $0 })).rawPublicKey == key.rawPublicKey)
        }
        #expect(throws: JWTError.self) {
            try JWTKey(pem: "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
        }
    }
}
