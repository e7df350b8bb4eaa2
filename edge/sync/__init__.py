"""Edge -> HQ sync over MQTT: the outbox (``edge.store.outbox_rows``) and its publisher."""
