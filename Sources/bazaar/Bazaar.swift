import ArgumentParser
import BazaarAuth
import BazaarTransport
import Foundation

/// The Bazaar command line.
@main
struct Bazaar: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bazaar",
        abstract: "Bazaar: run and operate the shop's services.",
        subcommands: [
            Serve.self, GatewayCommand.self, CallCommand.self, Seed.self, ShopCommand.self, Load.self, Certs.self,
            JWTCommand.self, PasswordCommand.self,
        ])
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
        guard !trustDomain.isEmpty, !trustDomain.contains("/") else {
            throw ValidationError("--trust-domain must be a bare domain, e.g. bazaar.local")
        }
    }

    func run() throws {
        let pki = DevelopmentPKI(directory: dir, trustDomain: trustDomain, days: days, hosts: hosts)
        let written = try pki.issue(services: services)
        for f in written { print("wrote \(f)") }
        if written.isEmpty { print("nothing to do: the CA exists and no service was named") }
    }
}

/// `bazaar jwt`: the access-token keys and tokens the accounts service issues and the gateway checks.
struct JWTCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "jwt",
        abstract: "Make Ed25519 signing keys, and sign or verify access tokens (JWS alg EdDSA).",
        subcommands: [Keygen.self, Sign.self, Verify.self])

    struct Keygen: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write a new Ed25519 key pair: <dir>/jwt-key.pem (0600) and <dir>/jwt-pub.pem.")

        @Option(help: "Folder for the files.")
        var dir: String = ".run/jwt"

        func run() throws {
            let key = try JWTKey.generate()
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            let priv = "\(dir)/jwt-key.pem"
            let pub = "\(dir)/jwt-pub.pem"
            FileManager.default.createFile(
                atPath: priv, contents: Data((key.privateKeyPEM ?? "").utf8), attributes: [.posixPermissions: 0o600])
            try Data(key.publicKeyPEM.utf8).write(to: URL(fileURLWithPath: pub))
            print("wrote \(priv)\nwrote \(pub)")
        }
    }

    struct Sign: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print a signed access token.")

        @Option(help: "PEM private key (from `bazaar jwt keygen`).")
        var key: String
        @Option(help: "Subject (the user id).")
        var sub: String
        @Option(help: "Issuer (what the services and the gateway require: BAZAAR_JWT_ISSUER, default bazaar).")
        var iss: String = "bazaar"
        @Option(help: "Audience.")
        var aud: String = "bazaar"
        @Option(help: "Lifetime in seconds (negative for a token that has already expired, for tests).")
        var ttl: Int = 900
        @Option(name: .customLong("role"), help: "A role (repeatable).")
        var roles: [String] = []
        @Option(
            help:
                "Key id (`kid`) to put in the header (default: the key's thumbprint, the id the gateway and the services give a key listed without one)."
        )
        var kid: String?

        func run() throws {
            let pem = try JWTKey(pem: String(contentsOfFile: key, encoding: .utf8))
            let k = pem.withKeyID(kid ?? pem.thumbprint)
            print(try JWT.issue(subject: sub, issuer: iss, audience: aud, lifetime: ttl, roles: roles, key: k))
        }
    }

    struct Verify: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Verify an access token; print its claims as JSON, or why it is refused (exit 1).")

        @Option(help: "PEM public (or private) key.")
        var key: String
        @Option(help: "Required issuer.")
        var iss: String = "bazaar"
        @Option(help: "Required audience.")
        var aud: String = "bazaar"
        @Argument(help: "The token.")
        var token: String

        func run() throws {
            let k = try JWTKey(pem: String(contentsOfFile: key, encoding: .utf8))
            do {
                let claims = try JWT.verify(token, keys: [k], issuer: iss, audience: aud)
                let json = try JSONSerialization.data(withJSONObject: claims.values, options: [.sortedKeys])
                print(String(decoding: json, as: UTF8.self))
            } catch let e as JWTError {
                FileHandle.standardError.write(Data("refused: \(e)\n".utf8))
                throw ExitCode(1)
            }
        }
    }
}

/// `bazaar password`: argon2id hashes, as the accounts service stores them.
struct PasswordCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "password",
        abstract:
            "Hash a password with argon2id, or check one against a hash. The password is read from standard input.",
        subcommands: [Hash.self, Check.self])

    static func readPassword() -> String {
        (readLine(strippingNewline: true) ?? "")
    }

    struct Hash: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the argon2id hash of the password on standard input.")
        func run() throws { print(try PasswordHasher().hash(PasswordCommand.readPassword())) }
    }

    struct Check: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Exit 0 when the password on standard input matches the hash, 1 otherwise.")
        @Argument(help: "An encoded argon2id hash ($argon2id$v=19$...).")
        var hash: String
        func run() throws {
            guard PasswordHasher.verify(PasswordCommand.readPassword(), against: hash) else { throw ExitCode(1) }
            print("match")
        }
    }
}
