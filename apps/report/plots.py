"""The report's PNG plots (matplotlib, Agg backend, no display): per-chunk latency against the deadline,
and the share of visual tokens dropped over stream time. Each function takes a `Run` and returns PNG
bytes; nothing is written to disk here. Knows nothing about HTML.
"""

from __future__ import annotations

import io

import numpy as np
from streamrt.apps.report.run import Run

SIZE = (9.0, 3.0)
"""Figure size in inches (at DPI: 900x300 pixels)."""
DPI = 100


def _figure():
    import matplotlib

    matplotlib.use("Agg", force=True)  # never a display; safe in servers and tests
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=SIZE, dpi=DPI, layout="constrained")
    ax.grid(True, alpha=0.3)
    return plt, fig, ax


def _png(plt, fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    plt.close(fig)
    return buf.getvalue()


def latency_plot(run: Run) -> bytes:
    """Chunk latency (ms) at each chunk's end time; the deadline as a line; misses in red."""
    plt, fig, ax = _figure()
    t = np.asarray([c.t_end for c in run.chunks])
    ms = np.asarray([c.latency_s * 1000 for c in run.chunks])
    miss = np.asarray([not c.deadline_met for c in run.chunks], dtype=bool)
    if t.size:
        ax.plot(t, ms, color="#2b7bba", lw=1, label="chunk latency")
        ax.scatter(t[~miss], ms[~miss], s=8, color="#2b7bba")
        ax.scatter(t[miss], ms[miss], s=14, color="#d62728", label=f"deadline missed ({int(miss.sum())})")
    if run.budget_s is not None:
        ax.axhline(
            run.budget_s * 1000,
            color="#d62728",
            ls="--",
            lw=1,
            label=f"deadline {run.budget_s * 1000:.0f} ms",
        )
    ax.set_xlabel("stream time (s)")
    ax.set_ylabel("latency (ms)")
    ax.set_ylim(bottom=0)
    ax.set_title("Per-chunk latency against the deadline")
    ax.legend(loc="upper right", fontsize=8)
    return _png(plt, fig)


def drop_plot(run: Run, window: int = 10) -> bytes:
    """Share of visual tokens dropped per chunk (%), and its moving average over `window` chunks."""
    plt, fig, ax = _figure()
    t = np.asarray([c.t_end for c in run.chunks])
    share = np.asarray([100 * c.drop_share for c in run.chunks])
    if t.size:
        ax.bar(
            t,
            share,
            width=max(1e-3, float(np.median(np.diff(t))) if t.size > 1 else 1.0) * 0.8,
            color="#9ecae1",
            label="per chunk",
        )
        csum = np.concatenate(([0.0], np.cumsum(share)))
        lo = np.maximum(0, np.arange(1, t.size + 1) - window)
        avg = (csum[1:] - csum[lo]) / (np.arange(1, t.size + 1) - lo)  # trailing mean, shorter at the start
        ax.plot(t, avg, color="#08519c", lw=1.5, label=f"mean of the last {window} chunks")
    ax.set_xlabel("stream time (s)")
    ax.set_ylabel("tokens dropped (%)")
    ax.set_ylim(0, 100)
    ax.set_title("Visual tokens dropped (differential token drop)")
    ax.legend(loc="lower right", fontsize=8, framealpha=0.9)
    return _png(plt, fig)
