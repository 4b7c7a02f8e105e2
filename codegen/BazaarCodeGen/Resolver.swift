/// Turns syntax trees into the resolved model: binds names with protobuf's scoping rules,
/// checks every rule protoc checks that matters to us, and reports each problem with its position.
struct Resolver {
    private enum Symbol {
        case message(MessageModel)
        case enumeration(EnumModel)
        case service(ServiceModel)
        case package
        case extensionField(FieldModel)
        case field
        case enumValue
        case method
        case oneof
    }

    private let asts: [FileAST]
    private var symbols: [String: (symbol: Symbol, file: String)] = [:]
    private var visible: [String: Set<String>] = [:]
    private(set) var errors: [Diagnostic] = []

    // Pending work between phases.
    private var pendingMessages: [(MessageAST, MessageModel)] = []
    private var pendingEnums: [(EnumAST, EnumModel)] = []
    private var pendingServices: [(ServiceAST, ServiceModel)] = []
    private var pendingExtensions: [(FieldAST, FieldModel, String, SourceLocation, scope: String, FileModel)] = []
    private var pendingMapFields: [(FieldAST, MessageModel, MessageModel)] = []
    private var fieldASTs: [ObjectIdentifier: FieldAST] = [:]

    init(asts: [FileAST]) { self.asts = asts }

    private mutating func error(_ loc: SourceLocation, _ msg: String) { errors.append(Diagnostic(loc, msg)) }

    mutating func run() -> [FileModel] {
        var files: [FileModel] = []
        var byPath: [String: FileModel] = [:]
        for ast in asts {
            let file = FileModel(path: ast.path, package: ast.package ?? "", syntax: ast.syntax)
            for (i, imp) in ast.imports.enumerated() {
                if let dep = byPath[imp.path] { file.dependencies.append(dep) }
                if imp.kind == .public { file.publicDependencyIndices.append(i) }
                if imp.kind == .weak { file.weakDependencyIndices.append(i) }
            }
            // Visible files: self, direct imports, and public imports of those, transitively.
            var vis: Set<String> = [ast.path]
            func addPublic(_ f: FileModel) {
                for idx in f.publicDependencyIndices where idx < f.dependencies.count {
                    let d = f.dependencies[idx]
                    if vis.insert(d.path).inserted { addPublic(d) }
                }
            }
            for dep in file.dependencies {
                vis.insert(dep.path)
                addPublic(dep)
            }
            visible[ast.path] = vis
            byPath[ast.path] = file
            files.append(file)
            declare(ast, file)
        }
        for (ast, m) in pendingMessages { resolveFields(ast, m) }
        for (f, entry, owner) in pendingMapFields { resolveMapEntry(f, entry, owner) }
        for ext in pendingExtensions { resolveExtension(ext) }
        for (ast, s) in pendingServices { resolveService(ast, s) }
        // Options last: custom options are extensions that may live in any loaded file.
        for (i, ast) in asts.enumerated() { resolveAllOptions(ast, files[i]) }
        for (ast, m) in pendingMessages { validate(ast, m) }
        for (ast, e) in pendingEnums { validate(ast, e) }
        return files
    }

    // MARK: phase 1: declare every name

    private mutating func define(_ name: String, _ symbol: Symbol, _ file: FileModel, _ loc: SourceLocation) -> Bool {
        if let existing = symbols[name] {
            if case .package = existing.symbol, case .package = symbol { return true }
            // Two fields with one name are reported by `validate` with a clearer message.
            if case .field = existing.symbol, case .field = symbol { return false }
            let shortName = name.split(separator: ".").last.map(String.init) ?? name
            let scope = name.count > shortName.count ? String(name.dropLast(shortName.count + 1)) : ""
            let whereText = existing.file == file.path ? "" : " in '\(existing.file)'"
            if case .enumValue = symbol {
                error(
                    loc,
                    "'\(shortName)' is already defined in '\(scope.isEmpty ? "(root)" : scope)'\(whereText); enum values are siblings of their enum, not members of it"
                )
            } else {
                error(loc, "'\(name)' is already defined\(whereText)")
            }
            return false
        }
        symbols[name] = (symbol, file.path)
        return true
    }

