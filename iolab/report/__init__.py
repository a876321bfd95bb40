"""Reports: the tables as data and their exporters (terminal, Markdown, HTML, charts).

Imports iolab.analysis and iolab.results; never iolab.measure or iolab.cli.
"""
