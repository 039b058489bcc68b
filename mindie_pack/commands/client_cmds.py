"""CLI commands of the client stage: `smoke` (post-deploy checks) and `bench` (load measurement)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from mindie_pack.client.endpoints import DEFAULT_DEADLINE_S, ENDPOINTS
from mindie_pack.commands.bounds import positive
from mindie_pack.commands.ui import LazyConsole, escape
from mindie_pack.errors import PackError

out = LazyConsole(highlight=False, soft_wrap=True)
err = LazyConsole(stderr=True, highlight=False)
STYLE = {"passed": "[green]passed[/]", "failed": "[red]FAILED[/]", "skipped": "[yellow]skipped[/]"}


def smoke(
    url: str | None = typer.Option(None, "--url", help="Business URL (default: the current deployment)."),
    management_url: str | None = typer.Option(None, "--management-url", help="Management URL (/health)."),
    metrics_url: str | None = typer.Option(None, "--metrics-url"),
    model: str | None = typer.Option(None, "--model", help="modelName (default: the first /v1/models id)."),
    checks: str | None = typer.Option(None, "--checks", help="Comma-separated subset, e.g. health,models,chat."),
    wait: float = typer.Option(0.0, "--wait", min=0, help="Retry with backoff until ready, up to this many seconds."),
    expect: Path | None = typer.Option(None, "--expect", help="Golden prompts: [{prompt, expect|contains}]."),
    max_tokens: int = typer.Option(16, "--max-tokens", min=1),
    timeout: float = typer.Option(DEFAULT_DEADLINE_S, "--timeout", min=0.1,
                                  help="Seconds each request may take (connect within 5 s)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Check that the service answers on every API; exit 0 all passed, 1 a check failed, 2 unreachable."""
    from rich.table import Table

    from mindie_pack.client.smoke import run_smoke
    from mindie_pack.client.target import resolve_target

    target = resolve_target(url, management_url, model, metrics_url)
    names = [c.strip() for c in checks.split(",") if c.strip()] if checks else None
    report = run_smoke(target, checks=names, wait_s=wait, expect=expect, max_tokens=max_tokens, timeout_s=timeout)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    else:
        table = Table(title=escape(f"smoke {target.business_url} (model {target.model or '?'})"))
        for column in ("check", "status", "latency ms", "tokens", "detail"):
            table.add_column(column, overflow="fold")
        for check in report.checks:
            table.add_row(check.name, STYLE[check.status], f"{check.latency_ms:.1f}",
                          "" if check.tokens is None else str(check.tokens), escape(check.detail))
        out.print(table)
        if report.unreachable:
            out.print(f"[red]unreachable[/]: {escape(target.management_url)} / {escape(target.business_url)}")
    raise typer.Exit(report.exit_code)


