#!/usr/bin/env python3
"""A TCP proxy that delays every byte by a fixed time in each direction (the fault harness's latency, where the
kernel has no netem): scripts/latency-proxy.py LISTEN_HOST LISTEN_PORT TARGET_HOST TARGET_PORT DELAY_MS.
Order is kept; a close is delayed like data. Runs until killed."""
import asyncio
import sys
import time


async def pump(reader, writer, delay):
    queue = asyncio.Queue()

    async def send():
        while True:
            due, data = await queue.get()
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                try:
                    writer.close()
                except Exception:
                    pass
                return
            writer.write(data)
            await writer.drain()

    sender = asyncio.create_task(send())
    try:
        while True:
            data = await reader.read(65536)
            queue.put_nowait((time.monotonic() + delay, data))
            if not data:
                break
    except Exception:
        queue.put_nowait((time.monotonic(), b""))
    try:
        await sender
    except Exception:
        pass


async def main():
    listen_host, listen_port, target_host, target_port, delay_ms = sys.argv[1:6]
    delay = int(delay_ms) / 1000.0

    async def handle(client_reader, client_writer):
        try:
            target_reader, target_writer = await asyncio.open_connection(target_host, int(target_port))
        except Exception:
            client_writer.close()
            return
        await asyncio.gather(
            pump(client_reader, target_writer, delay), pump(target_reader, client_writer, delay),
            return_exceptions=True)

    server = await asyncio.start_server(handle, listen_host, int(listen_port))
    print("listening", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
