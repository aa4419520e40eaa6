// The served page: enroll a voice, transcribe a recording, read that voice's words.
// Plain browser JavaScript, no libraries and no requests beyond this server's own API.
"use strict";

const RATE = 16000;  // replaced by the model's rate from /v1/models
const state = { model: null, rate: RATE, recorded: {}, result: null, audioName: "", started: 0, ticker: null,
  timing: {} };
const $ = (id) => document.getElementById(id);

// ------------------------------------------------------------------ server calls
class ServerError extends Error {}

function apiHeaders() {
  const key = sessionStorage.getItem("diffasr-api-key");
  return key ? { "X-API-Key": key } : {};
}

// A sentence for a failed call: the server's own `detail` where it gave one.
function sentence(status, body) {
  let detail = body && body.detail;
  if (Array.isArray(detail)) {  // FastAPI's validation errors: field and message
    detail = detail.map((d) => `${(d.loc || []).slice(1).join(".")}: ${d.msg}`).join("; ");
  }
  if (status === 429) return `The server is busy: ${detail || "too many requests at once; try again in a moment"}.`;
  if (status === 401) { $("api-key-box").hidden = false; return "This server needs an API key: enter it above."; }
  if (status === 413) return `Too large: ${detail || "the upload is over the server's limit"}.`;
  if (detail) return capitalise(String(detail)) + (String(detail).endsWith(".") ? "" : ".");
  return `The server answered ${status} without an explanation.`;
}

function capitalise(text) { return text.charAt(0).toUpperCase() + text.slice(1); }

async function api(path, options = {}) {
  let response;
  try {
    response = await fetch(path, { ...options, headers: { ...apiHeaders(), ...(options.headers || {}) } });
  } catch (e) {
    throw new ServerError("The server could not be reached. Is it still running?");
  }
  const body = await response.json().catch(() => null);
  if (!response.ok) throw new ServerError(sentence(response.status, body));
  return body;
}

// POST with upload progress (fetch reports none): resolves to the JSON answer.
function postWithProgress(path, form, onUpload) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", path);
    for (const [k, v] of Object.entries(apiHeaders())) xhr.setRequestHeader(k, v);
    xhr.upload.onprogress = (e) => { if (e.lengthComputable) onUpload(e.loaded / e.total); };
    xhr.upload.onload = () => onUpload(1);
    xhr.onerror = () => reject(new ServerError("The server could not be reached. Is it still running?"));
    xhr.onload = () => {
      let body = null;
      try { body = JSON.parse(xhr.responseText); } catch (e) { /* not JSON: handled below */ }
      if (xhr.status >= 200 && xhr.status < 300) resolve(body);
      else reject(new ServerError(sentence(xhr.status, body)));
    };
    xhr.send(form);
  });
}

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
  if (message) box.scrollIntoView({ block: "nearest" });
}

async function guarded(button, work) {
  showError("");
  button.disabled = true;
  try { await work(); } catch (e) {
    showError(e instanceof ServerError ? e.message : `Something went wrong in the page: ${e.message}`);
  } finally { button.disabled = false; }
}

// ------------------------------------------------------------------ model and speakers
async function loadModel() {
  const { data } = await api("/v1/models");
  const model = data[0];
  state.model = model;
  state.rate = model.sample_rate;
  $("model-line").textContent = `Model ${model.id} (${model.family}, ${model.sample_rate} Hz, `
    + `segments up to ${model.max_segment_seconds} s; uploads up to ${model.limits.max_upload_mb} MB and `
    + `${model.limits.max_audio_seconds} s).`;
  const mode = $("mode");
  for (const m of model.modes) mode.append(new Option(m, m));
  const defaults = model.decode_defaults || {};
  if (defaults.steps) $("steps").placeholder = `default ${defaults.steps}`;
  if (defaults.block_length) $("block_length").placeholder = `default ${defaults.block_length}`;
  if (model.max_steps) $("steps").max = model.max_steps;
  $("decoding").hidden = model.family !== "diffusion";
  $("enroll").hidden = !model.takes_enrollment;
  const bands = model.confidence;
  document.querySelector(".high-threshold").textContent = bands.high.toFixed(2);
  document.querySelector(".low-threshold").textContent = bands.low.toFixed(2);
  $("calibration").textContent = bands.calibrated
    ? "(calibrated confidences)" : "(the model's own word probabilities, not calibrated)";
}

