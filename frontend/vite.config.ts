/// <reference types="vitest/config" />
import { defineConfig } from 'vite';

// Build contract with Django:
//  - Django serves dist/index.html at "/" (plain file read, behind login).
//  - Django serves everything under dist/ at /static/ (dist/assets/x.js -> /static/assets/x.js).
export default defineConfig({
  base: '/static/',
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    manifest: false,
  },
  server: {
    // `npm run dev`: forward API and auth calls to a local Django (runserver on :8000).
    proxy: {
      '/api': 'http://127.0.0.1:8000',
      '/accounts': 'http://127.0.0.1:8000',
    },
  },
  test: {
    environment: 'node',
    include: ['src/**/*.test.ts'],
  },
});
