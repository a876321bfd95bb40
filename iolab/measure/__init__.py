"""Measurement: targets, servers, limits, sinks, the /proc probe, drivers, the experiment loop.

Imports iolab.analysis, iolab.results, iolab.errors and the demo's scenario names;
never iolab.cli, iolab.report, click or rich (progress goes out through Reporter callbacks).
"""
