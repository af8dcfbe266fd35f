// Runbox playground: picks a language, submits the program to the API and
// long-polls the submission until it is done.

// Relative, so that the page also works behind a proxy that serves the API
// under a path prefix.
const API = "api/v1";
const INDENT = "    ";
// Wait time in seconds that each long poll requests. The API's maximum is 30.
const POLL_WAIT_SECONDS = 20;
// Time after which a poll with no response is aborted and retried as a lost
// connection: the poll's wait plus 15 s.
const POLL_TIMEOUT_MS = (POLL_WAIT_SECONDS + 15) * 1000;
const RETRY_MIN_MS = 500;
const RETRY_MAX_MS = 10000;
// Interval at which the language list is reloaded while any language is
// unavailable, because workers may finish their self-test or come back.
const LANGUAGE_REFRESH_MS = 15000;
const SAVE_DELAY_MS = 300;

const STORAGE = {
  language: "runbox.language",
  source: (language) => `runbox.source.${language}`,
  stdin: "runbox.stdin",
  args: "runbox.args",
  timeLimit: "runbox.limits.time_ms",
  memoryLimit: "runbox.limits.memory_mb",
};

const VERDICTS = {
  ok: { label: "OK", tone: "ok" },
  compile_error: { label: "Compilation error", tone: "error" },
  runtime_error: { label: "Runtime error", tone: "error" },
  time_limit_exceeded: { label: "Time limit exceeded", tone: "limit" },
  memory_limit_exceeded: { label: "Memory limit exceeded", tone: "limit" },
  output_limit_exceeded: { label: "Output limit exceeded", tone: "limit" },
  internal_error: { label: "Internal error", tone: "internal" },
};

const $ = (id) => document.getElementById(id);

const ui = {
  language: $("language"),
  languageInfo: $("language-info"),
  run: $("run"),
  runShortcut: $("run-shortcut"),
  loadSample: $("load-sample"),
  notice: $("notice"),
  source: $("source"),
  gutter: $("gutter"),
  stdin: $("stdin"),
  args: $("args"),
  limits: $("limits"),
  timeLimit: $("time-limit"),
  memoryLimit: $("memory-limit"),
  status: $("status"),
  elapsed: $("elapsed"),
  error: $("error"),
  errorTitle: $("error-title"),
  errorMessage: $("error-message"),
  errorDetail: $("error-detail"),
  placeholder: $("placeholder"),
  progress: $("progress"),
  progressTitle: $("progress-title"),
  progressDetail: $("progress-detail"),
  result: $("result"),
  verdict: $("verdict"),
  message: $("message"),
  exitCode: $("exit-code"),
  signalFact: $("signal-fact"),
  signal: $("signal"),
  time: $("time"),
  memory: $("memory"),
  compileTimeFact: $("compile-time-fact"),
  compileTime: $("compile-time"),
  compileStream: $("compile-stream"),
  compileOutput: $("compile-output"),
  compileOutputBinary: $("compile-output-binary"),
  stdout: $("stdout"),
  stdoutBinary: $("stdout-binary"),
  stdoutTruncated: $("stdout-truncated"),
  stderr: $("stderr"),
  stderrBinary: $("stderr-binary"),
  stderrTruncated: $("stderr-truncated"),
  worker: $("worker"),
  submissionLink: $("submission-link"),
};

const state = {
  /** @type {Map<string, {id: string, name: string, version: string, sample: string, available: boolean, reason: string}>} */
  languages: new Map(),
  // The language whose program is in the editor.
  current: "",
  running: false,
  languageRefresh: 0,
  saveTimer: 0,
  elapsedTimer: 0,
  // True after Escape, so that the next Tab moves focus instead of indenting.
  tabLeavesEditor: false,
};

// ---------------------------------------------------------------- storage

// localStorage throws when it is disabled (some private modes, blocked
// cookies), so the page then works without remembering anything.
const storage = {
  get(key) {
    try {
      return window.localStorage.getItem(key);
    } catch {
      return null;
    }
  },
  set(key, value) {
    try {
      window.localStorage.setItem(key, value);
    } catch {
      // With full or disabled storage, the page only loses the remembered state.
    }
  },
  remove(key) {
    try {
      window.localStorage.removeItem(key);
    } catch {
      // Disabled storage has nothing to remove.
    }
  },
};