    private mutating func declare(_ ast: FileAST, _ file: FileModel) {
        if !file.package.isEmpty {
            var prefix = ""
            for part in file.package.split(separator: ".") {
                prefix = prefix.isEmpty ? String(part) : prefix + "." + part
                _ = define(prefix, .package, file, SourceLocation(file: ast.path, line: 1, column: 1))
            }
        }
        let scope = file.package
        for m in ast.messages { file.messages.append(declareMessage(m, file: file, parent: nil, scope: scope)) }
        for e in ast.enums { file.enums.append(declareEnum(e, file: file, parent: nil, scope: scope)) }
        for s in ast.services {
            let full = qualify(scope, s.name)
            let model = ServiceModel(name: s.name, fullName: full, file: file, comments: s.comments)
            _ = define(full, .service(model), file, s.location)
            for m in s.methods { _ = define(full + "." + m.name, .method, file, m.location) }
            file.services.append(model)
            pendingServices.append((s, model))
        }
        for ext in ast.extends {
            for f in ext.fields {
                let model = declareExtension(f, ext, scope: scope, file: file)
                file.extensions.append(model)
            }
        }
    }

    private func qualify(_ scope: String, _ name: String) -> String { scope.isEmpty ? name : scope + "." + name }

    private mutating func declareExtension(_ f: FieldAST, _ ext: ExtendAST, scope: String, file: FileModel)
        -> FieldModel
    {
        let full = qualify(scope, f.name)
        let label: FieldModel.Label = f.label == .repeated ? .repeated : (f.label == .required ? .required : .optional)
        let model = FieldModel(
            name: f.name, number: Int(clamping: f.number), label: label, type: .scalar(.int32),
            jsonName: Self.jsonName(f.name), hasExplicitJSONName: false, isProto3Optional: false,
            comments: f.comments, location: f.location, fullName: full)
        _ = define(full, .extensionField(model), file, f.location)
        pendingExtensions.append((f, model, ext.extendee, ext.location, scope, file))
        return model
    }

    private mutating func declareMessage(_ ast: MessageAST, file: FileModel, parent: MessageModel?, scope: String)
        -> MessageModel
    {
        let full = qualify(scope, ast.name)
        let m = MessageModel(
            name: ast.name, fullName: full, file: file, parent: parent, comments: ast.comments, location: ast.location)
        _ = define(full, .message(m), file, ast.location)
        // Nested messages and synthesized map entries, in source order.
        var order = ast.nestedOrder
        if order.isEmpty && !ast.messages.isEmpty { order = ast.messages.indices.map { .message($0) } }
        for ref in order {
            switch ref {
            case .message(let i):
                m.messages.append(declareMessage(ast.messages[i], file: file, parent: m, scope: full))
            case .mapField(let i):
                let f = ast.fields[i]
                let entryName = Self.mapEntryName(f.name)
                let entry = MessageModel(
                    name: entryName, fullName: full + "." + entryName, file: file, parent: m,
                    comments: Comments(), location: f.location)
                entry.isMapEntry = true
                _ = define(entry.fullName, .message(entry), file, f.location)
                m.messages.append(entry)
                pendingMapFields.append((f, entry, m))
            }
        }
        for e in ast.enums { m.enums.append(declareEnum(e, file: file, parent: m, scope: full)) }
        for ext in ast.extends {
            for f in ext.fields { m.extensions.append(declareExtension(f, ext, scope: full, file: file)) }
        }
        for o in ast.oneofs { _ = define(full + "." + o.name, .oneof, file, o.location) }
        pendingMessages.append((ast, m))
        return m
    }

    private mutating func declareEnum(_ ast: EnumAST, file: FileModel, parent: MessageModel?, scope: String)
        -> EnumModel
    {
        let full = qualify(scope, ast.name)
        let e = EnumModel(
            name: ast.name, fullName: full, file: file, parent: parent, comments: ast.comments, location: ast.location)
        _ = define(full, .enumeration(e), file, ast.location)
        for v in ast.values {
            // Enum values are siblings of the enum (C++ scoping).
            _ = define(qualify(scope, v.name), .enumValue, file, v.location)
        }
        pendingEnums.append((ast, e))
        return e
    }

