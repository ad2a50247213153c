import Vue from 'vue'
import ActionCableVue from 'actioncable-vue'
import App from './App.vue'

Vue.use(ActionCableVue, {
  debug: true,
  debugLevel: 'error',
  connectionUrl: `wss://${location.host}/cable`,
  connectImmediately: true,
})

new Vue({
  render: (h) => h(App),
}).$mount('#app')