// Stores the editor's program for the current language. An unchanged
// sample is not stored, so the page shows the server's newest sample.
function saveSourceNow() {
  window.clearTimeout(state.saveTimer);
  state.saveTimer = 0;
  const language = state.languages.get(state.current);
  if (!language) {
    return;
  }
  const key = STORAGE.source(language.id);
  if (ui.source.value === language.sample) {
    storage.remove(key);
  } else {
    storage.set(key, ui.source.value);
  }
}

function scheduleSourceSave() {
  window.clearTimeout(state.saveTimer);
  state.saveTimer = window.setTimeout(saveSourceNow, SAVE_DELAY_MS);
}

// ----------------------------------------------------------------- editor

function updateGutter() {
  const lines = ui.source.value.split("\n").length;
  if (ui.gutter.dataset.lines === String(lines)) {
    return;
  }
  const numbers = new Array(lines);
  for (let i = 0; i < lines; i++) {
    numbers[i] = i + 1;
  }
  ui.gutter.textContent = numbers.join("\n");
  ui.gutter.dataset.lines = String(lines);
  syncGutterScroll();
}

function syncGutterScroll() {
  ui.gutter.scrollTop = ui.source.scrollTop;
}

// Replaces start..end of the editor text and then selects
// selectStart..selectEnd. execCommand keeps the change in the browser's
// undo history, and setRangeText is the fallback where it is missing.
function replaceText(start, end, text, selectStart, selectEnd) {
  const editor = ui.source;
  editor.focus();
  editor.setSelectionRange(start, end);
  let done = false;
  try {
    done = document.execCommand(text === "" ? "delete" : "insertText", false, text);
  } catch {
    done = false;
  }
  if (!done || editor.value.slice(start, start + text.length) !== text) {
    editor.setRangeText(text, start, end, "end");
    editor.dispatchEvent(new Event("input", { bubbles: true }));
  }
  editor.setSelectionRange(selectStart, selectEnd);
}

// Returns the start of the first and the end of the last line that the
// selection touches. A selection that ends at the start of a line does not
// include that line.
function selectedLines() {
  const text = ui.source.value;
  const { selectionStart, selectionEnd } = ui.source;
  let last = selectionEnd;
  if (last > selectionStart && text[last - 1] === "\n") {
    last--;
  }
  const start = text.lastIndexOf("\n", selectionStart - 1) + 1;
  let end = text.indexOf("\n", last);
  if (end === -1) {
    end = text.length;
  }
  return { start, end };
}

function indent() {
  const { selectionStart, selectionEnd, value } = ui.source;
  const selected = value.slice(selectionStart, selectionEnd);
  if (!selected.includes("\n")) {
    const caret = selectionStart + INDENT.length;
    replaceText(selectionStart, selectionEnd, INDENT, caret, caret);
    return;
  }
  const { start, end } = selectedLines();
  const lines = value.slice(start, end).split("\n");
  const indented = lines.map((line) => (line === "" ? line : INDENT + line)).join("\n");
  replaceText(start, end, indented, start, start + indented.length);
}

function outdent() {
  const { selectionStart, selectionEnd, value } = ui.source;
  const { start, end } = selectedLines();
  const lines = value.slice(start, end).split("\n");
  const removed = [];
  const outdented = lines
    .map((line) => {
      const width = line.startsWith("\t") ? 1 : line.match(/^ {0,4}/)[0].length;
      removed.push(width);
      return line.slice(width);
    })
    .join("\n");
  if (outdented.length === end - start) {
    return;
  }
  if (selectionStart === selectionEnd) {
    const caret = Math.max(start, selectionStart - removed[0]);
    replaceText(start, end, outdented, caret, caret);
    return;
  }
  replaceText(start, end, outdented, start, start + outdented.length);
}

// Starts the new line with the indentation of the current one.
function newlineWithIndent() {
  const { selectionStart, selectionEnd, value } = ui.source;
  const lineStart = value.lastIndexOf("\n", selectionStart - 1) + 1;
  const indentation = value.slice(lineStart, selectionStart).match(/^[ \t]*/)[0];
  const text = "\n" + indentation;
  const caret = selectionStart + text.length;
  replaceText(selectionStart, selectionEnd, text, caret, caret);
}

function onEditorKeydown(event) {
  if (event.isComposing) {
    return;
  }
  if (event.key === "Escape") {
    state.tabLeavesEditor = true;
    return;
  }
  const modified = event.ctrlKey || event.metaKey || event.altKey;
  if (event.key === "Tab" && !modified) {
    if (state.tabLeavesEditor) {
      state.tabLeavesEditor = false;
      return;
    }
    event.preventDefault();
    if (event.shiftKey) {
      outdent();
    } else {
      indent();
    }
    return;
  }
  if (event.key !== "Shift") {
    state.tabLeavesEditor = false;
  }
  if (event.key === "Enter" && !modified && !event.shiftKey) {
    event.preventDefault();
    newlineWithIndent();
  }
}

