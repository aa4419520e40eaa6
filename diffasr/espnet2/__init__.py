"""ESPnet glue: the task, model wrappers and modules registered with ESPnet."""

import contextlib
import io
import sys


def _import_espnet_attention_quietly() -> None:
    """ESPnet's attention module prints "Failed to import Flash Attention" to stderr on
    every import where the optional flash-attn package is absent (every CPU machine).
    It is not an error: drop that line, keep anything else the import writes."""
    captured = io.StringIO()
    with contextlib.redirect_stderr(captured):
        import espnet2.legacy.nets.pytorch_backend.transformer.attention  # noqa: F401
    for line in captured.getvalue().splitlines(keepends=True):
        if "Failed to import Flash Attention" not in line:
            sys.stderr.write(line)


_import_espnet_attention_quietly()
