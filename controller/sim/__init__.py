"""The simulated site: soil, chambers and hardware speaking the real wire protocols.

Shipped in the package so that ``chamberd demo``, ``chamberd sim``, the documentation and
the tests all run the same simulator.
"""

from .hardware import SimHardware, start_hardware
from .site import ClosureTruth, Faults, SimulatedSite

__all__ = ["ClosureTruth", "Faults", "SimHardware", "SimulatedSite", "start_hardware"]
