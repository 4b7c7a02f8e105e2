import BazaarAuth
import BazaarCore
import BazaarTelemetry
import ShopAPI

/// Keeps a ``RevocationList`` current from the accounts service, for the processes that act on
/// access tokens they did not just verify: the gateway, and the web app with its sessions.
public enum RevocationFollower {
    /// Every `every`, the revocations the accounts service recorded since the last answer (with
    /// five seconds of overlap, for transactions that committed late). While accounts cannot be
    /// reached, the list stays as it was; a warning says so once it has lasted ten seconds (not
    /// at startup, when accounts may simply not be ready yet). Runs until the task is cancelled.
    public static func follow(
        _ list: RevocationList, from accounts: Shop_V1_AccountsService.Client, every: Duration, logger: Logger
    ) async {
        var since: Int64 = 0
        var lastSuccess = ContinuousClock.now
        var warned = false
        while !Task.isCancelled {
            do {
                let r = try await accounts.listRevocations(
                    Shop_V1_ListRevocationsRequest(sinceMicros: max(0, since - 5_000_000)),
                    options: CallOptions(timeout: .seconds(2)))
                list.apply(
                    r.revocations.map { ($0.userID, Double($0.revokedBeforeMicros) / 1e6) },
                    now: Double(r.nowMicros) / 1e6)
                since = r.nowMicros
                lastSuccess = .now
                if warned { logger.warning("token revocations are followed again") }
                warned = false
            } catch {
                if !warned && ContinuousClock.now - lastSuccess > .seconds(10) {
                    logger.warning(
                        "cannot fetch token revocations from accounts for 10 s; revoked tokens may pass meanwhile",
                        [("error", .string("\(error)"))])
                    warned = true
                }
            }
            try? await Task.sleep(for: every)
        }
    }
}
