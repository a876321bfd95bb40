"""``iolab sweep``: the seed's closing argument measured. Async logging is not always better; it depends
on how much of a request is CPU work and how long the log write blocks.

The sweep runs chosen demo strategies at every point of a grid, CPU work per request × sink latency per
write (the demo app's two knobs), and says per cell which strategy wins and by how much, with a 95 %
interval: a JSON document (``iolab.sweep/1``), a terminal table, a heat map and a reading derived from
the measured numbers.

    from iolab.sweep import SweepSpec, Sweep, grid, render_heatmap_svg
    result = Sweep(SweepSpec(("sync-handler", "queue-async"), (0, 1000), (0.0, 5.0), Path("s.json"))).run()
    svg = render_heatmap_svg(grid(result))
"""

from iolab.sweep.analysis import Grid, GridCell, cell_label, grid, reading
from iolab.sweep.model import SCHEMA, Cell, StrategyValues, SweepResult, dumps, load, loads, save
from iolab.sweep.render import render_heatmap_svg, render_html, values_table, winner_table
from iolab.sweep.run import Sweep, SweepSpec, expected_rate, plan_requests

__all__ = [
    "SCHEMA", "Cell", "Grid", "GridCell", "StrategyValues", "Sweep", "SweepResult", "SweepSpec", "cell_label",
    "dumps", "expected_rate", "grid", "load", "loads", "plan_requests", "reading", "render_heatmap_svg",
    "render_html", "save", "values_table", "winner_table",
]