    /// protoc names a map field's entry type `FieldNameEntry`.
    static func mapEntryName(_ field: String) -> String { CNames.toCamel(field) + "Entry" }

    /// protoc's default JSON name: drop underscores, capitalise the letter after each.
    static func jsonName(_ name: String) -> String {
        var out = ""
        var upper = false
        for c in name {
            if c == "_" {
                upper = true
                continue
            }
            out.append(upper ? Character(c.uppercased()) : c)
            upper = false
        }
        return out
    }

    // MARK: name lookup

    private func lookup(_ name: String, scope: String, from file: String, wantType: Bool = true) -> Symbol? {
        let vis = visible[file] ?? [file]
        func find(_ full: String) -> Symbol? {
            guard let entry = symbols[full] else { return nil }
            if case .package = entry.symbol { return entry.symbol }
            guard vis.contains(entry.file) else { return nil }
            if wantType {
                switch entry.symbol {
                case .message, .enumeration, .package, .extensionField: return entry.symbol
                default: return nil
                }
            }
            return entry.symbol
        }
        if name.hasPrefix(".") { return find(String(name.dropFirst())) }
        var parts = scope.isEmpty ? [] : scope.split(separator: ".").map(String.init)
        while true {
            let candidate = (parts + [name]).joined(separator: ".")
            if let s = find(candidate) {
                if case .package = s, !name.contains(".") {} else { return s }
            }
            if parts.isEmpty { return nil }
            parts.removeLast()
        }
    }

    /// Whether a name exists but is not visible from `file` (to say "import it").
    private func hiddenDefinition(_ name: String, scope: String, from file: String) -> String? {
        let bare = name.hasPrefix(".") ? String(name.dropFirst()) : name
        var parts = scope.split(separator: ".").map(String.init)
        while true {
            let candidate = (parts + [bare]).joined(separator: ".")
            if let e = symbols[candidate], !(visible[file] ?? []).contains(e.file) { return e.file }
            if parts.isEmpty || name.hasPrefix(".") { return nil }
            parts.removeLast()
        }
    }

    private mutating func resolveType(_ name: String, scope: String, file: FileModel, loc: SourceLocation) -> FieldType?
    {
        if let s = ScalarType(rawValue: name) { return .scalar(s) }
        switch lookup(name, scope: scope, from: file.path) {
        case .message(let m): return .message(m)
        case .enumeration(let e): return .enumeration(e)
        case .some:
            error(loc, "'\(name)' is not a message or enum type")
        case .none:
            if let other = hiddenDefinition(name, scope: scope, from: file.path) {
                error(loc, "type '\(name)' is defined in '\(other)', which is not imported")
            } else {
                error(loc, "unknown type '\(name)'")
            }
        }
        return nil
    }

    // MARK: phase 2: fields, map entries, extensions, methods

