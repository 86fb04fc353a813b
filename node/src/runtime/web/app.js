// The skyhop web page: a chat client and a live view of the node, on the
// node's own control API. A conversation opens with what the node's history
// kept (GET /history), then follows the live events. Every text from the
// network goes into the page through textContent, never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const short = (id) => (id ? id.slice(0, 8) : "-");
const MAX_MESSAGES = 500; // per conversation
const MAX_EVENTS = 100;
const MAX_PROBED = 20; // contacts probed per round
const PROBE_EVERY_MS = 30000;
const HISTORY_SHOWN = 200; // chats loaded when a conversation opens
const SAID_BY = { recipient: "the recipient", home_supernode: "its home supernodes", this_node: "this node" };

const state = {
  me: null,
  status: null,
  peer: null, // full id of the open conversation
  known: new Map(), // id -> {kinds: Set, online: bool|null}
  conversations: new Map(), // id -> [message]
};

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

async function api(method, path, body) {
  const init = { method, headers: {} };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const r = await fetch(path, init);
  const v = await r.json();
  if (!r.ok) throw new Error(v.error || "error " + r.status);
  return v;
}

function contact(id) {
  if (!state.known.has(id)) state.known.set(id, { kinds: new Set(), online: null });
  return state.known.get(id);
}

function conversation(id) {
  if (!state.conversations.has(id)) state.conversations.set(id, []);
  return state.conversations.get(id);
}

function renderContacts() {
  const ul = $("contacts");
  ul.replaceChildren();
  const links = new Set(state.status ? state.status.links : []);
  for (const [id, c] of state.known) {
    if (id === state.me) continue;
    const li = el("li");
    li.dataset.id = id;
    if (id === state.peer) li.classList.add("selected");
    const online = links.has(id) || c.online === true;
    const dot = el("span", "dot" + (online ? " online" : c.online === false ? " offline" : ""));
    dot.title = online ? "online" : c.online === false ? "offline" : "unknown";
    const label = c.name ? c.name + " (" + short(id) + ")" : short(id);
    li.append(dot, el("span", "id", label), el("span", "kind", [...c.kinds].join(", ")));
    if (c.conflict) {
      const warn = el("span", "kind", " WARNING: '" + c.name + "' now resolves to key " + short(c.conflict) + "; /repin to trust it");
      warn.title = "trust on first use: the pinned key is still used";
      li.append(warn);
    }
    li.addEventListener("click", () => openConversation(id));
    ul.append(li);
  }
}

function renderMessages() {
  const ol = $("messages");
  ol.replaceChildren();
  if (!state.peer) return;
  for (const m of conversation(state.peer)) {
    const li = el("li", "msg " + m.dir + (m.state ? " " + m.state : ""), m.text);
    const label = m.at ? m.at + " · " + m.label : m.label;
    li.append(el("span", "state", label));
    ol.append(li);
  }
  ol.scrollTop = ol.scrollHeight;
}

// A chat the history kept, as the conversation shows it.
function fromHistory(c) {
  const hops = c.hops === null ? "" : c.hops + " hops";
  const by = c.said_by ? ", said by " + SAID_BY[c.said_by] : "";
  const label = {
    received: hops,
    sent: "sent",
    delivered: "delivered (" + hops + by + ")",
    failed: "failed (" + c.reason + by + ")",
    interrupted: "unknown (" + c.reason + ")",
  }[c.state];
  const state = c.state === "received" ? "" : c.state === "interrupted" ? "failed" : c.state;
  const at = new Date(c.at_ms).toLocaleString();
  return { dir: c.direction, text: c.body, state, label, at, msgId: c.msg_id, stored: true };
}

// Loads the kept chats with `id`; chats that arrived live meanwhile and are
// not yet in the answer stay after it.
async function loadHistory(id) {
  try {
    const page = await api("GET", "/history?peer=" + id + "&limit=" + HISTORY_SHOWN);
    const kept = page.messages.map(fromHistory);
    const ids = new Set(kept.map((m) => m.dir + m.msgId));
    const live = conversation(id).filter((m) => !m.stored && !(m.msgId && ids.has(m.dir + m.msgId)));
    state.conversations.set(id, kept.concat(live).slice(-MAX_MESSAGES));
    if (id === state.peer) renderMessages();
  } catch (e) {
    // A node without a data dir keeps no history: the live view still works.
    $("trace-result").textContent = "history: " + e.message;
  }
}

