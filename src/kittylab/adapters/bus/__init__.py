"""The MQTT bus: an embedded broker for the default install and a reconnecting client."""
