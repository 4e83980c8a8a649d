"""Putting print files on a Bambu Lab printer: implicit FTPS, as Bambu Studio does.

The printer serves its SD card over FTP with TLS from the first byte (implicit FTPS, port
990), user ``bblp`` and the LAN access code, passive mode only, and a protected data
channel that must resume the control channel's TLS session. The same TLS rules as MQTT
apply: the certificate is verified against the printer's serial, or not at all with
``insecure_tls``.

ftplib is blocking; ``upload`` runs it in a worker thread with a socket timeout on every
step.
"""

from __future__ import annotations

import asyncio
import ftplib
import socket
import ssl
from pathlib import Path
from typing import BinaryIO

from kittylab.adapters.devices.bambu_protocol import USERNAME
from kittylab.devices.ports import DeviceUnavailable
from kittylab.domain import file_names
from kittylab.domain.errors import DeviceRefused


class _ImplicitFTPS(ftplib.FTP_TLS):
    """``FTP_TLS`` that speaks TLS at once (no ``AUTH TLS``) and reuses the control
    channel's TLS session on data connections, as the printer's server demands."""

    def connect(
        self,
        host: str = "",
        port: int = 0,
        timeout: float = -999,
        source_address: tuple[str, int] | None = None,
    ) -> str:
        self.host, self.port = host, port
        if timeout != -999:
            self.timeout = timeout
        raw = socket.create_connection((host, port), self.timeout)
        try:
            self.af = raw.family
            self.sock = self.context.wrap_socket(raw, server_hostname=host)
        except BaseException:
            raw.close()
            raise
        self.file = self.sock.makefile("r", encoding=self.encoding)
        self.welcome = self.getresp()
        return self.welcome

    def ntransfercmd(
        self, cmd: str, rest: int | str | None = None
    ) -> tuple[socket.socket, int | None]:
        # The control channel is TLS already; this only opens the passive data socket.
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)  # noqa: S321
        if getattr(self, "_prot_p", False):
            control = self.sock
            session = control.session if isinstance(control, ssl.SSLSocket) else None
            conn = self.context.wrap_socket(conn, server_hostname=self.host, session=session)
        return conn, size


def _store(
    *,
    host: str,
    port: int,
    access_code: str,
    context: ssl.SSLContext,
    filename: str,
    source: BinaryIO,
    timeout: float,
) -> None:
    ftp = _ImplicitFTPS(context=context, timeout=timeout)
    try:
        ftp.connect(host, port)
        ftp.login(USERNAME, access_code)
        ftp.prot_p()
        ftp.storbinary(f"STOR {filename}", source)
        ftp.quit()
    finally:
        ftp.close()


async def upload(
    *,
    host: str,
    port: int,
    serial: str,
    access_code: str,
    context: ssl.SSLContext,
    filename: str,
    path: Path,
    socket_timeout: float,
) -> None:
    """Store ``path`` on the printer as ``filename`` (an existing file of that name is
    replaced). ``DeviceUnavailable`` when the printer cannot be reached, refuses the access
    code or the TLS certificate is not trusted; ``DeviceRefused`` when it refuses the file
    (card full, no card, a bad path)."""
    # A plain name only: a line break would end the FTP command and start another one
    # (``DELE …``), a '/' or '..' would store outside the card's root.
    name = file_names.check(filename, "filename")
    where = f"Bambu printer {serial} at {host}:{port} (FTPS)"
    with path.open("rb") as source:  # a missing local file is the caller's error
        try:
            await asyncio.to_thread(
                _store,
                host=host,
                port=port,
                access_code=access_code,
                context=context,
                filename=name,
                source=source,
                timeout=socket_timeout,
            )
        except ftplib.error_perm as exc:
            reply = str(exc)
            if reply.startswith("530"):
                raise DeviceUnavailable(f"{where} refused the LAN access code") from exc
            raise DeviceRefused(f"{where} refused {name}: {reply}") from exc
        except ssl.SSLCertVerificationError as exc:
            raise DeviceUnavailable(f"{where}: TLS certificate not trusted: {exc}") from exc
        except TimeoutError as exc:
            raise DeviceUnavailable(f"{where} did not answer in time") from exc
        except (OSError, EOFError, ftplib.Error) as exc:
            raise DeviceUnavailable(f"{where} failed: {exc}") from exc
