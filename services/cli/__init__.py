"""``switchboard``: one command for managers and operators (``switchboard --help``).

One module per command group: ``escalations`` (managers), ``router_admin`` (queues,
agents, contact), ``dlq`` (dead letters: list, show, replay), ``topics`` (partitions, end
offsets, lag) and ``whatif`` (the staffing simulator). ``grpc_options`` and
``kafka_options`` say how a command reaches a server or the broker, ``kafka_client`` is
the thin Kafka adapter, and ``proto_text`` how protobuf values read on one line.
"""
