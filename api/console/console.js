// The Distillery console: one page, a view per URL fragment (#/jobs, #/jobs/<id>, #/new, #/teachers, #/datasets).
// Everything shown comes from the /v1 API; text from the server is always set as text, never parsed as HTML.

import { api, ApiError, download, followJob, session, text } from "./api.js";
import { lineChart } from "./chart.js";

const main = document.getElementById("main");
const ACTIVE = new Set(["queued", "running", "pausing"]);
const MAX_EVENTS_SHOWN = 300;
const KEY_METRICS = ["val/top1", "teacher/val/top1", "val/top5", "val/loss", "train/loss", "student/params", "teacher/params", "student/latency_ms_b1", "teacher/latency_ms_b1", "time/samples_per_second"];
const MAX_LIST_STREAMS = 4; // browsers allow ~6 connections per host; leave room for ordinary requests
let viewAbort = new AbortController();

// ---- small helpers ----------------------------------------------------------------------------

function element(tag, properties = {}, ...children) {
  const node = Object.assign(document.createElement(tag), properties);
  node.append(...children.filter((child) => child !== null && child !== undefined));
  return node;
}

function cell(...children) {
  return element("td", {}, ...children);
}

function notice(message, kind = "error") {
  const box = document.getElementById("notice");
  box.textContent = message;
  box.className = kind;
  box.hidden = false;
  clearTimeout(notice.timer);
  notice.timer = setTimeout(() => (box.hidden = true), kind === "error" ? 12_000 : 5_000);
}

async function guarded(action) {
  try {
    await action();
  } catch (error) {
    if (error.name !== "AbortError") notice(error.message);
  }
}

function show(templateId) {
  main.replaceChildren(document.getElementById(templateId).content.cloneNode(true));
}

function field(form, name) {
  const value = form.elements[name]?.value?.trim();
  return value === "" ? undefined : value;
}

