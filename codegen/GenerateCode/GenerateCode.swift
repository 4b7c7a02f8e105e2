import Foundation
import PackagePlugin

/// `swift package --allow-writing-to-package-directory generate-code [--check]`
///
/// Reads `proto/bazaar-codegen.json` and runs `bazaar-codegen` once per entry,
/// writing each entry's Swift sources into its Swift target and its protobuf-c sources into its C
/// target. Imports of Bazaar's own protos (`bazaar/options/...`, `google/api/...`), of protobuf's
/// well-known types and of gRPC's protos resolve to Bazaar's modules by themselves.
///
/// A command plugin rather than a build-tool plugin: the C half of generated code is a target of its
/// own whose public headers SwiftPM must find under `include/` before it plans the build, which a
/// build-tool plugin's outputs cannot provide; and generated code is committed in Bazaar, reviewed
/// like any other change, and checked for drift with `--check`.
@main
struct GenerateCode: CommandPlugin {
    struct Config: Decodable {
        struct Module: Decodable {
            /// The Swift target that receives `NAME.pb.swift` files.
            var target: String
            /// The C target that receives `NAME.pb-c.c` and `include/NAME.pb-c.h` (default: "C" + target).
            var cTarget: String?
            /// Where imports are searched (relative to the package, or absolute). Default: ["proto"].
            var protoPaths: [String]?
            /// Files to compile, relative to the first proto path that has them: a `.proto` file, a
            /// directory (every `.proto` below it), or `DIR/*.proto` (that directory only).
            var files: [String]
        }

        var modules: [Module]
        /// Where protobuf's well-known types (`google/protobuf/*.proto`) are found. Default: /usr/include
        /// (Debian's libprotobuf-dev).
        var wellKnownTypes: String?
    }

    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    static let help = """
        USAGE: swift package --allow-writing-to-package-directory generate-code [--check]

        Generates Swift and protobuf-c sources from the .proto files that proto/bazaar-codegen.json
        lists, into the targets it names. --check writes nothing and fails if any
        generated file is out of date.

        proto/bazaar-codegen.json (proto paths are relative to the package root):
          { "modules": [ { "target": "HelloAPI", "cTarget": "CHelloAPI",
                           "protoPaths": ["proto"], "files": ["hello/v1"] } ] }
        """

    func performCommand(context: PluginContext, arguments: [String]) async throws {
        if arguments.contains("--help") || arguments.contains("-h") {
            print(Self.help)
            return
        }
        let unknown = arguments.filter { $0 != "--check" }
        guard unknown.isEmpty else {
            throw Failure(description: "generate-code: unknown argument \(unknown[0]) (see --help)")
        }
        let check = arguments.contains("--check")
        // (The Path-based API: the URL-based one needs tools version 6.1, and this package keeps 6.0.)
        let root = context.package.directory.string
        let configPath = root + "/proto/bazaar-codegen.json"
        guard let data = FileManager.default.contents(atPath: configPath) else {
            throw Failure(description: "generate-code: \(configPath) not found; see --help for its format")
        }
        let config: Config
        do {
            config = try JSONDecoder().decode(Config.self, from: data)
        } catch {
            throw Failure(description: "generate-code: proto/bazaar-codegen.json: \(error)")
        }
        let codegen = try context.tool(named: "bazaar-codegen").url
        let bazaar = try bazaarPackage(context)
        let bazaarProto = bazaar.directory.string + "/proto"
        let wkt = config.wellKnownTypes ?? "/usr/include"
        func absolute(_ p: String) -> String { p.hasPrefix("/") ? p : root + "/" + p }

        // Which Swift module holds which files: Bazaar's modules first, the package's after.
        var mappings: [(String, String)] = [
            ("google/protobuf/", "WellKnownTypes"), ("grpc/", "GRPCProtos"),
            ("bazaar/", "BazaarOptions"), ("google/api/", "BazaarOptions"),
        ]
        var plans: [(Config.Module, [String], [String])] = []
        for module in config.modules {
            let paths = (module.protoPaths ?? ["proto"]).map(absolute)
            var files: [String] = []
            for entry in module.files {
                let found = try expand(entry, in: paths)
                files += found
                let prefix =
                    entry.hasSuffix(".proto") && !entry.contains("*")
                    ? entry
                    : entry.hasSuffix("/*.proto")
                        ? String(entry.dropLast("*.proto".count))
                        : entry.hasSuffix("/") ? entry : entry + "/"
                mappings.removeAll { $0.0 == prefix }
                mappings.append((prefix, module.target))
            }
            plans.append((module, paths, files))
        }
        var stale = false
        for (module, paths, files) in plans {
            let swiftDir = try directory(of: module.target, in: context)
            let cName = module.cTarget ?? "C" + module.target
            let cDir = try directory(of: cName, in: context)
            var args: [String] = []
            if check { args.append("--check") }
            for (prefix, name) in mappings { args += ["--swift_module", "\(prefix)=\(name)"] }
            for p in paths { args += ["-I", p] }
            if !paths.contains(bazaarProto) { args += ["-I", bazaarProto] }
            if !paths.contains(wkt) { args += ["-I", wkt] }
            args += ["--swift_out", swiftDir, "--c_out", cDir, "--c_module", cName]
            args += files
            let process = Process()
            process.executableURL = codegen
            process.arguments = args
            try process.run()
            process.waitUntilExit()
            if process.terminationStatus != 0 {
                if check && process.terminationStatus == 1 {
                    stale = true
                    continue
                }
                throw Failure(
                    description:
                        "generate-code: bazaar-codegen failed for \(module.target) (exit \(process.terminationStatus))")
            }
            if !check { print("generate-code: \(module.target), \(cName): \(files.count) file(s)") }
        }
        if stale { throw Failure(description: "generate-code: generated code is out of date; run it without --check") }
        if check { print("generate-code: generated code is up to date") }
    }