// -------------------------------------------------------------- languages

function languageLabel(language) {
  return language.version ? `${language.name} ${language.version}` : language.name;
}

function fillLanguagePicker() {
  const picker = ui.language;
  const options = [];
  for (const language of state.languages.values()) {
    const option = document.createElement("option");
    option.value = language.id;
    option.textContent = language.available
      ? languageLabel(language)
      : `${languageLabel(language)} (unavailable)`;
    option.disabled = !language.available;
    option.title = language.available ? "" : language.reason || "No worker can run this language now.";
    options.push(option);
  }
  picker.replaceChildren(...options);
  if (state.current) {
    picker.value = state.current;
  }
  picker.disabled = options.length === 0;
}

// Returns the language to show at start: the stored one if the list still
// contains it, else Python if available, else the first available language,
// else the first language.
function initialLanguage() {
  const stored = storage.get(STORAGE.language);
  if (stored && state.languages.has(stored)) {
    return stored;
  }
  const all = [...state.languages.values()];
  const python = state.languages.get("python");
  if (python && python.available) {
    return python.id;
  }
  const available = all.find((language) => language.available);
  return (available || all[0] || { id: "" }).id;
}

function showLanguageNotice() {
  const language = state.languages.get(state.current);
  if (!language || language.available) {
    ui.notice.hidden = true;
    ui.notice.textContent = "";
    return;
  }
  const reason = language.reason || "no worker can run it now";
  ui.notice.textContent = `${language.name} is unavailable: ${toSentence(reason)}`;
  ui.notice.hidden = false;
}

function showLanguageInfo() {
  const language = state.languages.get(state.current);
  ui.languageInfo.textContent = language ? languageLabel(language) : "";
}

// Puts the language's stored program, or its sample, into the editor.
function switchLanguage(id) {
  saveSourceNow();
  state.current = id;
  ui.language.value = id;
  const language = state.languages.get(id);
  const stored = storage.get(STORAGE.source(id));
  ui.source.value = stored !== null ? stored : (language ? language.sample : "");
  ui.source.scrollTop = 0;
  ui.source.setSelectionRange(0, 0);
  updateGutter();
  showLanguageInfo();
  showLanguageNotice();
}

async function loadLanguages() {
  const list = await requestJSON("GET", `${API}/languages`);
  if (!Array.isArray(list)) {
    throw new Error("the language list is not a JSON array");
  }
  state.languages = new Map(
    list.map((entry) => [
      String(entry.id),
      {
        id: String(entry.id),
        name: String(entry.name || entry.id),
        version: entry.version ? String(entry.version) : "",
        sample: typeof entry.sample === "string" ? entry.sample : "",
        available: entry.available !== false,
        reason: entry.reason ? String(entry.reason) : "",
      },
    ]),
  );
}

// Loads the language list at start, retrying with backoff until it works.
async function initLanguages() {
  for (let attempt = 1; ; attempt++) {
    try {
      await loadLanguages();
      break;
    } catch (error) {
      const delay = retryDelay(attempt);
      showError(error, `Could not load the language list. Retrying in ${formatSeconds(delay)}.`);
      await sleep(delay);
    }
  }
  hideError();
  if (state.languages.size === 0) {
    showError(new Error("The server returned an empty language list."),
      "Check the server's language catalog, then reload the page.");
    return;
  }
  fillLanguagePicker();
  switchLanguage(initialLanguage());
  ui.run.disabled = false;
  ui.loadSample.disabled = false;
  scheduleLanguageRefresh();
}

// Reads the list again later while some language is unavailable, so that
// languages enable themselves once a worker can run them.
function scheduleLanguageRefresh() {
  window.clearTimeout(state.languageRefresh);
  const anyUnavailable = [...state.languages.values()].some((language) => !language.available);
  if (!anyUnavailable) {
    return;
  }
  state.languageRefresh = window.setTimeout(async () => {
    try {
      await loadLanguages();
      fillLanguagePicker();
      if (!state.languages.has(state.current)) {
        switchLanguage(initialLanguage());
      } else {
        showLanguageInfo();
        showLanguageNotice();
      }
    } catch {
      // The page keeps the list it has, and the next refresh tries again.
    }
    scheduleLanguageRefresh();
  }, LANGUAGE_REFRESH_MS);
}

