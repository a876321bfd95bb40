"""What the caller knows about its scenarios, as plain data: which pairs are controls, what each adds.

The analysis (verdicts, attribution, stdout notes) reads nothing of the demo: the caller passes a
:class:`ScenarioKnowledge`. The demo supplies the fields of its own (``ScenarioKnowledge(**
iolab.demo.scenarios.knowledge())``, built by the CLI and the sweep); a user's app supplies none
(:data:`NONE`), and its scenarios are compared with the first one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ScenarioKnowledge:
    # Each scenario → the control it differs from only by its logging code.
    controls: Mapping[str, str] = field(default_factory=dict)
    # What each scenario adds to its control ("the handler-less logger.info call"), for sentences.
    log_code: Mapping[str, str] = field(default_factory=dict)
    # The two controls, compared with each other first, and what tells them apart, as two phrases
    # ("`def`", "`async def`"): attribution splits a seed pair's difference into that and the logging code.
    control_pair: tuple[str, str] | None = None
    control_pair_differs_by: tuple[str, str] = ("", "")
    # Head-to-head pairs: the seed's comparisons (the `def` scenario first) and catalog scenarios
    # against their closest rival.
    seed_pairs: tuple[tuple[str, str], ...] = ()
    peer_pairs: tuple[tuple[str, str], ...] = ()
    # The scenarios meant to write a line per request, and why one may write nothing, when known.
    expects_output: frozenset[str] = frozenset()
    no_output_reasons: Mapping[str, str] = field(default_factory=dict)


# A user's app: nothing known about its scenarios.
NONE = ScenarioKnowledge()
