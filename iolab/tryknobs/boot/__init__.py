"""Only here so that installers ship this folder (a package): the server imports ``sitecustomize`` from it
as a top-level module, with the folder itself on PYTHONPATH, never as ``iolab.tryknobs.boot``."""
