"""Plotly figures of traces, shared by the explorer and the notebooks (they read records, never recompute the model)."""