function openConversation(id) {
  state.peer = id;
  contact(id);
  $("peer").textContent = id;
  for (const b of ["text", "send", "trace"]) $(b).disabled = false;
  $("trace-result").textContent = "";
  renderContacts();
  renderMessages();
  loadHistory(id);
  $("text").focus();
}

function pushMessage(peer, m) {
  const list = conversation(peer);
  list.push(m);
  if (list.length > MAX_MESSAGES) list.shift();
  if (peer === state.peer) renderMessages();
}

async function send(text) {
  const to = state.peer;
  const m = { dir: "out", text, state: "sent", label: "sent" };
  pushMessage(to, m);
  try {
    const r = await api("POST", "/send", { to, text });
    if (r.delivered) {
      m.state = "delivered";
      m.label = "delivered (" + r.hops + " hops, " + r.latency_ms.toFixed(1) + " ms)";
      contact(to).online = true;
    } else {
      m.state = "failed";
      m.label = "failed (" + r.reason + ")";
      if (/offline|not found/.test(r.reason)) contact(to).online = false;
    }
  } catch (e) {
    m.state = "failed";
    m.label = "failed (" + e.message + ")";
  }
  renderMessages();
  renderContacts();
}

async function trace() {
  const to = state.peer;
  const out = $("trace-result");
  out.textContent = "tracing…";
  try {
    const r = await api("POST", "/trace", { to });
    if (r.ok) {
      out.textContent = r.path.map(short).join(" → ") + " (" + r.hops + " hops, " + r.rtt_ms.toFixed(1) + " ms)";
      contact(to).online = true;
    } else {
      out.textContent = "no path: " + r.reason;
      contact(to).online = false;
    }
  } catch (e) {
    out.textContent = "error: " + e.message;
  }
  renderContacts();
}

function showStatus(s) {
  state.status = s;
  state.me = s.id;
  $("me").textContent = s.id;
  $("role").textContent = s.auto_role
    ? s.role + " (auto, " + s.reachability + ", promoted " + s.promotions + ")"
    : s.role;
  $("primary").textContent = s.primary ? short(s.primary) : "-";
  for (const k of ["backups", "links", "clients", "neighbors"]) {
    $(k).textContent = s[k].length ? s[k].map(short).join(" ") : "-";
    for (const id of s[k]) contact(id).kinds.add(k === "backups" ? "supernode" : k.replace(/s$/, ""));
  }
  if (s.primary) contact(s.primary).kinds.add("supernode");
  $("records").textContent = String(s.records);
  $("pending").textContent = String(s.pending_chats);
  renderContacts();
}

function describe(e) {
  switch (e.event) {
    case "chat_received": return "chat from " + short(e.from) + " (" + e.hops + " hops)";
    case "chat_delivered": return "delivered to " + short(e.to) + " (" + e.hops + " hops)";
    case "chat_stored": return "to " + short(e.to) + " stored on " + e.copies + " of 3 home supernodes (recipient offline)";
    case "chat_failed": return "to " + short(e.to) + " failed: " + e.reason;
    case "attached": return "attached to " + short(e.sn);
    case "detached": return "lost " + short(e.sn) + ": " + e.reason;
    case "trace_completed": return "trace to " + short(e.to) + ": " + e.path.length + " nodes";
    case "trace_failed": return "trace to " + short(e.to) + " failed: " + e.reason;
    case "peer_misbehaved": return short(e.peer) + " misbehaved: " + e.reason;
    default: return e.event;
  }
}

function showEvent(e) {
  const ol = $("events");
  ol.prepend(el("li", "", describe(e)));
  while (ol.children.length > MAX_EVENTS) ol.lastChild.remove();
  if (e.event === "chat_received") {
    const c = contact(e.from);
    c.kinds.add("recent");
    c.online = true;
    pushMessage(e.from, { dir: "in", text: e.body, state: "", label: e.hops + " hops", msgId: e.msg_id });
    if (!state.peer) openConversation(e.from);
    renderContacts();
  }
}

