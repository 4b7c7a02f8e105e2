import BazaarCore
import BazaarMesh
import BazaarTransport
import Foundation
import HelloAPI
import WellKnownTypes

/// `hello.v1.GreeterService`: the handlers. The generated protocol gives the server its method
/// table; errors are `RPCError`s with a gRPC status (the gateway maps them to HTTP).
struct Greeter: Hello_V1_GreeterService.ServiceProtocol {
    func sayHello(_ request: Hello_V1_SayHelloRequest, context: ServerContext) async throws -> Hello_V1_Greeting {
        let repeats = request.style?.repeat ?? 1
        guard (1...5).contains(repeats == 0 ? 1 : repeats) else {
            throw RPCError(.invalidArgument, "style.repeat must be 1 to 5")
        }
        var text = greeting(request.name, request.mood)
        if request.style?.shout == true { text = text.uppercased() }
        return Hello_V1_Greeting(
            text: Array(repeating: text, count: Int(max(repeats, 1))).joined(separator: " "),
            mood: request.mood, tags: request.tags, at: now())
    }

    func getGreeting(_ request: Hello_V1_GetGreetingRequest, context: ServerContext) async throws -> Hello_V1_Greeting {
        Hello_V1_Greeting(text: greeting(request.name, request.mood), mood: request.mood, at: now())
    }

    func countdown(_ request: Hello_V1_CountdownRequest, responses: RPCWriter<Hello_V1_Tick>, context: ServerContext)
        async throws
    {
        guard (0...100).contains(request.from) else { throw RPCError(.invalidArgument, "from must be 0 to 100") }
        for remaining in stride(from: request.from, through: 0, by: -1) {
            try await responses.write(Hello_V1_Tick(remaining: remaining))
        }
    }

    func join(_ requests: RPCStream<Hello_V1_Word>, context: ServerContext) async throws -> Hello_V1_Sentence {
        var words: [String] = []
        for try await word in requests { words.append(word.text) }
        return Hello_V1_Sentence(text: words.joined(separator: " "), words: Int32(words.count))
    }

    func greeting(_ name: String, _ mood: Hello_V1_Mood) -> String {
        let who = name.isEmpty ? "world" : name
        return mood == .grumpy ? "Oh. It's you, \(who)." : "Hello, \(who)!"
    }

    func now() -> Google_Protobuf_Timestamp {
        let t = Date().timeIntervalSince1970
        return Google_Protobuf_Timestamp(seconds: Int64(t), nanos: Int32((t - t.rounded(.down)) * 1e9))
    }
}

// Mutual TLS as spiffe://<trust domain>/hello (BAZAAR_TLS_DIR), BAZAAR_HOST and BAZAAR_PORT, health
// and reflection beside the service, graceful drain on SIGTERM: see MeshServer.
do {
    let server = try MeshServer(service: "hello", serving: [Greeter()])
    try runBlocking { try await server.run() }
} catch {
    FileHandle.standardError.write(Data("hello: \(error)\n".utf8))
    exit(1)
}
