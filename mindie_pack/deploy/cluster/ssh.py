"""Running mindie-pack on the nodes over SSH (asyncssh): the user's ssh config, keys and agent, bounded waits.

Each node runs the same `mindie-pack` commands an operator would type there; this module only carries them. The
remote state folder is `<the node's state dir>/node`, so a controller that is itself one of the nodes keeps the
cluster's record and its own node's record apart.
"""

from __future__ import annotations

import asyncio
import json
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mindie_pack.errors import PackError

CONNECT_TIMEOUT_S = 15.0
DEFAULT_COMMAND_TIMEOUT_S = 120.0
KEEPALIVE_S = 15.0
SESSION_CLOSE_TIMEOUT_S = 10.0
NODE_STATE = 'export MINDIE_PACK_STATE_DIR="${MINDIE_PACK_STATE_DIR:-$HOME/.local/state/mindie-pack}/node"'


@dataclass(frozen=True)
class SshSettings:
    config: Path | None = None  # an ssh_config file (default: ~/.ssh/config, as ssh reads it)
    known_hosts: Path | None = None  # default: ~/.ssh/known_hosts; hosts must be known (no blind trust)
    username: str | None = None


@dataclass
class RemoteResult:
    code: int
    stdout: str
    stderr: str

    def json(self, what: str, host: str) -> Any:
        try:
            return json.loads(self.stdout)
        except ValueError:
            detail = (self.stderr or self.stdout).strip().splitlines()
            raise PackError(f"{host}: {what} did not answer JSON (exit {self.code}: "
                            f"{detail[-1] if detail else 'no output'})") from None


class Node:
    """One SSH connection to one host; `address` is the IP the host was reached at (its rank-table server_id
    unless the spec names another)."""

    def __init__(self, host: str, conn: Any, address: str, pack: str) -> None:
        self.host = host
        self.conn = conn
        self.address = address
        self.pack = pack

    async def pack_cmd(self, args: Sequence[str], *, timeout: float = DEFAULT_COMMAND_TIMEOUT_S,
                       env: dict[str, str] | None = None) -> RemoteResult:
        """`mindie-pack ARGS` on the node, with the node's own state folder."""
        exports = "".join(f"export {k}={shlex.quote(v)}; " for k, v in (env or {}).items())
        command = f"{NODE_STATE}; {exports}exec {self.pack} " + " ".join(shlex.quote(a) for a in args)
        return await self.run(command, timeout=timeout)

    async def stream_pack_cmd(self, args: Sequence[str], emit: Callable[[str], None], *,
                              timeout: float | None) -> tuple[int, str]:
        """`mindie-pack ARGS` on the node, its stdout passed on line by line; (exit code, stderr)."""
        command = f"{NODE_STATE}; exec {self.pack} " + " ".join(shlex.quote(a) for a in args)

        async def pump() -> tuple[int, str]:
            # Without a deadline (--follow) the remote side gets a terminal, so that closing the session (Ctrl-C
            # here) hangs it up and the remote `logs -f` ends instead of lingering on the node.
            options = {"term_type": "dumb"} if timeout is None else {}
            process = await self.conn.create_process(command, **options)
            try:
                async for line in process.stdout:
                    emit(str(line).rstrip("\r\n"))
                await process.wait()
                return (process.exit_status if process.exit_status is not None else 255,
                        str(await process.stderr.read()))
            finally:
                await _close_session(process)

        import asyncssh

        try:
            return await asyncio.wait_for(pump(), timeout)
        except TimeoutError:
            raise PackError(f"{self.host}: no end of output in {timeout:g} s from: {self.pack} {args[0]}") from None
        except (OSError, asyncssh.Error) as exc:
            raise PackError(f"{self.host}: the SSH session failed ({_reason(exc)})") from exc

    async def run(self, command: str, *, timeout: float = DEFAULT_COMMAND_TIMEOUT_S) -> RemoteResult:
        import asyncssh

        try:
            result = await asyncio.wait_for(self.conn.run(command, check=False), timeout)
        except TimeoutError:
            raise PackError(f"{self.host}: no answer in {timeout:g} s to: {command.split('; ')[-1][:120]}") from None
        except (OSError, asyncssh.Error) as exc:
            raise PackError(f"{self.host}: the SSH session failed ({_reason(exc)})") from exc
        code = result.exit_status if result.exit_status is not None else 255
        return RemoteResult(code, str(result.stdout or ""), str(result.stderr or ""))

    async def write_state_file(self, name: str, text: str) -> str:
        """Write NAME into the node's state folder (0640, the folder 0750); return its path there."""
        command = (f'{NODE_STATE}; umask 027; mkdir -p -m 750 "$MINDIE_PACK_STATE_DIR" && '
                   f'cat > "$MINDIE_PACK_STATE_DIR/{name}.tmp" && mv "$MINDIE_PACK_STATE_DIR/{name}.tmp" '
                   f'"$MINDIE_PACK_STATE_DIR/{name}" && printf %s "$MINDIE_PACK_STATE_DIR/{name}"')
        import asyncssh

        try:
            result = await asyncio.wait_for(self.conn.run(command, input=text, check=False),
                                            DEFAULT_COMMAND_TIMEOUT_S)
        except (TimeoutError, OSError, asyncssh.Error) as exc:
            raise PackError(f"{self.host}: cannot write {name} ({_reason(exc) or 'timed out'})") from None
        if result.exit_status != 0 or not result.stdout:
            raise PackError(f"{self.host}: cannot write {name} in its state folder "
                            f"({str(result.stderr or '').strip()[:200]})")
        return str(result.stdout)

    def close(self) -> None:
        self.conn.close()


