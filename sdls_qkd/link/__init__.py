"""Link ends: channels + SA table + durable state + key buffer + rekey policy."""
