import CBazaarOpenSSL

/// One TLS session driven through memory BIOs: ciphertext in, plaintext out, and back. It never
/// touches a socket; the connection that owns it moves the bytes.
final class TLSEngine {
    enum ReadResult {
        /// Plaintext was appended (possibly none: the engine wants more ciphertext).
        case ok
        /// The peer sent close_notify.
        case closed
        case failed(String)
    }

    private let ssl: OpaquePointer
    @exclusivity(unchecked) private var rbio: OpaquePointer
    @exclusivity(unchecked) private var wbio: OpaquePointer
    private let context: TLSContext
    @exclusivity(unchecked) private(set) var handshakeComplete = false
    /// The peer's `spiffe://` URI SAN, once the handshake is done.
    @exclusivity(unchecked) private(set) var peerIdentity: String?
    /// The ALPN protocol agreed on (`h2`, `http/1.1`), once the handshake is done.
    @exclusivity(unchecked) private(set) var negotiatedProtocol: String?

    /// - Parameter serverName: client side: the SNI name, and when no SPIFFE ID is expected, the
    ///   DNS name the server certificate must carry. ``TLSConfiguration/serverHostname`` wins over it.
    init(context: TLSContext, serverName: String? = nil) throws {
        guard let ssl = SSL_new(context.ctx), let rbio = BIO_new(BIO_s_mem()), let wbio = BIO_new(BIO_s_mem()) else {
            throw TLSError("SSL_new: \(opensslErrors())")
        }
        self.ssl = ssl
        self.rbio = rbio
        self.wbio = wbio
        self.context = context
        // An empty memory BIO reports "retry", not end of file.
        _ = BIO_ctrl(rbio, BIO_C_SET_BUF_MEM_EOF_RETURN, -1, nil)
        _ = BIO_ctrl(wbio, BIO_C_SET_BUF_MEM_EOF_RETURN, -1, nil)
        SSL_set_bio(ssl, rbio, wbio)
        if context.isServer {
            SSL_set_accept_state(ssl)
        } else {
            let config = context.configuration
            if let host = config.serverHostname ?? serverName {
                let isIP = host.contains(":") || host.allSatisfy { $0.isNumber || $0 == "." }
                if isIP {
                    // SNI never carries an address; the certificate's IP SANs are checked instead.
                    if config.expectedServerIdentity == nil {
                        _ = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host)
                    }
                } else {
                    _ = bazaar_ssl_set_tlsext_host_name(ssl, host)
                    if config.expectedServerIdentity == nil { _ = SSL_set1_host(ssl, host) }
                }
            }
            SSL_set_connect_state(ssl)
        }
    }

    deinit { SSL_free(ssl) }

    /// Client side: produces the ClientHello.
    func startHandshake() {
        _ = SSL_do_handshake(ssl)
    }

    /// Ciphertext from the socket.
    func feed(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        _ = BIO_write(rbio, base, Int32(bytes.count))
    }

    /// Decrypts what it can into `out`. Drives the handshake first.
    /// `scratch` is a buffer the engine may overwrite (the loop's read buffer, already fed).
    func readPlaintext(into out: inout [UInt8], scratch: UnsafeMutableRawBufferPointer) -> ReadResult {
        if !handshakeComplete {
            let rc = SSL_do_handshake(ssl)
            if rc != 1 {
                let err = SSL_get_error(ssl, rc)
                if err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE { return .ok }
                return .failed("TLS handshake failed: \(handshakeFailure(err))")
            }
            if let problem = finishHandshake() { return .failed(problem) }
        }
        while true {
            let n = SSL_read(ssl, scratch.baseAddress, Int32(scratch.count))
            if n > 0 {
                out.append(contentsOf: UnsafeRawBufferPointer(rebasing: scratch[0..<Int(n)]))
                continue
            }
            let err = SSL_get_error(ssl, n)
            switch err {
            case SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE: return .ok
            case SSL_ERROR_ZERO_RETURN: return .closed
            default: return .failed("TLS read failed: \(opensslErrors())")
            }
        }
    }

    /// Encrypts plaintext; the records wait in the write BIO for ``takeCiphertext(into:)``.
    func writePlaintext(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return true }
        var offset = 0
        while offset < bytes.count {
            let n = SSL_write(ssl, base + offset, Int32(min(bytes.count - offset, Int(Int32.max))))
            if n <= 0 { return false }
            offset += Int(n)
        }
        return true
    }

    /// Records to send to the peer.
    /// After the handshake: free what it grew. The memory BIOs keep the capacity of the largest
    /// flight they held (certificate chains), and OpenSSL keeps record buffers; an idle mesh
    /// connection needs neither.
    func trimBuffers() {
        if BIO_ctrl_pending(rbio) == 0, let fresh = BIO_new(BIO_s_mem()) {
            _ = BIO_ctrl(fresh, BIO_C_SET_BUF_MEM_EOF_RETURN, -1, nil)
            SSL_set0_rbio(ssl, fresh)  // frees the old one
            rbio = fresh
        }
        if BIO_ctrl_pending(wbio) == 0, let fresh = BIO_new(BIO_s_mem()) {
            _ = BIO_ctrl(fresh, BIO_C_SET_BUF_MEM_EOF_RETURN, -1, nil)
            SSL_set0_wbio(ssl, fresh)
            wbio = fresh
        }
        _ = SSL_free_buffers(ssl)
    }

    func takeCiphertext(into out: inout [UInt8]) {
        let pending = BIO_ctrl_pending(wbio)
        guard pending > 0 else { return }
        let start = out.count
        out.append(contentsOf: repeatElement(0, count: pending))
        let n = out.withUnsafeMutableBytes { BIO_read(wbio, $0.baseAddress! + start, Int32(pending)) }
        out.removeLast(pending - Int(max(0, n)))
    }

    /// Queues close_notify.
    func shutdown() {
        if handshakeComplete { _ = SSL_shutdown(ssl) }
    }

    private func handshakeFailure(_ err: Int32) -> String {
        let verify = SSL_get_verify_result(ssl)
        if verify != X509_V_OK {
            return String(cString: X509_verify_cert_error_string(verify))
        }
        return err == SSL_ERROR_SSL || err == SSL_ERROR_SYSCALL ? opensslErrors() : "error \(err)"
    }

    /// Checks ALPN and identity once the handshake is done; returns why the peer is refused.
    private func finishHandshake() -> String? {
        handshakeComplete = true
        var proto: UnsafePointer<UInt8>?
        var len: UInt32 = 0
        SSL_get0_alpn_selected(ssl, &proto, &len)
        if let proto, len > 0 {
            negotiatedProtocol = String(decoding: UnsafeBufferPointer(start: proto, count: Int(len)), as: UTF8.self)
        }
        let isH2 = len == 2 && proto?[0] == 0x68 && proto?[1] == 0x32
        guard isH2 || (context.isServer && context.configuration.allowsHTTP1) else {
            return "peer did not negotiate ALPN h2"
        }
        if let cert = SSL_get1_peer_certificate(ssl) {
            peerIdentity = spiffeIdentity(of: cert)
            X509_free(cert)
        }
        if !context.isServer, let expected = context.configuration.expectedServerIdentity, peerIdentity != expected {
            return "server identity \(peerIdentity ?? "(none)") is not the expected \(expected)"
        }
        return nil
    }
}

/// The first `spiffe://` URI SAN of a certificate.
func spiffeIdentity(of cert: OpaquePointer) -> String? {
    guard let raw = X509_get_ext_d2i(cert, NID_subject_alt_name, nil, nil) else { return nil }
    let names = OpaquePointer(raw)
    defer { GENERAL_NAMES_free(names) }
    for i in 0..<OPENSSL_sk_num(names) {
        guard let p = OPENSSL_sk_value(names, i) else { continue }
        let name = p.assumingMemoryBound(to: GENERAL_NAME.self).pointee
        guard name.type == GEN_URI, let uri = name.d.uniformResourceIdentifier else { continue }
        guard let data = ASN1_STRING_get0_data(uri) else { continue }
        let s = String(decoding: UnsafeBufferPointer(start: data, count: Int(ASN1_STRING_length(uri))), as: UTF8.self)
        if s.hasPrefix("spiffe://") { return s }
    }
    return nil
}