    private mutating func resolveFields(_ ast: MessageAST, _ m: MessageModel) {
        let file = m.file
        for o in ast.oneofs { m.oneofs.append(OneofModel(name: o.name, isSynthetic: false, comments: o.comments)) }
        var synthetic: [OneofModel] = []
        for f in ast.fields {
            if f.label == .required && file.isProto3 {
                error(f.location, "required fields are not allowed in proto3")
            }
            if f.label == .none && !file.isProto3 && f.oneofIndex == nil && f.mapKey == nil {
                error(f.location, "field '\(f.name)' needs a label: 'optional', 'required' or 'repeated' (proto2)")
            }
            let label: FieldModel.Label =
                f.label == .repeated ? .repeated : (f.label == .required ? .required : .optional)
            let isProto3Optional = file.isProto3 && f.label == .optional
            var jsonName = Self.jsonName(f.name)
            var explicitJSON = false
            for opt in f.options where opt.simpleName == "json_name" {
                if let s = opt.value.stringValue {
                    jsonName = s
                    explicitJSON = true
                } else {
                    error(opt.location, "json_name must be a string")
                }
            }
            let model = FieldModel(
                name: f.name, number: Int(clamping: f.number), label: label, type: .scalar(.int32),
                jsonName: jsonName, hasExplicitJSONName: explicitJSON, isProto3Optional: isProto3Optional,
                comments: f.comments, location: f.location, fullName: m.fullName + "." + f.name)
            model.containingMessage = m
            _ = define(model.fullName, .field, file, f.location)
            if f.mapKey == nil {
                if let t = resolveType(f.typeName, scope: m.fullName, file: file, loc: f.typeLocation) {
                    model.type = t
                    if case .enumeration(let e) = t, file.isProto3, e.isClosed {
                        error(
                            f.typeLocation,
                            "enum '\(e.fullName)' is a proto2 enum and cannot be used in a proto3 message")
                    }
                }
            }
            if let oi = f.oneofIndex, oi < m.oneofs.count {
                model.oneof = m.oneofs[oi]
                model.oneofIndex = oi
                m.oneofs[oi].fields.append(model)
            } else if isProto3Optional {
                let o = OneofModel(name: "_" + f.name, isSynthetic: true, comments: Comments())
                o.fields.append(model)
                model.oneof = o
                synthetic.append(o)
            }
            fieldASTs[ObjectIdentifier(model)] = f
            m.fields.append(model)
        }
        for o in synthetic {
            o.fields[0].oneofIndex = m.oneofs.count
            m.oneofs.append(o)
        }
        m.reservedRanges = ast.reservedRanges.map { $0.start...$0.end }
        m.reservedNames = ast.reservedNames.map(\.0)
        m.extensionRanges = ast.extensionRanges.map { $0.start...$0.end }
    }

    private mutating func resolveMapEntry(_ f: FieldAST, _ entry: MessageModel, _ owner: MessageModel) {
        let file = owner.file
        guard let field = owner.fields.first(where: { $0.name == f.name && $0.number == Int(clamping: f.number) })
        else { return }
        field.mapEntry = entry
        field.type = .message(entry)
        let keyType = resolveType(f.mapKey!, scope: owner.fullName, file: file, loc: f.typeLocation)
        let valueType = resolveType(f.mapValue!, scope: owner.fullName, file: file, loc: f.typeLocation)
        if let keyType {
            if case .scalar(let s) = keyType, s.isValidMapKey {
            } else {
                error(f.typeLocation, "map key type must be an integer, bool or string type, not '\(f.mapKey!)'")
            }
        }
        if case .enumeration(let e) = valueType, file.isProto3, e.isClosed {
            error(f.typeLocation, "enum '\(e.fullName)' is a proto2 enum and cannot be used in a proto3 message")
        }
        let key = FieldModel(
            name: "key", number: 1, label: .optional, type: keyType ?? .scalar(.string), jsonName: "key",
            hasExplicitJSONName: false, isProto3Optional: false, comments: Comments(), location: f.location,
            fullName: entry.fullName + ".key")
        let value = FieldModel(
            name: "value", number: 2, label: .optional, type: valueType ?? .scalar(.string), jsonName: "value",
            hasExplicitJSONName: false, isProto3Optional: false, comments: Comments(), location: f.location,
            fullName: entry.fullName + ".value")
        key.containingMessage = entry
        value.containingMessage = entry
        entry.fields = [key, value]
        var opt = ResolvedOptions()
        opt.items.append(
            ResolvedOption(
                field: .standard(OptionScope.message.standardOptions["map_entry"]!), path: [],
                value: .identifier("true", negative: false), location: f.location))
        entry.options = opt
    }

    private mutating func resolveExtension(
        _ ext: (FieldAST, FieldModel, String, SourceLocation, scope: String, FileModel)
    ) {
        let (f, model, extendeeName, loc, scope, file) = ext
        if let t = resolveType(f.typeName, scope: scope, file: file, loc: f.typeLocation) { model.type = t }
        switch lookup(extendeeName, scope: scope, from: file.path) {
        case .message(let target):
            model.extendee = target
            let n = Int64(model.number)
            if !target.extensionRanges.contains(where: { $0.contains(n) }) {
                error(f.numberLocation, "'\(target.fullName)' does not declare \(n) as an extension number")
            }
            if file.isProto3 && !target.fullName.hasPrefix("google.protobuf.") {
                error(loc, "extensions in proto3 are only allowed for defining options")
            }
        default:
            error(loc, "unknown message type '\(extendeeName)' in extend")
        }
        checkNumber(Int64(model.number), f.numberLocation)
        if f.label == .required { error(f.location, "extensions cannot be required") }
        fieldASTs[ObjectIdentifier(model)] = f
    }

