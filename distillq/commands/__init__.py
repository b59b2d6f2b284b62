"""The commands: one module per verb, each a plan for the run lifecycle or a read of runs.

Commands never import each other (import-linter keeps it so); cli.py calls them.
"""