async function loadSpeakers(selectId) {
  if (!state.model.takes_enrollment) { $("speaker").parentElement.hidden = true; return; }
  const { data } = await api("/v1/speakers");
  const list = $("speakers");
  list.replaceChildren();
  for (const speaker of data) {
    const item = document.createElement("li");
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = speaker.name || "(no name)";  // text, never markup
    const seconds = document.createElement("span");
    seconds.className = "seconds";
    seconds.textContent = `${speaker.enrollment_seconds.toFixed(1)} s`;
    const remove = document.createElement("button");
    remove.type = "button";
    remove.textContent = "Remove";
    remove.setAttribute("aria-label", `Remove ${speaker.name || speaker.id}`);
    remove.addEventListener("click", () => guarded(remove, async () => {
      await api(`/v1/speakers/${encodeURIComponent(speaker.id)}`, { method: "DELETE" });
      await loadSpeakers();
    }));
    item.append(name, seconds, remove);
    item.dataset.id = speaker.id;
    list.append(item);
  }
  $("no-speakers").hidden = data.length > 0;
  const select = $("speaker");
  const keep = selectId || select.value;
  select.replaceChildren();
  for (const speaker of data) select.append(new Option(speaker.name || speaker.id, speaker.id));
  select.append(new Option("An enrollment for this request only", "__upload__"));
  if ([...select.options].some((o) => o.value === keep)) select.value = keep;
  $("request-enrollment-row").hidden = select.value !== "__upload__";
}

function chosenFile(inputId) {
  return state.recorded[inputId] || $(inputId).files[0] || null;
}

// The server refuses a body over its limit before reading it; say so before uploading.
function checkSize(files) {
  const limit = state.model.limits.max_upload_mb;
  const megabytes = files.reduce((sum, f) => sum + f.size, 0) / 2 ** 20;
  if (megabytes > limit) {
    throw new ServerError(`Too large: the upload is ${megabytes.toFixed(1)} MB, over the server's limit of ${limit} MB.`);
  }
}

async function enroll() {
  const file = chosenFile("enroll-file");
  if (!file) throw new ServerError("Choose or record an enrollment first.");
  checkSize([file]);
  const form = new FormData();
  form.append("audio", file, file.name || "enrollment.wav");
  form.append("name", $("enroll-name").value.trim());
  const answer = await api("/v1/speakers", { method: "POST", body: form });
  const notes = answer.notes.length ? ` (${answer.notes.join("; ")})` : "";
  $("enroll-status").textContent = `Enrolled ${answer.enrollment_seconds.toFixed(1)} s${notes}.`;
  $("enroll-name").value = "";
  $("enroll-file").value = "";
  delete state.recorded["enroll-file"];
  await loadSpeakers(answer.id);
}

// ------------------------------------------------------------------ transcription
function startProgress() {
  $("progress-box").hidden = false;
  state.started = performance.now();
  const tick = (uploaded) => {
    const seconds = ((performance.now() - state.started) / 1000).toFixed(1);
    if (uploaded < 1) {
      $("progress").value = Math.round(100 * uploaded);
      $("progress-text").textContent = `Uploading: ${Math.round(100 * uploaded)} %`;
    } else {
      $("progress").removeAttribute("value");  // indeterminate while the server decodes
      $("progress-text").textContent = `Decoding: ${seconds} s`;
    }
  };
  let uploaded = 0;
  state.ticker = setInterval(() => tick(uploaded), 200);
  return (fraction) => { uploaded = fraction; tick(uploaded); };
}

function stopProgress() {
  clearInterval(state.ticker);
  $("progress-box").hidden = true;
}

