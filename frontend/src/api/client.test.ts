import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { json, lastCall } from './fetchMock';
import { ApiError, parseApiError, readCookie, request, sameOriginPath } from './client';
import { getPage, importFromPacs, listTasks, nextTask, reviewTask, searchPacs } from './endpoints';

// Mocks at the HTTP edge only: `fetch` and `document.cookie`.
const fetchMock = vi.fn<typeof fetch>();

beforeEach(() => {
  fetchMock.mockReset();
  vi.stubGlobal('fetch', fetchMock);
  vi.stubGlobal('document', { cookie: 'sessionid=s3cr3t; csrftoken=tok%2Ben; theme=dark' });
});

afterEach(() => {
  vi.unstubAllGlobals();
});

describe('CSRF and credentials', () => {
  it('reads and decodes the csrftoken cookie', () => {
    expect(readCookie('csrftoken')).toBe('tok+en');
    expect(readCookie('missing')).toBeNull();
  });

  it('sends X-CSRFToken, a JSON body and same-origin credentials on POST', async () => {
    fetchMock.mockResolvedValue(json(200, { id: 4, state: 'accepted' }));
    await reviewTask(4, 'accept', 'Looks good');

    const { url, init, headers } = lastCall(fetchMock);
    expect(url).toBe('/api/tasks/4/review/');
    expect(init.method).toBe('POST');
    expect(init.credentials).toBe('same-origin');
    expect(headers['X-CSRFToken']).toBe('tok+en');
    expect(headers['Content-Type']).toBe('application/json');
    expect(JSON.parse(String(init.body))).toEqual({ decision: 'accept', comment: 'Looks good' });
  });

  it.each(['PATCH', 'DELETE', 'put'])('sends X-CSRFToken on %s', async (method) => {
    fetchMock.mockResolvedValue(json(200, {}));
    await request(method, '/api/x/');
    expect(lastCall(fetchMock).headers['X-CSRFToken']).toBe('tok+en');
    expect(lastCall(fetchMock).init.method).toBe(method.toUpperCase());
  });

  it('does not send the CSRF header or a body on GET', async () => {
    fetchMock.mockResolvedValue(json(200, { count: 0, next: null, previous: null, results: [] }));
    await listTasks('liver ct', { mine: true, state: 'submitted' });

    const { url, init, headers } = lastCall(fetchMock);
    expect(url).toBe('/api/projects/liver%20ct/tasks/?mine=1&state=submitted');
    expect(init.method).toBe('GET');
    expect(init.credentials).toBe('same-origin');
    expect(init.body).toBeUndefined();
    expect(headers).not.toHaveProperty('X-CSRFToken');
  });

  it('omits the header when there is no csrftoken cookie', async () => {
    vi.stubGlobal('document', { cookie: 'sessionid=abc' });
    fetchMock.mockResolvedValue(json(200, {}));
    await request('POST', '/api/x/');
    expect(lastCall(fetchMock).headers).not.toHaveProperty('X-CSRFToken');
  });
});

describe('responses', () => {
  it('resolves a 204 to null (empty queue)', async () => {
    fetchMock.mockResolvedValue(new Response(null, { status: 204 }));
    await expect(nextTask('lung')).resolves.toBeNull();
    expect(lastCall(fetchMock).url).toBe('/api/projects/lung/tasks/next/');
    expect(lastCall(fetchMock).headers['X-CSRFToken']).toBe('tok+en');
  });

  it('resolves a 200 with the claimed task', async () => {
    fetchMock.mockResolvedValue(json(200, { id: 12, state: 'assigned' }));
    await expect(nextTask('lung')).resolves.toEqual({ id: 12, state: 'assigned' });
  });

  it('follows absolute DRF pagination links on the same origin', async () => {
    fetchMock.mockResolvedValue(json(200, { count: 3, next: null, previous: null, results: [] }));
    await getPage('http://testserver/api/projects/?page=2');
    expect(lastCall(fetchMock).url).toBe('/api/projects/?page=2');
    expect(sameOriginPath('/api/tasks/?page=3&mine=1')).toBe('/api/tasks/?page=3&mine=1');
  });
});

