"""Node command: magicoin node."""
COMMANDS: list = []
