"""One module per task: how outputs become rows, and how rows are shown."""
