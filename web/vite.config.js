import { readFileSync } from 'node:fs'
import { defineConfig } from 'vite'
import vue from '@vitejs/plugin-vue'

// A demo- Firebase project exists only in the emulators, so a build for one
// talks to the Auth emulator unless told otherwise: FIREBASE_AUTH_EMULATOR_HOST
// when set (as scripts/emulators.sh exports it), else AUTH_EMULATOR_PORT, else
// the port in the repo's firebase.json (emulators.auth.port), on 127.0.0.1.
function defaultAuthEmulator() {
  const project = process.env.VITE_FIREBASE_PROJECT_ID || 'demo-paymeter'
  if (process.env.VITE_AUTH_EMULATOR_URL !== undefined || !project.startsWith('demo-')) return
  if (process.env.FIREBASE_AUTH_EMULATOR_HOST) {
    process.env.VITE_AUTH_EMULATOR_URL = `http://${process.env.FIREBASE_AUTH_EMULATOR_HOST}`
    return
  }
  let port = Number(process.env.AUTH_EMULATOR_PORT) || 0
  if (port) {
    process.env.VITE_AUTH_EMULATOR_URL = `http://127.0.0.1:${port}`
    return
  }
  port = 9099
  try {
    const fb = JSON.parse(readFileSync(new URL('../firebase.json', import.meta.url), 'utf8'))
    port = fb?.emulators?.auth?.port || port
  } catch {
    // no firebase.json: the emulator's default port
  }
  process.env.VITE_AUTH_EMULATOR_URL = `http://127.0.0.1:${port}`
}
defaultAuthEmulator()

const devApi = process.env.VITE_DEV_API || 'http://127.0.0.1:8000'

export default defineConfig({
  plugins: [vue()],
  build: {
    outDir: process.env.PAYMETER_WEB_OUT || 'dist',
    emptyOutDir: true,
    sourcemap: false,
  },
  server: {
    // `npm run dev` (hot reload) forwards the API and the stand-in to a running dev server.
    proxy: { '/api': devApi, '/dev': devApi },
  },
  test: {
    include: ['src/**/*.test.js'],
    environment: 'node',
  },
})
