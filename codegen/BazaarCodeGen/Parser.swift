/// Recursive-descent parser for the protobuf language (proto2 and proto3).
struct Parser {
    private var tokens: [Token]
    private var p = 0
    private let path: String

    init(path: String, text: String) throws(Diagnostic) {
        var lexer = Lexer(file: path, text: text)
        self.tokens = try lexer.tokenize()
        self.path = path
    }

    // MARK: token helpers

    private var tok: Token { tokens[p] }
    private var prev: Token { tokens[max(p - 1, 0)] }

    private mutating func next() -> Token {
        let t = tokens[p]
        if t.kind != .end { p += 1 }
        return t
    }

    private func isSymbol(_ s: String) -> Bool { tok.kind == .symbol && tok.text == s }
    private func isWord(_ s: String) -> Bool { tok.kind == .identifier && tok.text == s }

    private mutating func accept(_ s: String) -> Bool {
        if isSymbol(s) {
            p += 1
            return true
        }
        return false
    }

    private func describe(_ t: Token) -> String {
        switch t.kind {
        case .end: return "end of file"
        case .string: return "string literal"
        default: return "'\(t.text)'"
        }
    }

    private mutating func expect(_ s: String, _ context: String = "") throws(Diagnostic) {
        guard accept(s) else {
            throw Diagnostic(
                tok.location, "expected '\(s)'\(context.isEmpty ? "" : " " + context), found \(describe(tok))")
        }
    }

    private mutating func identifier(_ what: String) throws(Diagnostic) -> String {
        guard tok.kind == .identifier else {
            throw Diagnostic(tok.location, "expected \(what), found \(describe(tok))")
        }
        return next().text
    }

    /// `a.b.c` or `.a.b.c` (a fully-qualified reference).
    private mutating func typeName(_ what: String) throws(Diagnostic) -> String {
        var name = ""
        if accept(".") { name = "." }
        name += try identifier(what)
        while isSymbol(".") {
            p += 1
            name += "." + (try identifier(what))
        }
        return name
    }

    private mutating func integer(_ what: String) throws(Diagnostic) -> (Int64, SourceLocation) {
        let loc = tok.location
        let negative = accept("-")
        guard tok.kind == .integer else { throw Diagnostic(tok.location, "expected \(what), found \(describe(tok))") }
        let t = next()
        guard let magnitude = Self.parseInteger(t.text) else {
            throw Diagnostic(t.location, "integer literal '\(t.text)' is out of range")
        }
        if negative {
            guard magnitude <= UInt64(Int64.max) + 1 else {
                throw Diagnostic(t.location, "integer literal '-\(t.text)' is out of range")
            }
            return (magnitude == UInt64(Int64.max) + 1 ? Int64.min : -Int64(magnitude), loc)
        }
        guard magnitude <= UInt64(Int64.max) else {
            throw Diagnostic(t.location, "integer literal '\(t.text)' is out of range")
        }
        return (Int64(magnitude), loc)
    }

    static func parseInteger(_ text: String) -> UInt64? {
        if text.hasPrefix("0x") || text.hasPrefix("0X") { return UInt64(text.dropFirst(2), radix: 16) }
        if text.count > 1, text.hasPrefix("0") { return UInt64(text.dropFirst(), radix: 8) }
        return UInt64(text)
    }

    private func comments(_ start: Token, _ end: Token) -> Comments {
        Comments(leading: start.leadingComment, trailing: end.trailingComment)
    }

    // MARK: file

