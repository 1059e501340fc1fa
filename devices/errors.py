"""The one failure type of the device layer.

Every library error (pymodbus exceptions, timeouts, OS errors, decode errors,
Modbus exception responses, implausible values, failed write verification)
is turned into :class:`DeviceError` at the edge, so callers (pollers, the
control cycle) handle exactly one exception type, like a Home Assistant
coordinator's ``UpdateFailed``.
"""

from __future__ import annotations

from typing import Literal

#: What went wrong, as a small closed vocabulary callers can switch on.
ErrorKind = Literal[
    "timeout",  # no answer within the request timeout
    "connection",  # cannot connect, connection dropped, OS-level error
    "exception_response",  # the device answered with a Modbus exception code
    "decode",  # registers could not be turned into a value
    "implausible",  # a required value is missing, out of range or NaN
    "write_verify",  # read-back after a write differs from what was written
    "invalid_value",  # the caller asked to write a value the point cannot take
    "not_sunspec",  # no 'SunS' marker / unusable SunSpec model chain
    "config",  # the device's map or configuration cannot serve the request
]


class DeviceError(Exception):
    """A device could not be read or written.

    ``device_id`` names the device, ``kind`` is one of :data:`ErrorKind`,
    ``message`` says which register/point and what was wrong.  ``str()``
    gives ``"<device_id>: <message>"``.
    """

    def __init__(self, device_id: str, kind: ErrorKind, message: str):
        super().__init__(f"{device_id}: {message}")
        self.device_id = device_id
        self.kind: ErrorKind = kind
        self.message = message

    def __reduce__(self):  # keep picklable (used by multiprocessing/logging handlers)
        return (type(self), (self.device_id, self.kind, self.message))
