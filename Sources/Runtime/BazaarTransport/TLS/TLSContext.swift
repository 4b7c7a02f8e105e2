import CBazaarOpenSSL

/// An OpenSSL `SSL_CTX` built from a ``TLSConfiguration``: TLS 1.2 at least (1.3 preferred), ALPN
/// `h2` required, and peer verification against the mesh CA. Shared by every connection of a
/// server or a channel.
final class TLSContext: @unchecked Sendable {
    let ctx: OpaquePointer
    let isServer: Bool
    let configuration: TLSConfiguration

    /// OpenSSL frees its global state in an atexit handler by default; a loop thread still in a
    /// handshake when the process exits would then crash. The process's end frees it anyway.
    private static let initOnce: Void = { _ = OPENSSL_init_ssl(UInt64(OPENSSL_INIT_NO_ATEXIT), nil) }()

    init(_ configuration: TLSConfiguration, server: Bool) throws {
        _ = Self.initOnce
        guard let ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method()) else {
            throw TLSError("SSL_CTX_new: \(opensslErrors())")
        }
        self.ctx = ctx
        self.isServer = server
        self.configuration = configuration
        _ = bazaar_ssl_ctx_set_min_proto_version(ctx, TLS1_2_VERSION)
        // Idle connections keep no read/write buffers: 10k idle mesh connections stay cheap.
        _ = SSL_CTX_ctrl(ctx, SSL_CTRL_MODE, Int(SSL_MODE_RELEASE_BUFFERS), nil)
        // 1 << 30 is SSL_OP_NO_RENEGOTIATION, a macro Swift cannot import.
        _ = SSL_CTX_set_options(ctx, 1 << 30)

        if let chain = configuration.certificateChainFile {
            guard SSL_CTX_use_certificate_chain_file(ctx, chain) == 1 else {
                throw TLSError("cannot load certificate chain \(chain): \(opensslErrors())")
            }
            guard let key = configuration.privateKeyFile else {
                throw TLSError("certificate \(chain) has no private key file")
            }
            guard SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) == 1 else {
                throw TLSError("cannot load private key \(key): \(opensslErrors())")
            }
            guard SSL_CTX_check_private_key(ctx) == 1 else {
                throw TLSError("private key \(key) does not match certificate \(chain)")
            }
        } else if server {
            throw TLSError("a TLS server needs a certificate (certificateChainFile)")
        }

        if let roots = configuration.trustRootsFile {
            guard SSL_CTX_load_verify_locations(ctx, roots, nil) == 1 else {
                throw TLSError("cannot load trust roots \(roots): \(opensslErrors())")
            }
        } else if !server || configuration.requireClientCertificate {
            throw TLSError("peer verification needs trust roots (trustRootsFile)")
        }

        if server {
            // No TLS 1.3 session tickets: mesh connections are long-lived, and sending tickets keeps
            // OpenSSL's handshake buffer alive on every idle connection (about 8 KB each).
            _ = SSL_CTX_set_num_tickets(ctx, 0)
            let mode =
                configuration.requireClientCertificate
                ? SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT : SSL_VERIFY_NONE
            SSL_CTX_set_verify(ctx, mode, nil)
            // Pick "h2" from the client's list; an edge server takes "http/1.1" too. Anything
            // else refuses the handshake.
            let allowsHTTP1: UnsafeMutableRawPointer? =
                configuration.allowsHTTP1 ? UnsafeMutableRawPointer(bitPattern: 1) : nil
            SSL_CTX_set_alpn_select_cb(
                ctx,
                { _, out, outlen, inp, inlen, arg in
                    guard let inp else { return SSL_TLSEXT_ERR_ALERT_FATAL }
                    let n = Int(inlen)
                    var http1: Int?
                    var i = 0
                    while i < n {
                        let len = Int(inp[i])
                        guard i + 1 + len <= n else { break }
                        if len == 2 && inp[i + 1] == 0x68 && inp[i + 2] == 0x32 {
                            out?.pointee = UnsafePointer(inp + i + 1)
                            outlen?.pointee = 2
                            return SSL_TLSEXT_ERR_OK
                        }
                        if len == 8, Array(UnsafeBufferPointer(start: inp + i + 1, count: 8)) == Array("http/1.1".utf8)
                        {
                            http1 = i
                        }
                        i += 1 + len
                    }
                    if arg != nil, let h = http1 {
                        out?.pointee = UnsafePointer(inp + h + 1)
                        outlen?.pointee = 8
                        return SSL_TLSEXT_ERR_OK
                    }
                    return arg != nil ? SSL_TLSEXT_ERR_NOACK : SSL_TLSEXT_ERR_ALERT_FATAL
                }, allowsHTTP1)
        } else {
            SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nil)
            let alpn: [UInt8] = [2, 0x68, 0x32]
            _ = SSL_CTX_set_alpn_protos(ctx, alpn, UInt32(alpn.count))
        }
    }

    deinit { SSL_CTX_free(ctx) }
}

/// OpenSSL's error queue as one line (and emptied).
func opensslErrors() -> String {
    var parts: [String] = []
    var buf = [CChar](repeating: 0, count: 256)
    while true {
        let e = ERR_get_error()
        if e == 0 { break }
        ERR_error_string_n(e, &buf, buf.count)
        parts.append(String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
    }
    return parts.isEmpty ? "unknown error" : parts.joined(separator: "; ")
}
