"""``iolab micro``'s analysis: per-call costs and the closing explanation, from the records.
"""
