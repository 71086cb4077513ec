"""``python -m fuzz NAME [libFuzzer flags] [corpus dirs]``: one harness under atheris."""

import sys

from fuzz.engine import fuzz_main, names

if len(sys.argv) < 2 or sys.argv[1] not in names():
    sys.exit(f"usage: python -m fuzz NAME [libFuzzer flags]; NAME is one of {', '.join(names())}")
fuzz_main(sys.argv[1], sys.argv[2:])
