"""Opens N idle mTLS HTTP/2 connections to a server and holds them until stdin closes.

  python idle_connections.py HOST PORT N CA CERT KEY

Each connection completes the TLS handshake (ALPN h2, client certificate), sends the HTTP/2
preface and an empty SETTINGS frame, and waits. Prints "held N" once all are open."""
import asyncio
import ssl
import sys

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])


async def main():
    host, port, n, ca, cert, key = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), *sys.argv[4:7]
    ctx = ssl.create_default_context(cafile=ca)
    ctx.load_cert_chain(cert, key)
    ctx.set_alpn_protocols(["h2"])
    ctx.check_hostname = False
    held, sem = [], asyncio.Semaphore(200)

    async def one():
        async with sem:
            reader, writer = await asyncio.open_connection(host, port, ssl=ctx)
            writer.write(PREFACE)
            await writer.drain()
            await reader.read(9)  # the server's SETTINGS frame header: the session is up
            held.append(writer)

    results = await asyncio.gather(*(one() for _ in range(n)), return_exceptions=True)
    failed = [r for r in results if isinstance(r, Exception)]
    print(f"held {len(held)} failed {len(failed)}" + (f" first: {failed[0]!r}" if failed else ""), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    for w in held:
        w.close()


asyncio.run(main())
