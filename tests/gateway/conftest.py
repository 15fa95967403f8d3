"""The gateway's namespace topology as a fixture: clients ↔ bridge in gw ↔ wan."""

from __future__ import annotations

import pytest

from tests.conftest import require_root, require_tool
from tests.gateway.netns import Topology


@pytest.fixture
def topo():
    """Two clients; removed (processes by PID, then namespaces) even when a test fails."""
    require_tool("nft")
    require_tool("ip")
    require_root()
    t = Topology()
    try:
        yield t.build(n_clients=2)
    finally:
        t.close()
