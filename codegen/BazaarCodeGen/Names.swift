/// Naming rules shared by the emitters.
///
/// The C names follow protoc-c's conventions exactly, so that code written against `protoc-c`
/// output compiles against ours: `shop.v1.Order.Item` becomes the struct `Shop__V1__Order__Item`,
/// the functions `shop__v1__order__item__*` and the macros `SHOP__V1__ORDER__ITEM__*`.
enum CNames {
    /// `foo_bar` -> `FooBar`.
    static func toCamel(_ s: String) -> String {
        var out = ""
        var upper = true
        for c in s {
            if c == "_" {
                upper = true
                continue
            }
            out.append(upper ? Character(c.uppercased()) : c)
            upper = false
        }
        return out
    }

    /// `OrderItem` -> `order_item`; `HTTPKind` -> `httpkind`; `foo2Bar` -> `foo2_bar`.
    static func camelToLower(_ s: String) -> String { camelTo(s, upper: false) }
    static func camelToUpper(_ s: String) -> String { camelTo(s, upper: true) }

    private static func camelTo(_ s: String, upper: Bool) -> String {
        var out = ""
        var wasUpper = true
        for c in s {
            let isUpper = c.isASCII && c.isUppercase
            if isUpper {
                if !wasUpper { out.append("_") }
                out += upper ? String(c) : c.lowercased()
            } else {
                out += upper ? c.uppercased() : String(c)
            }
            wasUpper = isUpper
        }
        return out
    }

    static func typeName(_ fullName: String) -> String {
        fullName.split(separator: ".").map { toCamel(String($0)) }.joined(separator: "__")
    }

    static func lowerName(_ fullName: String) -> String {
        fullName.split(separator: ".").map { camelToLower(String($0)) }.joined(separator: "__")
    }

    static func upperName(_ fullName: String) -> String {
        fullName.split(separator: ".").map { camelToUpper(String($0)) }.joined(separator: "__")
    }

    /// `shop/v1/cart.proto` -> `shop_2fv1_2fcart_2eproto` (header guards).
    static func fileIdentifier(_ path: String) -> String {
        var out = ""
        for b in path.utf8 {
            if b.isLetter || b.isDigit {
                out.append(Character(UnicodeScalar(b)))
            } else {
                out += "_" + String(b, radix: 16)
            }
        }
        return out
    }

    /// `shop/v1/cart.proto` -> `shop/v1/cart`.
    static func stem(_ path: String) -> String { path.hasSuffix(".proto") ? String(path.dropLast(6)) : path }

    static func oneofCaseType(_ m: MessageModel, _ o: OneofModel) -> String {
        typeName(m.fullName) + "__" + toCamel(o.name) + "Case"
    }
    static func oneofCaseMember(_ o: OneofModel) -> String { o.name + "_case" }
    static func oneofNotSet(_ m: MessageModel, _ o: OneofModel) -> String {
        upperName(m.fullName) + "__" + camelToUpper(o.name) + "__NOT_SET"
    }
    static func oneofCaseValue(_ m: MessageModel, _ o: OneofModel, _ f: FieldModel) -> String {
        upperName(m.fullName) + "__" + camelToUpper(o.name) + "_" + camelToUpper(f.name)
    }

    static func enumValue(_ e: EnumModel, _ v: EnumValueModel) -> String { upperName(e.fullName) + "__" + v.name }

    static let cKeywords: Set<String> = [
        "auto", "break", "case", "char", "const", "continue", "default", "do", "double", "else", "enum", "extern",
        "float", "for", "goto", "if", "inline", "int", "long", "register", "restrict", "return", "short", "signed",
        "sizeof", "static", "struct", "switch", "typedef", "union", "unsigned", "void", "volatile", "while", "_Bool",
    ]

    /// Struct member name of a field (protoc-c appends `_` to C keywords).
    static func member(_ f: FieldModel) -> String { cKeywords.contains(f.name) ? f.name + "_" : f.name }
}

/// Swift names: `shop.v1.Order.Item` -> `Shop_V1_Order.Item`, `unit_price` -> `unitPrice`.
enum SwiftNames {
    static let keywords: Set<String> = [
        "associatedtype", "class", "deinit", "enum", "extension", "fileprivate", "func", "import", "init", "inout",
        "internal", "let", "open", "operator", "private", "precedencegroup", "protocol", "public", "rethrows",
        "static", "struct", "subscript", "typealias", "var", "break", "case", "catch", "continue", "default", "defer",
        "do", "else", "fallthrough", "for", "guard", "if", "in", "repeat", "return", "throw", "switch", "where",
        "while", "Any", "as", "await", "false", "is", "nil", "self", "Self", "super", "throws", "true", "try",
        "_", "Type", "Protocol", "some", "any",
    ]

