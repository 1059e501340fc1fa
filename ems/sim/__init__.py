"""The simulation: the whole fleet in one process for the demo and drills.

Simulators, a broker and the central service around N gateways composed by
the same function as in production (:func:`ems.gateway.compose.build_gateway`).
Only the CLI imports this package.
"""
