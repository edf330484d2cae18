import { defineConfig } from 'vite'
import vue from '@vitejs/plugin-vue'

export default defineConfig({
  plugins: [vue()],
  build: {
    outDir: process.env.PAYMETER_WEB_OUT || 'dist',
    emptyOutDir: true,
    sourcemap: false,
  },
  server: {
    // `npm run dev` talks to a running dev server for /api (VITE_DEV_API, default :8080).
    proxy: { '/api': process.env.VITE_DEV_API || 'http://127.0.0.1:8080', '/dev': process.env.VITE_DEV_API || 'http://127.0.0.1:8080' },
  },
  test: {
    include: ['src/**/*.test.js'],
    environment: 'node',
  },
})
