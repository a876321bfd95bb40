"""``iolab micro``: what a script's or a program's output costs, measured per output setting.

Modules: ``target`` (what to run, the settings), ``spawn`` and ``sinks`` (one run and where its stdout
goes), ``printoff`` (print disabled or counted without editing the file), ``runner`` (the loop),
``results`` (records, JSON ``iolab.micro/1``), ``derive`` and ``explain`` (per-call costs and why),
``report`` (terminal and Markdown), ``cli`` (the command).
"""
