"""Local HTTP simulators of the provider APIs, for the demo, the tests and the benchmarks.

::

    from failover_cli.sim import Behavior, Simulator, refused_url

    with Simulator("anthropic", Behavior(statuses=[529, 200]), api_key="sk-test") as sim:
        ...  # point an adapter at sim.base_url

Each simulator speaks one API's wire format (``anthropic``, ``openai``, ``ollama``,
``gemini``) on 127.0.0.1 and fails on demand (see :class:`Behavior`). From a shell:
``python -m failover_cli.sim --kind anthropic --port 8001 --fault truncate``.
"""

from __future__ import annotations

from .behavior import FAULTS, Behavior, Fault
from .simulator import Simulator, refused_url
from .wire import RecordedRequest

__all__ = ["FAULTS", "Behavior", "Fault", "RecordedRequest", "Simulator", "refused_url"]
