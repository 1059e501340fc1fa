"""A physics simulator of one community hall (battery, PV, hall load, grid meter).

It serves the hall over Modbus TCP on loopback through the same register
maps a real gateway reads, so the demo, the tests, disaster drills
(accelerated time) and benchmarks all talk to it exactly as to hardware.

Modules: :mod:`clock` (injected time), :mod:`solar` (sun and PV, pure
functions), :mod:`profiles` (hall and critical load), :mod:`physics` (the
hall stepping in time, faults, outages), :mod:`server` (Modbus TCP).
"""
