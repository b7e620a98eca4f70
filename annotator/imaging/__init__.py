"""Imaging: DICOM reading and writing, image files, volumes, pseudonyms, DICOMweb."""
