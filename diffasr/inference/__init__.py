"""Inference: Speech2Text (one loaded model), its decode options, and decoding of whole data sets."""

from diffasr.inference.decode_set import PartnerEnrollment, inference, long_form_inference, write_outputs
from diffasr.inference.options import DecodeOptions
from diffasr.inference.speech2text import Recognition, Speech2Text

__all__ = ["DecodeOptions", "Recognition", "PartnerEnrollment", "Speech2Text", "inference",
           "long_form_inference", "write_outputs"]
