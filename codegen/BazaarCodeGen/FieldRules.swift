/// A field's `bazaar.options.v1.rules` in usable form, the checks that the rules fit the field's
/// type, and the Swift that enforces them (`ValidatedMessage` conformances, emitted beside the
/// messages).
struct FieldRules {
    var required = false
    var minLen: UInt64?
    var maxLen: UInt64?
    var pattern: String?
    var email = false
    var singleLine = false
    var min: Double?
    var max: Double?
    /// The bounds as written, so that integer fields are checked exactly.
    var minConstant: ConstantValue?
    var maxConstant: ConstantValue?
    var minItems: UInt64?
    var maxItems: UInt64?
    var definedOnly = false
    var location: SourceLocation

    static let option = "bazaar.options.v1.rules"

    /// The rules a field declares; nil when it declares none.
    init?(_ f: FieldModel) {
        guard case .aggregate(let entries)? = f.options.extension(Self.option) else { return nil }
        location = f.location
        for e in entries {
            switch e.name {
            case "required": required = Self.bool(e.value)
            case "min_len": minLen = Self.unsigned(e.value)
            case "max_len": maxLen = Self.unsigned(e.value)
            case "pattern": pattern = e.value.stringValue.flatMap { $0.isEmpty ? nil : $0 }
            case "email": email = Self.bool(e.value)
            case "single_line": singleLine = Self.bool(e.value)
            case "min":
                min = Self.double(e.value)
                minConstant = e.value
            case "max":
                max = Self.double(e.value)
                maxConstant = e.value
            case "min_items": minItems = Self.unsigned(e.value)
            case "max_items": maxItems = Self.unsigned(e.value)
            case "defined_only": definedOnly = Self.bool(e.value)
            default: break
            }
        }
    }

    static func bool(_ v: ConstantValue) -> Bool {
        if case .identifier("true", _) = v { return true }
        return false
    }

    static func unsigned(_ v: ConstantValue) -> UInt64? {
        if case .integer(let n, false) = v { return n }
        return nil
    }

    static func double(_ v: ConstantValue) -> Double? {
        switch v {
        case .integer(let n, let negative): return negative ? -Double(n) : Double(n)
        case .float(let d): return d
        case .identifier("inf", let negative): return negative ? -.infinity : .infinity
        default: return nil
        }
    }

    var hasStringRules: Bool { minLen != nil || maxLen != nil || pattern != nil || email || singleLine }
    var hasNumberRules: Bool { min != nil || max != nil }

    // MARK: checks

    /// Rules that do not fit their field's type, as diagnostics at the field.
    static func validate(_ files: [FileModel]) -> [Diagnostic] {
        var out: [Diagnostic] = []
        for file in files {
            for m in file.allMessages {
                for f in m.fields {
                    guard let r = FieldRules(f) else { continue }
                    out += r.problems(f).map { Diagnostic(f.location, "rules of field '\(f.name)': \($0)") }
                }
            }
        }
        return out
    }

    func problems(_ f: FieldModel) -> [String] {
        var out: [String] = []
        if f.realOneof != nil { out.append("rules on a oneof member are not supported") }
        if !f.isRepeated, minItems != nil || maxItems != nil {
            out.append("min_items and max_items apply to repeated fields and maps")
        }
        if let a = minLen, let b = maxLen, a > b { out.append("min_len \(a) is above max_len \(b)") }
        if let a = min, let b = max, a > b { out.append("min is above max") }
        if let a = minItems, let b = maxItems, a > b { out.append("min_items \(a) is above max_items \(b)") }
        if f.isMap {
            if hasStringRules || hasNumberRules || definedOnly {
                out.append("a map takes only required, min_items and max_items")
            }
            return out
        }
        switch f.type {
        case .scalar(.string):
            if hasNumberRules || definedOnly { out.append("a string takes no min, max or defined_only") }
            if let p = pattern, (try? Regex(p)) == nil { out.append("pattern '\(p)' is not a regular expression") }
        case .scalar(.bytes):
            if pattern != nil || email || singleLine || hasNumberRules || definedOnly {
                out.append("bytes take only required, min_len and max_len")
            }
        case .scalar(.bool):
            if hasStringRules || hasNumberRules || definedOnly || required {
                out.append("a bool takes no rules")
            }
        case .scalar:
            if hasStringRules || definedOnly { out.append("a number takes only required, min and max") }
        case .enumeration:
            if hasStringRules || hasNumberRules { out.append("an enum takes only required and defined_only") }
        case .message:
            if hasStringRules || hasNumberRules || definedOnly { out.append("a message field takes only required") }
            if f.isRepeated == false, f.isProto3Optional { out.append("a message field cannot be proto3 optional") }
        }
        return out
    }

