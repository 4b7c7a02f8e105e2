/// A message whose schema declares field rules (`bazaar.options.v1.rules`): the generated code
/// conforms it, and the generated server code calls ``validate()`` before the handler runs.
public protocol ValidatedMessage {
    /// Appends a violation for every broken rule of this message and the messages inside it;
    /// `prefix` is this message's path in the request (`""` at the top, `"address."` below).
    func collectViolations(_ prefix: String, into violations: inout [FieldViolation])
}

extension ValidatedMessage {
    /// Throws INVALID_ARGUMENT with a `BadRequest` naming every broken rule, or returns.
    public func validate() throws(RPCError) {
        var violations: [FieldViolation] = []
        collectViolations("", into: &violations)
        if !violations.isEmpty { throw RPCError.invalidArgument(violations) }
    }

    /// The violations of this message, empty when it is valid.
    public var violations: [FieldViolation] {
        var out: [FieldViolation] = []
        collectViolations("", into: &out)
        return out
    }
}

extension RPCStream where Element: ValidatedMessage {
    /// The stream with each message checked against its rules as the reader takes it: the first
    /// invalid one fails the read with INVALID_ARGUMENT (the messages before it were taken). The
    /// generated server code hands client- and bidirectional-streaming handlers their requests so.
    public func validated() -> RPCStream<Element> {
        map { message in
            try message.validate()
            return message
        }
    }
}

/// A `pattern` rule's regular expression, compiled once.
public final class ValidationPattern: @unchecked Sendable {
    // Swift's Regex is a value whose compiled program is built once, thread-safely; it is only
    // read here, which is why sharing it across loops is sound.
    private let regex: Regex<AnyRegexOutput>
    public let source: String

    /// Compiles a pattern the code generator has already checked; a pattern that does not
    /// compile matches nothing, so that a bad schema refuses values rather than letting them pass.
    public init(_ source: String) {
        self.source = source
        self.regex = (try? Regex(source)) ?? (try! Regex("(?!)"))
    }

    public func matches(_ value: String) -> Bool { value.contains(regex) }
}

/// The checks the generated validation code calls, one per kind of field; each appends the
/// violations of one value. Field names are autoclosures: a valid request builds no strings.
public enum FieldCheck {
    /// The most violations collected for one request; checks past it do nothing, so a list of
    /// a million bad elements costs a million cheap calls and a bounded answer.
    public static let maxViolations = 100
    public static func string(
        _ value: String, _ field: @autoclosure () -> String, required: Bool = false, minLen: Int? = nil,
        maxLen: Int? = nil, pattern: ValidationPattern? = nil, email: Bool = false, singleLine: Bool = false,
        into out: inout [FieldViolation]
    ) {
        guard out.count < maxViolations else { return }
        if required, value.unicodeScalars.allSatisfy({ $0.properties.isWhitespace }) {
            out.append(FieldViolation(field: field(), description: "\(field()) is required", reason: "REQUIRED"))
            if value.isEmpty { return }
        }
        var lengthBroken = false
        if minLen != nil || maxLen != nil {
            let n = value.unicodeScalars.count
            lengthBroken = (minLen.map { n < $0 } ?? false) || (maxLen.map { n > $0 } ?? false)
            if let minLen, n < minLen {
                let f = field()
                out.append(
                    FieldViolation(
                        field: f, description: "\(f) is shorter than \(minLen) characters", reason: "STRING_TOO_SHORT"))
            }
            if let maxLen, n > maxLen {
                let f = field()
                out.append(
                    FieldViolation(
                        field: f, description: "\(f) is longer than \(maxLen) characters", reason: "STRING_TOO_LONG"))
            }
        }
        if singleLine, hasControlCharacters(value, allowingLineBreaks: false) {
            let f = field()
            out.append(
                FieldViolation(
                    field: f, description: "\(f) contains control characters or line breaks",
                    reason: "CONTROL_CHARACTERS"))
        }
        // An empty optional string is "not given": only `required` and `min_len` speak about it.
        if value.isEmpty { return }
        // A value already too long is not searched: a backtracking pattern over megabytes costs.
        if let pattern, !lengthBroken, !pattern.matches(value) {
            let f = field()
            out.append(
                FieldViolation(
                    field: f, description: "\(f) does not match the pattern \(pattern.source)",
                    reason: "PATTERN_MISMATCH"))
        }
        if email, !isEmail(value) {
            let f = field()
            out.append(FieldViolation(field: f, description: "\(f) is not an email address", reason: "NOT_AN_EMAIL"))
        }
    }

