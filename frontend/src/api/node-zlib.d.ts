// The part of Node's zlib the tests use as an independent gzip reference (vitest runs in
// Node; the project has no @types/node). Never imported by application code.
declare module 'node:zlib' {
  export function gzipSync(data: Uint8Array, options?: { level?: number }): Uint8Array;
  export function gunzipSync(data: Uint8Array): Uint8Array;
}
