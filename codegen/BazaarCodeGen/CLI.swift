import Foundation

/// `bazaar-codegen`: the command line of the IDL compiler.
public enum CodeGenCLI {
    public static let help = """
        USAGE: bazaar-codegen [options] FILE.proto...

        Compiles .proto files (and everything they import) and writes the requested outputs.
        Only the files named on the command line are emitted; imports are only read.

        OPTIONS:
          -I, --proto_path DIR       Where imports are searched for (repeatable; default ".").
          --c_out DIR                Write protobuf-c structs and descriptors (NAME.pb-c.h/.c).
                                     Headers go to DIR/include/, sources to DIR/.
          --swift_out DIR            Write Swift messages and service code (NAME.pb.swift).
          --swift_module PREFIX=MOD  Swift module that holds files whose path starts with PREFIX
                                     (repeatable; e.g. google/protobuf/=WellKnownTypes). The C layer
                                     of module MOD is the Clang module CMOD.
          --c_module NAME            Write DIR/include/module.modulemap for --c_out naming this module.
          --descriptor_set_out FILE  Write a google.protobuf.FileDescriptorSet of the named files
                                     and their imports.
          --check                    Write nothing; exit 1 if any output would change (drift check).
          --describe                 Print each service's methods: kind, HTTP bindings, auth,
                                     deadline and retry safety, as the IDL declares them.
          --against DIR              Write nothing; compare the files with an older version of
                                     them under DIR (every .proto there; imports from DIR and the
                                     -I paths after the first) and list the changes that break
                                     clients: removed or renumbered fields, changed types, removed
                                     methods or services, changed HTTP bindings, weakened field
                                     rules. Exit 1 if there is one. With no FILE, every .proto
                                     under the first -I path is compared.
          -h, --help                 Show this help.

        EXAMPLES:
          bazaar-codegen -I proto --swift_out Sources/Generated/ShopAPI --c_out Sources/Generated/CShopAPI shop/v1/catalog.proto
          bazaar-codegen -I /usr/include --descriptor_set_out wkt.pb google/protobuf/any.proto
          bazaar-codegen -I proto -I /usr/include --against /tmp/v1.2.0/proto
        """

    public static func run(_ args: [String]) -> Int32 {
        var options = Options()
        var i = 0
        func value(_ flag: String) -> String? {
            if i + 1 < args.count {
                i += 1
                return args[i]
            }
            FileHandle.standardError.write(Data("bazaar-codegen: \(flag) needs a value\n".utf8))
            return nil
        }
        while i < args.count {
            let a = args[i]
            var flag = a
            var inline: String?
            if a.hasPrefix("--"), let eq = a.firstIndex(of: "=") {
                flag = String(a[..<eq])
                inline = String(a[a.index(after: eq)...])
            } else if a.hasPrefix("-I"), a.count > 2 {
                flag = "-I"
                inline = String(a.dropFirst(2))
            }
            func take() -> String? { inline ?? value(flag) }
            switch flag {
            case "-h", "--help":
                print(help)
                return 0
            case "-I", "--proto_path":
                guard let v = take() else { return 2 }
                options.protoPaths.append(v)
            case "--c_out":
                guard let v = take() else { return 2 }
                options.cOut = v
            case "--swift_out":
                guard let v = take() else { return 2 }
                options.swiftOut = v
            case "--c_module":
                guard let v = take() else { return 2 }
                options.cModule = v
            case "--descriptor_set_out":
                guard let v = take() else { return 2 }
                options.descriptorSetOut = v
            case "--swift_module":
                guard let v = take() else { return 2 }
                guard let eq = v.firstIndex(of: "=") else {
                    FileHandle.standardError.write(
                        Data("bazaar-codegen: --swift_module needs PREFIX=MODULE, got '\(v)'\n".utf8))
                    return 2
                }
                options.swiftModules.append((String(v[..<eq]), String(v[v.index(after: eq)...])))
            case "--check": options.check = true
            case "--describe": options.describe = true
            case "--against":
                guard let v = take() else { return 2 }
                options.against = v
            default:
                if a.hasPrefix("-") {
                    FileHandle.standardError.write(Data("bazaar-codegen: unknown option '\(a)' (see --help)\n".utf8))
                    return 2
                }
                options.files.append(a)
            }
            i += 1
        }
        if let against = options.against { return apiCheck(options, against: against) }
        if options.files.isEmpty {
            FileHandle.standardError.write(Data("bazaar-codegen: no input files (see --help)\n".utf8))
            return 2
        }
        do {
            if options.describe {
                let set = try Compiler(protoPaths: options.protoPaths).compile(options.files)
                print(Describe.text(set.requestedFiles), terminator: "")
                return 0
            }
            let outputs = try Generator(options: options).generate()
            return try write(outputs, check: options.check)
        } catch let e as CompileErrors {
            FileHandle.standardError.write(Data((e.description + "\n").utf8))
            return 1
        } catch {
            FileHandle.standardError.write(Data("bazaar-codegen: \(error)\n".utf8))
            return 1
        }
    }

