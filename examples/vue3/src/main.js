import { createApp } from 'vue'
import ActionCableVue from 'actioncable-vue'
import App from './App.vue'

createApp(App)
  .use(ActionCableVue, {
    debug: true,
    debugLevel: 'error',
    connectionUrl: `wss://${location.host}/cable`,
    connectImmediately: true,
  })
  .mount('#app')
