"""Speaker encoder (recipe stages 3-4): SpeechBrain ECAPA-TDNN training with an
AAM-softmax or triplet objective, enrollment embeddings, and EER/minDCF scoring.

The submodules are imported on first use of a name (PEP 562), so that reading a data
dir (``diffasr.speaker.data``) does not load SpeechBrain.  Audio is read and checked by
``diffasr.audio``."""

import importlib

_HOME = {
    "SpeakerDataError": "data",
    "compute_eer": "metrics", "compute_min_dcf": "metrics", "make_trials": "metrics",
    "SpeakerEncoder": "model", "build_encoder": "model", "load_config": "model", "load_trained_encoder": "model",
}
__all__ = list(_HOME)


def __getattr__(name: str):
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)


# The presence gate's command-line option (diffasr.speaker.presence), declared here, where a
# parser can read it without numpy or torch (the tools answer --help at once).
GATE_CHOICES = {"auto": None, "true": True, "false": False}


def add_presence_argument(parser) -> None:
    """``--presence_gate`` of the command-line tools that load a model (transcribe, serve)."""
    parser.add_argument("--presence_gate", choices=sorted(GATE_CHOICES), default="auto",
                        help="auto: leave undecoded (empty) a mixture or segment in which the speaker "
                             "encoder does not find the enrolled voice, where stage 4 chose a threshold "
                             "(presence.yaml beside the speaker encoder); true: require it; false: never")