    /// `--against`: the breaking changes from the files under `old` to the current ones.
    static func apiCheck(_ options: Options, against old: String) -> Int32 {
        func fail(_ message: String) -> Int32 {
            FileHandle.standardError.write(Data("bazaar-codegen: \(message)\n".utf8))
            return 2
        }
        guard let root = options.protoPaths.first else {
            return fail("--against needs -I with the current files' root")
        }
        let includes = Array(options.protoPaths.dropFirst())
        guard let oldFiles = protoFiles(under: old) else { return fail("--against \(old): not a readable directory") }
        let newFiles = options.files.isEmpty ? (protoFiles(under: root) ?? []) : options.files
        do {
            let before = try Compiler(protoPaths: [old] + includes).compile(oldFiles).requestedFiles
            let after = try Compiler(protoPaths: options.protoPaths).compile(newFiles).requestedFiles
            let changes = APICheck.compare(old: before, new: after)
            for c in changes { print(c) }
            let breaking = changes.filter { !$0.isWarning }.count
            if breaking > 0 {
                print("api-check: \(breaking) breaking change(s) against \(old)")
                return 1
            }
            print("api-check: no breaking change in \(before.count) file(s) against \(old)")
            return 0
        } catch let e as CompileErrors {
            FileHandle.standardError.write(Data((e.description + "\n").utf8))
            return 1
        } catch {
            return fail("\(error)")
        }
    }

    /// Every `.proto` under a directory, relative to it, sorted.
    static func protoFiles(under dir: String) -> [String]? {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: dir, isDirectory: &isDirectory), isDirectory.boolValue,
            let e = FileManager.default.enumerator(atPath: dir)
        else { return nil }
        return e.compactMap { $0 as? String }.filter { $0.hasSuffix(".proto") }.sorted()
    }

    static func write(_ outputs: [OutputFile], check: Bool) throws -> Int32 {
        var changed: [String] = []
        for out in outputs {
            let existing = FileManager.default.contents(atPath: out.path)
            if existing == out.contents { continue }
            changed.append(out.path)
            if !check {
                let dir = (out.path as NSString).deletingLastPathComponent
                if !dir.isEmpty {
                    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
                }
                try out.contents.write(to: URL(fileURLWithPath: out.path))
            }
        }
        if check {
            for c in changed { FileHandle.standardError.write(Data("bazaar-codegen: out of date: \(c)\n".utf8)) }
            return changed.isEmpty ? 0 : 1
        }
        return 0
    }
}

/// What to generate.
public struct Options {
    public var protoPaths: [String] = []
    public var files: [String] = []
    public var cOut: String?
    public var swiftOut: String?
    public var cModule: String?
    public var swiftModules: [(prefix: String, module: String)] = []
    public var descriptorSetOut: String?
    public var check = false
    public var describe = false
    /// `--against DIR`: compare with an older version instead of generating.
    public var against: String?
    public init() {}
}

public struct OutputFile: Equatable {
    public var path: String
    public var contents: Data
}

/// Runs the compiler and the emitters the options ask for.
public struct Generator {
    public var options: Options
    public init(options: Options) { self.options = options }

    public func generate() throws -> [OutputFile] {
        let set = try Compiler(protoPaths: options.protoPaths).compile(options.files)
        var out: [OutputFile] = []
        if let dir = options.descriptorSetOut {
            out.append(OutputFile(path: dir, contents: Data(DescriptorWriter.fileDescriptorSet(set.files))))
        }
        if let dir = options.swiftOut {
            for file in set.requestedFiles {
                let own = SwiftEmitter.module(for: file.path, in: options.swiftModules)
                let e = SwiftEmitter(file: file, modules: options.swiftModules, ownModule: own)
                out.append(OutputFile(path: dir + "/" + e.outputPath, contents: Data(e.emit().utf8)))
            }
        }
        if let dir = options.cOut {
            var headers: [String] = []
            for file in set.requestedFiles {
                let c = CEmitter(file: file)
                out.append(OutputFile(path: dir + "/include/" + c.headerPath, contents: Data(c.emitHeader().utf8)))
                out.append(OutputFile(path: dir + "/" + c.sourcePath, contents: Data(c.emitSource().utf8)))
                headers.append(c.headerPath)
            }
            if let module = options.cModule {
                var map = "// Generated by bazaar-codegen. DO NOT EDIT.\nmodule \(module) {\n"
                for h in headers { map += "    header \"\(h)\"\n" }
                map += "    export *\n}\n"
                out.append(OutputFile(path: dir + "/include/module.modulemap", contents: Data(map.utf8)))
            }
        }
        return out
    }
}
