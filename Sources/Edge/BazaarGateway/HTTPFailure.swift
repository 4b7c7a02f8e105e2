import BazaarCore
import BazaarTransport
import BazaarWire

/// An error answer: HTTP status, a google.rpc.Status-shaped JSON body, extra headers.
struct HTTPFailure: Error {
    let status: Int
    let code: StatusCode
    let message: String
    var details: [ErrorDetail] = []
    var headers: [(String, String)] = []

    init(
        status: Int, code: StatusCode, message: String, details: [ErrorDetail] = [], headers: [(String, String)] = []
    ) {
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = headers
    }

    /// An RPC's failure, with grpc-gateway's mapping from gRPC codes to HTTP statuses.
    init(_ error: RPCError) {
        self.init(status: Self.httpStatus(error.code), code: error.code, message: error.message, details: error.details)
        if let retry = error.metadata["retry-after"] { headers.append(("retry-after", retry)) }
        if error.code == .unauthenticated { headers.append(("www-authenticate", "Bearer realm=\"bazaar\"")) }
    }

    static func httpStatus(_ code: StatusCode) -> Int { code.httpStatus }

    var body: JSONValue { ErrorDetailJSON.status(code: code, message: message, details: details) }
}
