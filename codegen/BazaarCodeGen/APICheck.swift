/// Compares two versions of a set of `.proto` files and lists the changes that would break a
/// client or a service built on the old version: what `make api-check` refuses.
///
/// The wire and source rules follow `buf breaking`'s FILE category (the same rule names, so a
/// verdict can be compared with buf's); two rules are Bazaar's own, because only Bazaar's tools read
/// those options: a removed or changed HTTP binding (`google.api.http`, which REST clients call)
/// and weakened field rules (`bazaar.options.v1.rules`, which handlers rely on).
public enum APICheck {
    public struct Change: Sendable, Hashable, CustomStringConvertible {
        /// `buf breaking`'s rule name, or `BAZAAR_HTTP_BINDING` / `BAZAAR_RULES_WEAKENED`.
        public var rule: String
        /// Where the change is (the new file's position; the old one's for something removed).
        public var location: SourceLocation
        public var message: String
        /// A warning is printed but does not fail the check (tightened field rules).
        public var isWarning = false

        public var description: String {
            "\(location): \(isWarning ? "warning" : "breaking"): \(message) [\(rule)]"
        }
    }

    /// Every change from `old` to `new`, breaking ones first, each group in file order.
    public static func compare(old: [FileModel], new: [FileModel]) -> [Change] {
        var out: [Change] = []
        let newFiles = Dictionary(new.map { ($0.path, $0) }, uniquingKeysWith: { a, _ in a })
        for o in old {
            guard let n = newFiles[o.path] else {
                out.append(
                    Change(
                        rule: "FILE_NO_DELETE", location: SourceLocation(file: o.path, line: 1, column: 1),
                        message: "file \(o.path) was removed"))
                continue
            }
            out += compare(file: o, n)
        }
        return out.filter { !$0.isWarning } + out.filter(\.isWarning)
    }

