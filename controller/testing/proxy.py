"""A TCP proxy on loopback for fault injection at the network edge.

Put it between a client and a server to break the network the way real networks break,
without touching the code under test:

- :meth:`TcpProxy.cut` resets every open connection (a restarted load balancer);
- :meth:`TcpProxy.refuse` (and :meth:`TcpProxy.accept`) makes new connections fail at once;
- :meth:`TcpProxy.blackhole` keeps connections open but stops forwarding bytes either way
  (a stalled, half-open connection); :meth:`TcpProxy.heal` resumes forwarding;
- ``latency`` delays every chunk forwarded.

Lifecycle: ``async with TcpProxy(upstream_port=...) as proxy: proxy.port``; on exit the
listener and every connection are closed.
"""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType
from typing import Self

from controller.testing.ports import LOOPBACK


class TcpProxy:
    """Forward 127.0.0.1:``port`` to 127.0.0.1:``upstream_port``; see the module docstring."""

    def __init__(self, *, upstream_port: int, upstream_host: str = LOOPBACK) -> None:
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self.port = 0
        self.latency = 0.0
        self.connections_accepted = 0
        self._server: asyncio.Server | None = None
        self._refusing = False
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._pipes: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._handle, LOOPBACK, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._server is not None:
            self._server.close()
        self.cut()
        for task in list(self._pipes):
            task.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    # ------------------------------------------------------------------ faults

    def cut(self) -> None:
        """Reset every open connection."""
        for writer in list(self._writers):
            transport = writer.transport
            transport.abort()
        self._writers.clear()

    def refuse(self) -> None:
        """Close new connections as soon as they are accepted."""
        self._refusing = True

    def accept(self) -> None:
        self._refusing = False

    def blackhole(self) -> None:
        """Hold bytes on open and new connections, keeping them open, until :meth:`heal`."""
        self._flowing.clear()

    def heal(self) -> None:
        self._flowing.set()

    # ---------------------------------------------------------------- plumbing

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._refusing:
            writer.transport.abort()
            return
        self.connections_accepted += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(
                self.upstream_host, self.upstream_port
            )
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))
        tasks = [
            asyncio.create_task(self._pipe(reader, up_writer)),
            asyncio.create_task(self._pipe(up_reader, writer)),
        ]
        self._pipes.update(tasks)
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._pipes.difference_update(tasks)
            for w in (writer, up_writer):
                self._writers.discard(w)
                w.transport.abort()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while True:
                data = await reader.read(65536)
                if not data:
                    return
                await self._flowing.wait()
                if self.latency:
                    await asyncio.sleep(self.latency)
                writer.write(data)
                await writer.drain()