// -------------------------------------------------------------- arguments

// Splits the arguments field into words like a POSIX shell that does no
// expansion. White space separates words, and single quotes keep text as it
// is. Double quotes keep white space and unescape \" and \\. Outside quotes
// a backslash escapes the next character. Throws FieldError on an unclosed
// quote.
function parseArgs(text) {
  const words = [];
  let word = "";
  let inWord = false;
  let quote = "";
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quote === "'") {
      if (c === "'") {
        quote = "";
      } else {
        word += c;
      }
    } else if (quote === '"') {
      if (c === '"') {
        quote = "";
      } else if (c === "\\" && (text[i + 1] === '"' || text[i + 1] === "\\")) {
        word += text[++i];
      } else {
        word += c;
      }
    } else if (c === "'" || c === '"') {
      quote = c;
      inWord = true;
    } else if (c === "\\" && i + 1 < text.length) {
      word += text[++i];
      inWord = true;
    } else if (/\s/.test(c)) {
      if (inWord) {
        words.push(word);
        word = "";
        inWord = false;
      }
    } else {
      word += c;
      inWord = true;
    }
  }
  if (quote) {
    throw new FieldError("args", `The arguments have an unclosed ${quote === '"' ? "double" : "single"} quote.`);
  }
  if (inWord) {
    words.push(word);
  }
  return words;
}

// --------------------------------------------------------------- requests

// ApiError is a response of the API with a status of 400 or more.
class ApiError extends Error {
  constructor(status, body, retryAfter) {
    const detail = body && typeof body === "object" && body.error ? body.error : null;
    super(detail && detail.message ? String(detail.message) : `The server returned HTTP ${status}.`);
    this.name = "ApiError";
    this.status = status;
    this.code = detail && detail.code ? String(detail.code) : "";
    this.field = detail && detail.field ? String(detail.field) : "";
    this.allowed = detail && Array.isArray(detail.allowed) ? detail.allowed.map(String) : [];
    this.retryAfter = retryAfter;
    // A body that is not the API's error JSON, such as a proxy's HTML page.
    this.body = "";
    if (!detail && typeof body === "string") {
      this.body = body;
    }
  }
}

// FieldError is an invalid input that the page rejects before sending the
// request.
class FieldError extends Error {
  constructor(field, message) {
    super(message);
    this.name = "FieldError";
    this.field = field;
  }
}

// NetworkError is a request that got no HTTP response.
class NetworkError extends Error {
  constructor(cause) {
    super(cause && cause.name === "AbortError"
      ? "The request to the server timed out."
      : "The server could not be reached.");
    this.name = "NetworkError";
  }
}

// Returns the Retry-After header in ms, or 0 when it is missing or an HTTP
// date.
function retryAfterMs(response) {
  const value = response.headers.get("Retry-After");
  const seconds = value === null ? NaN : Number(value);
  return Number.isFinite(seconds) && seconds >= 0 ? seconds * 1000 : 0;
}

// Sends a request and returns the decoded JSON body. It throws NetworkError
// when no response arrives and ApiError for a status of 400 or more.
async function requestJSON(method, url, body, timeoutMs) {
  const controller = new AbortController();
  const timer = timeoutMs ? window.setTimeout(() => controller.abort(), timeoutMs) : 0;
  const init = { method, cache: "no-store", signal: controller.signal, headers: { Accept: "application/json" } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }

  let response;
  let text;
  try {
    response = await fetch(url, init);
    text = await response.text();
  } catch (error) {
    throw new NetworkError(error);
  } finally {
    window.clearTimeout(timer);
  }

  let parsed = text;
  try {
    parsed = text === "" ? null : JSON.parse(text);
  } catch {
    // A proxy's HTML error page is shown as text.
  }
  if (!response.ok) {
    throw new ApiError(response.status, parsed, retryAfterMs(response));
  }
  if (typeof parsed === "string") {
    throw new Error(`The server returned a body that is not JSON for ${method} ${url}.`);
  }
  return parsed;
}

// Returns the delay in ms before retry number `attempt` (from 1), and at least
// `atLeast`. The delay doubles from RETRY_MIN_MS up to RETRY_MAX_MS and varies
// randomly by up to 20% either way.
function retryDelay(attempt, atLeast = 0) {
  const base = Math.min(RETRY_MAX_MS, RETRY_MIN_MS * 2 ** (attempt - 1));
  return Math.max(atLeast, Math.round(base * (0.8 + Math.random() * 0.4)));
}

