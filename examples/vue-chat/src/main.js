import { createApp } from "vue";
import ActionCableVue from "actioncable-vue";
import ChatApp from "./ChatApp.vue";
import { userId } from "./user.js";

// ws: or wss: like the page, same host, /cable: works directly and behind nginx with TLS.
// The demo server identifies the connection by ?name= (a real app would use its session cookie).
const scheme = location.protocol === "https:" ? "wss:" : "ws:";
const connectionUrl = `${scheme}//${location.host}/cable?name=${encodeURIComponent(userId)}`;

createApp(ChatApp)
  .use(ActionCableVue, { connectionUrl, connectImmediately: true, debug: true, debugLevel: "error" })
  .mount("#app");
