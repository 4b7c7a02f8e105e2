import BazaarCore
import Foundation
import ShopAPI

/// Keyset pagination: a page token is the sort key of the last row served, made opaque (base64url).
/// It is not a secret and not signed: whatever it decodes to is only ever bound as a SQL
/// parameter, so a forged token can only skip around in what the caller may list anyway.
public enum PageToken {
    /// Page size from a request: `0` gives `defaultSize`, anything above `maxSize` is capped.
    public static func size(_ page: Shop_V1_PageRequest?, defaultSize: Int = 20, maxSize: Int = 100) throws(RPCError)
        -> Int
    {
        let asked = Int(page?.pageSize ?? 0)
        guard asked >= 0 else { throw RPCError(.invalidArgument, "page.page_size must not be negative") }
        return asked == 0 ? defaultSize : min(asked, maxSize)
    }

    /// The token for the page after a row with these sort-key values.
    public static func encode(_ values: [String]) -> String {
        let text = "p1\n" + values.joined(separator: "\n")
        return Data(text.utf8).base64EncodedString().replacingOccurrences(of: "+", with: "-")
            .replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
    }

    /// The sort-key values in `token` (`nil` for the first page), which must number `count`.
    public static func decode(_ token: String?, count: Int) throws(RPCError) -> [String]? {
        guard let token, !token.isEmpty else { return nil }
        var b64 = token.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while b64.count % 4 != 0 { b64 += "=" }
        guard token.utf8.count <= 512, let data = Data(base64Encoded: b64),
            let text = String(data: data, encoding: .utf8)
        else {
            throw RPCError(.invalidArgument, "page.page_token is not a token this service issued")
        }
        let parts = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        guard parts.count == count + 1, parts[0] == "p1" else {
            throw RPCError(
                .invalidArgument, "page.page_token is not a token this service issued (or is for another listing)")
        }
        return Array(parts.dropFirst())
    }
}