    private mutating func resolveService(_ ast: ServiceAST, _ s: ServiceModel) {
        var seen: Set<String> = []
        for m in ast.methods {
            if !seen.insert(m.name).inserted {
                error(m.location, "method '\(m.name)' is already defined in service '\(s.name)'")
            }
            let input = messageType(m.inputType, scope: s.fullName, file: s.file, loc: m.inputLocation)
            let output = messageType(m.outputType, scope: s.fullName, file: s.file, loc: m.outputLocation)
            guard let input, let output else { continue }
            s.methods.append(
                MethodModel(
                    name: m.name, input: input, output: output, clientStreaming: m.clientStreaming,
                    serverStreaming: m.serverStreaming, comments: m.comments, location: m.location))
        }
    }

    private mutating func messageType(_ name: String, scope: String, file: FileModel, loc: SourceLocation)
        -> MessageModel?
    {
        guard let t = resolveType(name, scope: scope, file: file, loc: loc) else { return nil }
        guard case .message(let m) = t else {
            error(loc, "'\(name)' is not a message type")
            return nil
        }
        return m
    }

    // MARK: phase 3: options

    private mutating func resolveAllOptions(_ ast: FileAST, _ file: FileModel) {
        file.options = resolveOptions(ast.options, .file, scope: file.package, file: file)
        for (mast, m) in pendingMessages where m.file === file { resolveMessageOptions(mast, m) }
        for (east, e) in pendingEnums where e.file === file {
            e.options = resolveOptions(east.options, .enumeration, scope: e.fullName, file: file)
            let scope = e.parent?.fullName ?? file.package
            e.values = east.values.map {
                EnumValueModel(
                    name: $0.name, number: Int32($0.number),
                    options: resolveOptions($0.options, .enumValue, scope: scope, file: file), comments: $0.comments)
            }
            e.reservedRanges = east.reservedRanges.map { $0.start...$0.end }
            e.reservedNames = east.reservedNames.map(\.0)
        }
        for (sast, s) in pendingServices where s.file === file {
            s.options = resolveOptions(sast.options, .service, scope: s.fullName, file: file)
            for method in s.methods {
                if let mast = sast.methods.first(where: { $0.name == method.name }) {
                    method.options = resolveOptions(mast.options, .method, scope: s.fullName, file: file)
                    method.hasOptionsBlock = mast.hasBody
                }
            }
        }
        for ext in file.extensions { resolveFieldOptions(ext, scope: file.package) }
    }

    private mutating func resolveMessageOptions(_ ast: MessageAST, _ m: MessageModel) {
        if !m.isMapEntry {
            let existing = m.options.items
            m.options = resolveOptions(ast.options, .message, scope: m.fullName, file: m.file)
            m.options.items = existing + m.options.items
        }
        for (i, o) in ast.oneofs.enumerated() where i < m.oneofs.count {
            m.oneofs[i].options = resolveOptions(o.options, .oneof, scope: m.fullName, file: m.file)
        }
        for f in m.fields { resolveFieldOptions(f, scope: m.fullName) }
        for e in m.extensions { resolveFieldOptions(e, scope: m.fullName) }
    }

