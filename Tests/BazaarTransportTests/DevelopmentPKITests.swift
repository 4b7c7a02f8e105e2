import CBazaarOpenSSL
import Glibc
import Testing

@testable import BazaarTransport

@Suite struct DevelopmentPKITests {
    static func tempDir() -> String {
        var template = Array("/tmp/bazaar-pki-XXXXXX".utf8CString)
        return template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)) }
    }

    static func contents(_ path: String) -> [UInt8] {
        guard let f = fopen(path, "rb") else { return [] }
        defer { fclose(f) }
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = fread(&buf, 1, buf.count, f)
            if n == 0 { return out }
            out += buf[0..<n]
        }
    }

    static func certificate(_ path: String) -> OpaquePointer? {
        guard let bio = BIO_new_file(path, "r") else { return nil }
        defer { BIO_free(bio) }
        return PEM_read_bio_X509(bio, nil, nil, nil)
    }

    @Test func issuesSpiffeIdentitiesSignedByOneCA() throws {
        let dir = Self.tempDir() + "/nested/certs"
        let pki = DevelopmentPKI(directory: dir, trustDomain: "shop.test")
        let written = try pki.issue(services: ["catalog", "orders"])
        #expect(written.count == 6)
        for service in ["catalog", "orders"] {
            let cert = try #require(Self.certificate("\(dir)/\(service).pem"))
            defer { X509_free(cert) }
            #expect(spiffeIdentity(of: cert) == "spiffe://shop.test/\(service)")
            // Signed by the CA in the same folder.
            let ca = try #require(Self.certificate("\(dir)/ca.pem"))
            defer { X509_free(ca) }
            #expect(X509_verify(cert, X509_get0_pubkey(ca)) == 1)
            var st = stat()
            stat("\(dir)/\(service)-key.pem", &st)
            #expect(st.st_mode & 0o777 == 0o600, "keys are private")
        }
        // A second run reuses the CA: new certificates still chain to the same one.
        let caBefore = Self.contents("\(dir)/ca.pem")
        _ = try pki.issue(services: ["cart"])
        #expect(Self.contents("\(dir)/ca.pem") == caBefore && !caBefore.isEmpty)
    }

    @Test func refusesBadServiceNames() {
        let pki = DevelopmentPKI(directory: Self.tempDir())
        #expect(throws: TLSError.self) { try pki.issue(services: ["../etc"]) }
        #expect(throws: TLSError.self) { try pki.issue(services: [""]) }
    }
}