    public static func bytes(
        _ value: [UInt8], _ field: @autoclosure () -> String, required: Bool = false, minLen: Int? = nil,
        maxLen: Int? = nil, into out: inout [FieldViolation]
    ) {
        guard out.count < maxViolations else { return }
        if required, value.isEmpty {
            out.append(FieldViolation(field: field(), description: "\(field()) is required", reason: "REQUIRED"))
        }
        if let minLen, !value.isEmpty, value.count < minLen {
            let f = field()
            out.append(
                FieldViolation(field: f, description: "\(f) is shorter than \(minLen) bytes", reason: "BYTES_TOO_SHORT")
            )
        }
        if let maxLen, value.count > maxLen {
            let f = field()
            out.append(
                FieldViolation(field: f, description: "\(f) is longer than \(maxLen) bytes", reason: "BYTES_TOO_LONG"))
        }
    }

    public static func number(
        _ value: Double, _ field: @autoclosure () -> String, required: Bool = false, min: Double? = nil,
        max: Double? = nil, into out: inout [FieldViolation]
    ) {
        guard out.count < maxViolations else { return }
        if required, value == 0 {
            out.append(FieldViolation(field: field(), description: "\(field()) is required", reason: "REQUIRED"))
            return
        }
        if let min, !(value >= min) {
            let f = field()
            out.append(
                FieldViolation(field: f, description: "\(f) must be at least \(text(min))", reason: "NUMBER_TOO_SMALL"))
        }
        if let max, !(value <= max) {
            let f = field()
            out.append(
                FieldViolation(field: f, description: "\(f) must be at most \(text(max))", reason: "NUMBER_TOO_LARGE"))
        }
    }

    /// An integer field's value against exact bounds (64-bit values do not all fit a `Double`).
    public static func integer(
        _ value: Int64, _ field: @autoclosure () -> String, required: Bool = false, min: Int64? = nil,
        max: Int64? = nil, into out: inout [FieldViolation]
    ) {
        guard out.count < maxViolations else { return }
        if required, value == 0 {
            out.append(FieldViolation(field: field(), description: "\(field()) is required", reason: "REQUIRED"))
            return
        }
        if let min, value < min {
            let f = field()
            out.append(
                FieldViolation(field: f, description: "\(f) must be at least \(min)", reason: "NUMBER_TOO_SMALL"))
        }
        if let max, value > max {
            let f = field()
            out.append(FieldViolation(field: f, description: "\(f) must be at most \(max)", reason: "NUMBER_TOO_LARGE"))
        }
    }

    /// An unsigned integer field's value against exact bounds.
    public static func unsigned(
        _ value: UInt64, _ field: @autoclosure () -> String, required: Bool = false, min: UInt64? = nil,
        max: UInt64? = nil, into out: inout [FieldViolation]
    ) {
        guard out.count < maxViolations else { return }
        if required, value == 0 {
            out.append(FieldViolation(field: field(), description: "\(field()) is required", reason: "REQUIRED"))
            return
        }
        if let min, value < min {
            let f = field()
            out.append(
                FieldViolation(field: f, description: "\(f) must be at least \(min)", reason: "NUMBER_TOO_SMALL"))
        }
        if let max, value > max {
            let f = field()
            out.append(FieldViolation(field: f, description: "\(f) must be at most \(max)", reason: "NUMBER_TOO_LARGE"))
        }
    }

