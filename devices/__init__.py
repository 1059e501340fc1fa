"""Hardware I/O: Modbus and MQTT devices, register maps, the hall simulator.

Knows nothing of modes or markets.  Signs are stated in :mod:`devices.readings`.
"""