    private mutating func resolveFieldOptions(_ f: FieldModel, scope: String) {
        guard let ast = fieldASTs[ObjectIdentifier(f)] else { return }
        let file = f.containingMessage?.file ?? f.extendee?.file
        let proto3 = (f.containingMessage?.file.isProto3) ?? false
        var rest: [OptionAST] = []
        for opt in ast.options {
            switch opt.simpleName {
            case "default":
                if proto3 {
                    error(opt.location, "explicit default values are not allowed in proto3")
                    continue
                }
                if f.isRepeated {
                    error(opt.location, "repeated fields cannot have default values")
                    continue
                }
                if case .message = f.type {
                    error(opt.location, "message fields cannot have default values")
                    continue
                }
                if checkValue(opt.value, f.type, opt.location, scope: scope, fileForLookup: file) {
                    f.defaultValue = opt.value
                }
            case "json_name":
                if f.extendee != nil { error(opt.location, "option json_name is not allowed on extension fields") }
            default:
                rest.append(opt)
            }
        }
        guard let owningFile = f.containingMessage?.file ?? pendingExtensions.first(where: { $0.1 === f })?.5 else {
            return
        }
        f.options = resolveOptions(rest, .field, scope: scope, file: owningFile)
        let packedOpt = f.options.standard("packed")
        if packedOpt != nil {
            let packable: Bool
            if case .scalar(let s) = f.type {
                packable = s.isPackable
            } else if case .enumeration = f.type {
                packable = true
            } else {
                packable = false
            }
            if !f.isRepeated || !packable || f.isMap {
                error(f.location, "[packed = true] can only be set on repeated fields of scalar numeric or enum types")
            }
        }
        if f.isRepeated && !f.isMap {
            let packable: Bool
            if case .scalar(let s) = f.type {
                packable = s.isPackable
            } else if case .enumeration = f.type {
                packable = true
            } else {
                packable = false
            }
            if packable {
                if let p = packedOpt {
                    f.isPacked = p == .identifier("true", negative: false)
                } else {
                    f.isPacked = proto3
                }
            }
        }
    }

    private mutating func resolveOptions(_ asts: [OptionAST], _ kind: OptionScope, scope: String, file: FileModel)
        -> ResolvedOptions
    {
        var out = ResolvedOptions()
        let standards = kind.standardOptions
        for opt in asts {
            guard let first = opt.name.first else { continue }
            if !first.isExtension {
                guard let std = standards[first.name] else {
                    error(opt.location, "option '\(first.name)' is unknown for \(kind.fullName)")
                    continue
                }
                if opt.name.count > 1 {
                    error(opt.location, "option '\(first.name)' is not a message; it has no sub-fields")
                    continue
                }
                if checkStandard(opt.value, std, opt.location) {
                    out.items.append(
                        ResolvedOption(field: .standard(std), path: [], value: opt.value, location: opt.location))
                }
                continue
            }
            guard case .extensionField(let ext) = lookup(first.name, scope: scope, from: file.path) else {
                if let other = hiddenDefinition(first.name, scope: scope, from: file.path) {
                    error(opt.location, "option '(\(first.name))' is defined in '\(other)', which is not imported")
                } else {
                    error(opt.location, "unknown option '(\(first.name))'")
                }
                continue
            }
            guard let extendee = ext.extendee else { continue }
            guard extendee.fullName == kind.fullName else {
                error(
                    opt.location,
                    "option '(\(first.name))' extends \(extendee.fullName), so it cannot be used where \(kind.fullName) is expected"
                )
                continue
            }
            var path: [FieldModel] = []
            var current = ext
            var ok = true
            for part in opt.name.dropFirst() {
                guard case .message(let mt) = current.type, let sub = mt.fields.first(where: { $0.name == part.name }),
                    !part.isExtension
                else {
                    error(opt.location, "option '(\(first.name))' has no field '\(part.name)'")
                    ok = false
                    break
                }
                path.append(sub)
                current = sub
            }
            guard ok else { continue }
            if checkValue(
                opt.value, current.type, opt.location, scope: scope, fileForLookup: file, repeated: current.isRepeated)
            {
                out.items.append(
                    ResolvedOption(field: .extension(ext), path: path, value: opt.value, location: opt.location))
            }
        }
        return out
    }

    private mutating func checkStandard(_ v: ConstantValue, _ std: StandardOption, _ loc: SourceLocation) -> Bool {
        switch std.kind {
        case .bool:
            if case .identifier(let s, false) = v, s == "true" || s == "false" { return true }
            error(loc, "option '\(std.name)' needs true or false")
        case .string:
            if case .string = v { return true }
            error(loc, "option '\(std.name)' needs a string")
        case .enumeration(let values):
            if case .identifier(let s, false) = v, values[s] != nil { return true }
            error(loc, "option '\(std.name)' needs one of \(values.keys.sorted().joined(separator: ", "))")
        }
        return false
    }