const bytes = (n) => (n == null ? "—" : n < 1024 ? `${n} B` : n < 1024 ** 2 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / 1024 ** 2).toFixed(1)} MiB`);
const when = (iso) => (iso ? new Date(iso).toLocaleString() : "—");
const percent = (x) => (x == null ? "—" : `${(x * 100).toFixed(1)}%`);
const seconds = (from, to) => (from ? `${((new Date(to || Date.now()) - new Date(from)) / 1000).toFixed(1)} s` : "—");
const metricText = (name, value) => (/(^|\/)val\/top/.test(name) ? percent(value) : Number.isInteger(value) ? value.toLocaleString() : value.toPrecision(4));

function statusBadge(status) {
  return element("span", { className: `status ${status}`, textContent: status });
}

function progressText(progress) {
  if (!progress.steps) return "";
  return `epoch ${progress.epoch}/${progress.epochs} · step ${progress.step}/${progress.steps}`;
}

function downloadButton(path, filename, label = "Download") {
  const button = element("button", { type: "button", className: "quiet", textContent: label });
  button.addEventListener("click", () => guarded(() => download(path, filename)));
  return button;
}

function onSubmit(form, action, signal) {
  form.addEventListener(
    "submit",
    (event) => {
      event.preventDefault();
      guarded(action);
    },
    { signal }, // a view's handler goes with the view, so a form shown again is not submitted twice
  );
}

/** Forms that upload a file or register a URI: show the fields of the chosen source only. */
function toggleSource(form) {
  const shown = () => {
    for (const part of form.querySelectorAll("[data-source]")) part.hidden = part.dataset.source !== form.elements.source.value;
  };
  for (const radio of form.elements.source) radio.addEventListener("change", shown);
  form.addEventListener("reset", () => setTimeout(shown));
}

function deleteButton(kind, path, then) {
  const button = element("button", { type: "button", className: "quiet danger", textContent: "Delete" });
  button.addEventListener("click", () =>
    guarded(async () => {
      if (!confirm(`Delete ${kind} ${path.split("/").pop()}?`)) return;
      await api(path, { method: "DELETE" });
      await then();
    }),
  );
  return button;
}

function nameCell(name, id) {
  return cell(element("strong", { textContent: name || "" }), element("div", { className: "muted small", textContent: id }));
}

function every(signal, milliseconds, action) {
  const timer = setInterval(() => guarded(action), milliseconds);
  signal.addEventListener("abort", () => clearInterval(timer));
}

// ---- routing ----------------------------------------------------------------------------------

const ROUTES = [
  [/^#\/jobs\/([\w-]+)$/, jobView],
  [/^#\/jobs$/, jobsView],
  [/^#\/new$/, newJobView],
  [/^#\/teachers$/, teachersView],
  [/^#\/datasets$/, datasetsView],
];

function route() {
  viewAbort.abort();
  viewAbort = new AbortController();
  document.getElementById("nav").hidden = !session.key;
  if (!session.key) return signInView();
  const hash = location.hash || "#/jobs";
  for (const [pattern, view] of ROUTES) {
    const match = hash.match(pattern);
    if (match) return guarded(() => view(viewAbort.signal, ...match.slice(1)));
  }
  location.hash = "#/jobs";
}

window.addEventListener("hashchange", route);
window.addEventListener("distillery:signed-out", () => {
  notice("The server refused the API key; sign in again.");
  route();
});
document.getElementById("sign-out").addEventListener("click", () => {
  session.signOut();
  route();
});

// ---- sign in ----------------------------------------------------------------------------------

function signInView() {
  show("view-sign-in");
  const form = document.getElementById("sign-in-form");
  onSubmit(form, async () => {
    session.signIn(form.elements.key.value.trim());
    await api("/v1/jobs?limit=1");
    route();
  });
  form.elements.key.focus();
}

// ---- jobs list --------------------------------------------------------------------------------

async function jobsView(signal) {
  show("view-jobs");
  const streams = new Map();
  const rows = new Map();

  function renderRow(job) {
    const bar = element("progress", { max: 1, value: job.progress.fraction });
    const row = element(
      "tr",
      { id: `job-row-${job.id}` },
      cell(element("a", { href: `#/jobs/${job.id}`, textContent: job.name || job.id }), element("div", { className: "muted small", textContent: job.id })),
      cell(job.method),
      cell(statusBadge(job.status)),
      cell(job.phase || ""),
      cell(bar, element("span", { className: "small muted", textContent: ` ${Math.round(job.progress.fraction * 100)}% ${progressText(job.progress)}` })),
      cell(percent(job.metrics["val/top1"])),
      cell(when(job.created_at)),
    );
    rows.set(job.id, { row, job });
    return row;
  }

  function follow(job) {
    if (streams.has(job.id) || streams.size >= MAX_LIST_STREAMS) return;
    const stop = new AbortController();
    signal.addEventListener("abort", () => stop.abort());
    streams.set(job.id, stop);
    followJob(
      job.id,
      (type, payload) => {
        const shown = rows.get(job.id);
        if (!shown) return;
        const live = structuredClone(shown.job); // what the row shows now: the 5-second refresh may be newer than the job this stream began with
        if (type === "metric" && payload.step != null && live.progress.steps) {
          live.progress.step = Math.max(live.progress.step, payload.step);
          live.progress.epoch = Math.max(live.progress.epoch, payload.epoch ?? 0);
          live.progress.fraction = Math.min(1, live.progress.step / live.progress.steps);
        } else if (type === "status") live.status = payload.status;
        else if (type === "phase") live.phase = payload.name;
        else return;
        shown.row.replaceWith(renderRow(live));
      },
      stop.signal,
    ).finally(() => {
      streams.delete(job.id);
      if (!signal.aborted) guarded(refresh);
    });
  }

  async function refresh() {
    const page = await api("/v1/jobs?limit=100", { signal });
    rows.clear();
    document.getElementById("jobs-rows").replaceChildren(...page.items.map(renderRow));
    document.getElementById("jobs-empty").hidden = page.items.length > 0;
    page.items.filter((job) => ACTIVE.has(job.status)).forEach(follow);
  }

  await refresh();
  every(signal, 5000, refresh);
}

// ---- one job ----------------------------------------------------------------------------------

