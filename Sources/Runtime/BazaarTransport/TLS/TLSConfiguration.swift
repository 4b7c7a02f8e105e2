/// How a server or client does TLS. Mesh traffic is mutual TLS with SPIFFE identities; plaintext
/// (h2c) is used only when a configuration says so explicitly.
public struct TLSConfiguration: Sendable {
    /// PEM certificate chain presented to the peer (leaf first).
    public var certificateChainFile: String?
    /// PEM private key of the leaf certificate.
    public var privateKeyFile: String?
    /// PEM CA bundle the peer's chain must verify against (the mesh CA).
    public var trustRootsFile: String?
    /// Server: require and verify a client certificate (mutual TLS).
    public var requireClientCertificate: Bool
    /// Client: the SPIFFE ID the server's certificate must carry, e.g. `spiffe://bazaar.local/catalog`.
    public var expectedServerIdentity: String?
    /// Client: the name sent as SNI and, when no SPIFFE ID is expected, checked against the
    /// certificate's DNS names.
    public var serverHostname: String?
    /// Server: also accept clients that offer only `http/1.1` (or no ALPN at all): the edge
    /// gateway's front door. Mesh servers require `h2`.
    public var allowsHTTP1: Bool = false

    public init(
        certificateChainFile: String? = nil, privateKeyFile: String? = nil, trustRootsFile: String? = nil,
        requireClientCertificate: Bool = true, expectedServerIdentity: String? = nil, serverHostname: String? = nil
    ) {
        self.certificateChainFile = certificateChainFile
        self.privateKeyFile = privateKeyFile
        self.trustRootsFile = trustRootsFile
        self.requireClientCertificate = requireClientCertificate
        self.expectedServerIdentity = expectedServerIdentity
        self.serverHostname = serverHostname
    }

    /// The usual mesh files of one service in a folder made by `bazaar certs`:
    /// `<dir>/ca.pem`, `<dir>/<service>.pem`, `<dir>/<service>-key.pem`.
    /// A public-facing server: this certificate, no client certificate asked for, `h2` or
    /// `http/1.1` by ALPN.
    public static func edge(certificateChainFile: String, privateKeyFile: String) -> TLSConfiguration {
        var c = TLSConfiguration(
            certificateChainFile: certificateChainFile, privateKeyFile: privateKeyFile, requireClientCertificate: false)
        c.allowsHTTP1 = true
        return c
    }

    public static func mesh(directory: String, service: String) -> TLSConfiguration {
        TLSConfiguration(
            certificateChainFile: "\(directory)/\(service).pem", privateKeyFile: "\(directory)/\(service)-key.pem",
            trustRootsFile: "\(directory)/ca.pem")
    }
}

/// A TLS setup problem (unreadable files, a key that does not match) or a failed handshake.
public struct TLSError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public var description: String { message }
    init(_ message: String) { self.message = message }
}
