/// Emits Swift service code: server protocol, client and method table.
struct ServiceEmitter {
    let file: FileModel
    func emit(_ w: inout CodeWriter) {}
}
