// Low-level JSON client: same-origin session auth, Django CSRF, typed errors.

export const CSRF_COOKIE = 'csrftoken';
export const CSRF_HEADER = 'X-CSRFToken';

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

export type FieldErrors = Record<string, string[]>;

/** Any non-2xx answer (or a network failure, status 0) from the API. */
export class ApiError extends Error {
  readonly status: number;
  readonly fields: FieldErrors;
  /** The parsed response body (e.g. an import report sent with a 400). */
  readonly body: unknown;

  constructor(status: number, message: string, fields: FieldErrors = {}, body: unknown = null) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.fields = fields;
    this.body = body;
  }

  get isAuthError(): boolean {
    return this.status === 401 || this.status === 403;
  }
}

/** Reads a cookie from `document.cookie`; null when absent or outside a browser. */
export function readCookie(name: string): string | null {
  if (typeof document === 'undefined') return null;
  for (const part of document.cookie.split(';')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    if (part.slice(0, eq).trim() === name) {
      const raw = part.slice(eq + 1).trim();
      try {
        return decodeURIComponent(raw);
      } catch {
        return raw;
      }
    }
  }
  return null;
}

export function csrfToken(): string | null {
  return readCookie(CSRF_COOKIE);
}

function flattenFields(value: unknown, prefix: string, out: FieldErrors): void {
  if (typeof value === 'string') {
    (out[prefix] ??= []).push(value);
  } else if (Array.isArray(value)) {
    value.forEach((item, i) => {
      // A list of strings belongs to the field itself; nested objects get an index.
      flattenFields(item, typeof item === 'string' ? prefix : `${prefix}.${i}`, out);
    });
  } else if (value !== null && typeof value === 'object') {
    for (const [key, inner] of Object.entries(value)) {
      flattenFields(inner, prefix ? `${prefix}.${key}` : key, out);
    }
  }
}

function humanField(name: string): string {
  return name.replace(/_/g, ' ');
}

/**
 * Turns a DRF error body into an ApiError.
 * Handles `{detail}`, `{field: [msgs]}`, `{non_field_errors: [...]}` and bare lists.
 */
export function parseApiError(status: number, body: unknown, statusText = ''): ApiError {
  const fallback = `Request failed (${status}${statusText ? ` ${statusText}` : ''})`;

  if (body !== null && typeof body === 'object' && !Array.isArray(body)) {
    const { detail, ...rest } = body as Record<string, unknown>;
    const fields: FieldErrors = {};
    flattenFields(typeof detail === 'string' ? rest : body, '', fields);
    // Domain errors send {detail, field: [msgs]}: detail is the message, the fields still count.
    if (typeof detail === 'string') return new ApiError(status, detail, fields, body);
    const parts = Object.entries(fields).map(([field, msgs]) =>
      field === 'non_field_errors' || field === ''
        ? msgs.join(' ')
        : `${humanField(field)}: ${msgs.join(' ')}`,
    );
    return new ApiError(status, parts.length > 0 ? parts.join(' ') : fallback, fields, body);
  }

  if (Array.isArray(body)) {
    const fields: FieldErrors = {};
    flattenFields(body, 'non_field_errors', fields);
    const msgs = fields.non_field_errors ?? [];
    return new ApiError(status, msgs.length > 0 ? msgs.join(' ') : fallback, fields, body);
  }

  if (typeof body === 'string' && body.trim() !== '' && body.length < 300) {
    return new ApiError(status, body.trim(), {}, body);
  }
  return new ApiError(status, fallback, {}, body);
}

async function readBody(response: Response): Promise<unknown> {
  const text = await response.text();
  if (text === '') return null;
  const type = response.headers.get('Content-Type') ?? '';
  if (type.includes('json')) {
    try {
      return JSON.parse(text) as unknown;
    } catch {
      return text;
    }
  }
  return text;
}

export interface RequestOptions {
  /** JSON-encoded, except a FormData (multipart: the browser sets the boundary). */
  body?: unknown;
  signal?: AbortSignal;
  /** Let the request outlive the page (fetch keepalive: effort sent on pagehide). */
  keepalive?: boolean;
}

/**
 * Sends one request and returns the parsed JSON body.
 * A 204 (or any empty 2xx body) resolves to `null`: callers that expect it
 * say so in `T` (e.g. `request<Task | null>`).
 */
export async function request<T>(
  method: string,
  url: string,
  { body, signal, keepalive }: RequestOptions = {},
): Promise<T> {
  const response = await send(method, url, { body, signal, keepalive }, 'application/json');
  if (response.status === 204) return null as T;
  const data = await readBody(response);
  if (!response.ok) throw parseApiError(response.status, data, response.statusText);
  return data as T;
}

function isFormData(body: unknown): body is FormData {
  return typeof FormData !== 'undefined' && body instanceof FormData;
}

/** fetch with the session's credentials and CSRF token; network failures become ApiError(0). */
async function send(
  method: string,
  url: string,
  { body, signal, keepalive }: RequestOptions,
  accept: string,
): Promise<Response> {
  const upper = method.toUpperCase();
  const headers: Record<string, string> = { Accept: accept };
  const multipart = isFormData(body);
  if (body !== undefined && !multipart) headers['Content-Type'] = 'application/json';
  if (!SAFE_METHODS.has(upper)) {
    const token = csrfToken();
    if (token) headers[CSRF_HEADER] = token;
  }
  const init: RequestInit = {
    method: upper,
    headers,
    credentials: 'same-origin',
    body: body === undefined ? undefined : multipart ? body : JSON.stringify(body),
    signal,
  };
  if (keepalive) init.keepalive = true;
  try {
    return await fetch(url, init);
  } catch (err) {
    if (err instanceof DOMException && err.name === 'AbortError') throw err;
    throw new ApiError(0, 'Could not reach the server. Check your connection and try again.');
  }
}

/** A binary answer: its bytes and headers. Errors are parsed like JSON ones. */
export interface BinaryResponse {
  bytes: Uint8Array<ArrayBuffer>;
  headers: Headers;
}

export async function requestBinary(
  method: string,
  url: string,
  opts: RequestOptions = {},
): Promise<BinaryResponse> {
  const response = await send(method, url, opts, 'application/octet-stream, application/json');
  if (!response.ok) {
    throw parseApiError(response.status, await readBody(response), response.statusText);
  }
  return { bytes: new Uint8Array(await response.arrayBuffer()), headers: response.headers };
}

/** DRF builds absolute `next` links; keep only path + query so we stay on this origin. */
export function sameOriginPath(link: string): string {
  const base = typeof location === 'undefined' ? 'http://localhost' : location.href;
  const url = new URL(link, base);
  return url.pathname + url.search;
}
