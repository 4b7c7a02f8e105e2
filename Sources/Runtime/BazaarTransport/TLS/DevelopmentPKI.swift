import CBazaarOpenSSL
import Glibc

/// Makes a development mesh PKI with OpenSSL's API (no shelling out): a CA, and for each service
/// an EC P-256 key and a certificate whose URI SAN is `spiffe://<trust-domain>/<service>`.
/// This is what `bazaar certs` runs; production clusters issue the same shape with cert-manager.
public struct DevelopmentPKI: Sendable {
    public var directory: String
    public var trustDomain: String
    /// Validity of new certificates.
    public var days: Int
    /// Extra DNS names or IP addresses put in every service certificate (besides the service name,
    /// `localhost`, 127.0.0.1 and ::1), so that gRPC clients that check host names also accept them.
    public var hosts: [String]

    public init(directory: String, trustDomain: String = "bazaar.local", days: Int = 365, hosts: [String] = []) {
        self.directory = directory
        self.trustDomain = trustDomain
        self.days = days
        self.hosts = hosts
    }

    public var caCertificatePath: String { "\(directory)/ca.pem" }
    public var caKeyPath: String { "\(directory)/ca-key.pem" }

    /// Creates the CA when the folder has none, then a key and certificate for each service.
    /// Returns the files written.
    @discardableResult
    public func issue(services: [String]) throws -> [String] {
        try makeDirectories(directory)
        var written: [String] = []
        let (caCert, caKey): (OpaquePointer, OpaquePointer)
        if access(caCertificatePath, F_OK) == 0 {
            (caCert, caKey) = try (readCertificate(caCertificatePath), readKey(caKeyPath))
        } else {
            let key = try newKey()
            let cert = try makeCertificate(
                commonName: "Bazaar development CA (\(trustDomain))", key: key, issuer: nil,
                extensions: [
                    (NID_basic_constraints, "critical,CA:TRUE"),
                    (NID_key_usage, "critical,keyCertSign,cRLSign"),
                    (NID_subject_key_identifier, "hash"),
                ])
            try write(key: key, to: caKeyPath)
            try write(certificate: cert, to: caCertificatePath)
            written += [caCertificatePath, caKeyPath]
            (caCert, caKey) = (cert, key)
        }
        defer {
            X509_free(caCert)
            EVP_PKEY_free(caKey)
        }
        for service in services {
            guard !service.isEmpty,
                service.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == "." })
            else {
                throw TLSError("bad service name '\(service)': use letters, digits, '-', '_' and '.'")
            }
            let key = try newKey()
            defer { EVP_PKEY_free(key) }
            var sans = [
                "URI:spiffe://\(trustDomain)/\(service)", "DNS:\(service)", "DNS:localhost", "IP:127.0.0.1", "IP:::1",
            ]
            for h in hosts {
                sans.append(h.allSatisfy { $0.isNumber || $0 == "." || $0 == ":" } ? "IP:\(h)" : "DNS:\(h)")
            }
            let cert = try makeCertificate(
                commonName: service, key: key, issuer: (caCert, caKey),
                extensions: [
                    (NID_basic_constraints, "critical,CA:FALSE"),
                    (NID_key_usage, "critical,digitalSignature,keyEncipherment"),
                    (NID_ext_key_usage, "serverAuth,clientAuth"),
                    (NID_subject_key_identifier, "hash"),
                    (NID_authority_key_identifier, "keyid:always"),
                    (NID_subject_alt_name, sans.joined(separator: ",")),
                ])
            defer { X509_free(cert) }
            let certPath = "\(directory)/\(service).pem"
            let keyPath = "\(directory)/\(service)-key.pem"
            try write(key: key, to: keyPath)
            try write(certificate: cert, to: certPath)
            written += [certPath, keyPath]
        }
        return written
    }

    /// `mkdir -p`.
    private func makeDirectories(_ path: String) throws {
        var prefix = path.hasPrefix("/") ? "/" : ""
        for part in path.split(separator: "/") {
            prefix += part + "/"
            if mkdir(prefix, 0o755) != 0 && errno != EEXIST {
                throw TLSError("cannot create \(prefix): errno \(errno)")
            }
        }
    }

    private func newKey() throws -> OpaquePointer {
        guard let key = bazaar_ec_keygen("P-256") else {
            throw TLSError("EC key generation failed: \(opensslErrors())")
        }
        return key
    }

    private func makeCertificate(
        commonName: String, key: OpaquePointer, issuer: (cert: OpaquePointer, key: OpaquePointer)?,
        extensions: [(Int32, String)]
    ) throws -> OpaquePointer {
        guard let x = X509_new() else { throw TLSError("X509_new failed") }
        X509_set_version(x, 2)
        var serial = [UInt8](repeating: 0, count: 8)
        _ = RAND_bytes(&serial, 8)
        let serialNumber = Int64(bitPattern: serial.reduce(0) { $0 << 8 | UInt64($1) } & 0x7fff_ffff_ffff_ffff)
        ASN1_INTEGER_set_int64(X509_get_serialNumber(x), serialNumber)
        X509_gmtime_adj(X509_getm_notBefore(x), -300)
        X509_gmtime_adj(X509_getm_notAfter(x), days * 86_400)
        X509_set_pubkey(x, key)
        let name = X509_get_subject_name(x)
        X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, "Bazaar", -1, -1, 0)
        X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, commonName, -1, -1, 0)
        X509_set_issuer_name(x, issuer.map { X509_get_subject_name($0.cert) } ?? name)
        var ctx = X509V3_CTX()
        X509V3_set_ctx(&ctx, issuer?.cert ?? x, x, nil, nil, 0)
        for (nid, value) in extensions {
            guard let ext = X509V3_EXT_conf_nid(nil, &ctx, nid, value) else {
                X509_free(x)
                throw TLSError("bad certificate extension \(value): \(opensslErrors())")
            }
            X509_add_ext(x, ext, -1)
            X509_EXTENSION_free(ext)
        }
        guard X509_sign(x, issuer?.key ?? key, EVP_sha256()) > 0 else {
            X509_free(x)
            throw TLSError("signing failed: \(opensslErrors())")
        }
        return x
    }

    private func write(key: OpaquePointer, to path: String) throws {
        unlink(path)
        // Created 0600 before any secret is written.
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        guard fd >= 0 else { throw TLSError("cannot write \(path): errno \(errno)") }
        close(fd)
        guard let bio = BIO_new_file(path, "w") else { throw TLSError("cannot write \(path)") }
        defer { BIO_free(bio) }
        guard PEM_write_bio_PrivateKey(bio, key, nil, nil, 0, nil, nil) == 1 else {
            throw TLSError("cannot write \(path)")
        }
    }

    private func write(certificate: OpaquePointer, to path: String) throws {
        guard let bio = BIO_new_file(path, "w") else { throw TLSError("cannot write \(path)") }
        defer { BIO_free(bio) }
        guard PEM_write_bio_X509(bio, certificate) == 1 else { throw TLSError("cannot write \(path)") }
    }

    private func readCertificate(_ path: String) throws -> OpaquePointer {
        guard let bio = BIO_new_file(path, "r") else { throw TLSError("cannot read \(path)") }
        defer { BIO_free(bio) }
        guard let x = PEM_read_bio_X509(bio, nil, nil, nil) else { throw TLSError("\(path) holds no certificate") }
        return x
    }

    private func readKey(_ path: String) throws -> OpaquePointer {
        guard let bio = BIO_new_file(path, "r") else {
            throw TLSError("cannot read \(path) (the CA key is needed to issue more certificates)")
        }
        defer { BIO_free(bio) }
        guard let k = PEM_read_bio_PrivateKey(bio, nil, nil, nil) else {
            throw TLSError("\(path) holds no private key")
        }
        return k
    }
}
