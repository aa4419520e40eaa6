"""Stage 1 data preparation: target-speaker mixtures in Kaldi data dirs.

- `text`: LibriSpeech-style transcript normalisation and sentence harvesting from
  Debian text packages (fortunes, WordNet glosses) or a user text file.
- `voices`: the synthetic speakers of the embedded corpus (espeak-ng, flite).
- `mixing`: target + interferers + noise at drawn SIR/SNR, LibriMix clipping rule.
- `corpus`: mixture planning, rendering and atomic writing of the data dirs.
- `embedded`: the offline default corpus; `librispeech`: the real-corpus path.

The layout written is the "Data directories" contract of docs/DESIGN.md.
"""


class DataPrepError(ValueError):
    """Bad input for data preparation; the message names the file (and line)."""
