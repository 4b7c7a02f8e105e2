@testable import BazaarAuth
import Testing

@Suite struct AuthTests {
    @Test func tokensRoundTripAndAreBoundToTheirKey() throws {
        let key = try JWTKey.generate(keyID: "a")
        let now = 1_800_000_000.0
        let token = try JWT.issue(subject: "u1", issuer: "acc", audience: "shop", lifetime: 60, roles: ["admin"], key: key, now: now)
        let claims = try JWT.verify(token, keys: [key], issuer: "acc", audience: "shop", now: now + 10)
        #expect(claims.subject == "u1" && claims.roles == ["admin"])
        // Verification needs only the public half.
        let pub = try JWTKey(pem: key.publicKeyPEM, keyID: "a")
        #expect(!pub.isPrivate)
        #expect(try JWT.verify(token, keys: [pub], issuer: "acc", audience: "shop", now: now).subject == "u1")
        #expect(throws: JWTError.self) { try JWT.sign([:], key: pub) }
        // Expiry with leeway, and key rotation by kid.
        #expect(throws: JWTError("expired")) { try JWT.verify(token, keys: [key], issuer: "acc", audience: "shop", now: now + 91) }
        let other = try JWTKey.generate(keyID: "b")
        #expect(throws: JWTError("unknown signing key")) { try JWT.verify(token, keys: [other], issuer: nil, audience: nil, now: now) }
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