    /// Checks that a constant fits a field type; for messages, checks the literal's fields.
    private mutating func checkValue(
        _ v: ConstantValue, _ type: FieldType, _ loc: SourceLocation, scope: String,
        fileForLookup: FileModel?, repeated: Bool = false
    ) -> Bool {
        if repeated, case .list(let items) = v {
            return items.allSatisfy { checkValue($0, type, loc, scope: scope, fileForLookup: fileForLookup) }
        }
        switch type {
        case .scalar(let s):
            switch s {
            case .bool:
                if case .identifier(let id, false) = v, id == "true" || id == "false" { return true }
                if case .integer(let n, false) = v, n <= 1 { return true }
                error(loc, "value must be true or false")
            case .string, .bytes:
                if case .string = v { return true }
                error(loc, "value must be a string")
            case .float, .double:
                switch v {
                case .float, .integer: return true
                case .identifier(let id, _) where ["inf", "nan", "infinity"].contains(id.lowercased()): return true
                default: error(loc, "value must be a number")
                }
            default:
                guard case .integer(let n, let neg) = v else {
                    error(loc, "value must be an integer")
                    return false
                }
                let signed = [ScalarType.int32, .sint32, .sfixed32, .int64, .sint64, .sfixed64].contains(s)
                let is32 = [ScalarType.int32, .sint32, .sfixed32, .uint32, .fixed32].contains(s)
                if neg && !signed {
                    error(loc, "value must be non-negative for \(s.rawValue)")
                    return false
                }
                let limit: UInt64 =
                    is32
                    ? (signed ? (neg ? 1 << 31 : (1 << 31) - 1) : UInt64(UInt32.max))
                    : (signed ? (neg ? 1 << 63 : (1 << 63) - 1) : UInt64.max)
                if n > limit {
                    error(loc, "value \(neg ? "-" : "")\(n) is out of range for \(s.rawValue)")
                    return false
                }
                return true
            }
            return false
        case .enumeration(let e):
            if case .identifier(let id, false) = v {
                if e.values.isEmpty {
                    // Values are filled in during option resolution of e's own file; fall back to the AST.
                    if let ast = pendingEnums.first(where: { $0.1 === e })?.0,
                        ast.values.contains(where: { $0.name == id })
                    {
                        return true
                    }
                } else if e.values.contains(where: { $0.name == id }) {
                    return true
                }
                error(loc, "enum type '\(e.fullName)' has no value named '\(id)'")
                return false
            }
            error(loc, "value must be a value name of enum '\(e.fullName)'")
            return false
        case .message(let m):
            guard case .aggregate(let entries) = v else {
                error(loc, "value for message type '\(m.fullName)' must be a message literal { ... }")
                return false
            }
            var ok = true
            for entry in entries {
                if entry.isExtension {
                    guard
                        case .extensionField(let ext) =
                            (fileForLookup.flatMap { lookup(entry.name, scope: scope, from: $0.path) })
                    else {
                        error(entry.location, "unknown extension '[\(entry.name)]'")
                        ok = false
                        continue
                    }
                    ok =
                        checkValue(
                            entry.value, ext.type, entry.location, scope: scope, fileForLookup: fileForLookup,
                            repeated: ext.isRepeated) && ok
                    continue
                }
                guard let f = m.fields.first(where: { $0.name == entry.name }) else {
                    error(entry.location, "message type '\(m.fullName)' has no field named '\(entry.name)'")
                    ok = false
                    continue
                }
                ok =
                    checkValue(
                        entry.value, f.type, entry.location, scope: scope, fileForLookup: fileForLookup,
                        repeated: f.isRepeated) && ok
            }
            return ok
        }
    }

    // MARK: phase 4: validation

    private mutating func checkNumber(_ n: Int64, _ loc: SourceLocation) {
        if n < 1 || n > 536_870_911 {
            error(loc, "field number \(n) is out of range: field numbers go from 1 to 536870911")
        } else if (19000...19999).contains(n) {
            error(loc, "field number \(n) is in 19000-19999, which is reserved for the protobuf implementation")
        }
    }