async function jobView(signal, jobId) {
  show("view-job");
  const base = `/v1/jobs/${encodeURIComponent(jobId)}`;
  const series = new Map(); // metric name -> [[x, y], ...]
  let job = await api(base, { signal });
  let following = false;
  let chartTimer = null;

  function renderJob() {
    document.getElementById("job-title").textContent = job.name || job.id;
    document.getElementById("job-id").textContent = job.id;
    document.getElementById("job-status").replaceWith(Object.assign(statusBadge(job.status), { id: "job-status" }));
    document.getElementById("job-phase").textContent = job.phase ? `phase: ${job.phase}` : "";
    const spec = job.spec || {};
    document.getElementById("job-summary").textContent =
      `${job.method} · student ${spec.student?.arch ?? "?"} · teachers ${(spec.teachers || []).join(", ") || "none"} · dataset ${spec.dataset ?? "none"} · created ${when(job.created_at)}`;
    const error = document.getElementById("job-error");
    error.hidden = !job.error;
    error.textContent = job.error ? `${job.error.code}: ${job.error.message}` : "";
    document.getElementById("job-progress").value = job.progress.fraction;
    document.getElementById("job-progress-text").textContent = ` ${Math.round(job.progress.fraction * 100)}% ${progressText(job.progress)}`;
    const actions = { cancel: [...ACTIVE, "paused"], pause: ["running"], resume: ["paused"], retry: ["failed"] };
    for (const [action, statuses] of Object.entries(actions)) main.querySelector(`[data-action="${action}"]`).hidden = !statuses.includes(job.status);
    document.getElementById("job-phases").replaceChildren(
      ...(job.phases || []).map((phase) => element("tr", {}, cell(phase.name), cell(when(phase.started_at)), cell(seconds(phase.started_at, phase.finished_at)))),
    );
    const rank = (name) => (KEY_METRICS.includes(name) ? KEY_METRICS.indexOf(name) : KEY_METRICS.length);
    const metrics = Object.entries(job.metrics).sort(([a], [b]) => rank(a) - rank(b) || a.localeCompare(b));
    document.getElementById("job-metrics").replaceChildren(...metrics.map(([name, value]) => element("tr", {}, element("th", { textContent: name }), cell(metricText(name, value)))));
  }

  function renderCharts() {
    chartTimer = null;
    const loss = lineChart([{ name: "train/loss", points: series.get("train/loss") || [] }], { xLabel: "step" });
    const accuracy = [...series.keys()].filter((name) => /^val\/top[15]$/.test(name)).sort();
    const teacher = job.metrics["teacher/val/top1"];
    const epochs = (series.get("val/top1") || []).map((p) => p[0]);
    const accuracySeries = accuracy.map((name) => ({ name, points: series.get(name) }));
    if (teacher != null && epochs.length) accuracySeries.push({ name: "teacher top1", points: [[Math.min(...epochs), teacher], [Math.max(...epochs), teacher]] });
    const accuracyChart = lineChart(accuracySeries, { xLabel: "epoch", yMin: 0, yMax: 1 });
    if (loss) document.getElementById("chart-loss").replaceChildren(loss);
    if (accuracyChart) document.getElementById("chart-accuracy").replaceChildren(accuracyChart);
  }

  function addEvent(type, payload) {
    const list = document.getElementById("job-events");
    const what =
      type === "metric"
        ? `${payload.name} = ${metricText(payload.name, payload.value)} (epoch ${payload.epoch ?? "—"}, step ${payload.step ?? "—"})`
        : type === "status"
          ? `status → ${payload.status}${payload.detail?.message ? `: ${payload.detail.message}` : ""}`
          : type === "phase"
            ? `phase → ${payload.name}`
            : type === "registry"
              ? `registry: ${payload.name} ${payload.detail?.model_name ?? ""} ${payload.detail?.version ? `v${payload.detail.version}` : payload.detail?.error ?? ""}`
              : type === "end"
                ? `stream ended (${payload.status})`
                : `${type}: ${payload.name ?? ""} ${payload.detail?.message ?? ""}`;
    list.prepend(element("li", { className: type }, element("time", { textContent: payload.time ? new Date(payload.time).toLocaleTimeString() : "" }), ` ${what}`));
    while (list.children.length > MAX_EVENTS_SHOWN) list.lastElementChild.remove();
  }

  async function refreshJob() {
    job = await api(base, { signal });
    renderJob();
    chartTimer ??= setTimeout(renderCharts, 250); // the teacher's accuracy line arrives with the job's final metrics
  }

  async function refreshArtifacts() {
    const { items } = await api(`${base}/artifacts`, { signal });
    document.getElementById("job-artifacts-empty").hidden = items.length > 0;
    document.getElementById("job-artifacts").replaceChildren(
      ...items.map((a) => element("tr", {}, cell(a.kind), cell(a.filename), cell(bytes(a.size_bytes)), cell(downloadButton(`/v1/artifacts/${a.id}`, a.filename)))),
    );
    const report = items.find((a) => a.kind === "report");
    if (report) {
      const frame = document.getElementById("job-report");
      const html = await text(`/v1/artifacts/${report.id}`);
      if (frame.srcdoc !== html) frame.srcdoc = html; // setting it reloads the frame: only when the report changed
      document.getElementById("job-report-card").hidden = false;
    }
  }

  async function refreshCheckpoints() {
    let items;
    try {
      ({ items } = await api(`${base}/checkpoints`, { signal }));
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) return (document.getElementById("job-checkpoints-card").hidden = true);
      throw error;
    }
    document.getElementById("job-checkpoints-empty").hidden = items.length > 0;
    document.getElementById("job-checkpoints").replaceChildren(
      ...items.map((c) =>
        element(
          "tr",
          {},
          cell(element("code", { textContent: c.id })),
          cell(String(c.step)),
          cell(c.epoch == null ? "—" : String(c.epoch)),
          cell(percent(c.metrics?.["val/top1"])),
          cell(bytes(c.size_bytes)),
          cell(downloadButton(`/v1/checkpoints/${c.id}/student`, `${c.id}.safetensors`, "Student")),
        ),
      ),
    );
  }

  function onEvent(type, payload) {
    addEvent(type, payload);
    if (type === "metric" && payload.value != null) {
      const x = /^val\//.test(payload.name) ? payload.epoch : payload.step;
      if (x != null) series.set(payload.name, [...(series.get(payload.name) || []), [x, payload.value]]);
      if (payload.step != null && job.progress.steps) {
        job.progress.step = Math.max(job.progress.step, payload.step);
        job.progress.epoch = Math.max(job.progress.epoch, payload.epoch ?? 0);
        job.progress.fraction = Math.min(1, job.progress.step / job.progress.steps);
        renderJob();
      }
      if (payload.name === "val/top1") guarded(refreshCheckpoints);
      chartTimer ??= setTimeout(renderCharts, 250);
    } else if (type === "status" || type === "phase") {
      guarded(refreshJob);
    } else if (type === "end") {
      guarded(() => Promise.all([refreshJob(), refreshArtifacts(), refreshCheckpoints()]));
    }
  }

  function follow() {
    if (following) return;
    following = true;
    series.clear();
    document.getElementById("job-events").replaceChildren();
    followJob(job.id, onEvent, signal).finally(() => (following = false));
  }

  for (const button of main.querySelectorAll("[data-action]")) {
    button.addEventListener("click", () =>
      guarded(async () => {
        job = await api(`${base}/${button.dataset.action}`, { method: "POST", signal });
        renderJob();
        notice(`${button.textContent}: the job is ${job.status}.`, "ok");
        follow();
      }),
    );
  }

  renderJob();
  follow();
  await Promise.all([refreshArtifacts(), refreshCheckpoints()]);
}

