import BazaarWire

/// The web app's static files. They live in this repository (nothing is fetched from elsewhere at
/// run time) and are compiled in, so a deployment is one binary. Each is served under a name
/// that carries a hash of its content, and cached by browsers for a year: a changed file has a
/// new name.
enum Assets {
    struct File: Sendable {
        let contentType: String
        let body: [UInt8]
        let hash: String
    }

    static let stylesheet = file(Stylesheet.text, "text/css; charset=utf-8")
    static let stylesheetPath = "/static/site.\(stylesheet.hash).css"

    static let script = file(Script.text, "text/javascript; charset=utf-8")
    static let scriptPath = "/static/site.\(script.hash).js"

    static let byName: [String: File] = [
        "site.\(stylesheet.hash).css": stylesheet, "site.\(script.hash).js": script,
    ]

    static func file(_ text: String, _ type: String) -> File {
        let body = Array(text.utf8)
        return File(contentType: type, body: body, hash: ContentHash.hex(body))
    }

    static func serve(_ name: String, method: String) -> WebResponse {
        guard method == "GET" || method == "HEAD" else {
            return Pages.error(405, "Files can only be read.", headers: [("allow", "GET, HEAD")])
        }
        let demo = name.hasPrefix("demo/") ? DemoArt.file(String(name.dropFirst(5))) : nil
        guard let f = byName[name] ?? demo else { return Pages.error(404, "There is no such file.") }
        return WebResponse(
            status: 200,
            headers: [
                ("content-type", f.contentType), ("cache-control", "public, max-age=31536000, immutable"),
                ("x-content-type-options", "nosniff"), ("etag", "\"\(f.hash)\""),
            ], body: f.body)
    }
}
