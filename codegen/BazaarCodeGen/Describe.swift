/// `bazaar-codegen --describe`: the API contract of the services, in a form people read.
enum Describe {
    static func text(_ files: [FileModel]) -> String {
        var out = ""
        for file in files {
            for s in file.services {
                out += "\(s.fullName)  (\(file.path))\n"
                for m in s.methods {
                    let r = MethodRules(m, in: s)
                    let kind = ServiceEmitter.kind(m)
                    var auth = r.auth.level
                    if !r.auth.roles.isEmpty { auth += " roles=" + r.auth.roles.joined(separator: ",") }
                    if !r.auth.callers.isEmpty { auth += " callers=" + r.auth.callers.joined(separator: ",") }
                    let deadline = r.deadlineMs.map { "\($0)ms" } ?? "none"
                    let retry = r.idempotency == "unknown" ? "no" : "yes (\(r.idempotency))"
                    out += "  \(m.name)  [\(kind)]  \(m.input.name) -> \(m.output.name)\n"
                    for h in r.http {
                        out +=
                            "      HTTP \(h.method) \(h.path)" + (h.body.isEmpty ? "" : "  body=\(h.body)")
                            + (r.successStatus == 200 ? "" : "  -> \(r.successStatus)") + "\n"
                    }
                    if r.http.isEmpty { out += "      (mesh only, no HTTP binding)\n" }
                    out += "      auth: \(auth); deadline: \(deadline); retry-safe: \(retry)\n"
                }
                out += "\n"
            }
        }
        return out
    }
}