    /// Bazaar itself (when the plugin runs in this repository) or the dependency that provides the plugin.
    func bazaarPackage(_ context: PluginContext) throws -> Package {
        func provides(_ p: Package) -> Bool { p.products.contains { $0.name == "BazaarWire" } }
        if provides(context.package) { return context.package }
        var queue = context.package.dependencies.map(\.package)
        while let p = queue.first {
            queue.removeFirst()
            if provides(p) { return p }
            queue += p.dependencies.map(\.package)
        }
        throw Failure(description: "generate-code: this package does not depend on Bazaar")
    }

    /// Where a target's sources go. A target with no sources yet (before the first generation)
    /// is not among the package's targets: then its conventional folder, `Sources/<target>`.
    func directory(of target: String, in context: PluginContext) throws -> String {
        if let t = context.package.targets.first(where: { $0.name == target }) { return t.directory.string }
        let conventional = context.package.directory.string + "/Sources/" + target
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: conventional, isDirectory: &isDirectory), isDirectory.boolValue
        else {
            throw Failure(
                description: "generate-code: proto/bazaar-codegen.json names target '\(target)', which Package.swift "
                    + "does not declare (or create the folder Sources/\(target) for it)")
        }
        return conventional
    }

    /// The `.proto` files an entry names, relative to the proto path that holds them, sorted.
    func expand(_ entry: String, in paths: [String]) throws -> [String] {
        let fm = FileManager.default
        for base in paths {
            if entry.hasSuffix("/*.proto") {
                let dir = String(entry.dropLast("/*.proto".count))
                guard let names = try? fm.contentsOfDirectory(atPath: base + "/" + dir) else { continue }
                let found = names.filter { $0.hasSuffix(".proto") }.sorted().map { dir + "/" + $0 }
                if !found.isEmpty { return found }
                continue
            }
            var isDir: ObjCBool = false
            guard fm.fileExists(atPath: base + "/" + entry, isDirectory: &isDir) else { continue }
            if !isDir.boolValue { return [entry] }
            let below = fm.enumerator(atPath: base + "/" + entry)?.compactMap { $0 as? String } ?? []
            let prefix = entry.hasSuffix("/") ? entry : entry + "/"
            return below.filter { $0.hasSuffix(".proto") }.map { prefix + $0 }.sorted()
        }
        throw Failure(description: "generate-code: '\(entry)' is in none of the proto paths \(paths)")
    }
}
