// The playground page: submit the form, follow the prediction live, show its images and the key's history.

import { ApiError, MODEL, TERMINAL, api, predictionEvents, saveKey, savedKey, uploadFile } from "./api.js";
import { clearErrors, fillForm, readInput, showError, showFieldErrors } from "./form.js";
import { SNIPPETS } from "./snippets.js";

const HISTORY_SIZE = 20;
// While queued, how often the queue position is refreshed (the stream reports only status changes).
const STANDING_REFRESH_MS = 2000;
// How often a prediction is polled when its stream ended before `done` (a dropped connection).
const POLL_MS = 1000;

const $ = (selector) => document.querySelector(selector);
const form = $("#form");
const keyField = $('[data-field="api_key"]');
const statusLine = $("#status");
const progress = $("#progress");

let following = null; // {id, controller} of the prediction the result panel follows
let lastSeed = null;
let snippetKind = "curl";

// ---------------------------------------------------------------- key

function showKeyState() {
  $("#api-key").value = savedKey();
  $("#key-state").textContent = savedKey() ? "Saved in this browser." : "Paste the key `make up` printed.";
}

$("#key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  clearErrors(keyField);
  saveKey($("#api-key").value.trim());
  showKeyState();
  loadHistory();
});

// ---------------------------------------------------------------- form helpers

function showApiError(error, generalSlot = $("#form-error")) {
  if (!(error instanceof ApiError)) {
    generalSlot.textContent = `Could not reach the farm: ${error.message}`;
    return;
  }
  if (error.status === 401) {
    showError(keyField, error.message);
    return;
  }
  const unplaced = showFieldErrors(document, error.errors);
  if (!error.errors.length || unplaced.length) {
    const named = unplaced.map((item) => `${item.field}: ${item.message}`).join("; ");
    generalSlot.textContent = named || error.message;
  }
}

function renderSnippet() {
  const origin = window.location.origin;
  $("#snippet").textContent = SNIPPETS[snippetKind](origin, readInput(form));
  for (const tab of document.querySelectorAll("[data-snippet]")) {
    tab.setAttribute("aria-selected", String(tab.dataset.snippet === snippetKind));
  }
}

for (const tab of document.querySelectorAll("[data-snippet]")) {
  tab.addEventListener("click", () => {
    snippetKind = tab.dataset.snippet;
    renderSnippet();
  });
}
$("#copy").addEventListener("click", () => navigator.clipboard?.writeText($("#snippet").textContent));
form.addEventListener("input", renderSnippet);
form.addEventListener("change", renderSnippet);

// ---------------------------------------------------------------- seed

$("#randomize").addEventListener("change", (event) => {
  form.elements.seed.disabled = event.target.checked;
  renderSnippet();
});

$("#reuse-seed").addEventListener("click", () => {
  $("#randomize").checked = false;
  form.elements.seed.disabled = false;
  form.elements.seed.value = String(lastSeed);
  renderSnippet();
});

function rememberSeed(seed) {
  if (seed === null || seed === undefined) return;
  lastSeed = seed;
  $("#reuse-seed").disabled = false;
  $("#reuse-seed").textContent = `Reuse last (${seed})`;
}

// ---------------------------------------------------------------- init image

const drop = $("#drop");
const imageField = $('[data-field="image"]');

function showPreview(url) {
  $("#preview").hidden = !url;
  $("#drop-text").hidden = Boolean(url);
  if (url) $("#preview").src = url;
  else $("#preview").removeAttribute("src");
}

async function useFile(file) {
  clearErrors(imageField);
  showPreview(URL.createObjectURL(file));
  $("#submit").disabled = true;
  $("#drop-text").textContent = "Uploading…";
  try {
    const uploaded = await uploadFile(file);
    form.elements.image.value = uploaded.urls.get; // the file's URL is what the prediction's input names
  } catch (error) {
    showPreview(null);
    form.elements.image.value = "";
    if (error instanceof ApiError && error.status !== 401) showError(imageField, error.message);
    else showApiError(error);
  } finally {
    $("#drop-text").textContent = "Drop an image here, or click to pick a file";
    $("#submit").disabled = following !== null;
    renderSnippet();
  }
}

