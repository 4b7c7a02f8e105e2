/// A `google.api.http` path template, parsed:
///
/// ```
/// Template = "/" Segments [ ":" Verb ]
/// Segment  = "*" | "**" | LITERAL | "{" FieldPath [ "=" Segments ] "}"
/// ```
///
/// `{id}` is `{id=*}`: one segment. `{name=shelves/*/books/*}` captures several segments,
/// slashes included; `**` (at most one, and last) matches the rest of the path.
public struct PathTemplate: Sendable, Hashable, CustomStringConvertible {
    public enum Segment: Sendable, Hashable {
        case literal(String)
        case any  // *
        case rest  // **
    }

    /// A variable: the field path it sets and the segments it spans.
    public struct Variable: Sendable, Hashable {
        public var fieldPath: [String]
        public var start: Int
        public var end: Int  // exclusive; for a `**` variable, the end of the path
    }

    public let segments: [Segment]
    public let variables: [Variable]
    public let verb: String?
    public let description: String

    public struct ParseError: Error, CustomStringConvertible, Sendable {
        public let description: String
    }

    public init(_ text: String) throws(ParseError) {
        description = text
        func fail(_ why: String) -> ParseError { ParseError(description: "path template \(text): \(why)") }
        guard text.hasPrefix("/") else { throw fail("must start with /") }
        var body = Substring(text.dropFirst())
        // The verb is a ":" after the last "/" and outside braces.
        var verb: String?
        var depth = 0
        var lastColon: Substring.Index?
        for i in body.indices {
            switch body[i] {
            case "{": depth += 1
            case "}": depth -= 1
            case "/": lastColon = nil
            case ":" where depth == 0: lastColon = i
            default: break
            }
        }
        if let c = lastColon {
            verb = String(body[body.index(after: c)...])
            body = body[..<c]
            guard let v = verb, !v.isEmpty, v.allSatisfy(Self.isLiteralChar) else { throw fail("bad verb") }
        }
        self.verb = verb
        var segments: [Segment] = []
        var variables: [Variable] = []
        var i = body.startIndex
        func literalOrWildcard(_ s: Substring) throws(ParseError) -> Segment {
            if s == "*" { return .any }
            if s == "**" { return .rest }
            guard !s.isEmpty, s.allSatisfy(Self.isLiteralChar) else { throw fail("bad segment '\(s)'") }
            return .literal(String(s))
        }
        while i < body.endIndex {
            if body[i] == "{" {
                guard let close = body[i...].firstIndex(of: "}") else { throw fail("unclosed {") }
                let inside = body[body.index(after: i)..<close]
                let parts = inside.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                let path = parts[0].split(separator: ".", omittingEmptySubsequences: false).map(String.init)
                guard path.allSatisfy({ !$0.isEmpty && $0.allSatisfy { $0.isLetter || $0.isNumber || $0 == "_" } })
                else {
                    throw fail("bad field path '\(parts[0])'")
                }
                let start = segments.count
                if parts.count == 2 {
                    guard !parts[1].isEmpty else { throw fail("empty pattern for {\(parts[0])}") }
                    for s in parts[1].split(separator: "/", omittingEmptySubsequences: false) {
                        segments.append(try literalOrWildcard(s))
                    }
                } else {
                    segments.append(.any)
                }
                guard !variables.contains(where: { $0.fieldPath == path }) else {
                    throw fail("{\(parts[0])} appears twice")
                }
                variables.append(Variable(fieldPath: path, start: start, end: segments.count))
                i = body.index(after: close)
            } else {
                let end = body[i...].firstIndex(of: "/") ?? body.endIndex
                let s = body[i..<end]
                guard !s.contains("{"), !s.contains("}") else { throw fail("a variable must be a whole segment") }
                segments.append(try literalOrWildcard(s))
                i = end
            }
            if i < body.endIndex {
                guard body[i] == "/" else { throw fail("expected / after a variable") }
                i = body.index(after: i)
                if i == body.endIndex { throw fail("trailing /") }
            }
        }
        guard !segments.isEmpty else { throw fail("no segments") }
        if let r = segments.firstIndex(of: .rest), r != segments.count - 1 { throw fail("** must be the last segment") }
        self.segments = segments
        self.variables = variables
    }

    static func isLiteralChar(_ c: Character) -> Bool {
        c.isASCII && (c.isLetter || c.isNumber || "-_.~!$&'()+,;=@%".contains(c))
    }

    /// The variable values if `path` (its segments, percent-decoded, and its verb) matches.
    public func match(_ path: [String], verb: String?) -> [([String], String)]? {
        guard verb == self.verb else { return nil }
        let hasRest = segments.last == .rest
        guard hasRest ? path.count >= segments.count - 1 : path.count == segments.count else { return nil }
        for (n, s) in segments.enumerated() {
            switch s {
            case .literal(let l): if path[n] != l { return nil }
            case .any: if path[n].isEmpty { return nil }
            case .rest: break
            }
        }
        return variables.map { v in
            let end = segments[v.end - 1] == .rest ? path.count : v.end
            return (v.fieldPath, path[v.start..<end].joined(separator: "/"))
        }
    }

    /// Ordering for "the most specific template wins": segment by segment, a literal beats a
    /// wildcard, which beats `**`; then more segments win; then a verb wins.
    public func isMoreSpecific(than other: PathTemplate) -> Bool {
        func rank(_ s: Segment) -> Int {
            switch s {
            case .literal: 2
            case .any: 1
            case .rest: 0
            }
        }
        for (a, b) in zip(segments, other.segments) where rank(a) != rank(b) { return rank(a) > rank(b) }
        if segments.count != other.segments.count { return segments.count > other.segments.count }
        return (verb != nil) && other.verb == nil
    }

    /// The shape that decides which requests match: two templates with the same shape are
    /// ambiguous for one method.
    public var shape: String {
        segments.map { s in
            switch s {
            case .literal(let l): l
            case .any: "*"
            case .rest: "**"
            }
        }.joined(separator: "/") + (verb.map { ":" + $0 } ?? "")
    }
}
