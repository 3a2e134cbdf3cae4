"""The event backbone: settings, topic catalog, Avro codec, the execution state machine."""
