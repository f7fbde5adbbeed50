"""Pure decisions: no I/O here, so every rule is a function a unit test can call."""
