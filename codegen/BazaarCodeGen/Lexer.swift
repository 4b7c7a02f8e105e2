/// A position in a `.proto` file; every diagnostic carries one.
public struct SourceLocation: Sendable, Hashable, CustomStringConvertible {
    public var file: String
    public var line: Int
    public var column: Int

    public init(file: String, line: Int, column: Int) {
        self.file = file
        self.line = line
        self.column = column
    }

    public var description: String { "\(file):\(line):\(column)" }
}

/// A compile error: one line, with the place it happened.
public struct Diagnostic: Error, Sendable, Hashable, CustomStringConvertible {
    public var location: SourceLocation
    public var message: String

    public init(_ location: SourceLocation, _ message: String) {
        self.location = location
        self.message = message
    }

    public var description: String { "\(location): error: \(message)" }
}

enum TokenKind: Equatable {
    case identifier
    case integer
    case float
    case string
    case symbol
    case end
}

struct Token {
    var kind: TokenKind
    /// Source text for identifiers, numbers and symbols; the decoded bytes for strings.
    var text: String
    var bytes: [UInt8] = []
    var location: SourceLocation
    /// Comment lines right before this token (not separated by a blank line).
    var leadingComment: String?
    /// A comment on the same line, right after this token.
    var trailingComment: String?
    var endLine: Int
}

/// Splits a `.proto` file into tokens, attaching comments for documentation.
struct Lexer {
    private let file: String
    private let src: [UInt8]
    private var i = 0
    private var line = 1
    private var col = 1

    init(file: String, text: String) {
        self.file = file
        self.src = Array(text.utf8)
    }

    private var here: SourceLocation { SourceLocation(file: file, line: line, column: col) }

    private func peek(_ k: Int = 0) -> UInt8? { i + k < src.count ? src[i + k] : nil }

    private mutating func advance() {
        if src[i] == UInt8(ascii: "\n") {
            line += 1
            col = 1
        } else if src[i] & 0xC0 != 0x80 {
            col += 1
        }
        i += 1
    }

    mutating func tokenize() throws(Diagnostic) -> [Token] {
        var tokens: [Token] = []
        var pending: [(text: String, line: Int, endLine: Int)] = []
        while true {
            // Whitespace and comments.
            while let c = peek() {
                if c == UInt8(ascii: " ") || c == UInt8(ascii: "\t") || c == UInt8(ascii: "\r")
                    || c == UInt8(ascii: "\n") || c == 0x0C || c == 0x0B
                {
                    advance()
                } else if c == UInt8(ascii: "/"), peek(1) == UInt8(ascii: "/") {
                    let startLine = line
                    advance()
                    advance()
                    let start = i
                    while let d = peek(), d != UInt8(ascii: "\n") { advance() }
                    let text = String(decoding: src[start..<i], as: UTF8.self)
                    pending.append((text, startLine, startLine))
                } else if c == UInt8(ascii: "/"), peek(1) == UInt8(ascii: "*") {
                    let startLoc = here
                    advance()
                    advance()
                    let start = i
                    var closed = false
                    while peek() != nil {
                        if peek() == UInt8(ascii: "*"), peek(1) == UInt8(ascii: "/") {
                            closed = true
                            break
                        }
                        advance()
                    }
                    guard closed else { throw Diagnostic(startLoc, "unterminated block comment") }
                    var text = String(decoding: src[start..<i], as: UTF8.self)
                    advance()
                    advance()
                    text = text.split(separator: "\n", omittingEmptySubsequences: false)
                        .map { line in
                            var s = Substring(line)
                            while s.first == " " || s.first == "\t" { s.removeFirst() }
                            if s.first == "*" { s.removeFirst() }
                            return String(s)
                        }.joined(separator: "\n")
                    pending.append((text, startLoc.line, line))
                } else {
                    break
                }
            }
            // Comments on the same line as the previous token trail it; the rest lead the next one.
            if var last = tokens.last, let first = pending.first, first.line == last.endLine, last.kind != .end {
                last.trailingComment = first.text.trimmingSpaces()
                tokens[tokens.count - 1] = last
                pending.removeFirst()
            }
            var leading: String?
            if !pending.isEmpty {
                // Keep only the block that touches the token (no blank line between).
                var block: [String] = []
                var nextLine = line
                for comment in pending.reversed() {
                    if comment.endLine + 1 < nextLine { break }
                    block.insert(comment.text, at: 0)
                    nextLine = comment.line
                }
                if !block.isEmpty {
                    leading = block.map { $0.trimmingSpaces(onlyOneLeading: true) }.joined(separator: "\n")
                }
                pending.removeAll()
            }
            let start = here
            guard let c = peek() else {
                tokens.append(Token(kind: .end, text: "", location: start, endLine: line))
                return tokens
            }
            var tok: Token
            if c.isLetter || c == UInt8(ascii: "_") {
                let s = i
                while let d = peek(), d.isLetter || d.isDigit || d == UInt8(ascii: "_") { advance() }
                tok = Token(
                    kind: .identifier, text: String(decoding: src[s..<i], as: UTF8.self), location: start, endLine: line
                )
            } else if c.isDigit || (c == UInt8(ascii: ".") && (peek(1)?.isDigit ?? false)) {
                tok = try number(start)
            } else if c == UInt8(ascii: "\"") || c == UInt8(ascii: "'") {
                tok = try string(start)
            } else if c < 0x20 || c >= 0x7F {
                throw Diagnostic(
                    start,
                    "unexpected character \(c < 0x80 ? "0x" + String(c, radix: 16) : "(non-ASCII)") outside a string")
            } else {
                advance()
                tok = Token(kind: .symbol, text: String(UnicodeScalar(c)), location: start, endLine: line)
            }
            tok.leadingComment = leading
            tokens.append(tok)
        }
    }