// ---- teachers ---------------------------------------------------------------------------------

async function teachersView(signal) {
  show("view-teachers");
  const form = document.getElementById("teacher-form");

  async function refresh() {
    const { items } = await api("/v1/teachers?limit=500", { signal });
    document.getElementById("teachers-empty").hidden = items.length > 0;
    document.getElementById("teachers-rows").replaceChildren(
      ...items.map((t) =>
        element(
          "tr",
          {},
          nameCell(t.name, t.id),
          cell(t.format),
          cell(t.arch || "—"),
          cell(String(t.num_classes)),
          cell(t.input_size.join("×")),
          cell(t.params.toLocaleString()),
          cell(element("span", { className: "small", textContent: t.uri || "upload" })),
          cell(deleteButton("teacher", `/v1/teachers/${t.id}`, refresh)),
        ),
      ),
    );
  }

  toggleSource(form);
  onSubmit(form, async () => {
    const names = ["format", "arch", "num_classes", "input_size", "mean", "std", "name"];
    let teacher;
    if (form.elements.source.value === "uri") {
      const body = Object.fromEntries(names.map((name) => [name, field(form, name)]).filter(([, value]) => value !== undefined));
      teacher = await api("/v1/teachers", { method: "POST", json: { ...body, uri: field(form, "uri"), num_classes: Number(body.num_classes) } });
    } else {
      const data = new FormData();
      if (!form.elements.file.files.length) throw new Error("Choose the model file to upload.");
      data.append("file", form.elements.file.files[0]);
      for (const name of names) if (field(form, name) !== undefined) data.append(name, field(form, name));
      teacher = await api("/v1/teachers", { method: "POST", form: data });
    }
    notice(`Teacher ${teacher.id} added (${teacher.params.toLocaleString()} parameters).`, "ok");
    form.reset();
    await refresh();
  });
  await refresh();
}

// ---- datasets ---------------------------------------------------------------------------------

