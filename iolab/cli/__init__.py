"""The command line: main.py (the click group; the one place that maps errors to `error: …` and an exit
code; the list of commands) and one module per command: run, compare, report, scenarios, micro, sweep.

Only this layer prints `error: …` and chooses exit codes. It may import every layer.
"""
