// node-notes: a Trellis process plugin in plain Node.js (standard library only).
// JSON-RPC 2.0, one message per line, on the descriptor named by TRELLIS_RPC_FD (3).
const net = require("net");
const { StringDecoder } = require("string_decoder");

const COMMANDS = ["note-add", "note-list"];
const HOOKS = ["backlog.task.created"];

const channel = new net.Socket({ fd: Number(process.env.TRELLIS_RPC_FD || 3), readable: true, writable: true });
let config = {};
let nextId = 0;
const waiting = new Map(); // our requests to the host, by id

function send(message) {
  channel.write(JSON.stringify({ jsonrpc: "2.0", ...message }) + "\n");
}

// A request to the host; resolves with its result, rejects with its error object.
function callHost(method, params) {
  const id = `node-notes-${++nextId}`;
  send({ id, method, params });
  return new Promise((resolve, reject) => waiting.set(id, { resolve, reject }));
}

function fail(code, kind, message) {
  return { code, message, data: { kind } };
}

const toBase64 = (text) => Buffer.from(String(text), "utf8").toString("base64");
const fromBase64 = (value) => Buffer.from(value, "base64").toString("utf8");

async function stateGet(key) {
  const { value } = await callHost("state.get", { key });
  return value === null || value === undefined ? null : fromBase64(value);
}

async function stateSet(key, text) {
  await callHost("state.set", { key, value: toBase64(text) });
}

async function noteAdd(args) {
  const text = args.join(" ").trim();
  if (!text) throw fail(-32002, "invalid_input", "note-add needs the note text as arguments");
  const count = Number((await stateGet("count")) || "0");
  const n = count + 1;
  await stateSet(`notes/${n}`, text);
  await stateSet("count", String(n));
  let task;
  try {
    task = await callHost("backlog.create_task", {
      title: `Note: ${text}`,
      labels: ["note"],
      description: `Note ${n}, recorded by node-notes.`,
    });
  } catch (e) {
    // No task, no note: undo the two writes, then fail with the host's error (its kind kept).
    await callHost("state.delete", { key: `notes/${n}` }).catch(() => {});
    await stateSet("count", String(count)).catch(() => {});
    throw e;
  }
  return { id: n, task: task.id };
}

async function noteList() {
  const { keys } = await callHost("state.keys", { prefix: "notes/" });
  // Order by the note number, not lexically (notes/10 after notes/9).
  const numbered = keys
    .map((key) => (key.startsWith("notes/") ? key : `notes/${key}`))
    .map((key) => ({ key, n: Number(key.slice("notes/".length)) }))
    .filter(({ n }) => Number.isInteger(n) && n > 0)
    .sort((a, b) => a.n - b.n);
  const notes = [];
  for (const { key } of numbered) {
    const text = await stateGet(key);
    if (text !== null) notes.push(text);
  }
  return { notes };
}

// The host delivers `backlog.task.created` while our own `backlog.create_task` request is
// still pending (the event is caused by note-add). A host *request* made from inside that
// nested on_event is never answered, so the log goes out as a notification, which
// docs/process.md allows ("`log` may also be sent as a notification (no answer)").
function onTaskCreated(method, topic, payload) {
  send({ method: "log", params: { level: "info", message: `${method} ${topic}: ${JSON.stringify(payload)}` } });
  return null;
}

const methods = {
  initialize: async () => ({
    protocol_version: 1,
    implements: { commands: COMMANDS, hooks: HOOKS, phases: [], migrations: [] },
    sdk: { name: "none" },
  }),
  init: async (params) => { config = params.config || {}; return null; },
  run_command: async ({ name, args }) => {
    if (name === "note-add") return noteAdd(args || []);
    if (name === "note-list") return noteList();
    throw fail(-32003, "not_found", `no command ${name}`);
  },
  on_event: async ({ topic, payload }) => onTaskCreated("on_event", topic, payload),
  call_hook: async ({ hook, args }) => {
    if (!HOOKS.includes(hook)) throw fail(-32003, "not_found", `no hook ${hook}`);
    return onTaskCreated("call_hook", hook, args);
  },
};

async function handle(message) {
  if (message.method === "shutdown") process.exit(0);
  if (message.id === undefined) return; // $/cancel and other notifications
  try {
    const handler = methods[message.method];
    if (!handler) throw { code: -32601, message: `no method ${message.method}` };
    send({ id: message.id, result: await handler(message.params || {}) });
  } catch (e) {
    // Errors from the host (e.g. denied) are passed on with their code, message and data.kind.
    const error = { code: e.code || -32000, message: e.message || String(e) };
    error.data = e.data && e.data.kind ? e.data : { kind: "failed", ...(e.data || {}) };
    if (e.code === -32601 && !e.data) delete error.data;
    send({ id: message.id, error });
  }
}

let buffered = "";
const decoder = new StringDecoder("utf8"); // a chunk may end inside a UTF-8 character
channel.on("data", (chunk) => {
  buffered += decoder.write(chunk);
  let newline;
  while ((newline = buffered.indexOf("\n")) >= 0) {
    const line = buffered.slice(0, newline);
    buffered = buffered.slice(newline + 1);
    if (!line.trim()) continue;
    let message;
    try { message = JSON.parse(line); } catch { continue; }
    if (message.method === undefined && waiting.has(message.id)) {
      const { resolve, reject } = waiting.get(message.id);
      waiting.delete(message.id);
      message.error ? reject(message.error) : resolve(message.result);
    } else {
      handle(message);
    }
  }
});
channel.on("end", () => process.exit(0));
channel.on("error", () => process.exit(0));