    // MARK: which messages are checked

    /// Whether checking a message can find anything: it has rules, or a message field whose type
    /// has some (cycles end in "no").
    static func isValidated(_ m: MessageModel, _ seen: inout [String: Bool]) -> Bool {
        if let known = seen[m.fullName] { return known }
        // Reachability, not recursion with provisional answers: in a cycle (A holds B holds A)
        // every member must get the same answer whichever is asked first.
        var visited: Set<String> = [m.fullName]
        var stack = [m]
        var result = false
        while let next = stack.popLast() {
            for f in next.fields where f.realOneof == nil {
                if FieldRules(f) != nil { result = true }
                if case .message(let inner) = f.type, !f.isMap, visited.insert(inner.fullName).inserted {
                    stack.append(inner)
                }
            }
        }
        seen[m.fullName] = result
        return result
    }

    static func isValidated(_ m: MessageModel) -> Bool {
        var seen: [String: Bool] = [:]
        return isValidated(m, &seen)
    }

    // MARK: emitting

    /// `extension X: ValidatedMessage { ... }` for every validated message of a file.
    static func emit(_ file: FileModel, _ w: inout CodeWriter) {
        var seen: [String: Bool] = [:]
        for m in file.allMessages where !m.isMapEntry && isValidated(m, &seen) {
            emit(m, &seen, &w)
        }
    }

    static func emit(_ m: MessageModel, _ seen: inout [String: Bool], _ w: inout CodeWriter) {
        let type = SwiftNames.messageType(m)
        var patterns: [String] = []
        w.open("extension \(type): ValidatedMessage")
        w.open("public func collectViolations(_ prefix: String, into out: inout [FieldViolation])")
        for f in m.fieldsByNumber where f.realOneof == nil {
            let rules = FieldRules(f)
            // `self.`: a field may be called `prefix` or `out`, the parameters' names.
            let name = "self." + SwiftNames.escape(SwiftNames.fieldName(f))
            let path = "prefix + \"\(f.name)\""
            var nested = false
            if case .message(let inner) = f.type, !f.isMap, isValidated(inner, &seen) { nested = true }
            guard rules != nil || nested else { continue }
            let r = rules ?? FieldRules(location: f.location)
            if f.isMap {
                w.line(items("\(name).count", path, r))
                continue
            }
            if f.isRepeated {
                if r.required || r.minItems != nil || r.maxItems != nil { w.line(items("\(name).count", path, r)) }
                let element = element(f, "v", "\(path) + \"[\\(i)]\"", r, &patterns, repeated: true, nested: nested)
                if !element.isEmpty {
                    w.open("for (i, v) in \(name).enumerated()")
                    for line in element { w.line(line) }
                    w.close()
                }
                continue
            }
            if case .message = f.type {
                // A proto2 `required` message is stored as a value, always there.
                if f.label == .required {
                    if nested { w.line("\(name).collectViolations(\(path) + \".\", into: &out)") }
                    continue
                }
                if r.required { w.line("FieldCheck.present(\(name) != nil, \(path), into: &out)") }
                if nested { w.line("\(name)?.collectViolations(\(path) + \".\", into: &out)") }
                continue
            }
            if f.label != .required && f.hasPresence {
                if r.required { w.line("FieldCheck.present(\(name) != nil, \(path), into: &out)") }
                var unrequired = r
                unrequired.required = false
                let lines = element(f, "v", path, unrequired, &patterns, repeated: false, nested: false)
                if !lines.isEmpty {
                    w.open("if let v = \(name)")
                    for line in lines { w.line(line) }
                    w.close()
                }
                continue
            }
            for line in element(f, name, path, r, &patterns, repeated: false, nested: false) { w.line(line) }
        }
        w.close()
        for (i, p) in patterns.enumerated() {
            w.line("private static let pattern\(i) = ValidationPattern(\(swiftString(p)))")
        }
        w.close()
        w.line("")
    }

    static func items(_ count: String, _ path: String, _ r: FieldRules) -> String {
        var args = ""
        if r.required { args += ", required: true" }
        if let n = r.minItems { args += ", min: \(n)" }
        if let n = r.maxItems { args += ", max: \(n)" }
        return "FieldCheck.items(\(count), \(path)\(args), into: &out)"
    }

