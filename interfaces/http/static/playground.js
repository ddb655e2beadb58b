// The playground: POST /v1/answer with `stream: true`, read its Server-Sent Events as they arrive (fetch, since
// EventSource can neither POST nor send the API key), show the answer as it is written, then its sources.
"use strict";

const $ = (id) => document.getElementById(id);
const KEY = "tafsir-rag-api-key";

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text) node.textContent = text;
  return node;
}

function setStatus(text, isError) {
  $("status").textContent = text;
  $("status").classList.toggle("error", Boolean(isError));
}

function showSources(sources) {
  const list = $("sources");
  list.replaceChildren();
  for (const source of sources) {
    const item = element("li", source.cited ? "cited" : "");
    item.value = source.number;
    item.dataset.number = String(source.number);
    const head = element("div");
    head.append(element("span", "citation", `[${source.number}] ${source.citation}`));
    if (source.cited) head.append(element("span", "badge", "dikutip"));
    const editions = [source.edition, ...(source.also_in || [])].join(", ");
    head.append(element("span", "edition", ` — ${editions}`));
    item.append(head);
    if (source.arabic) {
      const arabic = element("p", "arabic", source.arabic);
      arabic.lang = "ar";
      arabic.dir = "rtl";
      item.append(arabic);
    }
    if (source.translation) item.append(element("p", "translation", source.translation));
    item.append(element("p", "tafsir", source.text));
    list.append(item);
  }
}

const MODES = {
  generated: (body) => `Dijawab oleh ${body.llm || "model bahasa"} dari kutipan di bawah.`,
  extractive: () => "Jawaban ekstraktif: server tidak memakai model bahasa; kalimat utuh dikutip dari tafsir atau terjemahan ayat.",
  not_found: () => "Tafsir yang tersedia tidak memuat jawabannya.",
};

function showDone(body) {
  $("answer").textContent = body.answer;
  const parts = [(MODES[body.mode] || (() => ""))(body)];
  if (body.searched_query) parts.push(`Dicari: “${body.searched_query}”.`);
  // Why the tafsir was judged to answer (or not): the fitted decision's probability, when the model has one.
  if (typeof body.confidence === "number") parts.push(`Keyakinan tafsir menjawab: ${Math.round(body.confidence * 100)} %.`);
  if (body.invalid_citations && body.invalid_citations.length) {
    parts.push(`Rujukan yang dihapus karena tidak ada di kutipan: ${body.invalid_citations.map((c) => c.text).join(", ")}.`);
  }
  parts.push(`${Math.round(body.took_ms)} ms.`);
  $("meta").textContent = parts.join(" ");
  showSources(body.sources || []);
  setStatus("Selesai.");
}

// The server's errors are in English, for developers; the page says them in Indonesian, as the rest of it. An
// error of the language model keeps the server's words (they name the endpoint and the setting to check).
const ERRORS = {
  unauthorized: () => "Server ini memerlukan kunci API: isi kolom Kunci API dengan nilai TAFSIR_API_KEY server.",
  forbidden: () => "Kunci API tidak valid: periksa kolom Kunci API.",
  invalid_request: () => "Permintaan tidak valid: periksa pertanyaan dan jumlah kutipan (k).",
  body_too_large: () => "Pertanyaan terlalu panjang.",
  not_ready: () => "Server belum siap (model masih dimuat): coba lagi sebentar lagi.",
  store_unavailable: () => "Penyimpanan tafsir tidak dapat dijangkau: coba lagi nanti.",
  model_unavailable: () => "Model embedding tidak tersedia di server: coba lagi nanti.",
  internal_error: () => "Terjadi kesalahan di server: lihat log server.",
  llm_timeout: (body) => `Model bahasa tidak menjawab tepat waktu (${body.message}).`,
  llm_unreachable: (body) => `Model bahasa tidak dapat dijangkau (${body.message}).`,
  llm_failed: (body) => `Model bahasa gagal menjawab (${body.message}).`,
  llm_malformed_reply: (body) => `Balasan model bahasa tidak dapat dibaca (${body.message}).`,
};

function errorText(body) {
  const known = ERRORS[body.error];
  return known ? known(body) : body.message || body.error || "permintaan gagal";
}

function showError(body) {
  setStatus(`Galat: ${errorText(body)}`, true);
  if (body.partial_answer) $("answer").textContent = body.partial_answer;
  if (body.sources) showSources(body.sources);
}

// One SSE event block ("event: x\ndata: y") -> {event, data}.
function parseEvent(block) {
  let event = "message";
  const data = [];
  for (const line of block.split(/\r?\n/)) {
    if (line.startsWith("event:")) event = line.slice(6).trim();
    else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
  }
  return data.length ? { event, data: data.join("\n") } : null;
}

async function ask(submitEvent) {
  submitEvent.preventDefault();
  const key = $("api-key").value.trim();
  sessionStorage.setItem(KEY, key);
  const body = {
    question: $("question").value,
    k: Number($("k").value),
    mode: $("mode").value,
    stream: true,
  };
  const headers = { "Content-Type": "application/json" };
  if (key) headers["X-API-Key"] = key;
  $("result").hidden = false;
  $("answer").textContent = "";
  $("meta").textContent = "";
  $("sources").replaceChildren();
  setStatus("Mencari…");
  $("submit").disabled = true;
  try {
    const response = await fetch("v1/answer", { method: "POST", headers, body: JSON.stringify(body) });
    if (!response.ok) {
      showError(await response.json().catch(() => ({ message: `HTTP ${response.status}` })));
      return;
    }
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      const blocks = buffer.split(/\r?\n\r?\n/);
      buffer = blocks.pop();
      for (const block of blocks) {
        const parsed = parseEvent(block);
        if (!parsed) continue;  // a keep-alive comment
        const data = JSON.parse(parsed.data);
        if (parsed.event === "delta") {
          setStatus("Menulis jawaban…");
          $("answer").append(data.text);
        } else if (parsed.event === "done") {
          showDone(data);
        } else if (parsed.event === "error") {
          showError(data);
        }
      }
    }
  } catch (error) {
    setStatus(`Galat: server tidak dapat dihubungi (${error.message}).`, true);
  } finally {
    $("submit").disabled = false;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("api-key").value = sessionStorage.getItem(KEY) || "";
  $("ask").addEventListener("submit", ask);
});
