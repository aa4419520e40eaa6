"""``encoder: whisper``: a frozen pretrained Whisper encoder under a small trainable adapter.

Layout (``frozen_layers`` = K of Whisper's N blocks)::

    raw 16 kHz audio -> Whisper log-mel -> conv1, conv2, positions, blocks[:K]   frozen (cacheable)
      -> [x2 subsampling]                                                       trainable from here
      -> speaker input point (FiLM of the enrollment embedding: input_transform)
      -> [enrollment frames ; mixture frames] + segment embeddings   (enrollment: prefix)
      -> blocks[K:], ln_post  (Whisper's last layers, trainable)     each block and the adapter
      -> adapter: ESPnet conformer blocks                            after a conditioning point
                                                                     (enrollment: cross_attention,
                                                                      frame_transform)
      -> output (mixture frames, or [enrollment ; mixture] with enrollment_in_output)

The input is either raw audio ``[B, T]`` or the cached output of the frozen part
``[B, F, D]`` (``feats_type: extracted``; see ``diffasr.bin.extract_encoder_cache``), told
apart by shape.  The same holds for the enrollment audio, which ``forward`` takes as an
argument (an ``Enrollment``).  A cache is only valid for the
encoder that wrote it: ``frozen_fingerprint`` names that encoder.

Whisper is fed in one of two ways (``padding``):
- ``none``: the utterance's own log-mel, the position table sliced to its length;
- ``30s``: Whisper's own 30-s zero padding, what its decoder was trained on; the frames
  of the utterance are kept (5x the frozen cost on a 6-s utterance).
"""

import hashlib
import json
from dataclasses import dataclass
from typing import Callable, Optional, Tuple

import torch
from typeguard import typechecked

from espnet2.asr.encoder.abs_encoder import AbsEncoder
from espnet2.asr.encoder.conformer_encoder import ConformerEncoder

from diffasr.espnet2.enrollment import NO_ENROLLMENT, Enrollment
from diffasr.espnet2.enrollment_conditioning import CONDITIONING
from diffasr.whisper.checkpoint import load_whisper, whisper_checkpoint
from diffasr.whisper.layers import padding_mask, run_block

PADDINGS = ("none", "30s")
ENROLLMENT_MODES = ("none", "prefix") + tuple(CONDITIONING)
SAMPLE_RATE = 16000
HOP = 160  # Whisper's mel hop (10 ms); its conv2 halves the frames again (20 ms)


