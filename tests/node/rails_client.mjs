// Drives the unmodified npm @rails/actioncable client under Node, for tests/test_rails_client.py.
//
// Usage: node rails_client.mjs <ws-url> [origin]      (or CABLE_URL / CABLE_ORIGIN in the environment)
//
// stdout: one JSON object per line, each with "event" and "t" (ms since start):
//   ready                                   the client is loaded and reads commands
//   ws_open {protocol} / ws_close {code, reason, wasClean} / ws_error {message}
//   frame {data}                            every raw text frame the client receives (pings included)
//   connected {name, arg, reconnected} / disconnected {name, arg} / rejected {name} / received {name, data}
//   log {message}                           ActionCable's own logger (logger.enabled = true)
//   ack {do, name, result} / error {message}
// stdin: one JSON command per line:
//   {"do":"subscribe","name":"a","params":{"channel":"EchoChannel","room":"r1"}}
//   {"do":"perform","name":"a","action":"echo","data":{...}}
//   {"do":"send","name":"a","data":{...}}
//   {"do":"unsubscribe","name":"a"}
//   {"do":"state"}  {"do":"disconnect"}  {"do":"connect"}  {"do":"exit"}
import { createInterface } from "node:readline";
import { WebSocket as NodeWebSocket } from "ws";

const url = process.argv[2] ?? process.env.CABLE_URL;
const origin = process.argv[3] ?? process.env.CABLE_ORIGIN;
if (!url) {
  process.stderr.write("usage: node rails_client.mjs <ws-url> [origin]\n");
  process.exit(2);
}

const started = Date.now();
function emit(event, fields = {}) {
  process.stdout.write(JSON.stringify({ event, t: Date.now() - started, ...fields }) + "\n");
}

// A browser always sends Origin; ws only does when asked to.
class BrowserLikeWebSocket extends NodeWebSocket {
  constructor(address, protocols) {
    super(address, protocols, origin ? { origin } : {});
    // Added before the client's own onmessage/onclose handlers, so these lines come first.
    this.addEventListener("open", () => emit("ws_open", { protocol: this.protocol }));
    this.addEventListener("message", (event) => emit("frame", { data: event.data }));
    this.addEventListener("close", (event) =>
      emit("ws_close", { code: event.code, reason: event.reason, wasClean: event.wasClean }),
    );
    this.addEventListener("error", (event) => emit("ws_error", { message: String(event.message ?? event.error) }));
  }
}

// What the client reads from a browser: WebSocket (captured when the module loads), the
// visibilitychange listener of its ConnectionMonitor, and document.visibilityState.
// (document.createElement / document.head are only used for non-ws:// URLs and <meta> config.)
globalThis.WebSocket = BrowserLikeWebSocket;
globalThis.addEventListener ??= () => {};
globalThis.removeEventListener ??= () => {};
globalThis.document ??= { visibilityState: "visible" };

// The package's "main" is a UMD bundle; import it only now that WebSocket is global.
const imported = await import("@rails/actioncable");
const ActionCable = imported.default ?? imported;
ActionCable.adapters.WebSocket = BrowserLikeWebSocket;
ActionCable.adapters.logger = { log: (...parts) => emit("log", { message: parts.map(String).join(" ") }) };
ActionCable.logger.enabled = true;

const consumer = ActionCable.createConsumer(url);
const subscriptions = new Map();

function subscribe(name, params) {
  const subscription = consumer.subscriptions.create(params, {
    connected(arg) {
      emit("connected", { name, arg: arg ?? null, reconnected: arg?.reconnected ?? null });
    },
    disconnected(arg) {
      emit("disconnected", { name, arg: arg ?? null });
    },
    rejected() {
      emit("rejected", { name });
    },
    received(data) {
      emit("received", { name, data: data === undefined ? null : data });
    },
  });
  subscriptions.set(name, subscription);
  return subscription.identifier;
}

function find(name) {
  const subscription = subscriptions.get(name);
  if (!subscription) throw new Error(`no subscription named ${JSON.stringify(name)}`);
  return subscription;
}

function run(command) {
  const name = command.name ?? "main";
  switch (command.do) {
    case "subscribe":
      return subscribe(name, command.params);
    case "perform":
      return find(name).perform(command.action, command.data ?? {});
    case "send":
      return find(name).send(command.data ?? {});
    case "unsubscribe": {
      find(name).unsubscribe(); // returns the Subscriptions object: not worth printing
      subscriptions.delete(name);
      return null;
    }
    case "state":
      return {
        state: consumer.connection.getState(),
        protocol: consumer.connection.getProtocol() ?? null,
        reconnectAttempts: consumer.connection.monitor.reconnectAttempts,
        subscriptions: consumer.subscriptions.subscriptions.map((s) => s.identifier),
      };
    case "disconnect":
      consumer.disconnect();
      return null;
    case "connect":
      return consumer.connect();
    case "exit":
      emit("ack", { do: "exit", name, result: null });
      consumer.disconnect();
      process.exit(0);
      break;
    default:
      throw new Error(`unknown command ${JSON.stringify(command.do)}`);
  }
}

const lines = createInterface({ input: process.stdin });
lines.on("line", (line) => {
  if (!line.trim()) return;
  let command;
  try {
    command = JSON.parse(line);
    const result = run(command);
    emit("ack", { do: command.do, name: command.name ?? "main", result: result === undefined ? null : result });
  } catch (error) {
    emit("error", { message: String(error?.stack ?? error), command: command ?? line });
  }
});
lines.on("close", () => {
  consumer.disconnect();
  process.exit(0);
});

emit("ready", {
  url,
  origin: origin ?? null,
  node: process.version,
  staleThreshold: ActionCable.ConnectionMonitor.staleThreshold,
});
