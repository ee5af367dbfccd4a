"""Classroom safety: resource budgets, config limits, hostile files, serving a class."""