    /// A list's or map's size.
    public static func items(
        _ count: Int, _ field: @autoclosure () -> String, required: Bool = false, min: Int? = nil, max: Int? = nil,
        into out: inout [FieldViolation]
    ) {
        guard out.count < maxViolations else { return }
        if required, count == 0 {
            out.append(FieldViolation(field: field(), description: "\(field()) is required", reason: "REQUIRED"))
            return
        }
        if let min, count < min {
            let f = field()
            out.append(
                FieldViolation(
                    field: f, description: "\(f) needs at least \(min) \(min == 1 ? "entry" : "entries")",
                    reason: "TOO_FEW_ITEMS"))
        }
        if let max, count > max {
            let f = field()
            out.append(
                FieldViolation(field: f, description: "\(f) holds at most \(max) entries", reason: "TOO_MANY_ITEMS"))
        }
    }

    /// A message field that must be present.
    public static func present(_ isSet: Bool, _ field: @autoclosure () -> String, into out: inout [FieldViolation]) {
        guard out.count < maxViolations else { return }
        if !isSet {
            out.append(FieldViolation(field: field(), description: "\(field()) is required", reason: "REQUIRED"))
        }
    }

    /// An enum's value: `isZero` for `required`, `isDefined` for `defined_only`.
    public static func enumeration(
        isZero: Bool, isDefined: Bool, _ field: @autoclosure () -> String, required: Bool, definedOnly: Bool,
        into out: inout [FieldViolation]
    ) {
        guard out.count < maxViolations else { return }
        if definedOnly, !isDefined {
            let f = field()
            out.append(
                FieldViolation(field: f, description: "\(f) is not one of its enum's values", reason: "ENUM_UNDEFINED"))
        } else if required, isZero {
            out.append(FieldViolation(field: field(), description: "\(field()) is required", reason: "REQUIRED"))
        }
    }

    /// Control characters: C0, DEL, C1, and the Unicode line and paragraph separators; with
    /// `allowingLineBreaks`, a newline or a tab is not one (multi-line text).
    public static func hasControlCharacters(_ value: String, allowingLineBreaks: Bool) -> Bool {
        value.unicodeScalars.contains { c in
            let control = c.value < 0x20 || (0x7F...0x9F).contains(c.value) || c.value == 0x2028 || c.value == 0x2029
            return control && !(allowingLineBreaks && (c == "\n" || c == "\t"))
        }
    }

    /// An email address as mail systems take it (RFC 5321's dot-atom local part, a DNS domain of
    /// at least two labels), ASCII only (international domains in their punycode form): nothing
    /// that an SMTP server, a header or a log could read as more than one address.
    public static func isEmail(_ value: String) -> Bool {
        guard value.utf8.count <= 254,
            value.unicodeScalars.allSatisfy({ $0.isASCII && $0.value >= 0x20 && $0.value != 0x7F })
        else { return false }
        let parts = value.split(separator: "@", omittingEmptySubsequences: false)
        guard parts.count == 2 else { return false }
        let (local, domain) = (parts[0], parts[1])
        let atomExtra = Set("!#$%&'*+/=?^_`{|}~-")
        guard (1...64).contains(local.count), !local.hasPrefix("."), !local.hasSuffix("."), !local.contains(".."),
            local.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "." || atomExtra.contains($0) })
        else { return false }
        let labels = domain.split(separator: ".", omittingEmptySubsequences: false)
        return domain.count <= 253 && labels.count >= 2
            && labels.allSatisfy { l in
                (1...63).contains(l.count) && !l.hasPrefix("-") && !l.hasSuffix("-")
                    && l.allSatisfy { $0.isLetter || $0.isNumber || $0 == "-" }
            }
    }

    /// A bound as people write it: `1000`, not `1000.0`.
    public static func text(_ d: Double) -> String {
        d == d.rounded() && abs(d) < 1e15 ? String(Int64(d)) : String(d)
    }
}
