"""The command line: one module per command, and main.py, the click group that maps errors once.

Only this layer prints `error: …` and chooses exit codes. It may import every layer.
"""
