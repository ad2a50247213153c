// Ask GptChatChannel one question with the plain @rails/actioncable client, under Node, and
// print the answer as it streams.
//
//   cd examples && npm ci && node node_client.mjs [ws://127.0.0.1:8000/cable] ["Your question"]
import { WebSocket as NodeWebSocket } from "ws";

const url = process.argv[2] ?? "ws://127.0.0.1:8000/cable";
const question = process.argv[3] ?? "Hello! Who are you?";
const origin = url.replace(/^ws/, "http").replace(/^(\w+:\/\/[^/]+).*$/, "$1");

// What @rails/actioncable expects from a browser: a WebSocket (sending Origin, as browsers
// do), window event listeners and document.visibilityState.
class BrowserLikeWebSocket extends NodeWebSocket {
  constructor(address, protocols) {
    super(address, protocols, { origin });
  }
}
globalThis.WebSocket = BrowserLikeWebSocket;
globalThis.addEventListener ??= () => {};
globalThis.removeEventListener ??= () => {};
globalThis.document ??= { visibilityState: "visible" };
const imported = await import("@rails/actioncable");
const ActionCable = imported.default ?? imported;

// The demo server identifies a connection by ?name=; the room must be that name.
const user = `node-${process.pid}`;
const consumer = ActionCable.createConsumer(`${url}?name=${user}`);

function finish(code) {
  consumer.disconnect();
  process.exit(code);
}

consumer.subscriptions.create(
  { channel: "GptChatChannel", room: user },
  {
    connected() {
      this.perform("send_message", { user_content: question, user_id: user });
    },
    rejected() {
      console.error("subscription rejected");
      finish(1);
    },
    received(data) {
      process.stdout.write(data.content);
      if (data.event === "error") console.error(`\nerror (${data.error.category}): ${data.error.message}`);
      if (["done", "error", "stopped"].includes(data.event)) {
        process.stdout.write("\n");
        finish(data.event === "done" ? 0 : 1);
      }
    },
  },
);
