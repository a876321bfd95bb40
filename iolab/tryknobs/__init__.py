"""--try's bootstrap: what runs inside the server under test to apply the knobs (docs/try.md).

Nothing here imports the lab: ``boot/sitecustomize.py`` is put first on the server's PYTHONPATH and loads
``knobs.py`` by file path, so it also works in a server whose interpreter has no iolab installed.
"""