function sleep(ms) {
  return new Promise((resolve) => window.setTimeout(resolve, ms));
}

// Formats a duration in ms as seconds, with one decimal below 10 s.
function formatSeconds(ms) {
  const value = ms / 1000;
  if (Number.isInteger(value) || value >= 10) {
    return `${Math.round(value)} s`;
  }
  return `${value.toFixed(1)} s`;
}

// Returns the message as a sentence ending in a full stop. API messages
// are lower-case clauses such as "source must not be empty". The first
// word is capitalized unless it is a field path such as "limits.time_ms"
// or "args[2]", which must keep its spelling.
function toSentence(text) {
  let result = String(text).trim();
  if (result === "") {
    return result;
  }
  if (!/[.!?…]$/.test(result)) {
    result += ".";
  }
  // A lower-case first word ends at white space, or at the final full stop
  // of a one-word message. A field path continues with "." or "[".
  return /^[a-z]+(\s|[.!?…]$)/.test(result) ? capitalize(result) : result;
}

// Returns true for errors after which the same request may succeed: lost
// connections, server errors and 429.
function isTransient(error) {
  return error instanceof NetworkError ||
    (error instanceof ApiError && (error.status >= 500 || error.status === 429));
}

// Long-polls the submission until it is done and returns its last view.
// Lost connections, server errors and 429 are retried with backoff. Any
// other 4xx ends the wait with an ApiError.
async function followSubmission(id, status) {
  let seen = status || "queued";
  let failures = 0;
  for (;;) {
    const query = new URLSearchParams({ wait: String(POLL_WAIT_SECONDS), status: seen });
    let view;
    try {
      view = await requestJSON("GET", `${API}/submissions/${encodeURIComponent(id)}?${query}`, undefined, POLL_TIMEOUT_MS);
    } catch (error) {
      if (!isTransient(error)) {
        throw error;
      }
      failures++;
      const delay = retryDelay(failures, error.retryAfter || 0);
      const title = error instanceof ApiError
        ? `The server returned HTTP ${error.status} for the submission.`
        : "The connection to the server failed.";
      showProgress("retrying", `${toSentence(error.message)} Retrying in ${formatSeconds(delay)}.`, title);
      await sleep(delay);
      showProgress(seen);
      continue;
    }
    failures = 0;
    if (!view || typeof view !== "object") {
      throw new Error("The server returned a submission that is not a JSON object.");
    }
    if (view.status === "done") {
      return view;
    }
    if (view.status && view.status !== seen) {
      seen = view.status;
      showProgress(seen);
    }
  }
}

// -------------------------------------------------------------------- run

// Status badge text and output pane title of each in-progress state.
const PROGRESS = {
  submitting: { status: "Submitting…", title: "Sending the program…" },
  queued: { status: "Queued…", title: "Waiting in the queue for a worker…" },
  running: { status: "Running…", title: "Running the program…" },
  retrying: { status: "Retrying…", title: "The server did not return the submission." },
};

// Shows an in-progress state in the status badge and the output pane.
// Unknown states from a newer API are shown by name.
function showProgress(stateName, detail = "", title = "") {
  const texts = PROGRESS[stateName] || { status: `${stateName}…`, title: `${capitalize(stateName)}…` };
  setStatus(stateName, texts.status);
  ui.progress.dataset.state = stateName;
  ui.progressTitle.textContent = title || texts.title;
  ui.progressDetail.textContent = detail;
  ui.progressDetail.hidden = detail === "";
  ui.progress.hidden = false;
}

function hideProgress() {
  ui.progress.hidden = true;
}

function capitalize(text) {
  return text ? text[0].toUpperCase() + text.slice(1) : text;
}

function setStatus(stateName, text, announcement = "") {
  ui.status.dataset.state = stateName;
  ui.status.textContent = text;
  if (announcement) {
    const hidden = document.createElement("span");
    hidden.className = "visually-hidden";
    hidden.textContent = announcement;
    ui.status.append(hidden);
  }
}

function startElapsed() {
  const started = performance.now();
  const tick = () => {
    ui.elapsed.textContent = formatSeconds(performance.now() - started);
  };
  tick();
  window.clearInterval(state.elapsedTimer);
  state.elapsedTimer = window.setInterval(tick, 100);
}

function stopElapsed() {
  window.clearInterval(state.elapsedTimer);
}

