"""Benchmark of the VMIS-kNN kernel against the plain-Python reference, in one process.

    .venv/bin/python bench/kernel.py [--reference-sample 300] [--json bench/out/kernel.json]

Per data set (yoochoose_rsc15 train_full/test, serenade_example train/test):
  * build: index build rate (clicks/s, median of 5 builds) vs the reference's build;
  * recommend: latency p50/p90/p99 of one call for every test prefix (last 2 clicks, the
    evaluation inputs), m=500 with k=100 and k=500, through the Python API
    (`VMISIndex.recommend`, original ids in and out) and the bare kernel (dense codes);
    the reference runs on a random sample of the same prefixes; ratios = reference / API (p50
    and mean) and reference / bare kernel (p50), on that same sample;
  * batch: microseconds per recommendation through `recommend_codes` (all prefixes, one call);
  * writes: microseconds per `upsert_session` (the live sync path: the test sessions upserted
    as new rows) and per `remove_session` of the 2,000 oldest sessions (expiry).
Pinned to one CPU core (sched_setaffinity) and one Numba thread.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

os.environ.setdefault("NUMBA_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import numpy as np  # noqa: E402
from common import pct  # noqa: E402
from reference_vmis import ReferenceVMIS  # noqa: E402

from recommender.sessions_io import group_sessions, read_sessions  # noqa: E402
from udfs import kernel  # noqa: E402
from udfs.vmisknn import VMISIndex  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
DATASETS = {
    "yoochoose_rsc15": (
        "yoochoose_rsc15/yoochoose-clicks-100k_train_full.txt",
        "yoochoose_rsc15/yoochoose-clicks-100k_test.txt",
    ),
    "serenade_example": ("serenade_example/train.txt", "serenade_example/test.txt"),
}
M = 500
KS = (100, 500)
MAX_ITEMS = 2


def timed(fn, *args) -> float:
    start = time.perf_counter_ns()
    fn(*args)
    return (time.perf_counter_ns() - start) / 1000.0  # microseconds


def prefixes(test) -> list[list]:
    out = []
    for _, items in group_sessions(test):
        items = items.tolist()
        out.extend(items[max(0, t - MAX_ITEMS) : t] for t in range(1, len(items)))
    return out


def bench_dataset(name: str, sample: int, rng: random.Random) -> dict:
    train_path, test_path = DATASETS[name]
    train = read_sessions(DATA / train_path)
    test = read_sessions(DATA / test_path)
    sids, iids, ts = train.session_ids, train.item_ids, train.timestamps
    VMISIndex.build(sids, iids, ts, m=M)  # warm-up (and Numba cache load)
    builds = [timed(VMISIndex.build, sids, iids, ts, M) for _ in range(5)]
    clicks = list(zip(sids.tolist(), iids.tolist(), ts.tolist(), strict=True))
    ref_build = [timed(ReferenceVMIS, clicks, M) for _ in range(2)]
    index = VMISIndex.build(sids, iids, ts, m=M)
    ref = ReferenceVMIS(clicks, m=M)
    queries = prefixes(test)
    picked = rng.sample(range(len(queries)), min(sample, len(queries)))
    out: dict = {
        "clicks": len(train),
        "sessions": index.n_sessions,
        "items": index.n_items,
        "queries": len(queries),
        "build_clicks_per_s": len(train) / (np.median(builds) / 1e6),
        "reference_build_clicks_per_s": len(train) / (np.median(ref_build) / 1e6),
    }
    log_p = index._log_p()
    arrays = index._arrays()
    codes = [index.encode_session(q) for q in queries]
    out_items = np.empty(21, dtype=np.int64)
    out_scores = np.empty(21, dtype=np.float64)
    for k in KS:
        index.recommend(queries[0], k=k)
        api = [timed(index.recommend, q, k) for q in queries]
        bare = [
            timed(kernel.recommend_one, c, M, k, 21, 1.0, log_p, *arrays, out_items, out_scores)
            for c in codes
        ]
        ref_t = [timed(ref.recommend, queries[i], k) for i in picked]
        api_sample = [api[i] for i in picked]
        offsets = np.zeros(len(codes) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum([len(c) for c in codes])
        flat = np.concatenate(codes)
        batch_us = timed(index.recommend_codes, offsets, flat, k) / len(codes)
        out[f"k{k}"] = {
            "api_p50_us": pct(api, 0.5), "api_p90_us": pct(api, 0.9), "api_p99_us": pct(api, 0.99),
            "kernel_p50_us": pct(bare, 0.5), "kernel_p90_us": pct(bare, 0.9),
            "kernel_p99_us": pct(bare, 0.99),
            "reference_p50_us": pct(ref_t, 0.5), "reference_p90_us": pct(ref_t, 0.9),
            "reference_p99_us": pct(ref_t, 0.99),
            "ratio_p50": pct(ref_t, 0.5) / pct(api_sample, 0.5),
            "ratio_mean": float(np.mean(ref_t) / np.mean(api_sample)),
            "kernel_ratio_p50": pct(ref_t, 0.5) / pct([bare[i] for i in picked], 0.5),
            "batch_us_per_rec": batch_us,
            "reference_sample": len(picked),
        }  # fmt: skip
    rows = [(sid, items.tolist(), float(i)) for i, (sid, items) in enumerate(group_sessions(test))]
    t0 = ts.max() + 1
    ups = [timed(index.upsert_session, sid, items, t0 + i) for sid, items, i in rows]
    out["upsert_p50_us"] = pct(ups, 0.5)
    out["upsert_p99_us"] = pct(ups, 0.99)
    live = np.flatnonzero(index.se_len[: len(index.sessions)] > 0)
    oldest = live[np.argsort(index.se_time[live], kind="stable")][:2000]
    expire = [timed(index.remove_session, index.sessions.id_of(c)) for c in oldest.tolist()]
    out["expire_p50_us"] = pct(expire, 0.5)
    out["expire_p99_us"] = pct(expire, 0.99)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--reference-sample", type=int, default=300, help="prefixes for the reference"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    rng = random.Random(args.seed)
    results = {name: bench_dataset(name, args.reference_sample, rng) for name in DATASETS}
    for name, r in results.items():
        print(f"\n== {name}: {r['clicks']} clicks, {r['sessions']} sessions, "
              f"{r['items']} items, {r['queries']} test prefixes")  # fmt: skip
        print(f"build       {r['build_clicks_per_s'] / 1e6:8.2f} M clicks/s   "
              f"(reference {r['reference_build_clicks_per_s'] / 1e6:.2f} M clicks/s, "
              f"x{r['build_clicks_per_s'] / r['reference_build_clicks_per_s']:.1f})")  # fmt: skip
        for k in KS:
            x = r[f"k{k}"]
            print(f"m={M} k={k:<4} API     p50 {x['api_p50_us']:7.1f} us  p90 "
                  f"{x['api_p90_us']:7.1f}  p99 {x['api_p99_us']:7.1f}")  # fmt: skip
            print(f"           kernel  p50 {x['kernel_p50_us']:7.1f} us  p90 "
                  f"{x['kernel_p90_us']:7.1f}  p99 {x['kernel_p99_us']:7.1f}")  # fmt: skip
            print(f"           batch   {x['batch_us_per_rec']:7.1f} us per recommendation")
            print(f"           reference p50 {x['reference_p50_us']:9.1f} us  p90 "
                  f"{x['reference_p90_us']:9.1f}  p99 {x['reference_p99_us']:9.1f}  "
                  f"(n={x['reference_sample']})")  # fmt: skip
            print(f"           reference / API: p50 x{x['ratio_p50']:.0f}, mean "
                  f"x{x['ratio_mean']:.0f}; reference / kernel p50 "
                  f"x{x['kernel_ratio_p50']:.0f}")  # fmt: skip
        print(f"upsert_session p50 {r['upsert_p50_us']:.1f} us  p99 {r['upsert_p99_us']:.1f} us; "
              f"remove_session (oldest first) p50 {r['expire_p50_us']:.1f} us  "
              f"p99 {r['expire_p99_us']:.1f} us")  # fmt: skip
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
