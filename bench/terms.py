"""Term matching benchmark: ``TermMatcher`` against the least any whole-word matcher costs.

    .venv/bin/python -m bench.terms [--sizes 100000 1000000]

Texts are 45 words of Danish-like filler with 2% of the words drawn from the design's vocabulary,
so most texts match no term, as in a feed or a month of posts. Timed on the same texts:
- limit: NFC, casefold and one ``\\w+`` scan of each text (reading every word once);
- ours: ``core.collection.terms.TermMatcher.match`` with the benchmarks' five plain terms, then
  with three boolean terms (a group, an exclusion, an excluded group) added.
Reported: texts/s and each matcher's ratio to the limit (1.0 would be free beyond the scan).
No database is used.
"""

from __future__ import annotations

import random
import re
import time
import unicodedata

from bench import common
from observatory_pipelines.core.collection.terms import TermMatcher

BOOLEAN_TERMS = ["(havvind OR vindmøller) støj", "klima -atomkraft", '"grøn omstilling" -(kul OR olie)']
_LETTERS = "abcdefghijklmnoprstuvyæøå"


def synthetic_texts(n: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    filler = ["".join(rng.choice(_LETTERS) for _ in range(rng.randint(2, 9))) for _ in range(5000)]
    vocabulary = common.WORDS + ["støj", "atomkraft", "kul"]
    return [
        " ".join(rng.choice(vocabulary) if rng.random() < 0.02 else rng.choice(filler) for _ in range(45))
        for _ in range(n)
    ]


def _rate(n: int, work) -> tuple[float, int]:
    started = time.perf_counter()
    matched = work()
    return n / (time.perf_counter() - started), matched


def measure(n: int) -> dict:
    texts = synthetic_texts(n)
    words = re.compile(r"\w+")
    limit, _ = _rate(n, lambda: sum(len(words.findall(unicodedata.normalize("NFC", t).casefold())) for t in texts))
    report: dict = {"texts": n, "limit_texts_per_s": round(limit)}
    for label, design_terms in (("plain", common.TERMS), ("with_boolean", common.TERMS + BOOLEAN_TERMS)):
        matcher = TermMatcher(design_terms)
        rate, matched = _rate(n, lambda matcher=matcher: sum(1 for t in texts if matcher.match(t)))
        report[label] = {
            "terms": len(design_terms),
            "texts_per_s": round(rate),
            "ratio_to_limit": round(rate / limit, 2),
            "texts_matched": matched,
        }
        print(
            f"{n:>9,} texts, {label:<12} {rate:>10,.0f} texts/s = {rate / limit:.2f} × the word scan ({matched:,} matched)"
        )
    return report


def main() -> None:
    args = common.size_parser(__doc__, [100_000, 1_000_000]).parse_args()
    results = [measure(n) for n in args.sizes]
    print(f"saved {common.save('terms', {'environment': common.environment(), 'results': results})}")


if __name__ == "__main__":
    main()