def bench(
    url: str | None = typer.Option(None, "--url"),
    model: str | None = typer.Option(None, "--model"),
    endpoint: str = typer.Option("openai-chat", "--endpoint", help=" | ".join(ENDPOINTS)),
    concurrency: int | None = typer.Option(None, "--concurrency", min=1, help="Closed loop: requests in flight."),
    rate: float | None = typer.Option(None, "--rate", callback=positive,
                                      help="Open loop: Poisson arrivals per second."),
    requests: int | None = typer.Option(None, "--requests", min=1),
    duration: float | None = typer.Option(None, "--duration", callback=positive,
                                          help="Seconds (instead of --requests)."),
    input_len: int = typer.Option(32, "--input-len", min=1, help="Synthetic prompt length in words."),
    output_len: int = typer.Option(64, "--output-len", min=1, help="max_tokens per request (eos ignored)."),
    dataset: Path | None = typer.Option(None, "--dataset", help="ShareGPT JSON for prompts."),
    warmup: int = typer.Option(2, "--warmup", min=0),
    slo_ttft: float | None = typer.Option(None, "--slo-ttft", callback=positive, help="TTFT SLO in ms (for goodput)."),
    slo_tpot: float | None = typer.Option(None, "--slo-tpot", callback=positive, help="TPOT SLO in ms (for goodput)."),
    json_file: Path | None = typer.Option(None, "--json", help="Write the results as JSON to this file."),
    plot_file: Path | None = typer.Option(None, "--plot", help="Write latency/throughput plots (PNG)."),
    timeout: float = typer.Option(DEFAULT_DEADLINE_S, "--timeout", min=0.1,
                                  help="Seconds each request may take (connect within 5 s)."),
) -> None:
    """Measure TTFT, inter-token latency, TPOT, end-to-end latency and throughput under load."""
    import asyncio

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from mindie_pack.client.bench import (
        BenchConfig,
        check_output_path,
        plot,
        require_plotting,
        run_load,
        summarize,
        write_output,
    )
    from mindie_pack.client.target import resolve_target

    if endpoint not in ENDPOINTS:
        raise PackError(f"--endpoint {endpoint!r}: expected one of {', '.join(ENDPOINTS)}")
    if concurrency and rate:
        raise PackError("give --concurrency or --rate, not both")
    if json_file is not None:
        check_output_path(json_file, "--json")
    if plot_file is not None:
        check_output_path(plot_file, "--plot")
        require_plotting()
    target = resolve_target(url, None, model)
    if target.model is None and endpoint.startswith("openai"):
        raise PackError("--model is needed for the OpenAI endpoints when --url is given")
    config = BenchConfig(endpoint=endpoint, concurrency=None if rate else (concurrency or 1), rate=rate,
                         requests=None if duration else (requests or 50), duration_s=duration, input_len=input_len,
                         output_len=output_len, dataset=dataset, warmup=warmup, slo_ttft_ms=slo_ttft,
                         slo_tpot_ms=slo_tpot, timeout_s=timeout)
    with Progress(TextColumn("bench"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err.get(),
                  transient=True) as bar:
        task = bar.add_task("requests", total=config.requests)
        records, wall = asyncio.run(run_load(target, config, lambda _: bar.advance(task)))
    summary = summarize(records, wall, config)
    if json_file:
        text = json.dumps(summary, indent=2) + "\n"
        write_output(json_file, "--json", lambda p: p.write_text(text))
    if plot_file:
        write_output(plot_file, "--plot", lambda p: plot(records, p))
    table = Table(title=f"bench {endpoint} {target.business_url}: {summary['requests']} requests, "
                  f"{summary['complete']} complete, {summary['short']} short, {summary['failed']} failed "
                  f"in {summary['duration_s']} s")
    for column in ("metric", "mean", "p50", "p90", "p99"):
        table.add_column(column, justify="right")
    for key, label in (("ttft_ms", "TTFT ms (FirstTokenTime)"), ("itl_ms", "ITL ms (DecodeTime)"),
                       ("tpot_ms", "TPOT ms"), ("e2e_ms", "E2E ms (GenerateTime)")):
        row = summary[key]
        table.add_row(label, *(("-" if row[k] is None else f"{row[k]:.2f}") for k in ("mean", "p50", "p90", "p99")))
    out.print(table)
    out.print(f"throughput: {summary['request_throughput']} req/s, {summary['output_token_throughput']} output tok/s"
              f"; goodput {summary['goodput']} req/s; errors {escape(str(summary['errors'] or 'none'))}")
    out.print(f"output tokens: requested {summary['output_tokens_requested']}, received {summary['output_tokens']}")
    if summary["short"]:
        out.print(f"[yellow]warning[/]: {summary['short']} of {summary['succeeded']} requests received fewer than "
                  f"--output-len {output_len} tokens (the server stopped early or tokens were lost); their TPOT and "
                  "throughput are not for the requested length")
    arrival = summary["arrival"]
    if arrival["requested_rate"]:
        out.print(f"arrival rate: requested {arrival['requested_rate']:g} req/s (this run's Poisson schedule "
                  f"{arrival['scheduled_rate']}), achieved {arrival['achieved_rate']} req/s; send lag p50 "
                  f"{arrival['lag_ms']['p50']} ms, p90 {arrival['lag_ms']['p90']} ms")
        if arrival["client_bound"]:
            out.print("[yellow]warning[/]: the client, not the server, is the bottleneck (it sent slower or later "
                      "than scheduled); latencies at this rate include client queueing")
    if summary["failed"]:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("smoke")(smoke)
    app.command("bench")(bench)
