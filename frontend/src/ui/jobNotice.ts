// A worker job's notice (what happened to it short of failing) as one short visible line.

/**
 * "Worker lost; re-queued (attempt 2 of 3)" for the server's "worker lost: gpu0 (process 42)
 * stopped during attempt 1 of 3 (...); re-queued (attempt 2 of 3)"; any other notice as it is;
 * '' without one. The full notice belongs in a tooltip.
 */
export function noticeLine(notice: string): string {
  const text = notice.trim();
  if (!text) return '';
  const requeued = text.lastIndexOf('re-queued');
  if (text.startsWith('worker lost') && requeued >= 0) return `Worker lost; ${text.slice(requeued)}`;
  return text.charAt(0).toUpperCase() + text.slice(1);
}

/** " (attempt 2 of 3)" while a job runs again; '' on its first run. */
export function attemptSuffix(attempts: number, max = 3): string {
  return attempts > 1 ? ` (attempt ${attempts} of ${max})` : '';
}
