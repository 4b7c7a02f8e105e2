import Foundation

/// All the errors of one compile, sorted by position.
public struct CompileErrors: Error, CustomStringConvertible {
    public var diagnostics: [Diagnostic]
    public var description: String { diagnostics.map(\.description).joined(separator: "\n") }
}

/// Loads `.proto` files and their imports from the proto paths, parses and resolves them.
public struct Compiler {
    public var protoPaths: [String]

    public init(protoPaths: [String]) {
        self.protoPaths = protoPaths.isEmpty ? ["."] : protoPaths
    }

    /// Compiles the named files (relative to a proto path, or paths inside one) and everything they
    /// import. Returns every loaded file, dependencies first; the requested ones are marked.
    public func compile(_ files: [String]) throws(CompileErrors) -> CompiledSet {
        var loader = Loader(protoPaths: protoPaths)
        var requested: [String] = []
        for f in files {
            let virtual = loader.virtualPath(f)
            requested.append(virtual)
            loader.load(virtual, importedFrom: nil, stack: [])
        }
        if !loader.errors.isEmpty { throw CompileErrors(diagnostics: loader.errors.sorted(by: Self.order)) }
        var resolver = Resolver(asts: loader.order.map { loader.asts[$0]! })
        let models = resolver.run()
        let errors =
            resolver.errors.isEmpty
            ? MethodRules.validate(models) + FieldRules.validate(models) : resolver.errors
        if !errors.isEmpty { throw CompileErrors(diagnostics: Self.unique(errors)) }
        return CompiledSet(files: models, requested: requested)
    }

    /// Compiles one in-memory file (tests); imports still come from the proto paths.
    public func compile(source: String, path: String) throws(CompileErrors) -> CompiledSet {
        var loader = Loader(protoPaths: protoPaths)
        loader.sources[path] = source
        loader.load(path, importedFrom: nil, stack: [])
        if !loader.errors.isEmpty { throw CompileErrors(diagnostics: loader.errors.sorted(by: Self.order)) }
        var resolver = Resolver(asts: loader.order.map { loader.asts[$0]! })
        let models = resolver.run()
        let errors =
            resolver.errors.isEmpty
            ? MethodRules.validate(models) + FieldRules.validate(models) : resolver.errors
        if !errors.isEmpty { throw CompileErrors(diagnostics: Self.unique(errors)) }
        return CompiledSet(files: models, requested: [path])
    }

    static func order(_ a: Diagnostic, _ b: Diagnostic) -> Bool {
        (a.location.file, a.location.line, a.location.column) < (b.location.file, b.location.line, b.location.column)
    }

    static func unique(_ d: [Diagnostic]) -> [Diagnostic] {
        var seen = Set<Diagnostic>()
        return d.filter { seen.insert($0).inserted }.sorted(by: order)
    }
}

/// The result of a compile.
public struct CompiledSet: @unchecked Sendable {
    /// Every file, each after the files it imports.
    public let files: [FileModel]
    /// The files named on the command line (virtual paths).
    public let requested: [String]

    public func file(_ path: String) -> FileModel? { files.first { $0.path == path } }
    public var requestedFiles: [FileModel] { requested.compactMap(file) }
}

private struct Loader {
    let protoPaths: [String]
    var asts: [String: FileAST] = [:]
    var order: [String] = []
    var errors: [Diagnostic] = []
    var sources: [String: String] = [:]
    private var failed: Set<String> = []

    init(protoPaths: [String]) { self.protoPaths = protoPaths }

    /// Maps a file system path inside a proto path to its import path.
    func virtualPath(_ f: String) -> String {
        for root in protoPaths {
            let r = root.hasSuffix("/") ? root : root + "/"
            if f.hasPrefix(r) { return String(f.dropFirst(r.count)) }
            if root == ".", f.hasPrefix("./") { return String(f.dropFirst(2)) }
        }
        return f
    }

    mutating func load(_ path: String, importedFrom: SourceLocation?, stack: [String]) {
        if asts[path] != nil || failed.contains(path) { return }
        if let i = stack.firstIndex(of: path) {
            let cycle = (stack[i...] + [path]).joined(separator: " -> ")
            errors.append(Diagnostic(importedFrom!, "import cycle: \(cycle)"))
            return
        }
        var text = sources[path]
        if text == nil {
            for root in protoPaths {
                let full = root == "." ? path : (root as NSString).appendingPathComponent(path)
                if let data = FileManager.default.contents(atPath: full) {
                    guard let s = String(data: data, encoding: .utf8) else {
                        errors.append(
                            Diagnostic(SourceLocation(file: path, line: 1, column: 1), "file is not valid UTF-8"))
                        failed.insert(path)
                        return
                    }
                    text = s
                    break
                }
            }
        }
        guard let text else {
            let loc = importedFrom ?? SourceLocation(file: path, line: 1, column: 1)
            errors.append(Diagnostic(loc, "file '\(path)' not found (searched: \(protoPaths.joined(separator: ", ")))"))
            failed.insert(path)
            return
        }
        let ast: FileAST
        do {
            var parser = try Parser(path: path, text: text)
            ast = try parser.parseFile()
        } catch {
            errors.append(error)
            failed.insert(path)
            return
        }
        for imp in ast.imports {
            load(imp.path, importedFrom: imp.location, stack: stack + [path])
        }
        if asts[path] == nil, !failed.contains(path) {
            asts[path] = ast
            order.append(path)
        }
    }
}
