"""A short soak in `make test` (the long one is `make soak`): the mixed shop workload through the
gateway while every process is sampled; after warm-up, file descriptors, resident memory and
database connections stay within bounds, every request gets an answer the shop may give, and
once the load stops nothing is left in flight."""
import os

from soak import DB_CONNECTIONS_MAX, print_table, soak, verdict

SECONDS = float(os.environ.get("BAZAAR_SOAK_SECONDS", "45"))


def test_a_short_soak_grows_nothing_after_warm_up(tmp_path):
    load, sampler = soak(tmp_path, SECONDS, users=8, every=2)
    problems, table = verdict(sampler.samples)
    print_table(table)
    counts = load.counts
    assert sum(c[0] for c in counts.values()) > 0, counts
    assert {"browse", "search", "product", "add", "checkout"} <= set(counts), counts
    assert not load.failures, load.failures
    assert not problems, problems
    for _, row in sampler.samples:
        for name, figures in row.items():
            assert figures["db"] <= DB_CONNECTIONS_MAX, (name, figures)
