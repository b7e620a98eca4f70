"""Annotation: lesions, mask versions, effort records and the audit trail."""
