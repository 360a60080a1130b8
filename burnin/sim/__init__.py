"""The simulator: fleets that do not exist, run through the real code path.

``burnin run --simulate SCENARIO.toml`` (burnin/sim/run.py) reads a scenario
(burnin/sim/scenario.py), models each card (burnin/sim/model.py) and plugs the model in behind
the protocols the real path already has: the telemetry backend (burnin/sim/telemetry.py), the
device seam (burnin/sim/seam.py) and the run's timeline (burnin/sim/clock.py). Production
modules never import this package.
"""
