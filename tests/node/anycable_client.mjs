// Drives the unmodified npm @anycable/web client under Node, with protocol actioncable-v1-ext-json,
// for tests/test_anycable_ext.py.
//
// Usage: node anycable_client.mjs <ws-url> <origin> <room>
// stdout: one JSON object per line: {"event":"connect"|"disconnect"|"message"|"history"|..., ...}
// stdin: closing it (or the line "exit") ends the process.
import { createInterface } from "node:readline";
import { WebSocket as NodeWebSocket } from "ws";

const [url, origin, room] = process.argv.slice(2);
const emit = (event, fields = {}) => process.stdout.write(JSON.stringify({ event, ...fields }) + "\n");

class BrowserLikeWebSocket extends NodeWebSocket {
  constructor(address, protocols) {
    super(address, protocols, { origin });
  }
}
// What @anycable/web reads from a browser.
globalThis.WebSocket = BrowserLikeWebSocket;
globalThis.addEventListener ??= () => {};
globalThis.removeEventListener ??= () => {};
globalThis.document ??= { visibilityState: "visible", addEventListener() {}, removeEventListener() {} };

const { createCable } = await import("@anycable/web");
const cable = createCable(url, { protocol: "actioncable-v1-ext-json", websocketImplementation: BrowserLikeWebSocket, logLevel: "error" });
cable.on("connect", (event) => emit("connect", { reconnect: event.reconnect, restored: event.restored }));
cable.on("disconnect", (event) => emit("disconnect", { reason: event.reason }));
cable.on("info", (event) => emit("info", { type: event.type, data: event.data ?? null }));

const channel = cable.subscribeTo("EchoChannel", { room });
channel.on("message", (data, meta) => emit("message", { data, meta: meta ?? null }));
channel.on("connect", () => emit("subscribed"));

createInterface({ input: process.stdin }).on("line", (line) => {
  if (line.trim() === "exit") process.exit(0);
}).on("close", () => process.exit(0));