    private mutating func number(_ start: SourceLocation) throws(Diagnostic) -> Token {
        let s = i
        var isFloat = false
        if peek() == UInt8(ascii: "0"), let x = peek(1), x == UInt8(ascii: "x") || x == UInt8(ascii: "X") {
            advance()
            advance()
            guard peek()?.isHexDigit ?? false else { throw Diagnostic(start, "hex literal needs at least one digit") }
            while peek()?.isHexDigit ?? false { advance() }
        } else {
            while let d = peek(), d.isDigit { advance() }
            if peek() == UInt8(ascii: ".") {
                isFloat = true
                advance()
                while let d = peek(), d.isDigit { advance() }
            }
            if let e = peek(), e == UInt8(ascii: "e") || e == UInt8(ascii: "E") {
                isFloat = true
                advance()
                if let sgn = peek(), sgn == UInt8(ascii: "+") || sgn == UInt8(ascii: "-") { advance() }
                guard peek()?.isDigit ?? false else { throw Diagnostic(start, "exponent needs at least one digit") }
                while let d = peek(), d.isDigit { advance() }
            }
            if let f = peek(), f == UInt8(ascii: "f") || f == UInt8(ascii: "F") {
                isFloat = true
                advance()
            }
        }
        if let d = peek(), d.isLetter || d == UInt8(ascii: "_") {
            throw Diagnostic(here, "need space between number and identifier")
        }
        return Token(
            kind: isFloat ? .float : .integer, text: String(decoding: src[s..<i], as: UTF8.self), location: start,
            endLine: line)
    }

    private mutating func string(_ start: SourceLocation) throws(Diagnostic) -> Token {
        let quote = src[i]
        advance()
        var out: [UInt8] = []
        while true {
            guard let c = peek(), c != UInt8(ascii: "\n") else {
                throw Diagnostic(start, "unterminated string literal")
            }
            if c == quote {
                advance()
                break
            }
            if c != UInt8(ascii: "\\") {
                out.append(c)
                advance()
                continue
            }
            let escLoc = here
            advance()
            guard let e = peek() else { throw Diagnostic(start, "unterminated string literal") }
            advance()
            switch e {
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "a"): out.append(0x07)
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "v"): out.append(0x0B)
            case UInt8(ascii: "?"): out.append(UInt8(ascii: "?"))
            case UInt8(ascii: "\\"), UInt8(ascii: "'"), UInt8(ascii: "\""): out.append(e)
            case UInt8(ascii: "x"), UInt8(ascii: "X"):
                var v: UInt32 = 0
                var n = 0
                while n < 2, let h = peek(), let d = h.hexValue {
                    v = v * 16 + UInt32(d)
                    advance()
                    n += 1
                }
                guard n > 0 else { throw Diagnostic(escLoc, "\\x escape needs a hex digit") }
                out.append(UInt8(v))
            case UInt8(ascii: "0")...UInt8(ascii: "7"):
                var v = UInt32(e - UInt8(ascii: "0"))
                var n = 1
                while n < 3, let o = peek(), o >= UInt8(ascii: "0"), o <= UInt8(ascii: "7") {
                    v = v * 8 + UInt32(o - UInt8(ascii: "0"))
                    advance()
                    n += 1
                }
                guard v <= 0xFF else { throw Diagnostic(escLoc, "octal escape out of range") }
                out.append(UInt8(v))
            case UInt8(ascii: "u"), UInt8(ascii: "U"):
                let count = e == UInt8(ascii: "u") ? 4 : 8
                var v: UInt32 = 0
                for _ in 0..<count {
                    guard let h = peek(), let d = h.hexValue else {
                        throw Diagnostic(escLoc, "\\\(UnicodeScalar(e)) escape needs \(count) hex digits")
                    }
                    v = v * 16 + UInt32(d)
                    advance()
                }
                guard let scalar = Unicode.Scalar(v) else {
                    throw Diagnostic(escLoc, "invalid Unicode code point in escape")
                }
                out.append(contentsOf: Array(String(Character(scalar)).utf8))
            default:
                throw Diagnostic(escLoc, "invalid escape sequence \\\(UnicodeScalar(e))")
            }
        }
        return Token(
            kind: .string, text: String(decoding: out, as: UTF8.self), bytes: out, location: start, endLine: line)
    }
}

extension UInt8 {
    var isLetter: Bool { (self >= 0x41 && self <= 0x5A) || (self >= 0x61 && self <= 0x7A) }
    var isDigit: Bool { self >= 0x30 && self <= 0x39 }
    var isHexDigit: Bool { hexValue != nil }
    var hexValue: UInt8? {
        switch self {
        case 0x30...0x39: return self - 0x30
        case 0x41...0x46: return self - 0x41 + 10
        case 0x61...0x66: return self - 0x61 + 10
        default: return nil
        }
    }
}

extension String {
    func trimmingSpaces(onlyOneLeading: Bool = false) -> String {
        var s = Substring(self)
        if onlyOneLeading {
            if s.first == " " { s.removeFirst() }
        } else {
            while s.first == " " || s.first == "\t" { s.removeFirst() }
        }
        while s.last == " " || s.last == "\t" || s.last == "\n" { s.removeLast() }
        return String(s)
    }
}
