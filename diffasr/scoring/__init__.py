"""Stage 7: sclite scoring, speaker confusion, word-confidence metrics, RESULTS.md."""
