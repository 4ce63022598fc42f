"""QA sampling over a million synthetic consultations: the HMAC draw and targeted rules for each, then the
monthly floor's top-up per physician (qa_audit.sampling, pure: what the sampling task and `qa replay` run)."""

from __future__ import annotations

import time
import uuid

from qa_audit.sampling import Facts, SamplingPolicy, by_physician_month, decide, replay

CONSULTATIONS = 1_000_000
PHYSICIANS = 100
MONTHS = [f"2026-{month:02d}" for month in range(1, 13)]


def bench_sampling() -> None:
    facts = [Facts(uuid.UUID(int=n + 1), uuid.UUID(int=(n % PHYSICIANS) + 1), MONTHS[(n // PHYSICIANS) % 12],
                   rating=5 if n % 97 else 1, call_seconds=900.0 if n % 53 else 60.0,
                   physician_consultation_number=100)
             for n in range(CONSULTATIONS)]
    policy = SamplingPolicy()
    secret = b"benchmark qa secret, 32 bytes..!"
    started = time.perf_counter()
    sampled = sum(decide(item, secret=secret, policy=policy).sampled for item in facts)
    decided = time.perf_counter() - started
    print(f"{'QA sampling: decisions (draw + targeted rules)':<48} {CONSULTATIONS / decided:>12,.0f} /s"
          f"   (1,000,000 in {decided:.1f} s; {sampled / CONSULTATIONS:.1%} sampled)")
    started = time.perf_counter()
    reasons = replay(facts, secret=secret, policy=policy)
    replayed = time.perf_counter() - started
    groups = len(by_physician_month(facts))
    total = sum(1 for found in reasons.values() if found)
    print(f"{'QA sampling: replay with the monthly floor':<48} {replayed:>12.1f} s"
          f"     ({groups:,} physician-months, {total / CONSULTATIONS:.1%} sampled after the top-up)")


if __name__ == "__main__":
    bench_sampling()
