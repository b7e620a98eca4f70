import { describe, expect, it } from 'vitest';
import { elapsed, formatBytes, formatPercentOf, fraction, uploadText } from './progress';

describe('progress text', () => {
  it('computes a clamped fraction, null without a total', () => {
    expect(fraction(5, 10)).toBe(0.5);
    expect(fraction(12, 10)).toBe(1);
    expect(fraction(3, 0)).toBeNull();
    expect(formatPercentOf(999, 1000)).toBe('99%');
    expect(formatPercentOf(1, 0)).toBe('');
  });

  it('formats bytes', () => {
    expect(formatBytes(512)).toBe('512 B');
    expect(formatBytes(1536)).toBe('1.5 KB');
    expect(formatBytes(2 * 1024 ** 3)).toBe('2.0 GB');
    expect(formatBytes(250 * 1024 ** 2)).toBe('250 MB');
  });

  it('says how much of an upload is sent', () => {
    expect(uploadText(0, 0)).toBe('');
    expect(uploadText(2048, 0)).toBe('2.0 KB sent');
    expect(uploadText(1024 ** 2, 4 * 1024 ** 2)).toBe('1.0 MB of 4.0 MB (25%)');
  });

  it('formats elapsed time', () => {
    expect(elapsed(0, 65_400)).toBe('1:05');
    expect(elapsed(1000, 0)).toBe('0:00');
  });
});
