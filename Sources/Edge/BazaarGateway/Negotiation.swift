import BazaarWire

/// Which representation a client accepts (`Accept`), for unary and streaming routes.
enum Negotiation {
    enum Format: Equatable {
        case json
        case sse
        case ndjson

        var contentType: String {
            switch self {
            case .json: "application/json"
            case .sse: "text/event-stream"
            case .ndjson: "application/x-ndjson"
            }
        }

        /// One message of a stream in this format.
        func frame(_ json: JSONValue, event: String? = nil) -> [UInt8] {
            switch self {
            case .sse:
                Array((event.map { "event: \($0)\n" } ?? "").utf8) + Array("data: ".utf8) + json.serialized()
                    + Array("\n\n".utf8)
            case .ndjson, .json: json.serialized() + [10]
            }
        }
    }

    /// The format to answer in, `nil` when nothing acceptable is offered (406). Streams default to
    /// NDJSON when the client takes anything.
    static func accept(_ header: String?, streaming: Bool) -> Format? {
        guard let header, !header.isEmpty else { return streaming ? .ndjson : .json }
        var best: (Format, Double)?
        for item in header.split(separator: ",") {
            let parts = item.split(separator: ";").map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
            guard let type = parts.first else { continue }
            let q = parts.dropFirst().first { $0.hasPrefix("q=") }.flatMap { Double($0.dropFirst(2)) } ?? 1
            if q <= 0 { continue }
            let format: Format?
            switch type {
            case "application/json", "application/*+json": format = .json
            case "text/event-stream": format = streaming ? .sse : nil
            case "application/x-ndjson", "application/jsonl": format = streaming ? .ndjson : nil
            case "*/*", "application/*": format = streaming ? .ndjson : .json
            default: format = nil
            }
            if let format, best == nil || q > best!.1 { best = (format, q) }
        }
        return best?.0
    }
}