    mutating func parseFile() throws(Diagnostic) -> FileAST {
        var file = FileAST(path: path)
        var first = true
        while tok.kind != .end {
            if accept(";") { continue }
            let start = tok
            guard tok.kind == .identifier else {
                throw Diagnostic(tok.location, "expected a top-level statement, found \(describe(tok))")
            }
            switch tok.text {
            case "syntax":
                guard first else { throw Diagnostic(tok.location, "'syntax' must be the first statement in the file") }
                p += 1
                try expect("=")
                guard tok.kind == .string else {
                    throw Diagnostic(tok.location, "expected \"proto2\" or \"proto3\" after 'syntax ='")
                }
                let s = next()
                guard s.text == "proto2" || s.text == "proto3" else {
                    throw Diagnostic(s.location, "unrecognized syntax \"\(s.text)\"; expected \"proto2\" or \"proto3\"")
                }
                file.syntax = s.text
                try expect(";")
            case "edition":
                throw Diagnostic(tok.location, "editions are not supported; use syntax = \"proto3\" or \"proto2\"")
            case "package":
                p += 1
                guard file.package == nil else { throw Diagnostic(start.location, "multiple package statements") }
                file.package = try typeName("package name")
                if file.package!.hasPrefix(".") {
                    throw Diagnostic(start.location, "package name cannot start with '.'")
                }
                try expect(";")
            case "import":
                p += 1
                var kind = ImportAST.Kind.normal
                if isWord("public") {
                    p += 1
                    kind = .public
                } else if isWord("weak") {
                    p += 1
                    kind = .weak
                }
                guard tok.kind == .string else {
                    throw Diagnostic(tok.location, "expected a file name string after 'import'")
                }
                let s = next()
                file.imports.append(ImportAST(path: s.text, kind: kind, location: s.location))
                try expect(";")
            case "option":
                p += 1
                file.options.append(try optionStatement())
            case "message":
                file.messages.append(try message())
            case "enum":
                file.enums.append(try enumDecl())
            case "service":
                file.services.append(try service())
            case "extend":
                file.extends.append(try extend())
            default:
                throw Diagnostic(tok.location, "expected a top-level statement, found '\(tok.text)'")
            }
            first = false
        }
        return file
    }

    // MARK: options

    /// After `option`: `name = value;`
    private mutating func optionStatement() throws(Diagnostic) -> OptionAST {
        let opt = try optionAssignment()
        try expect(";", "after option")
        return opt
    }

    private mutating func optionAssignment() throws(Diagnostic) -> OptionAST {
        let loc = tok.location
        var parts: [OptionNamePart] = []
        repeat {
            if accept("(") {
                parts.append(OptionNamePart(name: try typeName("option name"), isExtension: true))
                try expect(")", "to close the extension name")
            } else {
                parts.append(OptionNamePart(name: try identifier("option name"), isExtension: false))
            }
        } while accept(".")
        try expect("=", "after option name")
        return OptionAST(name: parts, value: try constant(), location: loc)
    }

    /// `[a = 1, (b) = {..}]`, or nothing.
    private mutating func fieldOptions() throws(Diagnostic) -> [OptionAST] {
        guard accept("[") else { return [] }
        var options: [OptionAST] = []
        repeat { options.append(try optionAssignment()) } while accept(",")
        try expect("]", "to close the option list")
        return options
    }

    private mutating func constant() throws(Diagnostic) -> ConstantValue {
        if isSymbol("{") { return .aggregate(try aggregate()) }
        let negative = accept("-")
        if !negative { _ = accept("+") }
        let t = next()
        switch t.kind {
        case .integer:
            guard let v = Self.parseInteger(t.text) else {
                throw Diagnostic(t.location, "integer literal '\(t.text)' is out of range")
            }
            return .integer(v, negative: negative)
        case .float:
            var text = t.text
            if text.hasSuffix("f") || text.hasSuffix("F") { text.removeLast() }
            if text.hasPrefix(".") { text = "0" + text }
            if text.hasSuffix(".") { text += "0" }
            guard let d = Double(text) else { throw Diagnostic(t.location, "invalid float literal '\(t.text)'") }
            return .float(negative ? -d : d)
        case .string:
            guard !negative else { throw Diagnostic(t.location, "a string cannot be negated") }
            var bytes = t.bytes
            while tok.kind == .string { bytes += next().bytes }  // adjacent literals concatenate
            return .string(bytes)
        case .identifier:
            return .identifier(t.text, negative: negative)
        default:
            throw Diagnostic(t.location, "expected a constant, found \(describe(t))")
        }
    }

