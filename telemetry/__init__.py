"""Telemetry and fleet messaging: InfluxDB writing through a durable outbox, MQTT state and commands.

Modules (see docs/telemetry.md for the operator's view):

* ``schema``          measurements, tags, fields; builders (``reading_point``, ``mode_point``, ...)
* ``outbox``          ``Outbox``: SQLite WAL store between the control cycle and the network
* ``influx_writers``  ``InfluxV1Writer`` (1.x /write), ``InfluxV2Writer`` (v2 API, VictoriaMetrics)
* ``shipper``         ``InfluxShipper``: asyncio task moving the outbox to the database
* ``config``          ``TelemetryConfig`` YAML settings and builders (secrets by file/env)
* ``mqtt_topics``     the ``ems/v1/<site>/...`` topic tree
* ``commands``        command envelope, payloads, ``Ack``; ``replay``: persisted seen ids
* ``edge_mqtt``       ``EdgeMqtt``: the gateway side (state, telemetry, plan, alarm, commands, acks)
* ``central_mqtt``    ``CentralMqtt``: the central side; ``fleet_state``: ``FleetStateStore``
* ``mosquitto_acl``   password/ACL file writer for Mosquitto (``python -m telemetry.mosquitto_acl``)

Nothing here imports ``ems``: the daemon builds points from its snapshot with the schema builders.
"""