    private mutating func validate(_ ast: MessageAST, _ m: MessageModel) {
        var byNumber: [Int: FieldModel] = [:]
        var byName: [String: FieldModel] = [:]
        var byJSON: [String: FieldModel] = [:]
        for (f, fast) in zip(m.fields, ast.fields) {
            checkNumber(fast.number, fast.numberLocation)
            if let other = byNumber[f.number] {
                error(
                    fast.numberLocation,
                    "field number \(f.number) is already used in '\(m.fullName)' by field '\(other.name)'")
            } else {
                byNumber[f.number] = f
            }
            if byName[f.name] != nil { error(f.location, "field name '\(f.name)' is already used in '\(m.fullName)'") }
            byName[f.name] = f
            if m.file.isProto3 {
                let key = f.jsonName.lowercased()
                if let other = byJSON[key], other.name != f.name {
                    error(
                        f.location,
                        "the JSON name of field '\(f.name)' ('\(f.jsonName)') conflicts with field '\(other.name)' ('\(other.jsonName)')"
                    )
                }
                byJSON[key] = f
            }
            if let r = m.reservedRanges.first(where: { $0.contains(Int64(f.number)) }) {
                let rangeText = r.lowerBound == r.upperBound ? "\(r.lowerBound)" : "\(r.lowerBound) to \(r.upperBound)"
                error(
                    fast.numberLocation, "field '\(f.name)' uses number \(f.number), which is reserved (\(rangeText))")
            }
            if m.reservedNames.contains(f.name) { error(f.location, "field name '\(f.name)' is reserved") }
            if m.extensionRanges.contains(where: { $0.contains(Int64(f.number)) }) {
                error(fast.numberLocation, "field number \(f.number) overlaps an extension range of '\(m.fullName)'")
            }
        }
        for (i, r) in ast.extensionRanges.enumerated() {
            checkRange(r)
            for o in ast.extensionRanges[(i + 1)...] where o.start <= r.end && r.start <= o.end {
                error(o.location, "extension range \(o.start) to \(o.end) overlaps another")
            }
            if ast.reservedRanges.contains(where: { $0.start <= r.end && r.start <= $0.end }) {
                error(r.location, "extension range \(r.start) to \(r.end) overlaps a reserved range")
            }
        }
        for r in ast.reservedRanges where r.start < 1 { error(r.location, "reserved field numbers must be positive") }
        if m.file.isProto3 && !ast.extensionRanges.isEmpty {
            error(ast.extensionRanges[0].location, "extension ranges are not allowed in proto3")
        }
        for o in m.realOneofs where o.fields.isEmpty {
            error(
                ast.oneofs.first { $0.name == o.name }?.location ?? m.location,
                "oneof '\(o.name)' must have at least one field")
        }
    }

    private mutating func checkRange(_ r: RangeAST) {
        if r.start < 1 || r.end > 536_870_911 {
            error(r.location, "extension range \(r.start) to \(r.end) is outside 1 to 536870911")
        }
    }

    private mutating func validate(_ ast: EnumAST, _ e: EnumModel) {
        guard let first = ast.values.first else {
            error(ast.location, "enum '\(e.name)' must have at least one value")
            return
        }
        if e.file.isProto3 && first.number != 0 {
            error(first.location, "the first value of enum '\(e.name)' must be zero in proto3 (found \(first.number))")
        }
        let allowAlias = e.options.bool("allow_alias")
        var byNumber: [Int64: String] = [:]
        var aliased = false
        for v in ast.values {
            if let other = byNumber[v.number] {
                aliased = true
                if !allowAlias {
                    error(
                        v.location,
                        "enum value \(v.number) of '\(e.name)' is used by both '\(other)' and '\(v.name)'; set option allow_alias = true to allow aliases"
                    )
                }
            } else {
                byNumber[v.number] = v.name
            }
            if ast.reservedRanges.contains(where: { $0.start <= v.number && v.number <= $0.end }) {
                error(v.location, "enum value '\(v.name)' uses reserved number \(v.number)")
            }
            if ast.reservedNames.contains(where: { $0.0 == v.name }) {
                error(v.location, "enum value name '\(v.name)' is reserved")
            }
        }
        if allowAlias && !aliased {
            error(ast.location, "enum '\(e.name)' sets allow_alias but has no aliased values; remove the option")
        }
    }
}