    private mutating func aggregate() throws(Diagnostic) -> [AggregateEntry] {
        try expect("{")
        var entries: [AggregateEntry] = []
        while !accept("}") {
            guard tok.kind != .end else { throw Diagnostic(tok.location, "unterminated message literal") }
            let loc = tok.location
            var name: String
            var isExt = false
            if accept("[") {
                name = try typeName("extension name")
                isExt = true
                try expect("]")
            } else {
                name = try identifier("field name in message literal")
            }
            let value: ConstantValue
            if accept(":") {
                if isSymbol("[") {
                    p += 1
                    var items: [ConstantValue] = []
                    if !accept("]") {
                        repeat { items.append(try constant()) } while accept(",")
                        try expect("]")
                    }
                    value = .list(items)
                } else {
                    value = try constant()
                }
            } else if isSymbol("{") {
                value = .aggregate(try aggregate())
            } else {
                throw Diagnostic(tok.location, "expected ':' or '{' after '\(name)' in message literal")
            }
            entries.append(AggregateEntry(name: name, isExtension: isExt, value: value, location: loc))
            _ = accept(",") || accept(";")
        }
        return entries
    }

    // MARK: messages

    private mutating func message() throws(Diagnostic) -> MessageAST {
        let start = next()  // 'message'
        let nameTok = tok
        let name = try identifier("message name")
        var m = MessageAST(name: name, location: nameTok.location, comments: Comments())
        try expect("{", "after message name")
        m.comments = comments(start, prev)
        try messageBody(&m)
        return m
    }

    private mutating func messageBody(_ m: inout MessageAST) throws(Diagnostic) {
        while !accept("}") {
            if accept(";") { continue }
            guard tok.kind == .identifier else {
                throw Diagnostic(
                    tok.location,
                    tok.kind == .end
                        ? "unexpected end of file: missing '}'"
                        : "expected a field or declaration, found \(describe(tok))")
            }
            switch tok.text {
            case "message":
                m.nestedOrder.append(.message(m.messages.count))
                m.messages.append(try message())
            case "enum": m.enums.append(try enumDecl())
            case "extend": m.extends.append(try extend())
            case "option":
                p += 1
                m.options.append(try optionStatement())
            case "oneof":
                let start = next()
                let loc = tok.location
                let oname = try identifier("oneof name")
                try expect("{")
                let index = m.oneofs.count
                var oneof = OneofAST(name: oname, options: [], location: loc, comments: comments(start, prev))
                while !accept("}") {
                    if accept(";") { continue }
                    if isWord("option") {
                        p += 1
                        oneof.options.append(try optionStatement())
                        continue
                    }
                    guard tok.kind != .end else {
                        throw Diagnostic(tok.location, "unexpected end of file: missing '}'")
                    }
                    if isWord("optional") || isWord("required") || isWord("repeated") {
                        throw Diagnostic(tok.location, "fields in a oneof must not have labels ('\(tok.text)')")
                    }
                    var f = try field(label: .none)
                    f.oneofIndex = index
                    m.fields.append(f)
                }
                m.oneofs.append(oneof)
            case "reserved":
                p += 1
                if tok.kind == .string {
                    repeat {
                        guard tok.kind == .string else {
                            throw Diagnostic(tok.location, "expected a field name string")
                        }
                        let t = next()
                        m.reservedNames.append((t.text, t.location))
                    } while accept(",")
                } else if tok.kind == .identifier && !isWord("max") {
                    throw Diagnostic(tok.location, "reserved names must be string literals")
                } else {
                    m.reservedRanges += try ranges(max: 536_870_911)
                }
                try expect(";")
            case "extensions":
                p += 1
                var rs = try ranges(max: 536_870_911)
                let opts = try fieldOptions()
                for i in rs.indices { rs[i].options = opts }
                m.extensionRanges += rs
                try expect(";")
            case "map" where tokens[p + 1].text == "<":
                m.nestedOrder.append(.mapField(m.fields.count))
                m.fields.append(try mapField())
            case "group":
                throw Diagnostic(tok.location, "groups are not supported; use a nested message")
            default:
                var label = FieldLabel.none
                if let l = FieldLabel(rawValue: tok.text), l != .none,
                    tokens[p + 1].kind == .identifier || tokens[p + 1].text == "."
                {
                    label = l
                    p += 1
                    if isWord("group") {
                        throw Diagnostic(tok.location, "groups are not supported; use a nested message")
                    }
                }
                m.fields.append(try field(label: label))
            }
        }
    }

