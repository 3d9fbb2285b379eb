"""Web page speed at scale: p50/p95 of ``/api/history``, the ``/history`` page and a 1,000-cell
grid page, over bench/history.py's synthetic jobs (1,000,000 by default), on SQLite.

    python bench/web.py                          # 1,000,000 jobs in a temporary SQLite file
    python bench/web.py --db /tmp/web-bench.db   # build it there once, reuse it on later runs
    python bench/web.py --rows 100000 --searches 20

The data is bench/history.py's (its ``fill``: the same rows, the same migrations and indexes).
The app runs in uvicorn on a free port and is timed over HTTP with one keep-alive client, as a
browser would ask: every figure includes the HTTP round trip and the JSON or HTML rendering.
A route not present in this checkout (the history page, the grid page) is skipped with a note.
Target: under 100 ms a history page at 1,000,000 jobs.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # sdfarm, tests.servers
sys.path.insert(0, str(HERE))  # bench/history.py

import history as history_bench  # noqa: E402
import httpx  # noqa: E402

from sdfarm.config import Settings  # noqa: E402
from sdfarm.db.engine import dispose_all  # noqa: E402

#: What a user types in the history page's box and filters, as query strings.
HISTORY_QUERIES = {
    "newest (no filter)": [{}],
    "prompt: common word": [{"prompt": w} for w in ("masterpiece", "quality", "detailed",
                                                    "lighting", "art")],
    "prompt: subject word": [{"prompt": w} for w in ("lighthouse", "castle", "dragon", "fox",
                                                     "cathedral", "teapot")],
    "prompt: phrase": [{"prompt": p} for p in ('"golden hour"', '"oil painting"',
                                               '"looking at viewer"')],
    "prompt: prefix": [{"prompt": p} for p in ("light*", "paint*", "cinem*")],
    "prompt + cfg range": [{"prompt": w, "cfg": "6-8"} for w in ("lighthouse", "castle", "fox")],
    "prompt + cfg + 30d": [{"prompt": w, "cfg": "6-8", "since": "2026-10-02"}
                           for w in ("masterpiece", "lighting")],
    "seed": [{"seed": str(s)} for s in (12345, 777, 42, 9001)],
    "model + sampler": [{"model": "juggernautXL_v9", "sampler": "DPM++ 2M Karras"}],
    "page 5 of a word": [{"prompt": "castle", "offset": "80"}],
}


def serve(settings: Settings):
    import socket

    import uvicorn

    from sdfarm.web.app import create_app

    app = create_app(settings)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    return app, f"http://127.0.0.1:{port}", server, thread


def has_route(app, path: str) -> bool:
    def paths(routes) -> set[str]:
        found = set()
        for route in routes:
            if getattr(route, "path", None) is not None:
                found.add(route.path)
            inner = getattr(route, "original_router", None) or getattr(route, "router", None)
            if inner is not None and getattr(inner, "routes", None) is not None:
                found |= paths(inner.routes)  # an included router (FastAPI keeps it whole)
        return found

    return path in paths(app.router.routes)


def timed(client: httpx.Client, url: str, params_list: list[dict], n: int) -> tuple[float, ...]:
    times = []
    for i in range(n + 1):  # the first warms the caches and is not counted
        params = params_list[i % len(params_list)]
        started = time.perf_counter()
        answer = client.get(url, params=params)
        times.append(time.perf_counter() - started)
        if answer.status_code != 200:
            raise SystemExit(f"{url} {params}: {answer.status_code} {answer.text[:200]}")
    times = sorted(times[1:])
    p95 = times[min(len(times) - 1, int(round(0.95 * (len(times) - 1))))]
    return statistics.median(times) * 1000, p95 * 1000, times[-1] * 1000


def grid_sweep(settings: Settings, cells: int) -> int:
    """A sweep of ``cells`` images with two axes, rendered by the fake renderer (no model)."""
    from sdfarm.usecases.render import record_for_local_render, render_recorded
    from sdfarm.usecases.submit_text import plan_text

    side = int(cells ** 0.5)
    cfgs = ", ".join(f"{4 + i * 0.25:g}" for i in range(side))
    steps = ", ".join(str(10 + i) for i in range(cells // side))
    text = (f'name = "grid bench"\nmodel = "builtin:tiny"\nprompt = "a lighthouse"\n'
            f"seeds = [1]\nwidth = 64\nheight = 64\n[axes]\nx = {{ cfg = [{cfgs}] }}\n"
            f"y = {{ steps = [{steps}] }}\n")
    plan = plan_text(settings, text, "grid-bench.toml")
    sweep = record_for_local_render(settings, plan)
    render_recorded(settings, sweep)
    return sweep.sweep_id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--db", type=Path, help="SQLite file: built when absent, else reused")
    parser.add_argument("--searches", type=int, default=40, help="requests timed per kind")
    parser.add_argument("--cells", type=int, default=1000, help="cells of the grid sweep")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sdfarm-web-bench-") as tmp:
        db = args.db or Path(tmp) / "history.db"
        url = f"sqlite:///{db}"
        if db.exists():
            print(f"reusing {db}", flush=True)
        else:
            print(f"building {args.rows:,} jobs in {db} (bench/history.py's fill)", flush=True)
            _, fill_times = history_bench.fill(url, args.rows)
            for what, seconds in fill_times.items():
                print(f"  {what}: {seconds:,.1f} s", flush=True)
        settings = Settings(database_url=url, output_dir=Path(tmp) / "outputs",
                            model_dir=Path(tmp) / "models", renderer="fake:0", device="cpu")
        app, base, server, thread = serve(settings)
        try:
            with httpx.Client(base_url=base, timeout=60) as client:
                report(app, client, settings, args)
        finally:
            server.should_exit = True
            thread.join(30)
            dispose_all()


def report(app, client: httpx.Client, settings: Settings, args) -> None:
    print(f"\n{'request':<40} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}   "
          f"({args.searches} each, 20 a page)")

    def line(what: str, url: str, params: list[dict]) -> None:
        p50, p95, worst = timed(client, url, params, args.searches)
        print(f"{what:<40} {p50:8.1f} {p95:8.1f} {worst:8.1f}", flush=True)

    for kind, params in HISTORY_QUERIES.items():
        line(f"/api/history {kind}", "/api/history", params)
    if has_route(app, "/history"):
        for kind in ("newest (no filter)", "prompt: subject word", "prompt + cfg range", "seed"):
            line(f"/history page {kind}", "/history", HISTORY_QUERIES[kind])
    else:
        print("/history page: not in this checkout (the pages helper's); skipped")
    if not has_route(app, "/sweeps/{sweep_id}/grid"):
        print("/sweeps/{id}/grid: not in this checkout (the grid helper's); skipped")
        return
    started = time.perf_counter()
    sweep_id = grid_sweep(settings, args.cells)
    print(f"(grid sweep {sweep_id}: {args.cells} cells rendered by the fake renderer in "
          f"{time.perf_counter() - started:.1f} s)")
    line(f"/sweeps/{sweep_id}/grid page ({args.cells} cells)", f"/sweeps/{sweep_id}/grid", [{}])
    if has_route(app, "/api/sweeps/{sweep_id}/grid"):
        line(f"/api/sweeps/{sweep_id}/grid ({args.cells} cells)",
             f"/api/sweeps/{sweep_id}/grid", [{"x": "cfg", "y": "steps"}])


if __name__ == "__main__":
    main()