async def _close_session(process: Any) -> None:
    """Close the session and let the node close its end, which it does once its command has exited (hung up, for a
    `logs -f`); bounded, so that a command outliving its hang-up cannot keep Ctrl-C from ending ours (the caller
    closes the connection next)."""
    process.close()
    closed = asyncio.ensure_future(process.wait_closed())
    await asyncio.wait({closed}, timeout=SESSION_CLOSE_TIMEOUT_S)
    if not closed.done():
        closed.cancel()


def _reason(exc: BaseException) -> str:
    return str(getattr(exc, "reason", "") or exc or exc.__class__.__name__)


async def connect(host: str, settings: SshSettings, pack: str) -> Node:
    import asyncssh

    # keepalives: a node that vanishes (power, network) ends the session instead of leaving a wait without end
    options: dict[str, Any] = {"connect_timeout": CONNECT_TIMEOUT_S, "keepalive_interval": KEEPALIVE_S,
                               "keepalive_count_max": 3}
    if settings.config is not None:
        options["config"] = [str(settings.config)]
    if settings.known_hosts is not None:
        options["known_hosts"] = str(settings.known_hosts)
    if settings.username:
        options["username"] = settings.username
    try:
        conn = await asyncio.wait_for(asyncssh.connect(host, **options), CONNECT_TIMEOUT_S + 5)
    except TimeoutError:
        raise PackError(f"{host}: no SSH answer in {CONNECT_TIMEOUT_S:g} s") from None
    except asyncssh.HostKeyNotVerifiable as exc:
        raise PackError(f"{host}: its SSH host key is not in known_hosts ({exc.reason}); connect once with ssh "
                        "to check and record it") from exc
    except asyncssh.PermissionDenied as exc:
        raise PackError(f"{host}: SSH login refused ({exc.reason}); check the user and key (ssh config, agent)") \
            from exc
    except (OSError, asyncssh.Error) as exc:
        raise PackError(f"{host}: cannot connect over SSH ({exc})") from exc
    peer = conn.get_extra_info("peername")
    address = str(peer[0]) if peer and peer[0] else host  # through a ProxyJump there may be no peer address
    return Node(host, conn, address, pack)


async def connect_all(hosts: Sequence[str], settings: SshSettings, pack: str) -> list[Node]:
    results = await asyncio.gather(*(connect(h, settings, pack) for h in hosts), return_exceptions=True)
    nodes = [r for r in results if isinstance(r, Node)]
    failures = [r for r in results if isinstance(r, BaseException)]
    if failures:
        for node in nodes:
            node.close()
        raise failures[0]
    return nodes
