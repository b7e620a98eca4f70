// Test helpers for code that calls `fetch` (mocked at the HTTP edge only): a JSON response and
// the last request the mock received. Imported by *.test.ts files only.

import type { Mock } from 'vitest';

export function json(status: number, body: unknown): Response {
  return new Response(JSON.stringify(body), { status, headers: { 'Content-Type': 'application/json' } });
}

export function lastCall(fetchMock: Mock<typeof fetch>): { url: string; init: RequestInit; headers: Record<string, string> } {
  const call = fetchMock.mock.calls.at(-1);
  if (!call) throw new Error('fetch was not called');
  const [url, init = {}] = call;
  return { url: String(url), init, headers: (init.headers ?? {}) as Record<string, string> };
}
