"""``iolab micro``'s measuring parts: what to run, one run, where its output goes, the loop.
"""
