"""``python -m fuzz.seeds [NAME...]``: (re)write the seed corpora under ``fuzz/corpus`` from
the real vectors and the synthetic kits. Seeds are small and committed; what a campaign
adds to a corpus stays in ``fuzz/work`` (not committed)."""

from __future__ import annotations

import sys

from fuzz.engine import CORPUS, load, names


def write(name: str) -> int:
    harness = load(name)
    directory = CORPUS / name
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.iterdir():
        old.unlink()
    count = 0
    for seed_name, data in harness.seeds():
        (directory / seed_name).write_bytes(data)
        count += 1
    return count


def main(argv: list[str]) -> None:
    for name in argv or names():
        print(f"{name}: {write(name)} seeds")


if __name__ == "__main__":
    main(sys.argv[1:])
