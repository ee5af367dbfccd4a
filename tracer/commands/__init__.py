"""What the commands run: argument types, trace runs and training-step runs."""
