import BazaarCore
import CBazaarEvent
import Glibc
import Synchronization

/// Where the C engines' own diagnostics go.
///
/// libevent (and evdns inside it) writes its messages to standard error in its own format, such as
/// "[msg] Nameserver 10.96.0.10:53 has failed: Bad response 5 (refused)". In a service whose logs
/// are one JSON object per line, those lines are lost to a log shipper or break its parser. The
/// transport routes them here instead; telemetry installs a handler that logs them as JSON with
/// `library: "libevent"`. Until a handler is installed they still reach standard error, prefixed.
public enum LibraryLog {
    /// libevent's severities.
    public enum Severity: Sendable, Equatable {
        case debug, message, warning, error
    }

    public typealias Handler = @Sendable (_ library: String, _ severity: Severity, _ message: String) -> Void

    private static let handler = Lock<Handler?>(nil)

    /// Sends every later library message to `handler` (`nil`: back to standard error).
    public static func install(_ handler: Handler?) {
        _ = callbackOnce
        self.handler.withLock { $0 = handler }
    }

    /// Registers the libevent callback, once per process (EventLoop does it before the first loop).
    static let callbackOnce: Void = {
        event_set_log_callback { severity, text in
            LibraryLog.emit(libeventSeverity: severity, text.map { String(cString: $0) } ?? "")
        }
    }()

    static func emit(libeventSeverity: Int32, _ message: String) {
        let severity: Severity
        switch libeventSeverity {
        case EVENT_LOG_DEBUG: severity = .debug
        case EVENT_LOG_MSG: severity = .message
        case EVENT_LOG_WARN: severity = .warning
        default: severity = .error
        }
        if let handler = handler.withLock({ $0 }) {
            handler("libevent", severity, message)
        } else {
            let line = "libevent: \(message)\n"
            _ = line.withCString { write(STDERR_FILENO, $0, strlen($0)) }
        }
    }
}
