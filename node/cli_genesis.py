"""Genesis commands: genesis init."""
COMMANDS: list = []