def frozen_fingerprint(whisper_model: str = "tiny.en", padding: str = "none",
                       frozen_layers: Optional[int] = None, **_) -> str:
    """Names the frozen part of an encoder config: the same string means the same cache."""
    identity = dict(checkpoint=whisper_checkpoint(whisper_model).name, padding=padding,
                    frozen_layers=frozen_layers)
    return hashlib.sha1(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class EncoderStates:
    """What ``WhisperEncoder.forward`` gives besides its output (ESPnet's encoder-states slot).

    ``activity`` [B, T]: the probability that the enrolled voice speaks in each mixture
    frame, where the conditioning decides it per frame (``frame_transform``), else None;
    ``whisper_out`` [B, T, D] and ``lengths`` [B]: the mixture frames after Whisper's last
    block and ``ln_post``, before the adapter: what the clean-target teacher
    (``diffasr.espnet2.teacher``) is compared with.
    """

    activity: Optional[torch.Tensor]
    whisper_out: torch.Tensor
    lengths: torch.Tensor


def _frames_of_samples(lengths: torch.Tensor) -> torch.Tensor:
    """Whisper frames (20 ms) of audio lengths in samples: mel frames, then conv2's stride 2."""
    return (lengths // HOP + 1) // 2


class WhisperEncoder(AbsEncoder):
    """Frozen Whisper encoder + trainable top (see the module docstring).

    Args:
        input_size: ESPnet's feature size (1 for raw audio; unused).
        whisper_model: "tiny.en" (shipped offline), a CTranslate2 dir or an openai-whisper .pt.
        padding: "none" or "30s" (see the module docstring).
        frozen_layers: Whisper blocks kept frozen (default: all); the rest are fine-tuned.
        subsample: 1, or 2 to halve the frame rate (40 ms) before the trainable part.
        enrollment: how the enrollment utterance's frozen frames condition the trainable
            part: "prefix" puts them before the mixture's, with learned segment embeddings
            (starting at zero); "cross_attention" and "frame_transform" act at each
            conditioning point (``diffasr.espnet2.enrollment_conditioning``), starting as
            the identity.
        enrollment_in_output: keep the enrollment frames in the output (the decoder's
            cross-attention memory); else only the mixture frames are returned.
        conditioning_conf: options of the ``enrollment`` kind's module (e.g.
            ``frame_transform``'s ``detector_layers``, its TS-VAD).
        enrollment_pool: average the enrollment's frames in groups of this many (it is there
            for who speaks, not what is said, so fewer frames serve and cost less).
        adapter_blocks: ESPnet conformer blocks on top (0: none).
        adapter_size: their width (projected from and back to Whisper's width).
        adapter_conf: other ``ConformerEncoder`` options (heads, linear_units, ...).
        max_seconds: longest audio (Whisper's position table holds 30 s).
    """

    @typechecked
    def __init__(
        self,
        input_size: int = 1,
        whisper_model: str = "tiny.en",
        padding: str = "none",
        frozen_layers: Optional[int] = None,
        subsample: int = 1,
        enrollment: str = "none",
        enrollment_in_output: bool = False,
        enrollment_pool: int = 1,
        conditioning_conf: Optional[dict] = None,
        adapter_blocks: int = 2,
        adapter_size: int = 256,
        adapter_conf: Optional[dict] = None,
        max_seconds: float = 30.0,
    ):
        super().__init__()
        if padding not in PADDINGS:
            raise ValueError(f"encoder_conf padding must be one of {PADDINGS}, got {padding!r}")
        if enrollment not in ENROLLMENT_MODES:
            raise ValueError(f"encoder_conf enrollment must be one of {ENROLLMENT_MODES}, got {enrollment!r}")
        if subsample not in (1, 2):
            raise ValueError(f"encoder_conf subsample must be 1 or 2, got {subsample}")
        whisper = load_whisper(whisper_model).encoder
        layers = len(whisper.blocks)
        frozen_layers = layers if frozen_layers is None else frozen_layers
        if not 0 <= frozen_layers <= layers:
            raise ValueError(f"encoder_conf frozen_layers must be in [0, {layers}], got {frozen_layers}")
        self.whisper = whisper
        self.padding, self.frozen_layers, self.subsample = padding, frozen_layers, subsample
        self.fingerprint = frozen_fingerprint(whisper_model, padding, frozen_layers)
        self.width = width = whisper.ln_post.normalized_shape[0]
        self.max_frames = whisper.positional_embedding.size(0)
        self.max_seconds = min(max_seconds, self.max_frames * 2 * HOP / SAMPLE_RATE)
        for name, parameter in whisper.named_parameters():
            parameter.requires_grad = not self._is_frozen(name)

        if subsample == 2:
            # Strided convolution initialised as a [1/4, 1/2, 1/4] average of each channel,
            # so Whisper's features reach the trainable layers unchanged in kind.
            self.downsample = torch.nn.Conv1d(width, width, kernel_size=3, stride=2, padding=1)
            with torch.no_grad():
                self.downsample.weight.zero_()
                eye = torch.eye(width)
                for k, w in enumerate((0.25, 0.5, 0.25)):
                    self.downsample.weight[:, :, k] = w * eye
                self.downsample.bias.zero_()
        self.enrollment, self.enrollment_in_output = enrollment, enrollment_in_output
        if enrollment_pool < 1:
            raise ValueError(f"encoder_conf enrollment_pool must be >= 1, got {enrollment_pool}")
        self.enrollment_pool = enrollment_pool
        if enrollment == "prefix":
            self.segment = torch.nn.Parameter(torch.zeros(2, width))  # [enrollment, mixture]
        self.adapter = None
        if adapter_blocks > 0:
            conf = dict(attention_heads=4, linear_units=4 * adapter_size, dropout_rate=0.1,
                        positional_dropout_rate=0.1, attention_dropout_rate=0.1,
                        # absolute positions: ESPnet's relative-position attention shifts
                        # [B, H, T, 2T] score tensors, the costliest op of a CPU step here
                        pos_enc_layer_type="abs_pos", selfattention_layer_type="selfattn",
                        activation_type="swish", macaron_style=False,
                        use_cnn_module=True, cnn_module_kernel=15, normalize_before=True)
            conf.update(adapter_conf or {})
            self.adapter = ConformerEncoder(input_size=width, output_size=adapter_size,
                                            input_layer="linear", num_blocks=adapter_blocks, **conf)
            # Added to Whisper's frames and zero at first: training starts from Whisper's
            # own features, which its (pretrained) decoder already reads.
            self.adapter_out = torch.nn.Linear(adapter_size, width)
            torch.nn.init.zeros_(self.adapter_out.weight)
            torch.nn.init.zeros_(self.adapter_out.bias)
        self.conditioning = None
        if enrollment in CONDITIONING:
            points = layers - frozen_layers + (1 if self.adapter is not None else 0)
            if points == 0:
                raise ValueError(f"encoder_conf enrollment: {enrollment} acts before trainable layers, and "
                                 "this encoder has none (frozen_layers = all, adapter_blocks = 0)")
            self.conditioning = CONDITIONING[enrollment](width, points, **(conditioning_conf or {}))
        elif conditioning_conf:
            raise ValueError(f"encoder_conf conditioning_conf is for enrollment: {' or '.join(CONDITIONING)}, "
                             f"not {enrollment!r}")

    # diffasr.espnet2.target_speaker passes the enrollment to forward
    takes_enrollment = True

    def output_size(self) -> int:
        return self.width

    @property
    def trainable_layers(self) -> int:
        """Whisper blocks above the frozen ones (trained, and conditioned on the enrollment)."""
        return len(self.whisper.blocks) - self.frozen_layers

    def _is_frozen(self, name: str) -> bool:
        if name.startswith("blocks."):
            return int(name.split(".")[1]) < self.frozen_layers
        if name.startswith("ln_post."):
            return self.frozen_layers == len(self.whisper.blocks)
        return True  # conv1, conv2

    def train(self, mode: bool = True):
        super().train(mode)
        self.whisper.eval()  # Whisper has no dropout; frozen means frozen
        return self

    # ------------------------------------------------------------------ frozen part
    def check_duration(self, samples: torch.Tensor, what: str = "audio") -> None:
        """Guard of the position table (30 s): training and the frozen-encoder cache read data
        sets here; a decode's audio was held within it where it entered (``diffasr.audio``)."""
        longest = float(samples.max()) / SAMPLE_RATE if samples.numel() else 0.0
        if longest > self.max_seconds + 1e-6:
            raise ValueError(f"{what} of {longest:.1f} s is longer than the {self.max_seconds:g} s that "
                             "Whisper's position table holds; cut it into shorter segments first")

    def _log_mel(self, speech: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Whisper's log-mel of each utterance [B, 80, frames], each normalised on its own."""
        from whisper.audio import N_FRAMES, N_SAMPLES, log_mel_spectrogram, pad_or_trim

        mels = []
        for b in range(speech.size(0)):
            audio = speech[b, : int(lengths[b])].float()
            if self.padding == "30s":
                mels.append(pad_or_trim(log_mel_spectrogram(audio, padding=N_SAMPLES)[:, :N_FRAMES], N_FRAMES))
            else:
                mels.append(log_mel_spectrogram(audio))
        width = max(m.size(1) for m in mels)
        return torch.stack([torch.nn.functional.pad(m, (0, width - m.size(1))) for m in mels])

    @torch.no_grad()
    def frozen(self, speech: torch.Tensor, lengths: torch.Tensor,
               what: str = "audio") -> Tuple[torch.Tensor, torch.Tensor]:
        """Output of the frozen part for raw audio [B, T]: frames [B, F, D] and lengths [B].

        Padded batches give the same frames as one utterance at a time: padding is
        zeroed before each convolution (as their own zero padding) and masked in attention.
        """
        self.check_duration(lengths, what)
        whisper = self.whisper
        mel = self._log_mel(speech, lengths)
        mel_lengths = torch.full_like(lengths, mel.size(2)) if self.padding == "30s" else lengths // HOP
        mel = mel.masked_fill(padding_mask(mel_lengths, mel.size(2))[:, None, :], 0.0)
        x = torch.nn.functional.gelu(whisper.conv1(mel))
        x = x.masked_fill(padding_mask(mel_lengths, x.size(2))[:, None, :], 0.0)
        x = torch.nn.functional.gelu(whisper.conv2(x)).transpose(1, 2)
        frames = (mel_lengths + 1) // 2
        x = x + whisper.positional_embedding[: x.size(1)]
        pad = None if self.padding == "30s" else padding_mask(frames, x.size(1))
        for block in whisper.blocks[: self.frozen_layers]:
            x = run_block(block, x, pad)
        if self.frozen_layers == len(whisper.blocks):
            x = whisper.ln_post(x)
        kept = _frames_of_samples(lengths)  # with 30-s padding: the utterance's own frames
        x = x[:, : int(kept.max())]
        return x.masked_fill(padding_mask(kept, x.size(1))[..., None], 0.0), kept

    def input_seconds(self, xs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Duration [B] of raw audio or of cached frames (20 ms each)."""
        if xs.dim() == 3:
            return lengths.float() * 2 * HOP / SAMPLE_RATE
        return lengths.float() / SAMPLE_RATE

    def _frozen_or_cached(self, xs: torch.Tensor, lengths: torch.Tensor,
                          what: str = "audio") -> Tuple[torch.Tensor, torch.Tensor]:
        if xs.dim() == 3 and xs.size(-1) == self.width:
            return xs, lengths  # the cached frozen output
        if xs.dim() != 2:
            raise ValueError(f"encoder: whisper takes raw {what} [batch, samples] or cached frames "
                             f"[batch, frames, {self.width}], got {tuple(xs.shape)}")
        return self.frozen(xs, lengths, what)

    # ------------------------------------------------------------------ trainable part
    def _downsample(self, x: torch.Tensor, lengths: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        if self.subsample == 1:
            return x, lengths
        x = self.downsample(x.transpose(1, 2)).transpose(1, 2)
        lengths = (lengths + 1) // 2
        return x.masked_fill(padding_mask(lengths, x.size(1))[..., None], 0.0), lengths

    def forward(
        self, xs_pad: torch.Tensor, ilens: torch.Tensor, prev_states: torch.Tensor = None,
        enrollment: Enrollment = NO_ENROLLMENT,
        input_transform: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor, EncoderStates]:
        """Encode ``xs_pad`` (audio or cached frames) for the speaker of ``enrollment``.

        ``input_transform``: applied to the frames at the speaker input point (FiLM).
        Returns the output [B, T, D], its lengths and the ``EncoderStates`` (ESPnet's place
        for encoder states): the per-frame target probability and Whisper's own output.
        """
        x, lengths = self._downsample(*self._frozen_or_cached(xs_pad, ilens))
        if input_transform is not None:
            x = input_transform(x)
        enroll = enroll_lengths = None
        if self.enrollment != "none":
            enroll, enroll_lengths = self._downsample(*self._frozen_or_cached(
                *enrollment.require_speech(x.size(0)), what="enrollment audio"))
            if self.enrollment_pool > 1:
                enroll = torch.nn.functional.avg_pool1d(enroll.transpose(1, 2), self.enrollment_pool,
                                                        ceil_mode=True).transpose(1, 2)
                enroll_lengths = (enroll_lengths + self.enrollment_pool - 1) // self.enrollment_pool
        prefix_lengths = None
        if self.enrollment == "prefix":
            x, lengths = _join(enroll + self.segment[0], enroll_lengths, x + self.segment[1], lengths)
            prefix_lengths = enroll_lengths
        pad = padding_mask(lengths, x.size(1))
        condition, frame_target = self.conditioning, None
        if condition is not None:
            enroll_pad = padding_mask(enroll_lengths, enroll.size(1))
            frame_target = condition.frame_target(x, pad, enroll, enroll_pad)
        point = 0
        for block in self.whisper.blocks[self.frozen_layers:]:
            if condition is not None:
                x, point = condition(point, x, enroll, enroll_pad, frame_target), point + 1
            x = run_block(block, x, pad)
        if self.frozen_layers < len(self.whisper.blocks):
            x = self.whisper.ln_post(x)
        whisper_out, whisper_lengths = x, lengths
        if prefix_lengths is not None:
            whisper_out, whisper_lengths = _drop_prefix(x, lengths, prefix_lengths)
        if self.adapter is not None:
            if condition is not None:
                x = condition(point, x, enroll, enroll_pad, frame_target)
            x = x + self.adapter_out(self.adapter(x, lengths)[0])
        if prefix_lengths is not None and not self.enrollment_in_output:
            x, lengths = _drop_prefix(x, lengths, prefix_lengths)
        activity = None if frame_target is None else frame_target.squeeze(-1)
        states = EncoderStates(activity, whisper_out, whisper_lengths)
        return x.masked_fill(padding_mask(lengths, x.size(1))[..., None], 0.0), lengths, states


def _join(first: torch.Tensor, first_lengths: torch.Tensor, second: torch.Tensor,
          second_lengths: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per row, ``first[:n1]`` then ``second[:n2]``, padded: [B, max(n1 + n2), D]."""
    lengths = first_lengths + second_lengths
    width = int(lengths.max())
    position = torch.arange(width, device=first.device)[None, :]
    from_first = position < first_lengths[:, None]
    first_index = position.clamp(max=first.size(1) - 1)
    second_index = (position - first_lengths[:, None]).clamp(min=0, max=second.size(1) - 1)
    gather = lambda t, i: t.gather(1, i[..., None].expand(-1, -1, t.size(2)))  # noqa: E731
    out = torch.where(from_first[..., None], gather(first, first_index.expand(first.size(0), -1)),
                      gather(second, second_index))
    return out.masked_fill(padding_mask(lengths, width)[..., None], 0.0), lengths


def _drop_prefix(x: torch.Tensor, lengths: torch.Tensor, prefix_lengths: torch.Tensor):
    """Rows of ``x`` without their first ``prefix_lengths`` frames."""
    kept = lengths - prefix_lengths
    width = int(kept.max())
    index = (torch.arange(width, device=x.device)[None, :] + prefix_lengths[:, None]).clamp(max=x.size(1) - 1)
    return x.gather(1, index[..., None].expand(-1, -1, x.size(2))), kept
