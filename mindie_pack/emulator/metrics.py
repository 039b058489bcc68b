"""The emulator's /metrics: the names, types, help texts, labels and buckets of MindIE 2.3.0.

Source: src/server/endpoint/http_wrapper/prometheus_metrics.cpp:24-29 (buckets) and :85-149 (the 20 metrics, each
labelled model_name), serialized by prometheus-cpp's TextSerializer and served with Content-Type application/json
(src/server/endpoint/http_wrapper/http_handler.cpp:897-899). Written by hand rather than with prometheus_client:
that library adds `_created` series and orders histogram lines differently from prometheus-cpp.

MindIE 3.0.0 (commit 8b4871ad, prometheus_metrics.cpp) differs in: the token buckets reach 128000 (:31-32), two help
texts (:120 "on NPU.", :201 one final dot) and two gauges appended after num_preemptions_total (:210-220); it is
served as text/plain; charset=utf-8 (`mindie_pack.wire.format.metrics_content_type`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

TOKEN_BUCKETS = (10, 50, 100, 200, 500, 1000, 2000, 5000, 10000)
TOKEN_BUCKETS_V3 = TOKEN_BUCKETS + (16000, 20000, 32000, 50000, 64000, 128000)  # @8b4871ad :31-32
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
TBT_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5)
E2E_BUCKETS = (1.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0)

# (name, type, help) in registration order, prometheus_metrics.cpp:85-149.
METRICS = (
    ("request_received_total", "counter", "Count of received requests."),
    ("request_success_total", "counter", "Count of successfully processed requests."),
    ("request_failed_total", "counter", "Count of failed requests."),
    ("num_requests_running", "gauge", "Number of requests currently running on GPU."),
    ("num_requests_waiting", "gauge", "Number of requests waiting to be processed."),
    ("num_requests_swapped", "gauge", "Number of requests swapped to CPU."),
    ("avg_prompt_throughput_toks_per_s", "gauge", "Average prefill throughput in tokens/s."),
    ("avg_generation_throughput_toks_per_s", "gauge", "Average generation throughput in tokens/s."),
    ("time_to_first_token_seconds", "histogram", "Histogram of time to first token in seconds."),
    ("time_per_output_token_seconds", "histogram", "Histogram of time per output token in seconds."),
    ("e2e_request_latency_seconds", "histogram", "Histogram of end to end request latency in seconds."),
    ("failed_request_perc", "gauge", "Requests failure rate. 1 means 100 percent usage."),
    ("request_prompt_tokens", "histogram", "Number of prefill tokens processed."),
    ("request_generation_tokens", "histogram", "Number of generation tokens processed."),
    ("prompt_tokens_total", "counter", "Number of prefill tokens processed."),
    ("generation_tokens_total", "counter", "Number of generation tokens processed."),
    ("npu_cache_usage_perc", "gauge", "NPU KV-cache usage. 1 means 100 percent usage."),
    ("cpu_cache_usage_perc", "gauge", "CPU KV-cache usage. 1 means 100 percent usage."),
    ("npu_prefix_cache_hit_rate", "gauge", "NPU prefix cache block hit rate.."),
    ("num_preemptions_total", "counter", "Cumulative number of preemption from the engine."),
)

# MindIE 3.0.0: same order, two help texts changed (@8b4871ad prometheus_metrics.cpp:120, :201) and two gauges added
# (:210-220).
_V3_HELP = {"num_requests_running": "Number of requests currently running on NPU.",
            "npu_prefix_cache_hit_rate": "NPU prefix cache block hit rate."}
METRICS_V3 = tuple((name, kind, _V3_HELP.get(name, help_text)) for name, kind, help_text in METRICS) + (
    ("all_radix_match_num", "gauge",
     "Total number of prefill prompt tokens participating in prefix cache radix match."),
    ("npu_radix_match_hit_num", "gauge", "Number of prefill prompt tokens hit by prefix cache radix match."),
)


@dataclass
class Histogram:
    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    count: int = 0

    def observe(self, value: float) -> None:
        if not self.counts:
            self.counts = [0] * len(self.bounds)
        for i, bound in enumerate(self.bounds):
            if value <= bound:
                self.counts[i] += 1
        self.total += value
        self.count += 1


@dataclass
class Stats:
    received: int = 0
    success: int = 0
    failed: int = 0
    running: int = 0
    prompt_tokens: int = 0
    generation_tokens: int = 0
    ttft: Histogram = field(default_factory=lambda: Histogram(TTFT_BUCKETS))
    tpot: Histogram = field(default_factory=lambda: Histogram(TBT_BUCKETS))
    e2e: Histogram = field(default_factory=lambda: Histogram(E2E_BUCKETS))
    prompt_hist: Histogram = field(default_factory=lambda: Histogram(TOKEN_BUCKETS))
    generation_hist: Histogram = field(default_factory=lambda: Histogram(TOKEN_BUCKETS))
    v3: bool = False  # MindIE 3.0.0's buckets and metric list

    def __post_init__(self) -> None:
        if self.v3:
            self.prompt_hist, self.generation_hist = Histogram(TOKEN_BUCKETS_V3), Histogram(TOKEN_BUCKETS_V3)

    def values(self) -> dict[str, float | Histogram]:
        done = self.success + self.failed
        return {"request_received_total": self.received, "request_success_total": self.success,
                "request_failed_total": self.failed, "num_requests_running": self.running,
                "num_requests_waiting": 0, "num_requests_swapped": 0,
                "avg_prompt_throughput_toks_per_s": 0, "avg_generation_throughput_toks_per_s": 0,
                "time_to_first_token_seconds": self.ttft, "time_per_output_token_seconds": self.tpot,
                "e2e_request_latency_seconds": self.e2e,
                "failed_request_perc": (self.failed / done) if done else 0,
                "request_prompt_tokens": self.prompt_hist, "request_generation_tokens": self.generation_hist,
                "prompt_tokens_total": self.prompt_tokens, "generation_tokens_total": self.generation_tokens,
                "npu_cache_usage_perc": 0, "cpu_cache_usage_perc": 0, "npu_prefix_cache_hit_rate": 0,
                "num_preemptions_total": 0, "all_radix_match_num": 0, "npu_radix_match_hit_num": 0}


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def render(stats: Stats, model_name: str) -> str:
    """Prometheus text format as prometheus-cpp writes it: HELP, TYPE, then the samples (histograms: _count, _sum,
    then the cumulative _bucket lines ending with le="+Inf")."""
    label = f'model_name="{model_name}"'
    values = stats.values()
    lines: list[str] = []
    for name, kind, help_text in (METRICS_V3 if stats.v3 else METRICS):
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
        value = values[name]
        if isinstance(value, Histogram):
            lines.append(f"{name}_count{{{label}}} {value.count}")
            lines.append(f"{name}_sum{{{label}}} {_num(value.total)}")
            counts = value.counts or [0] * len(value.bounds)
            for bound, count in zip(value.bounds, counts, strict=True):
                lines.append(f'{name}_bucket{{{label},le="{_num(bound)}"}} {count}')
            lines.append(f'{name}_bucket{{{label},le="+Inf"}} {value.count}')
        else:
            lines.append(f"{name}{{{label}}} {_num(value)}")
    return "\n".join(lines) + "\n"
