// The Rushes console's own script: local times, confirmations, and the live parts of
// pages (polling the console's read-only API proxy every 2 s). Pages read fine without it.
"use strict";

function localTimes(root) {
  for (const el of root.querySelectorAll("time[datetime]")) {
    const at = new Date(el.getAttribute("datetime"));
    if (isNaN(at)) continue;
    el.title = at.toISOString();
    el.textContent = at.toLocaleString();
  }
}

function confirmations() {
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  }
  for (const button of document.querySelectorAll("button[data-confirm]")) {
    button.addEventListener("click", (event) => {
      if (!window.confirm(button.dataset.confirm)) event.preventDefault();
    });
  }
}

async function readApi(path) {
  const response = await fetch("/console/api" + path, { credentials: "same-origin", headers: { Accept: "application/json" } });
  if (!response.ok) throw new Error(path + ": " + response.status);
  return response.json();
}

function cell(text) {
  const td = document.createElement("td");
  td.textContent = text == null ? "" : String(text);
  return td;
}

function renderRunning(dashboard) {
  const body = document.querySelector("tbody[data-live='running']");
  if (!body) return;
  const rows = dashboard.running_jobs || [];
  body.replaceChildren(...rows.map((job) => {
    const tr = document.createElement("tr");
    const link = document.createElement("a");
    link.href = "/jobs/" + job.id;
    link.textContent = job.kind;
    const first = document.createElement("td");
    first.append(link);
    const progress = document.createElement("progress");
    progress.max = 1;
    progress.value = Number(job.progress || 0);
    progress.dataset.job = job.id;
    const bar = document.createElement("td");
    bar.append(progress, " " + Math.round(100 * Number(job.progress || 0)) + " %");
    tr.append(first, cell(job.queue), bar, cell(job.worker_host || ""));
    return tr;
  }));
}

function renderMetrics(values) {
  for (const el of document.querySelectorAll("[data-metric]")) {
    const name = el.dataset.metric;
    if (values && Object.prototype.hasOwnProperty.call(values, name)) el.textContent = String(values[name]);
  }
}

async function liveDashboard() {
  try {
    const dashboard = await readApi("/dashboard");
    renderMetrics(dashboard);
    renderRunning(dashboard);
    const stamp = document.querySelector("[data-live='updated']");
    if (stamp) stamp.textContent = new Date().toLocaleTimeString();
  } catch (err) {
    const stamp = document.querySelector("[data-live='updated']");
    if (stamp) stamp.textContent = "not updating: " + err.message;
  }
}

async function liveJob(id) {
  try {
    const job = await readApi("/jobs/" + id);
    for (const el of document.querySelectorAll("[data-job-field]")) {
      const value = job[el.dataset.jobField];
      el.textContent = value == null ? "" : String(value);
    }
    const bar = document.querySelector("progress[data-job-progress]");
    if (bar) bar.value = Number(job.progress || 0);
    return !["succeeded", "failed", "dead", "cancelled"].includes(job.state);
  } catch (err) {
    return false;
  }
}

// A transcript beside a player: a click (or Enter) on a segment seeks to its start, a
// click on a timed word to the word; the segment being played is marked, and within it
// the word being spoken. A link's #t=seconds starts the clip there.
function segments() {
  const video = document.querySelector("video[data-clip]");
  if (!video) return;
  const items = Array.from(document.querySelectorAll("[data-start]"));
  const seekTo = (seconds) => {
    video.currentTime = seconds;
    video.play().catch(() => {});
  };
  for (const item of items) {
    item.addEventListener("click", (event) => {
      const word = event.target.closest("[data-word-start]");
      seekTo(Number(word ? word.dataset.wordStart : item.dataset.start));
    });
    item.addEventListener("keydown", (event) => { if (event.key === "Enter") seekTo(Number(item.dataset.start)); });
  }
  const words = Array.from(document.querySelectorAll("[data-word-start]"));
  video.addEventListener("timeupdate", () => {
    const t = video.currentTime;
    for (const item of items) {
      const on = t >= Number(item.dataset.start) && t < Number(item.dataset.end);
      item.classList.toggle("current", on);
      if (on) item.setAttribute("aria-current", "true"); else item.removeAttribute("aria-current");
    }
    for (const word of words) {
      word.classList.toggle("spoken", t >= Number(word.dataset.wordStart) && t < Number(word.dataset.wordEnd));
    }
  });
  const start = /^#t=([0-9.]+)$/.exec(window.location.hash);
  if (start) video.addEventListener("loadedmetadata", () => { video.currentTime = Number(start[1]); }, { once: true });
}

