"""``ems deploy``: provision a real fleet — broker, central service, a gateway per hall, systemd units.

* :mod:`ems.deploy.layout`: the deployment folder, the install layout on the machines, the options;
* :mod:`ems.deploy.configs`: ``gateway.yaml`` per hall and ``central.yaml``;
* :mod:`ems.deploy.broker`: ``mosquitto.conf``, password file and ACL (via :mod:`telemetry.mosquitto_acl`);
* :mod:`ems.deploy.msgsize`: the largest real MQTT messages, for the broker's ``max_packet_size``;
* :mod:`ems.deploy.units`: hardened systemd units (``Type=notify`` + watchdog, see :mod:`ems.sdnotify`);
* :mod:`ems.deploy.readme`: the deployment's README;
* :mod:`ems.deploy.influx`: InfluxDB users with the deployment's passwords;
* :mod:`ems.deploy.build`: ``init`` and ``add-hall``; :mod:`ems.deploy.cli`: the command line.
"""
