"""Which command may change which mode: one table, checked for every command a hall receives.

The commands come from the central service (the only MQTT user allowed to
write them), which has already checked the person's role: a ``mode: vpp``
command is a return to VPP that only municipal staff or an admin can send,
a ``mode: disaster_reserve`` a disaster switch (staff, an admin or the JMA
warning service), a setpoint or a dispatch lease an operator's.

The rule the table keeps: nothing an operator sends may end or weaken
disaster mode.  While a hall's requested mode is disaster_reserve, a
setpoint (which would make it manual, dropping the reserve to H_vpp) and a
dispatch (which would discharge for the market) are refused with the
reason; only a return to VPP ends it.  Islanded and safe are effective modes
the hall enters by itself; they do not appear as rows because commands
change the *requested* mode (dispatch is also refused unless the hall is
effectively in vpp, see :mod:`ems.gateway.link`).
"""

from __future__ import annotations

import enum
from typing import Mapping

from ems.gateway.modes import Mode


class CommandAction(str, enum.Enum):
    """What a command asks of the hall."""

    RETURN_TO_VPP = "mode:vpp"
    DISASTER = "mode:disaster_reserve"
    SETPOINT = "setpoint"
    DISPATCH = "dispatch"


_DISASTER_HOLDS = ("the hall is in disaster_reserve: an operator's {what} would weaken the shelter reserve; "
                   "only a return to VPP by municipal staff or an admin ends disaster mode")

#: (requested mode now, command) → None when allowed, else why it is refused.  Every pair is listed.
AUTHORITY: Mapping[tuple[Mode, CommandAction], str | None] = {
    (Mode.VPP, CommandAction.RETURN_TO_VPP): None,
    (Mode.VPP, CommandAction.DISASTER): None,
    (Mode.VPP, CommandAction.SETPOINT): None,
    (Mode.VPP, CommandAction.DISPATCH): None,
    (Mode.DISASTER_RESERVE, CommandAction.RETURN_TO_VPP): None,
    (Mode.DISASTER_RESERVE, CommandAction.DISASTER): None,  # a later warning: the reason is updated
    (Mode.DISASTER_RESERVE, CommandAction.SETPOINT): _DISASTER_HOLDS.format(what="setpoint"),
    (Mode.DISASTER_RESERVE, CommandAction.DISPATCH): _DISASTER_HOLDS.format(what="dispatch"),
    (Mode.MANUAL, CommandAction.RETURN_TO_VPP): None,
    (Mode.MANUAL, CommandAction.DISASTER): None,
    (Mode.MANUAL, CommandAction.SETPOINT): None,
    (Mode.MANUAL, CommandAction.DISPATCH): "the hall is in manual operation: dispatch needs vpp",
}


def refusal(requested: Mode, action: CommandAction) -> str | None:
    """Why ``action`` is refused while the hall's requested mode is ``requested``, or None when it may."""
    return AUTHORITY[(requested, action)]
