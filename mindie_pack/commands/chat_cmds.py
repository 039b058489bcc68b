"""CLI command `chat`: a local web chat page on the deployed MindIE service (the runbooks' chat_web)."""

from __future__ import annotations

import ipaddress
import socket
from typing import TYPE_CHECKING

import typer

from mindie_pack.commands.ui import LazyConsole
from mindie_pack.errors import PackError

if TYPE_CHECKING:
    from mindie_pack.chat.app import ChatSettings

DEFAULT_PORT = 7860  # the port people know from the chat_web (gradio) demo
err = LazyConsole(stderr=True, highlight=False, soft_wrap=True)


def check_url(url: str) -> str:
    """--url must be an absolute http(s) URL with a host; returned without a trailing slash."""
    import httpx

    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise PackError(f"--url {url!r}: not a URL ({exc}); expected e.g. http://127.0.0.1:1025") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise PackError(f"--url {url!r}: expected http://HOST:PORT or https://HOST:PORT (MindIE's business "
                        "address)")
    if parsed.port is not None and not 0 < parsed.port <= 65535:
        raise PackError(f"--url {url!r}: port {parsed.port} is out of range 1-65535")
    if parsed.query or parsed.fragment:
        raise PackError(f"--url {url!r}: expected the service's base URL, without a query or fragment")
    return url.rstrip("/")


def parse_port(value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        raise PackError(f"--port {value!r}: expected a whole number 0-65535 (0 = any free port)") from None
    if not 0 <= port <= 65535:
        raise PackError(f"--port {port}: expected 0-65535 (0 = any free port)")
    return port


def parse_timeout(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = float("nan")
    if not seconds > 0 or seconds == float("inf"):
        raise PackError(f"--timeout {value!r}: expected a positive number of seconds")
    return seconds


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound before uvicorn starts so that a bad address is one line and exit 2."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise PackError(f"--host {host!r}: cannot resolve it ({exc.strerror})") from None
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise PackError(f"--host {host} --port {port}: cannot listen there ({exc.strerror})") from None
    return sock


def probe(settings: ChatSettings) -> tuple[list[str], str | None]:
    """The service's models once at start, so that a wrong --url shows on the terminal too (bounded wait)."""
    import asyncio

    import httpx

    from mindie_pack.chat.app import list_models

    async def ask() -> tuple[list[str], str | None]:
        async with httpx.AsyncClient(trust_env=False) as client:
            return await list_models(client, settings)

    return asyncio.run(ask())


def chat(
    url: str | None = typer.Option(None, "--url", help="MindIE business URL (default: the current deployment)."),
    model: str | None = typer.Option(None, "--model", help="modelName (default: the deployment's, else the "
                                     "first /v1/models id)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to serve the page on; 0.0.0.0 shares it "
                             "(no authentication!)."),
    # --port and --timeout are parsed here (not by typer) so that a bad value is one line and exit 2.
    port: str = typer.Option(str(DEFAULT_PORT), "--port", help="Port of the page (0 = any free port)."),
    timeout: str = typer.Option("300", "--timeout", help="Seconds to wait for the service's next chunk "
                                "(first token included) before reporting a timeout."),
) -> None:
    """Serve a local web page to chat with the MindIE service (streaming, stop, sampling controls, curl)."""
    from mindie_pack.chat.app import LOOPBACK_HOSTS, ChatSettings, build_app
    from mindie_pack.client.target import resolve_target

    if url is not None:
        url = check_url(url)
    port_number = parse_port(port)
    timeout_s = parse_timeout(timeout)
    target = resolve_target(url, None, model)
    sock = bind(host, port_number)
    shared = not is_loopback(host)
    settings = ChatSettings(business_url=target.business_url, model=target.model, read_timeout_s=timeout_s,
                            allowed_hosts=("*",) if shared else LOOPBACK_HOSTS)
    bound_host, bound_port = sock.getsockname()[:2]
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    if shared:
        err.print(f"[bold yellow]warning:[/] serving on {host}:{bound_port} with NO authentication: anyone who can "
                  "reach this machine can use the model (and the service) through this page")
    typer.echo(f"chat page: http://{shown}:{bound_port}/  ->  MindIE {target.business_url}"
               f"{f' (model {target.model})' if target.model else ''}; Ctrl+C to stop")
    if shared and bound_host in ("0.0.0.0", "::"):
        typer.echo(f"from other machines: http://{socket.gethostname()}:{bound_port}/")
    models, problem = probe(settings)
    if problem:
        err.print(f"[bold yellow]warning:[/] {problem}; the page shows this until the service answers")
    elif settings.model is None:
        typer.echo(f"model: {models[0]} (the first of {', '.join(models)})")

    import uvicorn

    config = uvicorn.Config(build_app(settings), log_level="warning", access_log=False, lifespan="on",
                            timeout_graceful_shutdown=2)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()


def register(app: typer.Typer) -> None:
    app.command("chat")(chat)
