/// <reference types="vitest/config" />
import { defineConfig } from 'vite';

// Build contract with Django:
//  - Django serves dist/index.html at "/" (plain file read, behind login).
//  - Django serves everything under dist/ at /static/ (dist/assets/x.js -> /static/assets/x.js).
// Cornerstone3D (the workspace viewer) is loaded as a separate chunk by a dynamic import in
// pages/workspace.ts; see shared/docs/VIEWER.md for the worker / optimizeDeps settings below.
const CODECS = ['charls', 'libjpeg-turbo-8bit', 'openjpeg', 'openjph'].map(
  (codec) => `@cornerstonejs/dicom-image-loader > @cornerstonejs/codec-${codec}/decodewasmjs`,
);

export default defineConfig({
  base: '/static/',
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    manifest: false,
    chunkSizeWarningLimit: 6000,
  },
  worker: { format: 'es' },
  optimizeDeps: {
    exclude: ['@cornerstonejs/dicom-image-loader'],
    include: [
      'dicom-parser',
      '@cornerstonejs/core',
      '@cornerstonejs/tools',
      ...CODECS,
    ],
  },
  server: {
    // `npm run dev`: forward API and auth calls to a local Django (runserver on :8000).
    proxy: {
      '/api': 'http://127.0.0.1:8000',
      '/accounts': 'http://127.0.0.1:8000',
      '/dicomweb': 'http://127.0.0.1:8000',
    },
  },
  test: {
    environment: 'node',
    include: ['src/**/*.test.ts'],
  },
});