    private mutating func ranges(max: Int64) throws(Diagnostic) -> [RangeAST] {
        var out: [RangeAST] = []
        repeat {
            let (s, loc) = try integer("a field number")
            var e = s
            if isWord("to") {
                p += 1
                if isWord("max") {
                    p += 1
                    e = max
                } else {
                    e = try integer("a field number").0
                }
            }
            guard e >= s else { throw Diagnostic(loc, "range end \(e) is before its start \(s)") }
            out.append(RangeAST(start: s, end: e, location: loc))
        } while accept(",")
        return out
    }

    private mutating func field(label: FieldLabel) throws(Diagnostic) -> FieldAST {
        let start = label == .none ? tok : prev
        let typeLoc = tok.location
        let type = try typeName("a field type")
        let nameLoc = tok.location
        let name = try identifier("a field name")
        try expect("=", "after field name '\(name)'")
        let (number, numLoc) = try integer("a field number")
        let options = try fieldOptions()
        try expect(";", "after field '\(name)'")
        return FieldAST(
            label: label, typeName: type, typeLocation: typeLoc, name: name, number: number,
            numberLocation: numLoc, options: options, location: nameLoc, comments: comments(start, prev))
    }

    private mutating func mapField() throws(Diagnostic) -> FieldAST {
        let start = next()  // 'map'
        try expect("<", "after 'map'")
        let keyLoc = tok.location
        let key = try typeName("a map key type")
        try expect(",", "between map key and value types")
        let value = try typeName("a map value type")
        try expect(">", "to close the map type")
        let nameLoc = tok.location
        let name = try identifier("a field name")
        try expect("=")
        let (number, numLoc) = try integer("a field number")
        let options = try fieldOptions()
        try expect(";", "after field '\(name)'")
        return FieldAST(
            label: .repeated, typeName: "", typeLocation: keyLoc, name: name, number: number,
            numberLocation: numLoc, options: options, location: nameLoc, comments: comments(start, prev),
            mapKey: key, mapValue: value)
    }

    // MARK: enums

    private mutating func enumDecl() throws(Diagnostic) -> EnumAST {
        let start = next()
        let loc = tok.location
        let name = try identifier("enum name")
        try expect("{", "after enum name")
        var e = EnumAST(name: name, location: loc, comments: comments(start, prev))
        while !accept("}") {
            if accept(";") { continue }
            guard tok.kind == .identifier else {
                throw Diagnostic(
                    tok.location,
                    tok.kind == .end
                        ? "unexpected end of file: missing '}'" : "expected an enum value, found \(describe(tok))")
            }
            if isWord("option") && tokens[p + 1].text != "=" {
                p += 1
                e.options.append(try optionStatement())
                continue
            }
            if isWord("reserved") && tokens[p + 1].text != "=" {
                p += 1
                if tok.kind == .string {
                    repeat {
                        guard tok.kind == .string else {
                            throw Diagnostic(tok.location, "expected a value name string")
                        }
                        let t = next()
                        e.reservedNames.append((t.text, t.location))
                    } while accept(",")
                } else {
                    e.reservedRanges += try ranges(max: Int64(Int32.max))
                }
                try expect(";")
                continue
            }
            let vstart = tok
            let vname = next().text
            try expect("=", "after enum value '\(vname)'")
            let (number, numLoc) = try integer("an enum value number")
            guard number >= Int64(Int32.min), number <= Int64(Int32.max) else {
                throw Diagnostic(numLoc, "enum value \(number) is out of the int32 range")
            }
            let options = try fieldOptions()
            try expect(";", "after enum value '\(vname)'")
            e.values.append(
                EnumValueAST(
                    name: vname, number: number, options: options, location: vstart.location,
                    comments: comments(vstart, prev)))
        }
        return e
    }

