"""ECHONET Lite (UDP 3610, multicast 224.0.23.0): Japanese storage batteries, PV and smart meters.

Modules: :mod:`frame` (frames and property maps; pychonet's codec),
:mod:`properties` (EPCs, names, value codecs), :mod:`client` (one UDP socket,
requests matched by TID; refusals named), :mod:`natures` (battery, PV and
meter as natures), :mod:`discovery` (nodes, objects and property maps).
"""
