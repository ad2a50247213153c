// A Vue 2 frontend as it was written for Rails: Vue.use(ActionCableVue), a `channels` option,
// $cable.subscribe in mounted, $cable.perform to send. Only the URL points at cable-server.
import Vue from "vue";
import ActionCableVue from "actioncable-vue";

const userId = localStorage.getItem("cable-vue2-user") || `vue2-${Math.random().toString(36).slice(2, 10)}`;
localStorage.setItem("cable-vue2-user", userId);
const scheme = location.protocol === "https:" ? "wss:" : "ws:";

Vue.use(ActionCableVue, {
  debug: true,
  debugLevel: "error",
  connectionUrl: `${scheme}//${location.host}/cable?name=${encodeURIComponent(userId)}`,
  connectImmediately: true,
});

new Vue({
  el: "#app",
  data: { userId, state: "connecting", draft: "", answer: "" },
  channels: {
    GptChatChannel: {
      connected() { this.state = "live"; },
      rejected() { this.state = "rejected"; },
      received(data) { this.answer += data.content; },
      disconnected() { this.state = "reconnecting"; },
    },
  },
  mounted() {
    this.$cable.subscribe({ channel: "GptChatChannel", room: this.userId });
  },
  methods: {
    send() {
      this.answer = "";
      this.$cable.perform({
        channel: "GptChatChannel",
        action: "send_message",
        data: { user_content: this.draft, system_content: "You are helpful.", user_id: this.userId },
      });
      this.draft = "";
    },
  },
  template: `
    <main>
      <h1>Vue 2 + actioncable-vue 2</h1>
      <p>connection: <b data-role="state">{{ state }}</b></p>
      <form @submit.prevent="send">
        <input v-model="draft" data-role="draft" placeholder="Ask something" />
        <button>Send</button>
      </form>
      <p data-role="answer" style="white-space: pre-wrap">{{ answer }}</p>
    </main>`,
});
