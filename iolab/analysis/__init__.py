"""Analysis: pure functions of result records (statistics, verdicts, comparisons, advice).

Imports only iolab.results and iolab.errors: no measure, cli, report, demo, click or rich,
so it works on any saved results file, a user's app included.
"""
