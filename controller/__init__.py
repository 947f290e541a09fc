"""Site daemon: configuration, clock, errors, hardware ports and drivers, CLI root."""
