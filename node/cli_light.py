"""Light client command: magicoin light."""
COMMANDS: list = []