drop.addEventListener("click", () => $("#file").click());
drop.addEventListener("keydown", (event) => {
  if (event.key === "Enter" || event.key === " ") {
    event.preventDefault();
    $("#file").click();
  }
});
drop.addEventListener("dragover", (event) => {
  event.preventDefault();
  drop.classList.add("over");
});
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  drop.classList.remove("over");
  const file = event.dataTransfer.files[0];
  if (file) useFile(file);
});
$("#file").addEventListener("change", (event) => {
  const file = event.target.files[0];
  if (file) useFile(file);
});
form.elements.image.addEventListener("input", () => showPreview(null));
$("#clear-image").addEventListener("click", () => {
  form.elements.image.value = "";
  $("#file").value = "";
  showPreview(null);
  clearErrors(imageField);
  renderSnippet();
});

// ---------------------------------------------------------------- one prediction

function describeStanding(prediction) {
  const ahead = prediction.queue_position;
  const where = ahead === undefined || ahead === null ? "" : ahead === 0 ? ": next in line" : `: ${ahead} ahead`;
  const eta = prediction.eta_seconds === null || prediction.eta_seconds === undefined
    ? ""
    : `, about ${Math.max(1, Math.round(prediction.eta_seconds))} s`;
  return `Queued${where}${eta}`;
}

function showStatus(text, kind = "") {
  statusLine.textContent = text;
  statusLine.className = `status ${kind}`;
}

function showProgress({ step, total, percent }) {
  progress.hidden = false;
  progress.value = percent;
  showStatus(`Rendering: step ${step}/${total} (${Math.round(percent)}%)`);
}

function money(value) {
  return value === undefined || value === null ? "–" : `$${value.toFixed(value < 0.01 ? 6 : 4)}`;
}

function seconds(value) {
  return value === undefined || value === null ? "–" : `${value.toFixed(2)} s`;
}

function showPrediction(prediction) {
  const ended = {
    succeeded: ["Done", "ok"],
    failed: [`Failed: ${prediction.error || "unknown error"}`, "bad"],
    canceled: [`Canceled${prediction.error ? `: ${prediction.error}` : ""}`, "bad"],
  }[prediction.status];
  if (ended) showStatus(...ended);
  else if (prediction.status === "starting") showStatus(describeStanding(prediction));
  if (prediction.progress) {
    progress.hidden = false;
    progress.value = prediction.progress.percent;
  }
  const images = $("#images");
  images.replaceChildren();
  const format = prediction.input?.output_format || "webp";
  (prediction.output || []).forEach((url, index) => {
    const figure = document.createElement("figure");
    const image = document.createElement("img");
    image.src = url;
    image.alt = `Image ${index + 1} of prediction ${prediction.id}`;
    const link = document.createElement("a");
    link.href = url;
    link.download = `${prediction.id}-${index}.${format === "jpeg" ? "jpg" : format}`;
    link.className = "download";
    link.textContent = "Download";
    figure.append(image, link);
    images.append(figure);
  });
  const metrics = prediction.metrics || {};
  const rows = [
    ["Seed", prediction.seed],
    ["Time", seconds(metrics.predict_time)],
    ["Total", seconds(metrics.total_time)],
    ["Cost", money(metrics.cost_usd)],
    ["Price", money(metrics.price_usd)],
    ["ID", prediction.id],
  ];
  const details = $("#details");
  details.replaceChildren(
    ...rows.flatMap(([name, value]) => {
      const term = document.createElement("dt");
      term.textContent = name;
      const description = document.createElement("dd");
      description.textContent = String(value ?? "–");
      description.dataset.name = name.toLowerCase();
      return [term, description];
    }),
  );
  details.hidden = false;
  rememberSeed(prediction.seed);
}

