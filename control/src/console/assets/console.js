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

function segments() {
  const video = document.querySelector("video[data-clip]");
  if (!video) return;
  for (const item of document.querySelectorAll("[data-start]")) {
    const seek = () => {
      video.currentTime = Number(item.dataset.start);
      video.play().catch(() => {});
    };
    item.addEventListener("click", seek);
    item.addEventListener("keydown", (event) => { if (event.key === "Enter") seek(); });
  }
}

function uploads() {
  const form = document.getElementById("upload-form");
  if (!form) return;
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const bar = document.getElementById("upload-progress");
    const error = document.getElementById("upload-error");
    error.textContent = "";
    const request = new XMLHttpRequest();
    request.open("POST", form.action);
    request.setRequestHeader("X-CSRF-Token", form.dataset.csrf);
    request.upload.addEventListener("progress", (e) => { if (e.lengthComputable) bar.value = e.loaded / e.total; });
    request.addEventListener("load", () => {
      let answer = {};
      try { answer = JSON.parse(request.responseText); } catch (_) { answer = {}; }
      const id = answer.id || (answer.upload && answer.upload.id);
      if (request.status >= 200 && request.status < 300 && id) {
        bar.value = 1;
        window.location.assign("/uploads/" + id);
      } else {
        error.textContent = (answer.error && answer.error.message) || ("upload failed: " + request.status);
      }
    });
    request.addEventListener("error", () => { error.textContent = "the upload was interrupted"; });
    request.send(new FormData(form));
  });
}

function liveReload() {
  const el = document.querySelector("[data-live-reload]");
  if (el) setTimeout(() => window.location.reload(), 1000 * Number(el.dataset.liveReload));
}

document.addEventListener("DOMContentLoaded", () => {
  uploads();
  liveReload();
  localTimes(document);
  confirmations();
  segments();
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
