"""Driven by test_serve_budget.cpp: one checkpoint sent with wsm_client while the merger's memory
budget is taken by another peer's partial checkpoint. With --expect delivered the other peer leaves
once this one has been refused, and the client must wait (OVER_BUDGET, backoff) and deliver; with
--expect fails it never leaves, and the client must give up after reconnect_timeout_ms."""
import argparse
import sys
import time

import numpy as np

import wsm_client


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--run", default="py-budget")
    ap.add_argument("--elements", type=int, required=True)
    ap.add_argument("--reconnect-timeout-ms", type=int, default=30000)
    ap.add_argument("--expect", choices=["delivered", "fails"], required=True)
    args = ap.parse_args()

    merger = wsm_client.MergerClient(args.endpoint, run_id=args.run, reconnect_timeout_ms=args.reconnect_timeout_ms)
    values = np.arange(args.elements, dtype=np.float32)
    start = time.monotonic()
    merger.send_checkpoint(100, 100, 1e-3, {"w": values})
    try:
        merger.flush()
        outcome = "delivered"
    except wsm_client.MergerError as e:
        outcome = "fails"
        message = str(e)
    elapsed = time.monotonic() - start
    merger.close()
    print(f"outcome {outcome} after {elapsed:.2f} s, stats {merger.stats}", flush=True)
    if outcome != args.expect:
        print(f"expected {args.expect}", file=sys.stderr)
        return 1
    if merger.stats["budget_waits"] < 1:
        print("the client never waited for the budget", file=sys.stderr)
        return 1
    if outcome == "fails":
        if "memory budget" not in message:
            print(f"failure does not name the budget: {message}", file=sys.stderr)
            return 1
        # Bounded: it gave up near reconnect_timeout_ms, not at once and not much later.
        if not args.reconnect_timeout_ms / 1000 <= elapsed < args.reconnect_timeout_ms / 1000 + 5:
            print(f"gave up after {elapsed:.2f} s", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
