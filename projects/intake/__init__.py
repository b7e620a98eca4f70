"""Intake: studies, volumes and labels brought into a project (files, PACS, STOW-RS)."""