    // MARK: services

    private mutating func service() throws(Diagnostic) -> ServiceAST {
        let start = next()
        let loc = tok.location
        let name = try identifier("service name")
        try expect("{", "after service name")
        var s = ServiceAST(name: name, location: loc, comments: comments(start, prev))
        while !accept("}") {
            if accept(";") { continue }
            if isWord("option") {
                p += 1
                s.options.append(try optionStatement())
                continue
            }
            guard isWord("rpc") else {
                throw Diagnostic(
                    tok.location,
                    tok.kind == .end
                        ? "unexpected end of file: missing '}'"
                        : "expected 'rpc' or 'option' in service, found \(describe(tok))")
            }
            let mstart = next()
            let mloc = tok.location
            let mname = try identifier("method name")
            try expect("(", "after method name")
            var clientStreaming = false
            if isWord("stream"), tokens[p + 1].kind == .identifier || tokens[p + 1].text == "." {
                p += 1
                clientStreaming = true
            }
            let inLoc = tok.location
            let input = try typeName("request type")
            try expect(")")
            guard isWord("returns") else {
                throw Diagnostic(tok.location, "expected 'returns', found \(describe(tok))")
            }
            p += 1
            try expect("(", "after 'returns'")
            var serverStreaming = false
            if isWord("stream"), tokens[p + 1].kind == .identifier || tokens[p + 1].text == "." {
                p += 1
                serverStreaming = true
            }
            let outLoc = tok.location
            let output = try typeName("response type")
            try expect(")")
            var options: [OptionAST] = []
            let hasBody = isSymbol("{")
            if accept("{") {
                while !accept("}") {
                    if accept(";") { continue }
                    guard isWord("option") else {
                        throw Diagnostic(tok.location, "expected 'option' in method body, found \(describe(tok))")
                    }
                    p += 1
                    options.append(try optionStatement())
                }
                _ = accept(";")
            } else {
                try expect(";", "or '{' after method signature")
            }
            s.methods.append(
                MethodAST(
                    name: mname, inputType: input, inputLocation: inLoc, outputType: output,
                    outputLocation: outLoc, clientStreaming: clientStreaming,
                    serverStreaming: serverStreaming, options: options, location: mloc,
                    comments: comments(mstart, prev), hasBody: hasBody))
        }
        return s
    }

    private mutating func extend() throws(Diagnostic) -> ExtendAST {
        _ = next()
        let loc = tok.location
        let extendee = try typeName("extended message name")
        try expect("{")
        var fields: [FieldAST] = []
        while !accept("}") {
            if accept(";") { continue }
            guard tok.kind == .identifier else {
                throw Diagnostic(tok.location, "expected an extension field, found \(describe(tok))")
            }
            var label = FieldLabel.none
            if let l = FieldLabel(rawValue: tok.text), l != .none {
                label = l
                p += 1
            }
            if isWord("group") { throw Diagnostic(tok.location, "groups are not supported") }
            fields.append(try field(label: label))
        }
        return ExtendAST(extendee: extendee, location: loc, fields: fields)
    }
}
