"""The NumPy engine: ops and their backward ops, the text forward, the recorder, the training step, interventions, long-context maths."""