// The scrub bar under a player: hovering shows the sprite's thumbnail for that moment
// (from the sprite's WebVTT index), a click seeks there.
async function scrubBar() {
  const bar = document.querySelector("[data-sprite-index]");
  const video = document.querySelector("video[data-clip]");
  if (!bar || !video) return;
  let cues = [];
  try {
    const response = await fetch(bar.dataset.spriteIndex, { credentials: "same-origin" });
    const vtt = await response.text();
    const seconds = (stamp) => stamp.split(":").reduce((sum, part) => sum * 60 + Number(part), 0);
    for (const block of vtt.split(/\n\n+/)) {
      const m = /([0-9:.]+) --> ([0-9:.]+)\s*\n[^#\n]*#xywh=(\d+),(\d+),(\d+),(\d+)/.exec(block);
      if (m) cues.push({ from: seconds(m[1]), to: seconds(m[2]), x: +m[3], y: +m[4], w: +m[5], h: +m[6] });
    }
  } catch (_) { cues = []; }
  const thumb = bar.querySelector(".thumb");
  const at = (event) => {
    const box = bar.getBoundingClientRect();
    return Math.min(1, Math.max(0, (event.clientX - box.left) / box.width)) * (video.duration || 0);
  };
  bar.addEventListener("mousemove", (event) => {
    const t = at(event);
    const cue = cues.find((c) => t >= c.from && t < c.to) || cues[cues.length - 1];
    if (!cue || !bar.dataset.sprite) return;
    thumb.style.width = cue.w + "px";
    thumb.style.height = cue.h + "px";
    thumb.style.backgroundImage = "url(" + JSON.stringify(bar.dataset.sprite) + ")";
    thumb.style.backgroundPosition = -cue.x + "px " + -cue.y + "px";
    const left = event.clientX - bar.getBoundingClientRect().left - cue.w / 2;
    thumb.style.left = Math.max(0, Math.min(bar.clientWidth - cue.w, left)) + "px";
  });
  bar.addEventListener("click", (event) => { video.currentTime = at(event); });
  bar.addEventListener("keydown", (event) => {
    const step = { ArrowLeft: -5, ArrowRight: 5 }[event.key];
    if (step) video.currentTime = Math.max(0, video.currentTime + step);
  });
  video.addEventListener("timeupdate", () => {
    bar.setAttribute("aria-valuenow", String(Math.round(100 * video.currentTime / (video.duration || 1))));
  });
}

// The clip's other audio tracks: the chosen one plays in step with the (then muted) video.
function audioTracks() {
  const choice = document.querySelector("select[data-audio-tracks]");
  const audio = document.querySelector("audio[data-track-player]");
  const video = document.querySelector("video[data-clip]");
  if (!choice || !audio || !video) return;
  const follow = () => {
    if (!audio.src) return;
    if (Math.abs(audio.currentTime - video.currentTime) > 0.3) audio.currentTime = video.currentTime;
    if (video.paused) audio.pause(); else audio.play().catch(() => {});
  };
  choice.addEventListener("change", () => {
    if (choice.value) {
      audio.src = choice.value;
      video.muted = true;
      audio.currentTime = video.currentTime;
      follow();
    } else {
      audio.pause();
      audio.removeAttribute("src");
      video.muted = false;
    }
  });
  for (const event of ["play", "pause", "seeked", "timeupdate"]) video.addEventListener(event, follow);
}

// A form with data-send sends a file with a progress bar: "multipart" sends the form
// as it is, "file" sends its file's bytes as the body (data-type: their content type).
// data-method is the HTTP method (POST by default); data-then is where to go after,
// with {id} the id in the answer (default: this page again, saying it was done).
function sendForms() {
  for (const form of document.querySelectorAll("form[data-send]")) {
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const bar = form.querySelector("[data-send-progress]");
      const error = form.querySelector("[data-send-error]");
      error.textContent = "";
      const request = new XMLHttpRequest();
      request.open(form.dataset.method || "POST", form.action);
      request.setRequestHeader("X-CSRF-Token", form.dataset.csrf);
      request.upload.addEventListener("progress", (e) => { if (e.lengthComputable) bar.value = e.loaded / e.total; });
      request.addEventListener("load", () => {
        let answer = {};
        try { answer = JSON.parse(request.responseText); } catch (_) { answer = {}; }
        if (request.status >= 200 && request.status < 300) {
          bar.value = 1;
          const id = answer.id || (answer.upload && answer.upload.id) || (answer.production && answer.production.id) || "";
          const then = form.dataset.then;
          window.location.assign(then ? then.replace("{id}", encodeURIComponent(id)) : window.location.pathname + "?done=" + encodeURIComponent("sent " + (form.dataset.what || "the file")));
        } else {
          error.textContent = (answer.error && answer.error.message) || ("sending failed: " + request.status);
        }
      });
      request.addEventListener("error", () => { error.textContent = "sending was interrupted"; });
      if (form.dataset.send === "file") {
        const file = form.querySelector("input[type=file]").files[0];
        if (!file) { error.textContent = "choose a file first"; return; }
        request.setRequestHeader("Content-Type", form.dataset.type || file.type || "application/octet-stream");
        request.send(file);
      } else {
        request.send(new FormData(form));
      }
    });
  }
}

function liveReload() {
  const el = document.querySelector("[data-live-reload]");
  if (el) setTimeout(() => window.location.reload(), 1000 * Number(el.dataset.liveReload));
}

document.addEventListener("DOMContentLoaded", () => {
  sendForms();
  liveReload();
  localTimes(document);
  confirmations();
  segments();
  scrubBar();
  audioTracks();
  if (document.querySelector("[data-live='dashboard']")) {
    liveDashboard();
    setInterval(liveDashboard, 2000);
  }
  const job = document.querySelector("[data-live-job]");
  if (job) {
    const id = job.dataset.liveJob;
    const timer = setInterval(async () => { if (!(await liveJob(id))) clearInterval(timer); }, 1000);
  }
});
