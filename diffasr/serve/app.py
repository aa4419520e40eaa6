"""The HTTP service: a FastAPI app around one loaded model.

    app = build_app(TargetSpeakerASR("exp/asr_diffusion_whisper"), ServeOptions(db="speakers.db"))
    uvicorn.run(app, host="127.0.0.1", port=8000)

Endpoints (JSON answers; errors are ``{"detail": message}`` with a 4xx status):
  GET    /                       the page: enroll, transcribe, read the words (static/, no CDN)
  GET    /health                 liveness, queue state, RSS
  GET    /v1/models              the model, its rate, modes and limits
  POST   /v1/speakers            enroll (multipart: ``audio``, ``name``) -> speaker id
  GET    /v1/speakers            enrolled speakers
  DELETE /v1/speakers/{id}
  POST   /v1/transcribe          multipart: ``audio`` plus ``speaker_id`` or ``enrollment``,
                                 and ``mode``/``steps``/``block_length``

Uploads are decoded in memory (never written under their file name) and checked once
(``diffasr.audio.read_audio``: stereo down-mixed, other rates resampled); every
transcription goes through ``TargetSpeakerASR.transcribe_long``, which segments audio past
the model's maximum with silero-vad.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import numpy as np
from fastapi import FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from diffasr import longform
from diffasr.api import TargetSpeakerASR
from diffasr.audio import AudioError, CheckedAudio, Role, read_audio
from diffasr.serve.batcher import Batcher, ShuttingDown
from diffasr.serve.speakers import SpeakerStore, UnknownSpeaker, WrongModel

logger = logging.getLogger(__name__)
API_KEY_ENV = "DIFFASR_API_KEY"
API_KEY_HEADER = "X-API-Key"


@dataclass
class ServeOptions:
    """Server limits and batching (``diffasr.bin.serve`` exposes each as an option)."""

    db: Path = Path("speakers.db")  # SQLite file of enrolled speakers
    max_upload_mb: float = 50.0  # a request body larger than this gets 413
    max_audio_seconds: float = 3600.0  # a longer upload gets 413
    max_concurrent: int = 16  # requests decoding at once; more get 429
    # Segments decoded together.  On 2 CPU cores 32 test mixtures took 9.6 s at batch 1,
    # 6.9 s at batch 4 and 8.0 s at batch 8 (the decoder's 51,865-way output layer is
    # compute-bound); on a GPU raise it.
    max_batch: int = 4
    max_wait_ms: float = 50.0  # how long the queue waits to fill a batch
    api_key: Optional[str] = None  # when set, /v1 needs the X-API-Key header



STATIC_DIR = Path(__file__).resolve().parent / "static"
# The page loads only this server's own files and calls only its API; recordings become blob: URLs.
PAGE_SECURITY = {"Content-Security-Policy": "default-src 'self'; connect-src 'self' blob:; img-src 'self' blob: data:; "
                                            "media-src 'self' blob:; "
                                            "object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
                 "X-Content-Type-Options": "nosniff"}
# Word confidence bands the page colours by: at least HIGH is sure, under LOW doubtful.  The
# word confidences are the model's own token probabilities (stage 7's fitted temperature
# is a scoring figure, not applied when serving), so /v1/models says calibrated: false.
CONFIDENCE_BANDS = dict(low=0.5, high=0.9)

# The form fields each endpoint reads: any other is refused rather than silently ignored.
TRANSCRIBE_FIELDS = ("audio", "speaker_id", "enrollment", "mode", "steps", "block_length")
SPEAKER_FIELDS = ("audio", "name")


async def refuse_unknown_fields(request: Request, accepted) -> None:
    """422 naming a form field the endpoint does not read (a typo such as ``beam_size``
    would otherwise be dropped without a word), and the fields it accepts."""
    unknown = sorted(set((await request.form()).keys()) - set(accepted))
    if unknown:
        raise HTTPException(422, f"unknown form field{'s' if len(unknown) > 1 else ''} "
                                 f"{', '.join(repr(u) for u in unknown)}; this endpoint accepts "
                                 f"{', '.join(accepted)}")


def rss_mb() -> float:
    """Resident set size of this process (Linux /proc)."""
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def model_fingerprint(asr: TargetSpeakerASR) -> str:
    """Identity of the loaded weights: enrolled speakers belong to it."""
    digest = hashlib.sha256()
    for name, tensor in sorted(asr.speech2text.model.state_dict().items())[:64]:
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().float().numpy().tobytes()[:4096])
    return digest.hexdigest()[:16]


def build_app(asr: TargetSpeakerASR, options: ServeOptions, model_name: str = "model") -> FastAPI:
    store = SpeakerStore(options.db, model_fingerprint(asr))
    if asr.fs != longform.VAD_RATE:
        raise ValueError(f"the server runs silero-vad at {longform.VAD_RATE} Hz; the model takes {asr.fs} Hz")
    asr.speech_activity()  # loaded now, not on the first long upload
    # What an upload is: audio of any length up to the server's limit, or an enrollment.
    roles = dict(recording=Role.recording(options.max_audio_seconds, f"over the server's limit of "
                                          f"{options.max_audio_seconds:g} s", 413),
                 enrollment=asr.role("enrollment"))

    def decode(segments, enrollments, changes):
        # Each batch holds one request option set (the batcher groups by it); the options go
        # down with the call, never into the model's state, and each segment's random draws
        # come from its own generator seeded with them: the same request gets the same
        # answer whatever was decoded before it or beside it.
        return asr.decode(segments, enrollments if asr.takes_enrollment else None, options=changes)

    state = dict(shutting_down=False, in_flight=0, started=time.time(), rss_start_mb=rss_mb(), requests=0)
    # A lone request (the only one in flight) is decoded without waiting for company.
    batcher = Batcher(decode, options.max_batch, options.max_wait_ms / 1000,
                      others_coming=lambda: state["in_flight"] > 1)
    counter_lock = threading.Lock()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        state["shutting_down"] = True  # uvicorn has let in-flight requests finish
        await run_in_threadpool(batcher.stop, 30.0)
        store.close()
        logger.info("stopped: speakers are in %s", options.db)

    app = FastAPI(title="diffasr", lifespan=lifespan)
    app.state.batcher, app.state.store = batcher, store

    @app.middleware("http")
    async def guard(request: Request, call_next):
        if state["shutting_down"]:
            return JSONResponse({"detail": "the server is shutting down; retry on another instance"}, 503)
        if request.url.path.startswith("/v1/") and options.api_key:
            given = request.headers.get(API_KEY_HEADER, "")
            if not secrets.compare_digest(given.encode(), options.api_key.encode()):
                return JSONResponse({"detail": f"missing or wrong {API_KEY_HEADER} header"}, 401)
        if request.method == "POST":
            length = request.headers.get("content-length")
            if length is None:
                return JSONResponse({"detail": "uploads need a Content-Length header"}, 411)
            if int(length) > options.max_upload_mb * 2 ** 20:
                return JSONResponse({"detail": f"the request is {int(length) / 2 ** 20:.1f} MB, over the "
                                               f"server's limit of {options.max_upload_mb:g} MB"}, 413)
            with counter_lock:
                if state["in_flight"] >= options.max_concurrent:
                    return JSONResponse({"detail": f"{options.max_concurrent} requests are already being "
                                                   "served; retry later"}, 429, headers={"Retry-After": "1"})
                state["in_flight"] += 1
                state["requests"] += 1
            try:
                return await call_next(request)
            finally:
                with counter_lock:
                    state["in_flight"] -= 1
        response = await call_next(request)
        if not request.url.path.startswith("/v1/"):
            response.headers.update(PAGE_SECURITY)
        return response

    async def read_upload(upload: UploadFile, role: str) -> CheckedAudio:
        """The upload checked once for ``role`` (converted to the model's rate and mono)."""
        data = await upload.read()  # the body size is bounded by the Content-Length check
        name = f"the {roles[role].name} upload" + (f" {upload.filename[:100]!r}" if upload.filename else "")
        try:
            return await run_in_threadpool(read_audio, data, roles[role], asr.fs, name, True, True)
        except AudioError as e:
            raise HTTPException(e.status, str(e)) from None

    async def on_model(function):
        """Run ``function`` on the model's thread."""
        try:
            return await asyncio.wrap_future(batcher.call(function))
        except ShuttingDown as e:
            raise HTTPException(503, str(e)) from None

    async def enroll(checked: CheckedAudio):
        try:  # the audio was checked by read_upload
            return await on_model(lambda: asr.enroll(checked))
        except ValueError as e:
            raise HTTPException(400, str(e)) from None

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(STATIC_DIR / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/health")
    async def health():
        sizes = batcher.batch_sizes
        return dict(status="ok", in_flight=state["in_flight"], requests=state["requests"],
                    uptime_seconds=round(time.time() - state["started"], 1),
                    rss_mb=round(rss_mb(), 1), rss_start_mb=round(state["rss_start_mb"], 1),
                    batches=len(sizes), segments_decoded=int(sum(sizes)),
                    mean_batch=round(float(np.mean(sizes)), 2) if sizes else None)

    @app.get("/v1/models")
    async def models():
        from diffasr.espnet2.model import DiffusionASRModel

        model = asr.speech2text.model
        diffusion = isinstance(model, DiffusionASRModel)
        return dict(data=[dict(
            id=model_name, family="diffusion" if diffusion else "autoregressive",
            sample_rate=asr.fs, takes_enrollment=asr.takes_enrollment,
            max_segment_seconds=asr.speech2text.max_audio_seconds,
            modes=list(asr.REQUEST_MODES) if diffusion else [],
            decode_defaults=dict(mode=asr.speech2text.options.recognizer.decode_mode,
                                 **asdict(asr.speech2text.options.diffusion))
            if diffusion else {},
            max_steps=model.max_hypothesis_length if diffusion else None,
            confidence=dict(CONFIDENCE_BANDS, calibrated=False),
            limits=dict(max_upload_mb=options.max_upload_mb, max_audio_seconds=options.max_audio_seconds,
                        max_concurrent=options.max_concurrent),
        )])

    @app.post("/v1/speakers")
    async def add_speaker(request: Request, audio: UploadFile = File(...), name: str = Form("")):
        await refuse_unknown_fields(request, SPEAKER_FIELDS)
        if not asr.takes_enrollment:
            raise HTTPException(400, "this model takes no speaker input; there is nothing to enroll")
        checked = await read_upload(audio, "enrollment")
        enrollment = await enroll(checked)
        speaker_id = await run_in_threadpool(store.add, name[:200], enrollment, checked.seconds)
        return dict(id=speaker_id, name=name[:200], enrollment_seconds=round(checked.seconds, 3),
                    notes=list(checked.notes))

    @app.get("/v1/speakers")
    async def list_speakers():
        return dict(data=await run_in_threadpool(store.list))

    @app.delete("/v1/speakers/{speaker_id}")
    async def delete_speaker(speaker_id: str):
        if not await run_in_threadpool(store.delete, speaker_id):
            raise HTTPException(404, f"no enrolled speaker {speaker_id}")
        return dict(id=speaker_id, deleted=True)

    @app.post("/v1/transcribe")
    async def transcribe(
        request: Request,
        audio: UploadFile = File(...),
        speaker_id: Optional[str] = Form(None),
        enrollment: Optional[UploadFile] = File(None),
        mode: Optional[str] = Form(None),
        steps: Optional[int] = Form(None),
        block_length: Optional[int] = Form(None),
    ):
        started = time.perf_counter()
        await refuse_unknown_fields(request, TRANSCRIBE_FIELDS)
        try:
            decode_options = asr.check_decode_options(mode, steps, block_length)
        except ValueError as e:
            raise HTTPException(422, str(e)) from None
        notes = []
        enrolled = None
        if asr.takes_enrollment:
            if (speaker_id is None) == (enrollment is None):
                raise HTTPException(400, "give exactly one of speaker_id (an enrolled speaker) "
                                         "or enrollment (audio of the target speaker alone)")
            if speaker_id is not None:
                try:
                    enrolled = await run_in_threadpool(store.get, speaker_id)
                except UnknownSpeaker:
                    raise HTTPException(404, f"no enrolled speaker {speaker_id}") from None
                except WrongModel as e:
                    raise HTTPException(409, str(e)) from None
            else:
                checked_enrollment = await read_upload(enrollment, "enrollment")
                notes += checked_enrollment.notes
                enrolled = await enroll(checked_enrollment)
        elif speaker_id is not None or enrollment is not None:
            notes.append("this model takes no speaker input: the enrollment was ignored")
        recording = await read_upload(audio, "recording")
        notes += recording.notes

        def decode_batch(segments):
            return [f.result() for f in batcher.submit(segments, enrolled, decode_options)]

        try:
            # All segments go to the queue at once; the queue bounds the batches.
            result = await run_in_threadpool(
                lambda: asr.transcribe_long(recording, whole=None, decode_batch=decode_batch, batch_size=1 << 16,
                                            max_batch_seconds=float("inf")))
        except ShuttingDown as e:
            raise HTTPException(503, str(e)) from None
        except ValueError as e:  # a decode option the sampler refuses for this canvas
            raise HTTPException(422, str(e)) from None
        if result.segmented:
            notes.append(f"longer than the model's {asr.max_audio_seconds:g} s: segmented with silero-vad")
        seconds = time.perf_counter() - started
        return dict(
            text=result.text,
            words=[dict(word=w.word, start=w.start, end=w.end, confidence=round(w.confidence, 4))
                   for w in result.words],
            segments=[dict(start=s.start, end=s.end, text=s.text) for s in result.segments],
            audio_seconds=round(result.audio_seconds, 3), processing_seconds=round(seconds, 3),
            rtfx=round(result.audio_seconds / max(seconds, 1e-9), 2),
            speaker_id=speaker_id, options=decode_options, notes=notes,
            # an empty transcript for an enrolled voice: that voice does not speak here
            target_found=bool(result.text.strip()) if enrolled is not None else None,
        )

    return app
