"""iolab: measure, explain and cut what I/O costs a Python program or web service."""

__version__ = "0.1.0"
