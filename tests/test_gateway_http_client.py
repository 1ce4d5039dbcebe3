"""The deliveries' HTTP client (gateway/webhooks/http.py) against real loopback servers that
misbehave the ways receivers do: closing idle keep-alive connections, answering without a
length, answering garbage, never answering."""

from __future__ import annotations

import asyncio

import pytest

from gateway.webhooks.http import Client, HTTPError


async def serve(handler):
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/hook?x=1"


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
    return head, await reader.readexactly(length)


def test_a_post_carries_its_headers_and_body_and_the_answer_is_read():
    seen = []

    async def handler(reader, writer):
        head, body = await read_request(reader)
        seen.append((head, body))
        writer.write(b"HTTP/1.1 429 Too Many\r\nRetry-After: 7\r\nContent-Length: 3\r\n\r\nno!")
        await writer.drain()
        writer.close()

    async def scenario():
        server, url = await serve(handler)
        client = Client(url, 5.0, 4, "ua/1")
        try:
            response = await client.post(b'{"a":1}', {"Content-Type": "application/json", "X-Id": "evt_1"})
        finally:
            await client.close()
            server.close()
        return response

    response = asyncio.run(scenario())
    assert response.status == 429 and response.headers["retry-after"] == "7"
    head, body = seen[0]
    assert head.startswith(b"POST /hook?x=1 HTTP/1.1\r\n") and b"\r\nX-Id: evt_1\r\n" in head
    assert b"\r\nHost: 127.0.0.1:" in head and b"\r\nUser-Agent: ua/1\r\n" in head and body == b'{"a":1}'


def test_keep_alive_reuses_a_connection_and_survives_the_server_closing_it_while_idle():
    connections = []

    async def handler(reader, writer):
        connections.append(writer)
        try:
            while True:
                await read_request(reader)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
                if len(connections) == 1:
                    # the first connection: reused once, then closed by the server while idle
                    # (a receiver's keep-alive timeout)
                    await read_request(reader)
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    await writer.drain()
                    writer.close()
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def scenario():
        server, url = await serve(handler)
        client = Client(url, 5.0, 4, "ua/1")
        try:
            statuses = [(await client.post(b"{}", {})).status for _ in range(2)]
            await asyncio.sleep(0.1)  # the server has closed the idle connection meanwhile
            statuses.append((await client.post(b"{}", {})).status)
        finally:
            await client.close()
            server.close()
        return statuses

    assert asyncio.run(scenario()) == [200, 200, 200]
    assert len(connections) == 2, "two posts on one kept-alive connection, a fresh one after the close"


def test_an_answer_ended_by_the_connection_closing_is_complete():
    async def handler(reader, writer):
        await read_request(reader)
        writer.write(b"HTTP/1.0 204 No Content\r\nX-A: b\r\n\r\n")
        await writer.drain()
        writer.close()

    async def scenario():
        server, url = await serve(handler)
        client = Client(url, 5.0, 4, "ua/1")
        try:
            return await client.post(b"{}", {})
        finally:
            await client.close()
            server.close()

    assert asyncio.run(scenario()).status == 204


@pytest.mark.parametrize("answer", [b"SMTP ready\r\n\r\n", b""])
def test_garbage_or_no_answer_is_an_http_error(answer):
    async def handler(reader, writer):
        await read_request(reader)
        writer.write(answer)
        await writer.drain()
        writer.close()

    async def scenario():
        server, url = await serve(handler)
        client = Client(url, 5.0, 4, "ua/1")
        try:
            with pytest.raises(HTTPError):
                await client.post(b"{}", {})
        finally:
            await client.close()
            server.close()

    asyncio.run(scenario())


def test_a_receiver_that_never_answers_times_out_and_a_refused_connection_is_an_os_error():
    async def handler(reader, writer):
        await read_request(reader)
        await asyncio.sleep(5)

    async def scenario():
        server, url = await serve(handler)
        client = Client(url, 0.3, 4, "ua/1")
        try:
            with pytest.raises(TimeoutError):
                await client.post(b"{}", {})
        finally:
            await client.close()
            server.close()
            await server.wait_closed()
        refused = Client(url, 2.0, 4, "ua/1")  # the server is gone: nothing listens on its port
        with pytest.raises(OSError):
            await refused.post(b"{}", {})

    asyncio.run(scenario())
