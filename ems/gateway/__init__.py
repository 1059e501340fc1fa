"""The gateway: one per hall, on its own small machine.

The control cycle (:mod:`.daemon`), its frozen process image (:mod:`.snapshot`),
the mode machine and its store, the guard and the reserve policy, the plan
(:mod:`.planning`), the uplink (:mod:`.link`) and the one function that
composes a gateway from its configuration (:mod:`.compose`).
"""
