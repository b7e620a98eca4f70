import { describe, expect, it } from 'vitest';
import { dicomDate, isVolumeFile, planImport } from './import';

describe('planImport', () => {
  it('sends image volumes and videos one by one and the rest to the DICOM import', () => {
    const files = [
      { name: 'CT/IM0001', size: 10 },
      { name: 'scan.NII.GZ', size: 100 },
      { name: 'study.zip', size: 1000 },
      { name: 'echo.mp4', size: 5 },
      { name: 'slice.dcm', size: 20 },
    ];
    const plan = planImport(files);
    expect(plan.dicom.map((f) => f.name)).toEqual(['CT/IM0001', 'study.zip', 'slice.dcm']);
    expect(plan.volumes.map((f) => f.name)).toEqual(['scan.NII.GZ', 'echo.mp4']);
    expect(plan.dicomBytes).toBe(1030);
    expect(plan.volumeBytes).toBe(105);
  });

  it('knows the volume suffixes the server reads', () => {
    expect(['a.nii', 'a.nrrd', 'a.mha', 'a.avi', 'a.mov', 'polyp.JPG', 'a.png'].every(isVolumeFile)).toBe(true);
    expect(isVolumeFile('a.gz')).toBe(false);
    expect(isVolumeFile('nii')).toBe(false);
  });

  it('formats DICOM dates', () => {
    expect(dicomDate('20240131')).toBe('2024-01-31');
    expect(dicomDate('2024')).toBe('2024');
    expect(dicomDate(undefined)).toBe('—');
  });
});
