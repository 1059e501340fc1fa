"""Async Modbus TCP/RTU client stack on pymodbus: shared connections, read planning, point I/O.

* :class:`ModbusConnection` - one per endpoint, shared by the units behind it.
* :func:`plan_reads` - merge a map's points into few requests.
* :class:`RegisterClient` - decode/verify the points of one device's map.
"""

from devices.modbus.client import PointValues, RegisterClient
from devices.modbus.connection import ModbusConnection, quiet_library_logs
from devices.modbus.planner import ReadRequest, plan_reads

__all__ = ["ModbusConnection", "PointValues", "ReadRequest", "RegisterClient", "plan_reads", "quiet_library_logs"]