    /// The check of one value (a singular field, or an element of a repeated one).
    static func element(
        _ f: FieldModel, _ value: String, _ path: String, _ r: FieldRules, _ patterns: inout [String],
        repeated: Bool, nested: Bool
    ) -> [String] {
        let required = repeated ? false : r.required
        switch f.type {
        case .message:
            return nested ? ["\(value).collectViolations(\(path) + \".\", into: &out)"] : []
        case .scalar(.string):
            var args = ""
            if required { args += ", required: true" }
            if let n = r.minLen { args += ", minLen: \(n)" }
            if let n = r.maxLen { args += ", maxLen: \(n)" }
            if let p = r.pattern {
                args += ", pattern: Self.pattern\(patterns.count)"
                patterns.append(p)
            }
            if r.email { args += ", email: true" }
            if r.singleLine { args += ", singleLine: true" }
            return args.isEmpty ? [] : ["FieldCheck.string(\(value), \(path)\(args), into: &out)"]
        case .scalar(.bytes):
            var args = ""
            if required { args += ", required: true" }
            if let n = r.minLen { args += ", minLen: \(n)" }
            if let n = r.maxLen { args += ", maxLen: \(n)" }
            return args.isEmpty ? [] : ["FieldCheck.bytes(\(value), \(path)\(args), into: &out)"]
        case .scalar(.bool):
            return []
        case .scalar(.float), .scalar(.double):
            var args = ""
            if required { args += ", required: true" }
            if let n = r.min { args += ", min: \(literal(n))" }
            if let n = r.max { args += ", max: \(literal(n))" }
            return args.isEmpty ? [] : ["FieldCheck.number(Double(\(value)), \(path)\(args), into: &out)"]
        case .scalar(let s):
            // Integers are compared exactly, with the bounds as written (rounded inwards when a
            // bound has a fraction, dropped when the type cannot reach it).
            let unsigned = [.uint32, .uint64, .fixed32, .fixed64].contains(s)
            var args = ""
            if required { args += ", required: true" }
            if let n = integerBound(r.minConstant, lower: true, unsigned: unsigned) { args += ", min: \(n)" }
            if let n = integerBound(r.maxConstant, lower: false, unsigned: unsigned) { args += ", max: \(n)" }
            guard !args.isEmpty else { return [] }
            return unsigned
                ? ["FieldCheck.unsigned(UInt64(\(value)), \(path)\(args), into: &out)"]
                : ["FieldCheck.integer(Int64(\(value)), \(path)\(args), into: &out)"]
        case .enumeration:
            guard required || r.definedOnly else { return [] }
            // protobuf-c stores any number for an enum, closed (proto2) ones included.
            let defined = "{ if case .unrecognized = \(value) { false } else { true } }()"
            return [
                "FieldCheck.enumeration(isZero: \(value).rawValue == 0, isDefined: \(defined), \(path), required: \(required), definedOnly: \(r.definedOnly), into: &out)"
            ]
        }
    }

    /// An integer bound as a Swift literal of the field's width, or nil when no value of the type
    /// can break it (a lower bound below the type's least value, say).
    static func integerBound(_ c: ConstantValue?, lower: Bool, unsigned: Bool) -> String? {
        guard let c else { return nil }
        // The bound as a wide integer: magnitude and sign, rounded inwards for fractions.
        var negative = false
        var magnitude: UInt64
        switch c {
        case .integer(let n, let neg):
            negative = neg && n != 0
            magnitude = n
        case .float(let d):
            let r = lower ? d.rounded(.up) : d.rounded(.down)
            guard r.isFinite else { return nil }
            negative = r < 0
            let m = r.magnitude
            guard m < 18_446_744_073_709_551_616 else { return nil }
            magnitude = UInt64(m)
        default:
            return nil
        }
        if unsigned {
            if negative { return lower ? nil : "0" }
            return String(magnitude)
        }
        if negative {
            if magnitude > UInt64(Int64.max) + 1 { return lower ? nil : "Int64.min" }
            return magnitude == UInt64(Int64.max) + 1 ? "Int64.min" : "-" + String(magnitude)
        }
        if magnitude > UInt64(Int64.max) { return lower ? "Int64.max" : nil }
        return String(magnitude)
    }

    static func literal(_ d: Double) -> String {
        if d == .infinity { return "Double.infinity" }
        if d == -.infinity { return "-Double.infinity" }
        return d == d.rounded() && abs(d) < 1e15 ? String(Int64(d)) : "\(d)"
    }

    static func swiftString(_ s: String) -> String {
        var out = "\""
        for c in s.unicodeScalars {
            switch c {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if c.value < 0x20 || c.value == 0x7F {
                    out += "\\u{\(String(c.value, radix: 16))}"
                } else {
                    out.unicodeScalars.append(c)
                }
            }
        }
        return out + "\""
    }
}

extension FieldRules {
    /// No rules: for a message field checked only for what its own type declares.
    init(location: SourceLocation) { self.location = location }
}
