import Testing

@testable import Web

/// Escaping by construction: data interpolated into a template never becomes markup.
struct HTMLTests {
    @Test func textIsEscapedInContentAndAttributes() {
        let name = "<script>alert(1)</script>"
        let title = "\" onmouseover=\"alert('x')"
        let page: HTML = "<h1 title=\"\(title)\">\(name)</h1>"
        #expect(
            page.text
                == "<h1 title=\"&quot; onmouseover=&quot;alert(&#39;x&#39;)\">&lt;script&gt;alert(1)&lt;/script&gt;</h1>"
        )
    }

    @Test func markupIsKeptAndNotEscapedTwice() {
        let item: HTML = "<li>\("a & b")</li>"
        let list: HTML = "<ul>\([item, item])</ul>"
        #expect(list.text == "<ul><li>a &amp; b</li><li>a &amp; b</li></ul>")
        let wrapped: HTML = "<div>\(item)</div>"
        #expect(wrapped.text == "<div><li>a &amp; b</li></div>")
    }

    @Test func controlCharactersAndAbsentValuesAndNumbers() {
        let none: String? = nil
        let page: HTML = "<p>\(none)\(42)\("a\u{0}b\tc")</p>"
        #expect(page.text == "<p>42a\u{FFFD}b\tc</p>")
    }

    @Test(arguments: [
        ("/products/7", true), ("https://shop.example/x", true), ("HTTP://a/", true),
        ("javascript:alert(1)", false), (" javascript:alert(1)", false), ("JaVaScRiPt:x", false),
        ("data:text/html,x", false), ("//evil.example/", false), ("/\\evil.example", false), ("", false),
        ("vbscript:x", false),
    ])
    func onlySameSitePathsAndWebAddressesAreLinks(url: String, safe: Bool) {
        #expect(HTML.isSafeURL(url) == safe)
        let link: HTML = "<a href=\"\(url: url)\">x</a>"
        #expect(link.text == (safe ? "<a href=\"\(HTML.escape(url))\">x</a>" : "<a href=\"#\">x</a>"))
    }

    @Test func queryPartsArePercentEncoded() {
        #expect(URLText.component("a b&c=d/é") == "a%20b%26c%3Dd%2F%C3%A9")
        #expect(URLText.query([("q", "red shoes"), ("page", ""), ("min", "10")]) == "?q=red%20shoes&min=10")
        #expect(URLText.query([]) == "")
    }
}

struct FormDataTests {
    @Test func decodesAsBrowsersEncode() throws {
        let form = try FormData(query: "q=red+shoes&min=10&tag=a&tag=b%26c&empty=&flag&name=%C3%A9t%C3%A9")
        #expect(form["q"] == "red shoes")
        #expect(form["min"] == "10")
        #expect(form.all("tag") == ["a", "b&c"])
        #expect(form["empty"] == "" && form["flag"] == "")
        #expect(form["name"] == "été")
        #expect(form["absent"] == nil)
        #expect(try FormData(query: "") == FormData())
        #expect(try FormData(query: "&&a=1&") == FormData([("a", "1")]))
    }

    @Test func refusesBrokenEscapesAndFloods() throws {
        #expect(throws: FormData.Malformed.self) { try FormData(query: "a=%2") }
        #expect(throws: FormData.Malformed.self) { try FormData(query: "a=%zz") }
        let flood = (0...FormData.maxPairs).map { "k\($0)=v" }.joined(separator: "&")
        #expect(throws: FormData.Malformed.self) { try FormData(query: flood) }
        // Invalid UTF-8 is replaced, not fatal.
        #expect(try FormData(query: "a=%FF")["a"] == "\u{FFFD}")
    }

    @Test func cookiesAreReadAndWrittenWithTheirAttributes() {
        #expect(Cookies.parse("a=1; bz_session=xyz; a=2") == ["a": "1", "bz_session": "xyz"])
        #expect(Cookies.parse(nil).isEmpty)
        #expect(Cookies.set("bz_session", "abc", secure: false) == "bz_session=abc; Path=/; HttpOnly; SameSite=Lax")
        #expect(
            Cookies.set("bz_session", "", secure: true, maxAge: 0)
                == "bz_session=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0; Secure")
    }
}
