"""A protocol-level stand-in for a Bambu Lab printer's file server: implicit FTPS.

TLS from the first byte on the control connection, user ``bblp`` with the access code,
``PBSZ 0`` / ``PROT P``, passive mode (``PASV``) with a TLS data connection, ``STOR`` into
a directory standing for the SD card. Enough of RFC 959 for an upload, nothing more; it
does not check that the data channel resumes the control channel's TLS session (the
printer's server does).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from pathlib import Path
from typing import Self


class BambuFtpsPeer:
    def __init__(
        self,
        *,
        cert_file: Path,
        key_file: Path,
        access_code: str,
        card: Path,
        card_size: int = 10_000_000,
    ) -> None:
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(cert_file, key_file)
        self.access_code = access_code
        self.card = card
        self.card_size = card_size  # bytes: a STOR past this is answered 552
        self.commands: list[str] = []
        self.host = "127.0.0.1"
        self.port = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> Self:
        self.card.mkdir(parents=True, exist_ok=True)
        self._server = await asyncio.start_server(
            self._session, self.host, 0, ssl=self.context, ssl_handshake_timeout=5
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), 2)

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async def reply(line: str) -> None:
            writer.write(f"{line}\r\n".encode())
            await writer.drain()

        user: str | None = None
        logged_in = False
        data: asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter]] | None = None
        data_server: asyncio.Server | None = None
        try:
            await reply("220 Bambu printer FTPS ready")
            while line := (await reader.readline()).decode().rstrip("\r\n"):
                verb, _, arg = line.partition(" ")
                verb = verb.upper()
                self.commands.append(verb if verb == "PASS" else line)
                if verb == "USER":
                    user = arg
                    await reply("331 password please")
                elif verb == "PASS":
                    logged_in = user == "bblp" and arg == self.access_code
                    await reply("230 logged in" if logged_in else "530 Login incorrect.")
                elif verb == "QUIT":
                    await reply("221 bye")
                    return
                elif not logged_in:
                    await reply("530 Please login with USER and PASS.")
                elif verb == "PBSZ":
                    await reply("200 PBSZ=0")
                elif verb == "PROT":
                    await reply("200 protection set" if arg == "P" else "536 only P")
                elif verb == "TYPE":
                    await reply("200 type set")
                elif verb == "PASV":
                    loop = asyncio.get_running_loop()
                    data = loop.create_future()

                    def accepted(
                        r: asyncio.StreamReader,
                        w: asyncio.StreamWriter,
                        future: asyncio.Future[
                            tuple[asyncio.StreamReader, asyncio.StreamWriter]
                        ] = data,
                    ) -> None:
                        if not future.done():
                            future.set_result((r, w))

                    data_server = await asyncio.start_server(
                        accepted, self.host, 0, ssl=self.context, ssl_handshake_timeout=5
                    )
                    port = data_server.sockets[0].getsockname()[1]
                    await reply(f"227 Entering Passive Mode (127,0,0,1,{port >> 8},{port & 255})")
                elif verb == "STOR":
                    if data is None or data_server is None:
                        await reply("425 use PASV first")
                        continue
                    await reply("150 ok to send data")
                    data_reader, data_writer = await asyncio.wait_for(data, 5)
                    body = await data_reader.read()
                    data_writer.close()
                    with contextlib.suppress(Exception):
                        await data_writer.wait_closed()
                    data_server.close()
                    data, data_server = None, None
                    if len(body) > self.card_size:
                        await reply("552 Storage space exceeded")
                        continue
                    target = self.card / arg.lstrip("/")
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(body)
                    await reply("226 transfer complete")
                else:
                    await reply(f"502 {verb} not implemented")
        finally:
            if data_server is not None:
                data_server.close()
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