describe('ApiError', () => {
  it('uses DRF {detail} as the message', async () => {
    fetchMock.mockResolvedValue(json(403, { detail: 'You do not have permission to perform this action.' }));
    const err = await request('POST', '/api/tasks/1/submit/').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect(err).toMatchObject({
      status: 403,
      message: 'You do not have permission to perform this action.',
      fields: {},
      isAuthError: true,
    });
  });

  it('collects field errors and builds a readable message', async () => {
    fetchMock.mockResolvedValue(json(400, {
      comment: ['A comment is required to reject a task.'],
      non_field_errors: ['Task is not submitted.'],
    }));
    const err = await reviewTask(1, 'reject', '').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApiError);
    const apiErr = err as ApiError;
    expect(apiErr.status).toBe(400);
    expect(apiErr.isAuthError).toBe(false);
    expect(apiErr.fields).toEqual({
      comment: ['A comment is required to reject a task.'],
      non_field_errors: ['Task is not submitted.'],
    });
    expect(apiErr.message).toBe('comment: A comment is required to reject a task. Task is not submitted.');
  });

  it('flattens nested field errors', () => {
    const err = parseApiError(400, { box: { 0: ['Must be >= 0.'] }, lesion_class: ['Unknown class.'] });
    expect(err.fields).toEqual({ 'box.0': ['Must be >= 0.'], lesion_class: ['Unknown class.'] });
    expect(err.message).toBe('box.0: Must be >= 0. lesion class: Unknown class.');
  });

  it('handles a bare list body (409 conflict)', () => {
    const err = parseApiError(409, ['Task was already taken.']);
    expect(err).toMatchObject({ status: 409, message: 'Task was already taken.' });
  });

  it('falls back to the status for non-JSON bodies', async () => {
    fetchMock.mockResolvedValue(new Response('<html>boom</html>'.repeat(50), {
      status: 500,
      statusText: 'Internal Server Error',
      headers: { 'Content-Type': 'text/html' },
    }));
    const err = await request('GET', '/api/me/').catch((e: unknown) => e);
    expect(err).toMatchObject({ status: 500, message: 'Request failed (500 Internal Server Error)' });
  });

  it('turns a network failure into status 0', async () => {
    fetchMock.mockRejectedValue(new TypeError('Failed to fetch'));
    const err = await request('GET', '/api/me/').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect((err as ApiError).status).toBe(0);
  });

  it('lets aborts through untouched', async () => {
    fetchMock.mockRejectedValue(new DOMException('The operation was aborted.', 'AbortError'));
    const err = await request('GET', '/api/me/').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DOMException);
    expect((err as DOMException).name).toBe('AbortError');
  });
});

describe('manager endpoints', () => {
  it('keeps the field errors a domain error sends next to its detail', () => {
    const body = { detail: "a project with the slug 'x' exists", slug: ['already taken'] };
    const err = parseApiError(400, body);
    expect(err).toMatchObject({ message: "a project with the slug 'x' exists", fields: { slug: ['already taken'] } });
    expect(err.body).toEqual(body);
  });

  it('filters tasks by round', async () => {
    fetchMock.mockResolvedValue(json(200, { count: 0, next: null, previous: null, results: [] }));
    await listTasks('lung', { state: 'assigned', round: 0 });
    expect(lastCall(fetchMock).url).toBe('/api/projects/lung/tasks/?state=assigned&round=0');
  });

  it('sends only the PACS filters that are filled in', async () => {
    fetchMock.mockResolvedValue(json(200, []));
    await searchPacs('lung', { PatientID: ' 123* ', PatientName: '', StudyDate: '20240101-20240131' });
    expect(lastCall(fetchMock).url).toBe('/api/projects/lung/pacs/studies/?PatientID=123*&StudyDate=20240101-20240131');
  });

  it('resolves a PACS import that imported nothing (400) with its report', async () => {
    const report = { counts: { files: 1, 'files rejected': 1, series: 0 }, series: [], files: [] };
    fetchMock.mockResolvedValue(json(400, report));
    await expect(importFromPacs('lung', ['1.2.3'])).resolves.toEqual(report);
    expect(JSON.parse(String(lastCall(fetchMock).init.body))).toEqual({ study_uids: ['1.2.3'] });
  });

  it('rejects a PACS import that failed before any report', async () => {
    fetchMock.mockResolvedValue(json(400, { detail: 'study 1.2.3 is not on the PACS' }));
    await expect(importFromPacs('lung', ['1.2.3'])).rejects.toMatchObject({ message: 'study 1.2.3 is not on the PACS' });
  });
});
