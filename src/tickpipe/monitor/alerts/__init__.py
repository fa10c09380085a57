"""Alert rules from the config, the engine that evaluates them, and the alerts it raises."""
