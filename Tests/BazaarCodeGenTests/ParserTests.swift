import Testing

@testable import BazaarCodeGen

@Suite("Parser and resolver details")
struct ParserTests {
    func compile(_ source: String) throws -> FileModel {
        try Compiler(protoPaths: ["/usr/include"]).compile(source: source, path: "t.proto").file("t.proto")!
    }

    @Test("comments are kept for documentation")
    func comments() throws {
        let f = try compile(
            """
            syntax = "proto3";
            package p;

            // Detached, not kept.

            // A thing.
            // Second line.
            message Thing {
              int32 a = 1; // trailing for a
              /* block for b */
              string b = 2;
            }
            """)
        let m = f.messages[0]
        #expect(m.comments.leading == "A thing.\nSecond line.")
        #expect(m.fields[0].comments.trailing == "trailing for a")
        #expect(m.fields[1].comments.leading == "block for b")
    }

    @Test("aggregate options, negative enum values, aliases, nested types, proto3 optional, streaming")
    func features() throws {
        let f = try compile(
            """
            syntax = "proto3";
            package p.q;
            import "google/protobuf/descriptor.proto";
            message Rule { string get = 1; repeated Rule more = 2; }
            extend google.protobuf.MethodOptions { Rule rule = 50001; }
            enum E { option allow_alias = true; E_ZERO = 0; E_NEG = -5; E_ALIAS = -5; }
            message M {
              message Inner { E e = 1; }
              optional int32 maybe = 1;
              map<string, Inner> inners = 2;
              oneof pick { string s = 3; Inner i = 4; }
              repeated sint64 packed = 5;
              reserved 10 to 12, 15;
              reserved "gone";
            }
            service S {
              rpc U(M) returns (M) { option (rule) = { get: "/x" more { get: "/y" } more: [{ get: "/z" }] }; }
              rpc C(stream M) returns (M);
              rpc SS(M) returns (stream M);
              rpc B(stream M) returns (stream M);
            }
            """)
        let m = f.messages[1]
        #expect(m.fullName == "p.q.M")
        #expect(m.fields[0].isProto3Optional && m.fields[0].oneof?.isSynthetic == true)
        #expect(m.oneofs.map(\.name) == ["pick", "_maybe"])
        #expect(m.fields[1].isMap && m.messages.map(\.name) == ["Inner", "InnersEntry"])
        #expect(m.fields[4].isPacked)
        #expect(m.reservedRanges == [10...12, 15...15] && m.reservedNames == ["gone"])
        #expect(f.enums[0].values.map(\.number) == [0, -5, -5])
        let s = f.services[0]
        #expect(
            s.methods.map { "\($0.clientStreaming)\($0.serverStreaming)" } == [
                "falsefalse", "truefalse", "falsetrue", "truetrue",
            ])
        guard case .aggregate(let entries)? = s.methods[0].options.extension("p.q.rule") else {
            Issue.record("option not resolved")
            return
        }
        #expect(entries.map(\.name) == ["get", "more", "more"])
    }

    @Test("protoc-c names")
    func cNames() {
        #expect(
            CNames.typeName("shop_x.v1beta.OrderLineItem.foo_bar2Baz") == "ShopX__V1beta__OrderLineItem__FooBar2Baz")
        #expect(CNames.lowerName("shop.v1.OrderItem.HTTPKind") == "shop__v1__order_item__httpkind")
        #expect(CNames.upperName("a.b.MEntry") == "A__B__MENTRY")
        #expect(CNames.fileIdentifier("shop/v1/x.proto") == "shop_2fv1_2fx_2eproto")
    }

    @Test("Swift names")
    func swiftNames() {
        #expect(SwiftNames.lowerCamel("image_urls") == "imageURLs")
        #expect(SwiftNames.lowerCamel("user_id") == "userID")
        #expect(SwiftNames.lowerCamel("id") == "id")
        #expect(SwiftNames.lowerCamel("URLPath") == "urlPath")
        #expect(SwiftNames.typeName(package: "shop.v1", relative: "Order.Item") == "Shop_V1_Order.Item")
        #expect(
            SwiftNames.typeName(package: "google.protobuf", relative: "Field.Type") == "Google_Protobuf_Field.Type_")
    }

    @Test("a parse error never crashes, whatever the input")
    func garbage() {
        var rng = SystemRandomNumberGenerator()
        let alphabet = Array(
            "message enum service rpc returns stream option import package syntax = ; { } [ ] ( ) < > , . \" ' / * 0x1 -2 1.5e3 int32 string map oneof reserved to max true abc\n"
        )
        for _ in 0..<3000 {
            let text = String(
                (0..<Int.random(in: 0..<200, using: &rng)).map { _ in alphabet.randomElement(using: &rng)! })
            _ = try? Compiler(protoPaths: ["/usr/include"]).compile(source: text, path: "fuzz.proto")
        }
    }
}
