"""Inference: Speech2Text (one loaded model) and decoding of whole data sets."""

from diffasr.inference.decode_set import RotatedEnrollment, inference, long_form_inference, write_outputs
from diffasr.inference.speech2text import Recognition, Speech2Text, load_train_args

__all__ = ["Recognition", "RotatedEnrollment", "Speech2Text", "inference", "load_train_args",
           "long_form_inference", "write_outputs"]
