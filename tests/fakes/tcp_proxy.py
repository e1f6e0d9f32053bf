"""A TCP proxy on loopback between the app and the iWF server, to take the engine away on purpose.

`down()` cuts every connection and refuses new ones (the engine is unreachable); `hold()` keeps taking
the app's bytes but forwards none of them until `flow()` (an engine call in flight, for as long as the
test wants); `flow()` forwards again, what was held first. Bytes are read from the app as they come, so
a request the app sent before it died still reaches the engine when released.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field


@dataclass
class TcpProxy:
    target_host: str
    target_port: int
    port: int = 0
    held_chunks: int = 0  # chunks from the app waiting while held
    answers_to_nobody: int = 0  # engine answers that came back after the app had closed its side (or died)
    _server: asyncio.Server | None = None
    _flowing: asyncio.Event = field(default_factory=asyncio.Event)
    _up: bool = True
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._flowing.set()
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self._cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def down(self) -> None:
        self._up = False
        self._cut()

    def hold(self) -> None:
        self._flowing.clear()

    def flow(self) -> None:
        self._up = True
        self._flowing.set()

    def _cut(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self._up:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        app_gone = asyncio.Event()
        tasks = [
            asyncio.create_task(self._read_app(reader, queue, app_gone)),
            asyncio.create_task(self._to_engine(queue, up_writer)),
            asyncio.create_task(self._pipe(up_reader, writer, app_gone)),
        ]
        await asyncio.gather(*tasks, return_exceptions=True)
        for w in (writer, up_writer):
            self._writers.discard(w)
            w.close()

    async def _read_app(self, reader: asyncio.StreamReader, queue: asyncio.Queue[bytes], gone: asyncio.Event) -> None:
        """Everything the app sends is taken at once, held or not: it is in the proxy's hands."""
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                await queue.put(data)
        gone.set()
        await queue.put(b"")

    async def _to_engine(self, queue: asyncio.Queue[bytes], writer: asyncio.StreamWriter) -> None:
        while True:
            data = await queue.get()
            if not self._flowing.is_set():
                self.held_chunks += 1
                await self._flowing.wait()
                self.held_chunks -= 1
            if not data:
                break  # the app closed its side; answers may still come back (to nobody)
            writer.write(data)
            with contextlib.suppress(OSError):
                await writer.drain()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, app_gone: asyncio.Event) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                if app_gone.is_set():
                    self.answers_to_nobody += 1
                    continue
                writer.write(data)
                await writer.drain()
        with contextlib.suppress(OSError):
            writer.write_eof()
