"""The host life of a run: its directory on disk, its lifecycle, signals, devices and processes."""