function setRunning(running) {
  state.running = running;
  ui.run.disabled = running;
  ui.run.setAttribute("aria-busy", String(running));
  document.body.classList.toggle("is-running", running);
}

// Reads the optional limit inputs into the request's limits object.
function readLimits() {
  const limits = {};
  const fields = [
    [ui.timeLimit, "time_ms", "limits.time_ms", "The time limit"],
    [ui.memoryLimit, "memory_mb", "limits.memory_mb", "The memory limit"],
  ];
  for (const [input, key, field, name] of fields) {
    if (input.validity.badInput) {
      throw new FieldError(field, `${name} must be a whole number.`);
    }
    if (input.value.trim() === "") {
      continue;
    }
    const value = Number(input.value);
    if (!Number.isInteger(value) || value < 1) {
      throw new FieldError(field, `${name} must be a whole number of at least 1, not ${input.value}.`);
    }
    limits[key] = value;
  }
  return limits;
}

function buildRequest() {
  const request = { language: state.current, source: ui.source.value };
  if (ui.stdin.value !== "") {
    request.stdin = ui.stdin.value;
  }
  const args = parseArgs(ui.args.value);
  if (args.length > 0) {
    request.args = args;
  }
  const limits = readLimits();
  if (Object.keys(limits).length > 0) {
    request.limits = limits;
  }
  return request;
}

async function run() {
  if (state.running || !state.current) {
    return;
  }
  saveSourceNow();
  clearInvalidFields();
  hideError();
  let request;
  try {
    request = buildRequest();
  } catch (error) {
    showError(error);
    setStatus("error", "Not sent");
    ui.elapsed.textContent = "";
    return;
  }

  setRunning(true);
  clearResult();
  startElapsed();
  showProgress("submitting");
  try {
    const accepted = await requestJSON("POST", `${API}/submissions`, request);
    if (!accepted || !accepted.id) {
      throw new Error("The server accepted the submission but returned no id.");
    }
    showSubmissionLink(accepted.id);
    showProgress(accepted.status || "queued");
    const view = await followSubmission(accepted.id, accepted.status);
    stopElapsed();
    hideProgress();
    showResult(view);
    const verdict = VERDICTS[view.verdict];
    setStatus("done", "Done", `: ${verdict ? verdict.label : view.verdict || "no verdict"}`);
  } catch (error) {
    stopElapsed();
    hideProgress();
    showError(error);
    setStatus("error", "Failed");
  } finally {
    setRunning(false);
  }
}

// ---------------------------------------------------------------- results

// Decodes an output field into its text and whether it was binary. A base64
// field contains bytes that are not valid UTF-8, so the text shows the
// invalid bytes as U+FFFD.
function decodeOutput(value, encoding) {
  if (typeof value !== "string") {
    return { text: "", binary: false };
  }
  if (encoding !== "base64") {
    return { text: value, binary: false };
  }
  try {
    const raw = window.atob(value);
    const bytes = new Uint8Array(raw.length);
    for (let i = 0; i < raw.length; i++) {
      bytes[i] = raw.charCodeAt(i);
    }
    return { text: new TextDecoder("utf-8").decode(bytes), binary: true };
  } catch {
    return { text: value, binary: true };
  }
}

function showStream(pre, binaryTag, truncatedTag, value, encoding, truncated) {
  const output = decodeOutput(value, encoding);
  pre.textContent = output.text;
  pre.scrollTop = 0;
  binaryTag.hidden = !output.binary;
  binaryTag.title = output.binary ? "The output is not valid UTF-8, so invalid bytes are shown as \uFFFD." : "";
  if (truncatedTag) {
    truncatedTag.hidden = !truncated;
    truncatedTag.title = truncated ? "The program wrote more than the output limit, so only the start is shown." : "";
  }
}

// Formats a size in KiB, switching to MiB at 10 MiB.
function formatKiB(kib) {
  return kib < 10240 ? `${kib} KiB` : `${(kib / 1024).toFixed(1)} MiB`;
}

function formatMs(value) {
  return `${Number(value).toLocaleString("en-US")} ms`;
}

