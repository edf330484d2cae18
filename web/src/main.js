import { createApp } from 'vue'
import App from './App.vue'
import { applySignInRules, router } from './router.js'
import { startSession } from './stores/session.js'
import './style.css'

startSession(applySignInRules)
createApp(App).use(router).mount('#app')