    static func compare(file o: FileModel, _ n: FileModel) -> [Change] {
        var out: [Change] = []
        let top = SourceLocation(file: n.path, line: 1, column: 1)
        func breaking(_ rule: String, _ at: SourceLocation, _ message: String) {
            out.append(Change(rule: rule, location: at, message: message))
        }
        if o.package != n.package {
            breaking("FILE_SAME_PACKAGE", top, "package changed from '\(o.package)' to '\(n.package)'")
        }
        if o.syntax != n.syntax {
            breaking("FILE_SAME_SYNTAX", top, "syntax changed from \(o.syntax) to \(n.syntax)")
        }
        // The file options buf's FILE rules compare, by their effective values (unset = default).
        let (oldOptions, newOptions) = (standardOptions(o.options), standardOptions(n.options))
        for (name, fallback) in fileOptionDefaults.sorted(by: { $0.key < $1.key }) {
            let before = oldOptions[name] ?? fallback
            let after = newOptions[name] ?? fallback
            if before != after {
                breaking(
                    "FILE_SAME_" + name.uppercased(), top, "file option \(name) changed from \(before) to \(after)")
            }
        }

        // Messages and their fields.
        let newMessages = Dictionary(n.allMessages.map { ($0.fullName, $0) }, uniquingKeysWith: { a, _ in a })
        for om in o.allMessages where !om.isMapEntry {
            guard let nm = newMessages[om.fullName] else {
                breaking("MESSAGE_NO_DELETE", top, "message \(om.fullName) was removed")
                continue
            }
            out += compare(message: om, nm)
        }
        // Enums and their values.
        let newEnums = Dictionary(n.allEnums.map { ($0.fullName, $0) }, uniquingKeysWith: { a, _ in a })
        for oe in o.allEnums {
            guard let ne = newEnums[oe.fullName] else {
                breaking("ENUM_NO_DELETE", top, "enum \(oe.fullName) was removed")
                continue
            }
            let values = Dictionary(ne.values.map { ($0.number, $0) }, uniquingKeysWith: { a, _ in a })
            for v in oe.values {
                guard let nv = values[v.number] else {
                    breaking(
                        "ENUM_VALUE_NO_DELETE", ne.location,
                        "value \(v.name) (\(v.number)) of \(oe.fullName) was removed")
                    continue
                }
                // Aliases (allow_alias) may give a number several names: the old name must remain one.
                if !ne.values.contains(where: { $0.number == v.number && $0.name == v.name }) {
                    breaking(
                        "ENUM_VALUE_SAME_NAME", ne.location,
                        "value \(v.number) of \(oe.fullName) was renamed from \(v.name) to \(nv.name)")
                }
            }
            for range in oe.reservedRanges where !covered(range, by: ne.reservedRanges) {
                breaking(
                    "RESERVED_ENUM_NO_DELETE", ne.location, "reserved range \(range) of \(oe.fullName) was removed")
            }
            for name in oe.reservedNames where !ne.reservedNames.contains(name) {
                breaking(
                    "RESERVED_ENUM_NO_DELETE", ne.location, "reserved name '\(name)' of \(oe.fullName) was removed")
            }
        }
        // Services, methods and their HTTP bindings.
        let newServices = Dictionary(n.services.map { ($0.fullName, $0) }, uniquingKeysWith: { a, _ in a })
        for os in o.services {
            guard let ns = newServices[os.fullName] else {
                breaking("SERVICE_NO_DELETE", top, "service \(os.fullName) was removed")
                continue
            }
            let methods = Dictionary(ns.methods.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
            for om in os.methods {
                guard let nm = methods[om.name] else {
                    breaking(
                        "RPC_NO_DELETE", ns.methods.first?.location ?? top,
                        "method \(os.fullName).\(om.name) was removed")
                    continue
                }
                out += compare(method: om, in: os, nm, in: ns)
            }
        }
        return out
    }

    static func compare(message o: MessageModel, _ n: MessageModel) -> [Change] {
        var out: [Change] = []
        func breaking(_ rule: String, _ at: SourceLocation, _ message: String) {
            out.append(Change(rule: rule, location: at, message: message))
        }
        let fields = Dictionary(n.fields.map { ($0.number, $0) }, uniquingKeysWith: { a, _ in a })
        for f in o.fields {
            let what = "field \(f.number) '\(f.name)' of \(o.fullName)"
            guard let g = fields[f.number] else {
                let moved = n.fields.first { $0.name == f.name }
                breaking(
                    "FIELD_NO_DELETE", moved?.location ?? n.location,
                    moved.map { "\(what) was renumbered to \($0.number): the wire changes" }
                        ?? "\(what) was removed")
                continue
            }
            if g.name != f.name {
                breaking("FIELD_SAME_NAME", g.location, "\(what) was renamed to '\(g.name)'")
            }
            if g.jsonName != f.jsonName {
                breaking(
                    "FIELD_SAME_JSON_NAME", g.location,
                    "\(what) changed its JSON name from \(f.jsonName) to \(g.jsonName)")
            }
            if typeName(g) != typeName(f) {
                breaking("FIELD_SAME_TYPE", g.location, "\(what) changed type from \(typeName(f)) to \(typeName(g))")
            } else if cardinality(g) != cardinality(f) {
                breaking(
                    "FIELD_SAME_LABEL", g.location,
                    "\(what) changed from \(cardinality(f)) to \(cardinality(g))")
            }
            if f.realOneof?.name != g.realOneof?.name {
                breaking(
                    "FIELD_SAME_ONEOF", g.location,
                    "\(what) moved from \(f.realOneof.map { "oneof \($0.name)" } ?? "no oneof") to \(g.realOneof.map { "oneof \($0.name)" } ?? "no oneof")"
                )
            }
            out += compare(rules: FieldRules(f), FieldRules(g), what, g.location)
        }
        // A new field old clients do not send must not be one the request cannot do without.
        let oldNumbers = Set(o.fields.map(\.number))
        for g in n.fields where !oldNumbers.contains(g.number) {
            guard let r = FieldRules(g), r.required || (r.minItems ?? 0) > 0 || (r.minLen ?? 0) > 0 else { continue }
            breaking(
                "BAZAAR_NEW_REQUIRED_FIELD", g.location,
                "field \(g.number) '\(g.name)' of \(o.fullName) is new and required: old clients do not send it")
        }
        for range in o.reservedRanges where !covered(range, by: n.reservedRanges) {
            breaking("RESERVED_MESSAGE_NO_DELETE", n.location, "reserved range \(range) of \(o.fullName) was removed")
        }
        for name in o.reservedNames where !n.reservedNames.contains(name) {
            breaking("RESERVED_MESSAGE_NO_DELETE", n.location, "reserved name '\(name)' of \(o.fullName) was removed")
        }
        return out
    }

    static func compare(method o: MethodModel, in os: ServiceModel, _ n: MethodModel, in ns: ServiceModel) -> [Change] {
        var out: [Change] = []
        let what = "method \(os.fullName).\(o.name)"
        func breaking(_ rule: String, _ message: String) {
            out.append(Change(rule: rule, location: n.location, message: message))
        }
        if o.input.fullName != n.input.fullName {
            breaking("RPC_SAME_REQUEST_TYPE", "\(what) takes \(n.input.fullName) instead of \(o.input.fullName)")
        }
        if o.output.fullName != n.output.fullName {
            breaking("RPC_SAME_RESPONSE_TYPE", "\(what) returns \(n.output.fullName) instead of \(o.output.fullName)")
        }
        if o.clientStreaming != n.clientStreaming {
            breaking("RPC_SAME_CLIENT_STREAMING", "\(what) changed whether the client streams")
        }
        if o.serverStreaming != n.serverStreaming {
            breaking("RPC_SAME_SERVER_STREAMING", "\(what) changed whether the server streams")
        }
        let (oldRules, newRules) = (MethodRules(o, in: os), MethodRules(n, in: ns))
        if oldRules.idempotency != newRules.idempotency {
            breaking(
                "RPC_SAME_IDEMPOTENCY_LEVEL",
                "\(what) changed its idempotency_level (\(oldRules.idempotency) to \(newRules.idempotency))")
        }
        let kept = Set(newRules.http.map(binding))
        for b in oldRules.http.map(binding) where !kept.contains(b) {
            breaking("BAZAAR_HTTP_BINDING", "\(what) no longer answers \(b): REST clients call it")
        }
        return out
    }

    static func covered(_ r: ClosedRange<Int64>, by ranges: [ClosedRange<Int64>]) -> Bool {
        ranges.contains { $0.lowerBound <= r.lowerBound && $0.upperBound >= r.upperBound }
    }

    static func binding(_ h: MethodRules.HTTP) -> String {
        var s = "\(h.method) \(h.path)"
        if !h.body.isEmpty { s += " (body \(h.body))" }
        if !h.responseBody.isEmpty { s += " (response_body \(h.responseBody))" }
        return s
    }

    /// Weakened rules break the service (a handler relied on them); tightened ones may refuse
    /// requests old clients send, which is worth a warning.
    static func compare(rules o: FieldRules?, _ n: FieldRules?, _ what: String, _ at: SourceLocation) -> [Change] {
        guard o != nil || n != nil else { return [] }
        let a = o ?? FieldRules(location: at)
        let b = n ?? FieldRules(location: at)
        var weaker: [String] = []
        var stronger: [String] = []
        func fmt(_ d: Double) -> String { FieldRules.literal(d) }
        func flag(_ name: String, _ x: Bool, _ y: Bool) {
            if x && !y { weaker.append("\(name) dropped") } else if !x && y { stronger.append("\(name) added") }
        }
        func lower(_ name: String, _ x: Double?, _ y: Double?) {
            // A lower bound: dropping or lowering it lets more through.
            switch (x, y) {
            case (let x?, nil): weaker.append("\(name) \(fmt(x)) dropped")
            case (let x?, let y?) where y < x: weaker.append("\(name) lowered from \(fmt(x)) to \(fmt(y))")
            case (nil, let y?): stronger.append("\(name) \(fmt(y)) added")
            case (let x?, let y?) where y > x: stronger.append("\(name) raised from \(fmt(x)) to \(fmt(y))")
            default: break
            }
        }
        func upper(_ name: String, _ x: Double?, _ y: Double?) {
            switch (x, y) {
            case (let x?, nil): weaker.append("\(name) \(fmt(x)) dropped")
            case (let x?, let y?) where y > x: weaker.append("\(name) raised from \(fmt(x)) to \(fmt(y))")
            case (nil, let y?): stronger.append("\(name) \(fmt(y)) added")
            case (let x?, let y?) where y < x: stronger.append("\(name) lowered from \(fmt(x)) to \(fmt(y))")
            default: break
            }
        }
        flag("required", a.required, b.required)
        flag("email", a.email, b.email)
        flag("single_line", a.singleLine, b.singleLine)
        flag("defined_only", a.definedOnly, b.definedOnly)
        lower("min_len", a.minLen.map { Double($0) }, b.minLen.map { Double($0) })
        upper("max_len", a.maxLen.map { Double($0) }, b.maxLen.map { Double($0) })
        lower("min", a.min, b.min)
        upper("max", a.max, b.max)
        lower("min_items", a.minItems.map { Double($0) }, b.minItems.map { Double($0) })
        upper("max_items", a.maxItems.map { Double($0) }, b.maxItems.map { Double($0) })
        if a.pattern != b.pattern {
            // Two regular expressions cannot be compared: any change may let new values through.
            if a.pattern == nil { stronger.append("pattern added") } else { weaker.append("pattern changed") }
        }
        var out: [Change] = []
        if !weaker.isEmpty {
            out.append(
                Change(
                    rule: "BAZAAR_RULES_WEAKENED", location: at,
                    message: "\(what): rules weakened (\(weaker.joined(separator: ", "))): handlers rely on them"))
        }
        if !stronger.isEmpty {
            out.append(
                Change(
                    rule: "BAZAAR_RULES_TIGHTENED", location: at,
                    message:
                        "\(what): rules tightened (\(stronger.joined(separator: ", "))): old clients' requests may now be refused",
                    isWarning: true))
        }
        return out
    }

    static func typeName(_ f: FieldModel) -> String {
        if let entry = f.mapEntry {
            return "map<\(typeName(entry.fields[0])), \(typeName(entry.fields[1]))>"
        }
        switch f.type {
        case .scalar(let s): return s.rawValue
        case .message(let m): return m.fullName
        case .enumeration(let e): return e.fullName
        }
    }

    static func cardinality(_ f: FieldModel) -> String {
        if f.isMap { return "map" }
        if f.isRepeated { return "repeated" }
        if f.label == .required { return "required" }
        if f.isProto3Optional { return "optional" }
        if case .message = f.type { return "singular" }
        return f.containingMessage?.file.isProto3 == false ? "optional" : "singular"
    }

    /// The file options buf breaking's FILE category compares, with the value each has when unset.
    static let fileOptionDefaults: [String: String] = [
        "java_package": "\"\"", "java_outer_classname": "\"\"", "java_multiple_files": "false",
        "java_string_check_utf8": "false", "optimize_for": "SPEED", "go_package": "\"\"",
        "cc_generic_services": "false", "java_generic_services": "false", "py_generic_services": "false",
        "php_generic_services": "false", "cc_enable_arenas": "true", "objc_class_prefix": "\"\"",
        "csharp_namespace": "\"\"", "swift_prefix": "\"\"", "php_class_prefix": "\"\"",
        "php_namespace": "\"\"", "php_metadata_namespace": "\"\"", "ruby_package": "\"\"",
    ]

    /// A file's standard options as text, by name.
    static func standardOptions(_ options: ResolvedOptions) -> [String: String] {
        var out: [String: String] = [:]
        for item in options.items {
            if case .standard(let s) = item.field { out[s.name] = text(item.value) }
        }
        return out
    }

    static func text(_ v: ConstantValue) -> String {
        switch v {
        case .identifier(let s, let negative): return (negative ? "-" : "") + s
        case .integer(let n, let negative): return (negative ? "-" : "") + String(n)
        case .float(let d): return String(d)
        case .string(let b): return "\"" + String(decoding: b, as: UTF8.self) + "\""
        case .aggregate, .list: return "{...}"
        }
    }
}
