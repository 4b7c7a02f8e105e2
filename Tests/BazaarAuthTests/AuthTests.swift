import Testing

@testable import BazaarAuth

@Suite struct AuthTests {
    @Test func tokensRoundTripAndAreBoundToTheirKey() throws {
        let key = try JWTKey.generate(keyID: "a")
        let now = 1_800_000_000.0
        let token = try JWT.issue(
            subject: "u1", issuer: "acc", audience: "shop", lifetime: 60, roles: ["admin"], key: key, now: now)
        let claims = try JWT.verify(token, keys: [key], issuer: "acc", audience: "shop", now: now + 10)
        #expect(claims.subject == "u1" && claims.roles == ["admin"])
        // Verification needs only the public half.
        let pub = try JWTKey(pem: key.publicKeyPEM, keyID: "a")
        #expect(!pub.isPrivate)
        #expect(try JWT.verify(token, keys: [pub], issuer: "acc", audience: "shop", now: now).subject == "u1")
        #expect(throws: JWTError.self) { try JWT.sign([:], key: pub) }
        // Expiry with leeway, and key rotation by kid.
        #expect(throws: JWTError("expired")) {
            try JWT.verify(token, keys: [key], issuer: "acc", audience: "shop", now: now + 91)
        }
        let other = try JWTKey.generate(keyID: "b")
        #expect(throws: JWTError("unknown signing key")) {
            try JWT.verify(token, keys: [other], issuer: nil, audience: nil, now: now)
        }
    }

    /// Issue 15: a key may mint only what it is bound to, and no token lives for ever.
    @Test func keysGrantOnlyTheirRolesAndTokensHaveAMaximumLife() throws {
        let partner = try JWTKey.generate(keyID: "partner").granting(only: ["customer"])
        let now = 1_800_000_000.0
        let customer = try JWT.issue(
            subject: "u1", issuer: "p", audience: "shop", lifetime: 900, roles: ["customer"], key: partner, now: now)
        #expect(try JWT.verify(customer, keys: [partner], issuer: "p", audience: "shop", now: now).subject == "u1")
        let admin = try JWT.issue(
            subject: "u1", issuer: "p", audience: "shop", lifetime: 900, roles: ["admin"], key: partner, now: now)
        #expect(throws: JWTError("the signing key may not grant the role admin")) {
            try JWT.verify(admin, keys: [partner], issuer: "p", audience: "shop", now: now)
        }
        let own = try JWTKey.generate(keyID: "own")
        let forever = try JWT.issue(
            subject: "u1", issuer: "p", audience: "shop", lifetime: 365 * 86400, roles: [], key: own, now: now)
        #expect(throws: JWTError("the token lives longer than 3600 s")) {
            try JWT.verify(forever, keys: [own], issuer: "p", audience: "shop", now: now)
        }
        #expect(
            try JWT.verify(forever, keys: [own], issuer: "p", audience: "shop", maxLifetime: nil, now: now).subject
                == "u1")
        // A key bound to its issuer: its tokens must name it, and cannot pass as the shop's.
        let bound = try JWTKey.generate(keyID: "partner2").issuing(as: "partner.example")
        let theirs = try JWT.issue(
            subject: "u2", issuer: "partner.example", audience: "shop", lifetime: 900, key: bound, now: now)
        #expect(
            try JWT.verify(theirs, keys: [own, bound], issuer: "bazaar", audience: "shop", now: now).subject == "u2")
        let posing = try JWT.issue(
            subject: "u2", issuer: "bazaar", audience: "shop", lifetime: 900, key: bound, now: now)
        #expect(throws: JWTError("wrong issuer")) {
            try JWT.verify(posing, keys: [own, bound], issuer: "bazaar", audience: "shop", now: now)
        }
    }

    @Test func base64urlIsStrict() {
        #expect(JWT.base64url([0xFB, 0xFF]) == "-_8")
        #expect(JWT.base64urlDecode("-_8") == [0xFB, 0xFF])
        #expect(JWT.base64urlDecode("a+b/") == nil)  // standard alphabet is not base64url
        #expect(JWT.base64urlDecode("a b") == nil)
    }

    @Test func passwordsHashAndVerifyAndWeakHashesWantARehash() throws {
        var weak = PasswordHasher()
        weak.memoryKiB = 8192
        weak.iterations = 1
        let old = try weak.hash("pw")
        #expect(PasswordHasher.verify("pw", against: old) && !PasswordHasher.verify("pW", against: old))
        #expect(PasswordHasher().needsRehash(old))
        #expect(!PasswordHasher().needsRehash(try PasswordHasher().hash("pw")))
        #expect(!PasswordHasher.verify("pw", against: "$2b$12$notargon"))
    }
}