    /// Names a generated member must not take because the message protocol uses them.
    static let reservedMembers: Set<String> = [
        "unknownFields", "serializedBytes", "hashValue", "description", "debugDescription",
    ]

    static func escape(_ s: String) -> String { keywords.contains(s) ? "`\(s)`" : s }

    static func upperCamel(_ s: String) -> String { CNames.toCamel(s) }

    /// Words written in capitals in Swift names, per the API Design Guidelines (`userID`, `imageURLs`).
    static let acronyms: [String: String] = [
        "id": "ID", "ids": "IDs", "url": "URL", "urls": "URLs", "uri": "URI", "http": "HTTP", "https": "HTTPS",
        "json": "JSON", "uuid": "UUID", "api": "API", "html": "HTML", "sku": "SKU", "ip": "IP", "tls": "TLS",
    ]

    /// `user_id` -> `userID`, `image_urls` -> `imageURLs`, `URLPath` -> `urlPath`.
    static func lowerCamel(_ s: String) -> String {
        let words = s.split(separator: "_").map(String.init)
        if words.count > 1 || s.contains("_") {
            var out = ""
            for (i, w) in words.enumerated() {
                if i == 0 {
                    out += lowerLeading(w)
                } else if let a = acronyms[w.lowercased()], w == w.lowercased() {
                    out += a
                } else {
                    out += w.prefix(1).uppercased() + w.dropFirst()
                }
            }
            return out.isEmpty ? s : out
        }
        return lowerLeading(s)
    }

    /// Lowers the leading run of capitals: `URLPath` -> `urlPath`, `ID` -> `id`, `Name` -> `name`.
    static func lowerLeading(_ s: String) -> String {
        let chars = Array(s)
        var i = 0
        while i < chars.count, chars[i].isUppercase { i += 1 }
        if i == 0 { return s }
        if i == chars.count { return s.lowercased() }
        let lowerCount = i > 1 ? i - 1 : 1
        return String(chars[0..<lowerCount]).lowercased() + String(chars[lowerCount...])
    }

    static func fieldName(_ f: FieldModel) -> String {
        var n = lowerCamel(f.name)
        if reservedMembers.contains(n) { n += "_p" }
        return n
    }

    /// Top-level Swift type for a message or enum: package parts joined by `_`, then nesting by `.`.
    static func typeName(package: String, relative: String) -> String {
        let prefix = package.split(separator: ".").map { upperCamel(String($0)) }.joined(separator: "_")
        let parts = relative.split(separator: ".").map(String.init)
        let head = prefix.isEmpty ? nestedName(parts[0]) : prefix + "_" + parts[0]
        return ([head] + parts.dropFirst().map(nestedName)).joined(separator: ".")
    }

    /// A nested type may not be called `Type` or `Protocol` in Swift (`Foo.Type` means the
    /// metatype), nor shadow `Self`/`Any`; such names get a suffix.
    static func nestedName(_ name: String) -> String {
        ["Type", "Protocol", "Self", "Any"].contains(name) ? name + "_" : name
    }

    static func messageType(_ m: MessageModel) -> String { typeName(package: m.file.package, relative: m.relativeName) }

    static func enumType(_ e: EnumModel) -> String {
        let rel = e.file.package.isEmpty ? e.fullName : String(e.fullName.dropFirst(e.file.package.count + 1))
        return typeName(package: e.file.package, relative: rel)
    }

    /// Enum case: strip the enum's SCREAMING_CASE prefix (`ORDER_STATUS_PAID` in `OrderStatus` -> `paid`).
    static func enumCase(_ e: EnumModel, _ v: EnumValueModel) -> String {
        let prefix = CNames.camelToUpper(e.name) + "_"
        var name = v.name
        if name.hasPrefix(prefix), name.count > prefix.count {
            let rest = String(name.dropFirst(prefix.count))
            if let first = rest.first, !first.isNumber { name = rest }
        }
        var out = lowerCamel(name.lowercased())
        if out.first?.isNumber ?? true { out = "_" + out }
        return escape(out)
    }

    static func serviceName(_ s: ServiceModel) -> String { typeName(package: s.file.package, relative: s.name) }
}
