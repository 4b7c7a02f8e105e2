/// Pictures for the demo catalog (`bazaar seed`), drawn here so that a shop started offline still
/// has a shop window: `/static/demo/<colour>-<n>.svg`, a simple shape (eight kinds) in one of the
/// seed's six colours. Real products carry their own image addresses.
enum DemoArt {
    static let palette: [String: (fill: String, tint: String)] = [
        "red": ("#c0392b", "#fbeaea"), "blue": ("#2e6db4", "#e8f0fa"), "green": ("#2f8f5b", "#e7f5ec"),
        "black": ("#2b2f33", "#eceeef"), "white": ("#f4f4f2", "#d9dde1"), "yellow": ("#e0b020", "#fbf5df"),
    ]

    static let shapes = [
        "<circle cx=\"160\" cy=\"160\" r=\"92\"/>",
        "<rect x=\"76\" y=\"76\" width=\"168\" height=\"168\" rx=\"28\"/>",
        "<path d=\"M160 62 L262 246 L58 246 Z\"/>",
        "<path d=\"M160 56 L264 160 L160 264 L56 160 Z\"/>",
        "<ellipse cx=\"160\" cy=\"160\" rx=\"112\" ry=\"72\"/>",
        "<path d=\"M160 58 L190 128 L266 134 L208 184 L226 258 L160 218 L94 258 L112 184 L54 134 L130 128 Z\"/>",
        "<rect x=\"70\" y=\"112\" width=\"180\" height=\"96\" rx=\"48\"/>",
        "<path d=\"M110 70 H210 L250 160 L210 250 H110 L70 160 Z\"/>",
    ]

    /// The file for `name` (`blue-3.svg`), or `nil` when it is not one of them.
    static func file(_ name: String) -> Assets.File? {
        guard name.hasSuffix(".svg") else { return nil }
        let parts = name.dropLast(4).split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 2, let colour = palette[String(parts[0])], let n = Int(parts[1]),
            shapes.indices.contains(n)
        else { return nil }
        let svg = """
            <svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 320 320" width="320" height="320">\
            <rect width="320" height="320" fill="\(colour.tint)"/>\
            <g fill="\(colour.fill)" stroke="#00000033" stroke-width="4">\(shapes[n])</g></svg>
            """
        return Assets.file(svg, "image/svg+xml")
    }
}
