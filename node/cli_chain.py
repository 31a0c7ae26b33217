"""Chain commands: genesis, export, import, replay."""
COMMANDS: list = []