function showResult(view) {
  const verdict = VERDICTS[view.verdict] || { label: view.verdict || "No verdict", tone: "internal" };
  ui.verdict.textContent = verdict.label;
  ui.verdict.dataset.verdict = view.verdict || "";
  ui.verdict.dataset.tone = verdict.tone;
  ui.message.textContent = view.message ? toSentence(view.message) : "";
  ui.message.hidden = !view.message;

  ui.exitCode.textContent = typeof view.exit_code === "number" ? String(view.exit_code) : "—";
  ui.exitCode.title = typeof view.exit_code === "number"
    ? ""
    : "No exit code: the program did not run, or it was stopped before it exited.";
  ui.signalFact.hidden = !view.signal;
  ui.signal.textContent = view.signal || "";
  // A program that failed to compile never ran, so its time of 0 is not shown.
  const ran = typeof view.time_ms === "number" && view.verdict !== "compile_error";
  ui.time.textContent = ran ? formatMs(view.time_ms) : "—";
  const timeLimit = view.limits && view.limits.time_ms;
  ui.time.title = timeLimit ? `Wall-clock time. The limit was ${formatMs(timeLimit)}.` : "Wall-clock time.";
  const measured = typeof view.memory_kb === "number";
  ui.memory.textContent = measured ? formatKiB(view.memory_kb) : "—";
  const memoryLimit = view.limits && view.limits.memory_mb;
  if (!measured) {
    ui.memory.title = "Not measured: the program did not run or was stopped, the sandbox could not read " +
      "the peak, or the peak did not exceed the compiler's.";
  } else if (memoryLimit) {
    ui.memory.title = `Peak memory of the sandbox. The limit was ${memoryLimit} MiB.`;
  } else {
    ui.memory.title = "Peak memory of the sandbox.";
  }
  const compiled = typeof view.compile_time_ms === "number";
  ui.compileTimeFact.hidden = !compiled;
  ui.compileTime.textContent = compiled ? formatMs(view.compile_time_ms) : "";

  showStream(ui.compileOutput, ui.compileOutputBinary, null,
    view.compile_output, view.compile_output_encoding, false);
  ui.compileStream.hidden = ui.compileOutput.textContent === "" && view.verdict !== "compile_error";
  showStream(ui.stdout, ui.stdoutBinary, ui.stdoutTruncated,
    view.stdout, view.stdout_encoding, view.stdout_truncated === true);
  showStream(ui.stderr, ui.stderrBinary, ui.stderrTruncated,
    view.stderr, view.stderr_encoding, view.stderr_truncated === true);

  ui.worker.textContent = view.worker ? `Ran on ${view.worker}` : "";
  ui.placeholder.hidden = true;
  ui.result.hidden = false;
}

function showSubmissionLink(id) {
  const link = ui.submissionLink;
  link.href = `${API}/submissions/${encodeURIComponent(id)}`;
  link.textContent = `submission ${id}`;
  link.title = "The submission as JSON";
  link.hidden = false;
}

function clearResult() {
  ui.result.hidden = true;
  ui.placeholder.hidden = true;
  ui.verdict.textContent = "";
  ui.verdict.dataset.verdict = "";
  ui.verdict.dataset.tone = "";
  ui.message.textContent = "";
  for (const element of [ui.exitCode, ui.signal, ui.time, ui.compileTime, ui.compileOutput,
    ui.stdout, ui.stderr, ui.worker]) {
    element.textContent = "";
  }
  ui.submissionLink.hidden = true;
  ui.elapsed.textContent = "";
}

// ----------------------------------------------------------------- errors

const FIELD_INPUTS = [
  ["language", () => ui.language],
  ["source", () => ui.source],
  ["stdin", () => ui.stdin],
  ["args", () => ui.args],
  ["limits.time_ms", () => ui.timeLimit],
  ["limits.memory_mb", () => ui.memoryLimit],
];

// Returns the input that an error's field refers to, such as ui.args for
// "args[3]", or null.
function inputForField(field) {
  for (const [name, input] of FIELD_INPUTS) {
    if (field === name || field.startsWith(`${name}[`) || field.startsWith(`${name}.`)) {
      return input();
    }
  }
  return null;
}

function markInvalid(field) {
  const input = field ? inputForField(field) : null;
  if (!input) {
    return;
  }
  input.setAttribute("aria-invalid", "true");
  input.setAttribute("aria-errormessage", "error-message");
  if (input === ui.timeLimit || input === ui.memoryLimit) {
    ui.limits.open = true;
  }
}

function clearInvalidFields() {
  for (const [, input] of FIELD_INPUTS) {
    input().removeAttribute("aria-invalid");
    input().removeAttribute("aria-errormessage");
  }
}

