"""One harness per parser; each module defines ``HARNESS``."""
