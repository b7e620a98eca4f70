import { describe, expect, it } from 'vitest';
import type { TrainingJob } from '../api';
import { backendLabel, exportUrl, metricSummary, roundsSpan, trainingText } from './training';

const job: TrainingJob = {
  id: 4, project: 'p', round: 1, state: 'queued', progress: 0, progress_done: 0, progress_total: 0,
  error: '', notice: '', attempts: 0, worker: '', heartbeat_at: null, result: null, created: '2026-11-27T10:00:00Z',
  started_at: null, finished_at: null,
};

describe('model versions', () => {
  it('names the backends', () => {
    expect(backendLabel('inference.engine.medsam2.MedSAM2Backend')).toBe('MedSAM2');
    expect(backendLabel('inference.engine.learned.LearnedBackend')).toBe('Learned (default)');
    expect(backendLabel('somewhere.else.CustomBackend')).toBe('CustomBackend');
  });

  it('shows the numeric Dice, loss and case figures only', () => {
    expect(metricSummary({ validation_dice: 0.81234, cases: 12, seconds: 3.2, note: 'dice' })).toBe('validation dice 0.812 · cases 12');
    expect(metricSummary({})).toBe('');
  });

  it('leads with the held-out Dice against the model it replaces', () => {
    const metrics = { cases: 8, validation: { dice_mean: 0.8123, cases: 2 }, validation_before: { dice_mean: 0.79 } };
    expect(metricSummary(metrics)).toBe('validation Dice 0.812 (before 0.790) · cases 8');
    expect(metricSummary({ validation: { dice_mean: null, note: 'no validation cases' } })).toBe('');
    expect(metricSummary({ validation: { dice_mean: 0.5 } })).toBe('validation Dice 0.500');
  });

  it('says what each training state means', () => {
    expect(trainingText(job)).toMatch(/train queue/);
    const lost = 'worker lost: gpu0 (process 9) stopped during attempt 1 of 3 (...); re-queued (attempt 2 of 3)';
    expect(trainingText({ ...job, notice: lost, attempts: 1 }))
      .toBe('Worker lost; re-queued (attempt 2 of 3): a training worker will pick it up.');
    expect(trainingText({ ...job, state: 'running', notice: lost, attempts: 2, progress_done: 1, progress_total: 4 }))
      .toBe('Training (attempt 2 of 3): 1 of 4 steps');
    expect(trainingText({ ...job, state: 'running', progress_done: 3, progress_total: 10 })).toBe('Training: 3 of 10 steps');
    expect(trainingText({ ...job, state: 'failed', error: 'no training cases' })).toBe('Training failed: no training cases');
    expect(trainingText({ ...job, state: 'failed' })).toMatch(/no reason recorded/);
    expect(trainingText({ ...job, state: 'succeeded', result: null })).toMatch(/Trained a new model/);
  });
});

describe('round export', () => {
  it('asks for the chosen formats', () => {
    expect(exportUrl('liver trial', 2, ['nifti', 'dicom-seg'])).toBe('/api/projects/liver%20trial/rounds/2/export/files/?formats=nifti,dicom-seg');
  });
});

describe('training', () => {
  it('names the rounds it trains on', () => {
    expect(roundsSpan(0)).toBe('round 0');
    expect(roundsSpan(2)).toBe('rounds 0–2');
  });
});
