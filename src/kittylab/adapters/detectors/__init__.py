"""Camera-based print monitoring: a client for Obico-compatible failure detectors and a
camera snapshot fetcher (the ports are in ``kittylab.monitoring.ports``)."""