async function transcribe() {
  const clicked = performance.now();
  const audio = chosenFile("audio-file");
  if (!audio) throw new ServerError("Choose or record the recording to transcribe first.");
  const form = new FormData();
  form.append("audio", audio, audio.name || "recording.wav");
  if (state.model.takes_enrollment) {
    const speaker = $("speaker").value;
    if (speaker === "__upload__") {
      const enrollment = chosenFile("request-enrollment");
      if (!enrollment) throw new ServerError("Choose an enrollment for this request, or an enrolled voice.");
      form.append("enrollment", enrollment, enrollment.name || "enrollment.wav");
    } else if (speaker) {
      form.append("speaker_id", speaker);
    } else {
      throw new ServerError("Enroll a voice first, or choose an enrollment for this request.");
    }
  }
  for (const field of ["mode", "steps", "block_length"]) {
    const value = $(field).value.trim();
    if (value && !$("decoding").hidden) form.append(field, value);
  }
  checkSize([...form.values()].filter((v) => v instanceof Blob));
  const onUpload = startProgress();
  let answer;
  try { answer = await postWithProgress("/v1/transcribe", form, onUpload); } finally { stopProgress(); }
  state.result = answer;
  state.audioName = (audio.name || "recording").replace(/\.[^.]*$/, "");
  showResult(answer);
  state.timing.wordsShownSeconds = (performance.now() - clicked) / 1000;  // read by bench/serve_page.py
  drawTimeline(answer, await decodeForDrawing(audio));
}

function band(confidence) {
  const bands = state.model.confidence;
  return confidence >= bands.high ? "conf-high" : confidence < bands.low ? "conf-low" : "conf-mid";
}

function showResult(answer) {
  $("result").hidden = false;
  $("result-summary").textContent = `${answer.audio_seconds.toFixed(2)} s of audio in `
    + `${answer.processing_seconds.toFixed(2)} s (RTFx ${answer.rtfx}), ${answer.words.length} words`
    + (answer.segments.length > 1 ? `, ${answer.segments.length} speech segments.` : ".");
  const notes = $("notes");
  notes.replaceChildren(...answer.notes.map((n) => {
    const li = document.createElement("li");
    li.textContent = capitalise(n) + ".";
    return li;
  }));
  $("not-found").hidden = answer.target_found !== false;
  const words = $("words");
  words.replaceChildren();
  for (const w of answer.words) {
    const span = document.createElement("span");
    span.className = `word ${band(w.confidence)}`;
    span.textContent = w.word;
    const label = `${w.word}: ${w.start.toFixed(2)}–${w.end.toFixed(2)} s, confidence ${w.confidence.toFixed(2)}`;
    span.title = label;
    span.setAttribute("aria-label", label);
    span.tabIndex = 0;
    span.dataset.confidence = w.confidence;
    words.append(span, " ");
  }
  for (const [id, text, type] of [["download-json", JSON.stringify(answer, null, 1), "application/json"],
    ["download-ctm", toCtm(answer, state.audioName), "text/plain"], ["download-srt", toSrt(answer), "text/plain"]]) {
    const link = $(id);
    if (link.href.startsWith("blob:")) URL.revokeObjectURL(link.href);
    link.href = URL.createObjectURL(new Blob([text], { type }));
    link.download = `${state.audioName}.${id.split("-")[1]}`;
  }
}

// NIST CTM: <recording> <channel> <start> <duration> <word> <confidence>
function toCtm(answer, name) {
  return answer.words.map((w) => `${name} 1 ${w.start.toFixed(2)} ${(w.end - w.start).toFixed(2)} `
    + `${w.word} ${w.confidence.toFixed(4)}\n`).join("");
}

function srtTime(seconds) {
  const ms = Math.round(seconds * 1000);
  const pad = (n, k = 2) => String(n).padStart(k, "0");
  return `${pad(Math.floor(ms / 3600000))}:${pad(Math.floor(ms / 60000) % 60)}:${pad(Math.floor(ms / 1000) % 60)},`
    + pad(ms % 1000, 3);
}

