"""magicoin inference package."""
