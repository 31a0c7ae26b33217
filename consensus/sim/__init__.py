"""Deterministic network simulator for the BFT state machine (`python -m consensus.sim`).

Public surface: `Scenario`, `NetworkConfig`, `Crash`, `build_random_scenario`,
`Simulation`, `run_scenario`, `SimResult`, and the replicated-application seam
`ApplicationAPI` with the `LedgerApp` it ships.
"""
from consensus.sim.app import ApplicationAPI, InvalidBlock, InvalidProposerApp, LedgerApp
from consensus.sim.scenario import (
    FAULT_KINDS,
    INVALID,
    MIXED,
    SILENT,
    TWINS,
    Crash,
    NetworkConfig,
    Scenario,
    build_random_scenario,
)
from consensus.sim.simulation import SimResult, Simulation, run_scenario

__all__ = [
    "ApplicationAPI",
    "InvalidBlock",
    "InvalidProposerApp",
    "LedgerApp",
    "FAULT_KINDS",
    "INVALID",
    "MIXED",
    "SILENT",
    "TWINS",
    "Crash",
    "NetworkConfig",
    "Scenario",
    "build_random_scenario",
    "SimResult",
    "Simulation",
    "run_scenario",
]
