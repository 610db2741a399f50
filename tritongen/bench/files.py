"""A bench run's files: report.md (templates/bench_report.md.j2), report.json and the bench.png plot."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from tritongen.bench.report import BenchReport


def write_report(report: BenchReport, folder: Path) -> list[Path]:
    """report.md, report.json and (with matplotlib) bench.png in `folder`; returns the files written."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    json_path = folder / "report.json"
    json_path.write_text(json.dumps(report.to_dict(), indent=2, default=str) + "\n")
    written.append(json_path)
    plot = plot_report(report, folder / "bench.png")
    if plot is not None:
        written.append(plot)
    md = folder / "report.md"
    md.write_text(render_markdown(report, plot.name if plot else None))
    written.insert(0, md)
    return written


def render_markdown(report: BenchReport, plot_name: str | None) -> str:
    from tritongen import __version__
    from tritongen.render import render

    return render("bench_report.md.j2", {"r": report, "best": report.best, "plot": plot_name,
                                         "fraction": report.fraction_of_ceiling, "tritongen_version": __version__})


def plot_report(report: BenchReport, path: Path) -> Path | None:
    """Throughput and p99 latency against concurrency; None when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # no display: render to a file only
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    from matplotlib.ticker import StrMethodFormatter

    xs = [p.concurrency for p in report.points]
    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    served = [p.throughput for p in report.points]
    ax.plot(xs, served, "o-", color="tab:blue", label="served throughput")
    top = max(served, default=0.0)
    if report.generator and report.generator.noop_throughput:
        ax.axhline(report.generator.noop_throughput, color="tab:gray", linestyle=":", alpha=0.8,
                   label="no-op model (client + serving path)")
        top = max(top, report.generator.noop_throughput)
    ceiling = report.ceiling
    if ceiling is not None and ceiling.throughput <= 3 * top:
        ax.axhline(ceiling.throughput, color="tab:blue", linestyle="--", alpha=0.6,
                   label=f"ONNX Runtime in-process (batch {ceiling.batch_size})")
        top = max(top, ceiling.throughput)
    elif ceiling is not None:
        # Far above: drawn to scale it would flatten every served point against the axis.
        ax.annotate(f"ONNX Runtime in-process: {ceiling.throughput:,.0f} inf/s at batch {ceiling.batch_size} "
                    f"({ceiling.throughput / max(top, 1e-9):.0f}x, off this scale)", xy=(0.01, 0.97),
                    xycoords="axes fraction", va="top", fontsize=8, color="tab:blue")
    ax.set_ylim(0, top * 1.15 if top > 0 else 1)
    ax.yaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
    ax.set_xscale("log", base=2)
    ax.set_xticks(xs, [str(x) for x in xs])
    ax.set_xlabel("concurrency (requests in flight)")
    ax.set_ylabel("inferences / s", color="tab:blue")
    ax2 = ax.twinx()
    ax2.plot(xs, [p.latency.p99 for p in report.points], "s-", color="tab:red", label="p99 latency")
    ax2.plot(xs, [p.latency.p50 for p in report.points], "s--", color="tab:red", alpha=0.4, label="p50 latency")
    ax2.set_ylabel("latency (ms)", color="tab:red")
    ax2.set_ylim(bottom=0)
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    # Below the axes: inside, the legend would hide the lines it explains.
    fig.legend(lines[0] + lines2[0], lines[1] + lines2[1], loc="lower center", ncol=3, fontsize=8, frameon=False)
    ax.set_title(f"{report.model} over {report.protocol.upper()}, batch {report.batch_size} per request", fontsize=10)
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    fig.savefig(path)
    plt.close(fig)
    return path


def default_report_dir(model: str) -> Path:
    return Path("bench_reports") / f"{model}-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"