async function datasetsView(signal) {
  show("view-datasets");
  const form = document.getElementById("dataset-form");

  async function refresh() {
    const { items } = await api("/v1/datasets?limit=500", { signal });
    document.getElementById("datasets-rows").replaceChildren(
      ...items.map((d) =>
        element(
          "tr",
          {},
          nameCell(d.name, d.id),
          cell(String(d.num_classes)),
          cell(String(d.splits.train ?? "—")),
          cell(String(d.splits.val ?? "—")),
          cell(d.builtin ? "—" : bytes(d.size_bytes)),
          cell(element("span", { className: "small", textContent: d.builtin ? "built in" : d.uri ? `${d.uri} (${d.format})` : "upload" })),
          cell(d.builtin ? null : deleteButton("dataset", `/v1/datasets/${d.id}`, refresh)),
        ),
      ),
    );
  }

  toggleSource(form);
  onSubmit(form, async () => {
    let dataset;
    if (form.elements.source.value === "uri") {
      dataset = await api("/v1/datasets", { method: "POST", json: { uri: field(form, "uri"), format: form.elements.format.value, name: field(form, "name") } });
    } else {
      if (!form.elements.file.files.length) throw new Error("Choose the archive to upload.");
      const data = new FormData();
      data.append("file", form.elements.file.files[0]);
      if (field(form, "name")) data.append("name", field(form, "name"));
      dataset = await api("/v1/datasets", { method: "POST", form: data });
    }
    notice(`Dataset ${dataset.id} added: ${dataset.num_classes} classes, ${dataset.splits.train} training images.`, "ok");
    form.reset();
    await refresh();
  });
  await refresh();
}

// ---- new job ----------------------------------------------------------------------------------

async function newJobView(signal) {
  show("view-new");
  const form = document.getElementById("job-form");
  const [methods, teachers, datasets] = await Promise.all([
    api("/v1/methods", { signal }),
    api("/v1/teachers?limit=500", { signal }),
    api("/v1/datasets?limit=500", { signal }),
  ]);
  form.elements.method.replaceChildren(...methods.items.map((m) => element("option", { value: m.name, textContent: `${m.name} (${m.family})` })));
  if (methods.items.some((m) => m.name === "kd")) form.elements.method.value = "kd";
  form.elements.dataset.replaceChildren(
    ...datasets.items.map((d) => element("option", { value: d.id, textContent: `${d.name || d.id} · ${d.num_classes} classes` })),
    element("option", { value: "", textContent: "none (data-free methods)" }),
  );
  const box = document.getElementById("job-teachers");
  box.replaceChildren(
    ...teachers.items.map((t) =>
      element("label", {}, element("input", { type: "checkbox", name: "teachers", value: t.id }), ` ${t.name || t.id} · ${t.arch || t.format} · ${t.num_classes} classes`),
    ),
  );
  if (!teachers.items.length) box.append(element("p", { className: "muted", textContent: "No teachers yet: add one under Teachers." }));

  function describeMethod() {
    const method = methods.items.find((m) => m.name === form.elements.method.value);
    const count = method.teachers.max === 0 ? "no teacher" : method.teachers.min === method.teachers.max ? `${method.teachers.min} teacher(s)` : `${method.teachers.min}–${method.teachers.max} teachers`;
    document.getElementById("method-summary").textContent = `${method.summary} Needs ${count}${method.needs_dataset ? " and a dataset" : ", no dataset"}.`;
    box.hidden = method.teachers.max === 0;
  }
  form.elements.method.addEventListener("change", describeMethod, { signal });
  describeMethod();

  onSubmit(form, async () => {
    const number = (name) => (field(form, name) === undefined ? undefined : Number(field(form, name)));
    const training = { epochs: number("epochs"), batch_size: number("batch_size"), lr: number("lr"), augment: field(form, "augment") };
    if (field(form, "input_size")) training.input_size = field(form, "input_size").split(",").map(Number);
    const hyperparams = field(form, "hyperparams");
    const body = {
      name: field(form, "name"),
      method: form.elements.method.value,
      teachers: box.hidden ? [] : [...form.querySelectorAll("input[name=teachers]:checked")].map((input) => input.value),
      student: { arch: field(form, "student_arch") },
      dataset: field(form, "dataset") ?? null,
      training: Object.fromEntries(Object.entries(training).filter(([, value]) => value !== undefined)),
      export: [...form.querySelectorAll("input[name=export]:checked")].map((input) => input.value),
      hyperparams: hyperparams ? parseJson(hyperparams) : {},
    };
    if (field(form, "registry_model")) body.registry = { model_name: field(form, "registry_model") };
    const job = await api("/v1/jobs", { method: "POST", json: body });
    location.hash = `#/jobs/${job.id}`;
  }, signal);
}

function parseJson(source) {
  try {
    return JSON.parse(source);
  } catch (error) {
    throw new Error(`Hyperparameters are not valid JSON: ${error.message}`);
  }
}

route();