async function loadPeers() {
  try {
    const p = await api("GET", "/peers");
    for (const k of ["clients", "neighbors", "links", "host_cache", "recent"]) {
      for (const id of p[k]) contact(id).kinds.add(k === "host_cache" ? "supernode" : k.replace(/s$/, ""));
    }
    renderContacts();
  } catch (e) {
    $("live").textContent = e.message;
  }
  // The contacts the node pinned at first contact, with what it knows of
  // their presence (a node without a data dir has none).
  try {
    const c = await api("GET", "/contacts");
    for (const x of c.contacts) {
      const k = contact(x.id);
      k.kinds.add("contact");
      if (x.name) k.name = x.name;
      k.conflict = x.name_conflict || null;
      if (x.presence !== "unknown" && k.online === null) k.online = x.presence === "online";
    }
    renderContacts();
  } catch (e) {
    // No history: the other kinds still list who the node knows.
  }
}

// Who is attached to this node's supernode and chose to be listed
// (--listed): by the name the supernode checked, else by id. A click opens
// a conversation.
async function loadListed() {
  const ul = $("listed");
  try {
    const w = await api("GET", "/who");
    ul.replaceChildren();
    for (const n of w.listed) {
      const li = el("li");
      li.dataset.id = n.id;
      const label = n.name ? n.name + " (" + short(n.id) + ")" : short(n.id) + " (no checked name)";
      li.append(el("span", "id", label));
      if (n.id === state.me) li.append(el("span", "kind", "you"));
      li.addEventListener("click", () => openConversation(n.id));
      ul.append(li);
    }
    $("listed-hint").textContent = w.listed.length
      ? "At supernode " + short(w.supernode) + "."
      : "Nobody listed at supernode " + short(w.supernode) + " (run with --listed to be).";
  } catch (e) {
    $("listed-hint").textContent = e.message;
  }
}

// Who is online: a contact not linked to this node is probed (one trace
// through the overlay) every PROBE_EVERY_MS, one at a time.
async function probeContacts() {
  const links = new Set(state.status ? state.status.links : []);
  const ids = [...state.known.keys()].filter((id) => id !== state.me && !links.has(id));
  for (const id of ids.slice(0, MAX_PROBED)) {
    try {
      const r = await api("POST", "/ping", { to: id, count: 1, interval_ms: 100 });
      contact(id).online = r.received > 0;
    } catch (e) {
      // A busy (429) or stopping node: the next round tries again.
    }
  }
  renderContacts();
}

function connect() {
  const source = new EventSource("/stream");
  source.addEventListener("open", () => {
    $("live").textContent = "live";
    $("live").classList.remove("off");
  });
  source.addEventListener("status", (m) => showStatus(JSON.parse(m.data)));
  source.addEventListener("log", (m) => showEvent(JSON.parse(m.data)));
  source.addEventListener("error", () => {
    $("live").textContent = "reconnecting";
    $("live").classList.add("off");
  });
}

document.addEventListener("DOMContentLoaded", () => {
  $("send-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const text = $("text").value;
    if (!text || !state.peer) return;
    $("text").value = "";
    send(text);
  });
  $("add-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const text = $("add-id").value.trim().toLowerCase();
    if (!text) return;
    $("add-id").value = "";
    // The node resolves an id, a prefix or a name (a name at its home
    // supernodes, pinned at first contact).
    try {
      const r = await api("POST", "/resolve", { to: text });
      if (!r.id.startsWith(text)) contact(r.id).name = text;
      contact(r.id).conflict = r.conflict;
      $("trace-result").textContent = r.warning || "";
      renderContacts();
      openConversation(r.id);
    } catch (e) {
      $("trace-result").textContent = e.message;
    }
  });
  $("trace").addEventListener("click", trace);
  loadPeers();
  setInterval(loadPeers, 10000);
  loadListed();
  setInterval(loadListed, 5000);
  setInterval(probeContacts, PROBE_EVERY_MS);
  connect();
});
