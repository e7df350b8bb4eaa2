"""Hardware-in-the-loop simulators: every far side over its own wire protocol."""
