"""Coverage-guided fuzzing of every parser that reads attacker bytes (docs/reliability.md)."""
