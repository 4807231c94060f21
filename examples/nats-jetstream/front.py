#!/usr/bin/env python3
"""An HTTP front over NATS JetStream, as a team would write one: the data lives in
JetStream (nats-server, from Debian); this front only translates HTTP to the official
Python client (nats-py and aiohttp, from PyPI).

Usage: front.py PORT. The server's address comes from NATS_URL; how JetStream keeps
the streams and buckets from JETSTREAM_STORAGE: "file" (the default) or "memory".

  GET /publish/X   publish X to the stream ITEMS; answers {"seq": N}, the sequence
                   JetStream acknowledged it under
  GET /drain       every message the stream holds: {"items": [...]}
  GET /id          publish to the stream IDS; answers {"seq": N}: an id JetStream made
  GET /add/X       put key e.X in the bucket SET; GET /members lists {"members": [...]}
  GET /incr        add 1 to key hits of the bucket COUNT by compare-and-set; answers
                   {"value": N}; GET /count answers it without adding
  GET /set/X       put X under key r of the bucket REG; GET /get answers {"value": X or null}

503 when JetStream did not acknowledge (it may or may not have taken the write).
"""
import asyncio
import os
import sys

import nats
from aiohttp import web
from nats.js.api import KeyValueConfig, StorageType, StreamConfig
from nats.errors import NoRespondersError
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError, NoStreamResponseError, NotFoundError

PORT = int(sys.argv[1])
STORAGE = os.environ.get("JETSTREAM_STORAGE", "file")
SERVER = os.environ["NATS_URL"].split(",")[0]
STORAGE_TYPE = StorageType.MEMORY if STORAGE == "memory" else StorageType.FILE
TIMEOUT = 2.0
MAX_CAS_TRIES = 50


class Store:
    def __init__(self):
        self.nc = None
        self.js = None
        self.buckets = {}

    async def connect(self):
        self.nc = await nats.connect(SERVER, max_reconnect_attempts=-1, reconnect_time_wait=0.2,
                                     allow_reconnect=True, connect_timeout=2)
        self.js = self.nc.jetstream(timeout=TIMEOUT)
        await self.declare()

    async def declare(self):
        # A server that lost its memory streams (a restart) gets them again.
        for stream, subject in (("ITEMS", "items"), ("IDS", "ids")):
            try:
                await self.js.stream_info(stream)
            except NotFoundError:
                await self.js.add_stream(StreamConfig(name=stream, subjects=[subject], storage=STORAGE_TYPE))
        for name in ("SET", "COUNT", "REG"):
            try:
                self.buckets[name] = await self.js.key_value(name)
            except Exception:
                self.buckets[name] = await self.js.create_key_value(
                    KeyValueConfig(bucket=name, storage=STORAGE_TYPE, history=1))

    async def bucket(self, name):
        return self.buckets[name]


store = Store()


def answer(body, status=200):
    return web.json_response(body, status=status)


async def guarded(handler):
    for attempt in range(2):
        try:
            return await asyncio.wait_for(handler(), TIMEOUT * 2)
        except (NotFoundError, NoRespondersError, NoStreamResponseError):
            if attempt == 0:
                try:
                    await store.declare()
                    continue
                except Exception as e:  # the server is still down
                    return answer({"error": f"cannot declare: {e}"}, 503)
            return answer({"error": "stream or bucket not found"}, 503)
        except Exception as e:
            return answer({"error": f"{type(e).__name__}: {e}"}, 503)
    return answer({"error": "unreachable"}, 503)


async def publish(request):
    async def go():
        ack = await store.js.publish("items", request.match_info["x"].encode())
        return answer({"seq": ack.seq})
    return await guarded(go)


async def new_id(request):
    async def go():
        ack = await store.js.publish("ids", b"")
        return answer({"seq": ack.seq})
    return await guarded(go)


async def drain(request):
    async def go():
        info = await store.js.stream_info("ITEMS")
        items = []
        first = max(info.state.first_seq, 1)
        for seq in range(first, info.state.last_seq + 1 if info.state.messages else first):
            try:
                msg = await store.js.get_msg("ITEMS", seq)
                items.append(msg.data.decode())
            except NotFoundError:
                pass
        return answer({"items": items})
    return await guarded(go)


async def add(request):
    async def go():
        await (await store.bucket("SET")).put("e." + request.match_info["x"], b"1")
        return answer({"added": True})
    return await guarded(go)


async def members(request):
    async def go():
        try:
            keys = await (await store.bucket("SET")).keys()
        except Exception as e:
            if "no keys" not in str(e).lower():
                raise
            keys = []
        return answer({"members": [k[2:] for k in keys]})
    return await guarded(go)


async def incr(request):
    async def go():
        kv = await store.bucket("COUNT")
        for _ in range(MAX_CAS_TRIES):
            try:
                entry = await kv.get("hits")
                value, last = int(entry.value.decode()), entry.revision
            except KeyNotFoundError:
                value, last = 0, 0
            try:
                if last == 0:
                    await kv.create("hits", b"1")
                else:
                    await kv.update("hits", str(value + 1).encode(), last=last)
                return answer({"value": value + 1})
            except Exception as e:
                # Another increment got there first: read again and retry.
                if not isinstance(e, KeyWrongLastSequenceError) and "wrong last sequence" not in str(e).lower():
                    raise
        return answer({"error": "too much contention"}, 409)
    return await guarded(go)


async def count(request):
    async def go():
        try:
            entry = await (await store.bucket("COUNT")).get("hits")
            return answer({"value": int(entry.value.decode())})
        except KeyNotFoundError:
            return answer({"value": 0})
    return await guarded(go)


async def set_register(request):
    async def go():
        await (await store.bucket("REG")).put("r", request.match_info["x"].encode())
        return answer({"set": True})
    return await guarded(go)


async def get_register(request):
    async def go():
        try:
            entry = await (await store.bucket("REG")).get("r")
            return answer({"value": entry.value.decode()})
        except KeyNotFoundError:
            return answer({"value": None})
    return await guarded(go)


async def health(request):
    return answer({"connected": store.nc is not None and store.nc.is_connected})


async def main():
    await store.connect()
    app = web.Application()
    app.add_routes([
        web.get("/publish/{x}", publish), web.get("/drain", drain), web.get("/id", new_id),
        web.get("/add/{x}", add), web.get("/members", members),
        web.get("/incr", incr), web.get("/count", count),
        web.get("/set/{x}", set_register), web.get("/get", get_register),
        web.get("/health", health),
    ])
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", PORT).start()
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
