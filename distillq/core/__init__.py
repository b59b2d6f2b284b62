"""The jitted core: pure functions over explicit state pytrees (no disk, no console, no
processes)."""