// Subtitles: at most 10 words or 5 s a cue, never across a speech segment's end.
function toSrt(answer) {
  const cues = [];
  let cue = [];
  const segmentOf = (w) => answer.segments.findIndex((s) => w.start >= s.start - 1e-3 && w.start < s.end + 1e-3);
  for (const w of answer.words) {
    if (cue.length && (cue.length >= 10 || w.end - cue[0].start > 5 || segmentOf(w) !== segmentOf(cue[0]))) {
      cues.push(cue);
      cue = [];
    }
    cue.push(w);
  }
  if (cue.length) cues.push(cue);
  return cues.map((c, i) => `${i + 1}\n${srtTime(c[0].start)} --> ${srtTime(c[c.length - 1].end)}\n`
    + `${c.map((w) => w.word).join(" ")}\n`).join("\n");
}

// ------------------------------------------------------------------ timeline
async function decodeForDrawing(file) {
  try {
    const context = new OfflineAudioContext(1, 1, state.rate);
    const audio = await context.decodeAudioData(await file.arrayBuffer());
    return audio.getChannelData(0);
  } catch (e) {
    return null;  // a format the browser cannot decode: the timeline is drawn without the waveform
  }
}

function drawTimeline(answer, samples) {
  const canvas = $("timeline");
  const g = canvas.getContext("2d");
  const width = canvas.width, height = canvas.height, wave = 90;
  const seconds = Math.max(answer.audio_seconds, 1e-3);
  const x = (t) => (t / seconds) * width;
  g.clearRect(0, 0, width, height);
  g.fillStyle = "rgba(26, 86, 219, 0.10)";  // speech segments (silero-vad, or the whole file)
  for (const s of answer.segments) g.fillRect(x(s.start), 0, Math.max(1, x(s.end) - x(s.start)), wave);
  if (samples) {
    g.strokeStyle = "#555";
    g.beginPath();
    const per = Math.max(1, Math.floor(samples.length / width));
    for (let px = 0; px < width; px++) {
      let lo = 0, hi = 0;
      for (let i = px * per; i < Math.min(samples.length, (px + 1) * per); i++) {
        lo = Math.min(lo, samples[i]); hi = Math.max(hi, samples[i]);
      }
      g.moveTo(px + 0.5, wave / 2 - hi * wave / 2);
      g.lineTo(px + 0.5, wave / 2 - lo * wave / 2 + 1);
    }
    g.stroke();
  }
  const colours = { "conf-high": "#3fae5a", "conf-mid": "#e0b020", "conf-low": "#d04040" };
  g.font = "12px system-ui, sans-serif";
  answer.words.forEach((w, i) => {
    const top = wave + 8 + (i % 2) * 24;  // alternate rows so that short words stay readable
    g.fillStyle = colours[band(w.confidence)];
    g.fillRect(x(w.start), top, Math.max(2, x(w.end) - x(w.start)), 18);
    g.fillStyle = "#111";
    g.fillText(w.word, x(w.start) + 2, top + 13);
  });
  g.fillStyle = "#333";
  g.fillText("0 s", 2, height - 2);
  g.fillText(`${seconds.toFixed(1)} s`, width - 40, height - 2);
}

// ------------------------------------------------------------------ recording in the browser
// MediaRecorder gives compressed audio (webm/opus); the server reads WAV, so the page
// decodes it, resamples to the model's rate with an OfflineAudioContext and writes 16-bit WAV.
function encodeWav(samples, rate) {
  const buffer = new ArrayBuffer(44 + 2 * samples.length);
  const view = new DataView(buffer);
  const text = (offset, s) => { for (let i = 0; i < s.length; i++) view.setUint8(offset + i, s.charCodeAt(i)); };
  text(0, "RIFF"); view.setUint32(4, 36 + 2 * samples.length, true); text(8, "WAVE");
  text(12, "fmt "); view.setUint32(16, 16, true); view.setUint16(20, 1, true); view.setUint16(22, 1, true);
  view.setUint32(24, rate, true); view.setUint32(28, 2 * rate, true); view.setUint16(32, 2, true);
  view.setUint16(34, 16, true); text(36, "data"); view.setUint32(40, 2 * samples.length, true);
  for (let i = 0; i < samples.length; i++) {
    view.setInt16(44 + 2 * i, Math.max(-1, Math.min(1, samples[i])) * 0x7fff, true);
  }
  return new Blob([buffer], { type: "audio/wav" });
}

