"""The fuzz campaign's bounded run (docs/reliability.md): every harness replays its committed
seed corpus and regression inputs, then a fixed set of deterministic mutations of them, and
no input may raise anything but a broker error. ``make fuzz`` is the real campaign."""

from __future__ import annotations

import pytest

from fuzz.engine import CORPUS, REGRESSIONS, inputs, judge, load, mutations, names, replay

MUTATIONS = 300


@pytest.mark.parametrize("name", names())
def test_corpus_and_regressions_raise_only_broker_errors(name: str) -> None:
    harness = load(name)
    target = harness.setup()
    seeds = inputs(CORPUS / name)
    assert seeds, f"fuzz/corpus/{name} is empty: run python -m fuzz.seeds {name}"
    assert replay(harness, target, [*seeds, *inputs(REGRESSIONS / name)]) >= len(seeds)
    corpus = [path.read_bytes() for path in seeds]
    for data in mutations(corpus, MUTATIONS, seed=len(name)):
        verdict = judge(harness, target, data)
        assert verdict.site is None or verdict.tolerated, (
            f"{name}: {verdict.site}: {verdict.message} on input {data[:64].hex()}..."
        )


def test_every_harness_has_seeds_and_a_description() -> None:
    assert len(names()) >= 13
    for name in names():
        harness = load(name)
        assert harness.name == name
        assert harness.description.strip()