function errorTitle(error) {
  if (error instanceof ApiError) {
    const code = error.code ? ` · ${error.code}` : "";
    if (error.status === 429) {
      return `The queue is full (HTTP 429${code})`;
    }
    if (error.status === 404) {
      return `Not found (HTTP 404${code})`;
    }
    if (error.status >= 500) {
      return `The server failed to handle the request (HTTP ${error.status}${code})`;
    }
    return `The request was rejected (HTTP ${error.status}${code})`;
  }
  if (error instanceof FieldError) {
    return "The input is invalid";
  }
  if (error instanceof NetworkError) {
    return "No connection to the server";
  }
  return "Unexpected error";
}

function errorDetail(error, extra) {
  const parts = [];
  if (error.field) {
    parts.push(`Field: ${error.field}.`);
  }
  if (error.allowed && error.allowed.length > 0) {
    parts.push(`Allowed: ${error.allowed.join(", ")}.`);
  }
  if (error.retryAfter) {
    parts.push(`Try again in ${formatSeconds(error.retryAfter)}.`);
  }
  if (error.body) {
    parts.push(error.body.trim().slice(0, 300));
  }
  if (extra) {
    parts.push(extra);
  }
  return parts.join(" ");
}

function showError(error, extra = "") {
  ui.errorTitle.textContent = errorTitle(error);
  ui.errorMessage.textContent = toSentence(error.message || String(error));
  ui.errorDetail.textContent = errorDetail(error, extra);
  ui.errorDetail.hidden = ui.errorDetail.textContent === "";
  ui.error.hidden = false;
  ui.placeholder.hidden = true;
  markInvalid(error.field);
}

function hideError() {
  ui.error.hidden = true;
}

// ------------------------------------------------------------------ setup

function restoreInputs() {
  const stdin = storage.get(STORAGE.stdin);
  // The samples read one line from stdin and greet it, so a first visit
  // starts with a line to read.
  ui.stdin.value = stdin !== null ? stdin : "world\n";
  ui.args.value = storage.get(STORAGE.args) || "";
  ui.timeLimit.value = storage.get(STORAGE.timeLimit) || "";
  ui.memoryLimit.value = storage.get(STORAGE.memoryLimit) || "";
  if (ui.timeLimit.value || ui.memoryLimit.value) {
    ui.limits.open = true;
  }
}

function isApplePlatform() {
  const platform = (navigator.userAgentData && navigator.userAgentData.platform) || navigator.platform || "";
  return /mac|iphone|ipad/i.test(platform);
}

function bindEvents() {
  ui.source.addEventListener("keydown", onEditorKeydown);
  ui.source.addEventListener("input", () => {
    updateGutter();
    scheduleSourceSave();
    ui.source.removeAttribute("aria-invalid");
  });
  ui.source.addEventListener("scroll", syncGutterScroll, { passive: true });
  ui.source.addEventListener("blur", () => {
    state.tabLeavesEditor = false;
  });

  const remembered = [
    [ui.stdin, STORAGE.stdin],
    [ui.args, STORAGE.args],
    [ui.timeLimit, STORAGE.timeLimit],
    [ui.memoryLimit, STORAGE.memoryLimit],
  ];
  for (const [input, key] of remembered) {
    input.addEventListener("input", () => {
      storage.set(key, input.value);
      input.removeAttribute("aria-invalid");
    });
  }

  // Only a language that the user picks is stored, so a fallback that
  // initialLanguage chose does not replace the user's choice.
  ui.language.addEventListener("change", () => {
    switchLanguage(ui.language.value);
    storage.set(STORAGE.language, ui.language.value);
    ui.language.removeAttribute("aria-invalid");
  });
  ui.loadSample.addEventListener("click", () => {
    const language = state.languages.get(state.current);
    if (language) {
      replaceText(0, ui.source.value.length, language.sample, 0, 0);
      ui.source.scrollTop = 0;
    }
  });
  ui.run.addEventListener("click", run);

  // Ctrl+Enter or Cmd+Enter runs the program from anywhere on the page.
  document.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey) && !event.altKey && !event.isComposing) {
      event.preventDefault();
      run();
    }
  });
  window.addEventListener("pagehide", saveSourceNow);
}

function init() {
  const apple = isApplePlatform();
  ui.runShortcut.textContent = apple ? "⌘ ↵" : "Ctrl ↵";
  ui.runShortcut.title = apple ? "Cmd+Enter" : "Ctrl+Enter";
  for (const element of document.querySelectorAll(".shortcut-text")) {
    element.textContent = apple ? "⌘" : "Ctrl";
  }
  restoreInputs();
  updateGutter();
  bindEvents();
  initLanguages();
}

init();
