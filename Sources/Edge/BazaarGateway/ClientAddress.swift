import BazaarCore
import Glibc

/// An IPv4 or IPv6 network in CIDR notation (`10.0.0.0/8`, `fd00::/8`, or one address).
public struct IPNetwork: Sendable, Equatable, CustomStringConvertible {
    /// The network's address bytes (4 or 16), host bits cleared.
    let bytes: [UInt8]
    let prefixLength: Int

    /// Parses `address/prefix` or a bare address (a network of one); `nil` if it is neither.
    public init?(_ text: String) {
        let parts = text.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        guard let address = IPNetwork.parseAddress(String(parts[0])) else { return nil }
        let bits = address.count * 8
        var prefix = bits
        if parts.count == 2 {
            guard let p = Int(parts[1]), (0...bits).contains(p), parts[1].allSatisfy(\.isNumber) else { return nil }
            prefix = p
        }
        bytes = IPNetwork.masked(address, prefix)
        prefixLength = prefix
    }

    /// Whether `address` (text, without port) lies in this network; an unparsable address does not.
    public func contains(_ address: String) -> Bool {
        IPNetwork.parseAddress(address).map(contains(bytes:)) ?? false
    }

    func contains(bytes address: [UInt8]) -> Bool {
        address.count == bytes.count && IPNetwork.masked(address, prefixLength) == bytes
    }

    public var description: String {
        var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        let family = bytes.count == 4 ? AF_INET : AF_INET6
        _ = bytes.withUnsafeBytes { inet_ntop(family, $0.baseAddress, &text, socklen_t(text.count)) }
        let address = text.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        return "\(address)/\(prefixLength)"
    }

    static func parseAddress(_ text: String) -> [UInt8]? {
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 { return withUnsafeBytes(of: &v4) { Array($0) } }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, text, &v6) == 1 { return withUnsafeBytes(of: &v6) { Array($0) } }
        return nil
    }

    static func masked(_ address: [UInt8], _ prefix: Int) -> [UInt8] {
        address.enumerated().map { i, byte in
            let keep = max(0, min(8, prefix - i * 8))
            return keep == 8 ? byte : byte & ~(UInt8(0xFF) >> keep)
        }
    }
}

/// Who the client is when the gateway sits behind proxies (an Ingress controller, a load
/// balancer): the rate limiter must count each client, not the proxy's one address.
public enum ClientAddress {
    /// The client address for a request from `peer` carrying `X-Forwarded-For`.
    ///
    /// Only proxies in `trustedProxies` are believed: walking the header from the right (the
    /// entry the nearest proxy added), trusted addresses are skipped and the first other one is
    /// the client. A peer that is not a trusted proxy is the client itself, whatever the header
    /// says, so a client cannot choose its own bucket by sending the header.
    public static func resolve(peer: String, forwardedFor: String?, trustedProxies: [IPNetwork]) -> String {
        guard let header = forwardedFor, !trustedProxies.isEmpty,
            let peerBytes = IPNetwork.parseAddress(peer), isTrusted(peerBytes, trustedProxies)
        else { return peer }
        var client = peer
        for entry in header.split(separator: ",").reversed() {
            let address = String(entry).trimming(" \t")
            guard let bytes = IPNetwork.parseAddress(address) else { return client }  // garbage: stop at what we know
            client = address
            if !isTrusted(bytes, trustedProxies) { return address }
        }
        return client
    }

    static func isTrusted(_ address: [UInt8], _ networks: [IPNetwork]) -> Bool {
        networks.contains { $0.contains(bytes: address) }
    }
}
