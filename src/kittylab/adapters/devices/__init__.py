"""Device adapters. ``simulated`` drives the demo lab; real integrations join it here."""