function setRunning(running) {
  $("#submit").disabled = running;
  $("#cancel").disabled = !running;
}

// Follow a prediction until it ends: queue standing, then progress from the stream, then the result.
async function follow(prediction) {
  following?.controller.abort();
  const current = { id: prediction.id, controller: new AbortController() };
  following = current;
  const { signal } = current.controller;
  setRunning(true);
  progress.hidden = true;
  progress.value = 0;
  showPrediction(prediction);
  let status = prediction.status;
  const standing = setInterval(async () => {
    if (status !== "starting") return;
    const latest = await api("GET", `/v1/predictions/${prediction.id}`).catch(() => null);
    if (latest && status === "starting" && latest.status === "starting") showStatus(describeStanding(latest));
  }, STANDING_REFRESH_MS);
  try {
    for await (const { event, data } of predictionEvents(prediction.id, signal)) {
      if (event === "status") {
        status = data;
        if (status === "processing") showStatus("Rendering…");
      } else if (event === "progress") showProgress(JSON.parse(data));
      else if (event === "done") break;
    }
    let final = await api("GET", `/v1/predictions/${prediction.id}`);
    while (!TERMINAL.includes(final.status) && !signal.aborted) {
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
      final = await api("GET", `/v1/predictions/${prediction.id}`);
    }
    if (!signal.aborted) showPrediction(final);
  } catch (error) {
    if (!signal.aborted) showApiError(error);
  } finally {
    clearInterval(standing);
    if (following === current) {
      following = null;
      setRunning(false);
      loadHistory();
    }
  }
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  clearErrors(document);
  if (!savedKey()) {
    showError(keyField, "Paste your API key here and press Save first.");
    return;
  }
  // Cancel is enabled by follow(), once there is a prediction to cancel: a click before that would do nothing.
  $("#submit").disabled = true;
  showStatus("Submitting…");
  $("#images").replaceChildren();
  $("#details").hidden = true;
  try {
    const prediction = await api("POST", `/v1/models/${MODEL}/predictions`, { input: readInput(form) });
    await follow(prediction);
  } catch (error) {
    showStatus("Not submitted: see the form.", "bad");
    showApiError(error);
    setRunning(following !== null);
  }
});

$("#cancel").addEventListener("click", async () => {
  if (!following) return;
  showStatus("Canceling…");
  try {
    await api("POST", `/v1/predictions/${following.id}/cancel`);
  } catch (error) {
    showApiError(error);
  }
});

// ---------------------------------------------------------------- history

async function loadHistory() {
  const list = $("#history");
  if (!savedKey()) {
    list.replaceChildren();
    return;
  }
  try {
    const page = await api("GET", `/v1/predictions?page_size=${HISTORY_SIZE}`);
    list.replaceChildren(...page.results.map(historyItem));
  } catch (error) {
    showApiError(error);
  }
}

function historyItem(prediction) {
  const item = document.createElement("li");
  item.dataset.id = prediction.id;
  const show = document.createElement("button");
  show.type = "button";
  show.className = "show";
  const thumb = document.createElement("img");
  thumb.alt = "";
  if (prediction.output?.length) thumb.src = prediction.output[0];
  const text = document.createElement("span");
  text.className = "prompt";
  text.textContent = prediction.input?.prompt ?? "";
  const status = document.createElement("span");
  status.className = `badge ${prediction.status}`;
  status.textContent = prediction.status;
  show.append(thumb, text, status);
  show.addEventListener("click", () => {
    if (TERMINAL.includes(prediction.status)) {
      following?.controller.abort();
      showPrediction(prediction);
    } else {
      follow(prediction);
    }
  });
  const load = document.createElement("button");
  load.type = "button";
  load.className = "load";
  load.textContent = "Load settings";
  load.addEventListener("click", () => {
    fillForm(form, prediction.input || {});
    showPreview(null);
    renderSnippet();
  });
  item.append(show, load);
  return item;
}

$("#refresh").addEventListener("click", loadHistory);

showKeyState();
renderSnippet();
loadHistory();
