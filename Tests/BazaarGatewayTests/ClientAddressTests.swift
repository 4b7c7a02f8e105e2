import Testing

@testable import BazaarGateway

@Suite struct ClientAddressTests {
    let ingress = [IPNetwork("10.0.0.0/8")!, IPNetwork("fd00::/8")!]

    @Test func parsesNetworksAndRefusesGarbage() {
        #expect(IPNetwork("10.1.2.3/8")?.description == "10.0.0.0/8")
        #expect(IPNetwork("192.168.1.7")?.description == "192.168.1.7/32")
        #expect(IPNetwork("fd12:3456::1/16")?.description == "fd12::/16")
        #expect(IPNetwork("10.0.0.0/33") == nil)
        #expect(IPNetwork("10.0.0.0/-1") == nil)
        #expect(IPNetwork("10.0.0.0/8/8") == nil)
        #expect(IPNetwork("example.com/8") == nil)
        #expect(IPNetwork("") == nil)
        let net = IPNetwork("172.16.0.0/12")!
        #expect(
            net.contains("172.31.255.255") && !net.contains("172.32.0.0") && !net.contains("::1")
                && !net.contains("nope"))
        #expect(IPNetwork("0.0.0.0/0")!.contains("8.8.8.8"))
    }

    @Test func aPeerThatIsNoProxyIsTheClientWhateverItClaims() {
        #expect(
            ClientAddress.resolve(peer: "203.0.113.9", forwardedFor: "198.51.100.1", trustedProxies: ingress)
                == "203.0.113.9")
        #expect(ClientAddress.resolve(peer: "10.0.0.5", forwardedFor: "198.51.100.1", trustedProxies: []) == "10.0.0.5")
        #expect(ClientAddress.resolve(peer: "10.0.0.5", forwardedFor: nil, trustedProxies: ingress) == "10.0.0.5")
    }

    @Test func theRightmostUntrustedEntryIsTheClient() {
        // The client forged the first entry; the ingress appended the address it saw.
        #expect(
            ClientAddress.resolve(peer: "10.0.0.5", forwardedFor: "1.2.3.4, 198.51.100.7", trustedProxies: ingress)
                == "198.51.100.7")
        // A second trusted proxy hop is skipped.
        #expect(
            ClientAddress.resolve(peer: "10.0.0.5", forwardedFor: "198.51.100.7,10.9.9.9", trustedProxies: ingress)
                == "198.51.100.7")
        #expect(
            ClientAddress.resolve(peer: "fd00::5", forwardedFor: " 2001:db8::1 ", trustedProxies: ingress)
                == "2001:db8::1")
        // Only proxies all the way: the leftmost is the best there is.
        #expect(
            ClientAddress.resolve(peer: "10.0.0.5", forwardedFor: "10.1.1.1, 10.2.2.2", trustedProxies: ingress)
                == "10.1.1.1")
        // Garbage stops the walk at the last address known to be real.
        #expect(
            ClientAddress.resolve(peer: "10.0.0.5", forwardedFor: "198.51.100.7, not-an-ip", trustedProxies: ingress)
                == "10.0.0.5")
        #expect(ClientAddress.resolve(peer: "10.0.0.5", forwardedFor: "", trustedProxies: ingress) == "10.0.0.5")
    }
}