async function toModelRate(blob, rate) {
  const decoded = await new AudioContext().decodeAudioData(await blob.arrayBuffer());
  const frames = Math.max(1, Math.ceil(decoded.duration * rate));
  const offline = new OfflineAudioContext(1, frames, rate);  // mixes channels down and resamples
  const source = offline.createBufferSource();
  source.buffer = decoded;
  source.connect(offline.destination);
  source.start();
  return (await offline.startRendering()).getChannelData(0);
}

const recorders = {};

async function toggleRecording(button) {
  const target = button.dataset.target;
  const status = target === "enroll-file" ? $("enroll-status") : $("progress-text");
  if (recorders[target]) { recorders[target].stop(); return; }
  if (!navigator.mediaDevices || !window.MediaRecorder) {
    throw new ServerError("This browser cannot record here (recording needs https or localhost).");
  }
  let stream;
  try { stream = await navigator.mediaDevices.getUserMedia({ audio: true }); } catch (e) {
    throw new ServerError("The microphone was not available or not allowed.");
  }
  const recorder = new MediaRecorder(stream);
  const chunks = [];
  recorder.ondataavailable = (e) => chunks.push(e.data);
  recorder.onstop = async () => {
    stream.getTracks().forEach((t) => t.stop());
    delete recorders[target];
    button.textContent = "Record";
    button.classList.remove("recording");
    try {
      const samples = await toModelRate(new Blob(chunks, { type: recorder.mimeType }), state.rate);
      const file = new File([encodeWav(samples, state.rate)], `recording-${Date.now()}.wav`, { type: "audio/wav" });
      state.recorded[target] = file;
      $(target).value = "";
      status.textContent = `Recorded ${(samples.length / state.rate).toFixed(1)} s at ${state.rate} Hz.`;
      if (target === "audio-file") $("progress-box").hidden = false;
    } catch (e) {
      showError("The recording could not be converted to WAV in this browser.");
    }
  };
  recorders[target] = recorder;
  recorder.start();
  button.textContent = "Stop";
  button.classList.add("recording");
}

// ------------------------------------------------------------------ wiring
window.addEventListener("DOMContentLoaded", () => {
  $("enroll-form").addEventListener("submit", (e) => { e.preventDefault(); guarded($("enroll-submit"), enroll); });
  $("transcribe-form").addEventListener("submit", (e) => {
    e.preventDefault();
    guarded($("transcribe-submit"), transcribe);
  });
  $("speaker").addEventListener("change", () => {
    $("request-enrollment-row").hidden = $("speaker").value !== "__upload__";
  });
  for (const id of ["enroll-file", "audio-file"]) {
    $(id).addEventListener("change", () => { delete state.recorded[id]; });
  }
  for (const id of ["enroll-record", "audio-record"]) {
    $(id).addEventListener("click", () => toggleRecording($(id)).catch((e) => showError(e.message)));
  }
  $("api-key-save").addEventListener("click", () => {
    sessionStorage.setItem("diffasr-api-key", $("api-key").value);
    $("api-key-box").hidden = true;
    start();
  });
  start();
});

async function start() {
  showError("");
  try {
    await loadModel();
    await loadSpeakers();
    document.body.dataset.ready = "true";  // the tests wait for this
  } catch (e) {
    showError(e.message);
  }
}

window.diffasrPage = { encodeWav, toCtm, toSrt, recorded: state.recorded, timing: state.timing };  // for the browser tests
