import BazaarCore
import BazaarPostgres
import BazaarRedis
import BazaarTelemetry

/// Turns what the data stores throw into statuses a caller can act on, in one place for every
/// service: an unreachable store is UNAVAILABLE (retry-safe calls are retried by the mesh), a
/// serialization failure or deadlock is ABORTED, anything else is INTERNAL with a generic message.
/// The store's own message (which may quote data) goes only to the log.
public struct StoreErrorInterceptor: ServerInterceptor {
    public let logger: Logger

    public init(logger: Logger) { self.logger = logger }

    public func intercept(_ context: ServerContext, next: @Sendable (ServerContext) async throws -> Void)
        async throws
    {
        do {
            try await next(context)
        } catch let error as PostgresError {
            throw Self.status(for: error, method: context.method.path, logger: logger)
        } catch let error as RedisError {
            logger.error(
                "redis failed", [("method", .string(context.method.path)), ("error", .string(error.description))])
            throw RPCError(.unavailable, "the cart store is unavailable")
        }
    }

    public static func status(for error: PostgresError, method: String, logger: Logger) -> RPCError {
        logger.error(
            "database statement failed",
            [
                ("method", .string(method)), ("sqlstate", .string(error.sqlState)),
                ("error", .string(error.message)),
            ])
        if error.isConnectionError || error.sqlState == "57P01" || error.sqlState == "57P03"
            || error.sqlState == "53300"
        {
            return RPCError(.unavailable, "the database is unavailable")
        }
        if error.sqlState == "40001" || error.sqlState == "40P01" {
            return RPCError(.aborted, "conflict with a concurrent change; try again")
        }
        if error.sqlState == "57014" { return RPCError(.deadlineExceeded, "the statement was cancelled") }
        // Class 22 (data exception: a malformed date, a number out of range) comes from a value
        // the caller sent, as a parameter: the caller's mistake, not the server's.
        if error.sqlState.hasPrefix("22") {
            return RPCError(
                .invalidArgument, "a value in the request is malformed or out of range (sqlstate \(error.sqlState))")
        }
        return RPCError(.internal, "internal error (sqlstate \(error.sqlState))")
    }
}
