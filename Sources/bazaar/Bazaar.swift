import ArgumentParser
import BazaarTransport

/// The Bazaar command line.
@main
struct Bazaar: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bazaar",
        abstract: "Bazaar: run and operate the shop's services.",
        subcommands: [Certs.self])
}

/// `bazaar certs`: a development mesh PKI.
struct Certs: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Create a development CA and per-service mesh certificates (SPIFFE URI SANs).",
        discussion: """
            Writes <dir>/ca.pem and <dir>/ca-key.pem once (later runs reuse that CA), and for each service <dir>/<service>.pem and <dir>/<service>-key.pem (keys are mode 0600). Each certificate carries URI:spiffe://<trust-domain>/<service>, DNS:<service>, DNS:localhost, 127.0.0.1 and ::1, and serves for both server and client authentication.

            Example: bazaar certs --dir .run/certs catalog accounts cart orders notifications gateway
            """)

    @Option(help: "Folder for the files.")
    var dir: String = ".run/certs"

    @Option(name: .customLong("trust-domain"), help: "SPIFFE trust domain.")
    var trustDomain: String = "bazaar.local"

    @Option(help: "Validity of new certificates, in days.")
    var days: Int = 365

    @Option(name: .customLong("host"), help: "Extra DNS name or IP for every certificate (repeatable).")
    var hosts: [String] = []

    @Argument(help: "Service names to issue certificates for.")
    var services: [String] = []

    mutating func validate() throws {
        guard days > 0 else { throw ValidationError("--days must be positive") }
        guard !trustDomain.isEmpty, !trustDomain.contains("/") else { throw ValidationError("--trust-domain must be a bare domain, e.g. bazaar.local") }
    }

    func run() throws {
        let pki = DevelopmentPKI(directory: dir, trustDomain: trustDomain, days: days, hosts: hosts)
        let written = try pki.issue(services: services)
        for f in written { print("wrote \(f)") }
        if written.isEmpty { print("nothing to do: the CA exists and no service was named") }
    }
}
