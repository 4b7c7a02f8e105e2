import BazaarRedis
import BazaarTransport
import Glibc
import TestSupport
import Testing

/// Against a real redis-server: `make test` starts one and names it in BAZAAR_TEST_REDIS
/// (`host:port`); without it these tests do not run (and run-tests.sh fails if they did not).
let testRedis: String? = getenv("BAZAAR_TEST_REDIS").map { String(cString: $0) }

@Suite(.serialized, .enabled(if: testRedis != nil, "set BAZAAR_TEST_REDIS to host:port"))
struct RedisTests {
    let client = RedisClient(address: testRedis ?? "127.0.0.1:1")!

    @Test func valuesRoundTripBinarySafe() async throws {
        let bytes: [UInt8] = [0, 13, 10, 255, 36, 42]  // NUL, CR LF, and RESP's own markers
        #expect(try await client.send([Array("SET".utf8), Array("t:bin".utf8), bytes]) == .simple("OK"))
        #expect(try await client.send([Array("GET".utf8), Array("t:bin".utf8)]) == .bulk(bytes))
        #expect(try await client.send("GET", "t:missing") == .null)
        _ = try await client.send("DEL", "t:list")
        #expect(try await client.send("RPUSH", "t:list", "a", "b", "c").integer == 3)
        #expect(
            try await client.send("LRANGE", "t:list", "0", "-1")
                == .array([.bulk(Array("a".utf8)), .bulk(Array("b".utf8)), .bulk(Array("c".utf8))]))
    }

    @Test func errorRepliesFailTheCommandNotTheConnection() async throws {
        _ = try await client.send("SET", "t:str", "x")
        do {
            _ = try await client.send("LPUSH", "t:str", "y")
            Issue.record("WRONGTYPE was not reported")
        } catch let e as RedisError {
            #expect(e.kind == .server && e.message.hasPrefix("WRONGTYPE"))
        }
        #expect(try await client.send("GET", "t:str").string == "x")
    }

    @Test func concurrentCommandsPipelineInOrder() async throws {
        _ = try await client.send("DEL", "t:counter")
        let results = try await withThrowingTaskGroup(of: Int64.self) { group in
            for _ in 0..<500 { group.addTask { try await client.send("INCR", "t:counter").integer! } }
            var all: [Int64] = []
            for try await r in group { all.append(r) }
            return all
        }
        #expect(Set(results) == Set(1...500))
        #expect(try await client.send("GET", "t:counter").string == "500")
    }

    @Test func aKilledConnectionFailsInFlightCommandsAndTheClientReconnects() async throws {
        let victim = RedisClient(address: testRedis!)!
        let id = try await victim.send("CLIENT", "ID").integer!
        // BLPOP waits on the server; killing the connection fails it as a connection error.
        let waiting = Task { try await victim.send("BLPOP", "t:never", "30") }
        try await eventually("BLPOP to block on the server") {
            try await client.send("CLIENT", "LIST", "ID", String(id)).string?.contains("cmd=blpop") == true
        }
        #expect(try await client.send("CLIENT", "KILL", "ID", String(id)).integer == 1)
        do {
            _ = try await waiting.value
            Issue.record("the blocked command survived its connection")
        } catch let e as RedisError {
            #expect(e.kind == .connection)
        }
        // The next command connects again.
        #expect(try await victim.send("PING") == .simple("PONG"))
        victim.close()
    }

    @Test func concurrentFirstCommandsShareOneConnection() async throws {
        let fresh = RedisClient(address: testRedis!)!
        let ids = try await withThrowingTaskGroup(of: Int64.self) { group in
            for _ in 0..<50 { group.addTask { try await fresh.send("CLIENT", "ID").integer! } }
            var all = Set<Int64>()
            for try await id in group { all.insert(id) }
            return all
        }
        #expect(ids.count == 1)
        fresh.close()
    }

    @Test func anUnreachableServerFailsWithAClearError() async {
        let nobody = RedisClient(host: "127.0.0.1", port: 1)
        do {
            _ = try await nobody.send("PING")
            Issue.record("PING reached nothing")
        } catch let e as RedisError {
            #expect(e.kind == .connection && e.message.contains("127.0.0.1:1") || e.kind == .connection)
        } catch {
            Issue.record("unexpected \(error)")
        }
    }
}

/// Issue 15, item 12: a Redis that accepts the connection and then says nothing (a stopped or
/// wedged server) fails commands at their timeout instead of holding them for ever. The server
/// here is a listening socket that never answers: the failure does not depend on any timing.
@Suite struct RedisTimeoutTests {
    @Test func aServerThatNeverRepliesFailsTheCommandAndTheConnection() async throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        #expect(fd >= 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } }
        #expect(listen(fd, 8) == 0)
        _ = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        let port = Int(UInt16(bigEndian: addr.sin_port))
        let group = EventLoopGroup(count: 1)
        defer { group.shutdown() }
        let c = try await RedisConnection.connect(host: "127.0.0.1", port: port, on: group.loops[0])
        do {
            _ = try await c.send([Array("PING".utf8)], timeout: .milliseconds(200))
            Issue.record("a command to a silent server returned")
        } catch let e as RedisError {
            #expect(e.kind == .connection && e.message.hasPrefix("no reply within"))
        }
        // The connection is dropped: what follows fails at once instead of queueing behind it.
        #expect(!c.isConnected)
        await #expect(throws: RedisError.self) { try await c.send([Array("PING".utf8)]) }
    }
}
